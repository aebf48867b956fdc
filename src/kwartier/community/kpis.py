"""Community KPIs: self-consumption, self-sufficiency, peak import at the transformer, savings and their spread.

- self-consumption = shared / production: the share of the members' export used inside the community;
- self-sufficiency = shared / consumption: the share of the members' import covered by the community;
- peak import at the transformer: the largest quarter of ``sum(import) - sum(export)`` over all members
  (Wh per quarter, and the average kW over that quarter = Wh x 4 / 1000), assuming one transformer;
- saving against no community, per member (nano-euros): without the community a member would have
  bought its community kWh from its supplier at the supply price and fed its shared kWh in at the
  feed-in price; the saving is that minus what it pays (plus what it receives) for them now;
- spread of the benefit: the Gini coefficient of the savings (0 = everybody saves the same, towards
  1 = one member has all of it), over members whose saving is counted (negatives count as 0).

Ratios are exact decimals rounded half-even to 4 places; None when the denominator is 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction

import numpy as np

from kwartier.community.pricing import ShareSettlement
from kwartier.community.sharing import Allocation

PLACES = Decimal("0.0001")


def ratio(numerator: int, denominator: int) -> Decimal | None:
    """``numerator / denominator`` rounded half-even to 4 places; None when the denominator is 0."""
    if denominator == 0:
        return None
    return (Decimal(numerator) / Decimal(denominator)).quantize(PLACES, rounding=ROUND_HALF_EVEN)


def peak_import(alloc: Allocation) -> tuple[int, int | None]:
    """The largest net import of the community in a quarter (Wh, >= 0) and that quarter's index (None: never)."""
    net = alloc.consumption_wh.sum(axis=0) - alloc.production_wh.sum(axis=0)
    if net.size == 0 or net.max() <= 0:
        return 0, None
    q = int(np.argmax(net))  # the first quarter with the largest value
    return int(net[q]), q


def savings_nano(alloc: Allocation, money: ShareSettlement, supply_ueur_per_kwh: np.ndarray,
                 feed_in_ueur_per_kwh: np.ndarray) -> np.ndarray:
    """Per member, nano-euros saved against no community (negative: it lost)."""
    without = alloc.community_wh @ np.asarray(supply_ueur_per_kwh, dtype=np.int64) \
        - alloc.shared_out_wh @ np.asarray(feed_in_ueur_per_kwh, dtype=np.int64)
    return (without - money.net_nano).astype(np.int64)


def gini(values: list[int] | np.ndarray) -> Decimal | None:
    """The Gini coefficient of ``values`` (negatives count as 0), exact, rounded to 4 places; None if all are 0."""
    xs = sorted(max(int(v), 0) for v in values)
    n, total = len(xs), sum(xs)
    if n == 0 or total == 0:
        return None
    weighted = sum((i + 1) * x for i, x in enumerate(xs))
    g = Fraction(2 * weighted, n * total) - Fraction(n + 1, n)
    return (Decimal(g.numerator) / Decimal(g.denominator)).quantize(PLACES, rounding=ROUND_HALF_EVEN)


@dataclass(frozen=True)
class Kpis:
    """The community's KPIs for one period."""

    production_wh: int
    consumption_wh: int
    shared_wh: int
    self_consumption: Decimal | None
    self_sufficiency: Decimal | None
    peak_import_wh: int
    peak_quarter: int | None
    savings_nano: tuple[int, ...]
    savings_gini: Decimal | None

    @property
    def peak_import_kw(self) -> Decimal:
        """The peak quarter's average power (kW): Wh per quarter x 4 / 1000."""
        return Decimal(self.peak_import_wh * 4) / 1000

    def to_json(self) -> dict[str, object]:
        def text(v: Decimal | None) -> str | None:
            return None if v is None else str(v)

        return {"production_kwh": str(Decimal(self.production_wh) / 1000),
                "consumption_kwh": str(Decimal(self.consumption_wh) / 1000),
                "shared_kwh": str(Decimal(self.shared_wh) / 1000),
                "self_consumption": text(self.self_consumption), "self_sufficiency": text(self.self_sufficiency),
                "peak_import_kw": str(self.peak_import_kw), "savings_gini": text(self.savings_gini),
                "savings_total_eur": str(Decimal(sum(self.savings_nano)).scaleb(-9).quantize(Decimal("0.01")))}


def kpis(alloc: Allocation, money: ShareSettlement, supply_ueur_per_kwh: np.ndarray,
         feed_in_ueur_per_kwh: np.ndarray) -> Kpis:
    """All KPIs of one allocation and its settlement (reference prices per quarter, uEUR/kWh)."""
    prod = int(alloc.production_wh.sum())
    cons = int(alloc.consumption_wh.sum())
    shared = int(alloc.community_wh.sum())
    peak, q = peak_import(alloc)
    saved = savings_nano(alloc, money, supply_ueur_per_kwh, feed_in_ueur_per_kwh)
    return Kpis(prod, cons, shared, ratio(shared, prod), ratio(shared, cons), peak, q,
                tuple(int(v) for v in saved), gini(saved))
