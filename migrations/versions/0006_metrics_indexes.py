"""indexes that keep the metrics exporter's round cheap on a large database

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 21:10:00
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Open chunks by status and the oldest pending one (pipeline.state.monitoring.backlog).
    op.create_index("ix_chunks_status_created_at", "chunks", ["status", "created_at"])
    # Chunks and jobs finished since the exporter's last round (latency, turnaround).
    op.create_index("ix_chunks_rendered_at", "chunks", ["rendered_at"])
    op.create_index("ix_jobs_finished_at", "jobs", ["finished_at"])


def downgrade() -> None:
    op.drop_index("ix_jobs_finished_at", table_name="jobs")
    op.drop_index("ix_chunks_rendered_at", table_name="chunks")
    op.drop_index("ix_chunks_status_created_at", table_name="chunks")
