"""The planning problem as arrays: prices, horizon, device windows, a schedule's powers and its exact cost.

Prices are integer micro-euros per kWh per quarter (export: what the household receives); power
in kW per quarter (taken from the household's bus > 0); energy accounted in integer Wh per quarter;
money in integer nano-euros, rounded to cents once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np

from kwartier.money import nano_to_cents
from kwartier.steer.devices import EV, Appliance, Devices, series_values

QUARTER = timedelta(minutes=15)
MAX_QUARTERS = 192  # 48 hours


class SteerError(ValueError):
    """A planning request that cannot be served (bad horizon, prices of the wrong length, ...)."""


@dataclass(frozen=True)
class Prices:
    """Import and export prices per quarter in integer micro-euros per kWh (export: what you receive)."""

    import_ueur_per_kwh: np.ndarray
    export_ueur_per_kwh: np.ndarray

    @classmethod
    def market(cls, ueur_per_kwh: np.ndarray) -> Prices:
        """The market price alone, for both directions."""
        p = np.asarray(ueur_per_kwh, dtype=np.int64)
        return cls(p, p.copy())


@dataclass(frozen=True)
class Problem:
    """Everything one household's plan needs, as arrays over the horizon's quarters."""

    devices: Devices
    starts: tuple[datetime, ...]
    prices: Prices
    base_kw: np.ndarray
    pv_kw: np.ndarray
    outdoor_c: np.ndarray
    tz: str = "Europe/Amsterdam"
    congestion_import_ueur_per_kwh: np.ndarray | None = None
    congestion_export_ueur_per_kwh: np.ndarray | None = None
    import_cap_kw: np.ndarray | None = None
    export_cap_kw: np.ndarray | None = None

    @property
    def n(self) -> int:
        return len(self.starts)


def horizon_starts(start: datetime, end: datetime) -> tuple[datetime, ...]:
    """The UTC quarter starts in [start, end); at most :data:`MAX_QUARTERS`."""
    if start.tzinfo is None or end.tzinfo is None:
        raise SteerError("--from and --to need an offset (e.g. +01:00 or Z)")
    if (start.minute % 15) or start.second or start.microsecond or (end.minute % 15) or end.second:
        raise SteerError(f"the horizon {start.isoformat()} .. {end.isoformat()} is not on the quarter-hour grid")
    n = int((end - start) / QUARTER)
    if n <= 0:
        raise SteerError("the horizon is empty: --to must be after --from")
    if n > MAX_QUARTERS:
        raise SteerError(f"the horizon has {n} quarters; at most {MAX_QUARTERS} (48 h)")
    s = start.astimezone(UTC)
    return tuple(s + i * QUARTER for i in range(n))


def make_problem(devices: Devices, starts: tuple[datetime, ...], prices: Prices, tz: str = "Europe/Amsterdam"
                 ) -> Problem:
    """Resolve a device file's series over the horizon and check the prices cover it."""
    n = len(starts)
    for name, arr in (("import", prices.import_ueur_per_kwh), ("export", prices.export_ueur_per_kwh)):
        if len(arr) != n:
            raise SteerError(f"{name} prices cover {len(arr)} quarters, the horizon has {n}")
    lst = list(starts)
    base = series_values(devices.base_load, lst, "base_load")
    pv = np.maximum(series_values(devices.pv, lst, "pv"), 0.0)
    outdoor = series_values(devices.outdoor_temperature, lst, "outdoor_temperature") \
        if devices.outdoor_temperature is not None else np.full(n, 10.0)
    return Problem(devices, starts, prices, base, pv, outdoor, tz)


def quarter_index(ts: datetime, starts: tuple[datetime, ...], up: bool) -> int:
    """The index of ``ts`` on the horizon's grid, rounded up or down to a quarter, clipped to [0, n]."""
    x = (ts - starts[0]) / QUARTER
    i = math.ceil(x - 1e-9) if up else math.floor(x + 1e-9)
    return min(max(i, 0), len(starts))


