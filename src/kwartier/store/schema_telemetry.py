"""Tables for live telemetry (raw 10-second register samples) and the alert delivery log.

They are defined on :data:`kwartier.store.schema.metadata`, so importing this module adds them to the
schema that Alembic migration 0006 produces.

* ``telemetry_samples``: one row per meter and sample time, the cumulative registers in Wh as the
  meter sent them. The primary key (connection, ts) makes storage idempotent: a message delivered
  twice (MQTT QoS 1 is at-least-once) is ignored the second time. Rows older than the retention are
  deleted; the quarter-hour readings computed from them stay in ``readings``.
* ``alert_deliveries``: one row per alert, channel and recipient (unique), with its status, so that
  a rerun never sends an alert twice to the same recipient over the same channel.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, String, Table, Text, UniqueConstraint

from kwartier.store.schema import UtcDateTime, metadata

#: Raw telemetry: cumulative import/export registers (Wh) per meter and sample time (UTC).
telemetry_samples = Table(
    "telemetry_samples",
    metadata,
    Column("connection", String(18), primary_key=True),  # EAN-18; no FK: samples may precede the connection row
    Column("ts", UtcDateTime, primary_key=True),
    Column("import_wh", BigInteger, nullable=False),
    Column("export_wh", BigInteger, nullable=False),
    Column("power_import_w", Integer, nullable=True),  # instantaneous, >= 0; null when not sent
    Column("power_export_w", Integer, nullable=True),
    Column("received_at", UtcDateTime, nullable=False),
    Index("ix_telemetry_samples_ts", "ts"),  # retention deletes by time
)

#: Alert deliveries: pending -> sending -> delivered | failed; one row per (alert, channel, recipient).
alert_deliveries = Table(
    "alert_deliveries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("alert_key", String(64), nullable=False),  # SHA-256 of the alert's canonical form
    Column("channel", String(12), nullable=False),  # email | webhook | mqtt
    Column("recipient", String(255), nullable=False),  # address, URL or topic
    Column("status", String(12), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("last_error", Text, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("claimed_at", UtcDateTime, nullable=True),
    Column("delivered_at", UtcDateTime, nullable=True),
    UniqueConstraint("alert_key", "channel", "recipient"),
)
