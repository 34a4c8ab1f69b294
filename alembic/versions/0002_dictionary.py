"""vendor dictionaries: rules pushed to devices, stored dictionaries, encrypted secrets

Revision ID: 0002_dictionary
Revises: 0001_core
"""
from alembic import op
import sqlalchemy as sa


revision = "0002_dictionary"
down_revision = "0001_core"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rules",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("nf_id", sa.String(length=36), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("vendor", sa.String(length=64), nullable=False),
        sa.Column("service", sa.String(length=32), nullable=False),
        sa.Column("resource", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("rule_tag", sa.String(length=64), nullable=False),
        sa.Column("external_id", sa.String(length=255), nullable=True),
        sa.Column("body_hash", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rules")),
        sa.UniqueConstraint("nf_id", "device_id", "service", "name", name="uq_rules_owner_name"),
        sa.UniqueConstraint("device_id", "service", "external_id", name="uq_rules_device_external"),
    )
    op.create_index(op.f("ix_rules_nf_id"), "rules", ["nf_id"], unique=False)
    op.create_index(op.f("ix_rules_device_id"), "rules", ["device_id"], unique=False)
    op.create_table(
        "dictionaries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("vendor", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("product", sa.String(length=255), nullable=False),
        sa.Column("firmware_version", sa.String(length=64), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("source", sa.String(length=1024), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dictionaries")),
        sa.UniqueConstraint("vendor", "version", name="uq_dictionaries_vendor_version"),
    )
    op.create_index(op.f("ix_dictionaries_vendor"), "dictionaries", ["vendor"], unique=False)
    op.create_table(
        "secrets",
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("ciphertext", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_secrets")),
    )


def downgrade() -> None:
    op.drop_table("secrets")
    op.drop_index(op.f("ix_dictionaries_vendor"), table_name="dictionaries")
    op.drop_table("dictionaries")
    op.drop_index(op.f("ix_rules_device_id"), table_name="rules")
    op.drop_index(op.f("ix_rules_nf_id"), table_name="rules")
    op.drop_table("rules")
