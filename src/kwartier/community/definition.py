"""The community definition file (TOML): parties, participants, connections, metering points and contracts.

A definition is validated in three steps, each mistake reported with the file, the section, the
index, the id and the field (``community.toml: contracts[2] ('c-heatpump'), field 'supplier': party
'eneco' has no role supplier``): the shape of each entry (pydantic), the references between entries
(ids, EANs, roles, periods), and the plans the contracts name (they must load, and every role a
plan pays must resolve to a party). All mistakes are reported at once.

Payees: a plan component paid to ``supplier`` goes to the contract's supplier, one paid to
``grid`` to the grid party of the contract's connection (for a metering point: its parent's), and
one paid to ``tax``, ``aggregator`` or ``community`` to the single party with that role.

Contract periods are local dates, ``valid_to`` exclusive (None: open-ended). Note that a plan's own
``valid_to`` is inclusive (its last day); the two are not compared.
"""

from __future__ import annotations

import functools
import hashlib
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from kwartier.ids import InvalidIdentifier, validate_ean18
from kwartier.tariffs.plan import LoadedPlan, Payee, PlanError, builtin_ids, plan_from_text

Role = Payee  # supplier | grid | tax | aggregator | community
SECTIONS = ("parties", "participants", "connections", "metering_points", "contracts")
class DefinitionError(ValueError):
    """A community definition that cannot be loaded; one line per mistake, naming where it is."""


class NotInDefinition(LookupError):
    """An id or EAN asked of a definition that it does not hold."""


def _matching(pattern: str, what: str) -> AfterValidator:
    """A validator: the whole text matches ``pattern``, else "'...' is not ``what``"."""
    rx = re.compile(pattern)

    def check(v: str) -> str:
        if not rx.fullmatch(v):
            raise ValueError(f"{v!r} is not {what}")
        return v

    return AfterValidator(check)


def _ean(v: str) -> str:
    try:
        return validate_ean18(v)
    except InvalidIdentifier as exc:
        raise ValueError(str(exc)) from None


def _timezone(v: str) -> str:
    try:
        ZoneInfo(v)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {v!r} (e.g. Europe/Amsterdam)") from None
    return v


def _distinct(v: list[str]) -> list[str]:
    twice = sorted({r for r in v if v.count(r) > 1})
    if twice:
        raise ValueError(f"role {', '.join(twice)} given more than once")
    return v


Id = Annotated[str, _matching(r"[a-z0-9][a-z0-9._-]{0,39}", "an id: use 1-40 lower-case letters, digits, '.', "
                              "'-' or '_', starting with a letter or digit")]
Ean = Annotated[str, AfterValidator(_ean)]
Text = Annotated[str, Field(min_length=1)]
Email = Annotated[str, _matching(r"[^@\s]+@[^@\s]+\.[^@\s.]+", "an e-mail address")]
VatId = Annotated[str, _matching(r"[A-Z]{2}[0-9A-Z+*]{2,13}",
                                 "a VAT id: a country code and 2-13 letters or digits, e.g. NL123456789B01")]
