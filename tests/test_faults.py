"""Faults: SIGKILL during import and settle, the database connection lost mid-write, telemetry out of order
and duplicated, a full disk for the invoice folder.

Each fault is real: the CLI runs in a subprocess and gets SIGKILL while its transaction is writing
(seen by the SQLite write-ahead log growing); PostgreSQL's ``pg_terminate_backend`` cuts the
connection of an import from another session while its transaction holds uncommitted rows; the
invoice folder is a 64 KiB tmpfs (we run as root in CI; elsewhere the test skips with the reason).
After each fault the store holds either nothing of the interrupted work or all of it, and a rerun
gives exactly what an uninterrupted run gives: no duplicate, no gap.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from sqlalchemy import create_engine, func, select, text

from communities import HEAD, member, write_generic
from conftest import PG_URL, _pg_reachable, data_file, need
from kwartier import synth
from kwartier.ids import make_ean18
from kwartier.ingest import read_readings
from kwartier.services.billing import bill
from kwartier.services.community import load_community
from kwartier.services.imports import import_prices, import_readings
from kwartier.services.settle import settle
from kwartier.settle import ledger
from kwartier.store import open_store
from kwartier.store import schema as s
from kwartier.timegrid import interval_starts, local_period_bounds

SMP = "household_nl/slimmemeterportal_2023_15min.csv"  # a year of quarter-hours: 35,040 rows
MAIN = "871687120058657526"
PERIOD = "2026-02"
READING_COLS = ("connection", "interval_start", "resolution", "import_wh", "export_wh", "status", "version",
                "is_current", "source")
JOURNAL_COLS = ("period", "kind", "debit", "credit", "amount_nano", "participant", "payee", "connection",
                "component")


def cli(db: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "kwartier.cli", "--db", f"sqlite:///{db}", *args]


def wal_bytes(db: Path) -> int:
    wal = Path(f"{db}-wal")
    try:
        return wal.stat().st_size
    except FileNotFoundError:
        return 0


def kill_while_writing(cmd: list[str], db: Path, min_wal: int, cwd: Path, delay_s: float = 0.0,
                       timeout_s: float = 300) -> bool:
    """Run ``cmd``; SIGKILL it ``delay_s`` after its write-ahead log holds ``min_wal`` bytes (0: once the
    store is open). True if it was still running when killed."""
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout_s
    wal = Path(f"{db}-wal")
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if wal.exists() and wal_bytes(db) >= min_wal:
                time.sleep(delay_s)
                alive = proc.poll() is None
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                return alive
            time.sleep(0.002)
        return False
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def rows(db: Path, table, cols: tuple[str, ...], order: tuple[str, ...]) -> list[tuple]:  # type: ignore[no-untyped-def]
    engine = open_store(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(select(*(table.c[c] for c in cols))
                                                   .order_by(*(table.c[c] for c in order)))]
    finally:
        engine.dispose()


def fresh_db(path: Path) -> Path:
    open_store(f"sqlite:///{path}").dispose()  # migrated, and the WAL checkpointed away
    return path


# --- SIGKILL during import ----------------------------------------------------------------------------


@pytest.mark.slow
def test_sigkill_during_import_then_rerun_is_identical(tmp_path):
    src = data_file(SMP)
    reference = fresh_db(tmp_path / "reference.db")
    ref_engine = open_store(f"sqlite:///{reference}")
    expected_n = import_readings(ref_engine, src, MAIN).intervals
    ref_engine.dispose()
    expected = rows(reference, s.readings, READING_COLS, ("interval_start",))
    assert len(expected) == expected_n == 35040

    for attempt in range(3):  # the write phase is short: try again if the import finished first
        db = fresh_db(tmp_path / f"k{attempt}.db")
        if kill_while_writing(cli(db, "import", "readings", str(src), "--connection", MAIN), db, 256 * 1024,
                              tmp_path):
            break
    else:
        pytest.fail("the import always finished before it could be killed while writing")
    after_kill = rows(db, s.readings, READING_COLS, ("interval_start",))
    logged = rows(db, s.imports, ("id",), ("id",))
    assert (len(after_kill), len(logged)) in ((0, 0), (expected_n, 1)), "half an import is stored"

    done = subprocess.run(cli(db, "import", "readings", str(src), "--connection", MAIN, "--json"), cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert rows(db, s.readings, READING_COLS, ("interval_start",)) == expected  # same rows, no gap, no duplicate
    again = subprocess.run(cli(db, "import", "readings", str(src), "--connection", MAIN, "--json"), cwd=tmp_path,
                           capture_output=True, text=True, timeout=300)
    assert json.loads(again.stdout)["new"] == 0 and json.loads(again.stdout)["unchanged"] == expected_n
    assert len(rows(db, s.imports, ("id",), ("id",))) == 1


# --- SIGKILL during settle ----------------------------------------------------------------------------


def settle_world(db: Path, folder: Path, n: int = 16) -> list[str]:
    """``n`` households on February 2026 with two missing days each (the settle run estimates them)."""
    engine = open_store(f"sqlite:///{db}")
    eans = [make_ean18(f"871000{i:011d}") for i in range(n)]
    (folder / "c.toml").write_text(HEAD + "".join(member(i, e) for i, e in enumerate(eans)))
    load_community(engine, folder / "c.toml")
    start, stop = local_period_bounds(date(2026, 1, 20), date(2026, 3, 1))
    starts = interval_starts(start, stop)
    hour = starts.dt.convert_time_zone("Europe/Amsterdam").dt.hour().to_numpy().astype(float)
    pl.DataFrame({"timestamp": starts.dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
                  "price_eur_per_mwh": [f"{p:.2f}" for p in 80 + 40 * np.sin(hour / 24 * 6.28)]}
                 ).write_csv(folder / "prices.csv")
    import_prices(engine, folder / "prices.csv")
    rng = np.random.default_rng(11)
    gap = (starts >= datetime(2026, 2, 10, tzinfo=UTC)) & (starts < datetime(2026, 2, 12, tzinfo=UTC))
    for ean in eans:
        wh = synth.household_load_wh(hour, 3000, rng)
        frame = pl.DataFrame({"interval_start": starts, "import_wh": wh, "export_wh": np.zeros_like(wh)})
        import_readings(engine, write_generic(frame.filter(~gap), folder / f"{ean}.csv"), ean)
    engine.dispose()
    return eans


@pytest.mark.slow
def test_sigkill_during_settle_then_rerun_is_identical(tmp_path):
    base = tmp_path / "base.db"
    settle_world(fresh_db(base), tmp_path)
    reference = tmp_path / "reference.db"
    shutil.copy(base, reference)
    ref_engine = open_store(f"sqlite:///{reference}")
    started = time.monotonic()
    summary = settle(ref_engine, PERIOD)
    took = time.monotonic() - started
    ref_engine.dispose()
    assert summary.estimated_intervals > 0 and summary.new_postings > 0
    expected_journal = rows(reference, s.journal, JOURNAL_COLS, ("seq",))
    expected_readings = rows(reference, s.readings, READING_COLS, ("connection", "interval_start", "version"))
    before_readings = rows(base, s.readings, READING_COLS, ("connection", "interval_start", "version"))

    # SQLite keeps a small transaction's pages in memory until the commit: kill by time, from the moment the
    # run opened the store, at a fraction of an uninterrupted run (shorter each time it got to the end).
    for attempt, fraction in enumerate((0.6, 0.3, 0.1, 0.0)):
        db = tmp_path / f"k{attempt}.db"
        shutil.copy(base, db)
        alive = kill_while_writing(cli(db, "settle", "--period", PERIOD), db, 0, tmp_path, delay_s=fraction * took)
        journal = rows(db, s.journal, JOURNAL_COLS, ("seq",))
        readings = rows(db, s.readings, READING_COLS, ("connection", "interval_start", "version"))
        assert (journal, readings) in ((expected_journal, expected_readings), ([], before_readings)), \
            "the killed settle run left part of its work"
        if alive and not journal:
            break
    else:
        pytest.fail("the settle run always finished before it could be killed midway")

    done = subprocess.run(cli(db, "settle", "--period", PERIOD, "--json"), cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert rows(db, s.journal, JOURNAL_COLS, ("seq",)) == expected_journal  # same postings, none twice
    assert rows(db, s.readings, READING_COLS, ("connection", "interval_start", "version")) == expected_readings
    engine = open_store(f"sqlite:///{db}")
    with engine.connect() as conn:
        assert ledger.verify(conn).ok
        runs = conn.execute(select(func.count()).select_from(s.settle_runs)).scalar_one()
    engine.dispose()
    assert runs == 1  # the killed run left no trace
    again = subprocess.run(cli(db, "settle", "--period", PERIOD, "--json"), cwd=tmp_path, capture_output=True,
                           text=True, timeout=300)
    assert json.loads(again.stdout)["new_postings"] == 0


# --- PostgreSQL: the connection cut in the middle of a write ---------------------------------------


@pytest.fixture
def pg_schema():
    need(_pg_reachable(), f"PostgreSQL is not reachable at {PG_URL}")
    name = f"kw_fault_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{name}"'))
    yield admin, name
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{name}" CASCADE'))
    admin.dispose()


def terminate_when_writing(admin, application: str, proc: subprocess.Popen, timeout_s: float = 300) -> bool:  # type: ignore[no-untyped-def]
    """Terminate the backend of ``application`` once its transaction has written (holds an xid)."""
    deadline = time.monotonic() + timeout_s
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:  # a fresh view each query
        while proc.poll() is None and time.monotonic() < deadline:
            pid = conn.execute(text("SELECT pid FROM pg_stat_activity WHERE application_name = :a "
                                    "AND backend_xid IS NOT NULL"), {"a": application}).scalar()
            if pid is not None:
                return bool(conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar())
            time.sleep(0.001)
    return False


def pg_cli(url: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "kwartier.cli", "--db", url, *args]


@pytest.mark.postgres
@pytest.mark.slow
def test_connection_lost_mid_import_leaves_nothing_and_the_rerun_is_whole(pg_schema, tmp_path):
    admin, name = pg_schema
    src = data_file(SMP)
    app = f"kw-fault-{name}"
    url = f"{PG_URL}?options=-csearch_path%3D{name}&application_name={app}"
    open_store(url).dispose()  # migrated before the run, so the cut falls in the import's own transaction
    cmd = pg_cli(url, "import", "readings", str(src), "--connection", MAIN, "--json")
    for _attempt in range(3):
        proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        cut = terminate_when_writing(admin, app, proc)
        _, stderr = proc.communicate(timeout=300)
        if cut:
            break
    else:
        pytest.fail("the import always committed before its connection could be cut")
    assert proc.returncode != 0, "the import went on as if its connection had not been cut"
    assert "terminat" in stderr.lower() or "connection" in stderr.lower(), stderr[-1500:]
    with admin.connect() as conn:
        counts = [conn.execute(text(f'SELECT count(*) FROM "{name}".{t}')).scalar_one()
                  for t in ("readings", "imports", "connections")]
    assert counts == [0, 0, 0], "half an import is stored"

    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    expected = read_readings(src).frame
    assert json.loads(done.stdout)["new"] == expected.height
    engine = open_store(url)
    r = s.readings
    with engine.connect() as conn:
        stored = pl.DataFrame([tuple(x) for x in conn.execute(
            select(r.c.interval_start, r.c.import_wh, r.c.export_wh).where(r.c.is_current.is_(True))
            .order_by(r.c.interval_start))], orient="row",
            schema={"interval_start": pl.Datetime("us", "UTC"), "import_wh": pl.Int64, "export_wh": pl.Int64})
        versions = conn.execute(select(func.count()).select_from(r)).scalar_one()
    engine.dispose()
    assert versions == expected.height  # one version each: nothing of the cut run survived
    assert stored.equals(expected.select("interval_start", "import_wh", "export_wh"))
    assert "Traceback" not in stderr, f"the lost connection is not reported as a clean error: {stderr[-600:]}"


# --- telemetry out of order and duplicated ---------------------------------------------------------


def test_telemetry_out_of_order_duplicated_and_redelivered_after_a_restart(engine):
    from kwartier.services.telemetry import Sample, TelemetryStore

    ean = make_ean18("87100000000000099")
    t0 = datetime(2026, 2, 3, 10, 0, tzinfo=UTC)
    rng = random.Random(5)
    imp = exp = 0
    samples = []
    for k in range(6 * 60 * 2):  # two hours of 10-second samples, a 3-minute hole after the first hour
        if 360 <= k < 378:
            continue
        imp += rng.randint(0, 40)
        exp += rng.randint(0, 5)
        samples.append(Sample(ean, t0 + timedelta(seconds=10 * k), imp, exp))
    now = t0 + timedelta(hours=3)
    shuffled = samples + rng.sample(samples, 200)  # at-least-once: 200 delivered twice
    rng.shuffle(shuffled)
    first = TelemetryStore(engine)
    for i in range(0, len(shuffled) // 2, 53):
        first.store(shuffled[i:i + 53], now)
    second = TelemetryStore(engine)  # a restart: the cache is gone, the broker redelivers the last batches
    for i in range(len(shuffled) // 2 - 200, len(shuffled), 41):
        second.store(shuffled[i:i + 41], now)
    r = s.readings
    with engine.connect() as conn:
        got = conn.execute(select(r.c.interval_start, r.c.import_wh, r.c.export_wh).where(
            r.c.connection == ean, r.c.is_current.is_(True)).order_by(r.c.interval_start)).all()
        dupes = conn.execute(select(func.count()).select_from(r).where(r.c.connection == ean, r.c.is_current.is_(True))
                             .group_by(r.c.interval_start).having(func.count() > 1)).all()
    assert not dupes
    assert len(got) == 7  # the 8 quarters of the two hours, the last not yet complete (no sample at 12:00)
    first_q, last_q = got[0][0], got[-1][0] + timedelta(minutes=15)
    by_ts = {x.ts: x for x in samples}
    assert sum(g[1] for g in got) == by_ts[last_q].import_wh - by_ts[first_q].import_wh  # nothing lost or doubled
    assert sum(g[2] for g in got) == by_ts[last_q].export_wh - by_ts[first_q].export_wh


# --- a full disk for the invoice folder -----------------------------------------------------------------


@pytest.fixture
def full_disk(tmp_path):
    """A 64 KiB tmpfs: room for an invoice's HTML, not for its PDF. Needs root (CI runs as root)."""
    folder = tmp_path / "full"
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)], capture_output=True,
                          text=True)
    need(done.returncode == 0, f"cannot mount a small tmpfs (root needed): {done.stderr.strip()}")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


