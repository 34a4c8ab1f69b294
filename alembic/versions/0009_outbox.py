"""outbox: notifications committed with the step that causes them

Revision ID: 0009_outbox
Revises: 0008_assurance_state
"""
from alembic import op
import sqlalchemy as sa


revision = "0009_outbox"
down_revision = "0008_assurance_state"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outbox",
        # the order of publication: ids grow with each insert
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True,
                  autoincrement=True),
        sa.Column("scope", sa.String(length=64), nullable=False),
        sa.Column("event_type", sa.String(length=255), nullable=False),
        sa.Column("priority", sa.String(length=16), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_outbox_scope", "outbox", ["scope", "id"])


def downgrade() -> None:
    op.drop_index("ix_outbox_scope", table_name="outbox")
    op.drop_table("outbox")
