"""``halodb demo``: builds the embedded demo, syncs it, and the Halo tables hold what it reports."""

from __future__ import annotations

import datetime as dt

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, func, select

from halodb.cli import main
from halodb.halo.schema import area, audit, control, device, site, users

HEADER = "integration  entity   source                      fetched  created  updated  unchanged  deactivated  held back  quarantined  status"
FIRST_ROWS = [
    "Spreadsheet  Clients  spreadsheet 'Demo clients'        3        2        0          1            0          0            0  ok",
    "Spreadsheet  Sites    spreadsheet 'Demo sites'          3        2        1          0            0          0            0  ok",
    "Spreadsheet  Assets   spreadsheet 'Demo assets'         7        7        0          0            0          0            0  ok",
    "SqlImport    Users    SQL import 'HR employees'        12       11        1          0            0          0            0  ok",
]
# The spreadsheets have not changed since the first run: none is read again. The SQL import is.
SECOND_ROWS = [
    "Spreadsheet  Clients  spreadsheet 'Demo clients'        0        0        0          0            0          0            0  ok",
    "Spreadsheet  Sites    spreadsheet 'Demo sites'          0        0        0          0            0          0            0  ok",
    "Spreadsheet  Assets   spreadsheet 'Demo assets'         0        0        0          0            0          0            0  ok",
    "SqlImport    Users    SQL import 'HR employees'        12        0        0         12            0          0            0  ok",
]
UNCHANGED = [f"spreadsheet 'Demo {name}': source unchanged since its last complete read: nothing to read" for name in ("clients", "sites", "assets")]


@pytest.fixture
def cli(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return CliRunner()


def test_demo_reports_and_writes_what_it_says(cli, tmp_path):
    result = cli.invoke(main, ["demo", "demo"])

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"created a demo Halo in {tmp_path / 'demo'} and {tmp_path / 'demo' / 'appsettings.json'}"
    assert lines[1:7] == ["halodb run - instance demo", HEADER, *FIRST_ROWS]
    assert lines[7] == "total: 22 created, 2 updated, 0 deactivated, 0 quarantined, 0 failed"
    assert lines[8] == f"log: {tmp_path / 'logs' / f'halodb-{dt.date.today():%Y-%m-%d}.log'}"
    assert "halodb AUTO demo/appsettings.json" in result.stdout
    assert result.stderr == ""

    engine = create_engine(f"sqlite:///{tmp_path / 'demo' / 'halo.db'}")
    try:
        with engine.connect() as conn:
            count = lambda t, *w: conn.execute(select(func.count()).select_from(t).where(*w)).scalar()  # noqa: E731
            assert count(area) == 4  # 2 seeded + 2 created
            assert sorted(conn.execute(select(area.c.name)).scalars()) == ["Contoso Ltd", "Fabrikam Inc", "Northwind Traders", "Tailspin Toys"]
            assert count(site) == 5  # 3 seeded + 2 created
            assert conn.execute(select(site.c.phonenumber).where(site.c.name == "Warehouse")).scalar() == "+44 20 7946 0001"
            assert count(device) == 7
            assert count(users) == 12  # Ana adopted + 11 created
            assert count(users, users.c.emailaddress == "ana.silva@contoso.example") == 1
            assert count(users, users.c.inactive == True) == 1  # noqa: E712 - Mei Chen left
            assert count(audit) > 0
            assert count(audit, audit.c.agent_id != 2) == 0  # every change by the integrator agent
            row = conn.execute(select(control)).mappings().one()
            assert row["halointegrator_xlsimports_lastsync"] is not None and row["halointegrator_xlsimports_lasterror"] is None
            assert row["halointegrator_sqlimport_lastsync"] is not None and row["halointegrator_sqlimport_lasterror"] is None
    finally:
        engine.dispose()

    again = cli.invoke(main, ["AUTO", "demo/appsettings.json"])
    assert again.exit_code == 0, again.output
    lines = again.stdout.splitlines()
    assert lines[:9] == ["halodb run - instance demo", HEADER, *SECOND_ROWS, *UNCHANGED]
    assert lines[9] == "total: 0 created, 0 updated, 0 deactivated, 0 quarantined, 0 failed"


def test_demo_into_an_existing_demo_folder(cli, tmp_path):
    assert cli.invoke(main, ["demo", "demo"]).exit_code == 0
    result = cli.invoke(main, ["demo", "demo"])
    assert result.exit_code == 2
    assert result.stderr == f"error: {tmp_path / 'demo'} already holds a demo (remove it or choose another folder)\n"
    assert "Traceback" not in result.output
