"""indexes that keep a message's cost independent of its job's size

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 21:00:00
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Leases are renewed and released by owner on every message and heartbeat; without
    # this each of those read the whole chunks table.
    op.create_index("ix_chunks_lease_owner", "chunks", ["lease_owner"])
    # "Is any item of this job still open?" (claiming finalization) stops at one entry.
    op.create_index("ix_items_job_id_status", "items", ["job_id", "status"])


def downgrade() -> None:
    op.drop_index("ix_items_job_id_status", table_name="items")
    op.drop_index("ix_chunks_lease_owner", table_name="chunks")
