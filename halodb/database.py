"""The database layer: an SQLAlchemy engine for the Halo database, from appsettings.json.

Production is SQL Server through pyodbc: the URL is built with ``URL.create`` from the five
fields (``host``, ``host,port``, ``tcp:host,port`` or a named instance ``HOST\\INSTANCE``; the
ODBC driver detected - Driver 18, 17, then FreeTDS - unless ``Database.Driver`` names one, by its
registered name or by the path of the driver library). With no ``Database.Username`` the
connection uses Windows integrated authentication (``Trusted_Connection=Yes``), which halodb
allows only when it runs on Windows (see ``settings_url``). ``Database.Url`` takes any SQLAlchemy
URL instead: the embedded SQLite demo, or PostgreSQL for development.
"""

from __future__ import annotations

import logging
import os
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import DBAPIError, OperationalError

from halodb.config import mask_odbc_password
from halodb.errors import ConfigError, DatabaseUnreachable

log = logging.getLogger(__name__)

#: ODBC drivers in order of preference (FreeTDS last: SQLAlchemy advises against it with pyodbc).
PREFERRED_DRIVERS = ("ODBC Driver 18 for SQL Server", "ODBC Driver 17 for SQL Server", "FreeTDS")

# SQL Server error numbers worth another try: deadlock victim, lock timeout, Azure SQL's
# "database unavailable / busy / resource limit" family.
TRANSIENT_MSSQL_ERRORS = {1205, 1222, 1204, 4060, 40613, 40197, 40501, 40540, 40143, 10928, 10929, 233, 64, 10053, 10054, 10060}
TRANSIENT_SQLSTATES = {"08S01", "08001", "HYT00", "HYT01", "40001", "40P01", "55P03", "57P01"}
# What a failed connection's message says, for the failures no retry can cure.
_DRIVER_MISSING = r"\bIM002\b|data source name not found|no default driver specified"
_DRIVER_BROKEN = r"can't open lib|file not found.*SQLDriverConnect"
_UNTRUSTED = r"certificate|SSL Provider"
# 08001 ("cannot connect") is mostly a server restarting or failing over - except when the TLS
# handshake refused the certificate, which no retry fixes.
#: Failures no retry can cure, whatever SQLSTATE they come with: an untrusted certificate, and a
#: driver that is not installed or cannot load (unixODBC reports "Can't open lib" as 01000, which
#: SQLAlchemy's pyodbc dialect counts as a disconnect).
NEVER_TRANSIENT = re.compile("|".join((_UNTRUSTED, _DRIVER_MISSING, _DRIVER_BROKEN)), re.I)
# A Database.Driver that names a file (the driver library) rather than a registered driver name.
_DRIVER_PATH = re.compile(r"[/\\]|\.(so(\.\d+)*|dll|dylib)$", re.I)

T = TypeVar("T")


def detect_driver(available: list[str] | None = None) -> str:
    """The best installed SQL Server ODBC driver; ``DatabaseUnreachable`` if there is none."""
    if available is None:
        try:
            import pyodbc

            available = pyodbc.drivers()
        except ImportError as err:  # libodbc.so.2 missing: pyodbc cannot even load
            raise DatabaseUnreachable(
                f"pyodbc cannot load ({err})", hint="install unixODBC (apt-get install unixodbc)"
            ) from None
    for name in PREFERRED_DRIVERS:
        if name in available:
            return name
    raise DatabaseUnreachable(
        "no SQL Server ODBC driver installed",
        hint="install 'ODBC Driver 18 for SQL Server' (msodbcsql18) or FreeTDS, or set Database.Driver",
    )


def is_driver_path(driver: str) -> bool:
    """Whether ``Database.Driver`` is the path of a driver library rather than a registered name."""
    return bool(_DRIVER_PATH.search(driver.strip()))


