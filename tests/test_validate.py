"""Trigger detection (``halodb.halo.triggers``) and the ``halodb validate`` line that reports it,
on every backend of the ``halo`` fixture: real triggers are created on the fixture's Halo tables.

The SQL Server query is also checked as T-SQL in ``tests/test_tsql.py``; it runs against a live
server only where ``HALODB_TEST_MSSQL_URL`` or Docker provides one.
"""

from __future__ import annotations

import pytest
from sqlalchemy import text

from halodb.config import Settings
from halodb.halo.triggers import WRITTEN_TABLES, tables_with_triggers
from halodb.validate import trigger_check, validate


def create_trigger(engine, table: str, name: str, *, disabled: bool = False) -> None:
    """A do-nothing row trigger on ``table`` in the backend's own syntax."""
    backend = engine.dialect.name
    with engine.begin() as conn:
        if backend == "sqlite":
            assert not disabled, "SQLite triggers cannot be disabled"
            conn.execute(text(f"CREATE TRIGGER {name} AFTER INSERT ON {table} BEGIN SELECT 1; END"))
        elif backend == "postgresql":
            conn.execute(text(f"CREATE FUNCTION {name}_fn() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$"))
            conn.execute(text(f"CREATE TRIGGER {name} BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION {name}_fn()"))
            if disabled:
                conn.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER {name}"))
        elif backend == "mssql":
            conn.exec_driver_sql(f"CREATE TRIGGER {name} ON {table} AFTER INSERT AS SET NOCOUNT ON;")
            if disabled:
                conn.exec_driver_sql(f"DISABLE TRIGGER {name} ON {table}")
        else:  # pragma: no cover
            pytest.fail(f"no trigger syntax for {backend}")


def found(engine, tables=WRITTEN_TABLES) -> set[str]:
    with engine.connect() as conn:
        return tables_with_triggers(conn, tables)


def test_a_fresh_halo_has_no_triggers(halo):
    assert found(halo) == set()
    assert trigger_check(halo).detail == "none on the tables halodb writes"


def test_triggers_are_found_on_the_tables_that_have_them(halo):
    create_trigger(halo, "users", "trg_users_audit")
    create_trigger(halo, "device", "trg_device_stamp")
    create_trigger(halo, "xtype", "trg_xtype")  # a table halodb only reads: not asked about

    assert found(halo) == {"users", "device"}
    assert found(halo, ["USERS", "Area"]) == {"USERS"}  # matched case-insensitively, spelt as asked
    assert found(halo, []) == set()

    check = trigger_check(halo)
    assert check.ok
    assert check.detail == "on device, users: halodb inserts there through OUTPUT … INTO a table variable"


def test_disabled_and_internal_triggers_do_not_count(halo):
    if halo.dialect.name == "sqlite":
        pytest.skip("SQLite has neither disabled nor internal triggers")
    create_trigger(halo, "area", "trg_area_off", disabled=True)
    if halo.dialect.name == "postgresql":
        # A foreign key is enforced by internal triggers on both tables (pg_trigger.tgisinternal).
        with halo.begin() as conn:
            conn.execute(text("CREATE TABLE extra_child (id int PRIMARY KEY, user_id int REFERENCES users (uid))"))
            internal = conn.execute(text("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'users'::regclass")).scalar()
        assert internal >= 2, "the foreign key made no internal triggers: this test no longer tests anything"
    assert found(halo) == set()


def test_validate_reports_the_triggers(halo, db_url):
    create_trigger(halo, "area", "trg_area_audit")
    settings = Settings.model_validate({"HaloUrl": "https://halo.example.com", "Database": {"Url": db_url}})

    result = validate(settings, halo)

    checks = {c.name: c for c in result.checks}
    assert checks["halo triggers"].ok
    assert checks["halo triggers"].detail.startswith("on area: ")
    names = [c.name for c in result.checks]
    assert names.index("halo schema") < names.index("halo triggers") < names.index("halodb tables")
    assert result.exit_code == 0, result.checks


def test_validate_names_the_dbapi(halo, db_url):
    settings = Settings.model_validate({"HaloUrl": "https://halo.example.com", "Database": {"Url": db_url}})
    connection = next(c for c in validate(settings, halo).checks if c.name == "connection")
    expected = {"sqlite": "(sqlite, DBAPI sqlite3)", "postgresql": "(postgresql, DBAPI psycopg ", "mssql": "(mssql, ODBC driver "}
    assert expected[halo.dialect.name] in connection.detail


def test_validate_masks_the_password_in_the_configuration_line():
    """The same mask as ``config show`` (``config.mask_url``); no server answers on port 1."""
    password = "S3cret-Pw-validate"
    settings = Settings.model_validate({"Database": {"Url": f"postgresql+psycopg://halo:{password}@127.0.0.1:1/halo"}})

    result = validate(settings)

    configuration = next(c for c in result.checks if c.name == "configuration")
    assert "(instance database postgresql+psycopg://halo:********@127.0.0.1:1/halo)" in configuration.detail
    assert all(password not in c.detail for c in result.checks)
    assert result.exit_code == 3
