"""The runner: which integrations run, Last Sync / Last Error in Halo, run rows, exit codes,
and the database checks before anything is written."""

from __future__ import annotations

import json
import sqlite3

import pytest
from sqlalchemy import Column, MetaData, Table, func, insert, select

from halodb import runner
from halodb.config import load_settings
from halodb.database import engine_for_url
from halodb.errors import DatabaseUnreachable, SchemaMismatch, UsageError
from halodb.halo import settings as halo_settings
from halodb.halo.fixture import seed
from halodb.halo.repository import keyed
from halodb.halo.schema import area, importcsv, metadata, sqlimport, users
from halodb.state.tables import run as run_table
from tests.helpers import add_client_with_site, xlsx


def write_config(folder, url, integrations=None, **top):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "appsettings.json"
    settings = {
        "Database": {"Url": url},
        "Integrations": integrations if integrations is not None else {"Spreadsheet": {"Clients": True}, "SqlImport": {"Users": True}},
        "Logging": {"Folder": str(folder / "logs")},
        **top,
    }
    path.write_text(json.dumps(settings), encoding="utf-8")
    return path


def add_sheet(engine, path, kind="clients"):
    with engine.begin() as conn:
        conn.execute(insert(importcsv), {"name": kind, "type": kind, "filepath": str(path), "integrator_enabled": True})


def hr_database(path, count=5):
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE employees (email TEXT, first_name TEXT, last_name TEXT)")
        db.executemany("INSERT INTO employees VALUES (?,?,?)", [(f"u{i}@contoso.example", f"U{i}", "Test") for i in range(count)])
    db.close()
    return f"sqlite:///{path}"


def add_sql_import(engine, url, site_id):
    with engine.begin() as conn:
        conn.execute(insert(sqlimport), {
            "name": "HR", "table": "users", "keyfield": "emailaddress", "defaultsite": site_id, "sqlserver": url,
            "sql": "SELECT email AS emailaddress, first_name AS firstname, last_name AS surname FROM employees",
            "integrator_enabled": True,
        })  # fmt: skip


def enable(engine, *names):
    with engine.begin() as conn:
        for name in names:
            halo_settings.set_enabled(conn, name, True)


def state(engine, name):
    with engine.connect() as conn:
        return halo_settings.integration_state(conn, name)


def run(config, **options):
    return runner.run(load_settings(config), runner.RunOptions(**options))


# -- what runs ----------------------------------------------------------------------------------


def test_integration_disabled_in_halo_is_skipped_with_reason(halo, db_url, tmp_path):
    add_sheet(halo, xlsx(tmp_path / "c.xlsx", [("name",), ("Contoso",)]))
    config = write_config(tmp_path / "cfg", db_url, {"Spreadsheet": {"Clients": True}})

    report = run(config)

    assert report.entities == []
    assert report.skipped == [("Spreadsheet", "not enabled for the integrator in Halo")]
    assert report.exit_code == 0
    with halo.connect() as conn:
        assert conn.execute(select(func.count()).select_from(area)).scalar() == 0
        assert conn.execute(select(func.count()).select_from(run_table)).scalar() == 0


def test_enabled_in_halo_but_no_entity_here_is_not_run(halo, db_url, tmp_path):
    add_sheet(halo, xlsx(tmp_path / "c.xlsx", [("name",), ("Contoso",)]))
    enable(halo, "Spreadsheet", "SqlImport")
    config = write_config(tmp_path / "cfg", db_url, {"Spreadsheet": {"Clients": False}})

    report = run(config)

    assert report.entities == [] and report.skipped == []
    assert state(halo, "Spreadsheet").last_sync is None
    # Asked for by name, the reason is given.
    named = run(config, integration="spreadsheet")
    assert named.skipped == [("Spreadsheet", "no entity enabled in appsettings.json")]


