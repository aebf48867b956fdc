"""The local market: per quarter-hour pay-as-clear clearing of members' offers and bids, without any randomness.

Orders (energy in Wh, prices in micro-euro per kWh):

- an :class:`Offer` sells up to ``wh`` at no less than ``min_ueur_per_kwh``;
- a :class:`Bid` buys up to ``wh`` at no more than ``max_ueur_per_kwh``.

Clearing per quarter, in three steps:

1. **Merit order.** Offers cheapest first, bids dearest first. Ties: the earlier ``submitted_at``
   first, then the smaller participant id, then the smaller ``order_id``. Prices outside the
   market's floor and cap are refused (:class:`MarketError`), never clipped silently.
2. **Volume.** Walk both lists, matching volume while the current bid's price is at least the
   current offer's price. The last matched offer and bid are the marginal ones (possibly partly filled).
3. **Price (pay-as-clear).** Everybody trades at one price: halfway between the marginal offer's
   and the marginal bid's price, rounded down to a whole micro-euro per kWh.

Preferences decide only who delivers to whom among the accepted volumes, never the volume or the
price: buyers in merit order each take their accepted Wh from the accepted sellers in the order the
market settings give (default ``partner``, ``green``, ``local``): first the seller they named as
partner, then green sellers if they asked for green, then sellers in their own grid area if they
asked for local, then any seller, each group in the sellers' merit order.

Money: a trade of ``wh`` at ``price`` moves ``wh x price`` nano-euros from buyer to seller, exactly.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime

from kwartier.community.rules import MarketSettings
from kwartier.money import price_to_micro_rounded


class MarketError(ValueError):
    """An order that the market refuses (a price outside floor/cap, negative energy, a duplicate id)."""


@dataclass(frozen=True)
class Offer:
    """Sell up to ``wh`` Wh in quarter ``interval_start`` at no less than ``min_ueur_per_kwh``."""

    order_id: str
    participant: str
    interval_start: datetime
    wh: int
    min_ueur_per_kwh: int
    submitted_at: datetime
    green: bool = False
    grid_area: str = ""


@dataclass(frozen=True)
class Bid:
    """Buy up to ``wh`` Wh in quarter ``interval_start`` at no more than ``max_ueur_per_kwh``."""

    order_id: str
    participant: str
    interval_start: datetime
    wh: int
    max_ueur_per_kwh: int
    submitted_at: datetime
    partner: str | None = None  # a seller this buyer prefers
    wants_green: bool = False
    wants_local: bool = False
    grid_area: str = ""


@dataclass(frozen=True)
class Trade:
    """``wh`` Wh from ``seller`` (offer ``offer_id``) to ``buyer`` (bid ``bid_id``) at ``price_ueur_per_kwh``."""

    interval_start: datetime
    seller: str
    buyer: str
    offer_id: str
    bid_id: str
    wh: int
    price_ueur_per_kwh: int
    why: str  # partner | green | local | merit: the preference that paired them

    @property
    def amount_nano(self) -> int:
        return self.wh * self.price_ueur_per_kwh


@dataclass(frozen=True)
class Clearing:
    """One quarter's result: the clearing price (None when nothing trades), the volume and the trades."""

    interval_start: datetime
    price_ueur_per_kwh: int | None
    volume_wh: int
    trades: tuple[Trade, ...]


def _offer_key(o: Offer) -> tuple[int, datetime, str, str]:
    return (o.min_ueur_per_kwh, o.submitted_at, o.participant, o.order_id)


def _bid_key(b: Bid) -> tuple[int, datetime, str, str]:
    return (-b.max_ueur_per_kwh, b.submitted_at, b.participant, b.order_id)


def _validate(offers: list[Offer], bids: list[Bid], settings: MarketSettings) -> None:
    floor = price_to_micro_rounded(settings.floor_eur_per_kwh)[0]
    cap = price_to_micro_rounded(settings.cap_eur_per_kwh)[0]
    seen: set[str] = set()
    orders: list[tuple[str, Offer | Bid, int]] = [("offer", o, o.min_ueur_per_kwh) for o in offers]
    orders += [("bid", b, b.max_ueur_per_kwh) for b in bids]
    for kind, order, price in orders:
        if order.order_id in seen:
            raise MarketError(f"{kind} {order.order_id!r}: the order id is used twice")
        seen.add(order.order_id)
        if order.wh < 0:
            raise MarketError(f"{kind} {order.order_id!r} of {order.participant}: {order.wh} Wh is negative")
        if not floor <= price <= cap:
            raise MarketError(f"{kind} {order.order_id!r} of {order.participant}: price {price} uEUR/kWh is outside "
                              f"the market's floor {floor} and cap {cap} uEUR/kWh")


