"""Initial schema: imports, connections, versioned readings and prices, P1 registers.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

from kwartier.store.schema import UtcDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "imports",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("file_name", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("format", sa.String(40), nullable=False),
        sa.Column("target", sa.String(40), nullable=False),
        sa.Column("imported_at", UtcDateTime(), nullable=False),
        sa.Column("new", sa.Integer(), nullable=False),
        sa.Column("unchanged", sa.Integer(), nullable=False),
        sa.Column("revised", sa.Integer(), nullable=False),
        sa.Column("anomalies", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_imports"),
    )
    op.create_table(
        "connections",
        sa.Column("ean", sa.String(18), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("ean", name="pk_connections"),
    )
    op.create_table(
        "readings",
        sa.Column("id", BIGID, primary_key=True, autoincrement=True),
        sa.Column("connection", sa.String(18), nullable=False),
        sa.Column("interval_start", UtcDateTime(), nullable=False),
        sa.Column("resolution", sa.String(8), nullable=False),
        sa.Column("import_wh", sa.BigInteger(), nullable=True),
        sa.Column("export_wh", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("source", sa.String(40), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("is_current", sa.Boolean(), nullable=False),
        sa.Column("import_id", sa.Integer(), nullable=False),
        sa.Column("imported_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_readings"),
        sa.ForeignKeyConstraint(["connection"], ["connections.ean"], name="fk_readings_connection_connections"),
        sa.ForeignKeyConstraint(["import_id"], ["imports.id"], name="fk_readings_import_id_imports"),
        sa.UniqueConstraint(
            "connection", "interval_start", "resolution", "version",
            name="uq_readings_connection_interval_start_resolution_version",
        ),
    )
    op.create_index(
        "ix_readings_current", "readings", ["connection", "interval_start", "resolution"], unique=True,
        sqlite_where=sa.text("is_current"), postgresql_where=sa.text("is_current"),
    )
    op.create_table(
        "prices",
        sa.Column("id", BIGID, primary_key=True, autoincrement=True),
        sa.Column("zone", sa.String(16), nullable=False),
        sa.Column("interval_start", UtcDateTime(), nullable=False),
        sa.Column("resolution", sa.String(8), nullable=False),
        sa.Column("price_ueur_per_kwh", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("known_at", UtcDateTime(), nullable=False),
        sa.Column("source", sa.String(40), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("is_current", sa.Boolean(), nullable=False),
        sa.Column("import_id", sa.Integer(), nullable=False),
        sa.Column("imported_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_prices"),
        sa.ForeignKeyConstraint(["import_id"], ["imports.id"], name="fk_prices_import_id_imports"),
        sa.UniqueConstraint(
            "zone", "interval_start", "resolution", "version",
            name="uq_prices_zone_interval_start_resolution_version",
        ),
    )
    op.create_index(
        "ix_prices_current", "prices", ["zone", "interval_start", "resolution"], unique=True,
        sqlite_where=sa.text("is_current"), postgresql_where=sa.text("is_current"),
    )
    op.create_table(
        "registers",
        sa.Column("connection", sa.String(18), nullable=False),
        sa.Column("ts", UtcDateTime(), nullable=False),
        sa.Column("register", sa.String(24), nullable=False),
        sa.Column("value_wh", sa.BigInteger(), nullable=False),
        sa.Column("import_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("connection", "ts", "register", name="pk_registers"),
        sa.ForeignKeyConstraint(["connection"], ["connections.ean"], name="fk_registers_connection_connections"),
        sa.ForeignKeyConstraint(["import_id"], ["imports.id"], name="fk_registers_import_id_imports"),
    )


def downgrade() -> None:
    op.drop_table("registers")
    op.drop_index("ix_prices_current", table_name="prices")
    op.drop_table("prices")
    op.drop_index("ix_readings_current", table_name="readings")
    op.drop_table("readings")
    op.drop_table("connections")
    op.drop_table("imports")
