"""Explain a quarter-hour's price: each component, its value, where it comes from, in nl, en or fr."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

import polars as pl
from babel.numbers import format_decimal

from kwartier.tariffs.compose import quarters_of
from kwartier.tariffs.lifecycle import prices
from kwartier.tariffs.plan import LoadedPlan
from kwartier.timegrid import floor_to_grid, format_local, iso_utc

LOCALES = {"nl": "nl_NL", "en": "en_GB", "fr": "fr_FR"}

_PAYEE = {
    "supplier": {"nl": "voor je leverancier", "en": "for your supplier", "fr": "pour votre fournisseur"},
    "grid": {"nl": "voor de netbeheerder", "en": "for the grid operator", "fr": "pour le gestionnaire de réseau"},
    "tax": {"nl": "belasting, voor de overheid", "en": "a tax, for the government", "fr": "une taxe, pour l'État"},
    "aggregator": {"nl": "voor de aggregator", "en": "for the aggregator", "fr": "pour l'agrégateur"},
    "community": {"nl": "voor je energiegemeenschap", "en": "for your energy community",
                  "fr": "pour votre communauté d'énergie"},
}
_BASIS = {
    "import_kwh": {"nl": "per kWh die je van het net haalt", "en": "per kWh you take from the grid",
                   "fr": "par kWh prélevé sur le réseau"},
    "export_kwh": {"nl": "per kWh die je teruglevert", "en": "per kWh you feed in",
                   "fr": "par kWh injecté sur le réseau"},
}
_FIXED = {
    "day-ahead": {"nl": "vastgesteld door de day-ahead-veiling, om 12:45 de dag ervoor",
                  "en": "set by the day-ahead auction at 12:45 the day before",
                  "fr": "fixé par l'enchère day-ahead, à 12h45 la veille"},
    "month-start": {"nl": "vastgesteld aan het begin van de maand", "en": "set at the start of the month",
                    "fr": "fixé au début du mois"},
    "contract": {"nl": "vastgelegd in je contract", "en": "set in your contract", "fr": "fixé dans votre contrat"},
    "duration": {"nl": "vastgesteld {n} voor het kwartier", "en": "set {n} before the quarter-hour",
                 "fr": "fixé {n} avant le quart d'heure"},
}
_RECEIVE = {"nl": "je ontvangt", "en": "you receive", "fr": "vous recevez"}
_FROM_PAYEE = {
    "supplier": {"nl": "van je leverancier", "en": "from your supplier", "fr": "de votre fournisseur"},
    "grid": {"nl": "van de netbeheerder", "en": "from the grid operator", "fr": "du gestionnaire de réseau"},
    "tax": {"nl": "van de overheid", "en": "from the government", "fr": "de l'État"},
    "aggregator": {"nl": "van de aggregator", "en": "from the aggregator", "fr": "de l'agrégateur"},
    "community": {"nl": "van je energiegemeenschap", "en": "from your energy community",
                  "fr": "de votre communauté d'énergie"},
}
_STATUS = {
    "fixed": {"nl": "definitief", "en": "final", "fr": "définitif"},
    "forecast": {"nl": "voorspelling", "en": "forecast", "fr": "prévision"},
}
_HOURS = {"nl": "{n} uur", "en": "{n} hours", "fr": "{n} heures"}
_MINUTES = {"nl": "{n} minuten", "en": "{n} minutes", "fr": "{n} minutes"}


@dataclass(frozen=True)
class ComponentExplanation:
    component: str
    label: str
    payee: str
    eur_per_kwh: Decimal
    status: str
    known_at: datetime | None
    formula: str
    sentence: str

    def to_json(self) -> dict[str, object]:
        return {"component": self.component, "label": self.label, "payee": self.payee,
                "eur_per_kwh": str(self.eur_per_kwh), "status": self.status, "known_at": iso_utc(self.known_at),
                "formula": self.formula, "sentence": self.sentence}


def number(value: Decimal, locale: str) -> str:
    return format_decimal(value, locale=LOCALES[locale], format="#,##0.00###")


def _fixed_phrase(fixed: str, locale: str) -> str:
    if fixed in _FIXED:
        return _FIXED[fixed][locale]
    m = re.fullmatch(r"PT(\d+)([HM])", fixed)
    assert m is not None
    amount = (_HOURS if m.group(2) == "H" else _MINUTES)[locale].format(n=m.group(1))
    return _FIXED["duration"][locale].format(n=amount)


def explain(
    plan: LoadedPlan, market: pl.DataFrame, ts: datetime, known_at: datetime, locale: str = "en",
    inputs: dict[str, pl.DataFrame] | None = None,
) -> list[ComponentExplanation]:
    """The energy components of the quarter containing ``ts``, as known at ``known_at``, explained."""
    if locale not in LOCALES:
        raise ValueError(f"locale {locale!r}: choose one of {', '.join(LOCALES)}")
    q = floor_to_grid(ts)
    table = prices(plan, market, q, q + timedelta(minutes=15), known_at, inputs)
    values = _series_values(plan, market, q, known_at, inputs)
    out = []
    for comp in plan.components:
        spec = comp.spec
        if spec.basis not in _BASIS or comp.price is None:
            continue
        row = table.filter(pl.col("component") == spec.id).row(0, named=True)
        eur = Decimal(row["price_ueur_per_kwh"]).scaleb(-6)
        formula = _render(comp.price.text, values | {k: v for k, v in plan.plan.parameters.items()}, locale)
        label = spec.label_in(locale)
        status = _STATUS[row["status"]][locale]
        if eur < 0:  # the payee pays the participant
            amount = f"{_RECEIVE[locale]} {number(-eur, locale)} EUR"
            who = _FROM_PAYEE[spec.payee][locale]
        else:
            amount, who = f"{number(eur, locale)} EUR", _PAYEE[spec.payee][locale]
        sentence = (f"{label}: {amount} {_BASIS[spec.basis][locale]} ({formula}), {who}; "
                    f"{_fixed_phrase(spec.fixed, locale)} ({status}).")
        out.append(ComponentExplanation(spec.id, label, spec.payee, eur, row["status"], row["known_at"], formula,
                                        sentence))
    return out


def _series_values(plan: LoadedPlan, market: pl.DataFrame, q: datetime, known_at: datetime,
                   inputs: dict[str, pl.DataFrame] | None) -> dict[str, Decimal]:
    """The value of each series at quarter ``q`` (market as known then, else its forecast)."""
    from kwartier.tariffs.compose import series_env
    from kwartier.tariffs.lifecycle import baseline_forecast, market_as_known

    known = market_as_known(market, known_at)
    frame = pl.DataFrame({"interval_start": [q], "resolution": ["PT15M"]}).with_columns(
        pl.col("interval_start").dt.cast_time_unit("us"))
    has = quarters_of(known.select("interval_start", "resolution"))["quarter"].is_in([q]).any()
    source = known if has else baseline_forecast(known, frame["interval_start"], plan.plan.timezone)
    visible = {k: v.filter(pl.col("known_at") <= known_at) for k, v in (inputs or {}).items()}
    env = series_env(plan, frame, source, visible)
    return {c: Decimal(env[c][0]).scaleb(-9) for c in env.columns if c not in ("interval_start", "resolution")}


def _render(text: str, values: dict[str, Decimal], locale: str) -> str:
    def sub(m: re.Match[str]) -> str:
        name = m.group(0)
        return number(values[name], locale) if name in values else name

    return re.sub(r"[A-Za-z_][A-Za-z0-9_]*", sub, text)


def headline(plan: LoadedPlan, ts: datetime, locale: str) -> str:
    """A title such as ``Dynamic NL 2026, 2025-10-26 02:00 (+01:00)``."""
    return f"{plan.plan.name}, {format_local(ts, plan.plan.timezone)}"
