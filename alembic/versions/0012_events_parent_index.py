"""events parent index: a fan-in step reads its children by ``parent_id``

Without an index every fan-in step (two per create) and every purged parent (its
``ON DELETE SET NULL`` foreign key) scanned the whole event table: profiled at
1,000 creates, 2,000 sequential scans read 18 million rows, the largest part of
PostgreSQL's CPU in the run.

Revision ID: 0012_events_parent_index
Revises: 0011_member_machine
"""
from alembic import op


revision = "0012_events_parent_index"
down_revision = "0011_member_machine"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.create_index("ix_events_parent_id", ["parent_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.drop_index("ix_events_parent_id")
