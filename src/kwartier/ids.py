"""Identifiers: EAN-18 connection codes (NL/BE) with their GS1 check digit, and French PRM numbers."""

from __future__ import annotations


class InvalidIdentifier(ValueError):
    """An identifier with the wrong length, characters or check digit."""


def gs1_check_digit(body: str) -> int:
    """The GS1 mod-10 check digit for the digits ``body`` (all but the last digit of a code).

    Weights 3 and 1 alternate from the rightmost digit of the body, starting with 3.
    """
    if not body.isdigit():
        raise InvalidIdentifier(f"{body!r} must contain digits only")
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return (10 - total % 10) % 10


def validate_ean18(code: str) -> str:
    """Return the 18-digit EAN ``code`` unchanged, or raise with what is wrong with it."""
    cleaned = code.strip()
    if len(cleaned) != 18 or not cleaned.isdigit():
        raise InvalidIdentifier(f"EAN {code!r} must be exactly 18 digits (got {len(cleaned)} characters)")
    expected = gs1_check_digit(cleaned[:17])
    if int(cleaned[17]) != expected:
        raise InvalidIdentifier(
            f"EAN {cleaned} has check digit {cleaned[17]}, but its first 17 digits give {expected}"
        )
    return cleaned


def make_ean18(body17: str) -> str:
    """Complete a 17-digit body into a valid EAN-18 by appending its check digit."""
    if len(body17) != 17:
        raise InvalidIdentifier(f"an EAN-18 body has 17 digits, got {len(body17)}")
    return body17 + str(gs1_check_digit(body17))


def validate_prm(code: str) -> str:
    """Return a French PRM/PDL point number (14 digits), or raise.

    Enedis PRM numbers have no public check digit; only the form is checked.
    """
    cleaned = code.strip()
    if len(cleaned) != 14 or not cleaned.isdigit():
        raise InvalidIdentifier(f"PRM {code!r} must be exactly 14 digits")
    return cleaned