def ev_window(ev: EV, starts: tuple[datetime, ...]) -> tuple[int, int, float]:
    """Quarters [a, d) the car can charge in the horizon, and the kWh it must have by quarter d.

    A departure beyond the horizon lowers what is needed inside it by what full power can still
    add after the horizon's end.
    """
    a, d = quarter_index(ev.arrival, starts, up=True), quarter_index(ev.departure, starts, up=False)
    needed = ev.energy_needed_kwh
    end = starts[-1] + QUARTER
    if ev.departure > end:
        after_h = (ev.departure - max(end, ev.arrival)).total_seconds() / 3600
        needed = max(0.0, needed - after_h * ev.max_power_kw * ev.efficiency)
    return a, max(a, d), needed


def appliance_starts(app: Appliance, starts: tuple[datetime, ...]) -> np.ndarray:
    """Allowed start quarters: the whole run inside [earliest_start, latest_end) and the horizon."""
    e = quarter_index(app.earliest_start, starts, up=True)
    last_end = quarter_index(app.latest_end, starts, up=False)
    k = len(app.profile_kw)
    return np.arange(e, max(e, last_end - k + 1))


@dataclass
class Powers:
    """A schedule as arrays: kW per device and quarter (taken from the bus > 0), battery SOC, indoor temp."""

    kw: dict[str, np.ndarray] = field(default_factory=dict)
    soc_kwh: dict[str, np.ndarray] = field(default_factory=dict)
    indoor_c: dict[str, np.ndarray] = field(default_factory=dict)
    curtail_kw: np.ndarray | None = None
    charge_kw: dict[str, np.ndarray] = field(default_factory=dict)  # batteries: the two directions apart
    discharge_kw: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class Accounting:
    """Grid energy per quarter (Wh, both >= 0) and the exact costs in nano-euros."""

    import_wh: np.ndarray
    export_wh: np.ndarray
    energy_cost_nano: int
    wear_cost_nano: int

    @property
    def cost(self) -> Decimal:
        """Energy cost in EUR, rounded once to cents (half-even)."""
        return Decimal(nano_to_cents(self.energy_cost_nano)).scaleb(-2)

    @property
    def wear_cost(self) -> Decimal:
        return Decimal(nano_to_cents(self.wear_cost_nano)).scaleb(-2)


def wear_ueur_per_kwh(devices: Devices) -> dict[str, int]:
    return {b.id: int(b.wear_cost_eur_per_kwh * 1_000_000) for b in devices.battery}


def account(problem: Problem, powers: Powers) -> Accounting:
    """Grid import/export per quarter from the device powers, and the exact energy and wear costs.

    Energy cost = sum(import Wh x import price) - sum(export Wh x export price), in nano-euros.
    Wear = sum over batteries of discharged Wh x wear cost. Congestion prices are not part of it.
    """
    net_kw = problem.base_kw - problem.pv_kw
    if powers.curtail_kw is not None:
        net_kw = net_kw + powers.curtail_kw
    for kw in powers.kw.values():
        net_kw = net_kw + kw
    net_wh = np.rint(net_kw * 250.0).astype(np.int64)
    imp, exp = np.maximum(net_wh, 0), np.maximum(-net_wh, 0)
    energy = int((imp * problem.prices.import_ueur_per_kwh).sum() - (exp * problem.prices.export_ueur_per_kwh).sum())
    wear = 0
    for bid, ueur in wear_ueur_per_kwh(problem.devices).items():
        dis_wh = np.rint(np.maximum(-powers.kw[bid], 0.0) * 250.0).astype(np.int64)
        wear += int(dis_wh.sum()) * ueur
    return Accounting(imp, exp, energy, wear)


def effective_prices_eur(problem: Problem) -> tuple[np.ndarray, np.ndarray]:
    """Import cost and export revenue per kWh in EUR as the model sees them (congestion included)."""
    imp = problem.prices.import_ueur_per_kwh.astype(float)
    exp = problem.prices.export_ueur_per_kwh.astype(float)
    if problem.congestion_import_ueur_per_kwh is not None:
        imp = imp + problem.congestion_import_ueur_per_kwh
    if problem.congestion_export_ueur_per_kwh is not None:
        exp = exp - problem.congestion_export_ueur_per_kwh
    return imp / 1e6, exp / 1e6


__all__ = [
    "MAX_QUARTERS",
    "QUARTER",
    "Accounting",
    "Powers",
    "Prices",
    "Problem",
    "SteerError",
    "account",
    "appliance_starts",
    "effective_prices_eur",
    "ev_window",
    "horizon_starts",
    "make_problem",
    "quarter_index",
    "wear_ueur_per_kwh",
]