def test_excluded_entity_is_skipped(halo, db_url, tmp_path):
    # Halo's SQL import targets tables by their own names (``area`` for clients): a target of
    # "Clients" is an entity the integration excludes, while appsettings.json switches Clients on.
    with halo.begin() as conn:
        conn.execute(insert(sqlimport), {
            "name": "HR", "table": "Clients", "keyfield": "name", "sqlserver": hr_database(tmp_path / "hr.db"),
            "sql": "SELECT first_name AS name FROM employees", "integrator_enabled": True,
        })  # fmt: skip
    enable(halo, "SqlImport")
    config = write_config(tmp_path / "cfg", db_url, {"SqlImport": {"Clients": True}})

    report = run(config)

    assert report.entities == []
    assert report.skipped == [("SqlImport/Clients", "SQL import 'HR': unknown target table 'Clients'")]
    assert report.exit_code == 0
    with halo.connect() as conn:
        assert conn.execute(select(func.count()).select_from(area)).scalar() == 0
        assert conn.execute(select(func.count()).select_from(run_table)).scalar() == 0


def test_unknown_integration_is_a_usage_error(halo, db_url, tmp_path):
    config = write_config(tmp_path / "cfg", db_url)
    with pytest.raises(UsageError) as caught:
        run(config, integration="Nope")
    assert caught.value.exit_code == 2
    assert "'Nope'" in str(caught.value)
    assert "Spreadsheet" in str(caught.value) and "SqlImport" in str(caught.value)


# -- Last Sync / Last Error ---------------------------------------------------------------------


def test_success_sets_last_sync_and_clears_last_error(halo, db_url, tmp_path):
    add_sheet(halo, xlsx(tmp_path / "c.xlsx", [("name",), ("Contoso",)]))
    enable(halo, "Spreadsheet")
    with halo.begin() as conn:
        halo_settings.record_error(conn, "Spreadsheet", "an old failure")
    config = write_config(tmp_path / "cfg", db_url, {"Spreadsheet": {"Clients": True}})

    report = run(config)

    assert report.exit_code == 0
    after = state(halo, "Spreadsheet")
    assert after.last_sync is not None and after.last_error is None


def test_failure_sets_last_error_and_keeps_last_sync(halo, db_url, tmp_path):
    path = xlsx(tmp_path / "c.xlsx", [("name",), ("Contoso",)])
    add_sheet(halo, path)
    enable(halo, "Spreadsheet")
    config = write_config(tmp_path / "cfg", db_url, {"Spreadsheet": {"Clients": True}})
    run(config)
    last_sync = state(halo, "Spreadsheet").last_sync
    path.unlink()

    report = run(config)

    assert report.exit_code == 1
    after = state(halo, "Spreadsheet")
    assert after.last_sync == last_sync
    assert "spreadsheet not found" in after.last_error and str(path) in after.last_error


def test_dry_run_records_nothing_in_halo(halo, db_url, tmp_path):
    add_sheet(halo, xlsx(tmp_path / "c.xlsx", [("name",), ("Contoso",)]))
    enable(halo, "Spreadsheet")
    config = write_config(tmp_path / "cfg", db_url, {"Spreadsheet": {"Clients": True}})
    report = run(config, dry_run=True)
    assert state(halo, "Spreadsheet").last_sync is None
    with halo.connect() as conn:
        assert conn.execute(select(func.count()).select_from(area)).scalar() == 0
    assert (report.entities[0].status, report.entities[0].created) == ("ok", 1), report.entities[0].error


def test_sixty_percent_shrink_is_held_back(halo, db_url, tmp_path):
    _, site_id = add_client_with_site(halo)
    hr = tmp_path / "hr.db"
    add_sql_import(halo, hr_database(hr, 5), site_id)
    enable(halo, "SqlImport")
    config = write_config(tmp_path / "cfg", db_url, {"SqlImport": {"Users": True}})
    assert run(config).entities[0].created == 5
    last_sync = state(halo, "SqlImport").last_sync
    with sqlite3.connect(hr) as db:
        db.execute("DELETE FROM employees WHERE email IN ('u0@contoso.example', 'u1@contoso.example', 'u2@contoso.example')")
    db.close()

    report = run(config)

    (result,) = report.entities
    assert (result.status, result.held_back, result.deactivated) == ("held-back", 3, 0)
    assert report.exit_code == 1
    after = state(halo, "SqlImport")
    assert after.last_sync == last_sync
    assert "3 of 5 users (60%) are missing from the source; deactivation held back" in after.last_error
    assert "--confirm-deactivations" in after.last_error
    with halo.connect() as conn:
        assert not any(conn.execute(select(users.c.inactive)).scalars())
        (row,) = conn.execute(select(*keyed(*sqlimport.c))).mappings()
    assert "deactivation held back" in row["lasterror"]


