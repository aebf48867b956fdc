"""The demo's home batteries: steered by the optimiser on a dynamic plan (re-planned daily after the
day-ahead auction, as a home controller would), else run by the self-consumption rule."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from datetime import time as clock_time
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl

from kwartier.ingest.base import InputRejected
from kwartier.money import format_eur
from kwartier.services.demo_model import BATTERY_KW, BATTERY_KWH, FIXED_PLAN, DemoError, Household, full_months
from kwartier.services.imports import day_ahead_known_at
from kwartier.steer.problem import Prices
from kwartier.tariffs.plan import LoadedPlan
from kwartier.timegrid import DEFAULT_TZ, local_period_bounds

REPLAN_LOCAL = clock_time(13, 0)  # the controller re-plans after the day-ahead auction (published 12:45 CET)
BATTERY_EFFICIENCY = 0.95  # one way (charging and discharging each), as synth.battery_self_consumption
BATTERY_SOC_START = 0.5  # of capacity, at the start of the period, for both rules
SOLVE_TIME_LIMIT_S = 2.0  # per plan; the best plan found so far is used when it is reached
MIP_GAP = 1e-3  # relative; plans with binaries (quarters priced <= 0) stop within 0.1 % of the optimum


def is_steered(h: Household) -> bool:
    """Whether a household's battery follows the optimiser: it has one, and a price that moves (not the fixed plan)."""
    return h.battery and h.plan != FIXED_PLAN


def read_market(path: Path, zone: str = "NL") -> pl.DataFrame:
    """A day-ahead price file as the canonical price frame with ``known_at``, as the importer stores it;
    a file of another zone is rejected (before anything is generated)."""
    from kwartier.ingest import read_prices

    result = read_prices(path)
    if result.zone and result.zone != zone:
        raise InputRejected(path, f"the file holds prices for zone {result.zone}, not {zone} as the demo needs")
    return result.frame.with_columns(known_at=day_ahead_known_at(result.frame["interval_start"]))


def replan_windows(first: date, end: date, starts_s: np.ndarray, tz: str = DEFAULT_TZ) -> list[tuple[int, int, int]]:
    """The rolling controller's plans as indices into the period's quarters: (start, applied until, horizon end).

    The first plan starts with the period (00:00 local on ``first``) and sees that day's prices,
    published the day before. Then, every day at 13:00 local, after the day-ahead auction, a plan
    covers the known prices: the rest of today and all of tomorrow. Each plan is applied until the
    next one; a horizon stops at the period's end (there is no load or PV beyond it).
    ``starts_s``: the period's quarter starts, UTC epoch seconds.
    """
    zone = ZoneInfo(tz)

    def at(day: date, when: clock_time) -> int:
        return int(np.searchsorted(starts_s, datetime.combine(day, when, zone).timestamp()))

    n = len(starts_s)
    days = [first + timedelta(days=i) for i in range((end - first).days)]
    plans = [(0, at(first + timedelta(days=1), clock_time(0)))]
    plans += [(at(d, REPLAN_LOCAL), at(d + timedelta(days=2), clock_time(0))) for d in days]
    out = []
    for k, (a, horizon) in enumerate(plans):
        applied = plans[k + 1][0] if k + 1 < len(plans) else n
        out.append((a, min(applied, n), min(horizon, n)))
    return [w for w in out if w[1] > w[0]]


@dataclass(frozen=True)
class BatteryRun:
    """A steered battery over the period: Wh per quarter into it and out of it (both >= 0), and the plans."""

    charge_wh: np.ndarray
    discharge_wh: np.ndarray
    soc_wh: np.ndarray  # at the end of each quarter
    solves: int
    not_optimal: int  # plans stopped by the time limit (best found used) or with no plan (battery idle)


