"""Plan a household's devices against quarter-hour prices with HiGHS: schedule, exact cost, violations.

The model is assembled from the builders in :mod:`kwartier.steer.constraints` (power balance,
connection limit, battery SOC, EV energy, heat-pump comfort, appliance starts) and is never
infeasible: what cannot be met is a penalised slack, reported as a named :class:`Violation`.

No simultaneous charge and discharge: wasting energy through the battery only pays when extra
consumption is worth money, i.e. when the (import or export) price of the quarter is <= 0. Those
quarters get a binary charge/discharge mode; elsewhere the linear model already prefers one
direction (netting the two saves conversion losses and wear). After solving, every battery is
checked, and any quarter where both directions are used (possible only in ties) is re-solved with
a binary mode, so a returned plan never charges and discharges a battery at once.

The problem's types and the exact accounting live in :mod:`kwartier.steer.problem` (re-exported
here). Prices enter the model in EUR/kWh (floats); the returned costs are recomputed exactly from the
schedule: Wh per quarter (rounded once) x micro-euro/kWh = nano-euros, rounded to cents once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from time import perf_counter

import highspy
import numpy as np

from kwartier.steer import constraints as c
from kwartier.steer.explain import Reason, explain, reason_text
from kwartier.steer.problem import (
    MAX_QUARTERS,
    QUARTER,
    Accounting,
    Powers,
    Prices,
    Problem,
    SteerError,
    account,
    appliance_starts,
    effective_prices_eur,
    ev_window,
    horizon_starts,
    make_problem,
    quarter_index,
)

SIMULTANEOUS_TOL_KW = 1e-6
VIOLATION_TOL = 1e-5


@dataclass(frozen=True)
class Violation:
    """A soft constraint the plan could not meet: device, what, when (UTC), and by how much."""

    device: str
    what: str
    start: datetime
    end: datetime
    amount: Decimal
    unit: str

    def describe(self) -> str:
        return (f"{self.device}: {self.what} not met by {self.amount} {self.unit} "
                f"({self.start.isoformat()} .. {self.end.isoformat()})")

    def to_json(self) -> dict[str, str]:
        return {"device": self.device, "what": self.what, "start": self.start.isoformat(),
                "end": self.end.isoformat(), "amount": str(self.amount), "unit": self.unit}


@dataclass(frozen=True)
class ScheduleRow:
    """One device in one quarter: power taken (kW, > 0) or given (< 0), battery SOC at its end, and why."""

    start: datetime
    device: str
    power_kw: Decimal
    soc_kwh: Decimal | None
    reason: Reason

    def to_json(self, locale: str = "en") -> dict[str, object]:
        return {"start": self.start.isoformat().replace("+00:00", "Z"), "device": self.device,
                "power_kw": str(self.power_kw), "soc_kwh": None if self.soc_kwh is None else str(self.soc_kwh),
                "reason": reason_text(self.reason, locale)}


def _kw(v: float) -> Decimal:
    return Decimal(str(round(float(v), 3))).quantize(Decimal("0.001"))


@dataclass
class SteerResult:
    """A plan: device powers, the grid exchange and its exact cost, what was not met, and how it was solved."""

    problem: Problem
    powers: Powers
    accounting: Accounting
    violations: list[Violation]
    solve_seconds: float
    status: str  # optimal | time_limit | fallback
    objective_eur: float | None = None

    @property
    def cost(self) -> Decimal:
        return self.accounting.cost

    @property
    def wear_cost(self) -> Decimal:
        return self.accounting.wear_cost

    def schedule(self) -> list[ScheduleRow]:
        """Every quarter and device, in time order, each with its reason."""
        p = self.problem
        reasons = explain(p, self.powers)
        rows = []
        for t, start in enumerate(p.starts):
            for dev in p.devices.all_devices():
                soc = self.powers.soc_kwh.get(dev.id)
                rows.append(ScheduleRow(start, dev.id, _kw(self.powers.kw[dev.id][t]),
                                        None if soc is None else _kw(soc[t]), reasons[dev.id][t]))
        return rows

    @property
    def import_kwh(self) -> np.ndarray:
        return self.accounting.import_wh / 1000

    @property
    def export_kwh(self) -> np.ndarray:
        return self.accounting.export_wh / 1000


@dataclass
class _Handles:
    grid: c.GridVars
    batteries: dict[str, c.BatteryVars] = field(default_factory=dict)
    evs: dict[str, tuple[int, np.ndarray]] = field(default_factory=dict)
    heat_pumps: dict[str, c.HeatPumpVars] = field(default_factory=dict)
    appliances: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


def build_model(problem: Problem, binary_quarters: dict[str, set[int]]) -> tuple[c.ModelBuilder, _Handles]:
    """Assemble the whole model from the constraint builders."""
    mb = c.ModelBuilder()
    n, dev = problem.n, problem.devices
    imp_eur, exp_eur = effective_prices_eur(problem)
    conn = dev.connection
    imp_lim = np.full(n, conn.import_limit_kw)
    exp_lim = np.full(n, conn.export_limit_kw)
    if problem.import_cap_kw is not None:
        imp_lim = np.minimum(imp_lim, problem.import_cap_kw)
    if problem.export_cap_kw is not None:
        exp_lim = np.minimum(exp_lim, problem.export_cap_kw)
    grid = c.add_grid(mb, imp_eur, exp_eur, problem.pv_kw, imp_lim, exp_lim)
    h = _Handles(grid)
    loads: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    all_q = np.arange(n)
    for bat in dev.battery:
        v = c.add_battery_soc(mb, bat, n, float(bat.wear_cost_eur_per_kwh))
        c.add_no_simultaneous(mb, bat, v, np.array(sorted(binary_quarters.get(bat.id, set())), dtype=int))
        loads += [(all_q, v.charge, np.ones(n)), (all_q, v.discharge, -np.ones(n))]
        h.batteries[bat.id] = v
    for ev in dev.ev:
        a, d, needed = ev_window(ev, problem.starts)
        if d > a:
            cols = c.add_ev_energy(mb, ev, (a, d), needed)
            loads.append((np.arange(a, d), cols, np.ones(d - a)))
        else:
            cols = np.zeros(0, dtype=int)
            if needed > 0 and a < n and ev.departure > problem.starts[0]:  # plugged in too briefly to charge
                short = mb.slack(1, c.PENALTY_EUR_PER_KWH, ev.id, "energy by departure", "kWh", None, hi=needed)
                row = mb.rows(1, needed, c.INF)
                mb.terms(row, short, 1.0)
        h.evs[ev.id] = (a, cols)
    for hp in dev.heat_pump:
        hv = c.add_heat_pump(mb, hp, problem.outdoor_c)
        loads.append((all_q, hv.power, np.ones(n)))
        h.heat_pumps[hp.id] = hv
    for app in dev.appliance:
        starts = appliance_starts(app, problem.starts)
        if len(starts) == 0:
            if quarter_index(app.latest_end, problem.starts, up=False) > 0 and \
                    quarter_index(app.earliest_start, problem.starts, up=True) < n:
                short = mb.slack(1, c.PENALTY_EUR_PER_RUN, app.id, "run in its window", "run", None, hi=1.0)
                row = mb.rows(1, 1.0, 1.0)
                mb.terms(row, short, 1.0)
            h.appliances[app.id] = (starts, np.zeros(0, dtype=int))
            continue
        cols, app_loads = c.add_appliance_start(mb, app, starts)
        loads += app_loads
        h.appliances[app.id] = (starts, cols)
    c.add_power_balance(mb, grid, problem.base_kw, problem.pv_kw, loads)
    return mb, h


def initial_binary_quarters(problem: Problem) -> dict[str, set[int]]:
    """Quarters where burning energy through a battery could pay: a price <= 0 in either direction."""
    imp, exp = effective_prices_eur(problem)
    risky = set(np.flatnonzero((imp <= 0) | (exp <= 0)).tolist())
    return {b.id: set(risky) for b in problem.devices.battery}


def powers_from(problem: Problem, h: _Handles, x: np.ndarray) -> Powers:
    """Device powers (kW, rounded to the watt) from a solution vector."""
    n = problem.n
    p = Powers()
    for app in problem.devices.appliance:  # fix the binaries to whole starts first
        starts, cols = h.appliances[app.id]
        kw = np.zeros(n)
        if len(cols):
            chosen = np.flatnonzero(x[cols] > 0.5)
            for k in starts[chosen][:1]:
                prof = np.asarray(app.profile_kw)
                kw[k:k + len(prof)] = prof[: n - k]
        p.kw[app.id] = kw
    for bid, v in h.batteries.items():
        p.charge_kw[bid], p.discharge_kw[bid] = np.round(x[v.charge], 3), np.round(x[v.discharge], 3)
        p.kw[bid] = np.round(x[v.charge] - x[v.discharge], 3)
        p.soc_kwh[bid] = np.round(x[v.soc], 3)
    for eid, (a, cols) in h.evs.items():
        kw = np.zeros(n)
        kw[a:a + len(cols)] = np.round(x[cols], 3)
        p.kw[eid] = kw
    for hid, hv in h.heat_pumps.items():
        p.kw[hid] = np.round(x[hv.power], 3)
        p.indoor_c[hid] = x[hv.indoor]
    if h.grid.curtail is not None:
        p.curtail_kw = np.round(x[h.grid.curtail], 3)
    return p


def simultaneous_quarters(h: _Handles, x: np.ndarray) -> dict[str, set[int]]:
    """Per battery, the quarters where the solution both charges and discharges."""
    out: dict[str, set[int]] = {}
    for bid, v in h.batteries.items():
        both = (x[v.charge] > SIMULTANEOUS_TOL_KW) & (x[v.discharge] > SIMULTANEOUS_TOL_KW)
        if both.any():
            out[bid] = set(np.flatnonzero(both).tolist())
    return out


def violations_from(problem: Problem, mb: c.ModelBuilder, x: np.ndarray) -> list[Violation]:
    """Every used slack as a named violation; consecutive quarters of one constraint are merged."""
    out: list[Violation] = []
    end_all = problem.starts[-1] + QUARTER
    for g in mb.slacks:
        vals = x[g.cols] * g.scale
        if g.quarters is None:
            if vals[0] > VIOLATION_TOL:
                out.append(Violation(g.device, g.what, problem.starts[0], end_all, _dec(vals[0]), g.unit))
            continue
        used = np.flatnonzero(vals > VIOLATION_TOL)
        if len(used) == 0:
            continue
        runs = np.split(used, np.flatnonzero(np.diff(used) > 1) + 1)
        for run in runs:
            q0, q1 = int(g.quarters[run[0]]), int(g.quarters[run[-1]])
            out.append(Violation(g.device, g.what, problem.starts[q0], problem.starts[q1] + QUARTER,
                                 _dec(float(vals[run].sum())), g.unit))
    return out


def _dec(v: float) -> Decimal:
    return Decimal(str(round(v, 3)))


def _solve(model: highspy.HighsModel, time_limit_s: float, mip_gap: float) -> tuple[str, np.ndarray | None, float]:
    hs = highspy.Highs()
    hs.setOptionValue("output_flag", False)
    hs.setOptionValue("threads", 1)
    hs.setOptionValue("time_limit", max(time_limit_s, 1e-3))
    hs.setOptionValue("mip_rel_gap", mip_gap)
    if not len(model.lp_.integrality_):
        hs.setOptionValue("presolve", "off")  # these small LPs solve about twice as fast without it
    hs.passModel(model)
    hs.run()
    status = hs.getModelStatus()
    info = hs.getInfo()
    has_solution = info.primal_solution_status == 2  # kSolutionStatusFeasible
    if not has_solution:
        return ("time_limit" if status == highspy.HighsModelStatus.kTimeLimit else "failed"), None, math.nan
    x = np.asarray(hs.getSolution().col_value)
    label = "optimal" if status == highspy.HighsModelStatus.kOptimal else "time_limit"
    return label, x, info.objective_function_value


def optimise(problem: Problem, *, time_limit_s: float = 10.0, mip_gap: float = 1e-6) -> SteerResult:
    """The cheapest plan (energy cost + wear + penalties) for one household; never infeasible.

    When the time limit stops the solver, the best plan found so far is returned (``status``
    ``time_limit``); when none was found yet, the no-steering baseline is (``status`` ``fallback``).
    """
    t0 = perf_counter()
    binaries = initial_binary_quarters(problem)
    for _ in range(4):
        mb, h = build_model(problem, binaries)
        left = time_limit_s - (perf_counter() - t0)
        status, x, obj = _solve(mb.highs_model(), left, mip_gap)
        if x is None:
            return _fallback(problem, perf_counter() - t0)
        both = simultaneous_quarters(h, x)
        if not both:
            break
        for bid, qs in both.items():
            binaries.setdefault(bid, set()).update(qs)
    else:  # pragma: no cover - the binary mode rules it out; kept as a guard
        raise SteerError("a battery charges and discharges at once even with binary modes")
    powers = powers_from(problem, h, x)
    return SteerResult(problem, powers, account(problem, powers), violations_from(problem, mb, x),
                       perf_counter() - t0, status, obj)


def _fallback(problem: Problem, elapsed: float) -> SteerResult:
    from kwartier.steer.baselines import no_steering

    powers = no_steering(problem)
    return SteerResult(problem, powers, account(problem, powers), [], elapsed, "fallback")


__all__ = [
    "MAX_QUARTERS",
    "Accounting",
    "Powers",
    "Prices",
    "Problem",
    "ScheduleRow",
    "SteerError",
    "SteerResult",
    "Violation",
    "account",
    "appliance_starts",
    "build_model",
    "ev_window",
    "horizon_starts",
    "make_problem",
    "optimise",
]
