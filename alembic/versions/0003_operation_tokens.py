"""network_functions.operation holds ``<op>:<unique id>`` tokens: String(32) → String(96)

An oslo request id is 32 hex characters, so ``update:<id>`` (39) and
``consumer_remove:<id>`` (48) did not fit: PostgreSQL refused every queued
operation with StringDataRightTruncation (SQLite ignores lengths, which hid it).

Revision ID: 0003_operation_tokens
Revises: 0002_dictionary
"""
from alembic import op
import sqlalchemy as sa


revision = "0003_operation_tokens"
down_revision = "0002_dictionary"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("network_functions") as batch:
        batch.alter_column("operation", existing_type=sa.String(length=32),
                           type_=sa.String(length=96), existing_nullable=True)


def downgrade() -> None:
    # A token that does not fit the old width cannot be shortened without breaking
    # the comparison its queued step makes; clearing it frees the NF for the next
    # operation, as if the running one had finished.
    nf = sa.table("network_functions", sa.column("operation", sa.String))
    op.execute(nf.update().where(sa.func.length(nf.c.operation) > 32).values(operation=None))
    with op.batch_alter_table("network_functions") as batch:
        batch.alter_column("operation", existing_type=sa.String(length=96),
                           type_=sa.String(length=32), existing_nullable=True)
