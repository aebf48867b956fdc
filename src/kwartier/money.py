"""Exact money: integer nano-euros, prices in micro-euros per kWh, half-even rounding to cents.

Units:
- an *amount* is an ``int`` of nano-euros (1 EUR = 10**9 nEUR);
- a *price* is an ``int`` of micro-euros per kWh (1 EUR/kWh = 10**6 uEUR/kWh);
- energy is an ``int`` of watt-hours.

``Wh x uEUR/kWh = nEUR`` exactly (1 Wh = 10**-3 kWh, 1 uEUR = 10**3 nEUR), so sums over
intervals never round. Rounding to cents happens once, on an invoice line, half-even. VAT is
computed per rate on the line total (EN 16931), never per interval.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

NANO_PER_EUR = 10**9
NANO_PER_CENT = 10**7
MICRO_PER_EUR = 10**6


class MoneyError(ValueError):
    """A value that cannot be an exact amount or price (too many decimals, not a number, ...)."""


def _decimal(value: Decimal | str | int, what: str) -> Decimal:
    try:
        d = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except InvalidOperation:
        raise MoneyError(f"{what} {value!r} is not a number") from None
    if not d.is_finite():
        raise MoneyError(f"{what} {value!r} is not a finite number")
    return d


def eur_to_nano(value: Decimal | str | int) -> int:
    """Euros (exact decimal) to integer nano-euros; more than 9 decimals is an error."""
    d = _decimal(value, "amount") * NANO_PER_EUR
    if d != d.to_integral_value():
        raise MoneyError(f"amount {value} EUR has more than 9 decimals")
    return int(d)


def price_to_micro(eur_per_kwh: Decimal | str | int) -> int:
    """A price in EUR/kWh to integer micro-euros per kWh; more than 6 decimals is an error."""
    d = _decimal(eur_per_kwh, "price") * MICRO_PER_EUR
    if d != d.to_integral_value():
        raise MoneyError(f"price {eur_per_kwh} EUR/kWh has more than 6 decimals")
    return int(d)


def price_to_micro_rounded(eur_per_kwh: Decimal | str | int) -> tuple[int, bool]:
    """A price in EUR/kWh to micro-euros per kWh, half-even; also says whether it rounded."""
    d = _decimal(eur_per_kwh, "price") * MICRO_PER_EUR
    q = d.to_integral_value(rounding=ROUND_HALF_EVEN)
    return int(q), q != d


def eur_per_mwh_to_micro(eur_per_mwh: Decimal | str | int) -> tuple[int, bool]:
    """A price in EUR/MWh to micro-euros per kWh (1 EUR/MWh = 1000 uEUR/kWh); says if it rounded."""
    return price_to_micro_rounded(_decimal(eur_per_mwh, "price") / 1000)


def micro_to_eur_per_kwh(micro: int) -> Decimal:
    """Micro-euros per kWh as an exact EUR/kWh decimal."""
    return Decimal(micro).scaleb(-6)


def energy_cost_nano(energy_wh: int, price_micro_per_kwh: int) -> int:
    """The exact cost in nano-euros of ``energy_wh`` at ``price_micro_per_kwh``."""
    return energy_wh * price_micro_per_kwh


def nano_to_cents(nano: int) -> int:
    """Round nano-euros to whole cents, half-even (banker's rounding), exactly."""
    q, r = divmod(nano, NANO_PER_CENT)  # r in [0, NANO_PER_CENT)
    twice = 2 * r
    if twice > NANO_PER_CENT or (twice == NANO_PER_CENT and q % 2 == 1):
        q += 1
    return q


def cents_to_eur(cents: int) -> Decimal:
    """Whole cents as an exact EUR decimal with two places."""
    return Decimal(cents).scaleb(-2).quantize(Decimal("0.01"))


def nano_to_eur(nano: int) -> Decimal:
    """Nano-euros as an exact EUR decimal (nine places, no rounding)."""
    return Decimal(nano).scaleb(-9)


def format_eur(cents: int) -> str:
    """Cents as the decimal string used in JSON output: ``"-12.30"``."""
    return str(cents_to_eur(cents))


def vat_cents(line_cents_by_rate: Mapping[Decimal, Iterable[int]]) -> dict[Decimal, int]:
    """VAT per rate: the rate times the sum of that rate's line amounts (in cents), half-even.

    EN 16931 computes VAT on the total of the lines of one rate, not per line or interval.
    """
    out: dict[Decimal, int] = {}
    for rate, lines in line_cents_by_rate.items():
        r = _decimal(rate, "VAT rate")
        if r < 0 or r > 1:
            raise MoneyError(f"VAT rate {rate} must be a fraction between 0 and 1 (0.21 for 21 %)")
        base = sum(lines)
        out[r] = int((Decimal(base) * r).to_integral_value(rounding=ROUND_HALF_EVEN))
    return out
