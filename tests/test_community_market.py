"""The local market: pay-as-clear by hand, the tie rule, preferences, refusals, and properties."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kwartier.community.market import (
    Bid,
    MarketError,
    Offer,
    clear,
    clear_quarter,
    clearing_digest,
    payments_nano,
)
from kwartier.community.rules import MarketSettings

Q = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)
T0 = datetime(2026, 5, 31, 12, 0, tzinfo=UTC)
ON = MarketSettings(enabled=True)


def offer(oid: str, who: str, wh: int, price: int, minutes: int = 0, **kw: object) -> Offer:
    return Offer(oid, who, Q, wh, price, T0 + timedelta(minutes=minutes), **kw)  # type: ignore[arg-type]


def bid(oid: str, who: str, wh: int, price: int, minutes: int = 0, **kw: object) -> Bid:
    return Bid(oid, who, Q, wh, price, T0 + timedelta(minutes=minutes), **kw)  # type: ignore[arg-type]


def test_pay_as_clear_by_hand():
    # Offers: a 1000 Wh >= 0.10, b 500 Wh >= 0.15. Bids: x 800 Wh <= 0.20, y 600 Wh <= 0.12 EUR/kWh.
    # a fills x (800) and 200 of y; b (0.15) is above y (0.12): stop. Marginal pair (a, y): (0.10+0.12)/2.
    c = clear_quarter(Q, [offer("o1", "a", 1000, 100_000), offer("o2", "b", 500, 150_000)],
                      [bid("b1", "x", 800, 200_000), bid("b2", "y", 600, 120_000)], ON)
    assert c.price_ueur_per_kwh == 110_000 and c.volume_wh == 1000
    assert [(t.seller, t.buyer, t.wh) for t in c.trades] == [("a", "x", 800), ("a", "y", 200)]
    assert c.trades[0].amount_nano == 88_000_000  # 0.8 kWh x 0.11 EUR/kWh = 0.088 EUR
    assert payments_nano([c]) == {"a": -110_000_000, "x": 88_000_000, "y": 22_000_000}


def test_nothing_trades_when_the_best_bid_is_below_the_cheapest_offer():
    c = clear_quarter(Q, [offer("o1", "a", 1000, 200_000)], [bid("b1", "x", 800, 100_000)], ON)
    assert c.price_ueur_per_kwh is None and c.volume_wh == 0 and c.trades == ()


def test_ties_go_to_the_earlier_order_then_the_smaller_id():
    offers = [offer("o1", "b", 500, 100_000, minutes=5), offer("o2", "c", 500, 100_000, minutes=1),
              offer("o3", "a", 500, 100_000, minutes=5)]
    c = clear_quarter(Q, offers, [bid("b1", "x", 700, 100_000)], ON)
    # c submitted first; a and b at the same minute: a (smaller id) before b.
    assert [(t.seller, t.wh) for t in c.trades] == [("c", 500), ("a", 200)]


def test_preferences_pair_buyers_with_their_partner_then_green_sellers():
    offers = [offer("o1", "a", 600, 50_000), offer("o2", "g", 600, 60_000, green=True),
              offer("o3", "p", 600, 70_000)]
    bids = [bid("b1", "x", 500, 300_000, partner="p"), bid("b2", "y", 500, 300_000, minutes=1, wants_green=True),
            bid("b3", "z", 500, 300_000, minutes=2)]
    c = clear_quarter(Q, offers, bids, ON)
    assert c.volume_wh == 1500 and c.price_ueur_per_kwh == (70_000 + 300_000) // 2
    # Accepted: a 600, g 600, p 300 (the dearest, partly). x takes p's 300 first, the rest in merit order.
    assert [(t.buyer, t.seller, t.wh, t.why) for t in c.trades] == [
        ("x", "p", 300, "partner"), ("x", "a", 200, "merit"), ("y", "g", 500, "green"),
        ("z", "a", 400, "merit"), ("z", "g", 100, "merit")]


def test_orders_outside_the_floor_and_cap_are_refused():
    with pytest.raises(MarketError, match=r"offer 'o1' of a: price 3000000 uEUR/kWh is outside"):
        clear_quarter(Q, [offer("o1", "a", 1, 3_000_000)], [], ON)
    with pytest.raises(MarketError, match="not enabled"):
        clear([offer("o1", "a", 1, 1)], [], MarketSettings())


@st.composite
def book(draw):  # type: ignore[no-untyped-def]
    price = st.integers(-100_000, 500_000)
    n_o, n_b = draw(st.integers(0, 6)), draw(st.integers(0, 6))
    offers = [offer(f"o{i}", f"s{draw(st.integers(0, 3))}", draw(st.integers(0, 2000)), draw(price),
                    draw(st.integers(0, 3)), green=draw(st.booleans())) for i in range(n_o)]
    bids = [bid(f"b{i}", f"d{draw(st.integers(0, 3))}", draw(st.integers(0, 2000)), draw(price),
                draw(st.integers(0, 3)), partner=draw(st.sampled_from([None, "s0", "s1"])),
                wants_green=draw(st.booleans())) for i in range(n_b)]
    return offers, bids, draw(st.randoms())


@settings(max_examples=150, deadline=None)
@given(book())
def test_clearing_is_fair_conserving_and_independent_of_input_order(case):
    offers, bids, rnd = case
    c = clear_quarter(Q, offers, bids, ON)
    sold = {o.order_id: 0 for o in offers}
    bought = {b.order_id: 0 for b in bids}
    for t in c.trades:
        sold[t.offer_id] += t.wh
        bought[t.bid_id] += t.wh
    assert all(sold[o.order_id] <= o.wh for o in offers) and all(bought[b.order_id] <= b.wh for b in bids)
    assert sum(t.wh for t in c.trades) == c.volume_wh
    for o in offers:  # nobody trades against its own limit
        assert not sold[o.order_id] or o.min_ueur_per_kwh <= c.price_ueur_per_kwh
    for b in bids:
        assert not bought[b.order_id] or b.max_ueur_per_kwh >= c.price_ueur_per_kwh
    assert sum(payments_nano([c]).values()) == 0
    shuffled_o, shuffled_b = offers[:], bids[:]
    rnd.shuffle(shuffled_o)
    rnd.shuffle(shuffled_b)
    assert clearing_digest([clear_quarter(Q, shuffled_o, shuffled_b, ON)]) == clearing_digest([c])
