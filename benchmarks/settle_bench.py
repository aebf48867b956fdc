"""Settlement benchmark: a synthetic month for many connections, the engine alone and end to end.

Engine alone: 100,000 connections (household load with morning and evening peaks, PV on most roofs,
day-to-day weather) for October 2026 (a DST month: 2,980 quarters) under ``nl-dynamic-2026``
(supply, feed-in, banded energy tax with annual netting, grid, supplier fee, tax reduction): prints
connection-quarter-hours per second, and checks a random sample of connections against a Decimal
reference written here from the plan's documented rules, to the nano-euro.

End to end: a community of ``--store-connections`` connections is loaded, its readings and prices
put in the store, and ``settle`` runs (read, estimate, engine, post to the hash-chained ledger) on
SQLite and PostgreSQL; it prints connection-quarter-hours per second, checks that debits equal
credits, that ``ledger verify`` passes, and that a second run posts nothing.

    .venv/bin/python benchmarks/settle_bench.py
    .venv/bin/python benchmarks/settle_bench.py --connections 20000 --store-connections 500 --backends sqlite
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from datetime import date
from decimal import Decimal
from pathlib import Path

import numpy as np
import polars as pl
from rich.console import Console

from kwartier import synth
from kwartier.settle.engine import PeriodEnergy, settle_plan
from kwartier.tariffs.plan import load_plan
from kwartier.timegrid import interval_starts, local_period_bounds

console = Console()
FIRST, END = date(2026, 10, 1), date(2026, 11, 1)
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def month_data(n: int, seed: int = 11) -> tuple[pl.Series, np.ndarray, np.ndarray, pl.DataFrame]:
    """Starts, import and export (n x quarters, Wh) and a quarter-hour market price frame."""
    start, stop = local_period_bounds(FIRST, END)
    starts = interval_starts(start, stop)
    epoch_s = starts.dt.epoch("s").to_numpy()
    local = starts.dt.convert_time_zone("Europe/Amsterdam")
    hour = (local.dt.hour() + local.dt.minute() / 60).to_numpy().astype(np.float64)
    rng = np.random.default_rng(seed)
    days = (epoch_s - epoch_s[0]) // 86400
    clear = synth.daily_cloudiness(int(days.max()) + 1, rng)[days]
    shape = synth.household_load_wh(hour, 3500.0, rng).astype(np.float64)  # one typical profile
    scale = rng.uniform(0.4, 1.8, size=(n, 1))
    noise = rng.gamma(6.0, 1 / 6.0, size=(n, starts.len()))
    load = np.rint(shape[None, :] * scale * noise).astype(np.int64)
    kwp = rng.choice([0.0, 3.0, 4.5, 6.0, 8.0], size=(n, 1), p=[0.3, 0.2, 0.2, 0.2, 0.1])
    pv = np.rint(kwp * synth.pv_energy_wh(epoch_s, 1.0, clear)[None, :]).astype(np.int64)
    imp, exp = np.clip(load - pv, 0, None), np.clip(pv - load, 0, None)
    solar = synth.solar_elevation_sin(epoch_s, 51.59, 4.78)
    price = synth.day_ahead_eur_per_mwh(hour, solar, clear, rng)
    market = pl.DataFrame({"interval_start": starts, "resolution": "PT15M",
                           "price_ueur_per_kwh": np.rint(price * 1000).astype(np.int64)})
    return starts, imp, exp, market


def decimal_reference(plan, imp: np.ndarray, exp: np.ndarray, market: pl.DataFrame, before: tuple[int, int]
                      ) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """nl-dynamic-2026 for one connection, from its documented rules, in Decimal, as nano-euros."""
    par = plan.plan.parameters
    m = [Decimal(int(v)).scaleb(-6) for v in market["price_ueur_per_kwh"]]
    kwh_i = [Decimal(int(v)).scaleb(-3) for v in imp]
    kwh_e = [Decimal(int(v)).scaleb(-3) for v in exp]
    out = {
        "supply": sum(k * (p + par["supply_markup"]) for k, p in zip(kwh_i, m, strict=True)),
        "feed_in": sum(k * -(p - par["feed_in_fee"]) for k, p in zip(kwh_e, m, strict=True)),
    }
    bands = plan.plan.component("energy_tax").bands

    def tax(kwh: Decimal) -> Decimal:
        total, lo = Decimal(0), Decimal(0)
        for b in bands:
            hi = b.up_to_kwh if b.up_to_kwh is not None else Decimal("1e18")
            total += (min(max(kwh, lo), hi) - lo) * Decimal(b.price)
            lo = hi
        return total

    h_net = Decimal(before[0] - before[1]).scaleb(-3)
    p_net = sum(kwh_i) - sum(kwh_e)
    out["energy_tax"] = tax(max(Decimal(0), h_net + p_net)) - tax(max(Decimal(0), h_net))
    return {k: int(v * 10**9) for k, v in out.items()}


def bench_engine(n: int) -> None:
    plan = load_plan("nl-dynamic-2026")
    t0 = time.perf_counter()
    starts, imp, exp, market = month_data(n)
    rng = np.random.default_rng(3)
    before_i = rng.integers(0, 3_000_000, size=n)
    before_e = rng.integers(0, 2_000_000, size=n)
    console.print(f"generated {n:,} connections x {starts.len()} quarters in {time.perf_counter() - t0:.1f} s "
                  f"({imp.sum() / 1e9:,.1f} GWh import, {exp.sum() / 1e9:,.1f} GWh export)")
    energy = PeriodEnergy(FIRST, END, starts, imp, exp, before_i, before_e)
    settle_plan(plan, PeriodEnergy(FIRST, END, starts, imp[:100], exp[:100], before_i[:100], before_e[:100]),
                market)  # warm-up
    best = float("inf")
    for _ in range(3):
        t1 = time.perf_counter()
        out = settle_plan(plan, energy, market)
        best = min(best, time.perf_counter() - t1)
    cq = n * starts.len()
    console.print(f"engine alone: {cq:,} connection-quarter-hours, {len(out)} components, best of 3 "
                  f"{best:.2f} s = [bold]{cq / best:,.0f}[/] connection-quarter-hours/s "
                  f"(goal >= 100,000,000)")
    sample = rng.choice(n, size=25, replace=False)
    for i in sample:
        ref = decimal_reference(plan, imp[i], exp[i], market, (int(before_i[i]), int(before_e[i])))
        for k, v in ref.items():
            assert int(out[k][i]) == v, f"connection {i} {k}: engine {int(out[k][i])} != reference {v}"
    console.print(f"verified: {len(sample)} random connections x supply, feed-in, energy tax equal the Decimal "
                  "reference to the nano-euro")


def bench_store(n: int, backend: str) -> None:
    from sqlalchemy import create_engine, text

    from kwartier.ids import make_ean18
    from kwartier.services.community import load_community
    from kwartier.services.settle import settle
    from kwartier.settle.ledger import verify
    from kwartier.store import open_store
    from kwartier.store import schema as s
    from kwartier.store.versions import bulk_insert

    starts, imp, exp, market = month_data(n, seed=5)
    with tempfile.TemporaryDirectory(prefix="kwartier-settle-") as tmp:
        folder = Path(tmp)
        eans = [make_ean18(f"871000{i:011d}") for i in range(n)]
        community = folder / "community.toml"
        community.write_text(community_toml(eans))
        if backend == "sqlite":
            engine = open_store(f"sqlite:///{folder / 'bench.db'}")
            cleanup = None
        else:
            schema_name = f"kw_settle_{uuid.uuid4().hex[:8]}"
            admin = create_engine(PG_URL)
            with admin.begin() as conn:
                conn.execute(text(f'CREATE SCHEMA "{schema_name}"'))
            engine = open_store(PG_URL, connect_args={"options": f"-csearch_path={schema_name}"})

            def cleanup() -> None:
                engine.dispose()
                with admin.begin() as conn:
                    conn.execute(text(f'DROP SCHEMA "{schema_name}" CASCADE'))
        try:
            load_community(engine, community)
            t0 = time.perf_counter()
            nq = starts.len()
            with engine.begin() as conn:
                import_id = conn.execute(s.imports.insert().values(
                    kind="readings", file_name="bench", sha256="0" * 64, format="bench", target="*",
                    imported_at=starts[0], new=0, unchanged=0, revised=0, anomalies=[])).inserted_primary_key[0]
                frame = pl.DataFrame({
                    "connection": np.repeat(np.array(eans), nq), "interval_start": pl.concat([starts] * n),
                    "resolution": "PT15M", "import_wh": imp.ravel(), "export_wh": exp.ravel(), "status": "actual",
                    "source": "bench", "version": 1, "is_current": True, "import_id": import_id,
                    "imported_at": starts[0]})
                _ensure_connections(conn, eans, starts[0])
                bulk_insert(conn, s.readings, frame)
                bulk_insert(conn, s.prices, market.with_columns(
                    zone=pl.lit("NL"), status=pl.lit("fixed"), known_at=pl.lit(starts[0]), source=pl.lit("bench"),
                    version=pl.lit(1), is_current=pl.lit(True), import_id=pl.lit(import_id),
                    imported_at=pl.lit(starts[0])))
            load_s = time.perf_counter() - t0
            t1 = time.perf_counter()
            first = settle(engine, "2026-10")
            run_s = time.perf_counter() - t1
            again = settle(engine, "2026-10")
            with engine.connect() as conn:
                verdict = verify(conn)
            assert first.debit_total_nano == first.credit_total_nano, "debits != credits"
            assert again.new_postings == 0, f"second settle posted {again.new_postings}"
            assert verdict.ok, verdict
            cq = n * nq
            console.print(f"end to end ({backend}): {n:,} connections, {cq:,} connection-quarter-hours settled in "
                          f"{run_s:.1f} s = [bold]{cq / run_s:,.0f}[/] cq/s ({first.new_postings:,} postings; "
                          f"loading the readings took {load_s:.1f} s); debits = credits, ledger verified, "
                          "second run posted 0")
        finally:
            if cleanup:
                cleanup()
            else:
                engine.dispose()


def _ensure_connections(conn, eans, when) -> None:  # type: ignore[no-untyped-def]
    from kwartier.store import schema as s

    present = {r[0] for r in conn.execute(s.connections.select().with_only_columns(s.connections.c.ean))}
    missing = [e for e in eans if e not in present]
    if missing:
        conn.execute(s.connections.insert(), [{"ean": e, "created_at": when} for e in missing])


def community_toml(eans: list[str]) -> str:
    parts = ['[community]\nid = "bench"\nname = "Benchmark community"\ntimezone = "Europe/Amsterdam"\nzone = "NL"\n',
             '[[parties]]\nid = "supplier"\nroles = ["supplier", "aggregator"]\nname = "Supplier"\n',
             '[[parties]]\nid = "grid"\nroles = ["grid"]\nname = "Grid operator"\n',
             '[[parties]]\nid = "tax"\nroles = ["tax"]\nname = "Tax authority"\n',
             '[[parties]]\nid = "coop"\nroles = ["community"]\nname = "Cooperative"\n']
    for i, ean in enumerate(eans):
        parts.append(f'[[participants]]\nid = "p{i}"\nname = "Household {i}"\nemail = "p{i}@example.org"\n')
        parts.append(f'[[connections]]\nean = "{ean}"\nparticipant = "p{i}"\ngrid_area = "breda"\n'
                     f'capacity_kw = "17.25"\ngrid = "grid"\n')
        parts.append(f'[[contracts]]\nid = "c{i}"\ntarget = "{ean}"\nsupplier = "supplier"\n'
                     f'plan = "nl-dynamic-2026"\nvalid_from = 2026-01-01\n')
    return "\n".join(parts)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--connections", type=int, default=100_000)
    ap.add_argument("--store-connections", type=int, default=2_000)
    ap.add_argument("--backends", default="sqlite,postgres")
    ap.add_argument("--skip-engine", action="store_true", help="only the end-to-end runs")
    args = ap.parse_args()
    if not args.skip_engine:
        bench_engine(args.connections)
    for backend in [b for b in args.backends.split(",") if b]:
        bench_store(args.store_connections, backend)
    return 0


if __name__ == "__main__":
    sys.exit(main())
