"""The database layer without a server: SQL Server URLs and connection strings, transient-error
classification, retry with backoff, and the one-line explanations of failed connections.

No SQL Server can run on the machines this suite is developed on, so the SQL Server errors here
are *constructed* driver exceptions: real ``pyodbc`` exception classes (the ones pyodbc raises for
each SQLSTATE) carrying the message text the Microsoft ODBC Driver 18 produces, wrapped by
SQLAlchemy exactly as it wraps a driver error (``DBAPIError.instance``). The PostgreSQL errors
are real ``psycopg.errors`` classes, which carry their SQLSTATE. What a live SQL Server does is
exercised by the backend-parametrised tests when ``HALODB_TEST_MSSQL_URL`` or Docker is there.
"""

from __future__ import annotations

import os
from urllib.parse import quote_plus

import psycopg
import pyodbc
import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, ProgrammingError

from halodb import database
from halodb.config import DatabaseSettings, Settings
from halodb.database import (
    connect_check,
    detect_driver,
    driver_description,
    explain_connect_error,
    is_driver_path,
    is_transient,
    mssql_error_numbers,
    mssql_url,
    settings_url,
    with_retry,
)
from halodb.errors import ConfigError, DatabaseUnreachable

DRIVER = "ODBC Driver 18 for SQL Server"
ODBC = "[Microsoft][ODBC Driver 18 for SQL Server]"
SERVER = ODBC + "[SQL Server]"


def odbc_error(cls: type[pyodbc.Error], sqlstate: str, text: str, call: str = "SQLExecDirectW") -> pyodbc.Error:
    """A pyodbc exception as the driver manager builds it: (SQLSTATE, "[SQLSTATE] text (native) (call)")."""
    return cls(sqlstate, f"[{sqlstate}] {text} ({call})")


def wrapped(orig: Exception, statement: str = "SELECT 1") -> DBAPIError:
    """What SQLAlchemy raises for a driver error: the DBAPIError subclass matching the driver's class."""
    dbapi = psycopg if isinstance(orig, psycopg.Error) else pyodbc
    return DBAPIError.instance(statement, None, orig, dbapi.Error)


def connect_args(url: URL) -> str:
    """The ODBC connection string SQLAlchemy's pyodbc dialect builds from ``url``."""
    engine = create_engine(url)
    try:
        (conn_str,), _ = engine.dialect.create_connect_args(engine.url)
        return conn_str
    finally:
        engine.dispose()


# -- transient or not ------------------------------------------------------------------------------

DEADLOCK = odbc_error(
    pyodbc.Error, "40001",
    f"{SERVER}Transaction (Process ID 57) was deadlocked on lock resources with another process and has been "
    "chosen as the deadlock victim. Rerun the transaction. (1205)",
)  # fmt: skip

