"""Settle a period on a Dask cluster: Parquet partitions from the store, the local settle's functions on workers.

One database transaction, like the local ``settle``:

1. driver: the community definition and the fixed market prices (the same checks), then each group of
   meters is exported to a partition (readings read, estimated and stored as the local settle does) and
   submitted to the cluster as soon as it is written;
2. workers (:func:`settle_partition`): read the partition with pyarrow and run :func:`settle_meters`, a
   pure function: dense energy matrices, metering points taken off their connection, and the local
   settle's own contract settlement (the same engine calls per plan and part of the month). They return
   per-meter, per-component line totals in nano-euros, and the readings' fingerprints;
3. driver: the lines in the order the local settle makes them, then cent rounding, VAT and the deltas
   against the journal by the local settle's posting code, appended to the hash-chained ledger.

The result is the local settle's, posting for posting (tests/test_scale.py checks it). The workers need
kwartier installed at the same version, and the export folder on storage they can all read.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
from sqlalchemy import Connection, Engine, insert, update

from kwartier.community.definition import Definition
from kwartier.scale.partitions import (
    PartitionInputs,
    PeriodBounds,
    export_partition,
    meter_groups,
    needs_history,
    period_bounds,
    read_partition,
    write_common,
)
from kwartier.services import settle as local
from kwartier.services.settle import SettleError, SettleSummary
from kwartier.settle import ledger
from kwartier.store import schema

if TYPE_CHECKING:
    from distributed import Client

QUARTER_US = 15 * 60 * 1_000_000
DEFAULT_PARTITION_METERS = 2_000
FINGERPRINT_COLUMNS = ("interval_start", "version", "import_wh", "export_wh", "status")
LINE_SCHEMA = {"participant": pl.String, "meter": pl.String, "component": pl.String, "payee": pl.String,
               "supplier": pl.String, "vat": pl.Boolean, "vat_rate": pl.String, "nano": pl.Int64,
               "contract": pl.String, "plan_sha": pl.String, "role": pl.String, "quantity": pl.String,
               "unit": pl.String, "unit_price": pl.String}


@dataclass(frozen=True)
class MeterLines:
    """A partition's settlement before rounding: one line per (meter, contract part, component)."""

    lines: list[local._Line]
    fingerprints: dict[str, str]  # meter EAN -> digest of its period readings
    notes: list[tuple[str, str]]  # (metering point EAN, what was wrong)


@dataclass(frozen=True)
class PartitionResult:
    """What a worker sends back: the lines as a compact frame (:data:`LINE_SCHEMA`), fingerprints, notes."""

    lines: pl.DataFrame
    fingerprints: dict[str, str]
    notes: list[tuple[str, str]]
    meters: int
    quarters: int


