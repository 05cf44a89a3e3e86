"""A SQL import that cannot reach its external database: the one-line error names the SQL
import's own fields in Halo (``sqlserver``, ``sqldatabase``, ``sql_driver``), never the
appsettings.json settings of the instance database (``Database.Url`` and the like)."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import insert, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from halodb import runner
from halodb.config import load_settings
from halodb.database import _CONNECT_ERRORS, explain_connect_error
from halodb.halo import settings as halo_settings
from halodb.halo.repository import keyed
from halodb.halo.schema import sqlimport
from halodb.integrations.sqlimport import connect_settings

QUERY = "SELECT email AS emailaddress FROM employees"


def add_import(engine, source_url: str) -> int:
    with engine.begin() as conn:
        row_id = conn.execute(
            insert(sqlimport).returning(sqlimport.c.id),
            {"name": "HR", "table": "users", "sql": QUERY, "keyfield": "emailaddress", "sqlserver": source_url,
             "integrator_enabled": True, "sql_timeout": 3},
        ).scalar_one()  # fmt: skip
        halo_settings.set_enabled(conn, "SqlImport", True)
    return row_id


def run_once(tmp_path, db_url):
    path = tmp_path / "cfg" / "appsettings.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps({
        "InstanceName": "sql", "Database": {"Url": db_url}, "Integrations": {"SqlImport": {"Users": True}},
        "Logging": {"Folder": str(tmp_path / "logs")},
    }), encoding="utf-8")  # fmt: skip
    report = runner.run(load_settings(path), runner.RunOptions())
    (entity,) = report.entities
    return entity


def stored_error(engine, row_id: int) -> str | None:
    with engine.connect() as conn:
        return conn.execute(select(*keyed(sqlimport.c.lasterror)).where(sqlimport.c.id == row_id)).scalar_one()


@pytest.mark.parametrize(
    "where, hint",
    [
        ("sqlite", "cannot open the SQLite file: check the path in the SQL import's sqlserver field (a SQLAlchemy URL)"),
        ("postgresql", "server not found or not answering: check the host and port in the SQL import's sqlserver field (a SQLAlchemy URL)"),
    ],
)
def test_an_unreachable_source_names_the_imports_field_not_appsettings(halo, db_url, tmp_path, where, hint):
    url = f"sqlite:///{tmp_path / 'no' / 'such' / 'hr.db'}" if where == "sqlite" else "postgresql+psycopg://postgres@127.0.0.1:1/hr"
    row_id = add_import(halo, url)

    result = run_once(tmp_path, db_url)

    assert result.status == "failed"
    assert result.error.startswith("SQL import 'HR': cannot connect to ") and "\n" not in result.error
    assert hint in result.error, result.error
    assert "Database." not in result.error
    assert stored_error(halo, row_id) == result.error


# -- every hint, for both ways a SQL import names its server -----------------------------------

# One message each hint of halodb.database._CONNECT_ERRORS matches, in its order.
MESSAGES = [
    "[IM002] [unixODBC][Driver Manager]Data source name not found and no default driver specified",
    "[01000] [unixODBC][Driver Manager]Can't open lib 'ODBC Driver 18 for SQL Server' : file not found",
    "Cannot open database \"HR\" requested by the login. The login failed. (4060)",
    "Login failed for user 'CONTOSO\\svc-halo'. (18456)",
    "[08001] SSL Provider: certificate verify failed: unable to get local issuer certificate",
    "unable to open database file",
    "[08001] TCP Provider: Error code 0x2749 (10057)",
]
PARTS_ROW = {"sqlserver": "hr01\\HR", "sqldatabase": "HR", "sql_driver": "ODBC Driver 18 for SQL Server"}
PARTS_URL = make_url("mssql+pyodbc://@hr01%5CHR/HR?driver=ODBC+Driver+18+for+SQL+Server")
URL_ROW = {"sqlserver": "mssql+pyodbc://hr:pw@hr01:1433/HR?driver=ODBC+Driver+18+for+SQL+Server"}
PARTS_FIELDS = [
    "set the SQL import's sql_driver field",
    "fix the SQL import's sql_driver field",
    "check the SQL import's sqldatabase field and the login's access to it",
    "login failed: check that the account halodb runs as may log in (no sqlusername: Windows authentication)",
    "or set TrustServerCertificate in a full SQLAlchemy URL in the SQL import's sqlserver field",
    "check the path in the SQL import's sqlserver field",
    "check the SQL import's sqlserver field (host, host,port or host\\INSTANCE), that SQL Server accepts TCP connections",
]
URL_FIELDS = [
    "set the driver in the SQL import's sqlserver field (a SQLAlchemy URL)",
    "fix the driver in the SQL import's sqlserver field (a SQLAlchemy URL)",
    "check the database in the SQL import's sqlserver field (a SQLAlchemy URL) and the login's access to it",
    "login failed: check the username and password in the SQL import's sqlserver field (a SQLAlchemy URL)",
    "or set TrustServerCertificate (or Encrypt) in the SQL import's sqlserver field (a SQLAlchemy URL)",
    "check the path in the SQL import's sqlserver field (a SQLAlchemy URL)",
    "check the host and port in the SQL import's sqlserver field (a SQLAlchemy URL)",
]


def test_the_messages_cover_every_hint():
    assert len(MESSAGES) == len(_CONNECT_ERRORS)
    for message, (pattern, _) in zip(MESSAGES, _CONNECT_ERRORS):
        assert next(p for p, _ in _CONNECT_ERRORS if p.search(message)) is pattern, message


@pytest.mark.parametrize("row, url, expected", [(PARTS_ROW, PARTS_URL, PARTS_FIELDS), (URL_ROW, make_url(URL_ROW["sqlserver"]), URL_FIELDS)], ids=["parts", "url"])
def test_each_hint_names_the_sql_import_field(row, url, expected):
    for message, field in zip(MESSAGES, expected):
        line = explain_connect_error(DBAPIError("connect", None, Exception(message)), url, connect_settings(row))
        assert field in line, line
        assert "Database." not in line and "appsettings" not in line
        assert "pw@" not in line


def test_the_instance_database_hints_still_name_appsettings():
    line = explain_connect_error(DBAPIError("connect", None, Exception(MESSAGES[-1])), PARTS_URL)
    assert "check Database.Server (host, host,port or host\\INSTANCE)" in line