Zone = Annotated[str, _matching(r"[A-Z][A-Z0-9_-]{1,15}", "a bidding zone code such as NL or BE")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Community(_Strict):
    """The community: its id and name, the local time zone of its days, the bidding zone of its prices."""

    id: Id
    name: Text
    timezone: Annotated[str, AfterValidator(_timezone)] = "Europe/Amsterdam"
    zone: Zone = "NL"


class Party(_Strict):
    """Someone a participant pays (or is paid by): supplier, grid operator, tax office, aggregator, community."""

    id: Id
    roles: Annotated[list[Role], Field(min_length=1), AfterValidator(_distinct)]
    name: Text
    vat_id: VatId | None = None


class Participant(_Strict):
    """A member household or business: who gets the bill, in which language."""

    id: Id
    name: Text
    email: Email
    locale: Literal["nl", "en", "fr"] = "nl"


class Connection(_Strict):
    """A grid connection (EAN-18) of a participant, in a grid area, with its contracted capacity in kW."""

    ean: Ean
    participant: Id
    grid_area: Text
    capacity_kw: Decimal = Field(gt=0)
    grid: Id  # the grid party that operates it


class MeteringPoint(_Strict):
    """A metering point behind a connection with its own EAN and supplier (e.g. a heat pump's own contract)."""

    ean: Ean
    connection: Ean  # the parent connection's EAN
    supplier: Id
    description: str = ""


class Contract(_Strict):
    """A supply contract for a connection or metering point: which supplier, which plan, from when to when."""

    id: Id
    target: Ean  # a connection or metering point EAN
    supplier: Id
    plan: Text  # a built-in plan id, or a .toml path relative to the definition file
    valid_from: date
    valid_to: date | None = None  # exclusive; None: open-ended

    @field_validator("valid_to")
    @classmethod
    def _after(cls, v: date | None, info: ValidationInfo) -> date | None:
        start = info.data.get("valid_from")
        if v is not None and start is not None and v <= start:
            raise ValueError(f"{v} is not after valid_from {start} (valid_to is exclusive)")
        return v


class CommunitySpec(_Strict):
    """The whole file; a loaded definition keeps each section sorted by id or EAN."""

    community: Community
    parties: list[Party] = []
    participants: list[Participant] = []
    connections: list[Connection] = []
    metering_points: list[MeteringPoint] = []
    contracts: list[Contract] = []


@dataclass(frozen=True)
class PlanText:
    """The exact plan TOML a contract was loaded with, and its SHA-256 (the plan's version)."""

    plan_id: str
    text: str
    sha256: str


#: Gives a contract's plan as (TOML text, name for messages); raises PlanError when there is none.
PlanSource = Callable[[Contract], tuple[str, str]]


@dataclass(frozen=True, eq=False)
class Definition:
    """A validated community definition with each contract's loaded plan and plan text."""

    spec: CommunitySpec
    plans: dict[str, LoadedPlan]  # contract id -> plan
    plan_texts: dict[str, PlanText]  # contract id -> its text and SHA-256
    where: str

    @property
    def community(self) -> Community:
        return self.spec.community

    @cached_property
    def _by(self) -> dict[str, dict[str, Any]]:
        """Lookup tables: entries by id or EAN, per kind."""
        s = self.spec
        return {"party": {p.id: p for p in s.parties}, "participant": {p.id: p for p in s.participants},
                "connection": {c.ean: c for c in s.connections}, "point": {m.ean: m for m in s.metering_points},
                "contract": {c.id: c for c in s.contracts}}

    def party(self, party_id: str) -> Party:
        return _get(self._by["party"], party_id, "party")

    def participant(self, participant_id: str) -> Participant:
        return _get(self._by["participant"], participant_id, "participant")

    def contract(self, contract_id: str) -> Contract:
        return _get(self._by["contract"], contract_id, "contract")

    def connection_of(self, ean: str) -> Connection:
        """The connection with EAN ``ean``, or the parent connection of the metering point ``ean``."""
        point = self._by["point"].get(ean)
        return _get(self._by["connection"], point.connection if point else ean, "connection or metering point with EAN")

    def participant_of(self, ean: str) -> Participant:
        """The participant of a connection, or of a metering point's parent connection."""
        return self.participant(self.connection_of(ean).participant)

    def metering_points_of(self, connection_ean: str) -> list[MeteringPoint]:
        """The metering points behind a connection, by EAN."""
        _get(self._by["connection"], connection_ean, "connection with EAN")
        return [m for m in self.spec.metering_points if m.connection == connection_ean]

    def contracts_for(self, ean: str, period_start: date, period_end: date) -> list[Contract]:
        """The contracts of exactly this connection or metering point valid on some day of
        ``[period_start, period_end)``, oldest first (a supplier switch mid-period gives two)."""
        return sorted(
            (c for c in self.spec.contracts if c.target == ean and _overlaps(c, period_start, period_end)),
            key=lambda c: c.valid_from,
        )

    def payee_party(self, contract: Contract | str, role: Role) -> str:
        """The id of the party paid for a plan component with payee ``role`` under ``contract``."""
        c = self.contract(contract) if isinstance(contract, str) else contract
        if role == "supplier":
            return c.supplier
        if role == "grid":
            return self.connection_of(c.target).grid
        holders = [p.id for p in self.spec.parties if role in p.roles]
        if len(holders) != 1:
            raise DefinitionError(f"{self.where}: role {role} is held by {len(holders)} parties "
                                  f"({', '.join(holders) or 'none'}); exactly one is needed to pay it")
        return holders[0]


def _get(table: dict[str, Any], key: str, what: str) -> Any:
    if key not in table:
        raise NotInDefinition(f"no {what} {key!r} in the community definition")
    return table[key]


def _overlaps(c: Contract, start: date, end: date) -> bool:
    return c.valid_from < end and (c.valid_to is None or c.valid_to > start)


def load_definition(path: str | Path) -> Definition:
    """Read, validate and resolve a community definition TOML file (plans relative to its folder)."""
    p = Path(path)
    where = str(p)
    try:
        text = p.read_bytes().decode("utf-8")
    except OSError as exc:
        raise DefinitionError(f"{where}: cannot read the file: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise DefinitionError(f"{where}: not UTF-8 text") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DefinitionError(f"{where}: not valid TOML: {exc}") from None
    return build_definition(data, where, lambda c: _plan_on_disk(c.plan, p.parent))


def _plan_on_disk(ref: str, folder: Path) -> tuple[str, str]:
    """A plan file (a name ending in .toml, relative to ``folder``) or a built-in plan by id."""
    if ref.endswith(".toml") or "/" in ref or "\\" in ref:
        file = folder / ref
        if not file.is_file():
            raise PlanError(f"{file}: no such plan file")
        return file.read_text(encoding="utf-8"), str(file)
    ids = builtin_ids()
    if ref not in ids:
        raise PlanError(f"no built-in plan {ref!r} (built-in: {', '.join(ids)}; a plan file needs a .toml name)")
    res = resources.files("kwartier.tariffs") / "plans" / f"{ref}.toml"
    return res.read_text(encoding="utf-8"), f"built-in plan {ref}"


@functools.lru_cache(maxsize=256)
def _plan_cached(text: str, where: str) -> LoadedPlan:
    """Parse each distinct plan text once (a loaded plan is not changed by its users)."""
    return plan_from_text(text, where)


def build_definition(data: dict[str, Any], where: str, plan_source: PlanSource) -> Definition:
    """Validate parsed TOML (or stored entities) and load each contract's plan through ``plan_source``."""
    try:
        spec = CommunitySpec.model_validate(data)
    except ValidationError as exc:
        raise DefinitionError(_format_validation(where, data, exc)) from None
    problems = _cross_check(spec, where)
    plans: dict[str, LoadedPlan] = {}
    texts: dict[str, PlanText] = {}
    for i, c in enumerate(spec.contracts):
        try:
            text, plan_where = plan_source(c)
            loaded = _plan_cached(text, plan_where)  # many contracts share one plan
        except PlanError as exc:
            problems.append(f"{_at(where, 'contracts', i, c.id)}, field 'plan': {exc}")
            continue
        plans[c.id] = loaded
        texts[c.id] = PlanText(loaded.id, text, hashlib.sha256(text.encode("utf-8")).hexdigest())
    problems += _check_payees(spec, plans, where)
    if problems:
        raise DefinitionError("\n".join(problems))
    ordered = spec.model_copy(update={
        "parties": sorted(spec.parties, key=lambda x: x.id),
        "participants": sorted(spec.participants, key=lambda x: x.id),
        "connections": sorted(spec.connections, key=lambda x: x.ean),
        "metering_points": sorted(spec.metering_points, key=lambda x: x.ean),
        "contracts": sorted(spec.contracts, key=lambda x: x.id),
    })
    return Definition(ordered, plans, texts, where)


def _at(where: str, section: str, index: int, key: object) -> str:
    return f"{where}: {section}[{index}] ({key!r})" if key else f"{where}: {section}[{index}]"


def _cross_check(spec: CommunitySpec, where: str) -> list[str]:
    """References, uniqueness, roles and contract periods; one message per mistake."""
    out: list[str] = []

    def bad(section: str, i: int, key: str, field: str, msg: str) -> None:
        out.append(f"{_at(where, section, i, key)}, field {field!r}: {msg}")

    def unique(section: str, keys: list[str], seen: dict[str, str], field: str, what: str) -> None:
        for i, key in enumerate(keys):
            if key in seen:
                bad(section, i, key, field, f"{what} {key} is already used by {seen[key]}")
            else:
                seen[key] = f"{section}[{i}]"

    unique("parties", [p.id for p in spec.parties], {}, "id", "id")
    unique("participants", [p.id for p in spec.participants], {}, "id", "id")
    unique("contracts", [c.id for c in spec.contracts], {}, "id", "id")
    eans: dict[str, str] = {}
    unique("connections", [c.ean for c in spec.connections], eans, "ean", "EAN")
    unique("metering_points", [m.ean for m in spec.metering_points], eans, "ean", "EAN")

    parties = {p.id: p for p in reversed(spec.parties)}
    people = {p.id for p in spec.participants}
    conns = {c.ean for c in spec.connections}
    points = {m.ean for m in spec.metering_points}

    def party_with(section: str, i: int, key: str, field: str, pid: str, role: str) -> None:
        party = parties.get(pid)
        if party is None:
            bad(section, i, key, field, f"no party {pid!r} (parties: {', '.join(sorted(parties)) or 'none'})")
        elif role not in party.roles:
            bad(section, i, key, field, f"party {pid!r} has no role {role} (its roles: {', '.join(party.roles)})")

    for i, c in enumerate(spec.connections):
        if c.participant not in people:
            bad("connections", i, c.ean, "participant", f"no participant {c.participant!r}")
        party_with("connections", i, c.ean, "grid", c.grid, "grid")
    for i, m in enumerate(spec.metering_points):
        if m.connection in points:
            bad("metering_points", i, m.ean, "connection", f"{m.connection} is a metering point, not a connection")
        elif m.connection not in conns:
            bad("metering_points", i, m.ean, "connection", f"no connection with EAN {m.connection}")
        party_with("metering_points", i, m.ean, "supplier", m.supplier, "supplier")
    for i, k in enumerate(spec.contracts):
        if k.target not in conns and k.target not in points:
            bad("contracts", i, k.id, "target", f"no connection or metering point with EAN {k.target}")
        party_with("contracts", i, k.id, "supplier", k.supplier, "supplier")
    out += _check_overlaps(spec.contracts, where)
    return out


def _check_overlaps(contracts: list[Contract], where: str) -> list[str]:
    """Contracts for the same target must not share a day."""
    out: list[str] = []
    by_target: dict[str, list[int]] = {}
    for i, c in enumerate(contracts):
        by_target.setdefault(c.target, []).append(i)
    for target, idx in by_target.items():
        idx.sort(key=lambda j: contracts[j].valid_from)
        latest: int | None = None  # the earlier contract that ends last
        for j in idx:
            c = contracts[j]
            if latest is not None and _overlaps(contracts[latest], c.valid_from, date.max):
                o = contracts[latest]
                out.append(f"{_at(where, 'contracts', j, c.id)}, field 'valid_from': {c.valid_from} falls in "
                           f"contracts[{latest}] ({o.id!r}) for the same target {target} "
                           f"({o.valid_from} .. {o.valid_to or 'open'}); contracts for one EAN must not overlap")
            if latest is None or _end(c) > _end(contracts[latest]):
                latest = j
    return out


def _end(c: Contract) -> date:
    return date.max if c.valid_to is None else c.valid_to


def _check_payees(spec: CommunitySpec, plans: dict[str, LoadedPlan], where: str) -> list[str]:
    """Each role other than supplier and grid that a plan pays needs exactly one party; reported once per role."""
    out: list[str] = []
    reported: set[str] = set()
    for i, c in enumerate(spec.contracts):
        if c.id not in plans:
            continue
        for comp in plans[c.id].plan.components:
            role = comp.payee
            if role in ("supplier", "grid") or role in reported:
                continue
            holders = [p.id for p in spec.parties if role in p.roles]
            if len(holders) == 1:
                continue
            reported.add(role)
            found = (f"parties {', '.join(repr(h) for h in holders)} all have role {role}; exactly one may"
                     if holders else f"no party has role {role}; add one to [[parties]]")
            out.append(f"{_at(where, 'contracts', i, c.id)}, field 'plan': plan {plans[c.id].id!r} pays role "
                       f"{role} (component {comp.id!r}), but {found}")
    return out


def _format_validation(where: str, data: dict[str, Any], exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = list(err["loc"])
        head = loc[0] if loc else None
        if head in SECTIONS and len(loc) >= 2 and isinstance(loc[1], int):
            entries = data.get(head) if isinstance(data.get(head), list) else []
            entry = entries[loc[1]] if loc[1] < len(entries) and isinstance(entries[loc[1]], dict) else {}
            key = entry.get("id", entry.get("ean"))
            prefix, rest = _at(where, str(head), loc[1], key if isinstance(key, str | int) else None), loc[2:]
        elif head == "community" and len(loc) > 1:
            prefix, rest = f"{where}: community", loc[1:]
        else:
            prefix = f"{where}: section {head!r}" if head is not None else where
            rest = []
        field = "".join(f"[{x}]" if isinstance(x, int) else f".{x}" for x in rest).lstrip(".")
        lines.append(f"{prefix}, field {field!r}: {_message(err, bool(rest))}" if field
                     else f"{prefix}: {_message(err, False)}")
    return "\n".join(lines)


def _message(err: Any, in_entry: bool) -> str:
    kind, msg = err["type"], err["msg"].removeprefix("Value error, ")
    if kind == "extra_forbidden":
        return "unknown field (a typo?)" if in_entry else \
            f"unknown section (a typo?); sections are community, {', '.join(SECTIONS)}"
    if kind == "missing":
        return "is required" if in_entry else "is required: a [community] table with id and name"
    if kind == "list_type":
        return "must be a list, e.g. [\"supplier\"]" if in_entry else "write each entry as a [[table]]"
    if kind == "model_type":
        return "must be a table"
    if kind == "string_type":
        return f"{err['input']!r} must be text in quotes"
    if kind == "literal_error":
        return f"{err['input']!r} is not one of {err['ctx']['expected']}"
    return msg