def dense_energy(period_rows: pl.DataFrame, meters: int, start: datetime, quarters: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Import and export (meters x quarters, Wh, int64) from rows with a meter index; missing values are 0.

    A row off the quarter grid or outside the period is left out, as the local settle's join leaves it out.
    """
    imp = np.zeros((meters, quarters), dtype=np.int64)
    exp = np.zeros((meters, quarters), dtype=np.int64)
    if period_rows.is_empty():
        return imp, exp
    offset_us = period_rows["interval_start"].dt.epoch("us").to_numpy() - int(start.timestamp()) * 1_000_000
    q = np.rint(offset_us * (1.0 / QUARTER_US)).astype(np.int64)  # exact below 2**53 us; checked next
    keep = (q * QUARTER_US == offset_us) & (q >= 0) & (q < quarters)
    flat = period_rows["meter"].to_numpy().astype(np.int64) * quarters + q
    every = bool(keep.all())
    for matrix, column in ((imp, "import_wh"), (exp, "export_wh")):
        values = period_rows[column].fill_null(0).to_numpy()
        matrix.ravel()[flat if every else flat[keep]] = values if every else values[keep]
    return imp, exp


def subtract_metering_points(defn: Definition, meters: list[str], imp: np.ndarray) -> list[tuple[str, str]]:
    """Take each metering point's import off its connection's (in place); a negative result is billed as 0."""
    index = {ean: i for i, ean in enumerate(meters)}
    notes = []
    for mp in defn.spec.metering_points:
        parent, child = index[mp.connection], index[mp.ean]
        imp[parent] -= imp[child]
        negative = int((imp[parent] < 0).sum())
        if negative:
            notes.append((mp.ean, f"{mp.connection}: sub-meter {mp.ean} reads more than the main meter in "
                                  f"{negative} quarter(s); those are billed as 0"))
            np.maximum(imp[parent], 0, out=imp[parent])
    return notes


def reading_fingerprints(period_rows: pl.DataFrame, meters: list[str]) -> dict[str, str]:
    """Per meter, the local settle's digest of its period readings (a wrapping sum of row hashes)."""
    if period_rows.is_empty():
        return {}
    hashes = period_rows.select(*FINGERPRINT_COLUMNS).hash_rows(seed=7)
    sums = pl.DataFrame({"meter": period_rows["meter"], "h": hashes}).group_by("meter").agg(pl.col("h").sum())
    return {meters[m]: f"{int(h) % 2**64:016x}" for m, h in sums.iter_rows()}


def _history(inputs: PartitionInputs) -> pl.DataFrame:
    """The readings in the local settle's shape (connection, interval_start, resolution, ...), for derived series."""
    names = pl.Series("connection", inputs.meters, dtype=pl.String)
    return inputs.readings.select(
        pl.col("meter").map_batches(lambda m: names.gather(m), return_dtype=pl.String).alias("connection"),
        "interval_start", pl.lit("PT15M").alias("resolution"), "import_wh", "export_wh", "status", "version")


def settle_meters(inputs: PartitionInputs) -> MeterLines:
    """The lines of every contract of the partition's meters: the local settle's engine calls, per partition.

    Pure: everything comes from ``inputs`` (no database, clock or configuration). Settling meters in
    groups gives the same lines as settling them all at once, because every amount is per meter.
    """
    b, meters, defn = inputs.bounds, inputs.meters, inputs.defn
    starts = b.starts
    period_rows = inputs.readings.filter(pl.col("interval_start") >= b.start)
    imp, exp = dense_energy(period_rows, len(meters), b.start, starts.len())
    notes = subtract_metering_points(defn, meters, imp)
    history = _history(inputs) if needs_history(defn) else pl.DataFrame()
    index = {ean: i for i, ean in enumerate(meters)}
    lines = local._settle_contracts(defn, b.first, b.end, starts, imp, exp, inputs.year_before_wh, index,
                                    inputs.market, history, b.tz)
    return MeterLines(lines, reading_fingerprints(period_rows, meters), notes)


def lines_frame(lines: list[local._Line]) -> pl.DataFrame:
    """Lines as a columnar frame (decimals as their exact strings), cheap to send between processes."""
    cols = {k: [getattr(ln, k) for ln in lines] for k in LINE_SCHEMA}
    for k in ("vat_rate", "quantity"):
        cols[k] = [str(v) for v in cols[k]]
    return pl.DataFrame(cols, schema=LINE_SCHEMA)


def frame_lines(frame: pl.DataFrame) -> list[local._Line]:
    """The inverse of :func:`lines_frame`: a decimal's string gives back the same decimal, exponent and all."""
    out = []
    for row in frame.iter_rows(named=True):
        row["vat_rate"] = Decimal(row["vat_rate"])
        row["quantity"] = Decimal(row["quantity"])
        out.append(local._Line(**row))
    return out


def settle_partition(path: str) -> PartitionResult:
    """The worker task: read one partition folder and settle it."""
    inputs = read_partition(Path(path))
    result = settle_meters(inputs)
    return PartitionResult(lines_frame(result.lines), result.fingerprints, result.notes, len(inputs.meters),
                           inputs.bounds.starts.len())


def group_ranks(defn: Definition, first: date, end: date) -> dict[str, int]:
    """Per contract id, the position of its engine call in the local settle (groups by plan text and dates).

    Only the order of two lines of one meter matters (a contract change mid-month: the later one names
    the line's contract and plan), and it is the order of their groups.
    """
    order: dict[tuple[str, date, date], int] = {}
    ranks = {}
    for contract in defn.spec.contracts:
        a = max(first, contract.valid_from)
        b = min(end, contract.valid_to) if contract.valid_to else end
        if a < b:
            ranks[contract.id] = order.setdefault((defn.plan_texts[contract.id].sha256, a, b), len(order))
    return ranks


@contextmanager
def dask_client(scheduler: str | None, workers: int | None, *, processes: bool = True,
                memory_limit: str | None = "4GiB") -> Iterator[Client]:
    """A client of the cluster at ``scheduler``, or of a LocalCluster of ``workers`` single-threaded workers."""
    from distributed import Client, LocalCluster

    if scheduler and workers:
        raise SettleError("give either a scheduler address or a number of local workers, not both")
    if scheduler:
        try:
            client = Client(scheduler, timeout="30s")
        except OSError as exc:
            raise SettleError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
        with client:
            yield client
        return
    n = workers or os.cpu_count() or 1
    with (LocalCluster(n_workers=n, threads_per_worker=1, processes=processes, memory_limit=memory_limit,
                       dashboard_address=":0") as cluster, Client(cluster) as client):
        yield client


def settle_distributed(engine: Engine, period: str, *, scheduler: str | None = None, workers: int | None = None,
                       folder: Path | None = None, partition_meters: int = DEFAULT_PARTITION_METERS,
                       processes: bool = True, memory_limit: str | None = "4GiB") -> SettleSummary:
    """Settle the local month ``period`` (YYYY-MM) on Dask; the same summary and postings as the local settle.

    ``scheduler``: ``tcp://HOST:PORT`` of a running cluster; else ``workers`` single-threaded workers
    in a LocalCluster (default: one per core; ``processes``/``memory_limit`` apply to it). ``folder``:
    where the partitions go (a fresh sub-folder, removed afterwards; it must be readable by every
    worker, so give shared storage with a remote cluster); default: a temporary folder.
    """
    from kwartier.services.community import current_definition

    defn = current_definition(engine)
    bounds = period_bounds(period, defn.community.timezone)
    meters = [c.ean for c in defn.spec.connections] + [mp.ean for mp in defn.spec.metering_points]
    summary = SettleSummary(period, connections=len(meters), intervals=len(meters) * bounds.starts.len())
    with ExitStack() as stack:
        base = folder or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="kwartier-scale-")))
        export = base / f"settle-{period}-{uuid.uuid4().hex[:12]}"
        stack.callback(shutil.rmtree, export, ignore_errors=True)
        client = stack.enter_context(dask_client(scheduler, workers, processes=processes, memory_limit=memory_limit))
        conn = stack.enter_context(engine.begin())
        market = local._fixed_prices(conn, defn.community.zone, bounds.start, bounds.stop, bounds.starts, bounds.tz)
        write_common(export, period, defn, market)
        futures = []
        for number, group in enumerate(meter_groups(defn, partition_meters)):
            path, estimated = export_partition(conn, export, number, group, defn, bounds)
            summary.estimated_intervals += estimated
            futures.append(client.submit(settle_partition, str(path), pure=False))
        results: list[PartitionResult] = client.gather(futures)
        post_results(conn, defn, bounds, results, market, summary)
    return summary


