"""The tariff plan schema (TOML, validated by pydantic) and loading by file or built-in id.

A plan is a list of components. Each says who is paid (``payee``), for what (``basis``), at what
price (a safe expression in EUR per unit of the basis), when that price is fixed, and whether VAT
applies. Sign: amount = quantity x price; positive means the participant pays the payee, negative
that the payee pays the participant (feed-in compensation carries a minus sign).
"""

from __future__ import annotations

import itertools
import re
import tomllib
from datetime import date
from decimal import Decimal
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from kwartier.tariffs.expr import Expression, ExpressionError, parse

Payee = Literal["supplier", "grid", "tax", "aggregator", "community"]
Basis = Literal["import_kwh", "export_kwh", "per_day", "per_month", "per_year", "percent"]
ENERGY_BASES = ("import_kwh", "export_kwh")
PERIOD_BASES = ("per_day", "per_month", "per_year")
UNITS = {"import_kwh": "kWh", "export_kwh": "kWh", "per_day": "day", "per_month": "month", "per_year": "year",
         "percent": "%"}
#: The names every plan can read: the zone's day-ahead price in EUR/kWh.
BUILTIN_SERIES = ("market",)
_FIXED = re.compile(r"day-ahead|month-start|contract|PT\d+[HM]")
Ident = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=40)]


