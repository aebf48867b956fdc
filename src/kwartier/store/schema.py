"""The database schema (SQLAlchemy 2 Core tables); Alembic migrations must produce exactly this.

Versioning: a reading or price is identified by its key (connection or zone, interval start,
resolution). Each stored value has a ``version``; exactly one row per key is ``is_current``. A changed
value becomes a new version and the old row is kept with ``is_current = false``: nothing is ever
overwritten, so a bill can always be traced to the values it used.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.types import TypeDecorator


class UtcDateTime(TypeDecorator[datetime]):
    """An aware UTC timestamp on every backend (SQLite stores it naive; we put the zone back)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive timestamp {value.isoformat()} cannot be stored; give it a zone")
        return value.astimezone(UTC).replace(tzinfo=None) if _is_sqlite(dialect) else value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _is_sqlite(dialect: object) -> bool:
    return getattr(dialect, "name", "") == "sqlite"


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

#: One row per imported file: what, from where, when, and what happened.
imports = Table(
    "imports",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),  # prices | readings
    Column("file_name", Text, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("format", String(40), nullable=False),
    Column("target", String(40), nullable=False),  # zone or connection EAN
    Column("imported_at", UtcDateTime, nullable=False),
    Column("new", Integer, nullable=False),
    Column("unchanged", Integer, nullable=False),
    Column("revised", Integer, nullable=False),
    Column("anomalies", JSON, nullable=False),
)

connections = Table(
    "connections",
    metadata,
    Column("ean", String(18), primary_key=True),
    Column("created_at", UtcDateTime, nullable=False),
)

readings = Table(
    "readings",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("connection", String(18), ForeignKey("connections.ean"), nullable=False),
    Column("interval_start", UtcDateTime, nullable=False),
    Column("resolution", String(8), nullable=False),
    # Null means "not measured" (a file that gives no value for one direction), never zero.
    Column("import_wh", BigInteger, nullable=True),
    Column("export_wh", BigInteger, nullable=True),
    Column("status", String(12), nullable=False),  # actual | estimated
    Column("source", String(40), nullable=False),  # the format it came from
    Column("version", Integer, nullable=False),
    Column("is_current", Boolean, nullable=False),
    Column("import_id", Integer, ForeignKey("imports.id"), nullable=False),
    Column("imported_at", UtcDateTime, nullable=False),
    UniqueConstraint("connection", "interval_start", "resolution", "version"),
    Index(
        "ix_readings_current",
        "connection",
        "interval_start",
        "resolution",
        unique=True,
        sqlite_where=text("is_current"),
        postgresql_where=text("is_current"),
    ),
)

prices = Table(
    "prices",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("zone", String(16), nullable=False),
    Column("interval_start", UtcDateTime, nullable=False),
    Column("resolution", String(8), nullable=False),
    Column("price_ueur_per_kwh", BigInteger, nullable=False),
    Column("status", String(12), nullable=False),  # forecast | fixed
    Column("known_at", UtcDateTime, nullable=False),
    Column("source", String(40), nullable=False),
    Column("version", Integer, nullable=False),
    Column("is_current", Boolean, nullable=False),
    Column("import_id", Integer, ForeignKey("imports.id"), nullable=False),
    Column("imported_at", UtcDateTime, nullable=False),
    UniqueConstraint("zone", "interval_start", "resolution", "version"),
    Index(
        "ix_prices_current",
        "zone",
        "interval_start",
        "resolution",
        unique=True,
        sqlite_where=text("is_current"),
        postgresql_where=text("is_current"),
    ),
)

#: Raw register samples from P1 telegrams (cumulative, Wh), kept as evidence for the intervals.
registers = Table(
    "registers",
    metadata,
    Column("connection", String(18), ForeignKey("connections.ean"), primary_key=True),
    Column("ts", UtcDateTime, primary_key=True),
    Column("register", String(24), primary_key=True),
    Column("value_wh", BigInteger, nullable=False),
    Column("import_id", Integer, ForeignKey("imports.id"), nullable=False),
)

