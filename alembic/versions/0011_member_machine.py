"""member machine: which machine runs each engine member, to refuse a duplicate rpc.host

Two machines configured with the same ``rpc.host`` would share member ids
(``host/index``) and run the same buckets. Each member now records its machine's
identity; a second machine joining as a member whose machine still beats is refused.

Revision ID: 0011_member_machine
Revises: 0010_tenancy
"""
from alembic import op
import sqlalchemy as sa


revision = "0011_member_machine"
down_revision = "0010_tenancy"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # batch mode: SQLite cannot ALTER a table's columns in place
    with op.batch_alter_table("engine_members") as batch:
        batch.add_column(sa.Column("machine", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("engine_members") as batch:
        batch.drop_column("machine")
