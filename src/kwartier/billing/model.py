"""The invoice as data: what every renderer (HTML, PDF, Factur-X CII, UBL) reads. Money in cents.

An :class:`Invoice` is final once it has a number: it is never edited. A correction is a
``credit_note`` that references the invoice it cancels (EN 16931 BG-3), followed by a corrected
``invoice``, or a ``debit_note`` for an amount still due.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Literal

Kind = Literal["invoice", "credit_note", "debit_note"]
#: EN 16931 VAT category codes used here: S standard rate, Z zero rated, E exempt.
VatCategory = Literal["S", "Z", "E"]
#: UN/ECE Recommendation 20 unit codes for the units of the plans.
UNIT_CODES = {"kWh": "KWH", "day": "DAY", "month": "MON", "year": "ANN", "%": "P1"}


@dataclass(frozen=True)
class Address:
    """A postal address; EN 16931 requires at least the country code for seller and buyer."""

    country: str = "NL"
    line1: str = ""
    city: str = ""
    postcode: str = ""


@dataclass(frozen=True)
class Seller:
    id: str
    name: str
    vat_id: str | None
    address: Address = field(default_factory=Address)
    iban: str | None = None


@dataclass(frozen=True)
class Buyer:
    id: str
    name: str
    email: str
    locale: str
    address: Address = field(default_factory=Address)


@dataclass(frozen=True)
class InvoiceLine:
    """One specification line: a plan component for one meter over the period.

    ``section`` is who the money is for (supplier, grid, tax, aggregator, community): in the Dutch
    model the supplier also bills the grid operator's and the tax lines, shown as separate sections.
    ``unit_price`` is the average over the period (amount / quantity), for a person to check;
    ``inputs_hash`` is the SHA-256 of the settlement inputs behind the line (readings, prices, plan).
    """

    line_id: str
    section: str
    component: str
    label: str
    meter: str | None
    quantity: Decimal
    unit: str
    unit_price: Decimal | None
    amount_cents: int
    vat_category: VatCategory
    vat_rate: Decimal
    inputs_hash: str


@dataclass(frozen=True)
class VatBreakdown:
    category: VatCategory
    rate: Decimal
    base_cents: int
    vat_cents: int


@dataclass(frozen=True)
class Invoice:
    number: str
    kind: Kind
    issue_date: date
    due_date: date
    period: str  # YYYY-MM
    period_start: date
    period_end: date  # exclusive (the XML formats say the last day, inclusive)
    seller: Seller
    buyer: Buyer
    connections: tuple[str, ...]
    product: str
    lines: tuple[InvoiceLine, ...]
    vat: tuple[VatBreakdown, ...]
    payment_reference: str
    references: str | None = None  # the invoice a credit or debit note corrects
    currency: str = "EUR"
    note: str = ""

    @property
    def net_total_cents(self) -> int:
        return sum(ln.amount_cents for ln in self.lines)

    @property
    def vat_total_cents(self) -> int:
        return sum(v.vat_cents for v in self.vat)

    @property
    def total_cents(self) -> int:
        return self.net_total_cents + self.vat_total_cents


@dataclass(frozen=True)
class Informative:
    """The teaching part of the bill (the pilot's "informative bill"), for HTML and PDF only."""

    import_kwh: Decimal
    export_kwh: Decimal
    average_eur_per_kwh: Decimal | None  # what the participant paid per kWh taken, all in
    community_average_eur_per_kwh: Decimal | None
    percentile: int | None  # 0..100: share of community members who paid more per kWh
    reference_plan: str | None
    reference_total_cents: int | None  # the same period under a non-dynamic plan
    no_netting_total_cents: int | None  # the same period without net metering (2027 rules)
    daily_cost_cents: tuple[tuple[date, int], ...] = ()  # per local day, for the small chart
