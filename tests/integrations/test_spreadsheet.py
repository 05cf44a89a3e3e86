"""Scheduled spreadsheet imports (.xlsx and .csv) run through ``halodb.runner.run`` against a Halo
fixture database on every backend (SQLite, PostgreSQL)."""

from __future__ import annotations

import csv
import hashlib
import json

import pytest
from sqlalchemy import insert, select

from halodb import runner
from halodb.cli import output
from halodb.config import load_settings
from halodb.halo import settings as halo_settings
from halodb.halo.assets import assets as asset_repo
from halodb.halo.repository import keyed
from halodb.integrations.spreadsheet.reader import fingerprint, read_rows
from halodb.halo.schema import area, device, field, importcsv, site, typeinfo, users, xtype
from tests.helpers import add_client_with_site, xlsx


# -- helpers ----------------------------------------------------------------------------------


def write_config(tmp_path, url, entities=("Clients", "Sites", "Users", "Assets")):
    """An instance's appsettings.json that runs the spreadsheet imports."""
    path = tmp_path / "cfg" / "appsettings.json"
    path.parent.mkdir(exist_ok=True)
    settings = {
        "InstanceName": "sheets",
        "Database": {"Url": url},
        "Integrations": {"Spreadsheet": {e: True for e in entities}},
        "Logging": {"Folder": str(tmp_path / "logs")},
    }
    path.write_text(json.dumps(settings), encoding="utf-8")
    return path


def run(config_path):
    return runner.run(load_settings(config_path))


def register(engine, kind, path, matching=None, name=None):
    with engine.begin() as conn:
        row_id = conn.execute(
            insert(importcsv).returning(importcsv.c.id),
            {"name": name or f"{kind} sheet", "type": kind, "filepath": str(path), "matching_field": matching, "integrator_enabled": True},
        ).scalar_one()
        halo_settings.set_enabled(conn, "Spreadsheet", True)
    return row_id


def csv_bom(path, rows):
    with path.open("w", newline="", encoding="utf-8-sig") as handle:
        csv.writer(handle).writerows(rows)
    return path


def rows_of(engine, table, *where):
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(*keyed(*table.c)).where(*where)).mappings()]


def import_row(engine, row_id):
    return rows_of(engine, importcsv, importcsv.c.id == row_id)[0]


def spreadsheet_state(engine):
    with engine.connect() as conn:
        return halo_settings.integration_state(conn, "Spreadsheet")


def entity(report, name):
    (found,) = [e for e in report.entities if e.entity == name]
    return found


def add_asset_type(engine, name, field_names):
    with engine.begin() as conn:
        type_id = conn.execute(insert(xtype).returning(xtype.c.id), {"name": name}).scalar_one()
        for seq, field_name in enumerate(field_names, start=1):
            field_id = conn.execute(insert(field).returning(field.c.id), {"name": field_name, "kind": "T"}).scalar_one()
            conn.execute(insert(typeinfo), {"assettype_id": type_id, "seq": seq, "field_id": field_id, "kind": "T"})
    return type_id


# -- imports ------------------------------------------------------------------------------------


