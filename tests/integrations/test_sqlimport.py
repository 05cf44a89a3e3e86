"""SQL imports from external source databases (a SQLite file and a real PostgreSQL schema) into
a Halo fixture database on every backend, run through ``halodb.runner.run``."""

from __future__ import annotations

import json
import sqlite3

import pytest
from sqlalchemy import create_engine, insert, select, text, update

from halodb import runner
from tests.conftest import fresh_pg_schema
from halodb.config import load_settings
from halodb.halo import settings as halo_settings
from halodb.halo.repository import keyed
from halodb.halo.schema import sqlimport, users
from tests.helpers import add_client_with_site, halo_users


EMPLOYEES = [
    ("E1", "ana@contoso.example", "Ana", "Silva", "Head Office"),
    ("E2", "ben@contoso.example", "Ben", "Okafor", "Head Office"),
    ("E3", "chloé@contoso.example", "Chloé", "Dubois", "Warehouse"),
    ("E4", "dan@contoso.example", "Dan", "Ng", "Warehouse"),
]
QUERY = "SELECT email AS emailaddress, first_name AS firstname, last_name AS surname, office AS site_name FROM employees"


# -- the external source database ---------------------------------------------------------------


class Source:
    """An ``employees`` table in an external database the SQL import reads."""

    def __init__(self, url: str):
        self.url = url
        self.engine = create_engine(url)
        with self.engine.begin() as conn:
            conn.execute(text("CREATE TABLE employees (employee_no VARCHAR(20) PRIMARY KEY, email VARCHAR(200),"
                              " first_name VARCHAR(100), last_name VARCHAR(100), office VARCHAR(100))"))  # fmt: skip
            self.insert(conn, EMPLOYEES)

    @staticmethod
    def insert(conn, rows):
        for row in rows:
            conn.execute(text("INSERT INTO employees VALUES (:no, :email, :first, :last, :office)"),
                         dict(zip(("no", "email", "first", "last", "office"), row)))  # fmt: skip

    def execute(self, sql: str, **params):
        with self.engine.begin() as conn:
            conn.execute(text(sql), params)

    def count(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(text("SELECT COUNT(*) FROM employees")).scalar_one()


@pytest.fixture(params=["sqlite", "postgresql"])
def source(request, tmp_path):
    if request.param == "sqlite":
        src = Source(f"sqlite:///{tmp_path / 'hr.db'}")
        yield src
        src.engine.dispose()
        return
    with fresh_pg_schema("hr") as (_, url):
        src = Source(url)
        yield src
        src.engine.dispose()


# -- helpers ----------------------------------------------------------------------------------


def write_config(tmp_path, url, **sync):
    path = tmp_path / "cfg" / "appsettings.json"
    path.parent.mkdir(exist_ok=True)
    settings = {
        "InstanceName": "sql",
        "Database": {"Url": url},
        "Integrations": {"SqlImport": {"Users": True}},
        "Logging": {"Folder": str(tmp_path / "logs")},
        "Sync": {"MaxDeactivationPercent": 50, **sync},
    }
    path.write_text(json.dumps(settings), encoding="utf-8")
    return path


def run(config_path, **options):
    return runner.run(load_settings(config_path), runner.RunOptions(**options))


def add_import(engine, source_url, *, sql=QUERY, name="HR", **values):
    with engine.begin() as conn:
        row_id = conn.execute(
            insert(sqlimport).returning(sqlimport.c.id),
            {"name": name, "table": "users", "sql": sql, "keyfield": "emailaddress", "sqlserver": source_url,
             "integrator_enabled": True, "sql_timeout": 3, **values},
        ).scalar_one()  # fmt: skip
        halo_settings.set_enabled(conn, "SqlImport", True)
    return row_id


def import_row(engine, row_id):
    with engine.connect() as conn:
        return dict(conn.execute(select(*keyed(*sqlimport.c)).where(sqlimport.c.id == row_id)).mappings().one())


def only(report):
    (entity,) = report.entities
    return entity


@pytest.fixture
def sites(halo):
    """Contoso with two sites: Head Office and Warehouse."""
    client_id, head = add_client_with_site(halo, "Contoso", "Head Office")
    from halodb.halo.schema import site

    with halo.begin() as conn:
        warehouse = conn.execute(insert(site).returning(site.c.id), {"name": "Warehouse", "client_id": client_id}).scalar_one()
    return {"client": client_id, "Head Office": head, "Warehouse": warehouse}


# -- imports ------------------------------------------------------------------------------------


def test_users_by_email_with_default_site(halo, db_url, tmp_path, source, sites):
    source.execute("UPDATE employees SET office = NULL WHERE employee_no = 'E4'")
    row_id = add_import(halo, source.url, defaultsite=sites["Head Office"])
    with halo.begin() as conn:  # an existing Halo user is adopted by email, not duplicated
        conn.execute(insert(users), {"name": "Ana S.", "emailaddress": "ANA@contoso.example", "site_id": sites["Head Office"]})
    config = write_config(tmp_path, db_url)

    report = run(config)

    result = only(report)
    assert (result.status, result.fetched, result.created, result.updated) == ("ok", 4, 3, 1), result.error
    people = halo_users(halo)
    assert len(people) == 4
    assert people["ana@contoso.example"]["firstname"] == "Ana"  # adopted, then updated from HR
    assert people["dan@contoso.example"]["site_id"] == sites["Head Office"]  # the default site
    assert people["chloé@contoso.example"]["site_id"] == sites["Warehouse"]
    assert people["chloé@contoso.example"]["name"] == "Chloé Dubois"
    assert people["chloé@contoso.example"]["client_id"] == sites["client"]
    stored = import_row(halo, row_id)
    assert stored["lastsync"] is not None and stored["lasterror"] is None
    again = only(run(config))
    assert (again.status, again.created, again.updated) == ("ok", 0, 0), again.error
    # PostgreSQL fingerprints the unchanged result itself (test_sqlimport_content); SQLite cannot.
    assert (again.fetched, again.unchanged) == ((0, 0) if source.url.startswith("postgresql") else (4, 4))


def test_source_only_key_column(halo, db_url, tmp_path, source, sites):
    sql = "SELECT employee_no, email AS emailaddress, first_name AS firstname, last_name AS surname, office AS site_name FROM employees"
    add_import(halo, source.url, sql=sql, keyfield="employee_no")
    config = write_config(tmp_path, db_url)
    assert only(run(config)).created == 4

    source.execute("UPDATE employees SET email = 'ana.silva@contoso.example' WHERE employee_no = 'E1'")
    result = only(run(config))

    assert (result.created, result.updated) == (0, 1)  # same person, new address
    people = halo_users(halo)
    assert "ana.silva@contoso.example" in people and "ana@contoso.example" not in people
    assert all(p["other1"] is None for p in people.values())  # the key column is not written anywhere


def test_updateonly_creates_nothing(halo, db_url, tmp_path, source, sites):
    with halo.begin() as conn:
        conn.execute(insert(users), {"name": "Ben", "emailaddress": "ben@contoso.example", "site_id": sites["Head Office"]})
    add_import(halo, source.url, updateonly=True)
    config = write_config(tmp_path, db_url)

    result = only(run(config))

    assert (result.status, result.created, result.updated, result.skipped) == ("ok", 0, 1, 3)
    people = halo_users(halo)
    assert list(people) == ["ben@contoso.example"]
    assert people["ben@contoso.example"]["surname"] == "Okafor"


def test_user_missing_for_two_runs_is_deactivated(halo, db_url, tmp_path, source, sites):
    add_import(halo, source.url)
    config = write_config(tmp_path, db_url)
    assert only(run(config)).created == 4
    source.execute("DELETE FROM employees WHERE employee_no = 'E2'")

    first = only(run(config))
    assert (first.status, first.deactivated) == ("ok", 0)
    assert not halo_users(halo)["ben@contoso.example"]["inactive"]

    second = only(run(config))
    assert (second.status, second.deactivated) == ("ok", 1)
    people = halo_users(halo)
    assert people["ben@contoso.example"]["inactive"]
    assert not any(p["inactive"] for e, p in people.items() if e != "ben@contoso.example")


def test_dontremoveusers_deactivates_nothing(halo, db_url, tmp_path, source, sites):
    add_import(halo, source.url, dontremoveusers=True)
    config = write_config(tmp_path, db_url)
    run(config)
    source.execute("DELETE FROM employees WHERE employee_no IN ('E2', 'E3')")
    for _ in range(3):
        result = only(run(config))
        assert (result.status, result.deactivated, result.held_back) == ("ok", 0, 0)
    assert not any(p["inactive"] for p in halo_users(halo).values())


def test_dontupdatesite_keeps_the_site(halo, db_url, tmp_path, source, sites):
    add_import(halo, source.url, dontupdatesite=True)
    config = write_config(tmp_path, db_url)
    run(config)
    source.execute("UPDATE employees SET office = 'Warehouse', last_name = 'Silva-Moreau' WHERE employee_no = 'E1'")

    result = only(run(config))

    assert (result.status, result.updated) == ("ok", 1)
    ana = halo_users(halo)["ana@contoso.example"]
    assert ana["surname"] == "Silva-Moreau"
    assert ana["site_id"] == sites["Head Office"]


def test_without_dontupdatesite_the_site_moves(halo, db_url, tmp_path, source, sites):
    add_import(halo, source.url)
    config = write_config(tmp_path, db_url)
    run(config)
    source.execute("UPDATE employees SET office = 'Warehouse' WHERE employee_no = 'E1'")
    assert only(run(config)).updated == 1
    assert halo_users(halo)["ana@contoso.example"]["site_id"] == sites["Warehouse"]


# -- failures -----------------------------------------------------------------------------------


def test_non_select_query_is_refused(halo, db_url, tmp_path, source, sites):
    row_id = add_import(halo, source.url, sql="DELETE FROM employees")
    config = write_config(tmp_path, db_url)

    report = run(config)

    result = only(report)
    assert result.status == "failed" and report.exit_code == 1
    assert "the query must be a SELECT" in result.error
    assert source.count() == 4  # never executed
    assert import_row(halo, row_id)["lasterror"] == result.error


def test_broken_query_fails(halo, db_url, tmp_path, source, sites):
    row_id = add_import(halo, source.url, sql="SELECT nothing_here FROM no_such_table")
    config = write_config(tmp_path, db_url)

    result = only(run(config))

    assert result.status == "failed"
    assert "the query failed" in result.error and "\n" not in result.error
    assert import_row(halo, row_id)["lasterror"] == result.error
    assert halo_users(halo) == {}


@pytest.mark.parametrize(
    "where, hint",
    [
        ("postgresql", "server not found or not answering: check the host and port in the SQL import's sqlserver field (a SQLAlchemy URL)"),
        ("sqlite", "cannot open the SQLite file: check the path in the SQL import's sqlserver field (a SQLAlchemy URL)"),
    ],
)
def test_unreachable_external_database(halo, db_url, tmp_path, sites, where, hint):
    """The one-line error names the SQL import's own field in Halo, never the appsettings.json
    settings of the instance database (``Database.Url`` and the like)."""
    url = "postgresql+psycopg://postgres@127.0.0.1:1/hr" if where == "postgresql" else f"sqlite:///{tmp_path / 'no' / 'such' / 'hr.db'}"
    row_id = add_import(halo, url)
    config = write_config(tmp_path, db_url)

    report = run(config)

    result = only(report)
    assert result.status == "failed" and report.exit_code == 1
    assert result.error.startswith("SQL import 'HR': cannot connect to ") and "\n" not in result.error
    assert hint in result.error, result.error
    assert "Database." not in result.error
    stored = import_row(halo, row_id)
    assert stored["lasterror"] == result.error and stored["lastsync"] is None
    with halo.connect() as conn:
        state = halo_settings.integration_state(conn, "SqlImport")
    assert "cannot connect" in state.last_error


def test_last_sync_and_last_error_per_import_row(halo, db_url, tmp_path, source, sites):
    good = add_import(halo, source.url, name="good")
    bad = add_import(halo, source.url, name="bad", sql="SELECT broken FROM nowhere")
    config = write_config(tmp_path, db_url)

    report = run(config)

    assert [(e.label, e.status) for e in report.entities] == [("SQL import 'good'", "ok"), ("SQL import 'bad'", "failed")]
    good_row, bad_row = import_row(halo, good), import_row(halo, bad)
    assert good_row["lastsync"] is not None and good_row["lasterror"] is None
    assert bad_row["lastsync"] is None and "the query failed" in bad_row["lasterror"]

    with halo.begin() as conn:
        conn.execute(update(sqlimport).where(sqlimport.c.id == bad).values(sql=QUERY))
    assert run(config).exit_code == 0
    bad_row = import_row(halo, bad)
    assert bad_row["lastsync"] is not None and bad_row["lasterror"] is None


def test_unknown_query_column_names_the_nearest(halo, db_url, tmp_path, source, sites):
    add_import(halo, source.url, sql="SELECT email AS emailaddress, first_name AS fristname FROM employees")
    result = only(run(write_config(tmp_path, db_url)))
    assert result.status == "failed"
    assert "'fristname'" in result.error and "did you mean 'firstname'" in result.error


def test_query_without_the_key_column(halo, db_url, tmp_path, source, sites):
    add_import(halo, source.url, sql="SELECT first_name AS firstname FROM employees")
    result = only(run(write_config(tmp_path, db_url)))
    assert result.status == "failed" and "no column 'emailaddress'" in result.error


def test_rows_without_a_key_are_each_quarantined_as_empty(halo, db_url, tmp_path, source, sites):
    source.execute("UPDATE employees SET email = NULL WHERE employee_no IN ('E1', 'E2')")
    add_import(halo, source.url, sql=QUERY + " ORDER BY employee_no", defaultsite=sites["Head Office"])
    result = only(run(write_config(tmp_path, db_url)))
    assert result.quarantined == 2
    assert sorted(reason for _, reason in result.quarantine) == ["row 1: emailaddress is empty", "row 2: emailaddress is empty"]


def test_a_sqlite_source_is_left_in_its_own_journal_mode(halo, db_url, tmp_path, sites):
    path = tmp_path / "hr.db"
    src = Source(f"sqlite:///{path}")
    src.engine.dispose()
    add_import(halo, src.url, defaultsite=sites["Head Office"])
    assert only(run(write_config(tmp_path, db_url))).created == 4
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