TRANSIENT = {
    "deadlock victim 1205": DEADLOCK,
    "lock timeout 1222": odbc_error(pyodbc.Error, "HY000", f"{SERVER}Lock request time out period exceeded. (1222)"),
    "azure 40613 database unavailable": odbc_error(
        pyodbc.ProgrammingError, "42000",
        f"{SERVER}Database 'Halo' on server 'halo-sql' is not currently available.  Please retry the connection later.  "
        "If the problem persists, contact customer support, and provide them the session tracing ID of "
        "'4A5C8F3E-0D1B-4C6A-9E8F-0B1C2D3E4F5A'. (40613)", "SQLDriverConnect",
    ),
    "azure 4060 cannot open database": odbc_error(
        pyodbc.ProgrammingError, "42000",
        f'{SERVER}Cannot open database "Halo" requested by the login. The login failed. (4060)', "SQLDriverConnect",
    ),
    "azure 10928 resource limit": odbc_error(
        pyodbc.ProgrammingError, "42000",
        f"{SERVER}Resource ID : 1. The request limit for the database is 60 and has been reached. "
        "See 'http://go.microsoft.com/fwlink/?LinkId=267637' for assistance. (10928)",
    ),
    "azure 10929 resource limit": odbc_error(
        pyodbc.ProgrammingError, "42000",
        f"{SERVER}Resource ID : 1. The request limit for the database is 60 and has been reached. However, the server "
        "is currently too busy to support requests greater than 30 for this database. (10929)",
    ),
    "azure 40197 service error": odbc_error(
        pyodbc.Error, "HY000",
        f"{SERVER}The service has encountered an error processing your request. Please try again. Error code 4815. (40197)",
    ),
    "azure 40501 service busy": odbc_error(
        pyodbc.Error, "HY000",
        f"{SERVER}The service is currently busy. Retry the request after 10 seconds. Incident ID: "
        "{0B1C2D3E-4F5A-6B7C-8D9E-0F1A2B3C4D5E}. Code: 8519680. (40501)",
    ),
    "08S01 communication link failure": odbc_error(pyodbc.OperationalError, "08S01", f"{ODBC}Communication link failure (0)"),
    "HYT00 query timeout": odbc_error(pyodbc.OperationalError, "HYT00", f"{ODBC}Query timeout expired (0)"),
    "postgresql deadlock 40P01": psycopg.errors.DeadlockDetected("deadlock detected\nDETAIL:  Process 4711 waits for ShareLock on transaction 901"),
    "postgresql serialization 40001": psycopg.errors.SerializationFailure("could not serialize access due to concurrent update"),
    "postgresql lock not available 55P03": psycopg.errors.LockNotAvailable('could not obtain lock on row in relation "users"'),
    "postgresql admin shutdown 57P01": psycopg.errors.AdminShutdown("terminating connection due to administrator command"),
}

NOT_TRANSIENT = {
    "syntax error 102": odbc_error(pyodbc.ProgrammingError, "42000", f"{SERVER}Incorrect syntax near 'FROM'. (102)"),
    "primary key violation 2627, whose key value looks like an error number": odbc_error(
        pyodbc.IntegrityError, "23000",
        f"{SERVER}Violation of PRIMARY KEY constraint 'PK_users'. Cannot insert duplicate key in object 'dbo.users'. "
        f"The duplicate key value is (1205). (2627) (SQLExecDirectW); [01000] {SERVER}The statement has been terminated. (3621)",
    ),
    "login failed 18456": odbc_error(
        pyodbc.InterfaceError, "28000", f"{SERVER}Login failed for user 'halo'. (18456)", "SQLDriverConnect"
    ),
    "certificate not trusted (08001)": odbc_error(
        pyodbc.OperationalError, "08001",
        f"{ODBC}SSL Provider: [error:0A000086:SSL routines::certificate verify failed:self-signed certificate] (-1) "
        f"(SQLDriverConnect); [08001] {ODBC}Client unable to establish connection (-1)", "SQLDriverConnect",
    ),
    "invalid column 207": odbc_error(pyodbc.ProgrammingError, "42S22", f"{SERVER}Invalid column name 'uemail2'. (207)"),
    "postgresql unique violation 23505": psycopg.errors.UniqueViolation('duplicate key value violates unique constraint "users_pkey"'),
    "postgresql syntax error 42601": psycopg.errors.SyntaxError('syntax error at or near "FORM"'),
}


@pytest.mark.parametrize("orig", TRANSIENT.values(), ids=TRANSIENT.keys())
def test_transient_errors_are_retried(orig):
    assert is_transient(wrapped(orig))


@pytest.mark.parametrize("orig", NOT_TRANSIENT.values(), ids=NOT_TRANSIENT.keys())
def test_other_errors_are_not(orig):
    assert not is_transient(wrapped(orig))


def test_sqlalchemy_wraps_the_constructed_errors_as_it_wraps_real_ones():
    """The classes pyodbc raises for these SQLSTATEs become SQLAlchemy's matching classes."""
    assert isinstance(wrapped(TRANSIENT["08S01 communication link failure"]), OperationalError)
    assert isinstance(wrapped(NOT_TRANSIENT["login failed 18456"]), InterfaceError)
    assert isinstance(wrapped(TRANSIENT["azure 4060 cannot open database"]), ProgrammingError)
    assert type(wrapped(DEADLOCK)) is DBAPIError  # 40001 has no narrower pyodbc class


