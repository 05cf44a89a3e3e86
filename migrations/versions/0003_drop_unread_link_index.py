"""Drop the link table's (scope, halo_id) index: no statement reads by it, and every link written
paid for it.

halodb looks links up by source key (the unique constraint) and by link id (the primary key);
nothing asks which link points at a given Halo record. Maintaining the index cost a first load of
100,000 users about a fifth of the link table's COPY on PostgreSQL, and a planner fooled by
missing statistics picked it for the source-key lookup, scanning the whole scope per batch.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 23:00:00
"""

from alembic import op


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

INDEX = "ix_halodb_link_integration_connection_entity_halo_id"


def upgrade() -> None:
    with op.batch_alter_table("halodb_link", schema=None) as batch_op:
        batch_op.drop_index(INDEX)


def downgrade() -> None:
    with op.batch_alter_table("halodb_link", schema=None) as batch_op:
        batch_op.create_index(INDEX, ["integration", "connection", "entity", "halo_id"], unique=False)
