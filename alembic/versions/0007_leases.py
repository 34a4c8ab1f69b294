"""leases: engine members (heartbeats) and bucket leases with fencing epochs (multi-host engine)

Revision ID: 0007_leases
Revises: 0006_heal
"""
from alembic import op
import sqlalchemy as sa


revision = "0007_leases"
down_revision = "0006_heal"
branch_labels = None
depends_on = None

#: nfp.db.leases.BUCKETS at the time of this migration (a migration never imports models)
BUCKETS = 64


def upgrade() -> None:
    op.create_table(
        "engine_members",
        sa.Column("member", sa.String(length=160), primary_key=True),
        sa.Column("host", sa.String(length=128), nullable=False),
        sa.Column("worker", sa.Integer(), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(), nullable=False),
    )
    leases = op.create_table(
        "bucket_leases",
        sa.Column("bucket", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("owner", sa.String(length=160), nullable=True),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=True),
    )
    op.create_index("ix_bucket_leases_owner", "bucket_leases", ["owner"])
    op.bulk_insert(leases, [{"bucket": b, "owner": None, "epoch": 0, "expires_at": None}
                            for b in range(BUCKETS)])


def downgrade() -> None:
    op.drop_index("ix_bucket_leases_owner", table_name="bucket_leases")
    op.drop_table("bucket_leases")
    op.drop_table("engine_members")
