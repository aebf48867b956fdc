"""The community rulebook: how local production is shared, how shared kWh are priced, market and voting settings.

A :class:`Rulebook` is one version of the rules a community sets itself. It is a frozen pydantic
model, so the same schema serves the TOML/JSON file, the API, the CLI and the governance records.
Its :meth:`Rulebook.canonical_json` (sorted keys, no spaces, decimals as text) is what its
:meth:`Rulebook.digest` (SHA-256, hex) is taken of: two rulebooks with the same content always have
the same digest, whatever the order they were written in. Versioning (proposals, votes, the
interval from which a version is in force) lives in ``community/governance.py`` on top of this.

Sections:

- ``sharing``: ``rule`` is ``prorata`` (default: production shared in proportion to consumption,
  capped at each member's consumption), ``static`` (fixed ``keys`` per participant, capped at
  consumption, what a member cannot take is surplus), ``priority`` (``groups`` served in order,
  prorata within a group; members not in any group form a last group) or ``dynamic`` (keys given per
  interval with the data, capped like static keys).
- ``price``: ``rule`` is ``mid_market`` (halfway between the reference feed-in and supply prices),
  ``uniform`` (one community price) or ``solidarity`` (a base price for everyone, a reduced price
  for the listed energy-poor members; the difference is paid by ``funded_by``, shown per payer).
- ``solidarity``: the energy-poor members and the share of each quarter's local production reserved
  for them first (0 to 1); used by the sharing whatever the price rule.
- ``market``: the local market (pay-as-clear per quarter): on or off, price floor and cap, the order
  in which matching preferences count.
- ``governance``: quorum and majority of votes for a rule change, and the notice in quarters before a
  change can take effect.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

ParticipantId = Annotated[str, Field(min_length=1, max_length=40)]
Fraction = Annotated[Decimal, Field(ge=0, le=1)]
EurPerKwh = Annotated[Decimal, Field(ge=-10, le=10)]  # EUR per kWh; negative prices exist on the market
Preference = Literal["partner", "green", "local"]
SharingRuleName = Literal["static", "prorata", "priority", "dynamic"]
PriceRuleName = Literal["mid_market", "uniform", "solidarity"]


class RulebookError(ValueError):
    """A rulebook that cannot be used; the message names the file and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SharingRule(_Strict):
    """How each quarter's production of the members is allocated to the members' consumption."""

    rule: SharingRuleName = "prorata"
    keys: dict[ParticipantId, Annotated[Decimal, Field(ge=0)]] = {}  # static: weights (normalised to sum 1)
    groups: list[list[ParticipantId]] = []  # priority: group 1 first, then 2, ...

    @model_validator(mode="after")
    def _complete(self) -> SharingRule:
        if self.rule == "static" and (not self.keys or sum(self.keys.values()) <= 0):
            raise ValueError("rule 'static' needs keys: {participant = weight, ...} with a positive sum")
        if self.rule == "priority":
            if not self.groups or not any(self.groups):
                raise ValueError("rule 'priority' needs groups: [[first group ids], [second group ids], ...]")
            flat = [p for g in self.groups for p in g]
            twice = sorted({p for p in flat if flat.count(p) > 1})
            if twice:
                raise ValueError(f"participant {', '.join(twice)} is in more than one priority group")
        return self


class PriceRule(_Strict):
    """The price of a shared kWh (EUR/kWh): what a member who takes it pays and one who gives it receives."""

    rule: PriceRuleName = "mid_market"
    feed_in_eur_per_kwh: EurPerKwh = Decimal("0.05")  # reference: what the grid pays for a kWh fed in
    supply_eur_per_kwh: EurPerKwh = Decimal("0.25")  # reference: what a supplier charges for a kWh
    uniform_eur_per_kwh: EurPerKwh | None = None  # rule uniform (and the base of solidarity when set)
    reduced_eur_per_kwh: EurPerKwh | None = None  # rule solidarity: what energy-poor members pay
    funded_by: Literal["buyers", "sellers", "community"] = "buyers"  # who pays the solidarity difference

    @model_validator(mode="after")
    def _complete(self) -> PriceRule:
        if self.rule == "uniform" and self.uniform_eur_per_kwh is None:
            raise ValueError("rule 'uniform' needs uniform_eur_per_kwh")
        if self.rule == "solidarity" and self.reduced_eur_per_kwh is None:
            raise ValueError("rule 'solidarity' needs reduced_eur_per_kwh")
        return self

    def base_eur_per_kwh(self) -> Decimal:
        """The price every member pays and receives before any solidarity reduction (EUR/kWh)."""
        if self.uniform_eur_per_kwh is not None and self.rule != "mid_market":
            return self.uniform_eur_per_kwh
        return (self.feed_in_eur_per_kwh + self.supply_eur_per_kwh) / 2


