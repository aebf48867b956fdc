"""Public prices for home automation: Home Assistant MQTT discovery sensors and evcc's custom tariff JSON.

From a plan's per-component prices (``kwartier.tariffs.lifecycle.prices``) this module derives one
price per quarter for each direction:

- ``grid``: what a kWh taken costs, the sum of the plan's ``import_kwh`` components;
- ``feedin``: what a kWh fed in earns, minus the sum of its ``export_kwh`` components (a plan
  writes feed-in pay with a minus sign; evcc and Home Assistant expect it positive).

Prices exclude VAT unless asked (``with_vat``); banded components (the Dutch energy tax) have no
price per quarter and are not included, as in ``/api/v1/prices``.

evcc: its ``custom`` tariff reads, with ``forecast: {source: http, uri: ...}``, a JSON list of
``{"start": ISO, "end": ISO, "value": EUR per kWh}`` (docs.evcc.io, reference/configuration/tariffs).
Home Assistant: discovery configs on ``homeassistant/sensor/kwartier_<plan>_<what>/config`` for the
price now, the price of the next quarter and the cheapest window of today; the states are on
``<prefix>/<community>/prices/<plan>/<what>`` (see docs/mqtt.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Literal

import polars as pl

from kwartier.steer.mqtt import Message, community_topic, encode, status_topic, topic_segment
from kwartier.tariffs.plan import LoadedPlan
from kwartier.timegrid import QUARTER, floor_to_grid, iso_utc, local_date_of, local_day_bounds

Direction = Literal["grid", "feedin"]
MICRO = Decimal("0.000001")
HA_PREFIX = "homeassistant"
WHATS = ("current", "next", "cheapest_window")


@dataclass(frozen=True)
class QuarterPrice:
    """The price of one quarter-hour in EUR per kWh, ``fixed`` or ``forecast``."""

    start: datetime
    eur_per_kwh: Decimal
    status: str

    @property
    def end(self) -> datetime:
        return self.start + QUARTER


@dataclass(frozen=True)
class Window:
    """A run of consecutive quarters and its mean price (EUR/kWh)."""

    start: datetime
    end: datetime
    mean_eur_per_kwh: Decimal


def quarter_prices(table: pl.DataFrame, plan: LoadedPlan, direction: Direction = "grid", *,
                   with_vat: bool = False) -> list[QuarterPrice]:
    """One price per quarter from a per-component price table (``interval_start``, ``component``,
    ``price_ueur_per_kwh``, ``status``), summing the components of ``direction``.

    A quarter is ``forecast`` when any of its parts is. With VAT, the plan's rate is applied to the
    components subject to it and the result rounded to the micro-euro (half-even).
    """
    basis = "import_kwh" if direction == "grid" else "export_kwh"
    sign = 1 if direction == "grid" else -1
    vat_factor = 1 + plan.plan.vat_rate
    factor = {c.spec.id: (vat_factor if with_vat and c.spec.vat else Decimal(1)) * sign
              for c in plan.components if c.spec.basis == basis and c.price is not None}
    if table.is_empty() or not factor:
        return []
    parts = table.filter(pl.col("component").is_in(list(factor))).sort("interval_start")
    out = []
    for (start,), rows in parts.group_by(["interval_start"], maintain_order=True):
        micro = sum(Decimal(int(p)) * factor[c] for c, p in zip(rows["component"], rows["price_ueur_per_kwh"],
                                                                  strict=True))
        status = "forecast" if (rows["status"] == "forecast").any() else "fixed"
        out.append(QuarterPrice(start, (micro * MICRO).quantize(MICRO, ROUND_HALF_EVEN), status))
    return out


def evcc_rates(quarters: Sequence[QuarterPrice]) -> list[dict[str, object]]:
    """evcc's custom tariff forecast: ``[{"start", "end", "value"}]``, UTC ISO times, value in EUR/kWh."""
    return [{"start": iso_utc(q.start), "end": iso_utc(q.end), "value": float(q.eur_per_kwh)}
            for q in sorted(quarters, key=lambda q: q.start)]


def price_at(quarters: Sequence[QuarterPrice], when: datetime) -> QuarterPrice | None:
    """The price of the quarter that contains ``when``, if known."""
    start = floor_to_grid(when)
    return next((q for q in quarters if q.start == start), None)


