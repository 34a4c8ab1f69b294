"""assurance state: a device's boot marker (restart detection) and the dictionary
version each vendor's NFs were last reconciled against (dictionary-update trigger)

Revision ID: 0008_assurance_state
Revises: 0007_leases
"""
from alembic import op
import sqlalchemy as sa


revision = "0008_assurance_state"
down_revision = "0007_leases"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # batch mode: SQLite cannot ALTER a table's columns in place
    with op.batch_alter_table("network_function_devices") as batch:
        batch.add_column(sa.Column("boot_id", sa.String(length=128), nullable=True))
    op.create_table(
        "reconciled_dictionaries",
        sa.Column("vendor", sa.String(length=64), primary_key=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("reconciled_at", sa.DateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("reconciled_dictionaries")
    with op.batch_alter_table("network_function_devices") as batch:
        batch.drop_column("boot_id")
