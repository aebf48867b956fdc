"""The demo community's model: its households (seeded, always the same), their assets and its period."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np

from kwartier.ids import make_ean18

SEED = 20270101
N_HOUSEHOLDS = 90
N_PV, N_BATTERIES, N_HEAT_PUMPS, N_EVS = 70, 39, 18, 24
BATTERY_KWH, BATTERY_KW = 13.5, 5.0
TRANSFORMER_KVA = 250  # the grid operator's transformer: limited, as in the pilot (steering will use it)
#: Contracts: mostly the dynamic plan, some JEM 2.0, some fixed and day/night (counts add up to 90).
PLAN_MIX = (("nl-dynamic-2026", 56), ("jem-2.0", 16), ("nl-fixed-2026", 12), ("nl-daynight-2026", 6))
LOCALE_MIX = (("nl", 64), ("en", 16), ("fr", 10))
LAT_DEG, LON_DEG = 51.59, 4.78  # Breda
FIXED_PLAN = "nl-fixed-2026"  # a flat price: its batteries keep the self-consumption rule


class DemoError(ValueError):
    """A demo that cannot be built as asked (an empty period, a period before the weather starts, ...)."""


@dataclass(frozen=True)
class Household:
    """One demo household: its contract, its assets and the parameters of its models."""

    participant: str
    name: str
    email: str
    locale: str
    ean: str
    plan: str
    annual_kwh: float
    pv_kwp: float
    battery: bool
    heat_loss_w_per_k: float  # 0: no heat pump
    ev_commute_km: float  # 0: no EV
    away_on_workdays: bool

    @property
    def label(self) -> str:
        parts = [f"PV {self.pv_kwp:g} kWp"] if self.pv_kwp else []
        parts += ["battery"] * self.battery + ["heat pump"] * bool(self.heat_loss_w_per_k)
        return ", ".join(parts + ["EV"] * bool(self.ev_commute_km)) or "no assets"


def households(n: int = N_HOUSEHOLDS, seed: int = SEED) -> list[Household]:
    """The demo's households: always the same ones (seeded), with PV on most and 39 home batteries."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    pv = set(order[:N_PV].tolist())
    battery = set(order[:N_BATTERIES].tolist())  # every battery household has PV
    heat_pump = set(rng.permutation(n)[:N_HEAT_PUMPS].tolist())
    ev = set(rng.permutation(n)[:N_EVS].tolist())
    plans = rng.permutation([p for p, k in PLAN_MIX for _ in range(k)])
    locales = rng.permutation([loc for loc, k in LOCALE_MIX for _ in range(k)])
    out = []
    for i in range(n):
        pid = f"household-{i + 1:02d}"
        out.append(Household(
            participant=pid, name=f"Household {i + 1:02d}", email=f"{pid}@example.org", locale=str(locales[i]),
            ean=make_ean18(f"87100000000000{i + 1:03d}"), plan=str(plans[i]),
            annual_kwh=round(float(np.clip(rng.lognormal(np.log(2700), 0.3), 1200, 6000))),
            pv_kwp=round(float(rng.uniform(3.0, 8.0)), 1) if i in pv else 0.0, battery=i in battery,
            heat_loss_w_per_k=round(float(rng.uniform(120, 240))) if i in heat_pump else 0.0,
            ev_commute_km=round(float(rng.uniform(8, 45))) if i in ev else 0.0,
            away_on_workdays=bool(rng.random() < 0.6)))
    return out


def default_period(today: date) -> tuple[date, date]:
    """From the first day of last month up to (not including) ``today``: the last full month, which is
    settled and billed, and this month so far, which the portal shows as recent use."""
    return (today.replace(day=1) - timedelta(days=1)).replace(day=1), today


#: Days of day-ahead prices after the last day of readings when the demo runs up to today: today's
#: and tomorrow's prices are published (tomorrow's after the auction), so the portal shows both.
PRICE_DAYS_AHEAD = 2


def full_months(first: date, end: date) -> list[str]:
    """The months (YYYY-MM) lying wholly inside the local days ``[first, end)``."""
    out, m = [], first.replace(day=1)
    while True:
        nxt = (m + timedelta(days=32)).replace(day=1)
        if nxt > end:
            return out
        if m >= first:
            out.append(f"{m:%Y-%m}")
        m = nxt
