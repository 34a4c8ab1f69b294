"""assurance: device health reason and time of change; the reconciliation_log table

Revision ID: 0004_assurance
Revises: 0003_operation_tokens
"""
from alembic import op
import sqlalchemy as sa


revision = "0004_assurance"
down_revision = "0003_operation_tokens"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # batch mode: SQLite cannot ALTER a table's columns in place
    with op.batch_alter_table("network_function_devices") as batch:
        batch.add_column(sa.Column("health_changed_at", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("health_reason", sa.String(length=512), nullable=False,
                                   server_default=""))
    op.create_table(
        "reconciliation_log",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("network_function_id", sa.String(length=36), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=True),
        sa.Column("trigger", sa.String(length=32), nullable=False),
        sa.Column("policy", sa.String(length=32), nullable=False),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("missing", sa.Integer(), nullable=False),
        sa.Column("extra", sa.Integer(), nullable=False),
        sa.Column("changed", sa.Integer(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("result", sa.String(length=16), nullable=False),
        sa.Column("error", sa.String(length=2048), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconciliation_log")),
        sa.UniqueConstraint("run_id", name=op.f("uq_reconciliation_log_run_id")),
    )
    op.create_index("ix_reconciliation_log_nf_started", "reconciliation_log",
                    ["network_function_id", "started_at"], unique=False)
    op.create_index(op.f("ix_reconciliation_log_device_id"), "reconciliation_log", ["device_id"],
                    unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_reconciliation_log_device_id"), table_name="reconciliation_log")
    op.drop_index("ix_reconciliation_log_nf_started", table_name="reconciliation_log")
    op.drop_table("reconciliation_log")
    with op.batch_alter_table("network_function_devices") as batch:
        batch.drop_column("health_reason")
        batch.drop_column("health_changed_at")
