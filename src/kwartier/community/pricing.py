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
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

import numpy as np

from kwartier.community.rules import PriceRule, Rulebook
from kwartier.community.sharing import Allocation
from kwartier.money import NANO_PER_CENT, price_to_micro_rounded

#: Ledger component ids of the lines of a member's community statement.
COMPONENTS = ("community_share", "community_sale", "solidarity_reduction", "solidarity_levy")
#: Invoice labels of those lines per locale.
LABELS = {
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
            for comp, value in zip(COMPONENTS, (self.bought_nano[i], -self.sold_nano[i], -self.reduction_nano[i],
                                                self.levy_nano[i]), strict=True):
                if int(value):
                    out[(p, comp)] = int(value)
        return out

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
