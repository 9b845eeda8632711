"""assembly leases: items and jobs get an owner, an expiry and an attempt count

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 21:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TABLES = ("items", "jobs")


def upgrade() -> None:
    # Nullable owner and expiry: nobody holds an assembly lease on rows from before.
    for table in TABLES:
        op.add_column(table, sa.Column("assembly_owner", sa.String(length=200), nullable=True))
        op.add_column(
            table, sa.Column("assembly_expires_at", sa.DateTime(timezone=True), nullable=True)
        )
        op.add_column(
            table,
            sa.Column("assembly_attempts", sa.Integer(), nullable=False, server_default="0"),
        )


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("assembly_attempts")
            batch.drop_column("assembly_expires_at")
            batch.drop_column("assembly_owner")