def test_native_error_numbers_are_read_from_their_position_only():
    assert mssql_error_numbers(str(DEADLOCK)) == {1205}
    assert mssql_error_numbers(str(NOT_TRANSIENT["primary key violation 2627, whose key value looks like an error number"])) == {2627, 3621}


def test_a_dropped_connection_is_transient_whatever_its_text():
    err = wrapped(pyodbc.Error("HY000", "[HY000] something odd (0) (SQLExecDirectW)"))
    err.connection_invalidated = True
    assert is_transient(err)


def test_sqlite_writer_contention_is_transient():
    import sqlite3

    assert is_transient(DBAPIError.instance("INSERT", None, sqlite3.OperationalError("database is locked"), sqlite3.Error))


# -- retry with backoff and jitter -----------------------------------------------------------------


class Flaky:
    """Fails with ``errors`` in turn, then returns "done"."""

    def __init__(self, *errors: Exception):
        self.errors = list(errors)
        self.calls = 0

    def __call__(self):
        self.calls += 1
        if self.errors:
            raise wrapped(self.errors.pop(0))
        return "done"


def test_with_retry_backs_off_exponentially_with_jitter():
    sleeps: list[float] = []
    work = Flaky(DEADLOCK, TRANSIENT["lock timeout 1222"], TRANSIENT["azure 40501 service busy"])
    assert with_retry(work, attempts=4, sleep=sleeps.append, jitter=lambda: 0.0) == "done"
    assert work.calls == 4
    assert sleeps == [0.5, 1.0, 2.0]  # base 1, 2, 4 s, each times (0.5 + jitter)

    sleeps.clear()
    with_retry(Flaky(DEADLOCK, DEADLOCK), attempts=3, sleep=sleeps.append, jitter=lambda: 0.999)
    assert sleeps == pytest.approx([1.499, 2.998])


def test_with_retry_caps_the_delay():
    sleeps: list[float] = []
    with_retry(Flaky(*[DEADLOCK] * 8), attempts=9, sleep=sleeps.append, jitter=lambda: 0.5)
    assert max(sleeps) == 30.0 and sleeps[-1] == 30.0


def test_with_retry_jitter_spreads_real_delays():
    sleeps: list[float] = []
    for _ in range(20):
        with_retry(Flaky(DEADLOCK), attempts=2, sleep=sleeps.append)
    assert all(0.5 <= s < 1.5 for s in sleeps)
    assert len(set(sleeps)) > 1, "the default jitter is random"


def test_with_retry_gives_up_after_its_budget_with_the_last_error():
    sleeps: list[float] = []
    work = Flaky(DEADLOCK, DEADLOCK, TRANSIENT["HYT00 query timeout"], DEADLOCK)
    with pytest.raises(OperationalError, match="Query timeout expired"):
        with_retry(work, attempts=3, sleep=sleeps.append)
    assert work.calls == 3 and len(sleeps) == 2


def test_with_retry_does_not_retry_other_errors():
    sleeps: list[float] = []
    work = Flaky(NOT_TRANSIENT["syntax error 102"])
    with pytest.raises(ProgrammingError, match=r"Incorrect syntax"):
        with_retry(work, attempts=5, sleep=sleeps.append)
    assert work.calls == 1 and sleeps == []


# -- connect_check: retried, then explained --------------------------------------------------------


def failing_engine(*errors: Exception):
    """An mssql+pyodbc engine whose connection attempts raise ``errors`` in turn (pyodbc's exceptions)."""
    pending = list(errors)
    calls = []

    def creator():
        calls.append(1)
        raise pending.pop(0) if len(pending) > 1 else pending[0]

    url = URL.create("mssql+pyodbc", username="halo", password="S3cret!", host="sql01", database="Halo", query={"driver": DRIVER})
    return create_engine(url, creator=creator), calls


def test_connect_check_retries_a_transient_connect_error_then_explains_it():
    engine, calls = failing_engine(TRANSIENT["azure 4060 cannot open database"])
    sleeps: list[float] = []
    with pytest.raises(DatabaseUnreachable) as info:
        connect_check(engine, attempts=3, sleep=sleeps.append)
    assert len(calls) == 3 and len(sleeps) == 2
    message = str(info.value)
    assert message.startswith("cannot connect to mssql+pyodbc://halo:***@sql01/Halo?driver=ODBC+Driver+18+for+SQL+Server: ")
    assert "the database 'Halo' does not exist or this login may not open it" in message
    assert "S3cret" not in message and "\n" not in message


