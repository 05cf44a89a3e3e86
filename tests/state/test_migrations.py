"""halodb's own migrations (``migrations/``), on the real backends and as SQL Server DDL."""

from __future__ import annotations

import datetime as dt
import re

from sqlalchemy import create_engine, inspect

from halodb import migrate
from tests.conftest import fresh_pg_schema
from tests.tsql import MSSQL_URL as MSSQL


def test_upgrade_reaches_the_head_on_each_backend(db_url):
    engine = create_engine(db_url)
    try:
        before, after = migrate.upgrade(engine)
        assert (before, after) == (None, migrate.head()) and after == "0006"
        assert migrate.upgrade(engine) == ("0006", "0006")  # again: nothing to do
        with engine.connect() as conn:
            indexes = {i["name"] for i in inspect(conn).get_indexes("halodb_link")}
        assert "ix_halodb_link_integration_connection_entity_halo_id" not in indexes
    finally:
        engine.dispose()


def test_source_keys_get_a_binary_collation_on_sql_server_only():
    sql = migrate.offline_sql(MSSQL)
    step = sql[sql.index("-- Running upgrade 0001 -> 0002") : sql.index("-- Running upgrade 0002 -> 0003")]
    for table in ("halodb_link", "halodb_quarantine", "halodb_change"):
        assert f"ALTER TABLE {table} ALTER COLUMN source_key NVARCHAR(255) COLLATE Latin1_General_100_BIN2 NOT NULL" in step
    for table in ("halodb_link", "halodb_quarantine"):
        constraint = f"uq_{table}_integration_connection_entity_source_key"
        drop = step.index(f"ALTER TABLE {table} DROP CONSTRAINT {constraint}")
        alter = step.index(f"ALTER TABLE {table} ALTER COLUMN source_key")
        add = step.index(f"ALTER TABLE {table} ADD CONSTRAINT {constraint} UNIQUE (integration, connection, entity, source_key)")
        assert drop < alter < add  # SQL Server refuses to alter a column a constraint covers
    pg = migrate.offline_sql("postgresql+psycopg://u@h/db")
    assert "Running upgrade 0001 -> 0002" in pg and not re.search(r"COLLATE|ALTER COLUMN", pg[pg.index("0001 -> 0002") : pg.index("0002 -> 0003")])


def test_the_unread_link_index_is_dropped_on_every_backend():
    for url in (MSSQL, "postgresql+psycopg://u@h/db"):
        sql = migrate.offline_sql(url)
        step = sql[sql.index("-- Running upgrade 0002 -> 0003") : sql.index("-- Running upgrade 0003 -> 0004")]
        assert "DROP INDEX ix_halodb_link_integration_connection_entity_halo_id" in step, url


def test_creates_are_recorded_on_links_by_two_nullable_columns(db_url):
    """0004 adds the link's created_run and the run's halo_table; nullable, so the existing links
    and runs of a live database need no rewrite (metadata only on SQL Server and PostgreSQL)."""
    engine = create_engine(db_url)
    try:
        migrate.upgrade(engine)
        with engine.connect() as conn:
            link_cols = {c["name"]: c for c in inspect(conn).get_columns("halodb_link")}
            run_cols = {c["name"]: c for c in inspect(conn).get_columns("halodb_run")}
        assert link_cols["created_run"]["nullable"] and run_cols["halo_table"]["nullable"]
    finally:
        engine.dispose()
    sql = migrate.offline_sql(MSSQL)
    step = sql[sql.index("-- Running upgrade 0003 -> 0004") : sql.index("-- Running upgrade 0004 -> 0005")]
    assert "ALTER TABLE halodb_link ADD created_run INTEGER NULL" in step
    assert "ALTER TABLE halodb_run ADD halo_table NVARCHAR(50) NULL" in step


def test_a_downgrade_from_0004_writes_the_creates_back_as_change_rows(db_url):
    """Going back to 0003 must not lose which run created which record."""
    from alembic import command
    from sqlalchemy import insert, select

    from halodb.state.tables import change, link, run

    engine = create_engine(db_url)
    try:
        migrate.upgrade(engine)
        with engine.begin() as conn:
            run_id = conn.execute(insert(run).returning(run.c.id), {
                "instance": "t", "integration": "I", "connection": "1", "entity": "Users", "started": dt.datetime(2026, 1, 1),
                "status": "ok", "dry_run": False, "halo_table": "USERS",
            }).scalar_one()  # fmt: skip
            conn.execute(insert(link), [
                {"integration": "I", "connection": "1", "entity": "Users", "source_key": key, "halo_id": halo_id, "row_hash": "h",
                 "first_seen_run": run_id, "last_seen_run": run_id, "missed_runs": 0, "deactivated": False, "created_run": created}
                for key, halo_id, created in [("a", 10, run_id), ("b", 11, None)]
            ])  # fmt: skip
        with engine.begin() as conn:
            command.downgrade(migrate._config(conn), "0003")
        with engine.connect() as conn:
            rows = conn.execute(select(change.c.run_id, change.c.action, change.c.halo_table, change.c.halo_id, change.c.source_key)).all()
        assert [tuple(r) for r in rows] == [(run_id, "create", "USERS", 10, "a")]  # "b" was adopted, not created
        assert migrate.current(engine) == "0003"
    finally:
        engine.dispose()


