"""Steering benchmark on real NL data: solve time, a 500-household feeder, a month's rolling replay.

Data (see ../shared/data/PROVENANCE.md):
- prices: NL day-ahead 2025, 15-min (jeroen.nl, 1a). Hourly until 2025-09-30, real quarters after.
  Days avoided: 2025-10-26 (the repeated autumn hour is missing) and 2025-11-07 (values are 1/4).
- base load: a real NL household's 2025 15-min import register (energiemanageronline, 4a).
- outdoor temperature: the hourly outdoor temperature of the SlimmeMeterPortal 2023 file (4a),
  by calendar day and hour (no 2025 temperatures are in the shared data).

(a) one household (battery, EV, heat pump, 2 appliances), 192 quarters, 50 days of 2025: solve time
    p50/p95 (goal p95 < 0.3 s); each plan checked to cost no more (energy + wear) than no steering.
(b) 500 households (battery; every third an EV; each a different real day of base load) under a
    feeder limit: wall time and feeder violations (goals < 60 s on 2 workers, 0 violations).
(c) December 2025 (28 days), battery + EV: re-plan every hour with the prices known then (day-ahead
    published 12:45 CET for the next day) and forecasts beyond (kwartier.forecast.prices), carry out
    the first hour, and compare savings vs no steering with perfect foresight (one plan for the month
    on the true prices). Goal: >= 95 % of the perfect-foresight savings. The base load is taken as
    known (load forecasting is measured in benchmarks/forecast_bench.py).

Timing: the solver runs single-threaded. On a shared machine wall time mostly measures the
neighbours, so the time goals are checked on wall time or, when lower, on CPU time (per solve for
(a); for (b) the CPU time of all processes divided by the workers), and both are printed with the
load average.

Run: .venv/bin/python benchmarks/steer_bench.py [--quick] [--workers 2] [--only a,b,c]
Exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from time import perf_counter, process_time
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl

from kwartier.ingest import read_prices, read_readings
from kwartier.steer.baselines import greedy, no_steering
from kwartier.steer.coordinate import coordinate
from kwartier.steer.devices import EV, Appliance, Battery, Devices, HeatPump, SeriesSpec
from kwartier.steer.optimize import Prices, account, make_problem, optimise

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TZ = ZoneInfo("Europe/Amsterdam")
Q = timedelta(minutes=15)
BAD_DAYS = {date(2025, 10, 26), date(2025, 11, 7)}
failures: list[str] = []


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def _cpu(who: int) -> float:
    u = resource.getrusage(who)
    return u.ru_utime + u.ru_stime


def check(ok: bool, what: str) -> None:
    print(f"  [{'ok' if ok else 'FAIL'}] {what}")
    if not ok:
        failures.append(what)


# --- real data ----------------------------------------------------------------------------------------------


def load_prices() -> dict[datetime, int]:
    from kwartier.tariffs.compose import price_series_nano

    frame = read_prices(DATA / "prices_nl" / "nl_dayahead_2025_15min_jeroen_nl.csv").frame
    q = price_series_nano(frame)
    return {t: v // 1000 for t, v in zip(q["quarter"].to_list(), q["value"].to_list(), strict=True)}


def load_base_kw() -> dict[datetime, float]:
    frame = read_readings(DATA / "household_nl" / "energiemanageronline_2025_15min_cumulative.csv").frame
    return {t: wh / 250.0 for t, wh in zip(frame["interval_start"].to_list(), frame["import_wh"].to_list(),
                                           strict=True)}


def load_temps() -> dict[tuple[int, int, int], float]:
    f = pl.read_csv(DATA / "household_nl" / "slimmemeterportal_2023_15min.csv", infer_schema_length=0)
    f = f.filter(pl.col("buitentemperatuur") != "-")
    out: dict[tuple[int, int, int], float] = {}
    for end, t in zip(f["datum_tijd"].to_list(), f["buitentemperatuur"].to_list(), strict=True):
        ts = datetime.strptime(end, "%d-%m-%Y %H:%M:%S %z") - Q  # the file names intervals by their end
        out[(ts.month, ts.day, ts.hour)] = float(t.replace(",", "."))
    return out


def series(values: dict[datetime, float] | dict[datetime, int], starts: list[datetime], what: str) -> np.ndarray:
    missing = [t for t in starts if t not in values]
    if missing:
        raise SystemExit(f"{what}: no value for {len(missing)} quarters, first {missing[0].isoformat()}")
    return np.array([values[t] for t in starts])


def temps_for(temps: dict[tuple[int, int, int], float], starts: list[datetime]) -> np.ndarray:
    out = []
    for t in starts:
        local = t.astimezone(TZ)
        key = (local.month, min(local.day, 28) if local.month == 2 else local.day, local.hour)
        out.append(temps.get(key, temps.get((local.month, 1, local.hour), 5.0)))
    return np.array(out)


def day_starts(day: date, quarters: int) -> list[datetime]:
    s = datetime(day.year, day.month, day.day, tzinfo=TZ).astimezone(UTC)
    return [s + i * Q for i in range(quarters)]


def local(day: date, hour: int, minute: int = 0, plus_days: int = 0) -> datetime:
    d = day + timedelta(days=plus_days)
    return datetime(d.year, d.month, d.day, hour, minute, tzinfo=TZ)


# --- (a) one household --------------------------------------------------------------------------------------


def full_household(day: date, base: np.ndarray, temp: np.ndarray) -> Devices:
    return Devices(
        battery=[Battery(id="battery", capacity_kwh=10, max_charge_kw=5, max_discharge_kw=5, soc_start_kwh=5,
                         soc_end_min_kwh=5, soc_min_kwh=1)],
        ev=[EV(id="car", arrival=local(day, 18), departure=local(day, 7, 30, 1), energy_needed_kwh=20,
               max_power_kw=11)],
        heat_pump=[HeatPump(id="heatpump", r_k_per_kw=5.0, c_kwh_per_k=10.0, comfort_min_c=19.5, comfort_max_c=22,
                            initial_indoor_c=20, max_electric_kw=3,
                            cop=[(-10.0, 2.2), (-2.0, 2.9), (7.0, 3.9), (15.0, 4.8)])],
        appliance=[Appliance(id="dishwasher", profile_kw=[2.0, 2.0, 0.2, 0.2, 0.2, 0.2, 1.8, 1.8],
                             earliest_start=local(day, 20), latest_end=local(day, 7, 0, 1)),
                   Appliance(id="washer", profile_kw=[2.2, 2.2, 0.4, 0.4, 0.4, 0.8],
                             earliest_start=local(day, 9, 0, 1), latest_end=local(day, 18, 0, 1))],
        base_load=SeriesSpec(values=base.tolist()),
        outdoor_temperature=SeriesSpec(values=temp.tolist()),
    )


def bench_single(prices, base_kw, temps, n_days: int) -> None:
    print(f"(a) one household, battery + EV + heat pump + 2 appliances, 192 quarters, {n_days} days of 2025")
    days = [d for d in (date(2025, 1, 3) + timedelta(days=7 * i) for i in range(52)) if d not in BAD_DAYS
            and d + timedelta(days=1) not in BAD_DAYS][:n_days]
    times, cpu, worse, violated, statuses = [], [], 0, 0, set()
    for day in days:
        starts = day_starts(day, 192)
        base = series(base_kw, starts, "base load")
        devs = full_household(day, base, temps_for(temps, starts))
        p = make_problem(devs, tuple(starts), Prices.market(series(prices, starts, "prices").astype(np.int64)))
        t, c = perf_counter(), process_time()
        r = optimise(p)
        times.append(perf_counter() - t)
        cpu.append(process_time() - c)
        statuses.add(r.status)
        none = account(p, no_steering(p))
        worse += (r.cost + r.wear_cost) > (none.cost + none.wear_cost) + Decimal("0.01")
        violated += bool(r.violations)
    t, c = np.array(times), np.array(cpu)
    print(f"  solve CPU time p50 {np.percentile(c, 50):.3f} s, p95 {np.percentile(c, 95):.3f} s, max {c.max():.3f} s "
          f"(wall p50 {np.percentile(t, 50):.3f} s, p95 {np.percentile(t, 95):.3f} s; load average {load()})")
    check(np.percentile(c, 95) < 0.3, "p95 solve time < 0.3 s (CPU time: the solver is single-threaded)")
    check(statuses == {"optimal"}, f"every plan optimal (statuses {sorted(statuses)})")
    check(worse == 0, "no plan costs more than no steering (energy + wear)")
    check(violated == 0, "no plan violates a constraint")


# --- (b) 500 households under a feeder limit ---------------------------------------------------------------


def bench_feeder(prices, base_kw, n: int, workers: int) -> None:
    day = date(2025, 12, 3)
    starts = day_starts(day, 192)
    price = Prices.market(series(prices, starts, "prices").astype(np.int64))
    rng = np.random.default_rng(2025)
    probs = []
    first_base = datetime(2025, 1, 2, tzinfo=UTC)
    for i in range(n):
        offset = timedelta(days=int(i % 340))  # each household a different real day of the same meter
        base = np.array([base_kw.get(first_base + offset + k * Q, 0.3) for k in range(192)])
        size = float(rng.choice([5.0, 10.0, 13.5]))
        bat = Battery(id="battery", capacity_kwh=size, max_charge_kw=min(5.0, size / 2), max_discharge_kw=min(
            5.0, size / 2), soc_start_kwh=size / 2, soc_end_min_kwh=size / 2)
        evs = [EV(id="car", arrival=local(day, 17 + int(rng.integers(0, 4))), departure=local(day, 7, 0, 1),
                  energy_needed_kwh=float(rng.integers(8, 30)), max_power_kw=11)] if i % 3 == 0 else []
        probs.append(make_problem(Devices(battery=[bat], ev=evs, base_load=SeriesSpec(values=base.tolist())),
                                  tuple(starts), price))
    inflexible_peak = float(np.sum([p.base_kw for p in probs], axis=0).max())
    limit = round(inflexible_peak + 1.0 * n)  # the base loads' peak plus 1 kW per household for the rest
    print(f"(b) {n} households (battery; every third an EV), feeder import limit {limit:.0f} kW (base loads alone "
          f"peak at {inflexible_peak:.0f} kW), {workers} workers")
    t, c0, k0 = perf_counter(), _cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN)
    res = coordinate(probs, feeder_import_kw=limit, workers=workers)
    wall = perf_counter() - t
    cpu = _cpu(resource.RUSAGE_SELF) - c0 + _cpu(resource.RUSAGE_CHILDREN) - k0
    idle_wall = cpu / workers
    print(f"  first (uncoordinated) peak {res.first_peak_import_kw:.0f} kW -> coordinated peak "
          f"{res.feeder_import_kw.max():.0f} kW; {res.price_iterations} price iterations, {res.share_rounds} share "
          f"rounds, {res.solves} household solves")
    print(f"  wall {wall:.1f} s; CPU {cpu:.1f} s in all = {idle_wall:.1f} s on {workers} idle cores (load average "
          f"{load()})")
    check(res.first_peak_import_kw > limit, "the limit binds (uncoordinated peak above it)")
    check(min(wall, idle_wall) < 60, f"{n} households in < 60 s (wall, or CPU / workers on a shared machine)")
    check(not res.violations and res.feeder_import_kw.max() <= limit + 1e-3, "no feeder violation")
    unmet = sum(1 for r in res.results if r.violations)
    for r in [r for r in res.results if r.violations][:3]:
        print("   ", "; ".join(v.describe() for v in r.violations[:3]))
    check(unmet == 0, f"no household constraint violated ({unmet} households with one)")


# --- (c) rolling replay -------------------------------------------------------------------------------------


def published_until(now: datetime) -> datetime:
    """The end (UTC) of the day-ahead prices known at ``now``: tomorrow's after 12:45 Brussels time."""
    bx = now.astimezone(ZoneInfo("Europe/Brussels"))
    last_day = bx.date() + timedelta(days=1 if (bx.hour, bx.minute) >= (12, 45) else 0)
    return datetime.combine(last_day + timedelta(days=1), datetime.min.time(), ZoneInfo("Europe/Brussels")).astimezone(
        UTC)


