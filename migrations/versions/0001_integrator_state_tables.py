"""Integrator state tables: links, runs, cursors, change set, quarantine, leases.

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-24 17:29:07.471579
"""

from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('halodb_change',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('action', sa.Unicode(length=20), nullable=False),
    sa.Column('halo_table', sa.Unicode(length=50), nullable=False),
    sa.Column('halo_id', sa.Integer(), nullable=True),
    sa.Column('source_key', sa.Unicode(length=255), nullable=False),
    sa.Column('field', sa.Unicode(length=100), nullable=True),
    sa.Column('old_value', sa.Unicode(length=4000), nullable=True),
    sa.Column('new_value', sa.Unicode(length=4000), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_halodb_change'))
    )
    with op.batch_alter_table('halodb_change', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_halodb_change_run_id'), ['run_id'], unique=False)

    op.create_table('halodb_cursor',
    sa.Column('integration', sa.Unicode(length=50), nullable=False),
    sa.Column('connection', sa.Unicode(length=100), nullable=False),
    sa.Column('entity', sa.Unicode(length=50), nullable=False),
    sa.Column('position', sa.Unicode(), nullable=True),
    sa.Column('updated', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('integration', 'connection', 'entity', name=op.f('pk_halodb_cursor'))
    )
    op.create_table('halodb_link',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('integration', sa.Unicode(length=50), nullable=False),
    sa.Column('connection', sa.Unicode(length=100), nullable=False),
    sa.Column('entity', sa.Unicode(length=50), nullable=False),
    sa.Column('source_key', sa.Unicode(length=255), nullable=False),
    sa.Column('halo_id', sa.Integer(), nullable=False),
    sa.Column('row_hash', sa.String(length=40), nullable=False),
    sa.Column('first_seen_run', sa.Integer(), nullable=False),
    sa.Column('last_seen_run', sa.Integer(), nullable=False),
    sa.Column('missed_runs', sa.Integer(), nullable=False),
    sa.Column('deactivated', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_halodb_link')),
    sa.UniqueConstraint('integration', 'connection', 'entity', 'source_key', name=op.f('uq_halodb_link_integration_connection_entity_source_key'))
    )
    with op.batch_alter_table('halodb_link', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_halodb_link_integration_connection_entity_halo_id'), ['integration', 'connection', 'entity', 'halo_id'], unique=False)

    op.create_table('halodb_lock',
    sa.Column('name', sa.Unicode(length=200), nullable=False),
    sa.Column('owner', sa.Unicode(length=100), nullable=False),
    sa.Column('instance', sa.Unicode(length=100), nullable=False),
    sa.Column('acquired', sa.DateTime(), nullable=False),
    sa.Column('expires', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_halodb_lock'))
    )
    op.create_table('halodb_quarantine',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('integration', sa.Unicode(length=50), nullable=False),
    sa.Column('connection', sa.Unicode(length=100), nullable=False),
    sa.Column('entity', sa.Unicode(length=50), nullable=False),
    sa.Column('source_key', sa.Unicode(length=255), nullable=False),
    sa.Column('reason', sa.Unicode(length=1000), nullable=False),
    sa.Column('record', sa.Unicode(), nullable=True),
    sa.Column('first_run', sa.Integer(), nullable=False),
    sa.Column('last_run', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_halodb_quarantine')),
    sa.UniqueConstraint('integration', 'connection', 'entity', 'source_key', name=op.f('uq_halodb_quarantine_integration_connection_entity_source_key'))
    )
    op.create_table('halodb_run',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('instance', sa.Unicode(length=100), nullable=False),
    sa.Column('integration', sa.Unicode(length=50), nullable=False),
    sa.Column('connection', sa.Unicode(length=100), nullable=False),
    sa.Column('entity', sa.Unicode(length=50), nullable=False),
    sa.Column('started', sa.DateTime(), nullable=False),
    sa.Column('finished', sa.DateTime(), nullable=True),
    sa.Column('status', sa.Unicode(length=20), nullable=False),
    sa.Column('dry_run', sa.Boolean(), nullable=False),
    sa.Column('fetched', sa.Integer(), nullable=False),
    sa.Column('created', sa.Integer(), nullable=False),
    sa.Column('updated', sa.Integer(), nullable=False),
    sa.Column('unchanged', sa.Integer(), nullable=False),
    sa.Column('deactivated', sa.Integer(), nullable=False),
    sa.Column('held_back', sa.Integer(), nullable=False),
    sa.Column('quarantined', sa.Integer(), nullable=False),
    sa.Column('error', sa.Unicode(length=4000), nullable=True),
    sa.Column('host', sa.Unicode(length=255), nullable=True),
    sa.Column('pid', sa.Integer(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_halodb_run'))
    )
    with op.batch_alter_table('halodb_run', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_halodb_run_integration_connection_entity_started'), ['integration', 'connection', 'entity', 'started'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('halodb_run', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_halodb_run_integration_connection_entity_started'))

    op.drop_table('halodb_run')
    op.drop_table('halodb_quarantine')
    op.drop_table('halodb_lock')
    with op.batch_alter_table('halodb_link', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_halodb_link_integration_connection_entity_halo_id'))

    op.drop_table('halodb_link')
    op.drop_table('halodb_cursor')
    with op.batch_alter_table('halodb_change', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_halodb_change_run_id'))

    op.drop_table('halodb_change')
