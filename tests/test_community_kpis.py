"""Price rules for shared kWh (exact nano-euros, conservation, solidarity funding) and the community KPIs."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from kwartier.community.kpis import gini, kpis, peak_import, ratio
from kwartier.community.pricing import balanced_cents, reference_prices, settle_shares, split_int
from kwartier.community.rules import default_rulebook, rulebook_from_data
from kwartier.community.sharing import share

ABC = ("a", "b", "c")
PROD = np.array([[1000], [0], [0]])
CONS = np.array([[0], [300], [600]])


def test_mid_market_by_hand_and_the_savings_against_no_community():
    rb = default_rulebook()  # feed-in 0.05, supply 0.25: mid-market 0.15 EUR/kWh
    alloc = share(ABC, PROD, CONS, rb)
    money = settle_shares(alloc, rb)
    assert money.bought_nano.tolist() == [0, 45_000_000, 90_000_000]  # 0.3 kWh x 0.15 = 0.045 EUR
    assert money.sold_nano.tolist() == [135_000_000, 0, 0]
    assert money.conserved() and money.net_nano.sum() == 0
    supply, feed_in = reference_prices(rb.price, 1)
    k = kpis(alloc, money, supply, feed_in)
    # b: 0.3 kWh x (0.25 - 0.15); c: 0.6 x 0.10; a: 0.9 kWh x (0.15 - 0.05)
    assert k.savings_nano == (90_000_000, 30_000_000, 60_000_000)
    assert k.self_consumption == Decimal("0.9000") and k.self_sufficiency == Decimal("1.0000")
    assert k.savings_gini == Decimal("0.2222")  # sum |xi - xj| / (2 n^2 mean) = 240 / 1080
    assert k.to_json()["savings_total_eur"] == "0.18"


def test_a_uniform_price_is_the_same_for_everyone():
    rb = rulebook_from_data({"price": {"rule": "uniform", "uniform_eur_per_kwh": "0.12"}})
    money = settle_shares(share(ABC, PROD, CONS, rb), rb)
    assert money.bought_nano.tolist() == [0, 36_000_000, 72_000_000] and money.sold_nano[0] == 108_000_000


def solidarity(funded_by: str):  # type: ignore[no-untyped-def]
    rb = rulebook_from_data({"price": {"rule": "solidarity", "uniform_eur_per_kwh": "0.15",
                                       "reduced_eur_per_kwh": "0.05", "funded_by": funded_by},
                             "solidarity": {"members": ["c"]}})
    return settle_shares(share(ABC, PROD, CONS, rb), rb)


def test_solidarity_reductions_are_funded_by_the_named_payers():
    buyers = solidarity("buyers")  # c's reduction: 0.6 kWh x 0.10 = 0.06 EUR, paid by b, the only other buyer
    assert buyers.reduction_nano.tolist() == [0, 0, 60_000_000] and buyers.levy_nano.tolist() == [0, 60_000_000, 0]
    assert buyers.lines_nano() == {("a", "community_sale"): -135_000_000, ("b", "community_share"): 45_000_000,
                                   ("b", "solidarity_levy"): 60_000_000, ("c", "community_share"): 90_000_000,
                                   ("c", "solidarity_reduction"): -60_000_000}
    sellers = solidarity("sellers")
    assert sellers.levy_nano.tolist() == [60_000_000, 0, 0] and sellers.community_fund_nano == 0
    community = solidarity("community")
    assert community.levy_nano.tolist() == [0, 0, 0] and community.community_fund_nano == 60_000_000
    for m in (buyers, sellers, community):
        assert m.conserved()
        assert int(m.net_nano.sum()) == -m.community_fund_nano  # the community account is the other side


def test_cents_are_rounded_once_per_line_and_add_up():
    lines = {("a", "x"): 15_000_000, ("b", "x"): 15_000_000, ("c", "x"): -30_000_000}  # 1.5 + 1.5 - 3 cents
    assert balanced_cents(lines) == {("a", "x"): 2, ("b", "x"): 1, ("c", "x"): -3}
    assert split_int(10, [1, 1, 1]) == [4, 3, 3] and split_int(5, [0, 0]) == [0, 0]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-10**12, 10**12), min_size=1, max_size=30))
def test_balanced_cents_sum_to_the_rounded_total(values):
    lines = {(f"p{i}", "x"): v for i, v in enumerate(values)}
    cents = balanced_cents(lines)
    total = Decimal(sum(values)) / 10**7
    assert sum(cents.values()) == int(total.quantize(Decimal(1), rounding="ROUND_HALF_EVEN"))
    assert all(abs(cents[k] * 10**7 - v) < 2 * 10**7 for k, v in lines.items())


def test_peak_import_ratio_and_gini_edges():
    alloc = share(ABC, np.array([[100, 0, 500], [0, 0, 0], [0, 0, 0]]),
                  np.array([[0, 0, 0], [300, 900, 100], [50, 50, 50]]), default_rulebook())
    assert peak_import(alloc) == (950, 1)  # quarter 1: 950 Wh taken, nothing produced: 3.8 kW
    assert ratio(1, 3) == Decimal("0.3333") and ratio(5, 0) is None
    assert gini([5, 5, 5]) == Decimal("0.0000") and gini([0, 0, 9]) == Decimal("0.6667") and gini([0, 0]) is None
