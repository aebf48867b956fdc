"""The suppliers' per-quarter prices of the plans, the mid-market reference, and the differential lines (exact)."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kwartier.community.pricing import (
    PricingError,
    community_price_ueur,
    member_savings_nano,
    settle_shares,
    shared_reference,
    supplier_differential,
    supplier_prices,
)
from kwartier.community.rules import rulebook_from_data
from kwartier.community.sharing import Allocation, share
from kwartier.tariffs.plan import load_plan, plan_from_text
from kwartier.timegrid import interval_starts, local_period_bounds

START, STOP = local_period_bounds(date(2026, 2, 1), date(2026, 2, 2), "Europe/Amsterdam")
STARTS = interval_starts(START, STOP)
# The day-ahead price per quarter (uEUR/kWh): 100, 110, ... then negative in the last quarters.
MARKET_UEUR = np.array([100_000 + 10_000 * (q % 5) for q in range(96)], np.int64)
MARKET_UEUR[-4:] = [-20_000, -40_000, 10_000, 0]


def market(values: np.ndarray = MARKET_UEUR) -> pl.DataFrame:
    return pl.DataFrame({"interval_start": STARTS, "resolution": "PT15M", "price_ueur_per_kwh": values,
                         "known_at": STARTS - timedelta(hours=12)})


def test_a_dynamic_plan_charges_market_plus_markup_and_pays_market_minus_fee():
    sp = supplier_prices(load_plan("nl-dynamic-2026"), market(), START, STOP)
    assert sp.supply_ueur_per_kwh.tolist() == (MARKET_UEUR + 18_000).tolist()
    assert sp.feed_in_ueur_per_kwh.tolist() == (MARKET_UEUR - 15_000).tolist()
    assert sp.supply_vat and sp.feed_in_vat  # the energy tax (payee tax) is not part of S


def test_after_net_metering_the_feed_in_floor_and_no_vat_apply():
    sp = supplier_prices(load_plan("nl-dynamic-2027"), market(), START, STOP)
    # max(market - 0.015, 0.5 x max(market + 0.018, 0)): 95 000 at 110 000; at -20 000: max(-35 000, 0) = 0;
    # at 10 000: max(-5 000, 14 000) = 14 000.
    assert sp.feed_in_ueur_per_kwh[1] == 95_000 and sp.feed_in_ueur_per_kwh[-4:].tolist() == [0, 0, 14_000, 9_000]
    assert sp.supply_vat and not sp.feed_in_vat


def test_a_netted_fixed_price_is_both_the_supply_and_the_feed_in_price_and_needs_no_market():
    empty = market().head(0)
    sp = supplier_prices(load_plan("nl-fixed-2026"), empty, START, STOP)
    assert set(sp.supply_ueur_per_kwh.tolist()) == set(sp.feed_in_ueur_per_kwh.tolist()) == {125_000}


def test_jem_takes_supply_and_markup_but_not_the_grid_or_community_components():
    sp = supplier_prices(load_plan("jem-2.0"), market(), START, STOP)
    assert sp.supply_ueur_per_kwh.tolist() == (MARKET_UEUR + 18_000).tolist() and not sp.feed_in_vat


def test_plans_that_cannot_price_shared_energy_are_refused_with_the_reason():
    with pytest.raises(PricingError, match=r"nl-dynamic-2026: no day-ahead prices for 6 interval"):
        supplier_prices(load_plan("nl-dynamic-2026"), market().head(90), START, STOP)
    mixed = plan_from_text("""id = "mixed"
