"""Live telemetry samples (idempotent by meter and time) and the alert delivery log.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

from kwartier.store.schema import UtcDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "telemetry_samples",
        sa.Column("connection", sa.String(18), nullable=False),
        sa.Column("ts", UtcDateTime(), nullable=False),
        sa.Column("import_wh", sa.BigInteger(), nullable=False),
        sa.Column("export_wh", sa.BigInteger(), nullable=False),
        sa.Column("power_import_w", sa.Integer(), nullable=True),
        sa.Column("power_export_w", sa.Integer(), nullable=True),
        sa.Column("received_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("connection", "ts", name="pk_telemetry_samples"),
    )
    op.create_index("ix_telemetry_samples_ts", "telemetry_samples", ["ts"])
    op.create_table(
        "alert_deliveries",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("alert_key", sa.String(64), nullable=False),
        sa.Column("channel", sa.String(12), nullable=False),
        sa.Column("recipient", sa.String(255), nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("claimed_at", UtcDateTime(), nullable=True),
        sa.Column("delivered_at", UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_alert_deliveries"),
        sa.UniqueConstraint("alert_key", "channel", "recipient",
                            name="uq_alert_deliveries_alert_key_channel_recipient"),
    )


def downgrade() -> None:
    op.drop_table("alert_deliveries")
    op.drop_index("ix_telemetry_samples_ts", table_name="telemetry_samples")
    op.drop_table("telemetry_samples")
