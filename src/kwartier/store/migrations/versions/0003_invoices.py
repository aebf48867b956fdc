"""Invoice numbering series and issued invoices, credit notes and debit notes.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

from kwartier.store.schema import UtcDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "invoice_series",
        sa.Column("supplier", sa.String(40), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("last_seq", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("supplier", "year", name="pk_invoice_series"),
    )
    op.create_table(
        "invoices",
        sa.Column("number", sa.String(40), nullable=False),
        sa.Column("supplier", sa.String(40), nullable=False),
        sa.Column("participant", sa.String(40), nullable=False),
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("kind", sa.String(12), nullable=False),
        sa.Column("corrects", sa.String(40), nullable=True),
        sa.Column("issue_date", sa.Date(), nullable=False),
        sa.Column("net_cents", sa.BigInteger(), nullable=False),
        sa.Column("vat_cents", sa.BigInteger(), nullable=False),
        sa.Column("total_cents", sa.BigInteger(), nullable=False),
        sa.Column("lines_key", sa.String(64), nullable=False),
        sa.Column("content", sa.JSON(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("number", name="pk_invoices"),
    )
    op.create_index("ix_invoices_owner", "invoices", ["supplier", "participant", "period"])


def downgrade() -> None:
    op.drop_index("ix_invoices_owner", table_name="invoices")
    op.drop_table("invoices")
    op.drop_table("invoice_series")