def _apply(charge_wh: np.ndarray, discharge_wh: np.ndarray, soc_wh: float, capacity_wh: float
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run planned Wh through the battery quarter by quarter, trimming what the rounding to whole Wh would
    push beyond empty or full (as a battery's management system does); returns the flows and the SOC path."""
    c_out, d_out, soc_out = charge_wh.copy(), discharge_wh.copy(), np.empty(len(charge_wh))
    eta = BATTERY_EFFICIENCY
    for q in range(len(charge_wh)):
        c_out[q] = min(int(c_out[q]), int((capacity_wh - soc_wh) / eta))
        d_out[q] = min(int(d_out[q]), int(soc_wh * eta))
        soc_wh = min(max(soc_wh + c_out[q] * eta - d_out[q] / eta, 0.0), capacity_wh)
        soc_out[q] = soc_wh
    return c_out, d_out, soc_out


def steer_battery(net_wh: np.ndarray, prices: Prices, starts: tuple[datetime, ...],
                  windows: list[tuple[int, int, int]], *, capacity_wh: float = BATTERY_KWH * 1000,
                  power_w: float = BATTERY_KW * 1000, soc_start_wh: float = BATTERY_KWH * 1000 * BATTERY_SOC_START,
                  soc_end_min_wh: float = 0.0, tz: str = DEFAULT_TZ) -> BatteryRun:
    """Plan one battery with the optimiser, rolling over ``windows`` (see :func:`replan_windows`).

    ``net_wh``: the household's load minus PV per quarter (Wh, signed: < 0 is a surplus), known to
    the controller (the demo's models are the truth: a perfect load and PV forecast). ``prices``:
    the plan's marginal import and export prices per quarter of the period (micro-euro/kWh). Each
    plan starts from the SOC the previous one left; the last one, reaching the period's end, must
    leave at least ``soc_end_min_wh`` (a soft target; the demo passes what the self-consumption rule
    leaves, so a comparison with it is not flattered by emptying the battery at the end). PV is not
    curtailable here: the model sees only the net load.
    """
    from kwartier.steer.devices import Battery, Devices
    from kwartier.steer.optimize import optimise
    from kwartier.steer.problem import Problem

    n = len(net_wh)
    kw = power_w / 1000
    battery = Battery(id="battery", capacity_kwh=capacity_wh / 1000, max_charge_kw=kw, max_discharge_kw=kw,
                      charge_efficiency=BATTERY_EFFICIENCY, discharge_efficiency=BATTERY_EFFICIENCY,
                      soc_start_kwh=soc_start_wh / 1000)
    charge, discharge, soc_path = np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros(n)
    soc, not_optimal = soc_start_wh, 0
    for a, applied, horizon in windows:
        end_min = min(soc_end_min_wh, capacity_wh) / 1000 if horizon == n else 0.0
        bat = battery.model_copy(update={"soc_start_kwh": soc / 1000, "soc_end_min_kwh": end_min})
        span = slice(a, horizon)
        problem = Problem(Devices(battery=[bat]), starts[span],
                          Prices(prices.import_ueur_per_kwh[span], prices.export_ueur_per_kwh[span]),
                          net_wh[span] / 250.0, np.zeros(horizon - a), np.full(horizon - a, 10.0), tz)
        result = optimise(problem, time_limit_s=SOLVE_TIME_LIMIT_S, mip_gap=MIP_GAP)
        k = applied - a
        if result.status == "fallback":
            planned_c = planned_d = np.zeros(k)
        else:
            planned_c, planned_d = result.powers.charge_kw["battery"][:k], result.powers.discharge_kw["battery"][:k]
        not_optimal += result.status != "optimal"
        c, d, path = _apply(np.rint(planned_c * 250.0).astype(np.int64), np.rint(planned_d * 250.0).astype(np.int64),
                            soc, capacity_wh)
        charge[a:applied], discharge[a:applied], soc_path[a:applied] = c, d, path
        soc = float(path[-1])
    return BatteryRun(charge, discharge, soc_path, len(windows), not_optimal)


class _DerivedRatesAsConstants:
    """A loaded plan whose derived series (JEM 2.0's monthly tax share) are held at their defaults, the
    value of a contract's first month, so the optimiser can price a percentage component."""

    def __init__(self, loaded: LoadedPlan, rates: dict[str, Decimal]):
        self._loaded, self._rates = loaded, rates

    def __getattr__(self, name: str) -> object:
        return getattr(self._loaded, name)

    def env_constants(self) -> dict[str, Decimal]:
        return {**self._loaded.env_constants(), **self._rates}


def marginal_prices(loaded: LoadedPlan, market: pl.DataFrame, starts: tuple[datetime, ...]) -> Prices:
    """The plan's marginal import and export prices per quarter (micro-euro/kWh, VAT in), as the
    controller sees them (``steer.prices.plan_prices``); a derived monthly rate at its default."""
    from kwartier.steer.prices import market_quarters, plan_prices

    market_quarters(market, starts, "day-ahead prices")  # every quarter covered, or a clear error
    rates = {s.id: s.default for s in loaded.plan.series if s.kind == "derived" and s.default is not None}
    return plan_prices(_DerivedRatesAsConstants(loaded, rates) if rates else loaded, market, starts)


def bill_cents(loaded: LoadedPlan, starts: pl.Series, import_wh: np.ndarray, export_wh: np.ndarray,
               market: pl.DataFrame, first: date, end: date) -> int:
    """What a household pays for the local days [first, end) under its plan, incl. VAT, in cents: the
    project's cost calculator (``tariffs.cost``), exact per quarter and rounded once per line."""
    from kwartier.tariffs.cost import cost

    readings = pl.DataFrame({"interval_start": starts, "resolution": "PT15M", "import_wh": import_wh,
                             "export_wh": export_wh, "status": "actual"})
    return cost(loaded, readings, market, first, end).total_cents


@dataclass
class Steering:
    """What steering did in the demo: batteries, plans, time, and the bill saving against self-consumption."""

    steered: int = 0
    solves: int = 0
    not_optimal: int = 0
    seconds: float = 0.0
    days: tuple[date, date] | None = None  # the local days the saving is computed over
    cents: dict[str, tuple[int, int]] = field(default_factory=dict)  # participant: (self-consumption, steered)
    discharged_wh: tuple[int, int] = (0, 0)  # over the same days, all steered batteries: (self-consumption, steered)

    @property
    def saving_cents(self) -> int:
        return sum(selfc - steered for selfc, steered in self.cents.values())

    def describe(self, batteries: int) -> str:
        """One line for the demo's printout."""
        if not self.steered:
            return f"batteries: all {batteries} run the self-consumption rule (no prices to steer against)"
        first, end = self.days or (None, None)
        selfc, steered = (sum(c[i] for c in self.cents.values()) for i in (0, 1))
        return (f"batteries: {self.steered} of {batteries} steered by the optimiser on their dynamic plan "
                f"({self.solves} daily plans, {self.seconds:.1f} s), the others self-consumption; the steered "
                f"households' bills {first} .. {end} (end exclusive): EUR {format_eur(steered)} instead of "
                f"{format_eur(selfc)} with self-consumption (saving EUR {format_eur(self.saving_cents)})")

    def to_json(self) -> dict[str, object]:
        first, end = self.days or (None, None)
        return {
            "batteries_steered": self.steered, "solves": self.solves, "time_limited": self.not_optimal,
            "seconds": round(self.seconds, 1),
            "saving": {"from": first and first.isoformat(), "to": end and end.isoformat(),
                       "eur": format_eur(self.saving_cents),
                       "self_consumption_eur": format_eur(sum(s for s, _ in self.cents.values())),
                       "steered_eur": format_eur(sum(t for _, t in self.cents.values())),
                       "by_participant": {p: format_eur(s - t) for p, (s, t) in self.cents.items()},
                       "discharged_kwh": {"self_consumption": round(self.discharged_wh[0] / 1000),
                                          "steered": round(self.discharged_wh[1] / 1000)},
                       "how": "each steered household's bill for these days under its own plan (tariffs.cost: "
                              "exact per quarter, rounded once per line, VAT included), with the self-consumption "
                              "rule's meter flows minus with the steered ones; same load, PV and start SOC, the "
                              "steered battery ending the period at least as full; battery wear is not on the "
                              "bill (the optimiser counts it at 0.05 EUR per kWh discharged)"}}


def steer_batteries(homes: list[Household], loads: np.ndarray, pvs: np.ndarray, starts: pl.Series,
                    selfc: tuple[np.ndarray, np.ndarray], market: pl.DataFrame, first: date, end: date,
                    tz: str = DEFAULT_TZ) -> tuple[dict[int, tuple[np.ndarray, np.ndarray]], Steering]:
    """Steer the battery of every household on a dynamic plan; returns its meter flows (import, export Wh
    per quarter) by household index, and the summary with the saving against ``selfc`` (the
    self-consumption rule's import and export, same shape as ``loads``) over the whole months of
    [first, end) (the period when there is none)."""
    from kwartier.tariffs.plan import load_plan

    clock = time.monotonic()
    steered = [k for k, h in enumerate(homes) if is_steered(h)]
    windows = replan_windows(first, end, starts.dt.epoch("s").to_numpy(), tz)
    tuple_starts = tuple(starts.to_list())
    plans = {p: load_plan(p) for p in sorted({homes[k].plan for k in steered})}
    try:
        prices = {p: marginal_prices(loaded, market, tuple_starts) for p, loaded in plans.items()}
    except ValueError as exc:  # SteerError: a quarter without a price
        raise DemoError(f"steering the batteries: {exc}; the --prices file must cover the whole period") from None
    months = full_months(first, end)
    days = (date.fromisoformat(months[0] + "-01"), _month_after(months[-1])) if months else (first, end)
    summary = Steering(steered=len(steered), days=days)
    lo, hi = local_period_bounds(*days, tz)
    inside = ((starts >= lo) & (starts < hi)).to_numpy()  # the quarters of the compared days
    flows = {}
    for k in steered:
        h = homes[k]
        end_wh = self_consumption_end_wh(loads[k] - pvs[k], selfc[0][k], selfc[1][k])
        run = steer_battery(loads[k] - pvs[k], prices[h.plan], tuple_starts, windows, soc_end_min_wh=end_wh, tz=tz)
        net = loads[k] - pvs[k] + run.charge_wh - run.discharge_wh
        flows[k] = (np.maximum(net, 0), np.maximum(-net, 0))
        summary.solves += run.solves
        sc_out = int((np.maximum(loads[k] - pvs[k], 0) - selfc[0][k])[inside].sum())  # the rule's discharge
        summary.discharged_wh = (summary.discharged_wh[0] + sc_out,
                                 summary.discharged_wh[1] + int(run.discharge_wh[inside].sum()))
        summary.not_optimal += run.not_optimal
        summary.cents[h.participant] = (
            bill_cents(plans[h.plan], starts, selfc[0][k], selfc[1][k], market, *days),
            bill_cents(plans[h.plan], starts, *flows[k], market, *days))
    summary.seconds = time.monotonic() - clock
    return flows, summary


def self_consumption_end_wh(net_wh: np.ndarray, import_wh: np.ndarray, export_wh: np.ndarray) -> float:
    """The SOC (Wh) the self-consumption rule leaves at the end, from its meter flows: what it charged is
    the surplus not exported, what it discharged the deficit not imported (to a few Wh of rounding)."""
    charged = int((np.maximum(-net_wh, 0) - export_wh).sum())
    discharged = int((np.maximum(net_wh, 0) - import_wh).sum())
    soc = BATTERY_KWH * 1000 * BATTERY_SOC_START + charged * BATTERY_EFFICIENCY - discharged / BATTERY_EFFICIENCY
    return max(soc, 0.0)


def _month_after(month: str) -> date:
    """The first day of the month after ``month`` (YYYY-MM)."""
    return (date.fromisoformat(month + "-01") + timedelta(days=32)).replace(day=1)
