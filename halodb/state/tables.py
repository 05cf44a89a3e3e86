"""halodb's own tables (``halodb_*``), kept in the Halo database so that sync state commits in
the same transaction as the Halo rows it describes. Created by the alembic migrations in
``migrations/``; these declarations are what the code queries and what autogenerate compares.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Column, DateTime, Index, Integer, MetaData, String, Table, Unicode, UniqueConstraint

# Named constraints: SQL Server needs a constraint's name to drop it, and so does SQLite's batch mode.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

VERSION_TABLE = "halodb_alembic_version"


def _bytewise_on_postgresql(type_: Unicode) -> Unicode:
    """``type_``, compared bytewise on PostgreSQL (the ``C`` collation; migration 0005)."""
    return type_.with_variant(Unicode(type_.length, collation="C"), "postgresql")


def _scope(primary_key: bool = False, *, bytewise: bool = False) -> list[Column]:
    # (integration, connection, entity) names one stream of records: "SqlImport", "3", "Users".
    kind = _bytewise_on_postgresql if bytewise else (lambda type_: type_)
    return [
        Column("integration", kind(Unicode(50)), nullable=False, primary_key=primary_key),
        Column("connection", kind(Unicode(100)), nullable=False, primary_key=primary_key),
        Column("entity", kind(Unicode(50)), nullable=False, primary_key=primary_key),
    ]


run = Table(
    "halodb_run",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("instance", Unicode(100), nullable=False),
    *_scope(),
    Column("started", DateTime, nullable=False),
    Column("finished", DateTime),
    Column("status", Unicode(20), nullable=False),  # running, ok, failed, held-back, dry-run
    Column("halo_table", Unicode(50)),  # the Halo table the entity writes, as audit rows name it (0004)
    Column("dry_run", Boolean, nullable=False, default=False),
    Column("fetched", Integer, nullable=False, default=0),
    Column("created", Integer, nullable=False, default=0),
    Column("updated", Integer, nullable=False, default=0),
    Column("unchanged", Integer, nullable=False, default=0),
    Column("deactivated", Integer, nullable=False, default=0),
    Column("held_back", Integer, nullable=False, default=0),
    Column("quarantined", Integer, nullable=False, default=0),
    Column("error", Unicode(4000)),
    Column("host", Unicode(255)),
    Column("pid", Integer),
    Index(None, "integration", "connection", "entity", "started"),
)

#: Source keys compare exactly on every backend; on SQL Server that takes a binary collation
#: (migration 0002), since Halo databases default to a case-insensitive one.
SOURCE_KEY = Unicode(255).with_variant(Unicode(255, collation="Latin1_General_100_BIN2"), "mssql")

#: The link table's unique index takes every new link. On PostgreSQL its columns compare bytewise
#: (migration 0005): under a database collation each comparison went through strcoll.
LINK_KEY = SOURCE_KEY.with_variant(Unicode(255, collation="C"), "postgresql")

link = Table(
    "halodb_link",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    *_scope(bytewise=True),
    Column("source_key", LINK_KEY, nullable=False),
    Column("halo_id", Integer, nullable=False),
    Column("row_hash", String(40), nullable=False),
    Column("first_seen_run", Integer, nullable=False),
    Column("last_seen_run", Integer, nullable=False),
    Column("missed_runs", Integer, nullable=False, default=0),
    Column("deactivated", Boolean, nullable=False, default=False),
    Column("created_run", Integer),  # the run that created the Halo record; None if adopted (0004)
    UniqueConstraint("integration", "connection", "entity", "source_key"),  # every lookup (no other index: 0003)
)

cursor = Table(
    "halodb_cursor",
    metadata,
    *_scope(primary_key=True),
    Column("position", Unicode()),  # NVARCHAR(max): Graph delta links run to a few kB
    Column("updated", DateTime, nullable=False),
    # The fingerprint of what the scope's last complete read returned, for a source that can tell
    # its content has not changed without reading it (a spreadsheet file's digest; 0006), and how
    # many writing transactions such sources' runs have committed (NULL: none), so that a run
    # stores a fingerprint only if no other run wrote meanwhile.
    Column("content", String(40)),
    Column("writes", Integer),
)

change = Table(
    "halodb_change",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", Integer, nullable=False),
    Column("action", Unicode(20), nullable=False),  # create, update, deactivate, reactivate, adopt
    Column("halo_table", Unicode(50), nullable=False),
    Column("halo_id", Integer),
    Column("source_key", SOURCE_KEY, nullable=False),
    Column("field", Unicode(100)),
    Column("old_value", Unicode(4000)),
    Column("new_value", Unicode(4000)),
    Index(None, "run_id"),
)

quarantine = Table(
    "halodb_quarantine",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    *_scope(),
    Column("source_key", SOURCE_KEY, nullable=False),
    Column("reason", Unicode(1000), nullable=False),
    Column("record", Unicode()),
    Column("first_run", Integer, nullable=False),
    Column("last_run", Integer, nullable=False),
    UniqueConstraint("integration", "connection", "entity", "source_key"),
)

lock = Table(
    "halodb_lock",
    metadata,
    Column("name", Unicode(200), primary_key=True),
    Column("owner", Unicode(100), nullable=False),
    Column("instance", Unicode(100), nullable=False),
    Column("acquired", DateTime, nullable=False),
    Column("expires", DateTime, nullable=False),
)
