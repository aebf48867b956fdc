"""Exact money: nano-euros, micro-euro prices, half-even cents, VAT per rate (hand-checked + properties)."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kwartier.money import (
    MoneyError,
    energy_cost_nano,
    eur_per_mwh_to_micro,
    eur_to_nano,
    format_eur,
    nano_to_cents,
    price_to_micro,
    price_to_micro_rounded,
    vat_cents,
)


@pytest.mark.parametrize(
    ("nano", "cents"),
    [(5_000_000, 0), (15_000_000, 2), (25_000_000, 2), (5_000_001, 1), (-5_000_000, 0), (-15_000_000, -2),
     (-15_000_001, -2), (-25_000_000, -2), (1_234_567_890, 123), (0, 0)],
)
def test_half_even_to_cents(nano, cents):
    assert nano_to_cents(nano) == cents


def test_units_compose_exactly():
    # 1,234 Wh at 0.25731 EUR/kWh = 0.31752054 EUR, exactly 317,520,540 nEUR.
    assert energy_cost_nano(1234, price_to_micro("0.25731")) == 317_520_540
    assert eur_per_mwh_to_micro("41.26") == (41_260, False)
    assert eur_per_mwh_to_micro("-500.00") == (-500_000, False)
    assert price_to_micro_rounded("0.0820199966430664") == (82_020, True)
    assert format_eur(-1230) == "-12.30"


def test_bad_values_are_refused_with_the_value_named():
    with pytest.raises(MoneyError, match="more than 6 decimals"):
        price_to_micro("0.1234567")
    with pytest.raises(MoneyError, match="'abc' is not a number"):
        eur_to_nano("abc")
    with pytest.raises(MoneyError, match="VAT rate"):
        vat_cents({Decimal("21"): [100]})


def test_vat_is_per_rate_on_line_totals():
    # Lines 10.05 + 0.10 at 21 %: 21 % of 10.15 = 2.1315 -> 2.13; per line it would be 2.11 + 0.02 = 2.13
    # Lines 0.02 x 3 at 21 %: per line 0.00 each, on the total 0.06 * 0.21 = 0.0126 -> 0.01.
    assert vat_cents({Decimal("0.21"): [1005, 10]}) == {Decimal("0.21"): 213}
    assert vat_cents({Decimal("0.21"): [2, 2, 2], Decimal("0.09"): [1000]}) == {
        Decimal("0.21"): 1, Decimal("0.09"): 90}


nanos = st.integers(min_value=-(10**15), max_value=10**15)


@given(nanos)
def test_cents_match_decimal_half_even(n):
    expected = (Decimal(n) / Decimal(10**7)).quantize(Decimal(1), rounding=ROUND_HALF_EVEN)
    assert nano_to_cents(n) == int(expected)


@given(st.lists(st.tuples(st.integers(0, 10**6), st.integers(-(10**6), 10**6)), max_size=200))
def test_sums_are_exact_and_round_once(pairs):
    total = sum(energy_cost_nano(wh, p) for wh, p in pairs)
    reference = sum(Decimal(wh) / 1000 * Decimal(p) / 10**6 for wh, p in pairs)
    assert Decimal(total) / 10**9 == reference
    # Rounding once per line is never further than half a cent from the exact total.
    assert abs(Decimal(nano_to_cents(total)) / 100 - reference) <= Decimal("0.005")


@given(st.decimals(min_value=-1000, max_value=1000, places=6))
def test_price_round_trip(d):
    assert Decimal(price_to_micro(d)) / 10**6 == d
