"""A SQL import that cannot reach its external database: each connect error's hint names the SQL
import's own fields in Halo (``sqlserver``, ``sqldatabase``, ``sql_driver``), never the
appsettings.json settings of the instance database (``Database.Url`` and the like). The run
itself is in ``test_sqlimport.py::test_unreachable_external_database``."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from halodb.database import _CONNECT_ERRORS, explain_connect_error
from halodb.integrations.sqlimport import connect_settings

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
    for message, (pattern, _) in zip(MESSAGES, _CONNECT_ERRORS, strict=True):
        assert next(p for p, _ in _CONNECT_ERRORS if p.search(message)) is pattern, message


@pytest.mark.parametrize("row, url, expected", [(PARTS_ROW, PARTS_URL, PARTS_FIELDS), (URL_ROW, make_url(URL_ROW["sqlserver"]), URL_FIELDS)], ids=["parts", "url"])
def test_each_hint_names_the_sql_import_field(row, url, expected):
    for message, field in zip(MESSAGES, expected, strict=True):
        line = explain_connect_error(DBAPIError("connect", None, Exception(message)), url, connect_settings(row))
        assert field in line, line
        assert "Database." not in line and "appsettings" not in line
        assert "pw@" not in line


def test_the_instance_database_hints_still_name_appsettings():
    line = explain_connect_error(DBAPIError("connect", None, Exception(MESSAGES[-1])), PARTS_URL)
    assert "check Database.Server (host, host,port or host\\INSTANCE)" in line