def mssql_url(
    *,
    server: str,
    database: str,
    username: str | None,
    password: str | None,
    driver: str | None = None,
    encrypt: str | None = None,
    trust_server_certificate: bool | None = None,
) -> URL:
    """An ``mssql+pyodbc`` URL. ``server`` may be ``host``, ``host,port``, ``tcp:host,port`` or
    ``host\\INSTANCE`` (``host\\INSTANCE,port`` skips the SQL Browser lookup).

    ``driver``: a registered ODBC driver name, or the path of the driver library (``.so``/``.dll``),
    which ODBC accepts in ``DRIVER=`` as well; a path that does not exist fails here. No
    ``username``: SQLAlchemy's pyodbc dialect adds ``Trusted_Connection=Yes`` (integrated
    authentication: the Windows account, or a Kerberos ticket with the Microsoft driver elsewhere).
    """
    driver = (driver or "").strip() or detect_driver()
    if is_driver_path(driver) and not os.path.isfile(driver):
        raise DatabaseUnreachable(
            f"ODBC driver file not found: {driver}",
            hint="Database.Driver takes an installed driver's name (e.g. 'ODBC Driver 18 for SQL Server') or the path of its library",
        )
    server = server.strip()
    if server[:4].lower() == "tcp:":  # ODBC's protocol prefix; TCP is what the Linux drivers speak anyway
        server = server[4:]
    host, port = server, None
    if "," in server:  # SQL Server's own host,port spelling
        host, _, port_text = server.partition(",")
        try:
            port = int(port_text)
        except ValueError:
            raise ConfigError(f"Database.Server: {port_text.strip()!r} is not a port number (expected host,port)") from None
    query = {"driver": driver}
    if encrypt:
        query["Encrypt"] = encrypt
    if trust_server_certificate is not None:
        query["TrustServerCertificate"] = "yes" if trust_server_certificate else "no"
    if is_freetds(driver):
        query["TDS_Version"] = "7.4"
    return URL.create("mssql+pyodbc", username=username or None, password=password or None, host=host, port=port, database=database, query=query)


def is_freetds(driver: str) -> bool:
    """FreeTDS by its registered name or its library (``libtdsodbc.so``)."""
    low = driver.lower()
    return "freetds" in low or "tdsodbc" in low


def engine_for_url(url: str | URL, *, connect_timeout: int = 15, echo: bool = False, sqlite_wal: bool = True) -> Engine:
    """An engine with the options each backend needs; nothing is connected yet.

    ``sqlite_wal=False`` for someone else's SQLite file (a SQL import's source): WAL mode is a
    lasting change to the file, only made to databases halodb writes."""
    url = make_url(url)
    backend = url.get_backend_name()
    kwargs: dict = {"pool_pre_ping": True, "echo": echo}
    if backend == "mssql":
        kwargs["fast_executemany"] = True
        kwargs["connect_args"] = {"timeout": connect_timeout}
    elif backend == "postgresql":
        # No server-side prepared statements: after 5 runs psycopg would prepare the batch
        # lookups, and PostgreSQL's generic plan for a 2,000-value IN list scans instead of
        # probing the index (benchmarks/RESULTS.md: 96 of 129 s of a 100,000-user first load).
        kwargs["connect_args"] = {"connect_timeout": connect_timeout, "prepare_threshold": None}
    elif backend == "sqlite":
        # Several scheduled instances may share one demo file: wait for the write lock.
        kwargs["connect_args"] = {"timeout": 30}
    engine = create_engine(url, **kwargs)
    if backend == "sqlite":
        event.listen(engine, "connect", _sqlite_unicode_lower)
        if sqlite_wal:
            event.listen(engine, "connect", _sqlite_wal)
    return engine


def _sqlite_unicode_lower(dbapi_conn, _record) -> None:
    # SQLite's own lower() folds ASCII only; match keys must fold "Żabka" like SQL Server does.
    dbapi_conn.create_function("lower", 1, lambda s: s.lower() if isinstance(s, str) else s, deterministic=True)


