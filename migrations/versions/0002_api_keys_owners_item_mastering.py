"""api keys, job owners and idempotency keys, item mastering, item status assembling

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 10:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
    )
    op.add_column("jobs", sa.Column("owner_id", sa.Uuid(), nullable=True))
    op.add_column("jobs", sa.Column("idempotency_key", sa.String(length=200), nullable=True))
    op.create_index(op.f("ix_jobs_owner_id"), "jobs", ["owner_id"], unique=False)
    op.create_index(
        "uq_jobs_owner_id_idempotency_key", "jobs", ["owner_id", "idempotency_key"], unique=True
    )
    op.add_column("items", sa.Column("mastering", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("items", "mastering")
    op.drop_index("uq_jobs_owner_id_idempotency_key", table_name="jobs")
    op.drop_index(op.f("ix_jobs_owner_id"), table_name="jobs")
    op.drop_column("jobs", "idempotency_key")
    op.drop_column("jobs", "owner_id")
    op.drop_table("api_keys")
