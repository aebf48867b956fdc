"""The `steer run` use case: every quarter, plan each household against the prices known now and publish set-points.

A cycle (:func:`run_cycle`):

1. reads the households of a folder: one device TOML per connection, the file name is its EAN;
2. takes the plan's marginal import and export price per quarter for the horizon as known now
   (taxes and VAT included, as ``kwartier plan --plan``): market prices where published, the
   plan's forecast beyond (``kwartier.tariffs.lifecycle``);
3. plans each household with the optimiser (``kwartier.steer.optimize``, reasons from
   ``kwartier.steer.explain``) and publishes, per device,
   the current quarter's set-point and the whole schedule over MQTT (``kwartier.steer.mqtt``);
4. publishes the plan's prices for Home Assistant (``kwartier.steer.publish``).

The loop (:func:`run_loop`) runs a cycle ``lead`` seconds before each quarter starts, so set-points
are there when the quarter begins. Batteries start each cycle from the state of charge they
reported over MQTT (``.../<device>/state``), else from what the previous cycle planned for now, else
(the first cycle) from the device file's ``soc_start_kwh``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
from sqlalchemy import Engine

from kwartier.ids import InvalidIdentifier, validate_ean18
from kwartier.services.prices import day_prices, stored_prices
from kwartier.steer.mqtt import DEFAULT_PREFIX, Message, MqttError, SetPoint, setpoint_messages
from kwartier.steer.publish import (
    HA_PREFIX,
    Direction,
    QuarterPrice,
    ha_discovery_messages,
    price_state_messages,
    quarter_prices,
)
from kwartier.tariffs.lifecycle import FORECAST_HORIZON, BeyondHorizon, market_as_known
from kwartier.tariffs.plan import LoadedPlan
from kwartier.timegrid import QUARTER, floor_to_grid, interval_starts, iso_utc, local_date_of

if TYPE_CHECKING:
    from kwartier.steer.devices import Devices

DEFAULT_HORIZON = timedelta(hours=24)
DEFAULT_LEAD = timedelta(seconds=60)
HISTORY = timedelta(days=8)  # market history the forecast baseline reads


class SteeringError(ValueError):
    """A household folder or cycle that cannot be used; the message names the file and what is wrong."""


class Sink(Protocol):
    """Where messages go: a connected :class:`kwartier.steer.mqtt.MqttPublisher` (or anything alike)."""

    def publish(self, messages: Sequence[Message]) -> int: ...


#: plans one household: (devices, quarter starts, import µEUR/kWh, export µEUR/kWh, tz) -> set-points.
Planner = Callable[["Devices", tuple[datetime, ...], np.ndarray, np.ndarray, str], list[SetPoint]]


@dataclass(frozen=True)
class Household:
    """One connection: its EAN (the file name) and its devices."""

    ean: str
    path: Path
    devices: Devices


def load_households(folder: Path) -> tuple[list[Household], list[str]]:
    """Every ``<EAN>.toml`` in ``folder``; a file that cannot be used is skipped and named in the errors."""
    from kwartier.steer.devices import DeviceFileError, load_devices

    if not folder.is_dir():
        raise SteeringError(f"{folder}: not a folder of device files (one <EAN>.toml per connection)")
    households, errors = [], []
    for path in sorted(folder.glob("*.toml")):
        try:
            ean = validate_ean18(path.stem)
            households.append(Household(ean, path, load_devices(path)))
        except InvalidIdentifier as exc:
            errors.append(f"{path}: the file name must be the connection's EAN: {exc}")
        except DeviceFileError as exc:
            errors.append(str(exc))
    if not households and not errors:
        raise SteeringError(f"{folder}: no device files (*.toml, named by the connection's EAN)")
    return households, errors


# --- prices as known now -------------------------------------------------------------------------------


def steering_prices(engine: Engine, plan: LoadedPlan, zone: str, starts: tuple[datetime, ...],
                    known_at: datetime) -> tuple[np.ndarray, np.ndarray]:
    """The plan's marginal import and export prices (micro-euro/kWh, taxes and VAT included) for
    ``starts``, from the market prices known at ``known_at``; quarters not published yet get the
    plan's forecast. The same prices as ``kwartier plan --plan`` (``plan_prices``).
    """
    from kwartier.steer.prices import plan_prices

    stored = stored_prices(engine, zone, starts[0] - HISTORY, starts[-1] + QUARTER)
    p = plan_prices(plan, market_as_known(stored, known_at), starts)
    return p.import_ueur_per_kwh, p.export_ueur_per_kwh


def day_quarter_prices(engine: Engine, plan: LoadedPlan, zone: str, now: datetime, days: int = 2,
                       direction: Direction = "grid", *, with_vat: bool = False,
                       forecasts: bool = True) -> list[QuarterPrice]:
    """Today and the following local days (``days`` in all) as known ``now``, one price per quarter
    (see :func:`kwartier.steer.publish.quarter_prices`); a day beyond the forecast horizon or without
    market prices is left out, and so are forecast quarters when ``forecasts`` is false.
    """
    from kwartier.tariffs.compose import MissingData

    tz = plan.plan.timezone
    today = local_date_of(now, tz)
    out: list[QuarterPrice] = []
    for i in range(days):
        try:
            table = day_prices(engine, plan, zone, today + timedelta(days=i), now)
        except (BeyondHorizon, MissingData):
            continue
        out.extend(q for q in quarter_prices(table, plan, direction, with_vat=with_vat)
                   if forecasts or q.status == "fixed")
    return out


# --- planning ------------------------------------------------------------------------------------------


def optimiser_planner(time_limit_s: float = 10.0, locale: str = "en") -> Planner:
    """A :data:`Planner` over ``kwartier.steer.optimize.optimise`` (HiGHS), with the optimiser's reasons
    (``kwartier.steer.explain``) in ``locale`` (nl, en or fr).
    """

    def plan(devices: Devices, starts: tuple[datetime, ...], import_ueur: np.ndarray, export_ueur: np.ndarray,
             tz: str) -> list[SetPoint]:
        from kwartier.steer.explain import explain, reason_text
        from kwartier.steer.optimize import Prices, make_problem, optimise

        result = optimise(make_problem(devices, starts, Prices(import_ueur, export_ueur), tz),
                          time_limit_s=time_limit_s)
        reasons = explain(result.problem, result.powers)
        out = []
        for device, kws in sorted(result.powers.kw.items()):
            socs = result.powers.soc_kwh.get(device)
            for i, start in enumerate(starts):
                out.append(SetPoint(start, device, Decimal(str(round(float(kws[i]), 3))),
                                    None if socs is None else Decimal(str(round(float(socs[i]), 3))),
                                    reason_text(reasons[device][i], locale)))
        return out

    return plan


def with_soc(devices: Devices, soc_kwh: dict[str, Decimal]) -> Devices:
    """``devices`` with the batteries' start SOC replaced by ``soc_kwh`` (by battery id), clipped to capacity."""
    if not soc_kwh:
        return devices
    batteries = [b.model_copy(update={"soc_start_kwh": min(float(soc_kwh[b.id]), b.capacity_kwh)})
                 if b.id in soc_kwh else b for b in devices.battery]
    return devices.model_copy(update={"battery": batteries})