def test_xlsx_clients_sites_users_assets(halo, db_url, tmp_path):
    config = write_config(tmp_path, db_url)
    add_asset_type(halo, "Laptop", ["Serial Number", "Model"])
    register(halo, "clients", xlsx(tmp_path / "clients.xlsx", [("name", "website"), ("Café Müller", "https://cafe.example"), ("Contoso", None)]))
    register(halo, "sites", xlsx(tmp_path / "sites.xlsx", [("client_name", "name", "phonenumber"), ("Café Müller", "Kraków HQ", "+48 12 000"), ("Contoso", "Head Office", None)]))
    register(halo, "users", xlsx(tmp_path / "users.xlsx", [
        ("emailaddress", "firstname", "surname", "site_name", "client_name"),
        ("zoe@cafe.example", "Zoë", "Kowalska", "Kraków HQ", "Café Müller"),
        ("ann@contoso.example", "Ann", "Lee", "Head Office", "Contoso"),
    ]))  # fmt: skip
    register(halo, "assets", xlsx(tmp_path / "assets.xlsx", [
        ("inventory_number", "assettype_name", "client_name", "site_name", "Serial Number", "Model"),
        ("LT-1", "Laptop", "Café Müller", "Kraków HQ", "SN-001", "ThinkPad"),
        ("LT-2", "Laptop", "Contoso", "Head Office", 12345.0, "EliteBook"),
    ]))  # fmt: skip

    report = run(config)

    assert report.exit_code == 0, [(e.label, e.error) for e in report.entities]
    assert [(e.entity, e.status, e.fetched, e.created) for e in report.entities] == [
        ("Clients", "ok", 2, 2), ("Sites", "ok", 2, 2), ("Users", "ok", 2, 2), ("Assets", "ok", 2, 2),
    ]  # fmt: skip
    clients = {r["name"]: r for r in rows_of(halo, area)}
    assert clients["Café Müller"]["website"] == "https://cafe.example"
    sites = {r["name"]: r for r in rows_of(halo, site)}
    assert sites["Kraków HQ"]["client_id"] == clients["Café Müller"]["id"]
    assert sites["Kraków HQ"]["phonenumber"] == "+48 12 000"
    people = {r["emailaddress"]: r for r in rows_of(halo, users)}
    assert people["zoe@cafe.example"]["firstname"] == "Zoë"
    assert people["zoe@cafe.example"]["site_id"] == sites["Kraków HQ"]["id"]
    assert people["zoe@cafe.example"]["client_id"] == clients["Café Müller"]["id"]
    assert people["ann@contoso.example"]["site_id"] == sites["Head Office"]["id"]
    devices = {r["inventory_number"]: r for r in rows_of(halo, device)}
    assert devices["LT-1"]["site_id"] == sites["Kraków HQ"]["id"]
    with halo.connect() as conn:
        stored = asset_repo.current(conn, [devices["LT-1"]["id"], devices["LT-2"]["id"]])
    assert stored[devices["LT-1"]["id"]]["field:Serial Number"] == "SN-001"
    assert stored[devices["LT-1"]["id"]]["field:Model"] == "ThinkPad"
    assert stored[devices["LT-2"]["id"]]["field:Serial Number"] == "12345"  # a number cell, no ".0"
    state = spreadsheet_state(halo)
    assert state.last_sync is not None and state.last_error is None

    again = run(config)  # the same four files: none is read again
    assert [(e.status, e.fetched, e.created, e.updated) for e in again.entities] == [("ok", 0, 0, 0)] * 4
    assert "spreadsheet 'users sheet': source unchanged since its last complete read: nothing to read" in output.run_report(again)


def test_csv_with_bom_and_non_ascii(halo, db_url, tmp_path):
    config = write_config(tmp_path, db_url)
    add_client_with_site(halo, "Müller GmbH", "Zürich")
    path = csv_bom(tmp_path / "users.csv", [
        ["emailaddress", "firstname", "surname", "site_name", "client_name"],
        ["soren@muller.example", "Søren", "Ødegård", "Zürich", "Müller GmbH"],
        ["jose@muller.example", "José", "García", "Zürich", "Müller GmbH"],
    ])  # fmt: skip
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    row_id = register(halo, "users", path)

    report = run(config)

    assert (report.exit_code, entity(report, "Users").created) == (0, 2), entity(report, "Users").error
    people = {r["emailaddress"]: r for r in rows_of(halo, users)}
    assert (people["soren@muller.example"]["firstname"], people["soren@muller.example"]["surname"]) == ("Søren", "Ødegård")
    assert people["jose@muller.example"]["name"] == "José García"
    stored = import_row(halo, row_id)
    assert stored["lastsync"] is not None and stored["lasterror"] is None


