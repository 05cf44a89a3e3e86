"""On PostgreSQL, the link table's key columns compare bytewise, and its statistics are small.

Every new link goes into the unique index over (integration, connection, entity, source_key).
Under the database's collation (C.UTF-8 on the development machines, en_US.UTF-8 on many
servers), PostgreSQL 15 compares text through the C library's strcoll, about 70 times per new
key: the index then cost the server 0.75 s per 100,000 links of a first load, against 0.59 s
with the ``C`` collation, which compares bytes (medians of 7, 50 COPYs of 2,000 links). The
keys are identifiers, never sorted for a person, and bytewise comparison is what SQL Server's
binary collation (0002) and the engine's in-memory lookups already do: no key changes meaning.

The engine refreshes the table's statistics after a big load (``links.analyze``), for the
lookups' plans. Those need only a scope's size and that a source key is unique, so every column
keeps 10 statistics buckets instead of the default 100: ANALYZE samples 3,000 rows instead of
30,000, 0.01 s instead of 0.13 s at 100,000 links. Every column, not only the filtered ones: the
sample is sized by the largest target, and only an ANALYZE of the whole table tells autovacuum
the table is analyzed (a column list leaves its change counter as it was, so autovacuum would
run its own full ANALYZE next). A column added later needs the same.

SQL Server and SQLite are left as they are.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 04:00:00
"""

from alembic import op


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

KEY_COLUMNS = {"integration": 50, "connection": 100, "entity": 50, "source_key": 255}
COLUMNS = (
    "id", "integration", "connection", "entity", "source_key", "halo_id", "row_hash", "first_seen_run", "last_seen_run",
    "missed_runs", "deactivated", "created_run",
)  # fmt: skip
STATISTICS = 10


def _change(collation: str, statistics: int) -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    # One statement: the unique index over these columns is rebuilt once; the table is not rewritten.
    op.execute(
        "ALTER TABLE halodb_link "
        + ", ".join(
            [f"ALTER COLUMN {column} TYPE VARCHAR({length}) COLLATE {collation}" for column, length in KEY_COLUMNS.items()]
            + [f"ALTER COLUMN {column} SET STATISTICS {statistics}" for column in COLUMNS]
        )
    )


def upgrade() -> None:
    _change('"C"', STATISTICS)


def downgrade() -> None:
    _change('"default"', -1)  # the database's collation and statistics target again