# --- one cycle -----------------------------------------------------------------------------------------


@dataclass
class CycleReport:
    """What one cycle did: when, which quarter it planned from, households, messages, errors."""

    at: datetime
    first_quarter: datetime
    households: int = 0
    planned: int = 0
    messages: int = 0
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict[str, object]:
        return {"at": iso_utc(self.at), "first_quarter": iso_utc(self.first_quarter), "households": self.households,
                "planned": self.planned, "messages": self.messages, "errors": self.errors,
                "seconds": round(self.seconds, 3)}


@dataclass
class SteeringState:
    """What a cycle hands to the next: the SOC each battery was planned to have, per EAN and battery id."""

    soc_kwh: dict[str, dict[str, Decimal]] = field(default_factory=dict)
    announced: bool = False


@dataclass(frozen=True)
class Settings:
    """How a community is steered."""

    community: str = "default"
    prefix: str = DEFAULT_PREFIX
    horizon: timedelta = DEFAULT_HORIZON
    lead: timedelta = DEFAULT_LEAD
    zone: str = "NL"
    home_assistant: bool = True
    ha_prefix: str = HA_PREFIX
    window_quarters: int = 4


def first_quarter(now: datetime, lead: timedelta) -> datetime:
    """The quarter a cycle at ``now`` plans from: the one starting within ``lead``, else the current one."""
    return floor_to_grid(now + lead)


