"""halodb's own schema (``halodb_*`` tables) managed with alembic, run from code.

A scheduled run calls ``upgrade`` before it syncs, so a new halodb version brings its tables
along by itself. Halo's tables are never touched here.
"""

from __future__ import annotations

import io
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine

import halodb.migrations
from halodb.state.tables import VERSION_TABLE

SCRIPT_LOCATION = str(Path(halodb.migrations.__file__).parent)


def _config(connection: Connection | None = None, url: str | None = None, output=None) -> Config:
    cfg = Config(output_buffer=output or io.StringIO())
    cfg.set_main_option("script_location", SCRIPT_LOCATION)
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))  # ConfigParser interpolation
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head() -> str:
    """The newest revision this version of halodb knows."""
    return ScriptDirectory.from_config(_config()).get_current_head()


def current(engine: Engine) -> str | None:
    """The revision the database is at, or None when halodb's tables were never created."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str]:
    """Apply pending migrations in one transaction; return (revision before, revision after)."""
    before = current(engine)
    with engine.begin() as conn:
        command.upgrade(_config(conn), revision)
    return before, current(engine)


def offline_sql(url: str, revision: str = "head") -> str:
    """The DDL ``upgrade`` would run on a database of ``url``'s dialect, without connecting."""
    out = io.StringIO()
    command.upgrade(_config(url=url, output=out), revision, sql=True)
    return out.getvalue()
