"""Scale benchmark: a month of 1,000,000 synthetic connections settled through the Dask path, bounded memory.

Each Dask task makes one partition *on the worker*, deterministically from a seed (the data do not go
through the database: 1,000,000 connections x 2,980 quarters = 3e9 readings), writes it as a Parquet
partition in the export layout of :mod:`kwartier.scale.partitions`, settles it with the worker task
of the Dask path (:func:`kwartier.scale.run.settle_partition`: pyarrow read, sub-definition validated
again, the local settle's engine calls), reduces the lines to totals and removes the partition. The
driver's cent rounding, VAT and ledger posting are not part of it (they are the local settle's code;
tests/test_scale.py shows the whole path equal to the local one).

October 2026 (a DST month, 2,980 quarters) under ``nl-dynamic-2026``: household loads with PV on most
roofs, one price series for all (the settlement benchmark's). Checks, every
``--check-every``-th partition: every line of every connection equals the engine run directly on the
generated in-memory matrices (so Parquet, partition and definition lost nothing), and 3 connections'
supply, feed-in and energy tax equal the settlement benchmark's Decimal reference, to the nano-euro.
Prints wall time, connection-quarter-hours per second (end to end, and settling alone), peak RSS per
worker against its memory limit, and an estimate for N workers.

    .venv/bin/python benchmarks/scale_bench.py
    .venv/bin/python benchmarks/scale_bench.py --connections 100000                    # a shorter run
    .venv/bin/python benchmarks/scale_bench.py --budget-minutes 30   # on a busy machine: report what is done
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from settle_bench import END, FIRST, decimal_reference, month_data

PERIOD = "2026-10"
PLAN = "nl-dynamic-2026"
WORKER_ENV = {"POLARS_MAX_THREADS": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
              "MKL_NUM_THREADS": "1"}


def write_common_files(folder: Path, seed: int) -> None:
    """period.json, plans.json (the built-in plan's text) and market.parquet for the whole run."""
    from kwartier.community.definition import build_definition
    from kwartier.scale.partitions import write_common

    _, _, _, market = month_data(1, seed=seed)
    defn = build_definition(_entities(["871000000000000013"], 0, "0" * 64, strip_sha=True), "bench",
                            lambda c: _plan_text())
    write_common(folder, PERIOD, defn, market)


def _plan_text() -> tuple[str, str]:
    from importlib import resources

    return (resources.files("kwartier.tariffs") / "plans" / f"{PLAN}.toml").read_text(encoding="utf-8"), PLAN


def _entities(eans: list[str], offset: int, plan_sha: str, strip_sha: bool = False) -> dict[str, object]:
    """The community, its four parties, and one participant, connection and contract per EAN."""
    parties = [{"id": "supplier", "roles": ["supplier", "aggregator"], "name": "Supplier"},
               {"id": "grid", "roles": ["grid"], "name": "Grid operator"},
               {"id": "tax", "roles": ["tax"], "name": "Tax authority"},
               {"id": "coop", "roles": ["community"], "name": "Cooperative"}]
    people, conns, contracts = [], [], []
    for k, ean in enumerate(eans):
        i = offset + k
        people.append({"id": f"p{i}", "name": f"Household {i}", "email": f"p{i}@example.org"})
        conns.append({"ean": ean, "participant": f"p{i}", "grid_area": "breda", "capacity_kw": "17.25",
                      "grid": "grid"})
        contract = {"id": f"c{i}", "target": ean, "supplier": "supplier", "plan": PLAN, "valid_from": "2026-01-01"}
        if not strip_sha:
            contract["plan_sha256"] = plan_sha
        contracts.append(contract)
    return {"community": {"id": "bench", "name": "Benchmark", "timezone": "Europe/Amsterdam", "zone": "NL"},
            "parties": parties, "participants": people, "connections": conns, "contracts": contracts}


def _partition_data(number: int, size: int, seed: int) -> tuple[list[str], np.ndarray, np.ndarray, dict]:
    """The EANs, import and export (size x quarters, Wh) and year-to-date totals of partition ``number``.

    Each household: the synthetic load shape scaled by its own size with uniform noise, PV of 0-8 kWp
    on the month's weather; all from a generator seeded by (seed, number), so a rerun is identical.
    """
    from kwartier import synth
    from kwartier.ids import make_ean18

    offset = number * size
    eans = [make_ean18(f"871{offset + k:014d}") for k in range(size)]
    starts = period_bounds_ams().starts
    epoch_s = starts.dt.epoch("s").to_numpy()
    local = starts.dt.convert_time_zone("Europe/Amsterdam")
    hour = (local.dt.hour() + local.dt.minute() / 60).to_numpy().astype(np.float64)
    rng = np.random.default_rng([seed, number])
    days = (epoch_s - epoch_s[0]) // 86400
    shape = synth.household_load_wh(hour, 3500.0, rng).astype(np.float32)
    noise = rng.random((size, starts.len()), dtype=np.float32) + np.float32(0.5)
    load = np.rint(shape[None, :] * rng.uniform(0.4, 1.8, (size, 1)).astype(np.float32) * noise).astype(np.int64)
    pv_1kwp = synth.pv_energy_wh(epoch_s, 1.0, synth.daily_cloudiness(int(days.max()) + 1, rng)[days])
    kwp = rng.choice([0.0, 3.0, 4.5, 6.0, 8.0], size=(size, 1), p=[0.3, 0.2, 0.2, 0.2, 0.1])
    pv = np.rint(kwp * pv_1kwp[None, :]).astype(np.int64)
    imp, exp = np.clip(load - pv, 0, None), np.clip(pv - load, 0, None)
    before = {e: (int(a), int(b)) for e, a, b in zip(eans, rng.integers(0, 3_000_000, size),
                                                     rng.integers(0, 2_000_000, size), strict=True)}
    return eans, imp, exp, before


def period_bounds_ams():  # type: ignore[no-untyped-def]
    from kwartier.scale.partitions import period_bounds

    return period_bounds(PERIOD, "Europe/Amsterdam")


def _long_readings(imp: np.ndarray, exp: np.ndarray, starts_us: np.ndarray) -> pl.DataFrame:
    """Dense matrices as the partition's long reading rows (one per meter and quarter)."""
    n, nq = imp.shape
    return pl.DataFrame({
        "meter": np.repeat(np.arange(n, dtype=np.int32), nq),
        "interval_start": pl.Series(np.tile(starts_us, n)).cast(pl.Datetime("us")).dt.replace_time_zone("UTC"),
        "import_wh": imp.ravel(), "export_wh": exp.ravel(),
        "status": pl.repeat("actual", n * nq, eager=True), "version": pl.repeat(1, n * nq, eager=True),
    })


def run_partition(folder: str, number: int, size: int, seed: int, check: bool) -> dict[str, object]:
    """The Dask task: make partition ``number``, settle it through the Dask path's worker task, check, remove."""
    import hashlib

    from kwartier.scale.partitions import write_partition
    from kwartier.scale.run import frame_lines, settle_partition

    t0, c0 = time.perf_counter(), time.process_time()
    starts = period_bounds_ams().starts
    eans, imp, exp, before = _partition_data(number, size, seed)
    sha = hashlib.sha256(_plan_text()[0].encode()).hexdigest()
    path = Path(folder) / f"part-{number:05d}"
    write_partition(path, _entities(eans, number * size, sha), eans, before,
                    _long_readings(imp, exp, starts.dt.epoch("us").to_numpy()))
    t1, c1 = time.perf_counter(), time.process_time()
    result = settle_partition(str(path))
    t2, c2 = time.perf_counter(), time.process_time()
    lines = result.lines
    totals = dict(lines.group_by("component").agg(pl.col("nano").sum()).iter_rows())
    problems = []
    if lines.height != size * 6:
        problems.append(f"partition {number}: {lines.height} lines for {size} connections x 6 components")
    if check:
        problems += _check(number, eans, imp, exp, before, frame_lines(lines), Path(folder), starts)
    shutil.rmtree(path)
    return {"number": number, "meters": size, "quarters": starts.len(), "generate_s": t1 - t0,
            "settle_s": t2 - t1, "generate_cpu_s": c1 - c0, "settle_cpu_s": c2 - c1, "totals": totals,
            "problems": problems, "checked": check,
            "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _check(number, eans, imp, exp, before, lines, folder: Path, starts) -> list[str]:  # type: ignore[no-untyped-def]
    """Every line against the engine on the in-memory matrices; 3 connections against the Decimal reference."""
    import pyarrow.parquet as pq

    from kwartier.settle.engine import PeriodEnergy, settle_plan
    from kwartier.tariffs.plan import load_plan

    plan = load_plan(PLAN)
    market = pl.from_arrow(pq.read_table(folder / "market.parquet"))
    before_i = np.array([before[e][0] for e in eans], dtype=np.int64)
    before_e = np.array([before[e][1] for e in eans], dtype=np.int64)
    direct = settle_plan(plan, PeriodEnergy(FIRST, END, starts, imp, exp, before_i, before_e), market)
    got = {(ln.meter, ln.component): ln.nano for ln in lines}
    index = {e: k for k, e in enumerate(eans)}
    problems = [f"partition {number}: {meter} {comp}: {nano} != engine {int(direct[comp][index[meter]])}"
                for (meter, comp), nano in got.items() if nano != int(direct[comp][index[meter]])]
    for k in np.random.default_rng(number).choice(len(eans), size=3, replace=False):
        ref = decimal_reference(plan, imp[k], exp[k], market, before[eans[k]])
        problems += [f"partition {number}: {eans[k]} {comp}: {got[(eans[k], comp)]} != Decimal {v}"
                     for comp, v in ref.items() if got[(eans[k], comp)] != v]
    return problems[:20]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--connections", type=int, default=1_000_000)
    ap.add_argument("--partition", type=int, default=2_500, help="connections per partition")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--memory-limit", default="2GiB", help="per worker (the nanny restarts a worker above it)")
    ap.add_argument("--check-every", type=int, default=40, help="check every n-th partition in full")
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--budget-minutes", type=float, default=None,
                    help="stop after this long and report the partitions done (for a busy machine)")
    ap.add_argument("--folder", type=Path, default=None, help="where partitions are written (default: a temp dir)")
    args = ap.parse_args()
    if args.connections % args.partition:
        print("--connections must be a multiple of --partition", file=sys.stderr)
        return 2
    from dask.utils import parse_bytes
    from distributed import Client, LocalCluster, as_completed

    folder = Path(tempfile.mkdtemp(prefix="kwartier-scale-bench-", dir=args.folder))
    parts = args.connections // args.partition
    try:
        write_common_files(folder, args.seed)
        with (LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                           memory_limit=args.memory_limit, dashboard_address=":0", env=WORKER_ENV) as cluster,
              Client(cluster) as client):
            client.run(lambda: __import__("kwartier.scale.run"))  # imports outside the timing
            t0 = time.perf_counter()
            futures = [client.submit(run_partition, str(folder), i, args.partition, args.seed,
                                     i % args.check_every == 0, pure=False) for i in range(parts)]
            results = []
            for done, future in enumerate(as_completed(futures), 1):
                results.append(future.result())
                if args.budget_minutes and time.perf_counter() - t0 > args.budget_minutes * 60 and done < parts:
                    client.cancel(futures)
                    print(f"STOPPED: the time budget of {args.budget_minutes} min ran out after {done} of {parts} "
                          "partitions; the figures below are for those", flush=True)
                    break
                if done % max(1, parts // 20) == 0:
                    elapsed = time.perf_counter() - t0
                    cpu = sum(r["settle_cpu_s"] for r in results)
                    cq = done * args.partition * r0q(results)
                    print(f"  {done}/{parts} partitions, {elapsed:.0f} s, {cq / elapsed:,.0f} cq/s end to end, "
                          f"{cq / cpu:,.0f} cq per settle CPU-s, load {os.getloadavg()[0]:.1f}", flush=True)
            wall = time.perf_counter() - t0
            rss = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        return report(args, results, wall, rss, parse_bytes(args.memory_limit) / 2**20)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def r0q(results: list[dict]) -> int:
    return int(results[0]["quarters"])


def report(args, results: list[dict], wall: float, rss: dict[str, float], limit_mb: float) -> int:  # type: ignore[no-untyped-def]
    """Print the figures; exit status 1 when a check failed or a worker went above its memory limit."""
    cq = sum(r["meters"] * r["quarters"] for r in results)
    nq = results[0]["quarters"]
    settle_cpu = sum(r["settle_cpu_s"] for r in results)
    gen_cpu = sum(r["generate_cpu_s"] for r in results)
    settle_wall = sum(r["settle_s"] for r in results)
    totals: dict[str, int] = {}
    for r in results:
        for comp, nano in r["totals"].items():
            totals[comp] = totals.get(comp, 0) + int(nano)
    problems = [p for r in results for p in r["problems"]]
    checked = sum(r["checked"] for r in results)
    per_core = cq / settle_cpu  # connection-quarter-hours per CPU-second of settling
    settled = sum(r["meters"] for r in results)
    print(f"{settled:,} of {args.connections:,} connections x {nq} quarters = {cq:,} connection-quarter-hours in "
          f"{len(results)} partitions of {args.partition:,}, {args.workers} single-threaded worker processes "
          f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores at the end)")
    print(f"wall time {wall:.1f} s end to end (generate + write Parquet + settle): {cq / wall:,.0f} cq/s")
    print(f"settling (read Parquet, validate definition, matrices, fingerprints, engine, lines): {settle_cpu:,.0f} "
          f"CPU-s ({settle_wall:,.0f} s wall in tasks) = {per_core:,.0f} cq per CPU-second; "
          f"generating and writing the partitions: {gen_cpu:,.0f} CPU-s")
    print("peak RSS per worker: " + ", ".join(f"{v:,.0f} MB" for v in rss.values())
          + f" (memory limit {limit_mb:,.0f} MB each)")
    eur = {k: f"{v / 1e9:,.2f}" for k, v in sorted(totals.items())}
    print(f"totals EUR (before cent rounding): {eur}")
    for n in (2, 8, 32, 128):
        minutes = settled * nq / (n * per_core) / 60
        print(f"  estimate, {n:>3} dedicated worker cores: settling {n * per_core:,.0f} cq/s; "
              f"a month of 1,000,000 connections in {1_000_000 * nq / (n * per_core) / 60:,.1f} min"
              + (f" (this run: {minutes:,.1f} min)" if settled != 1_000_000 else ""))
    worst = max(rss.values())
    if worst > limit_mb:
        problems.append(f"a worker peaked at {worst:,.0f} MB, above its limit of {limit_mb:,.0f} MB")
    if problems:
        print("FAILED:\n  " + "\n  ".join(problems[:20]), file=sys.stderr)
        return 1
    print(f"verified: {checked} partitions in full against the engine on in-memory data, and "
          f"{3 * checked} connections' supply, feed-in and energy tax against the Decimal reference; "
          f"{settled * 6:,} lines")
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a kill still removes the partitions
    sys.exit(main())