LINK_KEY_COLUMNS = ("integration", "connection", "entity", "source_key")


def _link_columns(conn) -> dict[str, tuple[str, int]]:
    """(collation, statistics target) of each halodb_link column on PostgreSQL; -1 is the default."""
    rows = conn.exec_driver_sql(
        "SELECT a.attname, c.collname, a.attstattarget FROM pg_attribute a LEFT JOIN pg_collation c ON c.oid = a.attcollation "
        "WHERE a.attrelid = 'halodb_link'::regclass AND a.attnum > 0 AND NOT a.attisdropped"
    )
    return {name: (collation, target) for name, collation, target in rows}


def test_link_keys_compare_bytewise_and_keep_small_statistics_on_postgresql():
    """0005: the link table's unique-index columns take the C collation, every column a
    statistics target of 10, and a downgrade gives both back to the database's defaults. Links
    already there keep their keys, each still unique and found by its exact bytes."""
    from alembic import command
    from sqlalchemy import insert, select

    from halodb.state.tables import link

    keys = ["Straße", "STRASSE", "strasse", "Émile", "emile", "a-b", "a_b"]  # equal under some collations, not bytewise
    with fresh_pg_schema() as (_, url):
        engine = create_engine(url)
        try:
            with engine.begin() as conn:
                command.upgrade(migrate._config(conn), "0004")
                conn.execute(insert(link), [
                    {"integration": "I", "connection": "1", "entity": "Users", "source_key": key, "halo_id": i, "row_hash": "h",
                     "first_seen_run": 1, "last_seen_run": 1, "missed_runs": 0, "deactivated": False}
                    for i, key in enumerate(keys)
                ])  # fmt: skip
            migrate.upgrade(engine)
            with engine.connect() as conn:
                columns = _link_columns(conn)
                found = dict(conn.execute(select(link.c.source_key, link.c.halo_id).where(link.c.source_key.in_(["STRASSE", "emile"]))).all())
            assert {name for name, (collation, _) in columns.items() if collation == "C"} == set(LINK_KEY_COLUMNS)
            assert all(target == 10 for _, target in columns.values())
            assert found == {"STRASSE": 1, "emile": 4}
            with engine.begin() as conn:
                command.downgrade(migrate._config(conn), "0004")
            with engine.connect() as conn:
                columns = _link_columns(conn)
                count = conn.execute(select(link.c.id)).all()
            assert all(columns[name][0] == "default" for name in LINK_KEY_COLUMNS)
            assert all(target in (-1, None) for _, target in columns.values())  # -1 up to PostgreSQL 16, NULL from 17
            assert len(count) == len(keys)
        finally:
            engine.dispose()


def test_0005_changes_nothing_on_sql_server_and_sets_every_link_column_on_postgresql():
    from importlib import import_module

    from halodb.state.tables import link

    sql = migrate.offline_sql(MSSQL)
    step = sql[sql.index("-- Running upgrade 0004 -> 0005") : sql.index("-- Running upgrade 0005 -> 0006")]
    assert "ALTER" not in step and "COLLATE" not in step
    pg = migrate.offline_sql("postgresql+psycopg://u@h/db")
    step = pg[pg.index("-- Running upgrade 0004 -> 0005") : pg.index("-- Running upgrade 0005 -> 0006")]
    assert step.count("ALTER TABLE halodb_link") == 1  # one statement: the unique index is rebuilt once
    for column in LINK_KEY_COLUMNS:
        assert f'ALTER COLUMN {column} TYPE VARCHAR(' in step and step.count(f'{column} TYPE') == 1
    migration = import_module("migrations.versions.0005_link_keys_compare_bytewise_on_postgresql")
    assert set(migration.COLUMNS) == {c.name for c in link.columns}  # as the table stands after 0005
    assert step.count("SET STATISTICS 10") == len(migration.COLUMNS)


def test_0006_adds_the_content_fingerprint_and_write_count_and_keeps_every_cursor(db_url):
    """The cursor row's ``content`` and ``writes``: nullable, so existing cursors need no rewrite,
    and a delta position stored before the upgrade is still there after it."""
    from sqlalchemy import select, text

    from halodb.state.tables import cursor

    engine = create_engine(db_url)
    try:
        migrate.upgrade(engine, "0005")
        with engine.begin() as conn:
            conn.execute(
                text("INSERT INTO halodb_cursor (integration, connection, entity, position, updated) VALUES ('AzureAD', '1', 'Users', 'delta://x', :u)"),
                {"u": dt.datetime(2026, 1, 1)},
            )
        assert migrate.upgrade(engine) == ("0005", "0006")
        with engine.connect() as conn:
            columns = {c["name"]: c for c in inspect(conn).get_columns("halodb_cursor")}
            rows = conn.execute(select(cursor.c.position, cursor.c.content, cursor.c.writes)).all()
        assert columns["content"]["nullable"] and columns["writes"]["nullable"]
        assert [tuple(r) for r in rows] == [("delta://x", None, None)]
    finally:
        engine.dispose()
    step = migrate.offline_sql(MSSQL)
    step = step[step.index("-- Running upgrade 0005 -> 0006") :]
    assert "ALTER TABLE halodb_cursor ADD content VARCHAR(40) NULL" in step
    assert "ALTER TABLE halodb_cursor ADD writes INTEGER NULL" in step
