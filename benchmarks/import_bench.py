"""Import benchmark: a year of 15-minute readings for N synthetic connections into SQLite and PostgreSQL.

Each connection's year is written as a generic CSV file (the project's own format), then imported
through the real path: format detection, the reader, validation, the versioned write in one
transaction per file. It prints rows per second for reading and for the whole import, per backend,
and checks the result: the stored row count and the exact Wh total equal what was generated, and
re-importing a sample of files reports 0 new and 0 revised.

    .venv/bin/python benchmarks/import_bench.py                  # 1,000 connections, both backends
    .venv/bin/python benchmarks/import_bench.py --connections 50 --backends sqlite
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from sqlalchemy import create_engine, func, select, text

from kwartier import synth
from kwartier.ids import make_ean18
from kwartier.ingest import read_readings
from kwartier.services.imports import import_readings
from kwartier.store import open_store
from kwartier.store import schema as s
from kwartier.timegrid import interval_starts, local_period_bounds

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
console = Console()


def generate(folder: Path, n: int, year: int) -> tuple[list[tuple[str, Path]], int, int]:
    """Write one CSV per connection; return (ean, path) pairs, total rows and total import Wh."""
    folder.mkdir(parents=True, exist_ok=True)
    start, end = local_period_bounds(date(year, 1, 1), date(year + 1, 1, 1))
    starts = interval_starts(start, end)
    epoch_s = starts.dt.epoch("s").to_numpy()
    local = starts.dt.convert_time_zone("Europe/Amsterdam")
    hour = (local.dt.hour() + local.dt.minute() / 60).to_numpy().astype(np.float64)
    stamps = starts.dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    rng = np.random.default_rng(7)
    clear = synth.daily_cloudiness(400, rng)[((epoch_s - epoch_s[0]) // 86400)]
    out, rows, total_wh = [], 0, 0
    with _progress() as bar:
        task = bar.add_task("generating CSV files", total=n)
        for i in range(n):
            load = synth.household_load_wh(hour, float(rng.uniform(1500, 6000)), rng)
            kwp = float(rng.choice([0.0, 3.0, 5.0, 8.0]))
            pv = synth.pv_energy_wh(epoch_s, kwp, clear) if kwp else np.zeros_like(load)
            imp, exp = np.clip(load - pv, 0, None), np.clip(pv - load, 0, None)
            path = folder / f"c{i:05d}.csv"
            pl.DataFrame({"timestamp": stamps, "import_wh": imp, "export_wh": exp}).write_csv(path)
            out.append((make_ean18(f"871000{i:011d}"), path))
            rows += len(imp)
            total_wh += int(imp.sum())
            bar.advance(task)
    return out, rows, total_wh


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=console, transient=True)


def bench_read(files: list[tuple[str, Path]]) -> float:
    t0 = time.perf_counter()
    for _ean, path in files[: min(len(files), 50)]:
        read_readings(path)
    return time.perf_counter() - t0


def bench_backend(name: str, url: str, files, rows: int, total_wh: int, **opts) -> dict[str, float]:
    engine = open_store(url, **opts)
    t0 = time.perf_counter()
    with _progress() as bar:
        task = bar.add_task(f"importing into {name}", total=len(files))
        for ean, path in files:
            import_readings(engine, path, ean)
            bar.advance(task)
    elapsed = time.perf_counter() - t0
    with engine.connect() as conn:
        stored = conn.execute(select(func.count()).select_from(s.readings)).scalar_one()
        wh = conn.execute(select(func.sum(s.readings.c.import_wh))).scalar_one()
    assert stored == rows, f"{name}: stored {stored} rows, generated {rows}"
    assert int(wh) == total_wh, f"{name}: stored {wh} Wh, generated {total_wh}"
    sample = files[:: max(1, len(files) // 10)]
    t1 = time.perf_counter()
    for ean, path in sample:
        again = import_readings(engine, path, ean)
        assert again.counts.new == 0 and again.counts.revised == 0, f"{name}: re-import changed {path}"
    reimport_s = (time.perf_counter() - t1) / len(sample)
    engine.dispose()
    return {"seconds": elapsed, "rows_per_s": rows / elapsed, "reimport_s_per_file": reimport_s}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--connections", type=int, default=1000)
    ap.add_argument("--year", type=int, default=2025)
    ap.add_argument("--backends", default="sqlite,postgres")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="kwartier-bench-") as tmp:
        folder = Path(tmp)
        files, rows, total_wh = generate(folder / "csv", args.connections, args.year)
        console.print(f"generated {args.connections} connections x {rows // args.connections} quarters = "
                      f"{rows:,} rows ({total_wh / 1e6:,.1f} MWh import)")
        read_s = bench_read(files)
        n_read = min(len(files), 50) * (rows // len(files))
        console.print(f"reader alone (detect + parse + validate): {n_read / read_s:,.0f} rows/s")
        results = {}
        for backend in args.backends.split(","):
            if backend == "sqlite":
                results["SQLite"] = bench_backend("SQLite", f"sqlite:///{folder / 'bench.db'}", files, rows, total_wh)
            elif backend == "postgres":
                schema_name = f"kw_bench_{uuid.uuid4().hex[:8]}"
                admin = create_engine(PG_URL)
                with admin.begin() as conn:
                    conn.execute(text(f'CREATE SCHEMA "{schema_name}"'))
                try:
                    results["PostgreSQL"] = bench_backend(
                        "PostgreSQL", PG_URL, files, rows, total_wh,
                        connect_args={"options": f"-csearch_path={schema_name}"})
                finally:
                    with admin.begin() as conn:
                        conn.execute(text(f'DROP SCHEMA "{schema_name}" CASCADE'))
            else:
                console.print(f"unknown backend {backend!r}")
                return 2
        for name, r in results.items():
            console.print(f"{name}: {rows:,} rows in {r['seconds']:.1f} s = {r['rows_per_s']:,.0f} rows/s "
                          f"end to end; re-import {r['reimport_s_per_file'] * 1000:.0f} ms/file, 0 new, 0 revised "
                          "(verified: row count and exact Wh total)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
