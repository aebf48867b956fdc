"""Why each planned action: a reason per device and quarter, worded in Dutch, English or French.

A :class:`Reason` is a code plus its figures (prices in EUR/kWh, local times); :func:`reason_text`
words it. Reasons are derived from the plan and the prices the plan saw: the battery's spread
against its wear cost, the cheapest quarters before an EV's departure, pre-heating ahead of dear
hours, an appliance's cheapest start, and congestion prices.
"""

from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo

import numpy as np

from kwartier.steer.problem import Powers, Problem, appliance_starts, effective_prices_eur, ev_window

LOCALES = ("nl", "en", "fr")
ON_KW = 1e-3
CONGESTED_UEUR = 1_000  # a congestion price above 0.001 EUR/kWh is worth mentioning (below: tie-breaks)

TEMPLATES: dict[str, dict[str, str]] = {
    "battery_charge": {
        "en": "charging at {price} EUR/kWh to use later at {later}: spread {spread} EUR/kWh above wear cost {wear}",
        "nl": "laden voor {price} EUR/kWh om later te gebruiken bij {later}: verschil {spread} EUR/kWh boven "
              "slijtagekosten {wear}",
        "fr": "charge à {price} EUR/kWh pour usage ultérieur à {later} : écart {spread} EUR/kWh au-dessus du coût "
              "d'usure {wear}",
    },
    "battery_solar": {
        "en": "storing solar surplus that would be exported at {price} EUR/kWh",
        "nl": "zonne-overschot opslaan dat anders voor {price} EUR/kWh teruggeleverd zou worden",
        "fr": "stockage du surplus solaire qui serait injecté à {price} EUR/kWh",
    },
    "battery_end": {
        "en": "charging to reach the end level of {soc} kWh",
        "nl": "laden om het eindniveau van {soc} kWh te halen",
        "fr": "charge pour atteindre le niveau final de {soc} kWh",
    },
    "battery_discharge": {
        "en": "discharging at {price} EUR/kWh, charged at {earlier}: spread {spread} EUR/kWh above wear cost {wear}",
        "nl": "ontladen bij {price} EUR/kWh, geladen voor {earlier}: verschil {spread} EUR/kWh boven "
              "slijtagekosten {wear}",
        "fr": "décharge à {price} EUR/kWh, chargée à {earlier} : écart {spread} EUR/kWh au-dessus du coût "
              "d'usure {wear}",
    },
    "battery_idle": {
        "en": "idle: no spread above the wear cost of {wear} EUR/kWh plus losses pays now",
        "nl": "rust: geen prijsverschil boven de slijtagekosten van {wear} EUR/kWh plus verliezen loont nu",
        "fr": "au repos : aucun écart au-dessus du coût d'usure de {wear} EUR/kWh plus les pertes ne paie maintenant",
    },
    "congestion_ahead": {
        "en": "{action} before the congestion price ahead at {when}",
        "nl": "{action} vóór de congestieprijs om {when}",
        "fr": "{action} avant le prix de congestion à {when}",
    },
    "congestion_now": {
        "en": "holding back: congestion price {price} EUR/kWh in this quarter",
        "nl": "terughoudend: congestieprijs {price} EUR/kWh in dit kwartier",
        "fr": "en retrait : prix de congestion {price} EUR/kWh dans ce quart d'heure",
    },
    "ev_charge": {
        "en": "cheapest {n} quarters before the {when} departure",
        "nl": "goedkoopste {n} kwartieren vóór vertrek om {when}",
        "fr": "les {n} quarts d'heure les moins chers avant le départ de {when}",
    },
    "ev_wait": {
        "en": "waiting for cheaper quarters before the {when} departure",
        "nl": "wacht op goedkopere kwartieren vóór vertrek om {when}",
        "fr": "attend des quarts d'heure moins chers avant le départ de {when}",
    },
    "ev_absent": {"en": "not plugged in", "nl": "niet aangesloten", "fr": "non branché"},
    "ev_done": {"en": "the energy needed is in the car", "nl": "de benodigde energie zit in de auto",
                "fr": "l'énergie nécessaire est dans la voiture"},
    "hp_preheat": {
        "en": "pre-heating to {temp} °C at {price} EUR/kWh, cheaper than the coming hours",
        "nl": "voorverwarmen tot {temp} °C voor {price} EUR/kWh, goedkoper dan de komende uren",
        "fr": "préchauffage à {temp} °C à {price} EUR/kWh, moins cher que les heures à venir",
    },
    "hp_hold": {
        "en": "heating to hold the comfort minimum of {min} °C",
        "nl": "verwarmen om het comfortminimum van {min} °C te houden",
        "fr": "chauffage pour tenir le minimum de confort de {min} °C",
    },
    "hp_idle": {
        "en": "off: indoor {temp} °C stays within the comfort band",
        "nl": "uit: binnen {temp} °C blijft binnen de comfortband",
        "fr": "arrêt : {temp} °C à l'intérieur reste dans la plage de confort",
    },
    "app_run": {
        "en": "running: the cheapest start ({when}) between {first} and {last}",
        "nl": "draait: de goedkoopste start ({when}) tussen {first} en {last}",
        "fr": "en marche : le départ le moins cher ({when}) entre {first} et {last}",
    },
    "app_wait": {"en": "waits for its start at {when}", "nl": "wacht op de start om {when}",
                 "fr": "attend son départ à {when}"},
    "app_off": {"en": "not running", "nl": "draait niet", "fr": "à l'arrêt"},
    "action_charge": {"en": "charging", "nl": "laden", "fr": "charge"},
    "action_heat": {"en": "pre-heating", "nl": "voorverwarmen", "fr": "préchauffage"},
}


