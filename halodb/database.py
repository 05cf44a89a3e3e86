"""The database layer: an SQLAlchemy engine for the Halo database, from appsettings.json.

Production is SQL Server through pyodbc: the URL is built with ``URL.create`` from the five
fields (named instances ``HOST\\INSTANCE``; the ODBC driver detected - Driver 18, 17, then
FreeTDS - unless ``Database.Driver`` names one). ``Database.Url`` takes any SQLAlchemy URL
instead: the embedded SQLite demo, or PostgreSQL for development.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import DBAPIError, OperationalError

from halodb.errors import DatabaseUnreachable

log = logging.getLogger(__name__)

#: ODBC drivers in order of preference (FreeTDS last: SQLAlchemy advises against it with pyodbc).
PREFERRED_DRIVERS = ("ODBC Driver 18 for SQL Server", "ODBC Driver 17 for SQL Server", "FreeTDS")

# SQL Server error numbers worth another try: deadlock victim, lock timeout, Azure SQL's
# "database unavailable / busy / resource limit" family.
TRANSIENT_MSSQL_ERRORS = {1205, 1222, 1204, 4060, 40613, 40197, 40501, 40540, 40143, 10928, 10929, 233, 64, 10053, 10054, 10060}
TRANSIENT_SQLSTATES = {"08S01", "08001", "HYT00", "HYT01", "40001", "40P01", "55P03", "57P01"}

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
    """An ``mssql+pyodbc`` URL. ``server`` may be ``host``, ``host,port`` or ``host\\INSTANCE``."""
    driver = driver or detect_driver()
    host, port = server, None
    if "," in server:  # SQL Server's own host,port spelling
        host, _, port_text = server.partition(",")
        port = int(port_text)
    query = {"driver": driver}
    if encrypt:
        query["Encrypt"] = encrypt
    if trust_server_certificate is not None:
        query["TrustServerCertificate"] = "yes" if trust_server_certificate else "no"
    if "freetds" in driver.lower():
        query["TDS_Version"] = "7.4"
    return URL.create("mssql+pyodbc", username=username or None, password=password or None, host=host, port=port, database=database, query=query)


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


def engine_from_settings(settings) -> Engine:
    """The engine ``appsettings.json`` describes (``Database.Url`` or the five fields)."""
    db = settings.database
    url = settings.database_url_resolved()
    if url is None:
        url = mssql_url(
            server=db.server,
            database=db.name,
            username=db.username,
            password=db.password.get_secret_value() if hasattr(db.password, "get_secret_value") else db.password,
            driver=db.driver,
            encrypt=db.encrypt,
            trust_server_certificate=db.trust_server_certificate,
        )
    return engine_for_url(url, connect_timeout=db.connect_timeout or 15)


def is_transient(err: BaseException) -> bool:
    """Whether a database error is worth retrying: deadlocks, timeouts, dropped links, throttling."""
    if isinstance(err, DBAPIError) and err.connection_invalidated:
        return True
    orig = getattr(err, "orig", err)
    sqlstate = getattr(orig, "sqlstate", None)  # psycopg
    if sqlstate is None and getattr(orig, "args", None):
        first = orig.args[0]
        sqlstate = first if isinstance(first, str) and len(first) == 5 else None  # pyodbc
    if sqlstate in TRANSIENT_SQLSTATES:
        return True
    numbers = {int(n) for n in re.findall(r"\((\d+)\)", str(orig))}  # pyodbc: "... (1205) (SQLExecDirectW)"
    if numbers & TRANSIENT_MSSQL_ERRORS:
        return True
    return "database is locked" in str(orig)  # SQLite writer contention


def connect_check(engine: Engine, attempts: int = 3, sleep: Callable[[float], None] = time.sleep) -> None:
    """Prove the database answers; retry transient failures with backoff, then explain in one line."""
    with_retry(lambda: _ping(engine), attempts=attempts, sleep=sleep)


def _ping(engine: Engine) -> None:
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except DBAPIError as err:
        if is_transient(err) and not isinstance(err, OperationalError):
            raise
        raise DatabaseUnreachable(explain_connect_error(err, engine.url)) from None


def with_retry(work: Callable[[], T], *, attempts: int = 3, sleep: Callable[[float], None] = time.sleep) -> T:
    """Run ``work``; retry transient database errors with capped exponential backoff and jitter."""
    for attempt in range(1, attempts + 1):
        try:
            return work()
        except DBAPIError as err:
            if attempt == attempts or not is_transient(err):
                raise
            delay = min(30.0, 0.5 * 2**attempt) * (0.5 + random.random())
            log.warning("transient database error, retrying in %.1fs: %s", delay, str(err.orig).splitlines()[0])
            sleep(delay)
    raise AssertionError("unreachable")


def explain_connect_error(err: DBAPIError, url: URL) -> str:
    """One line that says what went wrong connecting and what to check."""
    text_ = str(getattr(err, "orig", err))
    where = url.render_as_string(hide_password=True)
    low = text_.lower()
    if "login failed" in low or "password authentication failed" in low:
        reason = "login failed: check Database.Username and Database.Password"
    elif "certificate" in low:
        reason = "the server's TLS certificate is not trusted: install a trusted certificate or set Database.TrustServerCertificate"
    elif "unable to open database file" in low:
        reason = "cannot open the SQLite file: check the path in Database.Url"
    elif any(s in low for s in ("server not found", "could not translate host", "name or service not known", "login timeout", "connection refused", "could not connect", "timeout expired")):
        reason = "server not found or not answering: check Database.Server (host, host,port or host\\INSTANCE) and the firewall"
    else:
        reason = text_.strip().splitlines()[0] if text_.strip() else type(err).__name__
    return f"cannot connect to {where}: {reason}"
