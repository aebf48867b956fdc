"""Constraint builders for the steering model: one function per concern, each adding columns and rows.

Units inside the model: power in kW per quarter-hour, energy in kWh, temperature in deg C, and the
objective in EUR. ``DT_H`` (0.25 h) turns a quarter's kW into kWh. Power a device *takes* from the
household's bus is positive; the power balance makes grid import minus export equal to the net load.

Soft constraints get a penalty slack column registered as a :class:`SlackGroup`, so the optimiser can
always return a plan and name what it could not meet. Penalties are far above any energy price
(EUR per kWh, K-hour or run), so a slack is only used when nothing else is possible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import highspy
import numpy as np

DT_H = 0.25
INF = highspy.kHighsInf

PENALTY_EUR_PER_KWH = 10.0  # unmet energy (EV, battery end level)
PENALTY_CONNECTION_EUR_PER_KWH = 100.0  # power beyond the connection limit: the fuse comes first
PENALTY_EUR_PER_K_H = 5.0  # comfort band, per kelvin-hour outside it
PENALTY_EUR_PER_RUN = 100.0  # an appliance that cannot run in its window


@dataclass
class SlackGroup:
    """Penalty slack columns of one soft constraint: per quarter (``quarters``) or once (``None``)."""

    device: str
    what: str
    unit: str
    cols: np.ndarray
    quarters: np.ndarray | None
    scale: float = 1.0  # slack value x scale = the amount in ``unit``


@dataclass
class ModelBuilder:
    """Columns, rows and sparse coefficients of a (MI)LP, built group by group, solved with HiGHS."""

    col_lo: list[np.ndarray] = field(default_factory=list)
    col_hi: list[np.ndarray] = field(default_factory=list)
    col_cost: list[np.ndarray] = field(default_factory=list)
    col_int: list[np.ndarray] = field(default_factory=list)
    row_lo: list[np.ndarray] = field(default_factory=list)
    row_hi: list[np.ndarray] = field(default_factory=list)
    entries: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=list)
    slacks: list[SlackGroup] = field(default_factory=list)
    n_cols: int = 0
    n_rows: int = 0

    def cols(self, n: int, lo: float | np.ndarray = 0.0, hi: float | np.ndarray = INF,
             cost: float | np.ndarray = 0.0, integer: bool = False) -> np.ndarray:
        """Add ``n`` columns; returns their indices."""
        self.col_lo.append(np.broadcast_to(np.asarray(lo, dtype=float), (n,)))
        self.col_hi.append(np.broadcast_to(np.asarray(hi, dtype=float), (n,)))
        self.col_cost.append(np.broadcast_to(np.asarray(cost, dtype=float), (n,)))
        self.col_int.append(np.full(n, 1 if integer else 0, dtype=np.int32))
        idx = np.arange(self.n_cols, self.n_cols + n)
        self.n_cols += n
        return idx

    def rows(self, n: int, lo: float | np.ndarray = -INF, hi: float | np.ndarray = INF) -> np.ndarray:
        """Add ``n`` rows with bounds lo <= a.x <= hi; returns their indices."""
        self.row_lo.append(np.broadcast_to(np.asarray(lo, dtype=float), (n,)))
        self.row_hi.append(np.broadcast_to(np.asarray(hi, dtype=float), (n,)))
        idx = np.arange(self.n_rows, self.n_rows + n)
        self.n_rows += n
        return idx

    def terms(self, rows: np.ndarray, cols: np.ndarray, vals: float | np.ndarray) -> None:
        """Coefficients a[rows, cols] = vals (arrays of equal length, or vals a scalar)."""
        rows, cols = np.asarray(rows), np.asarray(cols)
        self.entries.append((rows, cols, np.broadcast_to(np.asarray(vals, dtype=float), rows.shape)))

    def slack(self, n: int, penalty: float | np.ndarray, device: str, what: str, unit: str,
              quarters: np.ndarray | None, scale: float = 1.0, hi: float = INF) -> np.ndarray:
        """Add penalised slack columns (EUR per unit of slack) and remember what they stand for."""
        cols = self.cols(n, 0.0, hi, penalty)
        self.slacks.append(SlackGroup(device, what, unit, cols, quarters, scale))
        return cols

    def highs_model(self) -> highspy.HighsModel:
        """The model as HiGHS wants it: a row-wise sparse matrix with bounds, costs and integrality."""
        rows = np.concatenate([e[0] for e in self.entries]) if self.entries else np.zeros(0, int)
        cols = np.concatenate([e[1] for e in self.entries]) if self.entries else np.zeros(0, int)
        vals = np.concatenate([e[2] for e in self.entries]) if self.entries else np.zeros(0)
        keep = vals != 0
        rows, cols, vals = rows[keep], cols[keep], vals[keep]
        order = np.lexsort((cols, rows))
        rows, cols, vals = rows[order], cols[order], vals[order]
        lp = highspy.HighsLp()
        lp.num_col_, lp.num_row_ = self.n_cols, self.n_rows
        lp.col_cost_ = np.concatenate(self.col_cost) if self.col_cost else np.zeros(0)
        lp.col_lower_ = np.concatenate(self.col_lo) if self.col_lo else np.zeros(0)
        lp.col_upper_ = np.concatenate(self.col_hi) if self.col_hi else np.zeros(0)
        lp.row_lower_ = np.concatenate(self.row_lo) if self.row_lo else np.zeros(0)
        lp.row_upper_ = np.concatenate(self.row_hi) if self.row_hi else np.zeros(0)
        lp.a_matrix_.format_ = highspy.MatrixFormat.kRowwise
        lp.a_matrix_.start_ = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=self.n_rows))]).astype(
            np.int32)
        lp.a_matrix_.index_ = cols.astype(np.int32)
        lp.a_matrix_.value_ = vals
        integrality = np.concatenate(self.col_int) if self.col_int else np.zeros(0, np.int32)
        if integrality.any():
            lp.integrality_ = [highspy.HighsVarType.kInteger if i else highspy.HighsVarType.kContinuous
                               for i in integrality]
        model = highspy.HighsModel()
        model.lp_ = lp
        return model


@dataclass(frozen=True)
class GridVars:
    imp: np.ndarray  # kW imported per quarter: within the limit, then beyond it (2n columns)
    exp: np.ndarray  # kW exported per quarter: within the limit, then beyond it (2n columns)
    curtail: np.ndarray | None  # kW of PV left unused per quarter


def add_grid(mb: ModelBuilder, import_eur: np.ndarray, export_eur: np.ndarray, pv_kw: np.ndarray,
             import_limit_kw: np.ndarray, export_limit_kw: np.ndarray) -> GridVars:
    """Grid import and export within the connection limits, priced in EUR/kWh, and free PV curtailment.

    The limits are soft: power beyond a limit is a separate slack column with the same price plus a
    penalty, so a limit costs no rows. Exporting never pays more than importing saves (the export
    price is capped at the import price): then netting the two is never worse.
    """
    n = len(import_eur)
    q = np.arange(n)
    exp_eur = np.minimum(export_eur, import_eur)
    imp = mb.cols(n, 0.0, import_limit_kw, DT_H * import_eur)
    exp = mb.cols(n, 0.0, export_limit_kw, -DT_H * exp_eur)
    imp_over = mb.slack(n, DT_H * (import_eur + PENALTY_CONNECTION_EUR_PER_KWH), "connection", "import limit", "kWh", q,
                        scale=DT_H)
    exp_over = mb.slack(n, DT_H * (PENALTY_CONNECTION_EUR_PER_KWH - exp_eur), "connection", "export limit", "kWh", q,
                        scale=DT_H)
    curtail = mb.cols(n, 0.0, pv_kw) if (pv_kw > 0).any() else None
    return GridVars(np.concatenate([imp, imp_over]), np.concatenate([exp, exp_over]), curtail)


def add_power_balance(mb: ModelBuilder, grid: GridVars, base_kw: np.ndarray, pv_kw: np.ndarray,
                      loads: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> None:
    """Per quarter: import - export - curtailment - device loads = base load - PV (kW).

    ``loads`` are (quarter index, column, coefficient) triples of device power taken from the bus.
    """
    net = base_kw - pv_kw
    n = len(net)
    rows = mb.rows(n, net, net)
    mb.terms(np.tile(rows, 2), grid.imp, 1.0)
    mb.terms(np.tile(rows, 2), grid.exp, -1.0)
    if grid.curtail is not None:
        mb.terms(rows, grid.curtail, -1.0)
    for quarter, cols, coef in loads:
        mb.terms(rows[quarter], cols, -coef)


@dataclass(frozen=True)
class BatteryVars:
    charge: np.ndarray  # kW into the battery (from the bus) per quarter
    discharge: np.ndarray  # kW out of the battery (to the bus) per quarter
    soc: np.ndarray  # kWh at the end of each quarter


def add_battery_soc(mb: ModelBuilder, bat, n: int, wear_eur_per_kwh: float) -> BatteryVars:  # type: ignore[no-untyped-def]
    """Battery power limits and SOC dynamics; the end level is soft; wear is charged per kWh discharged.

    The SOC bounds are widened to what the start level can reach, so a start outside the usable
    range is never infeasible: soc[t] = soc[t-1] + dt (eta_c charge - discharge / eta_d).
    """
    t = np.arange(1, n + 1)
    reach_up = bat.soc_start_kwh + DT_H * bat.charge_efficiency * bat.max_charge_kw * t
    reach_down = bat.soc_start_kwh - DT_H * bat.max_discharge_kw / bat.discharge_efficiency * t
    lo = np.minimum(bat.soc_min_kwh, reach_up)
    hi = np.maximum(bat.soc_max, reach_down)
    ch = mb.cols(n, 0.0, bat.max_charge_kw)
    dis = mb.cols(n, 0.0, bat.max_discharge_kw, DT_H * wear_eur_per_kwh)
    soc = mb.cols(n, lo, hi)
    rhs = np.zeros(n)
    rhs[0] = bat.soc_start_kwh
    rows = mb.rows(n, rhs, rhs)
    mb.terms(rows, soc, 1.0)
    mb.terms(rows[1:], soc[:-1], -1.0)
    mb.terms(rows, ch, -DT_H * bat.charge_efficiency)
    mb.terms(rows, dis, DT_H / bat.discharge_efficiency)
    if bat.soc_end_min_kwh > 0:
        end = mb.rows(1, bat.soc_end_min_kwh, INF)
        short = mb.slack(1, PENALTY_EUR_PER_KWH, bat.id, "end level", "kWh", None)
        mb.terms(end, soc[-1:], 1.0)
        mb.terms(end, short, 1.0)
    return BatteryVars(ch, dis, soc)


def add_no_simultaneous(mb: ModelBuilder, bat, v: BatteryVars, quarters: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    """A binary mode per listed quarter: charge <= P_c b and discharge <= P_d (1 - b)."""
    if len(quarters) == 0:
        return
    b = mb.cols(len(quarters), 0.0, 1.0, integer=True)
    r1 = mb.rows(len(quarters), -INF, 0.0)
    mb.terms(r1, v.charge[quarters], 1.0)
    mb.terms(r1, b, -bat.max_charge_kw)
    r2 = mb.rows(len(quarters), -INF, bat.max_discharge_kw)
    mb.terms(r2, v.discharge[quarters], 1.0)
    mb.terms(r2, b, bat.max_discharge_kw)


def add_ev_energy(mb: ModelBuilder, ev, window: tuple[int, int], needed_kwh: float) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Charging power while plugged in; the energy needed by the deadline is soft, never exceeded.

    Returns the charging columns for quarters ``window[0] .. window[1] - 1``.
    """
    a, d = window
    cols = mb.cols(d - a, 0.0, ev.max_power_kw)
    per_kw = DT_H * ev.efficiency
    lo = mb.rows(1, needed_kwh, INF)
    mb.terms(np.repeat(lo, d - a), cols, per_kw)
    short = mb.slack(1, PENALTY_EUR_PER_KWH, ev.id, "energy by departure", "kWh", None)
    mb.terms(lo, short, 1.0)
    hi = mb.rows(1, -INF, max(needed_kwh, 0.0))
    mb.terms(np.repeat(hi, d - a), cols, per_kw)
    return cols