def test_a_file_is_read_again_only_when_its_bytes_change(halo, db_url, tmp_path):
    config = write_config(tmp_path, db_url)
    add_client_with_site(halo)
    rows = [["emailaddress", "firstname", "surname", "site_name"], ["a@contoso.example", "Ann", "One", "Head Office"], ["b@contoso.example", "Bo", "Two", "Head Office"]]
    path = csv_bom(tmp_path / "users.csv", rows)
    row_id = register(halo, "users", path)
    assert entity(run(config), "Users").created == 2
    synced = import_row(halo, row_id)["lastsync"]

    unchanged = entity(run(config), "Users")
    assert (unchanged.status, unchanged.fetched, unchanged.note) == ("ok", 0, "source unchanged since its last complete read: nothing to read")
    assert import_row(halo, row_id)["lastsync"] >= synced  # still a successful sync for Halo

    rows[2][2] = "Three"
    csv_bom(path, rows)
    edited = entity(run(config), "Users")
    assert (edited.fetched, edited.updated, edited.unchanged) == (2, 1, 1)
    assert {r["surname"] for r in rows_of(halo, users)} == {"One", "Three"}

    csv_bom(path, rows)  # written again, byte for byte: a new modification time, the same content
    assert entity(run(config), "Users").fetched == 0


def test_csv_clients(halo, db_url, tmp_path):
    config = write_config(tmp_path, db_url)
    register(halo, "clients", csv_bom(tmp_path / "clients.csv", [["name", "website"], ["Ærø Fisk", "https://aero.example"]]))
    report = run(config)
    assert entity(report, "Clients").created == 1
    assert [r["name"] for r in rows_of(halo, area)] == ["Ærø Fisk"]


def test_custom_matching_field(halo, db_url, tmp_path):
    config = write_config(tmp_path, db_url)
    _, site_id = add_client_with_site(halo)
    with halo.begin() as conn:
        conn.execute(insert(users), {"name": "Old Name", "emailaddress": "old@contoso.example", "other1": "E-7", "site_id": site_id})
    register(halo, "users", xlsx(tmp_path / "users.xlsx", [
        ("other1", "emailaddress", "firstname", "surname", "site_name"),
        ("E-7", "new@contoso.example", "New", "Name", "Head Office"),
    ]), matching="other1")  # fmt: skip

    report = run(config)

    result = entity(report, "Users")
    assert (result.status, result.created, result.updated) == ("ok", 0, 1), result.error
    (only,) = rows_of(halo, users)
    assert (only["emailaddress"], only["other1"], only["firstname"]) == ("new@contoso.example", "E-7", "New")


# -- failures -----------------------------------------------------------------------------------


def test_unknown_column_fails_the_entity_naming_the_nearest(halo, db_url, tmp_path):
    config = write_config(tmp_path, db_url)
    row_id = register(halo, "clients", xlsx(tmp_path / "clients.xlsx", [("nmae", "website"), ("Contoso", None)]))

    report = run(config)

    result = entity(report, "Clients")
    assert result.status == "failed"
    assert report.exit_code == 1
    assert "\n" not in result.error
    assert "'nmae'" in result.error and "did you mean 'name'" in result.error
    assert rows_of(halo, area) == []
    stored = import_row(halo, row_id)
    assert stored["lasterror"] == result.error and stored["lastsync"] is None
    state = spreadsheet_state(halo)
    assert state.last_error is not None and "nmae" in state.last_error and state.last_sync is None


def test_empty_matching_field_is_quarantined(halo, db_url, tmp_path):
    config = write_config(tmp_path, db_url)
    _, site_id = add_client_with_site(halo)
    register(halo, "users", xlsx(tmp_path / "users.xlsx", [
        ("emailaddress", "firstname", "surname", "site_name"),
        ("a@contoso.example", "A", "One", "Head Office"),
        (None, "No", "Email", "Head Office"),
    ]))  # fmt: skip

    report = run(config)

    result = entity(report, "Users")
    assert (result.status, result.created, result.quarantined) == ("ok", 1, 1)
    assert result.quarantine[0][1] == "row 3: emailaddress is empty"
    assert report.exit_code == 0
    assert [r["emailaddress"] for r in rows_of(halo, users)] == ["a@contoso.example"]
    # The file has not changed, but the quarantined row is retried: the file is read again.
    again = entity(run(config), "Users")
    assert (again.fetched, again.unchanged, again.quarantined) == (2, 1, 1)


