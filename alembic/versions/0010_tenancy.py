"""tenancy: the oslo context's user and tenant in the security audit log

Orchestrator RPC requests and cross-tenant refusals are audited by the caller's
user and project (tenant), beside the configurator's certificate and token subjects.

Revision ID: 0010_tenancy
Revises: 0009_outbox
"""
from alembic import op
import sqlalchemy as sa


revision = "0010_tenancy"
down_revision = "0009_outbox"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # batch mode: SQLite cannot ALTER a table's columns in place
    with op.batch_alter_table("audit_log") as batch:
        batch.add_column(sa.Column("user_id", sa.String(length=255), nullable=False, server_default=""))
        batch.add_column(sa.Column("tenant_id", sa.String(length=255), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_column("tenant_id")
        batch.drop_column("user_id")