@pytest.mark.parametrize("name", ["login failed 18456", "certificate not trusted (08001)"])
def test_connect_check_explains_hopeless_errors_at_once(name):
    engine, calls = failing_engine(NOT_TRANSIENT[name])
    with pytest.raises(DatabaseUnreachable):
        connect_check(engine, attempts=3, sleep=lambda s: pytest.fail("slept"))
    assert len(calls) == 1


def test_connect_check_does_not_wait_out_a_dead_server_three_times():
    """Server not found: each try may already have waited the whole login timeout."""
    dead = odbc_error(pyodbc.OperationalError, "HYT00", f"{ODBC}Login timeout expired (0)", "SQLDriverConnect")
    engine, calls = failing_engine(dead)
    with pytest.raises(DatabaseUnreachable, match="server not found or not answering"):
        connect_check(engine, attempts=3, sleep=lambda s: pytest.fail("slept"))
    assert len(calls) == 1


# -- one line per common connection error ----------------------------------------------------------

MSSQL = URL.create("mssql+pyodbc", username="halo", password="S3cret!", host="sql01", port=1433, database="Halo", query={"driver": DRIVER})

CONNECT_ERRORS = {
    "login failed": (
        NOT_TRANSIENT["login failed 18456"],
        "login failed: check Database.Username and Database.Password",
    ),
    "certificate, Linux wording": (
        NOT_TRANSIENT["certificate not trusted (08001)"],
        "the server's TLS certificate is not trusted: install a certificate the client trusts, or set Database.TrustServerCertificate",
    ),
    "certificate, Windows wording": (
        odbc_error(
            pyodbc.OperationalError, "08001",
            f"{ODBC}SSL Provider: The certificate chain was issued by an authority that is not trusted.\r\n (-2146893019)",
            "SQLDriverConnect",
        ),
        "the server's TLS certificate is not trusted",
    ),
    "server not found, TCP Provider": (
        odbc_error(
            pyodbc.OperationalError, "08001",
            f"{ODBC}TCP Provider: Error code 0x2749 (10057); [08001] {ODBC}A network-related or instance-specific error "
            "has occurred while establishing a connection to sql01. Server is not found or not accessible. Check if "
            "instance name is correct and if SQL Server is configured to allow remote connections. (10057)",
            "SQLDriverConnect",
        ),
        "server not found or not answering: check Database.Server (host, host,port or host\\INSTANCE)",
    ),
    "server not found, Named Pipes Provider": (
        odbc_error(
            pyodbc.OperationalError, "08001",
            f"{ODBC}Named Pipes Provider: Could not open a connection to SQL Server [53].  (53)", "SQLDriverConnect",
        ),
        "server not found or not answering",
    ),
    "server not answering, login timeout": (
        odbc_error(pyodbc.OperationalError, "HYT00", f"{ODBC}Login timeout expired (0)", "SQLDriverConnect"),
        "server not found or not answering",
    ),
    "database not found": (
        TRANSIENT["azure 4060 cannot open database"],
        "the database 'Halo' does not exist or this login may not open it: check Database.Name",
    ),
    "driver not installed": (
        odbc_error(
            pyodbc.InterfaceError, "IM002",
            "[unixODBC][Driver Manager]Data source name not found and no default driver specified (0)", "SQLDriverConnect",
        ),
        "the ODBC driver 'ODBC Driver 18 for SQL Server' is not installed",
    ),
    "driver library missing": (
        odbc_error(
            pyodbc.Error, "01000",
            "[unixODBC][Driver Manager]Can't open lib 'ODBC Driver 18 for SQL Server' : file not found (0)", "SQLDriverConnect",
        ),
        "the ODBC driver 'ODBC Driver 18 for SQL Server' cannot be loaded",
    ),
}