name = "Mixed"
vat_rate = "0.21"
[[components]]
id = "supply"
label = "Supply"
payee = "supplier"
basis = "import_kwh"
price = "market"
fixed = "day-ahead"
[[components]]
id = "green"
label = "Green certificates"
payee = "supplier"
basis = "import_kwh"
price = "0.01"
vat = false
""", "mixed.toml")
    with pytest.raises(PricingError, match=r"mixed\.toml: the supplier's supply components mix VAT"):
        supplier_prices(mixed, market(), START, STOP)


def test_the_reference_is_the_shared_energy_weighted_price_rounded_down():
    energy = np.array([[100, 0], [300, 0], [0, 0]])
    price = np.array([[100, 7], [201, 9], [999, 1]])
    # (100 x 100 + 300 x 201) / 400 = 175.75 -> 175; nothing shared in quarter 1: the fallback
    assert shared_reference(energy, price, np.array([5, 6])).tolist() == [175, 6]


def test_the_differential_by_hand():
    # a gives 1000 Wh, b takes 300 and c 600 (one quarter); C = 150 000, S = 250 000 (b) / 200 000 (c), F = 50 000
    alloc = share(("a", "b", "c"), np.array([[1000], [0], [0]]), np.array([[0], [300], [600]]),
                  rulebook_from_data({}))
    supply = np.array([[0], [250_000], [200_000]])
    feed_in = np.array([[50_000], [0], [0]])
    d = supplier_differential(alloc, np.array([150_000]), supply, feed_in, np.zeros((3, 1), np.int64), 1)
    assert d.take_nano[:, 0].tolist() == [0, -30_000_000, -30_000_000]  # 0.3 kWh x -0.10, 0.6 kWh x -0.05
    assert d.give_nano[:, 0].tolist() == [-90_000_000, 0, 0]  # 0.9 kWh x (0.05 - 0.15)
    assert d.take_wh[:, 0].tolist() == [0, 300, 600] and d.give_wh[:, 0].tolist() == [900, 0, 0]
    money = settle_shares(alloc, rulebook_from_data({}))
    assert member_savings_nano(money, d).tolist() == [90_000_000, 30_000_000, 30_000_000]


@st.composite
def priced(draw):  # type: ignore[no-untyped-def]
    m, q = draw(st.integers(2, 5)), draw(st.integers(1, 8))
    wh = st.lists(st.lists(st.integers(0, 4000), min_size=q, max_size=q), min_size=m, max_size=m)
    ueur = st.lists(st.lists(st.integers(-500_000, 900_000), min_size=q, max_size=q), min_size=m, max_size=m)
    tariffs = st.lists(st.lists(st.integers(0, 2), min_size=q, max_size=q), min_size=m, max_size=m)
    return (np.array(draw(wh)), np.array(draw(wh)), np.array(draw(ueur)), np.array(draw(ueur)),
            np.array(draw(tariffs)), draw(st.sampled_from(["mid_market", "uniform"])))


@settings(max_examples=60, deadline=None)
@given(priced())
def test_the_suppliers_lose_exactly_the_supply_not_sold_and_save_the_feed_in_not_paid(case):
    prod, cons, supply, feed_in, tariff, rule = case
    rb = rulebook_from_data({"price": {"rule": rule, "uniform_eur_per_kwh": "0.12"}})
    alloc = share(tuple(f"m{i}" for i in range(len(prod))), prod, cons, rb)
    s_ref = shared_reference(alloc.community_wh, supply, np.full(prod.shape[1], 250_000))
    f_ref = shared_reference(alloc.shared_out_wh, feed_in, np.full(prod.shape[1], 50_000))
    money = settle_shares(alloc, rb, s_ref, f_ref)
    base = community_price_ueur(rb.price, s_ref, f_ref)
    d = supplier_differential(alloc, base, supply, feed_in, tariff, 3)
    # The community price cancels: what members pay their suppliers over the lines is what the suppliers no
    # longer pay for the shared feed-in minus what they no longer sell.
    assert int(d.net_nano.sum()) == int((alloc.shared_out_wh * feed_in).sum() - (alloc.community_wh * supply).sum())
    one = supplier_differential(alloc, base, supply, feed_in, np.zeros_like(tariff), 1)
    assert (d.take_nano.sum(axis=1) == one.take_nano[:, 0]).all() and (d.give_wh.sum(axis=1) == alloc.shared_out_wh
                                                                        .sum(axis=1)).all()
    assert (member_savings_nano(money, d) == -d.net_nano).all()  # no solidarity lines under these rules
    empty = Allocation(alloc.participants, prod, cons, np.zeros_like(cons), np.zeros_like(prod))
    assert not supplier_differential(empty, base, supply, feed_in, tariff, 3).net_nano.any()
