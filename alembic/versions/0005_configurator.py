"""configurator tier: accepted requests, notifications, used token ids; the audit log

Revision ID: 0005_configurator
Revises: 0004_assurance
"""
from alembic import op
import sqlalchemy as sa


revision = "0005_configurator"
down_revision = "0004_assurance"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "configurator_requests",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("method", sa.String(length=64), nullable=False),
        sa.Column("operation", sa.String(length=16), nullable=False),
        sa.Column("service_type", sa.String(length=64), nullable=False),
        sa.Column("service_vendor", sa.String(length=64), nullable=False),
        sa.Column("nf_id", sa.String(length=64), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("caller", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_configurator_requests")),
    )
    op.create_table(
        "configurator_notifications",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_configurator_notifications")),
    )
    op.create_index("ix_configurator_notifications_request_id", "configurator_notifications",
                    ["request_id"], unique=True)
    op.create_table(
        "configurator_tokens",
        sa.Column("jti", sa.String(length=128), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("jti", name=op.f("pk_configurator_tokens")),
    )
    op.create_index("ix_configurator_tokens_expires_at", "configurator_tokens", ["expires_at"],
                    unique=False)
    op.create_table(
        "audit_log",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("event", sa.String(length=48), nullable=False),
        sa.Column("cert_subject", sa.String(length=512), nullable=False),
        sa.Column("token_subject", sa.String(length=255), nullable=False),
        sa.Column("method", sa.String(length=96), nullable=False),
        sa.Column("nf_id", sa.String(length=64), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=128), nullable=False),
        sa.Column("result", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.String(length=1024), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_audit_log_at", table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_index("ix_configurator_tokens_expires_at", table_name="configurator_tokens")
    op.drop_table("configurator_tokens")
    op.drop_index("ix_configurator_notifications_request_id", table_name="configurator_notifications")
    op.drop_table("configurator_notifications")
    op.drop_table("configurator_requests")