@pytest.mark.parametrize("orig, reason", CONNECT_ERRORS.values(), ids=CONNECT_ERRORS.keys())
def test_each_common_connection_error_is_one_explained_line(orig, reason):
    line = explain_connect_error(wrapped(orig, "SELECT 1"), MSSQL)
    assert line.startswith("cannot connect to mssql+pyodbc://halo:***@sql01:1433/Halo?driver=ODBC+Driver+18+for+SQL+Server: ")
    assert reason in line
    assert "\n" not in line and "\r" not in line and "S3cret" not in line


def test_driver_not_installed_lists_the_installed_drivers(monkeypatch):
    monkeypatch.setattr(pyodbc, "drivers", lambda: ["FreeTDS", "PostgreSQL Unicode"])
    orig = CONNECT_ERRORS["driver not installed"][0]
    assert "(installed: FreeTDS)" in explain_connect_error(wrapped(orig), MSSQL)
    monkeypatch.setattr(pyodbc, "drivers", lambda: [])
    assert "(no SQL Server ODBC driver is installed)" in explain_connect_error(wrapped(orig), MSSQL)


def test_unknown_errors_keep_their_first_line():
    orig = odbc_error(pyodbc.Error, "HY000", f"{SERVER}Something nobody expected. (50000)\nsecond line")
    assert explain_connect_error(wrapped(orig), MSSQL).endswith(f": [HY000] {SERVER}Something nobody expected. (50000)")


def test_postgresql_and_sqlite_connection_errors(tmp_path):
    pg = make_url("postgresql+psycopg://postgres:pw@127.0.0.1:1/halo")
    refused = psycopg.OperationalError('connection failed: connection to server at "127.0.0.1", port 1 failed: Connection refused')
    assert "server not found or not answering" in explain_connect_error(wrapped(refused), pg)
    missing = psycopg.OperationalError('connection failed: FATAL:  database "halo" does not exist')
    assert "the database 'halo' does not exist" in explain_connect_error(wrapped(missing), pg)
    engine = create_engine(f"sqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'halo.db'}")
    with pytest.raises(DatabaseUnreachable, match="cannot open the SQLite file"):
        connect_check(engine)


# -- SQL Server URLs and connection strings --------------------------------------------------------


def test_driver_by_name():
    url = mssql_url(server="sql01", database="Halo", username="halo", password="p@ss;word}", driver=DRIVER, encrypt="yes", trust_server_certificate=False)
    assert connect_args(url) == (
        "DRIVER={ODBC Driver 18 for SQL Server};Server=sql01;Database=Halo;UID=halo;PWD={p@ss;word}}};"
        "Encrypt=yes;TrustServerCertificate=no"
    )


@pytest.mark.parametrize(
    "server, expected",
    [
        ("sql01,1433", "Server=sql01,1433"),
        ("tcp:sql01,14330", "Server=sql01,14330"),
        ("sql01\\HALO", "Server=sql01\\HALO;"),
        ("sql01\\HALO,50123", "Server=sql01\\HALO,50123"),
        (" sql01.contoso.local ", "Server=sql01.contoso.local;"),
    ],
)
def test_server_forms(server, expected):
    assert expected in connect_args(mssql_url(server=server, database="Halo", username="u", password="p", driver=DRIVER))


def test_bad_port_is_a_config_error():
    with pytest.raises(ConfigError, match="'14x3' is not a port number"):
        mssql_url(server="sql01,14x3", database="Halo", username="u", password="p", driver=DRIVER)


def test_driver_by_path_is_passed_through(tmp_path):
    lib = tmp_path / "libmsodbcsql-18.3.so.2.1"
    lib.write_bytes(b"")
    conn_str = connect_args(mssql_url(server="sql01", database="Halo", username="u", password="p", driver=str(lib)))
    assert conn_str.startswith(f"DRIVER={{{lib}}};Server=sql01;")
    assert "TDS_Version" not in conn_str


def test_freetds_by_path_gets_its_tds_version(tmp_path):
    lib = tmp_path / "libtdsodbc.so"
    lib.write_bytes(b"")
    assert "TDS_Version=7.4" in connect_args(mssql_url(server="sql01,1433", database="Halo", username="u", password="p", driver=str(lib)))
    assert "TDS_Version=7.4" in connect_args(mssql_url(server="sql01,1433", database="Halo", username="u", password="p", driver="FreeTDS"))