def next_cycle_at(now: datetime, lead: timedelta) -> datetime:
    """The next moment ``lead`` before a quarter starts, strictly after ``now``."""
    at = floor_to_grid(now + lead) + QUARTER - lead
    return at if at > now else at + QUARTER


def run_cycle(engine: Engine, plan: LoadedPlan, folder: Path, sink: Sink, now: datetime, settings: Settings,
              planner: Planner, state: SteeringState | None = None,
              measured_soc: Mapping[str, Mapping[str, Decimal]] | None = None) -> CycleReport:
    """Plan every household in ``folder`` from the coming quarter and publish; errors are reported per household.

    A battery starts from its measured SOC (``measured_soc``: EAN -> battery id -> kWh, as devices
    report it), else from what the previous cycle planned, else from its device file.
    """
    t0 = time.perf_counter()
    state = state if state is not None else SteeringState()
    first = first_quarter(now, settings.lead)
    end = max(first + QUARTER, min(floor_to_grid(first + settings.horizon), floor_to_grid(now + FORECAST_HORIZON)))
    starts = tuple(interval_starts(first, end).to_list())
    report = CycleReport(now, first)
    households, report.errors = load_households(folder)
    report.households = len(households)
    messages: list[Message] = []
    if settings.home_assistant and not state.announced:
        messages += ha_discovery_messages(settings.prefix, settings.community, plan.id,
                                          window_quarters=settings.window_quarters, discovery_prefix=settings.ha_prefix)
    try:
        imports, exports = steering_prices(engine, plan, settings.zone, starts, now)
    except ValueError as exc:  # no market prices to start from, a plan steering cannot use, ...
        hint = "; import day-ahead prices first (kwartier import prices)" if "no day-ahead prices" in str(exc) else ""
        report.errors.append(f"prices of plan {plan.id}: {exc}{hint}")
        households = []
    for hh in households:
        try:
            devices = with_soc(hh.devices, {**state.soc_kwh.get(hh.ean, {}), **(measured_soc or {}).get(hh.ean, {})})
            setpoints = planner(devices, starts, imports, exports, plan.plan.timezone)
        except Exception as exc:  # one household's failure must not stop the others' steering
            report.errors.append(f"{hh.path}: planning failed: {exc}")
            continue
        report.planned += 1
        messages += setpoint_messages(settings.prefix, settings.community, hh.ean, setpoints, first)
        state.soc_kwh[hh.ean] = {sp.device: sp.soc_kwh for sp in setpoints
                                 if sp.start == first and sp.soc_kwh is not None}
    if settings.home_assistant:
        try:
            shown = day_quarter_prices(engine, plan, settings.zone, now)
            messages += price_state_messages(settings.prefix, settings.community, plan.id, shown, now,
                                             plan.plan.timezone, window_quarters=settings.window_quarters)
        except ValueError as exc:
            report.errors.append(f"prices for Home Assistant: {exc}")
    try:
        report.messages = sink.publish(messages)
    except MqttError as exc:  # the broker is away: report it; the next cycle publishes everything again
        report.errors.append(str(exc))
    state.announced = state.announced or settings.home_assistant
    report.seconds = time.perf_counter() - t0
    return report


def run_loop(engine: Engine, plan: LoadedPlan, folder: Path, sink: Sink, settings: Settings, planner: Planner, *,
             once: bool = False, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
             sleep: Callable[[float], None] = time.sleep, on_cycle: Callable[[CycleReport], None] | None = None,
             max_cycles: int | None = None,
             measured_soc: Callable[[datetime], Mapping[str, Mapping[str, Decimal]]] | None = None
             ) -> list[CycleReport]:
    """Run a cycle now, then one ``lead`` before every quarter (forever, unless ``once`` or ``max_cycles``).

    ``measured_soc(now)``: the batteries' reported states of charge (e.g. ``MqttPublisher.measured_soc``).
    """
    state = SteeringState()
    reports: list[CycleReport] = []
    while True:
        now = clock()
        report = run_cycle(engine, plan, folder, sink, now, settings, planner, state,
                           measured_soc(now) if measured_soc else None)
        reports.append(report)
        if on_cycle:
            on_cycle(report)
        if once or (max_cycles is not None and len(reports) >= max_cycles):
            return reports
        now = clock()
        sleep(max(0.0, (next_cycle_at(now, settings.lead) - now).total_seconds()))