class PlanError(ValueError):
    """A plan that cannot be loaded; the message names the file, the component and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Band(_Strict):
    """One energy-tax band: ``price`` per kWh up to ``up_to_kwh`` cumulative kWh in the calendar year."""

    up_to_kwh: Decimal | None = None  # None: no upper limit (the last band)
    price: str


_WINDOW = re.compile(r"([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)")


class SeriesDecl(_Strict):
    """A named series besides ``market`` that price expressions may read.

    Kinds:
    - ``input``: values given from outside (e.g. a congestion surcharge set by the grid operator,
      in EUR/kWh); ``default`` is used for intervals without a value (e.g. no congestion: 0).
    - ``calendar``: 1 in the local-time ``windows`` (``"23:00-07:00"``, may wrap midnight) and on
      weekends when ``weekend = true``, else 0. For day/night (normal/dal) tariffs.
    - ``derived``: computed by a named rule from the participant's own history (``rule``), e.g.
      ``previous_month_tax_share``: the energy tax of last month's consumption as a share of its
      market value, fixed at the start of each month (the JEM 2.0 percentage tax).
    """

    id: Ident
    label: str
    kind: Literal["input", "calendar", "derived"] = "input"
    unit: str = "EUR/kWh"
    fixed: str = "PT4H"
    default: Decimal | None = None
    windows: list[str] = []
    weekend: bool = False
    rule: Literal["previous_month_tax_share"] | None = None
    source: str = ""

    @field_validator("windows")
    @classmethod
    def _windows(cls, v: list[str]) -> list[str]:
        for w in v:
            if not _WINDOW.fullmatch(w):
                raise ValueError(f"window {w!r} is not HH:MM-HH:MM (local time, e.g. 23:00-07:00)")
        return v

    @model_validator(mode="after")
    def _kind(self) -> SeriesDecl:
        if self.kind == "calendar" and not (self.windows or self.weekend):
            raise ValueError("a calendar series needs windows and/or weekend = true")
        if self.kind != "calendar" and (self.windows or self.weekend):
            raise ValueError("windows and weekend belong to kind = 'calendar'")
        if (self.kind == "derived") != (self.rule is not None):
            raise ValueError("kind = 'derived' needs a rule (and only derived series have one)")
        return self

    @field_validator("fixed")
    @classmethod
    def _fixed(cls, v: str) -> str:
        if not _FIXED.fullmatch(v):
            raise ValueError(f"{v!r} is not day-ahead, month-start, contract or a duration such as PT4H")
        return v


class Component(_Strict):
    id: Ident
    label: str
    labels: dict[Literal["nl", "en", "fr"], str] = {}
    payee: Payee
    basis: Basis
    price: str | None = None
    bands: list[Band] | None = None
    of: list[str] | None = None
    fixed: str = "contract"
    vat: bool = True
    netted: bool = False  # quantity follows the plan's netting rule (e.g. energy tax under net metering)
    source: str = ""

    @field_validator("fixed")
    @classmethod
    def _fixed(cls, v: str) -> str:
        if not _FIXED.fullmatch(v):
            raise ValueError(f"{v!r} is not day-ahead, month-start, contract or a duration such as PT4H")
        return v

    @model_validator(mode="after")
    def _shape(self) -> Component:
        if (self.price is None) == (self.bands is None):
            raise ValueError("give either price or bands (not both, not neither)")
        if self.bands is not None:
            if self.basis not in ENERGY_BASES:
                raise ValueError(f"bands need basis import_kwh or export_kwh, not {self.basis}")
            limits = [b.up_to_kwh for b in self.bands]
            if not limits or limits[-1] is not None or any(x is None for x in limits[:-1]):
                raise ValueError("bands: every band but the last needs up_to_kwh; the last has none")
            bounded = [x for x in limits if x is not None]
            if any(b <= a for a, b in itertools.pairwise(bounded)) or (bounded and bounded[0] <= 0):
                raise ValueError("bands: up_to_kwh must be positive and increasing")
        if (self.basis == "percent") != (self.of is not None):
            raise ValueError("basis percent needs of = [component ids]; other bases take no of")
        if self.netted and self.basis != "import_kwh":
            raise ValueError("only an import_kwh component can be netted")
        return self

    @property
    def unit(self) -> str:
        return UNITS[self.basis]

    def label_in(self, locale: str) -> str:
        return self.labels.get(locale, self.label)  # type: ignore[call-overload]


class Plan(_Strict):
    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9.\-_]*$", max_length=60)]
    name: str
    description: str = ""
    currency: Literal["EUR"] = "EUR"
    timezone: str = "Europe/Amsterdam"
    vat_rate: Decimal
    netting: Literal["none", "annual"] = "none"
    valid_from: date | None = None
    valid_to: date | None = None
    parameters: dict[Ident, Decimal] = {}
    series: list[SeriesDecl] = []
    components: list[Component]

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r} (e.g. Europe/Amsterdam)") from None
        return v

    @field_validator("vat_rate")
    @classmethod
    def _vat(cls, v: Decimal) -> Decimal:
        if not Decimal(0) <= v < 1:
            raise ValueError(f"{v} is not a fraction: write 0.21 for 21 %")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Plan:
        if not self.components:
            raise ValueError("a plan needs at least one component")
        clash = set(self.parameters) & ({s.id for s in self.series} | set(BUILTIN_SERIES))
        if clash:
            raise ValueError(f"name(s) {', '.join(sorted(clash))} used for both a parameter and a series")
        if self.netting == "annual" and not any(c.netted for c in self.components):
            raise ValueError("netting = 'annual' but no component has netted = true")
        return self

    def names(self) -> frozenset[str]:
        """Every name a price expression may read: market, declared series, parameters."""
        return frozenset(BUILTIN_SERIES) | {s.id for s in self.series} | set(self.parameters)

    def component(self, cid: str) -> Component:
        for c in self.components:
            if c.id == cid:
                return c
        raise KeyError(cid)


class CompiledComponent:
    """A component with its expressions parsed and checked against the plan's names."""

    def __init__(self, plan: Plan, comp: Component, index: int, where: str):
        self.spec = comp
        self.index = index
        names = plan.names()
        series_names = names - set(plan.parameters)

        def compile_one(text: str, field: str) -> Expression:
            try:
                e = parse(text, names)
            except ExpressionError as exc:
                raise PlanError(
                    f"{where}: component {comp.id!r} (components[{index}]), field {field!r}: {exc}") from None
            if comp.basis in PERIOD_BASES and e.names & series_names:
                raise PlanError(
                    f"{where}: component {comp.id!r} (components[{index}]), field {field!r}: a {comp.basis} price "
                    f"cannot read the series {', '.join(sorted(e.names & series_names))}; use constants or parameters"
                )
            return e

        self.price = compile_one(comp.price, "price") if comp.price is not None else None
        self.bands = [(b.up_to_kwh, compile_one(b.price, f"bands[{i}].price")) for i, b in enumerate(comp.bands or [])]
        for j, other in enumerate(comp.of or []):
            earlier = [c.id for c in plan.components[:index]]
            if other not in earlier:
                raise PlanError(
                    f"{where}: component {comp.id!r} (components[{index}]), field 'of[{j}]': {other!r} is not a "
                    f"component defined before it (defined before: {', '.join(earlier) or 'none'})"
                )
            if plan.component(other).basis == "percent":
                raise PlanError(f"{where}: component {comp.id!r} (components[{index}]), field 'of[{j}]': "
                                f"{other!r} is itself a percent component; name energy or fixed components")


class LoadedPlan:
    """A validated plan with compiled expressions and where it came from."""

    def __init__(self, plan: Plan, where: str):
        self.plan = plan
        self.where = where
        _unique_ids(plan, where)
        self.components = [CompiledComponent(plan, c, i, where) for i, c in enumerate(plan.components)]
        for name, value in plan.parameters.items():
            if not value.is_finite():
                raise PlanError(f"{where}: parameter {name!r} is not a finite number")

    @property
    def id(self) -> str:
        return self.plan.id

    def env_constants(self) -> dict[str, Decimal]:
        return dict(self.plan.parameters)


