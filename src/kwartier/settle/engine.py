"""The vectorised settlement engine: energy x fixed prices x plan -> nano-euros per connection and component.

Pure functions over numpy arrays. Energy is a dense matrix (connections x quarters, Wh, int64); each
energy component's price is a vector over the quarters (micro-euros per kWh). Their product summed
over time is a matrix product. It runs in float64 BLAS when every product and partial sum is an
integer below 2**53 (checked from the maxima; then the float result *is* the exact integer), else in
int64. A month of 100,000 connections is one product per component.

Other bases follow the cost calculator's rules exactly (:mod:`kwartier.tariffs.cost`): energy-tax
bands telescope, so only each connection's totals matter; annual netting is telescoped over the
year-to-date net import; ``per_day``/``per_month``/``per_year`` are prorated by days; ``percent`` is
a rate times other components. The result for a period is therefore the sum of the results for its
days, except that prorated lines are rounded to the nano-euro per call.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction

import numpy as np
import polars as pl

from kwartier.tariffs.compose import NANO, evaluate_micro, series_env
from kwartier.tariffs.cost import _bands_micro, _nano, _period_fraction
from kwartier.tariffs.plan import LoadedPlan, PlanError

EXACT_LIMIT = 2**53
CHUNK_ROWS = 8192


@dataclass(frozen=True)
class PeriodEnergy:
    """Energy of ``n`` connections over the quarters of the local days [first, end).

    ``import_wh``/``export_wh``: (n, quarters) int64 Wh; ``year_import_before_wh`` and
    ``year_export_before_wh``: (n,) Wh earlier in the same calendar year (for bands and netting).
    ``share_nano``: per derived series, (n,) rates in nano units (value x 10**9).
    """

    first: date
    end: date
    starts: pl.Series
    import_wh: np.ndarray
    export_wh: np.ndarray
    year_import_before_wh: np.ndarray
    year_export_before_wh: np.ndarray
    share_nano: dict[str, np.ndarray] | None = None

    @property
    def n(self) -> int:
        return int(self.import_wh.shape[0])


def energy_amounts(energy_wh: np.ndarray, prices_micro: np.ndarray) -> np.ndarray:
    """Exact ``energy_wh @ prices_micro`` ((n, q) Wh x (q, k) uEUR/kWh -> (n, k) nano-euros), int64.

    Uses float64 BLAS when max|e| x max|p| x q < 2**53 (then every product and partial sum is an
    integer a double holds exactly); otherwise int64 arithmetic. Works in row chunks to bound memory.
    """
    n, q = energy_wh.shape
    k = prices_micro.shape[1]
    out = np.empty((n, k), dtype=np.int64)
    if n == 0 or k == 0:
        return out
    bound = int(np.abs(energy_wh).max(initial=0)) * int(np.abs(prices_micro).max(initial=0)) * q
    exact_float = bound < EXACT_LIMIT
    p_float = prices_micro.astype(np.float64)
    p_int = prices_micro.astype(np.int64)
    for lo in range(0, n, CHUNK_ROWS):
        hi = min(n, lo + CHUNK_ROWS)
        if exact_float:
            out[lo:hi] = np.rint(energy_wh[lo:hi].astype(np.float64) @ p_float).astype(np.int64)
        else:
            out[lo:hi] = energy_wh[lo:hi].astype(np.int64) @ p_int
    return out


def banded_totals(before_wh: np.ndarray, total_wh: np.ndarray, limits_wh: list[int | None], prices: list[int]
                  ) -> np.ndarray:
    """Per connection: the banded cost of ``total_wh`` on top of ``before_wh`` (bands telescope)."""
    out = np.zeros(before_wh.shape[0], dtype=np.int64)
    lo = 0
    for limit, price in zip(limits_wh, prices, strict=True):
        hi = np.iinfo(np.int64).max if limit is None else limit
        out += (np.clip(before_wh + total_wh, lo, hi) - np.clip(before_wh, lo, hi)) * price
        lo = hi
    return out


def netted_totals(history_net_wh: np.ndarray, period_net_wh: np.ndarray, limits_wh: list[int | None] | None,
                  prices: list[int]) -> np.ndarray:
    """Vectorised :func:`kwartier.tariffs.cost.netted_nano`: tax on YTD net import, telescoped."""
    before = np.maximum(0, history_net_wh)
    after = np.maximum(0, history_net_wh + period_net_wh)
    if limits_wh is None:
        return (after - before) * prices[0]
    zero = np.zeros_like(before)
    return banded_totals(zero, after, limits_wh, prices) - banded_totals(zero, before, limits_wh, prices)


def settle_plan(plan: LoadedPlan, energy: PeriodEnergy, market: pl.DataFrame,
                inputs: dict[str, pl.DataFrame] | None = None) -> dict[str, np.ndarray]:
    """Nano-euros per component id, each an (n,) int64 array, for the connections in ``energy``.

    ``market``: stored prices covering every quarter (fixed values only: the caller checks status).
    """
    constants = plan.env_constants()
    quarters = pl.DataFrame({"interval_start": energy.starts, "resolution": "PT15M"})
    derived_ids = {s.id for s in plan.plan.series if s.kind == "derived"}
    env = None
    out: dict[str, np.ndarray] = {}
    vector_ids, vectors, which = [], [], []
    for comp in plan.components:
        spec = comp.spec
        if spec.basis in ("import_kwh", "export_kwh") and not comp.bands and not (
                spec.netted and plan.plan.netting == "annual"):
            if comp.price.names & derived_ids:  # type: ignore[union-attr]
                raise PlanError(f"component {spec.id!r}: an energy price cannot read a derived series")
            if env is None:
                env = series_env(plan, quarters, market, inputs, None)
            vector_ids.append(spec.id)
            vectors.append(evaluate_micro(comp.price, env, constants).to_numpy().astype(np.int64))  # type: ignore[arg-type]
            which.append(spec.basis)
    for basis, matrix in (("import_kwh", energy.import_wh), ("export_kwh", energy.export_wh)):
        idx = [i for i, b in enumerate(which) if b == basis]
        if idx:
            amounts = energy_amounts(matrix, np.stack([vectors[i] for i in idx], axis=1))
            for j, i in enumerate(idx):
                out[vector_ids[i]] = amounts[:, j]
    imp_total = energy.import_wh.sum(axis=1)
    exp_total = energy.export_wh.sum(axis=1)
    n = energy.n
    for comp in plan.components:
        spec = comp.spec
        if spec.id in out:
            continue
        if spec.netted and plan.plan.netting == "annual":
            if comp.bands:
                limits, prices = _bands_micro(comp, constants)
            else:
                limits, prices = None, [_micro(comp.price.evaluate(dict(constants)))]  # type: ignore[union-attr]
            out[spec.id] = netted_totals(energy.year_import_before_wh - energy.year_export_before_wh,
                                         imp_total - exp_total, limits, prices)
        elif comp.bands:
            limits, prices = _bands_micro(comp, constants)
            before, total = ((energy.year_import_before_wh, imp_total) if spec.basis == "import_kwh"
                             else (energy.year_export_before_wh, exp_total))
            out[spec.id] = banded_totals(before, total, limits, prices)
        elif spec.basis == "per_day":
            value = _nano(comp.price.evaluate(dict(constants)) * (energy.end - energy.first).days)  # type: ignore[union-attr]
            out[spec.id] = np.full(n, value, dtype=np.int64)
        elif spec.basis in ("per_month", "per_year"):
            frac = _period_fraction(energy.first, energy.end, spec.basis)
            value = _nano(Fraction(comp.price.evaluate(dict(constants))) * frac)  # type: ignore[union-attr]
            out[spec.id] = np.full(n, value, dtype=np.int64)
        elif spec.basis == "percent":
            out[spec.id] = _percent(comp, plan, energy, out, constants)
    return {c.spec.id: out[c.spec.id] for c in plan.components}


def _micro(eur: Decimal) -> int:
    return int((eur * 1_000_000).to_integral_value(ROUND_HALF_EVEN))


def _percent(comp, plan: LoadedPlan, energy: PeriodEnergy, out: dict[str, np.ndarray],  # type: ignore[no-untyped-def]
             constants: dict[str, Decimal]) -> np.ndarray:
    base: np.ndarray = np.sum([out[c] for c in comp.spec.of], axis=0)
    names = comp.price.names - set(constants)
    if not names:
        rate = Fraction(comp.price.evaluate(dict(constants)))
        return np.array([_nano(rate * int(b) / NANO) for b in base], dtype=np.int64)
    shares = energy.share_nano or {}
    if len(names) != 1 or next(iter(names)) not in shares:
        raise PlanError(f"component {comp.spec.id!r}: a percent rate may read one derived series "
                        f"(got {', '.join(sorted(names))})")
    rates = shares[next(iter(names))]
    scope = dict(constants)
    sid = next(iter(names))
    result = []
    for r, b in zip(rates.tolist(), base.tolist(), strict=True):
        scope[sid] = Decimal(r).scaleb(-9)
        result.append(_nano(Fraction(comp.price.evaluate(scope)) * b / NANO))
    return np.array(result, dtype=np.int64)