#: One row per `kwartier community load`: which file, and what changed.
community_loads = Table(
    "community_loads",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("file_name", Text, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("loaded_at", UtcDateTime, nullable=False),
    Column("summary", JSON, nullable=False),
)

#: The community definition as versioned entities (community, party, participant, connection,
#: metering_point, contract). A changed entity gets a new version; a removed one a version with
#: ``data`` null. Exactly one row per (kind, key) is current.
entities = Table(
    "entities",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(20), nullable=False),
    Column("key", String(80), nullable=False),
    Column("version", Integer, nullable=False),
    Column("is_current", Boolean, nullable=False),
    Column("data", JSON, nullable=True),
    Column("sha256", String(64), nullable=False),
    Column("load_id", Integer, ForeignKey("community_loads.id"), nullable=False),
    UniqueConstraint("kind", "key", "version"),
    Index("ix_entities_current", "kind", "key", unique=True, sqlite_where=text("is_current"),
          postgresql_where=text("is_current")),
)

#: Plan texts by content hash: a contract's plan version is the SHA-256 of the TOML it was settled with.
plan_texts = Table(
    "plan_texts",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("plan_id", String(60), nullable=False),
    Column("text", Text, nullable=False),
    Column("stored_at", UtcDateTime, nullable=False),
)

settle_runs = Table(
    "settle_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("period", String(7), nullable=False),
    Column("started_at", UtcDateTime, nullable=False),
    Column("summary", JSON, nullable=False),
)

#: The journal: append-only, double-entry, hash-chained. Each row moves ``amount_nano`` (> 0) from
#: the debit account to the credit account; ``hash`` is the SHA-256 of the row's canonical form,
#: which includes ``prev_hash``, so editing, deleting or reordering any row breaks the chain.
journal = Table(
    "journal",
    metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("posted_at", UtcDateTime, nullable=False),
    Column("period", String(7), nullable=False),
    Column("kind", String(16), nullable=False),  # settlement | correction | vat
    Column("debit", String(64), nullable=False),
    Column("credit", String(64), nullable=False),
    Column("amount_nano", BigInteger, nullable=False),
    Column("participant", String(40), nullable=False),
    Column("payee", String(40), nullable=False),
    Column("connection", String(18), nullable=True),
    Column("component", String(40), nullable=True),
    Column("run_id", Integer, ForeignKey("settle_runs.id"), nullable=False),
    Column("inputs", JSON, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False, unique=True),
    Index("ix_journal_period", "period", "participant"),
)

#: The last number used per supplier and year: numbers are assigned inside the transaction that
#: stores the invoice, so a crash leaves neither a gap nor a duplicate.
invoice_series = Table(
    "invoice_series",
    metadata,
    Column("supplier", String(40), primary_key=True),
    Column("year", Integer, primary_key=True),
    Column("last_seq", Integer, nullable=False),
)

#: Issued invoices, credit notes and debit notes. A row is never changed: a credit note that
#: ``corrects`` an invoice cancels it, and a new invoice follows.
invoices = Table(
    "invoices",
    metadata,
    Column("number", String(40), primary_key=True),
    Column("supplier", String(40), nullable=False),
    Column("participant", String(40), nullable=False),
    Column("period", String(7), nullable=False),
    Column("kind", String(12), nullable=False),
    Column("corrects", String(40), nullable=True),
    Column("issue_date", Date, nullable=False),
    Column("net_cents", BigInteger, nullable=False),
    Column("vat_cents", BigInteger, nullable=False),
    Column("total_cents", BigInteger, nullable=False),
    Column("lines_key", String(64), nullable=False),
    Column("content", JSON, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Index("ix_invoices_owner", "supplier", "participant", "period"),
)

#: Portal accounts: a participant sees its own data, an operator the community, a grid user aggregates.
#: ``party`` is the grid party whose area a grid user sees (null: the whole community, still aggregated).
users = Table(
    "users",
    metadata,
    Column("username", String(80), primary_key=True),
    Column("password_hash", Text, nullable=False),  # argon2id
    Column("role", String(12), nullable=False),  # participant | operator | grid
    Column("participant", String(40), nullable=True),
    Column("party", String(40), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
)

#: Small key/value settings of the installation (e.g. the web secret that signs sessions and tokens).
settings = Table(
    "settings",
    metadata,
    Column("key", String(40), primary_key=True),
    Column("value", Text, nullable=False),
)

#: Computed page data shared by the portal's worker processes (web/cache.py): a cache, never a source;
#: ``key`` is the SHA-256 of the view, its key and the data version it was computed for.
view_cache = Table(
    "view_cache",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", JSON, nullable=False),
    Column("created_at", UtcDateTime, nullable=False, index=True),
)

# Tables defined beside this module, on the same metadata (migrations 0005 and 0006).
from kwartier.store import schema_governance, schema_telemetry  # noqa: E402,F401