def test_missing_file_fails_with_the_path(halo, db_url, tmp_path):
    config = write_config(tmp_path, db_url)
    missing = tmp_path / "nowhere" / "clients.xlsx"
    row_id = register(halo, "clients", missing)

    report = run(config)

    result = entity(report, "Clients")
    assert result.status == "failed" and report.exit_code == 1
    assert str(missing) in result.error
    assert str(missing) in import_row(halo, row_id)["lasterror"]
    assert str(missing) in spreadsheet_state(halo).last_error


def test_failure_then_success_clears_last_error(halo, db_url, tmp_path):
    config = write_config(tmp_path, db_url)
    path = tmp_path / "clients.xlsx"
    row_id = register(halo, "clients", path)
    run(config)
    assert import_row(halo, row_id)["lasterror"]
    xlsx(path, [("name",), ("Contoso",)])
    report = run(config)
    assert report.exit_code == 0
    stored = import_row(halo, row_id)
    assert stored["lasterror"] is None and stored["lastsync"] is not None
    state = spreadsheet_state(halo)
    assert state.last_error is None and state.last_sync is not None


def test_rows_that_disappear_are_never_deactivated(halo, db_url, tmp_path):
    config = write_config(tmp_path, db_url)
    path = tmp_path / "clients.xlsx"
    xlsx(path, [("name",)] + [(f"Client {i}",) for i in range(5)])
    register(halo, "clients", path)
    assert entity(run(config), "Clients").created == 5
    xlsx(path, [("name",), ("Client 0",)])
    for _ in range(3):  # well past DeactivateAfterMissedRuns
        report = run(config)
        result = entity(report, "Clients")
        assert (result.status, result.deactivated, result.held_back) == ("ok", 0, 0)
    assert all(not r["inactive"] for r in rows_of(halo, area))
    assert len(rows_of(halo, area)) == 5


def test_disabled_import_row_is_not_read(halo, db_url, tmp_path):
    config = write_config(tmp_path, db_url)
    row_id = register(halo, "clients", xlsx(tmp_path / "c.xlsx", [("name",), ("Contoso",)]))
    with halo.begin() as conn:
        conn.execute(importcsv.update().where(importcsv.c.id == row_id).values(integrator_enabled=False))
    report = run(config)
    assert report.entities == []
    assert rows_of(halo, area) == []


@pytest.mark.parametrize("suffix", [".txt"])
def test_unsupported_file_type_fails(halo, db_url, tmp_path, suffix):
    config = write_config(tmp_path, db_url)
    path = tmp_path / f"clients{suffix}"
    path.write_text("name\nContoso\n", encoding="utf-8")
    register(halo, "clients", path)
    result = entity(run(config), "Clients")
    assert result.status == "failed" and "not a spreadsheet" in result.error


def test_reference_by_name_with_non_ascii_capital(halo, db_url, tmp_path):
    config = write_config(tmp_path, db_url)
    add_client_with_site(halo, "Żabka Sp. z o.o.", "Łódź")
    register(halo, "users", xlsx(tmp_path / "users.xlsx", [
        ("emailaddress", "firstname", "surname", "site_name", "client_name"),
        ("ola@zabka.example", "Ola", "Nowak", "Łódź", "Żabka Sp. z o.o."),
    ]))  # fmt: skip
    result = entity(run(config), "Users")
    assert (result.created, result.quarantined) == (1, 0), result.quarantine


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_reading_the_rows_fingerprints_the_bytes_read(tmp_path, suffix):
    rows = [("emailaddress", "surname"), *((f"u{i}@contoso.example", "Ødegård" * 50) for i in range(2000))]  # past one read buffer
    path = csv_bom(tmp_path / "users.csv", rows) if suffix == ".csv" else xlsx(tmp_path / "users.xlsx", rows)
    digest = hashlib.sha256()
    read = list(read_rows(path, digest))
    assert len(read) == 2001 and read[1] == ["u0@contoso.example", "Ødegård" * 50]
    assert digest.hexdigest() == fingerprint(path) == hashlib.sha256(path.read_bytes()).hexdigest()