def forecaster(prices: dict[datetime, int]):  # type: ignore[no-untyped-def]
    """Price forecasts for quarters after the published ones; cached per publication."""
    try:
        from kwartier.forecast.prices import forecast_prices
        name = "kwartier.forecast.prices.forecast_prices"
    except ImportError:  # pragma: no cover - helper B's module not there
        forecast_prices = None
        name = "same quarter yesterday"
    hist_times = sorted(prices)
    cache: dict[datetime, dict[datetime, int]] = {}

    def get(known_end: datetime, starts: list[datetime]) -> dict[datetime, int]:
        want = [t for t in starts if t >= known_end]
        if not want:
            return {}
        if known_end not in cache:
            targets = [known_end + i * Q for i in range(200)]
            if forecast_prices is not None:
                lo = known_end - timedelta(days=130)
                hist = pl.DataFrame({"start": [t for t in hist_times if lo <= t < known_end]},
                                    schema={"start": pl.Datetime("us", "UTC")})
                hist = hist.with_columns(price_ueur_per_kwh=pl.Series([prices[t] for t in hist["start"].to_list()]))
                fc = forecast_prices(hist, pl.Series(targets, dtype=pl.Datetime("us", "UTC")), "Europe/Amsterdam")
                cache[known_end] = dict(zip(fc["start"].to_list(), fc["price_ueur_per_kwh"].to_list(), strict=True))
            else:
                cache[known_end] = {t: prices[t - timedelta(days=1)] for t in targets}
        return {t: cache[known_end][t] for t in want}

    get.name = name  # type: ignore[attr-defined]
    return get


