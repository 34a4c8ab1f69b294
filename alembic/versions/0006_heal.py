"""heal: an NF's degraded flag and reason (management link lost); a device's heal counters

Revision ID: 0006_heal
Revises: 0005_configurator
"""
from alembic import op
import sqlalchemy as sa


revision = "0006_heal"
down_revision = "0005_configurator"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # batch mode: SQLite cannot ALTER a table's columns in place
    with op.batch_alter_table("network_functions") as batch:
        batch.add_column(sa.Column("degraded", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("degraded_reason", sa.String(length=512), nullable=False,
                                   server_default=""))
    with op.batch_alter_table("network_function_devices") as batch:
        batch.add_column(sa.Column("heal_attempts", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("healed_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("network_function_devices") as batch:
        batch.drop_column("healed_at")
        batch.drop_column("heal_attempts")
    with op.batch_alter_table("network_functions") as batch:
        batch.drop_column("degraded_reason")
        batch.drop_column("degraded")