def post_results(conn: Connection, defn: Definition, bounds: PeriodBounds, results: list[PartitionResult],
                 market: pl.DataFrame, summary: SettleSummary) -> None:
    """Round, add VAT and post the partitions' lines with the local settle's code; record the run."""
    ranks = group_ranks(defn, bounds.first, bounds.end)
    lines = [ln for r in results for ln in frame_lines(r.lines)]
    lines.sort(key=lambda ln: ranks[ln.contract])  # stable: the local settle's order where it matters
    fingerprints = {m: fp for r in results for m, fp in r.fingerprints.items()}
    summary.notes.extend(note for _, note in sorted(n for r in results for n in r.notes))
    price_fp = local._fingerprint(market.select("interval_start", "price_ueur_per_kwh"))
    postings = local._postings(conn, defn, bounds.period, lines, fingerprints, price_fp)
    key = conn.execute(insert(schema.settle_runs).values(
        period=bounds.period, started_at=datetime.now(UTC), summary={})).inserted_primary_key
    assert key is not None
    run_id = int(key[0])
    summary.new_postings = ledger.append(conn, postings, run_id)
    n, head = ledger.head(conn)
    local._totals(conn, bounds.period, summary)
    conn.execute(update(schema.settle_runs).where(schema.settle_runs.c.id == run_id).values(
        summary={**summary.to_json(), "journal": {"entries": n, "head": head}}))
