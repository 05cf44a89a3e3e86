"""``halodb AUTO`` / ``run`` / ``validate`` / ``integrations`` / ``db current`` in-process, on the
embedded demo (SQLite) and on a demo Halo in a PostgreSQL schema."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from urllib.parse import quote_plus

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, func, inspect, select
from sqlalchemy.engine import make_url

from halodb import demo, migrate
from halodb.cli import main
from halodb.database import engine_for_url
from halodb.halo.fixture import create_halo_fixture
from tests.conftest import fresh_pg_schema
from halodb.halo.schema import area, audit, control, device, site, users

from tests.conftest import PG_ADMIN_URL  # noqa: E402
PASSWORD = "S3cret-Pw-123"
TODAY_LOG = f"halodb-{dt.date.today():%Y-%m-%d}.log"


@pytest.fixture
def cli(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return CliRunner()


@pytest.fixture
def synced(cli):
    """The demo, created and synced once, in ./demo."""
    result = cli.invoke(main, ["demo", "demo"])
    assert result.exit_code == 0, result.output
    return cli


@pytest.fixture
def pg_schema():
    """A fresh PostgreSQL schema name (dropped afterwards)."""
    with fresh_pg_schema("cli") as (name, _):
        yield name


def pg_url(schema, password=None, port=None):
    url = make_url(PG_ADMIN_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    if password:
        url = url.set(password=password)
    if port:
        url = url.set(port=port)
    return url.render_as_string(hide_password=False)


def halo_counts(url):
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            counts = {t.name: conn.execute(select(func.count()).select_from(t)).scalar() for t in (area, site, users, device, audit)}
            row = conn.execute(select(control)).mappings().one()
            counts["lastsync"] = (row["halointegrator_xlsimports_lastsync"], row["halointegrator_sqlimport_lastsync"])
        return counts
    finally:
        engine.dispose()


# -- on the synced demo -------------------------------------------------------------------------


def test_validate_prints_every_check(synced, tmp_path):
    result = synced.invoke(main, ["validate", "--config", "demo/appsettings.json"])

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[:8] == [
        f"ok    configuration: {tmp_path / 'demo' / 'appsettings.json'} (instance database sqlite:///{tmp_path / 'demo' / 'halo.db'})",
        "ok    connection: connected (sqlite, DBAPI sqlite3)",
        "ok    halo schema: every table and column halodb uses is present",
        "ok    halo triggers: none on the tables halodb writes",
        f"ok    halodb tables: revision {migrate.head()}: up to date",
        "ok    built-in API: 4 clients, 5 sites, 11 users, 4 agents",
        "ok    integrator agent: Halo Integrator (id 2), API-only agent",
        "ok    halo url: https://halo.demo.local matches Halo",
    ]
    assert lines[-1] == "validation passed"


def test_integrations_lists_last_sync(synced):
    result = synced.invoke(main, ["integrations", "--config", "demo/appsettings.json"])

    assert result.exit_code == 0, result.output
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)?"
    assert re.search(rf"^Spreadsheet  yes +Clients, Sites, Assets +{stamp} +-$", result.stdout, re.M), result.stdout
    assert re.search(rf"^SqlImport    yes +Users +{stamp} +-$", result.stdout, re.M), result.stdout

    as_json = json.loads(synced.invoke(main, ["integrations", "--config", "demo/appsettings.json", "--json"]).stdout)
    rows = {r["name"]: r for r in as_json}
    assert rows["Spreadsheet"]["last_sync"] and rows["Spreadsheet"]["last_error"] is None


def test_integrations_leaves_halodb_tables_unmigrated(cli, tmp_path):
    """A read-only command: on a Halo where halodb never ran, no halodb_* table appears."""
    url = f"sqlite:///{tmp_path / 'halo.db'}"
    engine = engine_for_url(url)
    try:
        create_halo_fixture(engine)
    finally:
        engine.dispose()
    (tmp_path / "appsettings.json").write_text(
        json.dumps({"Database": {"Url": url}, "Integrations": {"SqlImport": {"Users": True}}}), encoding="utf-8"
    )

    result = cli.invoke(main, ["integrations", "--config", "appsettings.json"])

    assert result.exit_code == 0, result.output
    assert re.search(r"^SqlImport +no +Users +never +-$", result.stdout, re.M), result.stdout
    engine = engine_for_url(url)
    try:
        assert migrate.current(engine) is None
        assert not [t for t in inspect(engine).get_table_names() if t.lower().startswith("halodb")]
    finally:
        engine.dispose()


def test_run_json_parses(synced):
    result = synced.invoke(main, ["run", "--config", "demo/appsettings.json", "--json"])

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["instance"] == "demo" and report["dry_run"] is False
    unread = "source unchanged since its last complete read: nothing to read"  # the spreadsheets did not change
    assert [(e["integration"], e["entity"], e["fetched"], e["unchanged"], e["note"], e["status"]) for e in report["entities"]] == [
        ("Spreadsheet", "Clients", 0, 0, unread, "ok"), ("Spreadsheet", "Sites", 0, 0, unread, "ok"),
        ("Spreadsheet", "Assets", 0, 0, unread, "ok"), ("SqlImport", "Users", 12, 12, None, "ok"),
    ]  # fmt: skip


def test_run_one_integration(synced):
    result = synced.invoke(main, ["run", "--config", "demo/appsettings.json", "--integration", "sqlimport"])
    assert result.exit_code == 0, result.output
    assert "SqlImport    Users" in result.stdout and "Spreadsheet" not in result.stdout


def test_run_unknown_integration(synced):
    result = synced.invoke(main, ["run", "--config", "demo/appsettings.json", "--integration", "Nope"])
    assert result.exit_code == 2
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("error: unknown integration 'Nope' (choose one of Spreadsheet, SqlImport")


def test_db_current(synced):
    result = synced.invoke(main, ["db", "current", "--config", "demo/appsettings.json"])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{migrate.head()} (up to date)\n"


def test_logs_land_in_the_working_directory(synced, tmp_path):
    log = tmp_path / "logs" / TODAY_LOG
    assert log.is_file()
    assert not (tmp_path / "demo" / "logs").exists()
    other = tmp_path / "elsewhere"
    other.mkdir()
    os.chdir(other)  # the cli fixture's monkeypatch.chdir restores the original directory
    result = synced.invoke(main, ["AUTO", str(tmp_path / "demo" / "appsettings.json")])
    assert result.exit_code == 0, result.output
    assert (other / "logs" / TODAY_LOG).is_file()
    assert result.stdout.splitlines()[-1] == f"log: {other / 'logs' / TODAY_LOG}"
    assert "run finished" in (other / "logs" / TODAY_LOG).read_text(encoding="utf-8")
    assert not (tmp_path / "demo" / "logs").exists()


def test_auto_reads_the_given_config_not_the_local_one(synced, tmp_path):
    (tmp_path / "appsettings.json").write_text("{ this is not the file to read", encoding="utf-8")

    result = synced.invoke(main, ["AUTO", "demo/appsettings.json"])

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "halodb run - instance demo"


def test_auto_with_a_missing_config_does_not_fall_back(synced, tmp_path):
    (tmp_path / "appsettings.json").write_text((tmp_path / "demo" / "appsettings.json").read_text(), encoding="utf-8")

    result = synced.invoke(main, ["AUTO", "nowhere/appsettings.json"])

    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "error: appsettings.json not found: nowhere/appsettings.json (create one with 'halodb config init')"
    ]


# -- dry run (PostgreSQL: see tests/test_runner.py for the SQLite dry-run bug) -------------------


def test_run_dry_run_writes_nothing(cli, tmp_path, pg_schema):
    url = pg_url(pg_schema)
    demo.create(tmp_path / "pgdemo", url)
    before = halo_counts(url)
    assert before["lastsync"] == (None, None)

    result = cli.invoke(main, ["run", "--config", "pgdemo/appsettings.json", "--dry-run"])

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "halodb run - instance demo - DRY RUN, nothing was written"
    # Each entity's writes are rolled back, so users of the clients the sheet would create are
    # quarantined in a dry run; the first entities show the real figures.
    assert lines[2].split()[-8:] == ["3", "2", "0", "1", "0", "0", "0", "ok"]
    assert lines[[i for i, x in enumerate(lines) if x.startswith("total: ")][0]].endswith(", 0 failed")
    assert any(line.startswith("  create     USERS") for line in lines)  # the changes are shown
    assert halo_counts(url) == before

    real = cli.invoke(main, ["AUTO", "pgdemo/appsettings.json"])
    assert "total: 22 created, 2 updated, 0 deactivated, 0 quarantined, 0 failed" in real.stdout


# -- malformed configuration -------------------------------------------------------------------

BAD_CONFIGS = {
    "bad-json": ('{"Database": {"Url" "sqlite:///halo.db"}}', "invalid JSON at line 1"),
    "unknown-key": ('{"Databse": {"Url": "sqlite:///halo.db"}}', "unknown key 'Databse' (did you mean 'Database'?)"),
    "missing-password": (
        '{"HaloUrl": "https://halo.example.com", "Database": {"Server": "sql1", "Name": "Halo", "Username": "halo"}}',
        "Database.Password is required (or set Database.Url)",
    ),
    "wrong-type": ('{"Database": {"Url": "sqlite:///halo.db"}, "Sync": {"BatchSize": "lots"}}', "Sync.BatchSize must be"),
}
COMMANDS = {"AUTO": ["AUTO", "cfg/appsettings.json"], "run": ["run", "--config", "cfg/appsettings.json"],
            "validate": ["validate", "--config", "cfg/appsettings.json"]}  # fmt: skip


@pytest.mark.parametrize("problem", list(BAD_CONFIGS))
@pytest.mark.parametrize("command", list(COMMANDS))
def test_malformed_config_is_one_error_line(cli, tmp_path, command, problem):
    content, expected = BAD_CONFIGS[problem]
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "appsettings.json").write_text(content, encoding="utf-8")

    result = cli.invoke(main, COMMANDS[command])

    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert expected in lines[0]
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)  # a clean exit, not an escaped exception


# -- the password never shows ------------------------------------------------------------------


def test_password_never_appears(cli, tmp_path, pg_schema):
    url = pg_url(pg_schema, password=PASSWORD)
    demo.create(tmp_path / "pgdemo", url)
    config = "pgdemo/appsettings.json"
    assert PASSWORD in (tmp_path / config).read_text()
    commands = [
        ["AUTO", config], ["run", "--config", config, "--json"], ["run", "--config", config, "--dry-run"],
        ["validate", "--config", config], ["validate", "--config", config, "--json"],
        ["integrations", "--config", config], ["db", "current", "--config", config],
    ]  # fmt: skip
    outputs = []
    for args in commands:
        result = cli.invoke(main, args)
        assert result.exit_code == 0, (args, result.output)
        outputs.append(result.stdout + result.stderr)

    # Now an unreachable server: the error names the URL, masked.
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "appsettings.json").write_text(
        json.dumps({"Database": {"Url": pg_url(pg_schema, password=PASSWORD, port=1)}, "Integrations": {"SqlImport": {"Users": True}}}),
        encoding="utf-8",
    )
    for args in (["AUTO", "broken/appsettings.json"], ["run", "--config", "broken/appsettings.json"], ["db", "current", "--config", "broken/appsettings.json"]):
        result = cli.invoke(main, args)
        assert result.exit_code == 3, (args, result.output)
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: cannot connect to postgresql+psycopg://postgres:***@127.0.0.1:1/"), result.stderr
        outputs.append(result.stdout + result.stderr)
    failed_validate = cli.invoke(main, ["validate", "--config", "broken/appsettings.json"])
    assert failed_validate.exit_code == 3
    assert "FAIL  connection: cannot connect to" in failed_validate.stdout
    outputs.append(failed_validate.stdout + failed_validate.stderr)

    log = (tmp_path / "logs" / TODAY_LOG).read_text(encoding="utf-8")
    assert "run finished" in log
    for text_ in [*outputs, log]:
        assert PASSWORD not in text_
        assert "Traceback" not in text_


def test_a_password_inside_an_odbc_connection_string_never_appears(cli, tmp_path):
    # Database.Url may carry a whole ODBC connection string (odbc_connect), password included;
    # SQLAlchemy's hide_password only knows user:password@. No SQL Server answers on port 1.
    odbc = f"DRIVER={{ODBC Driver 18 for SQL Server}};SERVER=127.0.0.1,1;DATABASE=Halo;UID=sa;PWD={PASSWORD};"
    url = "mssql+pyodbc:///?odbc_connect=" + quote_plus(odbc)
    (tmp_path / "appsettings.json").write_text(json.dumps({"Database": {"Url": url}}), encoding="utf-8")
    outputs = []
    for args in (["validate", "--config", "appsettings.json"], ["validate", "--config", "appsettings.json", "--json"], ["run", "--config", "appsettings.json"]):
        result = cli.invoke(main, args)
        assert result.exit_code == 3, (args, result.output)  # unreachable database
        outputs.append(result.stdout + result.stderr)
    for text_ in outputs:
        assert "PWD%3D********" in text_, text_  # the target is still named, its password masked
        assert PASSWORD not in text_ and quote_plus(PASSWORD) not in text_
        assert "Traceback" not in text_
