"""A created record is recorded on its link, not as a change row of its own.

A first load wrote a 'create' change row for every new record, holding the record's values again.
For 100,000 users that was 100,000 rows in the customer's Halo database, about a fifth of the
load's time, and nothing in them that the Halo row and the link do not already say. The link now
carries the run that created its Halo record (``created_run``), and the run carries the Halo table
its entity writes (``halo_table``), so a run's change set still lists every create
(``halodb.state.changes.of_run``). Links written before this revision have no ``created_run``:
their creates stay in the change rows of their time.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 00:10:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable columns without a default: a metadata-only change on SQL Server and PostgreSQL,
    # however many links there are.
    with op.batch_alter_table("halodb_link", schema=None) as batch_op:
        batch_op.add_column(sa.Column("created_run", sa.Integer(), nullable=True))
    with op.batch_alter_table("halodb_run", schema=None) as batch_op:
        batch_op.add_column(sa.Column("halo_table", sa.Unicode(length=50), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("halodb_run", schema=None) as batch_op:
        batch_op.drop_column("halo_table")
    with op.batch_alter_table("halodb_link", schema=None) as batch_op:
        batch_op.drop_column("created_run")