def test_a_driver_path_that_does_not_exist_is_refused(tmp_path):
    with pytest.raises(DatabaseUnreachable, match="ODBC driver file not found: .*libmsodbcsql-18.so"):
        mssql_url(server="sql01", database="Halo", username="u", password="p", driver=str(tmp_path / "libmsodbcsql-18.so"))


@pytest.mark.parametrize(
    "driver, is_path",
    [
        (DRIVER, False),
        ("FreeTDS", False),
        ("ODBC Driver 17 for SQL Server", False),
        ("/opt/microsoft/msodbcsql18/lib64/libmsodbcsql-18.3.so.2.1", True),
        ("libtdsodbc.so", True),
        ("C:\\Windows\\System32\\msodbcsql18.dll", True),
        ("/usr/local/lib/libtdsodbc.dylib", True),
    ],
)
def test_driver_names_and_paths_are_told_apart(driver, is_path):
    assert is_driver_path(driver) is is_path


def test_driver_detection_prefers_18_then_17_then_freetds():
    assert detect_driver(["FreeTDS", "ODBC Driver 17 for SQL Server", DRIVER]) == DRIVER
    assert detect_driver(["FreeTDS", "ODBC Driver 17 for SQL Server"]) == "ODBC Driver 17 for SQL Server"
    assert detect_driver(["PostgreSQL Unicode", "FreeTDS"]) == "FreeTDS"
    with pytest.raises(DatabaseUnreachable, match="no SQL Server ODBC driver installed"):
        detect_driver(["PostgreSQL Unicode"])


def test_no_username_means_integrated_authentication():
    conn_str = connect_args(mssql_url(server="sql01", database="Halo", username=None, password=None, driver=DRIVER))
    assert conn_str == "DRIVER={ODBC Driver 18 for SQL Server};Server=sql01;Database=Halo;Trusted_Connection=Yes"


def _settings(**database) -> Settings:
    """Settings as appsettings.json would give them, built without the file-level validation
    (which today still requires Database.Username everywhere)."""
    fields = {"server": "sql01", "name": "Halo", "username": "halo", "password": "S3cret!", "driver": DRIVER, **database}
    return Settings.model_construct(halo_url="https://halo.example.com", database=DatabaseSettings(**fields))


def test_settings_url_from_the_five_fields():
    url = settings_url(_settings(encrypt="strict", trust_server_certificate=True), platform="posix")
    assert connect_args(url) == (
        "DRIVER={ODBC Driver 18 for SQL Server};Server=sql01;Database=Halo;UID=halo;PWD=S3cret!;"
        "Encrypt=strict;TrustServerCertificate=yes"
    )


def test_settings_without_username_on_windows_use_integrated_authentication():
    url = settings_url(_settings(username=None, password="ignored"), platform="nt")
    conn_str = connect_args(url)
    assert "Trusted_Connection=Yes" in conn_str and "UID=" not in conn_str and "PWD=" not in conn_str


def test_settings_without_username_elsewhere_are_a_config_error():
    with pytest.raises(ConfigError, match="Windows integrated authentication works only when halodb runs on Windows"):
        settings_url(_settings(username=" "), platform="posix")


def test_settings_url_prefers_database_url(tmp_path):
    url = f"sqlite:///{tmp_path / 'halo.db'}"
    assert settings_url(Settings.model_construct(database=DatabaseSettings(url=url))) == url


def test_engines_for_sql_server_use_fast_executemany_and_the_login_timeout(monkeypatch):
    seen = {}

    def spy(url, **kwargs):
        seen.update(kwargs)
        return create_engine(url, **kwargs)

    monkeypatch.setattr(database, "create_engine", spy)
    engine = database.engine_for_url(MSSQL, connect_timeout=7)
    assert engine.dialect.fast_executemany is True
    assert seen["connect_args"] == {"timeout": 7} and seen["pool_pre_ping"] is True
    engine.dispose()


