"""EAN-18 check digits (GS1 mod 10) and clear errors for wrong codes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kwartier.ids import InvalidIdentifier, gs1_check_digit, make_ean18, validate_ean18, validate_prm


def test_known_codes():
    # 871687120058657526 is the (anonymised) EAN in the SlimmeMeterPortal export; 54144882... the Fluvius one.
    # Hand check for 87168712005865752: weights 3,1,... from the right give 94 -> check digit 6.
    assert gs1_check_digit("87168712005865752") == 6
    assert validate_ean18("871687120058657526") == "871687120058657526"
    assert validate_ean18(" 541448820052377134 ") == "541448820052377134"


def test_wrong_codes_name_the_problem():
    with pytest.raises(InvalidIdentifier, match="check digit 7, but its first 17 digits give 6"):
        validate_ean18("871687120058657527")
    with pytest.raises(InvalidIdentifier, match="exactly 18 digits"):
        validate_ean18("87168712005865752")
    with pytest.raises(InvalidIdentifier, match="exactly 18 digits"):
        validate_ean18("87168712005865752X")
    with pytest.raises(InvalidIdentifier, match="14 digits"):
        validate_prm("1234")


@given(st.text(alphabet="0123456789", min_size=17, max_size=17), st.integers(0, 16), st.integers(1, 9))
def test_any_single_digit_error_is_caught(body, pos, delta):
    code = make_ean18(body)
    assert validate_ean18(code) == code
    broken = code[:pos] + str((int(code[pos]) + delta) % 10) + code[pos + 1 :]
    with pytest.raises(InvalidIdentifier):
        validate_ean18(broken)