def replay_devices(first: date, n_days: int) -> tuple[Battery, list[EV]]:
    bat = Battery(id="battery", capacity_kwh=10, max_charge_kw=5, max_discharge_kw=5, soc_start_kwh=5,
                  soc_end_min_kwh=5, soc_min_kwh=1)
    evs = [EV(id=f"car-{first + timedelta(days=i)}", arrival=local(first + timedelta(days=i), 18),
              departure=local(first + timedelta(days=i), 7, 0, 1), energy_needed_kwh=15, max_power_kw=11)
           for i in range(n_days)]
    return bat, evs


def bench_replay(prices, base_kw, first: date, n_days: int) -> None:
    get_fc = forecaster(prices)
    print(f"(c) rolling replay {first} + {n_days} days, battery 10 kWh + EV (15 kWh every evening), re-plan hourly; "
          f"forecast beyond the published prices: {get_fc.name}")
    month = datetime(first.year, first.month, first.day, tzinfo=TZ).astimezone(UTC)
    n_q = int(timedelta(days=n_days) / Q)
    month_starts = [month + i * Q for i in range(n_q)]
    bat, evs = replay_devices(first, n_days)
    base = series(base_kw, month_starts, "base load")
    true = series(prices, month_starts, "prices").astype(np.int64)
    # carried-out powers
    bat_kw, ev_kw = np.zeros(n_q), {e.id: np.zeros(n_q) for e in evs}
    soc, delivered = bat.soc_start_kwh, {e.id: 0.0 for e in evs}
    t0, solves = perf_counter(), 0
    for h in range(0, n_q, 4):
        now = month_starts[h]
        horizon = [now + i * Q for i in range(192)]
        known_end = published_until(now)
        fc = get_fc(known_end, horizon)
        p_arr = np.array([prices[t] if t < known_end else fc[t] for t in horizon], dtype=np.int64)
        base_h = np.array([base_kw.get(t, base[-1]) for t in horizon])
        live = [e.model_copy(update={"energy_needed_kwh": max(0.0, e.energy_needed_kwh - delivered[e.id])})
                for e in evs if e.departure > now and e.arrival < horizon[-1] + Q]
        b = bat.model_copy(update={"soc_start_kwh": soc})
        devs = Devices(battery=[b], ev=live, base_load=SeriesSpec(values=base_h.tolist()))
        r = optimise(make_problem(devs, tuple(horizon), Prices.market(p_arr)))
        solves += 1
        for k in range(4):
            if h + k >= n_q:
                break
            kw = r.powers.kw["battery"][k]
            bat_kw[h + k] = kw
            soc += 0.25 * (bat.charge_efficiency * max(kw, 0) + min(kw, 0) / bat.discharge_efficiency)
            soc = min(max(soc, 0.0), bat.capacity_kwh)  # powers are rounded to the watt
            for e in live:
                ev_kw[e.id][h + k] = r.powers.kw[e.id][k]
                delivered[e.id] += r.powers.kw[e.id][k] * 0.25 * e.efficiency
    wall = perf_counter() - t0
    month_devs = Devices(battery=[bat], ev=evs, base_load=SeriesSpec(values=base.tolist()))
    mp = make_problem(month_devs, tuple(month_starts), Prices.market(true))
    from kwartier.steer.optimize import Powers

    replay = account(mp, Powers(kw={"battery": bat_kw, **ev_kw}))
    none = account(mp, no_steering(mp))
    greedy_acc = account(mp, greedy(mp))
    t = perf_counter()
    perfect = optimise(mp, time_limit_s=300)
    perfect_s = perf_counter() - t

    def total(a) -> Decimal:  # type: ignore[no-untyped-def]
        return a.cost + a.wear_cost

    period_end = month_starts[-1] + Q
    short = [e.id for e in evs if e.departure <= period_end and delivered[e.id] < e.energy_needed_kwh - 0.01]
    end_gap = bat.soc_end_min_kwh - soc
    # a replay that ends with less stored energy than required is charged for the difference at the mean price
    end_fix = Decimal(str(round(max(end_gap, 0) / bat.charge_efficiency * float(true.mean()) / 1e6, 2)))
    saved, best = total(none) - total(replay) - end_fix, total(none) - total(perfect.accounting)
    share = float(saved / best) if best > 0 else float("nan")
    print(f"  {solves} plans in {wall:.1f} s wall ({wall / solves * 1000:.0f} ms each); perfect month plan "
          f"{perfect_s:.1f} s ({perfect.status})")
    print(f"  cost incl. wear: no steering {total(none)} EUR, greedy {total(greedy_acc)}, replay {total(replay)} "
          f"(+{end_fix} for the end level), perfect {total(perfect.accounting)}")
    print(f"  savings: replay {saved} EUR of perfect {best} EUR = {share:.1%}")
    check(not short, f"every EV session departing in the period met in the replay ({len(short)} short)")
    check(share >= 0.95, "replay savings >= 95 % of perfect foresight")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer days and households (development)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--only", default="a,b,c")
    args = ap.parse_args()
    if not DATA.is_dir():
        print(f"shared data folder {DATA} is absent")
        return 1
    t = perf_counter()
    prices, base_kw, temps = load_prices(), load_base_kw(), load_temps()
    print(f"data loaded in {perf_counter() - t:.1f} s: {len(prices)} price quarters, {len(base_kw)} load quarters")
    parts = set(args.only.split(","))
    if "a" in parts:
        bench_single(prices, base_kw, temps, 10 if args.quick else 50)
    if "b" in parts:
        bench_feeder(prices, base_kw, 60 if args.quick else 500, args.workers)
    if "c" in parts:
        bench_replay(prices, base_kw, date(2025, 12, 1), 7 if args.quick else 28)
    print("FAILED: " + "; ".join(failures) if failures else "all checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