class Solidarity(_Strict):
    """Energy-poor members and the share of each quarter's production reserved for them before the sharing rule."""

    members: list[ParticipantId] = []
    reserved_share: Fraction = Decimal(0)


class MarketSettings(_Strict):
    """The local market: pay-as-clear per quarter, with a price floor and cap and an order of preferences."""

    enabled: bool = False
    clearing: Literal["pay_as_clear"] = "pay_as_clear"
    floor_eur_per_kwh: EurPerKwh = Decimal("-0.5")
    cap_eur_per_kwh: EurPerKwh = Decimal("2")
    preferences: list[Preference] = ["partner", "green", "local"]

    @model_validator(mode="after")
    def _order(self) -> MarketSettings:
        if self.floor_eur_per_kwh > self.cap_eur_per_kwh:
            raise ValueError(f"floor {self.floor_eur_per_kwh} is above cap {self.cap_eur_per_kwh}")
        if len(set(self.preferences)) != len(self.preferences):
            raise ValueError("a preference is listed twice")
        return self


class GovernanceSettings(_Strict):
    """How the rulebook itself changes: quorum (share of members voting), majority (share of yes votes)."""

    quorum: Fraction = Decimal("0.5")
    majority: Fraction = Decimal("0.5")  # accepted when yes / votes cast is strictly above this
    notice_quarters: Annotated[int, Field(ge=0)] = 96  # a change takes effect at least this many quarters ahead


class Rulebook(_Strict):
    """One version of a community's rules. ``digest()`` identifies its content."""

    sharing: SharingRule = SharingRule()
    price: PriceRule = PriceRule()
    solidarity: Solidarity = Solidarity()
    market: MarketSettings = MarketSettings()
    governance: GovernanceSettings = GovernanceSettings()
    plans: dict[ParticipantId, str] = {}  # plan choices: participant -> plan id (informative; contracts rule)

    def canonical_json(self) -> str:
        """Sorted keys, no spaces, decimals as normalised text: the bytes the digest is taken of."""
        return canonical_json(self.model_dump(mode="python"))

    def digest(self) -> str:
        """SHA-256 (hex) of the canonical JSON."""
        return hashlib.sha256(self.canonical_json().encode("utf-8")).hexdigest()

    def to_json_data(self) -> dict[str, Any]:
        """Plain JSON data (decimals as text) that :func:`rulebook_from_data` reads back to an equal rulebook."""
        return json.loads(self.canonical_json())


def _plain(value: Any) -> Any:
    """Decimals as normalised text (``0.50`` and ``0.5`` are the same rule), containers recursively."""
    if isinstance(value, Decimal):
        text = format(value.normalize(), "f")
        return "0" if text in ("-0", "") else text
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def canonical_json(data: Any) -> str:
    """JSON of ``data`` with decimals as text, sorted keys and no spaces."""
    return json.dumps(_plain(data), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def default_rulebook() -> Rulebook:
    """Prorata sharing, mid-market price between 0.05 and 0.25 EUR/kWh, no market, quorum and majority 50 %."""
    return Rulebook()


def rulebook_from_data(data: dict[str, Any], where: str = "rulebook") -> Rulebook:
    """Validate parsed TOML/JSON data; errors name ``where`` and each field (all at once)."""
    try:
        return Rulebook.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            field = ".".join(str(x) for x in err["loc"]) or "(top)"
            msg = "unknown field (a typo?)" if err["type"] == "extra_forbidden" else \
                err["msg"].removeprefix("Value error, ")
            lines.append(f"{where}, field {field!r}: {msg}")
        raise RulebookError("\n".join(lines)) from None


def load_rulebook(path: str | Path) -> Rulebook:
    """Read a rulebook TOML (or .json) file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RulebookError(f"{p}: cannot read the file: {exc}") from None
    try:
        if p.suffix == ".json":
            data = json.loads(text, parse_float=Decimal)
        else:
            data = tomllib.loads(text, parse_float=Decimal)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise RulebookError(f"{p}: not valid {'JSON' if p.suffix == '.json' else 'TOML'}: {exc}") from None
    return rulebook_from_data(data, str(p))
