"""Source keys compare exactly on SQL Server, as they do on PostgreSQL and SQLite.

Halo databases use a case-insensitive default collation, so on SQL Server the source keys of the
link, quarantine and change tables inherited it. Spreadsheet and SQL imports normalise their keys
(trimmed, lower case) before they get here, but keys other sources hand over as they are (Azure
object ids today, whatever a later integration brings) would be one key on SQL Server and two
everywhere else, and the engine's in-memory lookups compare exactly. A binary collation makes
every backend agree. The unique constraints that cover the column are dropped and re-created
around the change, as SQL Server requires.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 21:20:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

EXACT = "Latin1_General_100_BIN2"
TABLES = {  # table: the unique constraint over its source key, if any
    "halodb_link": "uq_halodb_link_integration_connection_entity_source_key",
    "halodb_quarantine": "uq_halodb_quarantine_integration_connection_entity_source_key",
    "halodb_change": None,
}


def _set_collation(collation: str | None) -> None:
    if op.get_context().dialect.name != "mssql":
        return  # PostgreSQL and SQLite compare these columns exactly already
    for table, constraint in TABLES.items():
        if constraint:
            op.drop_constraint(constraint, table, type_="unique")
        op.alter_column(
            table, "source_key",
            existing_type=sa.Unicode(255), type_=sa.Unicode(255, collation=collation), existing_nullable=False,
        )  # fmt: skip
        if constraint:
            op.create_unique_constraint(constraint, table, ["integration", "connection", "entity", "source_key"])


def upgrade() -> None:
    _set_collation(EXACT)


def downgrade() -> None:
    _set_collation(None)  # back to the database's default collation
