"""api keys: scopes

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 21:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# Keys made before scopes existed keep working as before: every scope but admin.
EXISTING_KEYS = "jobs:read jobs:write speech"


def upgrade() -> None:
    op.add_column(
        "api_keys",
        sa.Column("scopes", sa.String(length=200), nullable=False, server_default=EXISTING_KEYS),
    )


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("scopes")
