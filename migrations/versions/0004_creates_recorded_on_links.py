"""A created record is recorded on its link, not as a change row of its own.

A first load wrote a 'create' change row for every new record, holding the record's values again.
For 100,000 users that was 100,000 rows in the customer's Halo database, about a fifth of the
load's time, and nothing in them that the Halo row and the link do not already say. The link now
carries the run that created its Halo record (``created_run``), and the run carries the Halo table
its entity writes (``halo_table``), so a run's change set still lists every create
(``halodb.state.changes.of_run``). Links written before this revision have no ``created_run``:
their creates stay in the change rows of their time. A downgrade writes the creates back as change
rows first.

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


#: Back to one change row per create, so a downgrade loses no history.
CREATES_TO_CHANGE_ROWS = """
INSERT INTO halodb_change (run_id, action, halo_table, halo_id, source_key)
SELECT l.created_run, 'create', r.halo_table, l.halo_id, l.source_key
FROM halodb_link l JOIN halodb_run r ON r.id = l.created_run
WHERE r.halo_table IS NOT NULL
"""


def downgrade() -> None:
    op.execute(CREATES_TO_CHANGE_ROWS)
    with op.batch_alter_table("halodb_run", schema=None) as batch_op:
        batch_op.drop_column("halo_table")
    with op.batch_alter_table("halodb_link", schema=None) as batch_op:
        batch_op.drop_column("created_run")