# -- the run itself -----------------------------------------------------------------------------


def test_instance_name_from_settings_or_folder(tmp_path):
    named = load_settings(write_config(tmp_path / "5min", "sqlite:///x.db", InstanceName="nightly"))
    assert runner.instance_name(named) == "nightly"
    unnamed = load_settings(write_config(tmp_path / "5min", "sqlite:///x.db"))
    assert runner.instance_name(unnamed) == "5min"


def test_one_run_row_per_entity(halo, db_url, tmp_path):
    client_id, site_id = add_client_with_site(halo)
    add_sheet(halo, xlsx(tmp_path / "c.xlsx", [("name",), ("Contoso",)]))
    add_sheet(halo, xlsx(tmp_path / "s.xlsx", [("client_name", "name"), ("Contoso", "Annex")]), kind="sites")
    add_sql_import(halo, hr_database(tmp_path / "hr.db", 3), site_id)
    enable(halo, "Spreadsheet", "SqlImport")
    config = write_config(tmp_path / "hourly", db_url, {"Spreadsheet": {"Clients": True, "Sites": True}, "SqlImport": {"Users": True}})

    report = run(config)

    assert report.exit_code == 0, [e.error for e in report.entities]
    assert report.instance == "hourly"
    with halo.connect() as conn:
        rows = [dict(r) for r in conn.execute(select(run_table).order_by(run_table.c.id)).mappings()]
    assert [(r["instance"], r["integration"], r["entity"], r["status"]) for r in rows] == [
        ("hourly", "Spreadsheet", "Clients", "ok"), ("hourly", "Spreadsheet", "Sites", "ok"), ("hourly", "SqlImport", "Users", "ok"),
    ]  # fmt: skip
    assert [r["created"] for r in rows] == [0, 1, 3]
    assert all(r["finished"] is not None for r in rows)


# -- the database -------------------------------------------------------------------------------


def _partial_schema(engine, drop_table=None, drop_column=None):
    """Halo's schema minus one table, or with one column left out of one table."""
    partial = MetaData()
    for table in metadata.sorted_tables:
        if table.name == drop_table:
            continue
        columns = [Column(c.name, c.type, primary_key=c.primary_key) for c in table.columns if (table.name, c.name) != drop_column]
        Table(table.name, partial, *columns)
    partial.create_all(engine)


@pytest.mark.parametrize("missing", [("audit", None), (None, ("users", "uemail"))])
def test_missing_halo_schema_is_a_schema_mismatch(db_url, missing):
    engine = engine_for_url(db_url)
    try:
        _partial_schema(engine, *missing)
        with engine.begin() as conn:
            seed(conn, halo_url="https://halo.example.com")
    finally:
        engine.dispose()
    expected = missing[0] or ".".join(missing[1])
    with pytest.raises(SchemaMismatch) as caught:
        runner.run(load_settings_for(db_url))
    assert caught.value.exit_code == 3
    assert f"lacks Halo tables/columns halodb needs: {expected}" in str(caught.value)


def load_settings_for(url):
    from halodb.config import Settings

    return Settings.model_validate({"Database": {"Url": url}, "Integrations": {"Spreadsheet": {"Clients": True}}})


@pytest.mark.parametrize(
    "url",
    ["sqlite:////nonexistent-halodb-dir/deeper/halo.db", "postgresql+psycopg://postgres@127.0.0.1:1/test"],
    ids=["sqlite-missing-dir", "postgresql-closed-port"],
)
def test_unreachable_database(url):
    with pytest.raises(DatabaseUnreachable) as caught:
        runner.run(load_settings_for(url))
    assert caught.value.exit_code == 3
    assert str(caught.value).startswith("cannot connect to ")
    assert "\n" not in str(caught.value)