def test_validate_names_the_driver(tmp_path):
    assert driver_description(database.engine_for_url(MSSQL)) == f"ODBC driver {DRIVER}"
    assert driver_description(create_engine(f"sqlite:///{tmp_path / 'x.db'}")) == "DBAPI sqlite3"
    assert driver_description(create_engine("postgresql+psycopg://postgres@127.0.0.1/test")) == f"DBAPI psycopg {psycopg.__version__}"


@pytest.mark.skipif(os.name == "nt", reason="checks the non-Windows default")
def test_engine_from_settings_without_username_refuses_here():
    with pytest.raises(ConfigError):
        database.engine_from_settings(_settings(username=None))


# -- the SQL Server test fixture (tests/conftest.py) -----------------------------------------------


def test_docker_detection_does_not_hang_on_a_silent_daemon(monkeypatch):
    """A DOCKER_HOST that accepts connections but never answers costs the timeout, no more."""
    import socket
    import time

    from tests.conftest import _docker_unavailable

    with socket.create_server(("127.0.0.1", 0)) as silent:
        monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{silent.getsockname()[1]}")
        started = time.monotonic()
        assert _docker_unavailable(timeout=1.0)
        assert time.monotonic() - started < 5
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:1")  # nothing listens: refused at once
    assert _docker_unavailable(timeout=1.0)


@pytest.mark.slow
@pytest.mark.parametrize("required", [False, True], ids=["skips", "fails-when-required"])
def test_mssql_without_a_server_skips_with_one_line_or_fails_when_required(required):
    """No HALODB_TEST_MSSQL_URL and no Docker daemon: the mssql cases skip with one reason, or
    fail when HALODB_REQUIRE_BACKENDS names mssql."""
    import subprocess
    import sys
    from pathlib import Path

    env = {k: v for k, v in os.environ.items() if k not in ("HALODB_TEST_MSSQL_URL", "HALODB_REQUIRE_BACKENDS")}
    env["DOCKER_HOST"] = "tcp://127.0.0.1:1"
    if required:
        env["HALODB_REQUIRE_BACKENDS"] = "mssql"
    repo = Path(__file__).resolve().parent.parent
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "tests/test_validate.py", "-k", "mssql"],
        cwd=repo, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    reason = "no SQL Server: set HALODB_TEST_MSSQL_URL or run a Docker daemon (DockerException)"
    if required:
        assert result.returncode == 1, result.stdout
        assert f"mssql is required (HALODB_REQUIRE_BACKENDS) but unavailable: {reason}" in result.stdout
    else:
        assert result.returncode == 0, result.stdout
        skips = [line for line in result.stdout.splitlines() if line.startswith("SKIPPED")]
        assert skips and all(line.endswith(f"mssql unavailable: {reason}") for line in skips), result.stdout


def test_a_driver_that_cannot_load_is_not_retried():
    # unixODBC says 01000 "Can't open lib"; SQLAlchemy marks 01000 as a disconnect, which would
    # otherwise count as transient and cost the backoff of every retry.
    orig = pyodbc.Error("01000", "[01000] [unixODBC][Driver Manager]Can't open lib 'ODBC Driver 18 for SQL Server' : file not found (0) (SQLDriverConnect)")
    err = DBAPIError("SELECT 1", None, orig, connection_invalidated=True)
    assert not is_transient(err)
    missing = pyodbc.InterfaceError("IM002", "[IM002] [unixODBC][Driver Manager]Data source name not found and no default driver specified (0) (SQLDriverConnect)")
    assert not is_transient(DBAPIError("SELECT 1", None, missing))


def test_the_driver_inside_odbc_connect_is_the_one_named():
    url = make_url("mssql+pyodbc:///?odbc_connect=" + quote_plus("DRIVER={ODBC Driver 17 for SQL Server};SERVER=sql01;PWD=x;"))
    orig = pyodbc.Error("01000", "[01000] [unixODBC][Driver Manager]Can't open lib 'ODBC Driver 17 for SQL Server' : file not found (0) (SQLDriverConnect)")
    message = explain_connect_error(DBAPIError("connect", None, orig), url)
    assert "the ODBC driver 'ODBC Driver 17 for SQL Server' cannot be loaded" in message
    assert "PWD=x" not in message and "PWD%3Dx" not in message
