"""Computed page data shared by the portal's worker processes.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

from kwartier.store.schema import UtcDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "view_cache",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("value", sa.JSON(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_view_cache"),
    )
    op.create_index("ix_view_cache_created_at", "view_cache", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_view_cache_created_at", table_name="view_cache")
    op.drop_table("view_cache")
