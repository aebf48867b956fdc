"""Community sharing benchmark: a synthetic year for 1,000 members, and a community of real household files.

Synthetic: 1,000 members for the local year 2026 (35,040 quarters): household load with morning and
evening peaks, PV (3-8 kWp) on 35 % of roofs with day-to-day weather, netted at each meter into
``import_wh`` and ``export_wh``. Timed: the sharing (default prorata), the settlement of the shared
kWh (mid-market) and the KPIs. Goal: < 10 s on 2 cores.

Real: one member per real meter file in ../shared/data (see PROVENANCE.md), put on the local year
2023 grid. Files from other years are shifted by whole weeks (364 or 728 days, so weekdays stay);
hourly readings are split into four quarters (Wh // 4 each, the remainder to the first quarters);
quarters a file does not cover, and a direction it does not give, count as 0 Wh. Members: the
SlimmeMeterPortal 2023 household, the Energie Manager Online 2025 household, the DSMR-reader 2024
PV household, the P1-Monitor PV household (2023 part), the Fluvius BE household (Oct-Dec 2023)
and the HomeWizard PV household (Sep 2022 -> Sep 2023).

Checks (exit 1 when one fails): every allocation law (<= production, <= consumption, both sides
equal per quarter), members' totals add up (community + complement = consumption, shared + surplus
= production), money is conserved to the nano-euro, and the same inputs give the same digest.

    .venv/bin/python benchmarks/community_bench.py [--members 1000] [--skip-real]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from kwartier import synth
from kwartier.community.kpis import Kpis, kpis
from kwartier.community.pricing import reference_prices, settle_shares
from kwartier.community.rules import Rulebook, default_rulebook
from kwartier.community.sharing import Allocation, check_allocation, share
from kwartier.timegrid import interval_starts, local_period_bounds

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TZ = "Europe/Amsterdam"
REAL = [  # (member id, file, days to shift onto 2023)
    ("emo-2025", "household_nl/energiemanageronline_2025_15min_cumulative.csv", -728),
    ("fluvius-be", "household_be/fluvius_2023-10-22_2023-12-31_15min.csv", 0),
    ("homewizard-pv", "household_nl/homewizard_p1_2022-09_15min_cumulative.csv", 364),
    ("p1mon-pv", "household_nl/p1mon_e_history_uur.csv", 0),
    ("pv-dsmrreader", "household_nl/dsmrreader_export_2024_hourly.csv", -364),
    ("smp-2023", "household_nl/slimmemeterportal_2023_15min.csv", 0),
]
failures: list[str] = []


def check(ok: bool, what: str) -> None:
    print(f"  {'ok  ' if ok else 'FAIL'} {what}")
    if not ok:
        failures.append(what)


def year_starts(year: int) -> pl.Series:
    return interval_starts(*local_period_bounds(date(year, 1, 1), date(year + 1, 1, 1), TZ))


def synthetic(members: int, starts: pl.Series, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Import and export (Wh) per member x quarter: load minus PV, netted at the meter."""
    rng = np.random.default_rng(seed)
    epoch_s = (starts.dt.epoch("s")).to_numpy()
    local = starts.dt.convert_time_zone(TZ)
    hour = (local.dt.hour() + local.dt.minute() / 60).to_numpy().astype(float)
    weekend = (local.dt.weekday() >= 6).to_numpy().astype(float)
    days = np.asarray((local.dt.date() - local.dt.date().min()).dt.total_days().to_numpy(), dtype=np.int64)
    clear = synth.daily_cloudiness(int(days.max()) + 1, rng)[days]
    unit_pv = synth.pv_energy_wh(epoch_s, 1.0, clear).astype(np.float64)
    imp = np.empty((members, starts.len()), np.int64)
    exp = np.empty((members, starts.len()), np.int64)
    for i in range(members):
        load = synth.household_load_wh(hour, float(rng.uniform(2000, 4500)), rng, weekend)
        pv = np.rint(unit_pv * rng.uniform(3, 8)).astype(np.int64) if rng.random() < 0.35 else 0
        net = load - pv
        imp[i] = np.maximum(net, 0)
        exp[i] = np.maximum(-net, 0)
    return imp, exp


def run(members: tuple[str, ...], imp: np.ndarray, exp: np.ndarray, rules: Rulebook
        ) -> tuple[Allocation, Kpis, float, float]:
    t, cpu = time.perf_counter(), time.process_time()
    alloc = share(members, exp, imp, rules)
    money = settle_shares(alloc, rules)
    supply, feed_in = reference_prices(rules.price, imp.shape[1])
    result = kpis(alloc, money, supply, feed_in)
    seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
    check(check_allocation(alloc) == [], "allocations <= production and <= consumption; both sides equal")
    totals = alloc.member_totals()
    check(all(m["community"] + m["complement"] == m["consumption"] and m["shared_out"] + m["surplus"]
              == m["production"] for m in totals), "per member: community + complement = consumption, "
          "shared + surplus = production")
    check(money.conserved() and int(money.net_nano.sum()) == -money.community_fund_nano,
          "money conserved: buyers pay what sellers receive, to the nano-euro")
    return alloc, result, seconds, cpu