@dataclass(frozen=True)
class Reason:
    """Why a device does what it does in a quarter: a template code and its figures."""

    code: str
    params: tuple[tuple[str, float | str], ...] = ()


ONE_DECIMAL = ("temp", "min", "soc")


def _fmt(key: str, value: float | str, locale: str) -> str:
    if isinstance(value, str):
        return value
    if key in ONE_DECIMAL:
        text = f"{value:.1f}"
    else:
        text = f"{value:.3f}" if value != 0 and abs(value) < 0.1 else f"{value:.2f}"
    return text.replace(".", ",") if locale in ("nl", "fr") else text


def reason_text(reason: Reason, locale: str = "en") -> str:
    """The reason as a sentence in ``locale`` (nl, en or fr)."""
    if locale not in LOCALES:
        raise ValueError(f"unknown locale {locale!r}: choose nl, en or fr")
    params = {k: _fmt(k, v, locale) for k, v in reason.params}
    if reason.code == "congestion_ahead":
        params["action"] = TEMPLATES[str(params.get("action", "action_charge"))][locale]
    return TEMPLATES[reason.code][locale].format(**params)


def _local(problem: Problem, q: int) -> str:
    from datetime import timedelta

    ts = problem.starts[min(q, problem.n - 1)] + (timedelta(minutes=15) if q >= problem.n else timedelta(0))
    return ts.astimezone(ZoneInfo(problem.tz)).strftime("%H:%M")


def explain(problem: Problem, powers: Powers) -> dict[str, list[Reason]]:
    """A reason per device and quarter of the plan."""
    imp, exp = effective_prices_eur(problem)
    net = problem.base_kw - problem.pv_kw + sum(powers.kw.values(), np.zeros(problem.n))
    if powers.curtail_kw is not None:
        net = net + powers.curtail_kw
    marginal = np.where(net > 0, imp, exp)  # what one more kWh costs (or earns back) in each quarter
    congestion = problem.congestion_import_ueur_per_kwh
    out: dict[str, list[Reason]] = {}
    for bat in problem.devices.battery:
        out[bat.id] = _battery(problem, bat, powers.kw[bat.id], marginal, exp, congestion)
    for ev in problem.devices.ev:
        out[ev.id] = _ev(problem, ev, powers.kw[ev.id])
    for hp in problem.devices.heat_pump:
        out[hp.id] = _heat_pump(problem, hp, powers.kw[hp.id], powers.indoor_c.get(hp.id), marginal, congestion)
    for app in problem.devices.appliance:
        out[app.id] = _appliance(problem, app, powers.kw[app.id])
    return out


def _congested_after(congestion: np.ndarray | None, t: int) -> int | None:
    if congestion is None:
        return None
    ahead = np.flatnonzero(congestion[t + 1:] > CONGESTED_UEUR)
    return int(t + 1 + ahead[0]) if len(ahead) else None


