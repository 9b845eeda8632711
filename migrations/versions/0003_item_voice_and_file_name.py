"""catalogue items: their own voice and their file name

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 22:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable, no default: rows planned before this revision keep the job's voice and
    # the slug of their title as their name (pipeline.assemble.keys.item_key).
    op.add_column("items", sa.Column("voice", sa.String(length=1000), nullable=True))
    op.add_column("items", sa.Column("file_name", sa.String(length=1000), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("items") as batch:
        batch.drop_column("file_name")
        batch.drop_column("voice")