def _sqlite_wal(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer
    cur.close()


def settings_url(settings, *, platform: str | None = None) -> URL | str:
    """The URL ``appsettings.json`` describes: ``Database.Url``, or one built from the fields.

    No ``Database.Username`` means Windows integrated authentication, which halodb offers only on
    Windows (``platform`` is ``os.name``; a parameter for tests). Elsewhere the Microsoft driver
    would try Kerberos, which needs a ticket cache kept fresh outside halodb (kinit, a keytab,
    krb5.conf): an unattended job that fails once the ticket expires. Whoever has set that up
    can still ask for it explicitly with a ``Database.Url`` without a user name."""
    db = settings.database
    url = settings.database_url_resolved()
    if url is not None:
        return url
    password = db.password.get_secret_value() if hasattr(db.password, "get_secret_value") else db.password
    if not (db.username or "").strip():
        if (platform or os.name) != "nt":
            raise ConfigError(
                "Database.Username is empty: Windows integrated authentication works only when halodb runs on Windows",
                hint="set Database.Username and Database.Password, or a Database.Url",
            )
        password = None  # Trusted_Connection: a password alone means nothing
    return mssql_url(
        server=db.server,
        database=db.name,
        username=db.username,
        password=password,
        driver=db.driver,
        encrypt=db.encrypt,
        trust_server_certificate=db.trust_server_certificate,
    )


def engine_from_settings(settings) -> Engine:
    """The engine ``appsettings.json`` describes (``Database.Url`` or the five fields)."""
    return engine_for_url(settings_url(settings), connect_timeout=settings.database.connect_timeout or 15)


def is_transient(err: BaseException) -> bool:
    """Whether a database error is worth retrying: deadlocks, timeouts, dropped links, throttling."""
    orig = getattr(err, "orig", err)
    message = str(orig)
    if NEVER_TRANSIENT.search(message):
        return False
    if isinstance(err, DBAPIError) and err.connection_invalidated:
        return True
    sqlstate = getattr(orig, "sqlstate", None)  # psycopg
    if sqlstate is None and getattr(orig, "args", None):
        first = orig.args[0]
        sqlstate = first if isinstance(first, str) and len(first) == 5 else None  # pyodbc
    if sqlstate in TRANSIENT_SQLSTATES:
        return True
    if mssql_error_numbers(message) & TRANSIENT_MSSQL_ERRORS:
        return True
    return "database is locked" in message  # SQLite writer contention


# pyodbc ends each diagnostic record with the native error number: "... (1205) (SQLExecDirectW)",
# further records joined with "; ". Only that position counts: "The duplicate key value is (1205)."
# inside a message is data, not an error number.
_NATIVE_ERROR = re.compile(r"\((-?\d+)\)(?=\s*(?:\(SQL\w+\)|;|['\")]*$))")


def mssql_error_numbers(message: str) -> set[int]:
    """SQL Server's native error numbers in a pyodbc message: ``... was deadlocked ... (1205) (SQLExecDirectW)``."""
    return {int(n) for n in _NATIVE_ERROR.findall(message)}


def connect_check(engine: Engine, attempts: int = 3, sleep: Callable[[float], None] = time.sleep) -> None:
    """Prove the database answers, or raise ``DatabaseUnreachable`` with a one-line explanation.

    Transient failures are retried with backoff - except connection failures (``OperationalError``:
    server down, not found, timed out), where each try may already have waited the whole login
    timeout: those are explained at once."""
    try:
        with_retry(lambda: _ping(engine), attempts=attempts, sleep=sleep, retry_if=_retry_connect)
    except DBAPIError as err:
        raise DatabaseUnreachable(explain_connect_error(err, engine.url)) from None


def _ping(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def _retry_connect(err: DBAPIError) -> bool:
    return is_transient(err) and not isinstance(err, OperationalError)


def with_retry(
    work: Callable[[], T],
    *,
    attempts: int = 3,
    sleep: Callable[[float], None] = time.sleep,
    retry_if: Callable[[DBAPIError], bool] = is_transient,
    jitter: Callable[[], float] = random.random,
) -> T:
    """Run ``work``; retry transient database errors with capped exponential backoff and jitter.

    The n-th retry waits ``min(30, 0.5 * 2**n)`` seconds times a random factor in [0.5, 1.5), so
    several instances that failed together do not retry in step. After ``attempts`` tries the
    last error is raised."""
    for attempt in range(1, attempts + 1):
        try:
            return work()
        except DBAPIError as err:
            if attempt == attempts or not retry_if(err):
                raise
            delay = min(30.0, 0.5 * 2**attempt) * (0.5 + jitter())
            log.warning("transient database error, retrying in %.1fs: %s", delay, (str(err.orig).splitlines() or [""])[0])
            sleep(delay)
    raise AssertionError("unreachable")


def driver_description(engine: Engine) -> str:
    """What ``halodb validate`` names: the ODBC driver for SQL Server, the DBAPI module otherwise."""
    driver = engine.url.query.get("driver")
    if engine.dialect.name == "mssql" and driver:
        return f"ODBC driver {driver}"
    dbapi = getattr(engine.dialect, "dbapi", None)
    name = (getattr(dbapi, "__name__", None) or engine.dialect.driver).split(".")[0]  # sqlite3.dbapi2 -> sqlite3
    version = None if name == "sqlite3" else getattr(dbapi, "__version__", None)  # sqlite3's own is a stale 2.6.0
    return f"DBAPI {name}" + (f" {version}" if isinstance(version, str) else "")


@dataclass(frozen=True)
class ConnectSettings:
    """Where each part of a connection is configured, as a connect error's hint names it."""

    driver: str = "Database.Driver"
    database: str = "Database.Name"
    login: str = "Database.Username and Database.Password (and that the server allows SQL logins)"
    tls: str = "Database.TrustServerCertificate (or Database.Encrypt)"
    url: str = "Database.Url"
    server: str = "Database.Server (host, host,port or host\\INSTANCE)"


#: The instance database's settings in appsettings.json.
APPSETTINGS = ConnectSettings()

# What a failed connection's message says -> what to check. First match wins: 4060's text also
# says "The login failed", and a certificate failure also carries SQLSTATE 08001. The {…_setting}
# fields are a ConnectSettings' names.
_CONNECT_ERRORS: list[tuple[re.Pattern, str]] = [
    (
        re.compile(_DRIVER_MISSING, re.I),
        "the ODBC driver {driver} is not installed{installed}: install 'ODBC Driver 18 for SQL Server' (msodbcsql18) or set {driver_setting}",
    ),
    (
        re.compile(_DRIVER_BROKEN, re.I),
        "the ODBC driver {driver} cannot be loaded (its library or a library it needs is missing): reinstall the driver or fix {driver_setting}",
    ),
    (
        re.compile(r"\(4060\)|cannot open database .* requested by the login|database \".*\" does not exist", re.I),
        "the database {database} does not exist or this login may not open it: check {database_setting} and the login's access to it",
    ),
    (
        re.compile(r"\(18456\)|login failed|password authentication failed", re.I),
        "login failed: check {login_setting}",
    ),
    (
        re.compile(_UNTRUSTED, re.I),
        "the server's TLS certificate is not trusted: install a certificate the client trusts, or set {tls_setting}",
    ),
    (
        re.compile(r"unable to open database file", re.I),
        "cannot open the SQLite file: check the path in {url_setting}",
    ),
    (
        re.compile(
            r"TCP Provider|Named Pipes Provider|not found or (was )?not accessible|server not found|"
            r"login timeout expired|timeout expired|could not open a connection|could not translate host|"
            r"name or service not known|connection refused|could not connect|\b08001\b",
            re.I,
        ),
        "server not found or not answering: check {server_setting}, that SQL Server accepts TCP connections, and the firewall",
    ),
]


def explain_connect_error(err: DBAPIError, url: URL, settings: ConnectSettings = APPSETTINGS) -> str:
    """One line that says what went wrong connecting and what to check; ``settings`` names where
    the connection is configured (default: the instance database in appsettings.json)."""
    orig = getattr(err, "orig", err)
    text_ = str(orig)
    args = getattr(orig, "args", ())
    if len(args) == 2 and all(isinstance(a, str) for a in args):  # pyodbc: (SQLSTATE, message)
        text_ = args[1]
    where = mask_odbc_password(url.render_as_string(hide_password=True))
    fields = {
        "driver": repr(url.query.get("driver") or _odbc_connect_driver(url) or url.drivername),
        "database": repr(url.database or ""),
        "installed": _installed_drivers(),
        **{f"{name}_setting": value for name, value in vars(settings).items()},
    }
    for pattern, reason in _CONNECT_ERRORS:
        if pattern.search(text_):
            return f"cannot connect to {where}: {reason.format(**fields)}"
    lines = [line for line in text_.strip().splitlines() if line.strip()]
    return f"cannot connect to {where}: {lines[0] if lines else type(err).__name__}"


def _odbc_connect_driver(url: URL) -> str | None:
    """The DRIVER named inside an ``odbc_connect`` connection string, if the URL has one."""
    match = re.search(r"(?i)(?:^|;)\s*driver\s*=\s*(\{[^}]*\}|[^;]*)", str(url.query.get("odbc_connect") or ""))
    return match[1].strip().strip("{}") if match else None


def _installed_drivers() -> str:
    try:
        import pyodbc

        names = [n for n in pyodbc.drivers() if "sql server" in n.lower() or "tds" in n.lower()]
    except ImportError:
        return ""
    return f" (installed: {', '.join(names)})" if names else " (no SQL Server ODBC driver is installed)"
