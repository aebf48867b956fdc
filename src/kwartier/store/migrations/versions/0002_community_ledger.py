"""Community definition as versioned entities, stored plan texts, settle runs and the hash-chained journal.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

from kwartier.store.schema import UtcDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "community_loads",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("file_name", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("loaded_at", UtcDateTime(), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_community_loads"),
    )
    op.create_table(
        "entities",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("key", sa.String(80), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("is_current", sa.Boolean(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("load_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_entities"),
        sa.ForeignKeyConstraint(["load_id"], ["community_loads.id"], name="fk_entities_load_id_community_loads"),
        sa.UniqueConstraint("kind", "key", "version", name="uq_entities_kind_key_version"),
    )
    op.create_index("ix_entities_current", "entities", ["kind", "key"], unique=True,
                    sqlite_where=sa.text("is_current"), postgresql_where=sa.text("is_current"))
    op.create_table(
        "plan_texts",
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("plan_id", sa.String(60), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("stored_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("sha256", name="pk_plan_texts"),
    )
    op.create_table(
        "settle_runs",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("started_at", UtcDateTime(), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_settle_runs"),
    )
    op.create_table(
        "journal",
        sa.Column("seq", BIGID, primary_key=True, autoincrement=True),
        sa.Column("posted_at", UtcDateTime(), nullable=False),
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("debit", sa.String(64), nullable=False),
        sa.Column("credit", sa.String(64), nullable=False),
        sa.Column("amount_nano", sa.BigInteger(), nullable=False),
        sa.Column("participant", sa.String(40), nullable=False),
        sa.Column("payee", sa.String(40), nullable=False),
        sa.Column("connection", sa.String(18), nullable=True),
        sa.Column("component", sa.String(40), nullable=True),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("inputs", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_journal"),
        sa.ForeignKeyConstraint(["run_id"], ["settle_runs.id"], name="fk_journal_run_id_settle_runs"),
        sa.UniqueConstraint("hash", name="uq_journal_hash"),
    )
    op.create_index("ix_journal_period", "journal", ["period", "participant"])


def downgrade() -> None:
    op.drop_index("ix_journal_period", table_name="journal")
    op.drop_table("journal")
    op.drop_table("settle_runs")
    op.drop_table("plan_texts")
    op.drop_index("ix_entities_current", table_name="entities")
    op.drop_table("entities")
    op.drop_table("community_loads")
