"""The cursor row keeps the fingerprint of what its scope's last complete read returned.

A spreadsheet import read the whole file on every run, though most runs find the file as it was:
a re-sync with nothing changed cost as much as reading the file. A source that can fingerprint its
whole content cheaply (a file's digest) now compares it with ``content`` first, and reads nothing
when it matches (``ReadContext.same_content``). ``writes`` counts the writing transactions such
runs committed (batches, and each run's last): a run stores its fingerprint only if the count is
what its own writes made it, so a run that lost its lease and wrote meanwhile leaves no
fingerprint that hides its writes.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 09:00:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable without a default: a metadata-only change on SQL Server and PostgreSQL.
    with op.batch_alter_table("halodb_cursor", schema=None) as batch_op:
        batch_op.add_column(sa.Column("content", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("writes", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("halodb_cursor", schema=None) as batch_op:
        batch_op.drop_column("writes")
        batch_op.drop_column("content")
