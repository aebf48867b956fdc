"""The settlement engine: exact matrix products, and a month equals the sum of its days (DST months too)."""

from __future__ import annotations

import itertools
from datetime import date, timedelta

import numpy as np
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from kwartier.settle.engine import EXACT_LIMIT, PeriodEnergy, energy_amounts, settle_plan
from kwartier.tariffs.plan import load_plan
from kwartier.timegrid import interval_starts, local_period_bounds


def test_energy_amounts_are_exact_on_both_paths():
    rng = np.random.default_rng(1)
    e = rng.integers(0, 5000, size=(300, 2976), dtype=np.int64)
    p = rng.integers(-500_000, 900_000, size=(2976, 3), dtype=np.int64)
    reference = np.array([[sum(int(a) * int(b) for a, b in zip(e[i], p[:, k], strict=True)) for k in range(3)]
                          for i in range(0, 300, 37)])
    assert (energy_amounts(e, p)[::37] == reference).all()  # float64 BLAS path (bound < 2**53)
    big = e * 1_000_000  # pushes max|e| x max|p| x q over 2**53: the int64 path
    assert int(np.abs(big).max()) * int(np.abs(p).max()) * 2976 >= EXACT_LIMIT
    assert (energy_amounts(big, p)[::37] == reference * 1_000_000).all()


def _energy(first: date, end: date, imp: np.ndarray, exp: np.ndarray, before=(0, 0)) -> PeriodEnergy:
    start, stop = local_period_bounds(first, end)
    return PeriodEnergy(first, end, interval_starts(start, stop), imp, exp, np.full(imp.shape[0], before[0]),
                        np.full(imp.shape[0], before[1]))


def _market(first: date, end: date, prices: list[int]) -> pl.DataFrame:
    start, stop = local_period_bounds(first, end)
    starts = interval_starts(start, stop)
    return pl.DataFrame({"interval_start": starts, "resolution": "PT15M",
                         "price_ueur_per_kwh": [prices[i % len(prices)] for i in range(starts.len())]})


@settings(max_examples=15, deadline=None)
@given(month=st.sampled_from([(2026, 3), (2026, 10), (2026, 6)]), seed=st.integers(0, 2**32 - 1),
       plan_id=st.sampled_from(["nl-dynamic-2026", "nl-dynamic-2027", "nl-fixed-2026", "nl-daynight-2026"]))
def test_a_month_is_the_sum_of_its_days(month, seed, plan_id):
    y, m = month
    first, end = date(y, m, 1), date(y + (m == 12), m % 12 + 1, 1)
    start, stop = local_period_bounds(first, end)
    nq = interval_starts(start, stop).len()
    assert nq == {3: 31 * 96 - 4, 10: 31 * 96 + 4, 6: 30 * 96}[m]  # the DST months have 92- and 100-quarter days
    rng = np.random.default_rng(seed)
    imp = rng.integers(0, 3000, size=(4, nq), dtype=np.int64)
    exp = rng.integers(0, 2000, size=(4, nq), dtype=np.int64)
    prices = rng.integers(-200_000, 600_000, size=97).tolist()
    market = _market(first, end, prices)
    plan = load_plan(plan_id)
    before = (int(rng.integers(0, 20_000_000)), int(rng.integers(0, 5_000_000)))
    whole = settle_plan(plan, _energy(first, end, imp, exp, before), market)
    days = [first + timedelta(days=k) for k in range((end - first).days + 1)]
    total = {k: np.zeros(4, dtype=np.int64) for k in whole}
    col = 0
    acc_i, acc_e = before
    for a, b in itertools.pairwise(days):
        s, t = local_period_bounds(a, b)
        n = interval_starts(s, t).len()
        day = PeriodEnergy(a, b, interval_starts(s, t), imp[:, col:col + n], exp[:, col:col + n],
                           acc_i + imp[:, :col].sum(axis=1), acc_e + exp[:, :col].sum(axis=1))
        part = settle_plan(plan, day, market)
        for k, v in part.items():
            total[k] += v
        col += n
    assert col == nq
    for comp in plan.components:
        k = comp.spec.id
        if comp.spec.basis in ("per_month", "per_year", "per_day"):
            assert (np.abs(total[k] - whole[k]) <= len(days)).all()  # prorated: rounded to the nano per call
        else:
            assert (total[k] == whole[k]).all(), k  # energy, bands, netting: exact
