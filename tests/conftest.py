"""Shared fixtures: one parametrised Halo database per test on every backend that can run here.

Backends: SQLite (always), PostgreSQL at 127.0.0.1:5432 (every development and CI machine has
one), SQL Server when ``HALODB_TEST_MSSQL_URL`` names one. A backend listed in
``HALODB_REQUIRE_BACKENDS`` (comma-separated) fails the test when unreachable instead of skipping.
"""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from halodb import migrate
from halodb.database import engine_for_url
from halodb.halo.fixture import create_halo_fixture

PG_ADMIN_URL = os.environ.get("HALODB_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REQUIRED = {b.strip() for b in os.environ.get("HALODB_REQUIRE_BACKENDS", "").split(",") if b.strip()}
BACKENDS = ["sqlite", "postgresql", "mssql"]


def _unavailable(backend: str, reason: str):
    if backend in REQUIRED:
        pytest.fail(f"{backend} is required (HALODB_REQUIRE_BACKENDS) but unavailable: {reason}")
    pytest.skip(f"{backend} unavailable: {reason}")


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
        mssql = os.environ.get("HALODB_TEST_MSSQL_URL")
        if not mssql:
            _unavailable("mssql", "set HALODB_TEST_MSSQL_URL to run against SQL Server")
        yield mssql


@pytest.fixture
def halo(db_url):
    """An engine on a Halo fixture database with halodb's own tables migrated."""
    engine = engine_for_url(db_url)
    create_halo_fixture(engine)
    migrate.upgrade(engine)
    yield engine
    engine.dispose()