def show(k: Kpis, seconds: float, cpu: float, members: int, quarters: int) -> None:
    saved = np.array(k.savings_nano) / 1e9
    print(f"  time: {seconds:.2f} s wall, {cpu:.2f} s CPU for {members} members x {quarters} quarters "
          f"({members * quarters / seconds / 1e6:.1f} M member-quarters/s; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    print(f"  production {k.production_wh / 1e6:,.1f} MWh, consumption {k.consumption_wh / 1e6:,.1f} MWh, "
          f"shared {k.shared_wh / 1e6:,.1f} MWh")
    print(f"  self-consumption {k.self_consumption}, self-sufficiency {k.self_sufficiency}, "
          f"peak import {k.peak_import_kw} kW")
    print(f"  savings vs no community: total {saved.sum():,.2f} EUR, median {np.median(saved):,.2f}, "
          f"max {saved.max():,.2f} EUR per member; Gini {k.savings_gini}")


def real_member(path: Path, shift_days: int, starts: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """A real file's import and export on the quarters ``starts`` (Wh; 0 where the file has no reading)."""
    from kwartier.ingest import read_readings

    frame = read_readings(path).frame.drop_nulls("import_wh").with_columns(pl.col("export_wh").fill_null(0))
    frame = frame.with_columns(pl.col("interval_start") + timedelta(days=shift_days))
    hourly = frame.filter(pl.col("resolution") == "PT60M")
    if hourly.height:  # Wh // 4 per quarter; the remainder one Wh each to the first quarters of the hour
        parts = [hourly.select(pl.col("interval_start") + timedelta(minutes=15 * k),
                               *(pl.col(c) // 4 + (pl.col(c) % 4 > k).cast(pl.Int64) for c in ("import_wh",
                                                                                               "export_wh")))
                 for k in range(4)]
        frame = pl.concat([frame.filter(pl.col("resolution") == "PT15M").select(
            "interval_start", "import_wh", "export_wh"), *parts])
    frame = frame.select("interval_start", "import_wh", "export_wh").unique("interval_start", keep="first")
    grid = pl.DataFrame({"interval_start": starts}).join(frame, on="interval_start", how="left").fill_null(0)
    return grid["import_wh"].to_numpy().astype(np.int64), grid["export_wh"].to_numpy().astype(np.int64)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=int, default=1000)
    ap.add_argument("--skip-real", action="store_true")
    args = ap.parse_args()
    rules = default_rulebook()

    starts = year_starts(2026)
    print(f"synthetic: {args.members} members, local year 2026 ({starts.len()} quarters), prorata, mid-market")
    t = time.perf_counter()
    imp, exp = synthetic(args.members, starts)
    print(f"  (generated in {time.perf_counter() - t:.1f} s, not timed)")
    members = tuple(f"m{i:05d}" for i in range(args.members))
    alloc, k, seconds, cpu = run(members, imp, exp, rules)
    show(k, seconds, cpu, args.members, starts.len())
    again = share(members, exp.copy(), imp.copy(), rules)
    check(again.digest() == alloc.digest(), f"the same inputs give the same digest ({alloc.digest()[:16]})")
    print(f"  goal < 10 s: {'met' if seconds < 10 else 'NOT met'} in wall time; "
          f"{'met' if cpu < 10 else 'NOT met'} in CPU time (what an idle machine needs)")

    if args.skip_real:
        return 1 if failures else 0
    if not DATA.is_dir():
        print(f"real: {DATA} is absent; skipped")
        return 1 if failures else 0
    starts = year_starts(2023)
    print(f"real: {len(REAL)} households from {DATA}, local year 2023 ({starts.len()} quarters)")
    cols = [real_member(DATA / f, shift, starts) for _, f, shift in REAL]
    imp = np.vstack([c[0] for c in cols])
    exp = np.vstack([c[1] for c in cols])
    for (who, _, _), (i, e) in zip(REAL, cols, strict=True):
        print(f"  {who:14s} import {i.sum() / 1000:8,.0f} kWh, export {e.sum() / 1000:8,.0f} kWh")
    alloc, k, seconds, cpu = run(tuple(m for m, _, _ in REAL), imp, exp, rules)
    show(k, seconds, cpu, len(REAL), starts.len())
    for who, row in zip(alloc.participants, alloc.member_totals(), strict=True):
        print(f"  {who:14s} community {row['community'] / 1000:8,.0f} kWh, shared out "
              f"{row['shared_out'] / 1000:8,.0f} kWh")
    print("all checks passed" if not failures else f"{len(failures)} check(s) FAILED")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