@dataclass(frozen=True)
class HeatPumpVars:
    power: np.ndarray  # electric kW per quarter
    indoor: np.ndarray  # deg C at the end of each quarter


def add_heat_pump(mb: ModelBuilder, hp, outdoor_c: np.ndarray) -> HeatPumpVars:  # type: ignore[no-untyped-def]
    """1R1C dynamics, exact for a constant input over the quarter, and a soft comfort band.

    T[t] = a T[t-1] + (1 - a) (T_out[t] + R COP[t] P[t]) with a = exp(-dt / (R C)).
    """
    n = len(outdoor_c)
    a = math.exp(-DT_H / (hp.r_k_per_kw * hp.c_kwh_per_k))
    cop = hp.cop_at(outdoor_c)
    p = mb.cols(n, 0.0, hp.max_electric_kw)
    temp = mb.cols(n, -INF, INF)
    rhs = (1 - a) * outdoor_c
    rhs[0] += a * hp.initial_indoor_c
    rows = mb.rows(n, rhs, rhs)
    mb.terms(rows, temp, 1.0)
    mb.terms(rows[1:], temp[:-1], -a)
    mb.terms(rows, p, -(1 - a) * hp.r_k_per_kw * cop)
    q = np.arange(n)
    cold = mb.slack(n, PENALTY_EUR_PER_K_H * DT_H, hp.id, "below comfort", "K·h", q, scale=DT_H)
    hot = mb.slack(n, PENALTY_EUR_PER_K_H * DT_H, hp.id, "above comfort", "K·h", q, scale=DT_H)
    low = mb.rows(n, hp.comfort_min_c, INF)
    mb.terms(low, temp, 1.0)
    mb.terms(low, cold, 1.0)
    high = mb.rows(n, -INF, hp.comfort_max_c)
    mb.terms(high, temp, 1.0)
    mb.terms(high, hot, -1.0)
    return HeatPumpVars(p, temp)


