"""Parquet partitions of a period's settlement inputs, by connection: exported from the store, read on a worker.

An export folder is self-contained, so a worker needs nothing but the folder (no database):

    period.json                  the period (YYYY-MM) it settles
    plans.json                   the exact plan TOML texts the contracts were loaded with, by SHA-256
    market.parquet               fixed day-ahead prices: interval_start (UTC), resolution, price_ueur_per_kwh
    part-NNNNN/manifest.json     the partition's entities (the community, every party, its participants,
                                 connections, metering points and contracts), its meters in order, and
                                 each meter's import/export earlier in the calendar year (Wh)
    part-NNNNN/readings.parquet  current readings of its meters: meter (int32 index into the manifest's
                                 meters), interval_start (UTC), import_wh, export_wh (Wh; null = not
                                 measured), status, version

The export reads, estimates and stores readings exactly as the local settle does (the same functions),
one group of connections at a time, so the driver never holds more than one group's readings.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq
from sqlalchemy import Connection

from kwartier.community.definition import Definition, build_definition
from kwartier.services import settle as local
from kwartier.timegrid import interval_starts, local_period_bounds

READINGS_SCHEMA: dict[str, pl.DataType] = {
    "meter": pl.Int32(), "interval_start": pl.Datetime("us", "UTC"), "import_wh": pl.Int64(),
    "export_wh": pl.Int64(), "status": pl.String(), "version": pl.Int64()}


class PartitionError(RuntimeError):
    """A partition folder that a worker cannot read (missing file, not shared with the workers)."""


@dataclass(frozen=True)
class PeriodBounds:
    """The local month being settled and the UTC instants the local settle derives from it."""

    period: str
    first: date
    end: date
    tz: str
    start: datetime
    stop: datetime
    history_start: datetime  # the previous month and the estimation weeks
    year_start: datetime

    @property
    def starts(self) -> pl.Series:
        return interval_starts(self.start, self.stop)


def period_bounds(period: str, tz: str) -> PeriodBounds:
    """The bounds of ``period`` (YYYY-MM) in zone ``tz``, computed as :func:`kwartier.services.settle.settle` does."""
    first, end = local.parse_period(period)
    start, stop = local_period_bounds(first, end, tz)
    prev_first = (first - timedelta(days=1)).replace(day=1)
    history_start = min(local_period_bounds(prev_first, first, tz)[0], start - timedelta(weeks=local.ESTIMATE_WEEKS))
    year_start = local_period_bounds(date(first.year, 1, 1), end, tz)[0]
    return PeriodBounds(period, first, end, tz, start, stop, history_start, year_start)


def meter_groups(defn: Definition, size: int) -> list[list[str]]:
    """The meters in groups of about ``size``: connections by EAN, each followed by its metering points.

    A metering point's import is subtracted from its connection's, so the two never part.
    """
    if size < 1:
        raise ValueError(f"partition size must be at least 1 meter, not {size}")
    points: dict[str, list[str]] = {}
    for mp in defn.spec.metering_points:
        points.setdefault(mp.connection, []).append(mp.ean)
    groups: list[list[str]] = []
    current: list[str] = []
    for c in defn.spec.connections:
        current += [c.ean, *points.get(c.ean, [])]
        if len(current) >= size:
            groups.append(current)
            current = []
    if current:
        groups.append(current)
    return groups


def needs_history(defn: Definition) -> bool:
    """Whether some plan has a derived series (it reads the previous month's readings)."""
    return any(s.kind == "derived" for p in defn.plans.values() for s in p.plan.series)


def write_common(folder: Path, period: str, defn: Definition, market: pl.DataFrame) -> None:
    """The folder's shared files: the period, the plan texts and the fixed market prices."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "period.json").write_text(json.dumps({"period": period}))
    texts = {pt.sha256: pt.text for pt in defn.plan_texts.values()}
    (folder / "plans.json").write_text(json.dumps(texts, sort_keys=True))
    pq.write_table(market.select("interval_start", "resolution", "price_ueur_per_kwh").to_arrow(),
                   folder / "market.parquet")


def entities_of(defn: Definition, meters: list[str]) -> dict[str, Any]:
    """The definition data a partition needs: the community, every party, and what belongs to ``meters``."""
    wanted = set(meters)
    spec = defn.spec
    conns = [c for c in spec.connections if c.ean in wanted]
    people = {c.participant for c in conns}
    contracts = []
    for c in spec.contracts:
        if c.target in wanted:
            contracts.append({**c.model_dump(mode="json"), "plan_sha256": defn.plan_texts[c.id].sha256})
    return {
        "community": spec.community.model_dump(mode="json"),
        "parties": [p.model_dump(mode="json") for p in spec.parties],
        "participants": [p.model_dump(mode="json") for p in spec.participants if p.id in people],
        "connections": [c.model_dump(mode="json") for c in conns],
        "metering_points": [m.model_dump(mode="json") for m in spec.metering_points if m.ean in wanted],
        "contracts": contracts,
    }


def write_partition(path: Path, entities: dict[str, Any], meters: list[str],
                    year_before_wh: dict[str, tuple[int, int]], readings: pl.DataFrame) -> None:
    """One partition folder: ``readings`` has the columns of :data:`READINGS_SCHEMA` (meter as an index)."""
    path.mkdir(parents=True, exist_ok=True)
    manifest = {"meters": meters, "entities": entities,
                "year_before_wh": {m: list(v) for m, v in year_before_wh.items()}}
    (path / "manifest.json").write_text(json.dumps(manifest))
    table = readings.select([pl.col(c).cast(t) for c, t in READINGS_SCHEMA.items()]).to_arrow()
    pq.write_table(table, path / "readings.parquet", compression="zstd")


def export_partition(conn: Connection, folder: Path, number: int, meters: list[str], defn: Definition,
                     bounds: PeriodBounds) -> tuple[Path, int]:
    """Read (and estimate, as the local settle does) the readings of ``meters``; write them as a partition.

    Returns the partition folder and the number of quarter-hours estimated (and stored) for it.
    """
    history = needs_history(defn)
    starts = bounds.starts
    frame = local._quarterly(local._readings(conn, meters, bounds.history_start if history else bounds.start,
                                             bounds.stop))
    estimated = 0
    if local._incomplete(frame.filter(pl.col("interval_start") >= bounds.start), len(meters), starts.len()):
        if not history:  # estimates look back: read the weeks before too
            frame = local._quarterly(local._readings(conn, meters, bounds.history_start, bounds.stop))
        estimates = local._estimate(frame, meters, starts, bounds.tz)
        estimated = estimates.height
        if estimated:
            local._store_estimates(conn, estimates)
            frame = local._quarterly(local._readings(conn, meters, bounds.history_start, bounds.stop))
    index = pl.DataFrame({"connection": meters, "meter": pl.int_range(len(meters), eager=True).cast(pl.Int32)})
    located = frame.join(index, on="connection").select(*READINGS_SCHEMA)
    before = local._year_before(conn, meters, bounds.year_start, bounds.start)
    path = folder / f"part-{number:05d}"
    write_partition(path, entities_of(defn, meters), meters, before, located)
    return path, estimated


@dataclass(frozen=True)
class PartitionInputs:
    """What a worker settles: a partition's definition, readings, year-to-date totals and the market."""

    defn: Definition
    meters: list[str]
    bounds: PeriodBounds
    readings: pl.DataFrame  # READINGS_SCHEMA
    year_before_wh: dict[str, tuple[int, int]]
    market: pl.DataFrame


def partition_definition(entities: dict[str, Any], plan_texts: dict[str, str], where: str) -> Definition:
    """The partition's definition, validated again and with each contract's stored plan text."""
    data = {k: (list(v) if isinstance(v, list) else v) for k, v in entities.items()}
    plan_of = {}
    contracts = []
    for c in data["contracts"]:
        c = dict(c)
        plan_of[c["id"]] = c.pop("plan_sha256")
        contracts.append(c)
    data["contracts"] = contracts

    def stored_plan(contract: Any) -> tuple[str, str]:
        sha = plan_of[contract.id]
        if sha not in plan_texts:
            raise PartitionError(f"{where}: plan text {sha} is missing from plans.json")
        return plan_texts[sha], f"{contract.plan} (stored, sha256 {sha[:12]})"

    return build_definition(data, where, stored_plan)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise PartitionError(f"{path} is not there: the export folder must be on storage every worker can read "
                             "(give an export folder on a shared file system)") from None


def read_partition(path: Path) -> PartitionInputs:
    """Read a partition folder (and its export folder's shared files) written by :func:`write_partition`."""
    folder = path.parent
    period = _read_json(folder / "period.json")["period"]
    plan_texts = _read_json(folder / "plans.json")
    manifest = _read_json(path / "manifest.json")
    defn = partition_definition(manifest["entities"], plan_texts, f"partition {path.name} of {folder}")
    bounds = period_bounds(period, defn.community.timezone)
    readings = pl.from_arrow(pq.read_table(path / "readings.parquet", read_dictionary=["status"], use_threads=False))
    market = pl.from_arrow(pq.read_table(folder / "market.parquet"))
    assert isinstance(readings, pl.DataFrame) and isinstance(market, pl.DataFrame)
    readings = readings.select([pl.col(c).cast(t) for c, t in READINGS_SCHEMA.items()])
    before = {m: (int(v[0]), int(v[1])) for m, v in manifest["year_before_wh"].items()}
    return PartitionInputs(defn, list(manifest["meters"]), bounds, readings, before, market)
