"""Shared fixtures: one parametrised Halo database per test on every backend that can run here.

Backends: SQLite (always), PostgreSQL at 127.0.0.1:5432 (every development and CI machine has
one), SQL Server when ``HALODB_TEST_MSSQL_URL`` names one or, failing that, in a throwaway
SQL Server 2022 container (testcontainers) wherever a Docker daemon answers. A backend listed in
``HALODB_REQUIRE_BACKENDS`` (comma-separated) fails the test when unreachable instead of skipping.

On SQL Server every test gets a database of its own (created on the server the URL names, so
that login needs CREATE DATABASE), as on PostgreSQL every test gets a schema of its own.
"""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url

from halodb import migrate
from halodb.database import engine_for_url
from halodb.halo.fixture import create_halo_fixture

PG_ADMIN_URL = os.environ.get("HALODB_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REQUIRED = {b.strip() for b in os.environ.get("HALODB_REQUIRE_BACKENDS", "").split(",") if b.strip()}
BACKENDS = ["sqlite", "postgresql", "mssql"]
MSSQL_IMAGE = "mcr.microsoft.com/mssql/server:2022-latest"
MSSQL_DRIVER = "ODBC Driver 18 for SQL Server"
MSSQL_TEST_DATABASE = "halodb_test"


def _unavailable(backend: str, reason: str):
    if backend in REQUIRED:
        pytest.fail(f"{backend} is required (HALODB_REQUIRE_BACKENDS) but unavailable: {reason}")
    pytest.skip(f"{backend} unavailable: {reason}")


def use_test_postgresql_for_benchmarks(monkeypatch) -> None:
    """Point ``python -m benchmarks`` (and the Azure AD benchmark, which reads the same
    ``PG_URL``) at the suite's PostgreSQL; unreachable, it skips the test - or fails it when
    ``HALODB_REQUIRE_BACKENDS`` names postgresql. The benchmark makes its own schemas."""
    from benchmarks import __main__ as benchmarks_main

    monkeypatch.setattr(benchmarks_main, "PG_URL", PG_ADMIN_URL)
    engine = create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as err:  # noqa: BLE001 - any failure means "not reachable here"
        _unavailable("postgresql", (str(err).splitlines() or [type(err).__name__])[0])
    finally:
        engine.dispose()


@contextmanager
def fresh_pg_schema(prefix: str = "t"):
    """A fresh PostgreSQL schema, reached through search_path: yields (name, URL string), drops
    the schema afterwards. Unreachable PostgreSQL skips - or fails when it is required."""
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f"CREATE SCHEMA {name}"))
    except Exception as err:  # noqa: BLE001 - any failure means "not reachable here"
        admin.dispose()
        _unavailable("postgresql", str(err).splitlines()[0])
    url = make_url(PG_ADMIN_URL).update_query_dict({"options": f"-csearch_path={name}"})
    try:
        yield name, url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP SCHEMA {name} CASCADE"))
        admin.dispose()


@pytest.fixture(params=BACKENDS)
def db_url(request, tmp_path):
    """The URL of an empty database on each backend."""
    backend = request.param
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'halo.db'}"
    elif backend == "postgresql":
        with fresh_pg_schema() as (_, url):
            yield url
    else:
        with fresh_mssql_database(request.getfixturevalue("mssql_server")) as url:
            yield url


# -- SQL Server ----------------------------------------------------------------------------------


def _docker_unavailable(timeout: float = 3.0) -> str | None:
    """Why no Docker daemon can be used (None: one answered). Bounded by ``timeout`` seconds."""
    try:
        import docker
        from testcontainers.community.mssql import SqlServerContainer  # noqa: F401 - the module the fixture needs
    except ImportError as err:
        return f"{err.name} is not installed"
    try:
        client = docker.from_env(timeout=timeout)  # asks the daemon for its API version: fails fast without one
        try:
            client.ping()
        finally:
            client.close()
    except Exception as err:  # noqa: BLE001 - DockerException, a timeout, a refused socket: all "no Docker"
        return type(err).__name__
    return None


def _mssql_driver_missing() -> str | None:
    try:
        import pyodbc
    except ImportError as err:
        return f"pyodbc cannot load ({err})"
    return None if MSSQL_DRIVER in pyodbc.drivers() else f"'{MSSQL_DRIVER}' is not installed (msodbcsql18)"


@pytest.fixture(scope="session")
def mssql_server():
    """The URL of a SQL Server database to work from: ``HALODB_TEST_MSSQL_URL``, or a database
    ``halodb_test`` in a SQL Server 2022 container started once per session where Docker runs.
    Neither: skip (fail when mssql is required) with one line."""
    given = os.environ.get("HALODB_TEST_MSSQL_URL")
    if given:
        yield make_url(given)
        return
    why = _docker_unavailable()
    if why:
        _unavailable("mssql", f"no SQL Server: set HALODB_TEST_MSSQL_URL or run a Docker daemon ({why})")
    missing = _mssql_driver_missing()
    if missing:
        _unavailable("mssql", f"a Docker daemon runs, but {missing}")
    from testcontainers.community.mssql import SqlServerContainer

    password = "Halodb-Test-Pw1"  # throwaway: the container lives for this test session only
    container = SqlServerContainer(MSSQL_IMAGE, password=password, dialect="mssql+pyodbc")
    try:
        container.start()  # waits until sqlcmd inside the container answers
    except Exception as err:  # noqa: BLE001 - a failed pull or start means "not available here"
        _unavailable("mssql", f"the SQL Server container did not start: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
    try:
        server = URL.create(
            "mssql+pyodbc", username="sa", password=password, host=container.get_container_host_ip(),
            port=int(container.get_exposed_port(1433)), database="master",
            query={"driver": MSSQL_DRIVER, "TrustServerCertificate": "yes"},
        )  # fmt: skip
        admin = create_engine(server, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(text(f"IF DB_ID(N'{MSSQL_TEST_DATABASE}') IS NULL CREATE DATABASE [{MSSQL_TEST_DATABASE}]"))
        finally:
            admin.dispose()
        yield server.set(database=MSSQL_TEST_DATABASE)
    finally:
        container.stop()


@contextmanager
def fresh_mssql_database(server: URL, prefix: str = "t"):
    """A fresh SQL Server database beside the one ``server`` names: yields its URL string (with the
    password), drops it afterwards. A server that refuses skips - or fails when it is required."""
    admin = create_engine(server, isolation_level="AUTOCOMMIT", connect_args={"timeout": 15})
    name = f"halodb_{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE [{name}]"))
    except Exception as err:  # noqa: BLE001 - any failure means "not usable here"
        admin.dispose()
        _unavailable("mssql", (str(err).splitlines() or [type(err).__name__])[0])
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:  # engines a test left open must not keep the database alive
            conn.execute(text(f"ALTER DATABASE [{name}] SET SINGLE_USER WITH ROLLBACK IMMEDIATE"))
            conn.execute(text(f"DROP DATABASE [{name}]"))
        admin.dispose()


@pytest.fixture
def halo(db_url):
    """An engine on a Halo fixture database with halodb's own tables migrated."""
    engine = engine_for_url(db_url)
    create_halo_fixture(engine)
    migrate.upgrade(engine)
    yield engine
    engine.dispose()