def _unique_ids(plan: Plan, where: str) -> None:
    """Component and series ids are unique, and no series takes a built-in name."""
    seen: dict[str, int] = {}
    for i, c in enumerate(plan.components):
        if c.id in seen:
            raise PlanError(f"{where}: component {c.id!r} (components[{i}]), field 'id': {c.id!r} is already the id "
                            f"of components[{seen[c.id]}]; ids must be unique")
        seen[c.id] = i
    names: dict[str, int] = {}
    for i, decl in enumerate(plan.series):
        if decl.id in BUILTIN_SERIES:
            raise PlanError(f"{where}: series {decl.id!r} (series[{i}]), field 'id': {decl.id!r} is built in "
                            "(the day-ahead price); choose another name")
        if decl.id in names:
            raise PlanError(f"{where}: series {decl.id!r} (series[{i}]), field 'id': already the id of "
                            f"series[{names[decl.id]}]")
        names[decl.id] = i


def _format_validation(where: str, data: dict, exc: ValidationError) -> str:
    lines = []
    raw_comps = data.get("components")
    comps: list[Any] = raw_comps if isinstance(raw_comps, list) else []
    for err in exc.errors():
        loc = list(err["loc"])
        prefix = where
        if len(loc) >= 2 and loc[0] == "components" and isinstance(loc[1], int):
            idx = loc[1]
            cid = comps[idx].get("id") if idx < len(comps) and isinstance(comps[idx], dict) else None
            prefix += f": component {cid!r} (components[{idx}])" if cid else f": components[{idx}]"
            loc = loc[2:]
        elif len(loc) >= 2 and loc[0] == "series" and isinstance(loc[1], int):
            raw = data.get("series")
            decls: list[Any] = raw if isinstance(raw, list) else []
            sid = decls[loc[1]].get("id") if loc[1] < len(decls) and isinstance(decls[loc[1]], dict) else None
            prefix += f": series {sid!r} (series[{loc[1]}])" if sid else f": series[{loc[1]}]"
            loc = loc[2:]
        lines.append(validation_line(prefix, loc, err))
    return "\n".join(lines)


def validation_line(prefix: str, loc: list[Any], err: Any) -> str:
    """One pydantic error as a line a person can act on: ``<file: table>, field 'x': what is wrong``.

    ``prefix`` names the file and the table or item; ``loc`` is what is left of the error's location
    (pydantic's validator steps such as ``function-after[...]`` are left out).
    """
    field = ".".join(str(x) for x in loc if not str(x).startswith("function-"))
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown field (a typo?)"
    elif err["type"] == "missing":
        msg = "is required"
    return f"{prefix}, field {field!r}: {msg}" if field else f"{prefix}: {msg}"


def plan_from_text(text: str, where: str) -> LoadedPlan:
    """Parse and validate a plan from TOML text; ``where`` names it in messages."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PlanError(f"{where}: not valid TOML: {exc}") from None
    try:
        plan = Plan.model_validate(data)
    except ValidationError as exc:
        raise PlanError(_format_validation(where, data, exc)) from None
    return LoadedPlan(plan, where)


def builtin_ids() -> list[str]:
    """The ids of the plans that ship with kwartier."""
    folder = resources.files("kwartier.tariffs") / "plans"
    return sorted(p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml"))


def load_plan(ref: str | Path) -> LoadedPlan:
    """Load a plan from a TOML file path, or a built-in plan by its id."""
    p = Path(ref)
    if p.suffix == ".toml" or p.exists():
        if not p.is_file():
            raise PlanError(f"{p}: no such plan file")
        return plan_from_text(p.read_text(encoding="utf-8"), str(p))
    return _builtin_plan(str(ref))


@cache
def _builtin_plan(ref: str) -> LoadedPlan:
    """A built-in plan, loaded once per process: it ships with the package and never changes while running,
    so its compiled expressions (and what they remember, see compose.evaluate_micro) are shared."""
    ids = builtin_ids()
    if ref not in ids:
        raise PlanError(f"no plan {ref!r}: not a file, nor a built-in plan ({', '.join(ids)})")
    res = resources.files("kwartier.tariffs") / "plans" / f"{ref}.toml"
    loaded = plan_from_text(res.read_text(encoding="utf-8"), f"built-in plan {ref}")
    if loaded.id != ref:
        raise PlanError(f"built-in plan file {ref}.toml has id {loaded.id!r}")
    return loaded