def cheapest_window(quarters: Sequence[QuarterPrice], now: datetime, tz: str, length: int = 4) -> Window | None:
    """The cheapest run of ``length`` consecutive quarters from the current quarter to the end of today
    (local day in ``tz``); the earliest one on a tie. None when no such run is known.
    """
    if length < 1:
        raise ValueError(f"a window needs at least one quarter, not {length}")
    first = floor_to_grid(now)
    _, day_end = local_day_bounds(local_date_of(now, tz), tz)
    ahead = sorted((q for q in quarters if first <= q.start < day_end), key=lambda q: q.start)
    best: Window | None = None
    for i in range(len(ahead) - length + 1):
        run = ahead[i:i + length]
        if run[-1].start - run[0].start != QUARTER * (length - 1):  # a gap: not consecutive
            continue
        mean = (sum((q.eur_per_kwh for q in run), Decimal(0)) / length).quantize(MICRO, ROUND_HALF_EVEN)
        if best is None or mean < best.mean_eur_per_kwh:
            best = Window(run[0].start, run[-1].end, mean)
    return best


def _slug(plan_id: str) -> str:
    """A plan id as Home Assistant accepts in an object id: [a-zA-Z0-9_-], anything else becomes ``_``."""
    return "".join(ch if ch.isascii() and (ch.isalnum() or ch in "_-") else "_" for ch in plan_id)


def price_topic(prefix: str, community: str, plan_id: str, *what: str) -> str:
    """``<prefix>/<community>/prices/<plan>/<what...>``."""
    return community_topic(prefix, community, "prices", topic_segment(plan_id, "plan id"), *what)


def ha_discovery_messages(prefix: str, community: str, plan_id: str, *, window_quarters: int = 4,
                          discovery_prefix: str = HA_PREFIX) -> list[Message]:
    """Retained discovery configs for three sensors of ``plan_id``: price now, next quarter, cheapest window."""
    slug = _slug(plan_id)
    device = {"identifiers": [f"kwartier_{slug}"], "name": f"kwartier {plan_id}", "manufacturer": "kwartier",
              "model": plan_id}
    minutes = window_quarters * 15
    names = {"current": "Electricity price now", "next": "Electricity price next quarter",
             "cheapest_window": f"Cheapest {minutes} minutes today"}
    messages = []
    for what in WHATS:
        config: dict[str, object] = {
            "name": names[what], "unique_id": f"kwartier_{slug}_{what}",
            "state_topic": price_topic(prefix, community, plan_id, what),
            "availability_topic": status_topic(prefix, community), "device": device}
        if what == "cheapest_window":
            attributes = price_topic(prefix, community, plan_id, "cheapest_window", "attributes")
            config |= {"device_class": "timestamp", "icon": "mdi:clock-check-outline",
                       "json_attributes_topic": attributes}
        else:
            config |= {"unit_of_measurement": "EUR/kWh", "state_class": "measurement",
                       "suggested_display_precision": 4, "icon": "mdi:currency-eur"}
        topic = f"{discovery_prefix}/sensor/kwartier_{slug}_{what}/config"
        messages.append(Message(topic, encode(config)))
    return messages


def price_state_messages(prefix: str, community: str, plan_id: str, quarters: Sequence[QuarterPrice],
                         now: datetime, tz: str, *, window_quarters: int = 4) -> list[Message]:
    """The retained states: price now and next (EUR/kWh as text, ``None`` when unknown: Home Assistant
    shows *unknown*), the cheapest window's start (ISO) with its attributes, and the fixed quarters (evcc shape).
    """
    now_q, next_q = price_at(quarters, now), price_at(quarters, floor_to_grid(now) + QUARTER)
    window = cheapest_window(quarters, now, tz, window_quarters)
    attributes: dict[str, object] = {"quarters": window_quarters}
    if window is not None:
        attributes |= {"start": iso_utc(window.start), "end": iso_utc(window.end),
                       "mean_eur_per_kwh": str(window.mean_eur_per_kwh)}

    def topic(*what: str) -> str:
        return price_topic(prefix, community, plan_id, *what)

    return [
        Message(topic("current"), str(now_q.eur_per_kwh).encode() if now_q else b"None"),
        Message(topic("next"), str(next_q.eur_per_kwh).encode() if next_q else b"None"),
        Message(topic("cheapest_window"), window.start.isoformat().encode() if window else b"None"),
        Message(topic("cheapest_window", "attributes"), encode(attributes)),
        Message(topic("quarters"), encode(evcc_rates([q for q in quarters if q.status == "fixed"]))),
    ]

