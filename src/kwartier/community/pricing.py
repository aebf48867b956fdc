"""Price rules for shared kWh, and what each member pays or receives for them, exact to the nano-euro.

Prices are integer micro-euros per kWh per quarter; energy integer Wh; ``Wh x uEUR/kWh = nEUR``.

- ``mid_market``: the community price is halfway between the reference feed-in and supply prices of
  the quarter, rounded down to a whole micro-euro per kWh.
- ``uniform``: one price for every member and quarter (``uniform_eur_per_kwh``).
- ``solidarity``: every member trades at the base price (the uniform price when given, else
  mid-market); the energy-poor members then get a *reduction* of ``base - reduced`` per kWh they
  took (never below 0: when the base is already lower, they pay the base). The reductions form the
  solidarity fund, paid by ``funded_by``: ``buyers`` (the other members, in proportion to the
  community kWh they took), ``sellers`` (in proportion to the kWh they gave) or ``community`` (the
  community's own account). Each payer's levy is a separate line, so everyone sees who pays what.
  If nobody qualifies to pay (e.g. no other buyers), the fund falls back to sellers, then to the community.

Conservation, exact in nano-euros: what buyers pay for shared kWh = what sellers receive for them;
levies paid = reductions received - the community's contribution.

Against the suppliers (French collective self-consumption): the settlement bills each member's full
import and pays its full export at its plan's prices. The shared kWh are then settled by
*differential* lines with the member's supplier: a buyer is credited ``e(q) x (S(q) - C(q))`` for
the ``e(q)`` Wh it took from the community (``S``: its supplier's per-quarter price of a kWh taken,
``C``: the community price), a seller is paid ``f(q) x (C(q) - F(q))`` for the ``f(q)`` Wh it gave
(``F``: its supplier's per-quarter feed-in price). So a member pays its supplier for the complement
only, gets feed-in only for the surplus, and trades the shared kWh at ``C``; grid and tax components
stay on the full import. The reference prices of the mid-market rule are the plans' own, weighted
by the shared energy of the quarter (:func:`shared_reference`); the rulebook's constant reference
prices are only the fallback when the plans cannot price a quarter.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal

import numpy as np
import polars as pl

from kwartier.community.rules import PriceRule, Rulebook
from kwartier.community.sharing import Allocation
from kwartier.money import NANO_PER_CENT, price_to_micro_rounded
from kwartier.tariffs.plan import LoadedPlan

#: Ledger component ids of the differential lines posted against a member's supplier.
SUPPLIER_COMPONENTS = ("shared_supply", "shared_feed_in")
#: Ledger component ids of a member's lines with the community's account (shared kWh at the base price, as
#: posted before the differential lines existed, and the solidarity lines).
COMMUNITY_COMPONENTS = ("community_share", "community_sale", "solidarity_reduction", "solidarity_levy")
#: Every component id a bill may meet for shared energy.
COMPONENTS = SUPPLIER_COMPONENTS + COMMUNITY_COMPONENTS
#: Invoice labels of those lines per locale.
LABELS = {
    "shared_supply": {"en": "Shared energy from the community: community price instead of the supply price",
                      "nl": "Gedeelde energie uit de gemeenschap: gemeenschapsprijs in plaats van de leveringsprijs",
                      "fr": "Énergie partagée reçue : prix de la communauté au lieu du prix de fourniture"},
    "shared_feed_in": {"en": "Energy shared with the community: community price instead of the feed-in compensation",
                       "nl": "Energie gedeeld met de gemeenschap: gemeenschapsprijs in plaats van de "
                             "terugleververgoeding",
                       "fr": "Énergie partagée cédée : prix de la communauté au lieu de la rémunération de "
                             "l'injection"},
    "community_share": {"en": "Shared energy taken from the community", "nl": "Gedeelde energie uit de gemeenschap",
                        "fr": "Énergie partagée reçue de la communauté"},
    "community_sale": {"en": "Energy shared with the community", "nl": "Energie gedeeld met de gemeenschap",
                       "fr": "Énergie partagée avec la communauté"},
    "solidarity_reduction": {"en": "Solidarity reduction", "nl": "Solidariteitskorting",
                             "fr": "Réduction de solidarité"},
    "solidarity_levy": {"en": "Solidarity contribution", "nl": "Solidariteitsbijdrage",
                        "fr": "Contribution de solidarité"},
}


def component_label(component: str, locale: str) -> str:
    """The invoice label of a community line in ``locale`` (nl, en, fr; English otherwise)."""
    texts = LABELS.get(component, {})
    return texts.get(locale, texts.get("en", component))


def _per_quarter(value: np.ndarray | int, quarters: int) -> np.ndarray:
    arr = np.asarray(value, dtype=np.int64)
    return np.full(quarters, int(arr), dtype=np.int64) if arr.ndim == 0 else arr


def reference_prices(rule: PriceRule, quarters: int, supply_ueur_per_kwh: np.ndarray | None = None,
                     feed_in_ueur_per_kwh: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Supply and feed-in reference prices per quarter (uEUR/kWh): the arrays given, else the rule's constants."""
    supply = supply_ueur_per_kwh if supply_ueur_per_kwh is not None else \
        price_to_micro_rounded(rule.supply_eur_per_kwh)[0]
    feed_in = feed_in_ueur_per_kwh if feed_in_ueur_per_kwh is not None else \
        price_to_micro_rounded(rule.feed_in_eur_per_kwh)[0]
    return _per_quarter(supply, quarters), _per_quarter(feed_in, quarters)


