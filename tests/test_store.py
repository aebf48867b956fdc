"""The store on SQLite and PostgreSQL: migrations match the schema, versions are kept, transactions are whole."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, insert, select

from kwartier.store import StoreError, open_store, resolve_url
from kwartier.store import schema as s
from kwartier.store.versions import READING_VALUES, current_frame, write_versions

EAN = "871687120058657526"
T0 = datetime(2025, 10, 25, 22, 0, tzinfo=UTC)


def _frame(values: list[int], start: datetime = T0) -> pl.DataFrame:
    n = len(values)
    return pl.DataFrame({
        "interval_start": pl.datetime_range(start, start + timedelta(minutes=15 * (n - 1)), "15m", eager=True,
                                            time_zone="UTC"),
        "resolution": ["PT15M"] * n,
        "import_wh": values,
        "export_wh": [0] * n,
        "status": ["actual"] * n,
    })


def _import(conn) -> int:
    now = datetime.now(UTC)
    if conn.execute(select(s.connections).where(s.connections.c.ean == EAN)).first() is None:
        conn.execute(insert(s.connections).values(ean=EAN, created_at=now))
    return conn.execute(insert(s.imports).values(
        kind="readings", file_name="t.csv", sha256="0" * 64, format="generic-csv", target=EAN, imported_at=now,
        new=0, unchanged=0, revised=0, anomalies=[])).inserted_primary_key[0]


def _write(engine, frame):
    with engine.begin() as conn:
        iid = _import(conn)
        return write_versions(conn, s.readings, "connection", EAN, frame, READING_VALUES,
                              {"source": "test", "import_id": iid, "imported_at": datetime.now(UTC)})


def test_migrations_produce_exactly_the_schema(engine):
    with engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), s.metadata)
    assert diffs == []


def test_versions_new_unchanged_revised_and_history_kept(engine):
    c1 = _write(engine, _frame([100, 200, 300, 400]))
    assert (c1.new, c1.unchanged, c1.revised) == (4, 0, 0)
    c2 = _write(engine, _frame([100, 200, 300, 400]))
    assert (c2.new, c2.unchanged, c2.revised) == (0, 4, 0)
    c3 = _write(engine, _frame([100, 250, 300, 400, 500]))
    assert (c3.new, c3.unchanged, c3.revised) == (1, 3, 1)
    assert c3.revised_starts == [T0 + timedelta(minutes=15)]
    with engine.connect() as conn:
        cur = current_frame(conn, s.readings, "connection", EAN, READING_VALUES)
        assert cur["import_wh"].to_list() == [100, 250, 300, 400, 500]
        history = conn.execute(
            select(s.readings.c.version, s.readings.c.import_wh, s.readings.c.is_current)
            .where(s.readings.c.interval_start == T0 + timedelta(minutes=15)).order_by(s.readings.c.version)
        ).all()
    assert [tuple(r) for r in history] == [(1, 200, False), (2, 250, True)]
    assert cur["interval_start"][0] == T0  # timestamps come back aware, in UTC


def test_a_failed_transaction_leaves_nothing(engine):
    with pytest.raises(RuntimeError), engine.begin() as conn:
        iid = _import(conn)
        write_versions(conn, s.readings, "connection", EAN, _frame([1, 2, 3]), READING_VALUES,
                       {"source": "t", "import_id": iid, "imported_at": datetime.now(UTC)})
        raise RuntimeError("simulated crash after the rows were written")
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(s.readings)).scalar() == 0
        assert conn.execute(select(func.count()).select_from(s.imports)).scalar() == 0


def test_status_change_is_a_revision(engine):
    _write(engine, _frame([10, 20]).with_columns(status=pl.lit("estimated")))
    c = _write(engine, _frame([10, 20]))
    assert c.revised == 2


def test_url_resolution(monkeypatch, tmp_path):
    monkeypatch.delenv("KWARTIER_DATABASE_URL", raising=False)
    assert resolve_url(None) == "sqlite:///kwartier.db"
    monkeypatch.setenv("KWARTIER_DATABASE_URL", "postgresql://u@h/db")
    assert resolve_url(None) == "postgresql+psycopg://u@h/db"
    assert resolve_url("sqlite:///x.db") == "sqlite:///x.db"


def test_unreachable_database_is_a_clear_error(tmp_path):
    with pytest.raises(StoreError, match="cannot open database"):
        open_store(f"sqlite:///{tmp_path}/no/such/dir/k.db")
