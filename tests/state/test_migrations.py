"""halodb's own migrations (``migrations/``), on the real backends and as SQL Server DDL."""

from __future__ import annotations

import re

from sqlalchemy import create_engine

from halodb import migrate

MSSQL = "mssql+pyodbc://u:p@sql01/Halo?driver=ODBC+Driver+18+for+SQL+Server"


def test_upgrade_reaches_the_head_on_each_backend(db_url):
    engine = create_engine(db_url)
    try:
        before, after = migrate.upgrade(engine)
        assert (before, after) == (None, migrate.head()) and after == "0002"
        assert migrate.upgrade(engine) == ("0002", "0002")  # again: nothing to do
    finally:
        engine.dispose()


def test_source_keys_get_a_binary_collation_on_sql_server_only():
    sql = migrate.offline_sql(MSSQL)
    step = sql[sql.index("-- Running upgrade 0001 -> 0002") :]
    for table in ("halodb_link", "halodb_quarantine", "halodb_change"):
        assert f"ALTER TABLE {table} ALTER COLUMN source_key NVARCHAR(255) COLLATE Latin1_General_100_BIN2 NOT NULL" in step
    for table in ("halodb_link", "halodb_quarantine"):
        constraint = f"uq_{table}_integration_connection_entity_source_key"
        drop = step.index(f"ALTER TABLE {table} DROP CONSTRAINT {constraint}")
        alter = step.index(f"ALTER TABLE {table} ALTER COLUMN source_key")
        add = step.index(f"ALTER TABLE {table} ADD CONSTRAINT {constraint} UNIQUE (integration, connection, entity, source_key)")
        assert drop < alter < add  # SQL Server refuses to alter a column a constraint covers
    pg = migrate.offline_sql("postgresql+psycopg://u@h/db")
    assert "Running upgrade 0001 -> 0002" in pg and not re.search(r"COLLATE|ALTER COLUMN", pg[pg.index("0001 -> 0002") :])