def community_price_ueur(rule: PriceRule, supply_ueur_per_kwh: np.ndarray, feed_in_ueur_per_kwh: np.ndarray
                         ) -> np.ndarray:
    """The base price of a shared kWh per quarter (uEUR/kWh) under ``rule``."""
    if rule.rule != "mid_market" and rule.uniform_eur_per_kwh is not None:
        return np.full(len(supply_ueur_per_kwh), price_to_micro_rounded(rule.uniform_eur_per_kwh)[0], dtype=np.int64)
    return (np.asarray(supply_ueur_per_kwh, dtype=np.int64) + np.asarray(feed_in_ueur_per_kwh, dtype=np.int64)) // 2


def split_int(total: int, weights: list[int]) -> list[int]:
    """``total`` (>= 0, Python int: no overflow) split in proportion to ``weights`` (>= 0) by largest remainder,
    ties to the earlier weight; all 0 when the weights sum to 0."""
    wsum = sum(weights)
    if wsum <= 0 or total == 0:
        return [0] * len(weights)
    parts = [total * w // wsum for w in weights]
    rems = [total * w % wsum for w in weights]
    for i in sorted(range(len(weights)), key=lambda k: (-rems[k], k))[: total - sum(parts)]:
        parts[i] += 1
    return parts


@dataclass(frozen=True, eq=False)
class ShareSettlement:
    """Per member (in the allocation's order), nano-euros: bought and sold at the base price, solidarity lines."""

    participants: tuple[str, ...]
    bought_nano: np.ndarray  # paid for the community kWh taken, at the base price
    sold_nano: np.ndarray  # received for the kWh given to the community, at the base price
    reduction_nano: np.ndarray  # solidarity reduction received by energy-poor members
    levy_nano: np.ndarray  # paid into the solidarity fund
    community_fund_nano: int  # paid into the fund by the community's own account
    funded_by: str

    @property
    def net_nano(self) -> np.ndarray:
        """Per member: positive = pays the community account, negative = receives from it."""
        return self.bought_nano - self.sold_nano - self.reduction_nano + self.levy_nano

    def lines_nano(self) -> dict[tuple[str, str], int]:
        """Non-zero amounts per (participant, component): positive = the member pays."""
        out: dict[tuple[str, str], int] = {}
        for i, p in enumerate(self.participants):
            for comp, value in zip(COMMUNITY_COMPONENTS, (self.bought_nano[i], -self.sold_nano[i],
                                                          -self.reduction_nano[i], self.levy_nano[i]), strict=True):
                if int(value):
                    out[(p, comp)] = int(value)
        return out

    def solidarity_lines_nano(self) -> dict[tuple[str, str], int]:
        """The solidarity lines of :meth:`lines_nano` only: what goes through the community's account."""
        return {k: v for k, v in self.lines_nano().items() if k[1].startswith("solidarity_")}

    def conserved(self) -> bool:
        """Buyers pay what sellers receive; the fund's payers pay what the energy-poor members are reduced."""
        return (int(self.bought_nano.sum()) == int(self.sold_nano.sum())
                and int(self.levy_nano.sum()) + self.community_fund_nano == int(self.reduction_nano.sum()))


def settle_shares(alloc: Allocation, rules: Rulebook, supply_ueur_per_kwh: np.ndarray | None = None,
                  feed_in_ueur_per_kwh: np.ndarray | None = None) -> ShareSettlement:
    """What each member pays and receives for the shared energy of ``alloc`` under ``rules.price``."""
    rule = rules.price
    nq = alloc.community_wh.shape[1]
    supply, feed_in = reference_prices(rule, nq, supply_ueur_per_kwh, feed_in_ueur_per_kwh)
    base = community_price_ueur(rule, supply, feed_in)
    bought = alloc.community_wh @ base  # Wh x uEUR/kWh = nEUR, summed per member
    sold = alloc.shared_out_wh @ base
    m = len(alloc.participants)
    reduction = np.zeros(m, dtype=np.int64)
    levy = [0] * m
    fund_from_community = 0
    funded_by = rule.funded_by
    if rule.rule == "solidarity" and rule.reduced_eur_per_kwh is not None:
        reduced = price_to_micro_rounded(rule.reduced_eur_per_kwh)[0]
        gap = np.maximum(base - reduced, 0)
        poor = np.array([p in set(rules.solidarity.members) for p in alloc.participants])
        reduction = np.where(poor, alloc.community_wh @ gap, 0).astype(np.int64)
        fund = int(reduction.sum())
        took = [0 if poor[i] else int(v) for i, v in enumerate(alloc.community_wh.sum(axis=1))]
        gave = [int(v) for v in alloc.shared_out_wh.sum(axis=1)]
        if funded_by == "buyers" and sum(took) == 0:
            funded_by = "sellers"
        if funded_by == "sellers" and sum(gave) == 0:
            funded_by = "community"
        if funded_by == "community":
            fund_from_community = fund
        else:
            levy = split_int(fund, took if funded_by == "buyers" else gave)
    return ShareSettlement(alloc.participants, bought.astype(np.int64), sold.astype(np.int64), reduction,
                           np.array(levy, dtype=np.int64), fund_from_community, funded_by)


def balanced_cents(lines_nano: dict[tuple[str, str], int]) -> dict[tuple[str, str], int]:
    """Each line rounded once to cents so that the lines' cents add up to the half-even cents of their total.

    Every line gets its amount rounded down to a cent; the cents still missing to reach the rounded
    total go one each to the lines with the largest leftover fractions (ties: the first key in sorted
    order). So the community account, which is the other side of all lines, is off by less than a cent
    from the exact total, and by exactly 0 when the exact total is 0.
    """
    keys = sorted(lines_nano)
    floor = {k: lines_nano[k] // NANO_PER_CENT for k in keys}
    total = Decimal(sum(lines_nano.values())) / NANO_PER_CENT
    want = int(total.to_integral_value(rounding=ROUND_HALF_EVEN))
    extra = want - sum(floor.values())
    for k in sorted(keys, key=lambda k: (-(lines_nano[k] - floor[k] * NANO_PER_CENT), k))[:max(extra, 0)]:
        floor[k] += 1
    return floor


# --- the differential with the suppliers --------------------------------------------------------------


class PricingError(ValueError):
    """A plan that cannot price shared energy: a price not fixed, mixed VAT, a component it cannot take apart."""


@dataclass(frozen=True, eq=False)
class SupplierPrices:
    """One plan's supplier prices per quarter (uEUR/kWh) and whether VAT applies to each side.

    ``supply``: the sum of the plan's supplier-payee ``import_kwh`` components (market, markup, ...),
    what the supplier charges for a kWh taken. ``feed_in``: what it pays for a kWh fed in: its
    ``export_kwh`` components negated, plus, under annual netting, its netted supplier components
    (a fed-in kWh is set off against a taken one at that price).
    """

    plan: str
    supply_ueur_per_kwh: np.ndarray
    feed_in_ueur_per_kwh: np.ndarray
    supply_vat: bool
    feed_in_vat: bool


def _supplier_parts(plan: LoadedPlan) -> tuple[list[tuple[str, int]], list[tuple[str, int]], set[bool], set[bool]]:
    """The (component id, sign) summed into the supply and the feed-in price, and their VAT flags."""
    supply: list[tuple[str, int]] = []
    feed_in: list[tuple[str, int]] = []
    supply_vat: set[bool] = set()
    feed_vat: set[bool] = set()
    for comp in plan.components:
        spec = comp.spec
        if spec.payee != "supplier" or spec.basis in ("per_day", "per_month", "per_year"):
            continue
        if spec.basis == "percent" or comp.price is None:
            raise PricingError(f"{plan.where}: component {spec.id!r} (a supplier's {spec.basis} "
                               f"{'with bands' if comp.price is None else 'rate'}) has no price per kWh of a "
                               "quarter, so shared energy cannot be taken off it")
        if spec.basis == "import_kwh":
            supply.append((spec.id, 1))
            supply_vat.add(spec.vat)
            if spec.netted and plan.plan.netting == "annual":
                feed_in.append((spec.id, 1))
                feed_vat.add(spec.vat)
        else:
            feed_in.append((spec.id, -1))
            feed_vat.add(spec.vat)
    for side, flags in (("supply", supply_vat), ("feed-in", feed_vat)):
        if len(flags) > 1:
            raise PricingError(f"{plan.where}: the supplier's {side} components mix VAT and no VAT; shared energy "
                               "is one line per side, so they must agree")
    return supply, feed_in, supply_vat, feed_vat


def supplier_prices(plan: LoadedPlan, market: pl.DataFrame, start: datetime, stop: datetime,
                    plan_sha: str = "") -> SupplierPrices:
    """The plan's fixed supplier prices for every quarter of ``[start, stop)`` (see :class:`SupplierPrices`).

    ``market``: stored fixed day-ahead prices with ``known_at`` (any that became known later than
    ``stop`` count too: every stored price is final). Prices come from
    :func:`kwartier.tariffs.lifecycle.prices`, the same values the settlement uses; a component
    whose price is not fixed for some quarter raises :class:`PricingError` naming the first one.
    """
    from kwartier.tariffs.compose import MissingData
    from kwartier.tariffs.lifecycle import prices
    from kwartier.timegrid import interval_starts

    supply_parts, feed_parts, supply_vat, feed_vat = _supplier_parts(plan)
    nq = interval_starts(start, stop).len()
    supply = np.zeros(nq, np.int64)
    feed_in = np.zeros(nq, np.int64)
    if not supply_parts and not feed_parts:
        return SupplierPrices(plan_sha or plan.id, supply, feed_in, False, False)
    latest = market["known_at"].max() if market.height else None
    known_at = max(stop, latest) if isinstance(latest, datetime) else stop
    try:
        frame = prices(plan, market, start, stop, known_at)
    except MissingData as exc:
        raise PricingError(f"plan {plan.id}: {exc}") from None
    values: dict[str, np.ndarray] = {}
    for cid in sorted({c for c, _ in supply_parts + feed_parts}):
        rows = frame.filter(pl.col("component") == cid).sort("interval_start")
        late = rows.filter(pl.col("status") != "fixed")
        if late.height:
            raise PricingError(f"plan {plan.id}: component {cid!r} has no fixed price for the quarter starting "
                               f"{late['interval_start'][0]:%Y-%m-%d %H:%M}Z (import the day-ahead prices)")
        values[cid] = rows["price_ueur_per_kwh"].to_numpy().astype(np.int64)
    for cid, sign in supply_parts:
        supply += sign * values[cid]
    for cid, sign in feed_parts:
        feed_in += sign * values[cid]
    return SupplierPrices(plan_sha or plan.id, supply, feed_in, bool(supply_vat and supply_vat.pop()),
                          bool(feed_vat and feed_vat.pop()))


def shared_reference(energy_wh: np.ndarray, price_ueur_per_kwh: np.ndarray, fallback_ueur_per_kwh: np.ndarray
                     ) -> np.ndarray:
    """Per quarter (uEUR/kWh): the members' prices weighted by their shared energy, rounded down.

    ``energy_wh`` and ``price_ueur_per_kwh`` are members x quarters; a quarter in which nothing is
    shared takes ``fallback_ueur_per_kwh`` (it moves no money). When every member has the same price,
    that price is the reference exactly.
    """
    energy = np.asarray(energy_wh, dtype=np.int64)
    total = energy.sum(axis=0)
    weighted = (energy * np.asarray(price_ueur_per_kwh, dtype=np.int64)).sum(axis=0)
    out = np.asarray(fallback_ueur_per_kwh, dtype=np.int64).copy()
    some = total > 0
    out[some] = weighted[some] // total[some]
    return out


@dataclass(frozen=True, eq=False)
class SupplierDifferential:
    """Per member (allocation order) x tariff: the lines with the member's supplier, nano-euros and Wh.

    Amounts are what the member pays its supplier (negative: the supplier pays or credits it).
    ``take_nano = sum e(q) x (C(q) - S(q))`` over the quarters the member was under that tariff,
    ``give_nano = sum f(q) x (F(q) - C(q))``; ``take_wh``/``give_wh`` the shared energy they cover.
    """

    participants: tuple[str, ...]
    take_nano: np.ndarray
    give_nano: np.ndarray
    take_wh: np.ndarray
    give_wh: np.ndarray

    @property
    def net_nano(self) -> np.ndarray:
        """Per member: what it pays its supplier(s) over the differential lines (negative: it is paid)."""
        return (self.take_nano.sum(axis=1) + self.give_nano.sum(axis=1)).astype(np.int64)


def supplier_differential(alloc: Allocation, base_ueur_per_kwh: np.ndarray, supply_ueur_per_kwh: np.ndarray,
                          feed_in_ueur_per_kwh: np.ndarray, tariff: np.ndarray, tariffs: int) -> SupplierDifferential:
    """The differential lines of ``alloc`` (see the module text).

    ``base_ueur_per_kwh``: the community price per quarter; ``supply``/``feed_in``: S and F per member
    x quarter; ``tariff``: per member x quarter the index (0 .. tariffs - 1) of the tariff in force,
    -1 where none is (energy shared there is left out: the caller refuses to post such a period).
    """
    m = len(alloc.participants)
    take = np.zeros((m, tariffs), np.int64)
    give = np.zeros((m, tariffs), np.int64)
    take_wh = np.zeros((m, tariffs), np.int64)
    give_wh = np.zeros((m, tariffs), np.int64)
    if m == 0 or tariffs == 0 or alloc.community_wh.shape[1] == 0:
        return SupplierDifferential(alloc.participants, take, give, take_wh, give_wh)
    base = np.asarray(base_ueur_per_kwh, dtype=np.int64)[None, :]
    tariff = np.asarray(tariff, dtype=np.int64)
    per_quarter = (alloc.community_wh * (base - np.asarray(supply_ueur_per_kwh, dtype=np.int64)),
                   alloc.shared_out_wh * (np.asarray(feed_in_ueur_per_kwh, dtype=np.int64) - base),
                   alloc.community_wh, alloc.shared_out_wh)
    # Most members keep one tariff all period: their row sums go to that tariff in one pass.
    single = (tariff == tariff[:, :1]).all(axis=1) & (tariff[:, 0] >= 0)
    rows = np.nonzero(single)[0]
    mixed = np.nonzero(~single)[0]
    for out, values in zip((take, give, take_wh, give_wh), per_quarter, strict=True):
        out[rows, tariff[rows, 0]] = values[rows].sum(axis=1)
        for t in range(tariffs) if mixed.size else ():
            out[mixed, t] = np.where(tariff[mixed] == t, values[mixed], 0).sum(axis=1)
    return SupplierDifferential(alloc.participants, take, give, take_wh, give_wh)


def member_savings_nano(money: ShareSettlement, differential: SupplierDifferential) -> np.ndarray:
    """Per member, nano-euros saved against no community (excl. VAT; negative: it lost).

    Without the community a member pays only its settlement; with it, the differential lines and the
    solidarity lines come on top. The saving is minus those, exactly what the posted lines move
    before their rounding to cents.
    """
    return (-differential.net_nano + money.reduction_nano - money.levy_nano).astype(np.int64)