def add_appliance_start(mb: ModelBuilder, app, starts: np.ndarray) -> tuple[np.ndarray, list]:  # type: ignore[no-untyped-def]
    """One binary per allowed start quarter; exactly one start, or the penalised 'cannot run' slack.

    Returns the start columns and the load triples (quarter, column, kW) for the power balance.
    """
    profile = np.asarray(app.profile_kw, dtype=float)
    s = mb.cols(len(starts), 0.0, 1.0, integer=True)
    row = mb.rows(1, 1.0, 1.0)
    mb.terms(np.repeat(row, len(starts)), s, 1.0)
    skip = mb.slack(1, PENALTY_EUR_PER_RUN, app.id, "run in its window", "run", None, hi=1.0)
    mb.terms(row, skip, 1.0)
    k = len(profile)
    quarter = (starts[:, None] + np.arange(k)[None, :]).ravel()
    cols = np.repeat(s, k)
    coef = np.tile(profile, len(starts))
    return s, [(quarter, cols, coef)]


__all__ = [
    "DT_H",
    "INF",
    "PENALTY_EUR_PER_KWH",
    "BatteryVars",
    "GridVars",
    "HeatPumpVars",
    "ModelBuilder",
    "SlackGroup",
    "add_appliance_start",
    "add_battery_soc",
        "add_ev_energy",
    "add_grid",
    "add_heat_pump",
    "add_no_simultaneous",
    "add_power_balance",
]
