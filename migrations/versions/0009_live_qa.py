"""QA while rendering: each chunk's verdict, and the job's summary with flagged chunks

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 23:50:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # All nullable: a chunk of a job rendered without QA has no verdict.
    op.add_column("chunks", sa.Column("qa_error_rate", sa.Float(), nullable=True))
    op.add_column("chunks", sa.Column("qa_flags", sa.String(length=200), nullable=True))
    op.add_column("chunks", sa.Column("qa_takes", sa.Integer(), nullable=True))
    op.add_column("chunks", sa.Column("qa_words", sa.JSON(), nullable=True))
    op.add_column("jobs", sa.Column("qa", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("qa")
    with op.batch_alter_table("chunks") as batch:
        for column in ("qa_words", "qa_takes", "qa_flags", "qa_error_rate"):
            batch.drop_column(column)