def accepted_volumes(offers: list[Offer], bids: list[Bid]) -> tuple[dict[str, int], dict[str, int], int | None]:
    """Steps 1-3 for one quarter: Wh accepted per offer id and per bid id, and the clearing price (uEUR/kWh)."""
    sells = sorted((o for o in offers if o.wh > 0), key=_offer_key)
    buys = sorted((b for b in bids if b.wh > 0), key=_bid_key)
    got_o: dict[str, int] = {}
    got_b: dict[str, int] = {}
    i = j = 0
    left_o = sells[0].wh if sells else 0
    left_b = buys[0].wh if buys else 0
    last: tuple[Offer, Bid] | None = None
    while i < len(sells) and j < len(buys) and buys[j].max_ueur_per_kwh >= sells[i].min_ueur_per_kwh:
        q = min(left_o, left_b)
        got_o[sells[i].order_id] = got_o.get(sells[i].order_id, 0) + q
        got_b[buys[j].order_id] = got_b.get(buys[j].order_id, 0) + q
        last = (sells[i], buys[j])
        left_o -= q
        left_b -= q
        if left_o == 0:
            i += 1
            left_o = sells[i].wh if i < len(sells) else 0
        if left_b == 0:
            j += 1
            left_b = buys[j].wh if j < len(buys) else 0
    if last is None:
        return {}, {}, None
    return got_o, got_b, (last[0].min_ueur_per_kwh + last[1].max_ueur_per_kwh) // 2


def _seller_groups(bid: Bid, sellers: list[Offer], preferences: list[str]) -> list[tuple[str, list[Offer]]]:
    """The accepted sellers in the order this bid prefers them, each group in merit order."""
    groups: list[tuple[str, list[Offer]]] = []
    for pref in preferences:
        if pref == "partner" and bid.partner:
            groups.append(("partner", [o for o in sellers if o.participant == bid.partner]))
        elif pref == "green" and bid.wants_green:
            groups.append(("green", [o for o in sellers if o.green]))
        elif pref == "local" and bid.wants_local:
            groups.append(("local", [o for o in sellers if o.grid_area == bid.grid_area]))
    groups.append(("merit", sellers))
    return groups


def clear_quarter(interval_start: datetime, offers: list[Offer], bids: list[Bid], settings: MarketSettings
                  ) -> Clearing:
    """Clear one quarter's orders (all for ``interval_start``) pay-as-clear; see the module text for the rules."""
    _validate(offers, bids, settings)
    wrong = [o.order_id for o in offers if o.interval_start != interval_start]
    wrong += [b.order_id for b in bids if b.interval_start != interval_start]
    if wrong:
        raise MarketError(f"orders {', '.join(wrong)} are not for the quarter {interval_start.isoformat()}")
    got_o, got_b, price = accepted_volumes(offers, bids)
    if price is None:
        return Clearing(interval_start, None, 0, ())
    sellers = sorted((o for o in offers if got_o.get(o.order_id)), key=_offer_key)
    left = {o.order_id: got_o[o.order_id] for o in sellers}
    trades: list[Trade] = []
    for bid in sorted((b for b in bids if got_b.get(b.order_id)), key=_bid_key):
        need = got_b[bid.order_id]
        for why, group in _seller_groups(bid, sellers, list(settings.preferences)):
            for o in group:
                q = min(need, left[o.order_id])
                if q <= 0:
                    continue
                trades.append(Trade(interval_start, o.participant, bid.participant, o.order_id, bid.order_id, q,
                                    price, why))
                left[o.order_id] -= q
                need -= q
            if need == 0:
                break
    return Clearing(interval_start, price, sum(got_o.values()), tuple(trades))


def clear(offers: list[Offer], bids: list[Bid], settings: MarketSettings) -> list[Clearing]:
    """Clear every quarter that has orders, in time order."""
    if not settings.enabled:
        raise MarketError("the local market is not enabled in the rulebook (market.enabled = false)")
    by_q: dict[datetime, tuple[list[Offer], list[Bid]]] = {}
    for o in offers:
        by_q.setdefault(o.interval_start, ([], []))[0].append(o)
    for b in bids:
        by_q.setdefault(b.interval_start, ([], []))[1].append(b)
    return [clear_quarter(q, *by_q[q], settings) for q in sorted(by_q)]


def payments_nano(clearings: list[Clearing]) -> dict[str, int]:
    """Net nano-euros per participant over all trades: positive = pays, negative = receives; sums to 0."""
    out: dict[str, int] = {}
    for c in clearings:
        for t in c.trades:
            out[t.buyer] = out.get(t.buyer, 0) + t.amount_nano
            out[t.seller] = out.get(t.seller, 0) - t.amount_nano
    return dict(sorted(out.items()))


def clearing_digest(clearings: list[Clearing]) -> str:
    """SHA-256 of the clearings (sorted-key JSON): the same orders always give the same digest."""
    doc = [{"q": c.interval_start.isoformat(), "price": c.price_ueur_per_kwh, "volume": c.volume_wh,
            "trades": [[t.seller, t.buyer, t.offer_id, t.bid_id, t.wh, t.why] for t in c.trades]} for c in clearings]
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