def _battery(problem: Problem, bat, kw: np.ndarray, marginal: np.ndarray, exp: np.ndarray,  # type: ignore[no-untyped-def]
             congestion: np.ndarray | None) -> list[Reason]:
    wear = float(bat.wear_cost_eur_per_kwh)
    charge, discharge = np.maximum(kw, 0), np.maximum(-kw, 0)
    reasons: list[Reason] = []
    for t in range(problem.n):
        if kw[t] > ON_KW:
            later_w = discharge[t + 1:]
            jam = _congested_after(congestion, t)
            if jam is not None:
                reasons.append(Reason("congestion_ahead", (("action", "action_charge"),
                                                           ("when", _local(problem, jam)))))
            elif marginal[t] == exp[t] and problem.pv_kw[t] > problem.base_kw[t]:
                reasons.append(Reason("battery_solar", (("price", float(exp[t])),)))
            elif later_w.sum() > ON_KW:
                later = float((later_w * marginal[t + 1:]).sum() / later_w.sum())
                reasons.append(Reason("battery_charge", (("price", float(marginal[t])), ("later", later),
                                                         ("spread", later - float(marginal[t])), ("wear", wear))))
            else:
                reasons.append(Reason("battery_end", (("soc", bat.soc_end_min_kwh),)))
        elif kw[t] < -ON_KW:
            if congestion is not None and congestion[t] > CONGESTED_UEUR:
                reasons.append(Reason("congestion_now", (("price", float(congestion[t]) / 1e6),)))
                continue
            before_w = charge[:t]
            earlier = float((before_w * marginal[:t]).sum() / before_w.sum()) if before_w.sum() > ON_KW \
                else float(marginal[: t + 1].min())
            reasons.append(Reason("battery_discharge", (("price", float(marginal[t])), ("earlier", earlier),
                                                        ("spread", float(marginal[t]) - earlier), ("wear", wear))))
        else:
            reasons.append(Reason("battery_idle", (("wear", wear),)))
    return reasons


def _ev(problem: Problem, ev, kw: np.ndarray) -> list[Reason]:  # type: ignore[no-untyped-def]
    a, d, _ = ev_window(ev, problem.starts)
    when = ev.departure.astimezone(ZoneInfo(problem.tz)).strftime("%H:%M")
    n_on = int((kw > ON_KW).sum())
    charged_by = np.cumsum(kw)
    total = charged_by[-1] if len(charged_by) else 0.0
    out = []
    for t in range(problem.n):
        if not a <= t < d:
            out.append(Reason("ev_absent"))
        elif kw[t] > ON_KW:
            out.append(Reason("ev_charge", (("n", str(n_on)), ("when", when))))
        elif charged_by[t] >= total - ON_KW:
            out.append(Reason("ev_done"))
        else:
            out.append(Reason("ev_wait", (("when", when),)))
    return out


def _heat_pump(problem: Problem, hp, kw: np.ndarray, indoor: np.ndarray | None, marginal: np.ndarray,  # type: ignore[no-untyped-def]
               congestion: np.ndarray | None) -> list[Reason]:
    temps = indoor if indoor is not None else np.full(problem.n, hp.comfort_min_c)
    out = []
    for t in range(problem.n):
        if kw[t] > ON_KW:
            above = temps[t] > hp.comfort_min_c + 0.05
            jam = _congested_after(congestion, t)
            if above and jam is not None:
                out.append(Reason("congestion_ahead", (("action", "action_heat"), ("when", _local(problem, jam)))))
            elif above:
                out.append(Reason("hp_preheat", (("temp", round(float(temps[t]), 1)), ("price", float(marginal[t])))))
            else:
                out.append(Reason("hp_hold", (("min", hp.comfort_min_c),)))
        else:
            out.append(Reason("hp_idle", (("temp", round(float(temps[t]), 1)),)))
    return out


def _appliance(problem: Problem, app, kw: np.ndarray) -> list[Reason]:  # type: ignore[no-untyped-def]
    running = np.flatnonzero(kw > 0)
    starts = appliance_starts(app, problem.starts)
    if len(running) == 0 or len(starts) == 0:
        return [Reason("app_off") for _ in range(problem.n)]
    k = int(running[0])
    tz = ZoneInfo(problem.tz)
    first = app.earliest_start.astimezone(tz).strftime("%H:%M")
    last = app.latest_end.astimezone(tz).strftime("%H:%M")
    out = []
    for t in range(problem.n):
        if k <= t < k + len(app.profile_kw):
            out.append(Reason("app_run", (("when", _local(problem, k)), ("first", first), ("last", last))))
        elif t < k:
            out.append(Reason("app_wait", (("when", _local(problem, k)),)))
        else:
            out.append(Reason("app_off"))
    return out


__all__ = ["LOCALES", "TEMPLATES", "Reason", "explain", "reason_text"]