def billed_world(tmp_path: Path, n: int = 3):  # type: ignore[no-untyped-def]
    db = fresh_db(tmp_path / "k.db")
    settle_world(db, tmp_path, n)
    engine = open_store(f"sqlite:///{db}")
    settle(engine, PERIOD)
    return db, engine


def _no_partial_files(folder: Path) -> None:
    from pypdf import PdfReader

    assert not list(folder.glob("*.part")), "a partial file was left"
    for pdf in folder.glob("*.pdf"):
        assert len(PdfReader(pdf).pages) >= 1, f"{pdf.name} is not a whole PDF"


@pytest.mark.slow
def test_a_full_invoice_folder_fails_cleanly_and_the_rerun_writes_the_files(tmp_path, full_disk):
    from kwartier.services.billing import BillingError

    db, engine = billed_world(tmp_path)
    with pytest.raises(BillingError, match="No space left on device"):  # a domain error naming the cause
        bill(engine, PERIOD, full_disk)
    _no_partial_files(full_disk)
    with engine.connect() as conn:
        issued = conn.execute(select(s.invoices.c.number).order_by(s.invoices.c.number)).scalars().all()
    assert len(issued) >= 1  # the numbered invoice stays; its files come with the next run
    engine.dispose()
    cmd = cli(db, "bill", "--period", PERIOD, "--out", str(full_disk))
    failed = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert failed.returncode != 0 and "No space left on device" in failed.stderr
    assert "Traceback" not in failed.stderr, failed.stderr[-2000:]
    _no_partial_files(full_disk)
    subprocess.run(["mount", "-o", "remount,size=32m", str(full_disk)], check=True)  # room again
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    engine = open_store(f"sqlite:///{db}")
    with engine.connect() as conn:
        numbers = conn.execute(select(s.invoices.c.number).order_by(s.invoices.c.number)).scalars().all()
    engine.dispose()
    year = date.today().year
    assert numbers == [f"SUP-{year}-{k:06d}" for k in range(1, 4)]  # no gap, no duplicate
    assert sorted(p.stem for p in full_disk.glob("*.pdf")) == numbers
    _no_partial_files(full_disk)


@pytest.mark.slow
def test_a_full_disk_for_one_invoice_pdf_fails_cleanly(tmp_path, full_disk):
    db, engine = billed_world(tmp_path, 1)
    number = bill(engine, PERIOD, None).invoices[0]["number"]
    engine.dispose()
    target = full_disk / "invoice.pdf"
    failed = subprocess.run(cli(db, "invoice", "pdf", str(number), "-o", str(target)), cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert failed.returncode != 0 and "No space left on device" in failed.stderr
    assert "Traceback" not in failed.stderr, failed.stderr[-2000:]
    assert not target.exists() and not list(full_disk.iterdir()), "a partial PDF was left"
