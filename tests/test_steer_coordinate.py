"""Community congestion: households optimised separately keep a shared feeder limit through congestion prices."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from kwartier.steer.coordinate import coordinate, flexible_kw, share_caps
from kwartier.steer.devices import EV, Battery, Devices, SeriesSpec
from kwartier.steer.optimize import Prices, horizon_starts, make_problem, optimise

T0 = datetime(2026, 1, 15, tzinfo=UTC)
N_Q = 32
# A cheap trough in quarters 8-11 that every battery wants, and a dear hour at the end.
PRICE = np.array([200_000] * 8 + [20_000] * 4 + [150_000] * 16 + [400_000] * 4, dtype=np.int64)


def households(n: int, ev_every: int = 0) -> list:
    starts = horizon_starts(T0, T0 + timedelta(minutes=15 * N_Q))
    rng = np.random.default_rng(7)
    out = []
    for i in range(n):
        size = float(rng.choice([5.0, 8.0, 10.0]))
        bat = Battery(id="bat", capacity_kwh=size, max_charge_kw=size / 2, max_discharge_kw=size / 2,
                      soc_start_kwh=1.0, soc_end_min_kwh=1.0)
        evs = [EV(id="car", arrival=T0, departure=T0 + timedelta(hours=7), energy_needed_kwh=8.0, max_power_kw=7.4)] \
            if ev_every and i % ev_every == 0 else []
        base = SeriesSpec(values=list(0.3 + 0.4 * rng.random(N_Q)))
        out.append(make_problem(Devices(battery=[bat], ev=evs, base_load=base), starts, Prices.market(PRICE)))
    return out


def test_share_caps_add_up_to_the_limit_and_keep_inflexible_load():
    inflex, weights = np.array([1.0, 0.5, 0.0]), np.array([2.0, 1.0, 1.0])
    # over the limit: the 8 kW of flexible use are scaled to the 4 kW of room
    caps = share_caps(inflex, np.array([4.0, 0.0, 4.0]), weights, 5.5)
    assert caps.tolist() == pytest.approx([1.0 + 2.0, 0.5, 2.0]) and caps.sum() == pytest.approx(5.5)
    # within the limit: everyone keeps its use, the spare 2 kW go by weight (1 : 0.5 : 0.5)
    caps = share_caps(inflex, np.array([1.0, 1.0, 0.0]), weights, 5.5)
    assert caps.tolist() == pytest.approx([1.0 + 1.0 + 1.0, 0.5 + 1.0 + 0.5, 0.5])
    # inflexible loads alone over the limit: nobody gets more than its own
    assert share_caps(np.array([3.0, 4.0]), np.array([1.0, 1.0]), np.ones(2), 5.0).tolist() == [3.0, 4.0]


def test_flexible_power_counts_every_steerable_device():
    h = households(1, ev_every=1)[0]
    assert flexible_kw(h) == pytest.approx(h.devices.battery[0].max_charge_kw + 7.4)


def test_feeder_import_limit_holds_where_separate_plans_break_it():
    probs = households(12, ev_every=3)
    alone = sum(optimise(p).accounting.import_wh for p in probs) / 250.0
    limit = 0.5 * float(alone.max())
    assert alone.max() > limit + 1  # uncoordinated, every battery charges in the trough
    res = coordinate(probs, feeder_import_kw=limit)
    assert res.violations == []
    assert res.feeder_import_kw.max() <= limit + 1e-3
    assert res.price_iterations >= 1 and res.solves > len(probs)
    assert res.congestion_import_ueur_per_kwh[8:12].min() > 0  # the trough got a congestion price
    for r in res.results:  # every household still meets its own constraints
        assert r.violations == []
        assert r.powers.soc_kwh["bat"][-1] >= 1.0 - 1e-6


def test_feeder_export_limit_holds_when_every_battery_sells_the_dear_hour():
    probs = households(10)
    alone = sum(optimise(p).accounting.export_wh for p in probs) / 250.0
    limit = 0.4 * float(alone.max())
    assert alone.max() > limit + 1
    res = coordinate(probs, feeder_import_kw=1e6, feeder_export_kw=limit)
    assert res.violations == [] and res.feeder_export_kw.max() <= limit + 1e-3


def test_in_parallel_the_answer_is_the_same():
    probs = households(6)
    limit = 12.0
    one = coordinate(probs, feeder_import_kw=limit, workers=1)
    two = coordinate(probs, feeder_import_kw=limit, workers=2)
    assert np.allclose(one.feeder_import_kw, two.feeder_import_kw, atol=1e-6)
    assert two.violations == []
