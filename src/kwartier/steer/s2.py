"""S2 (EN 50491-12-2) dispatch with s2-python: a CEM that steers a battery's resource manager by FRBC.

The resource manager (RM, the device side) announces its battery as a fill-rate based control
(FRBC) system: one actuator with operation modes (charge, idle, discharge), each a power range and
the matching fill rate of the storage. This CEM (the energy manager side) handshakes, selects FRBC,
reads that description and turns each planned quarter's power into an ``FRBC.Instruction``: the
operation mode whose power range holds the power, and the factor that places it in the range
(S2 interpolates power and fill rate linearly between the range's start, factor 0, and end,
factor 1). Every instruction must be acknowledged with a ``ReceptionStatus``; the report says which.

Units: power in W on the wire (S2), kW in kwartier; the fill level of :func:`battery_system_description`
is in kWh and the fill rate in kWh per second. Sign as everywhere in kwartier: > 0 takes power.

Transport: any s2-python medium. :func:`memory_media` gives an in-process pair (used by the tests
and by a gateway in the same process); a websocket medium needs the ``websockets`` package.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from s2python.common import (
    Commodity,
    CommodityQuantity,
    ControlType,
    EnergyManagementRole,
    Handshake,
    HandshakeResponse,
    NumberRange,
    PowerRange,
    ReceptionStatus,
    ReceptionStatusValues,
    ResourceManagerDetails,
    SelectControlType,
    Transition,
)
from s2python.connection.async_ import S2AsyncConnection
from s2python.connection.async_.medium.s2_medium import MediumClosedConnectionError, S2AsyncMediumConnection
from s2python.connection.connection_events import ConnectionStarted, ConnectionStopped
from s2python.frbc import (
    FRBCActuatorDescription,
    FRBCActuatorStatus,
    FRBCInstruction,
    FRBCOperationMode,
    FRBCOperationModeElement,
    FRBCStorageDescription,
    FRBCStorageStatus,
    FRBCSystemDescription,
)
from s2python.version import S2_VERSION

from kwartier.timegrid import require_aware

W_PER_KW = 1000
SECONDS_PER_HOUR = 3600
ELECTRIC = CommodityQuantity.ELECTRIC_POWER_3_PHASE_SYMMETRIC


class S2DispatchError(RuntimeError):
    """The device cannot do what the plan asks, or the S2 session failed; the message says which and why."""


class SetPointLike(Protocol):
    """What the CEM needs of a planned quarter (kwartier.steer.mqtt.SetPoint and schedule rows fit)."""

    @property
    def start(self) -> datetime: ...

    @property
    def power_kw(self) -> Decimal | float: ...


# --- the device side's description of a battery --------------------------------------------------------


def _mode(label: str, power_w: tuple[float, float], fill_rate: tuple[float, float], capacity_kwh: float
          ) -> FRBCOperationMode:
    element = FRBCOperationModeElement(
        fill_level_range=NumberRange(start_of_range=0.0, end_of_range=capacity_kwh),
        fill_rate=NumberRange(start_of_range=fill_rate[0], end_of_range=fill_rate[1]),
        power_ranges=[PowerRange(start_of_range=power_w[0], end_of_range=power_w[1], commodity_quantity=ELECTRIC)])
    return FRBCOperationMode(id=uuid.uuid4(), diagnostic_label=label, elements=[element],
                             abnormal_condition_only=False)


def battery_system_description(capacity_kwh: float, max_charge_kw: float, max_discharge_kw: float,
                               charge_efficiency: float, discharge_efficiency: float, valid_from: datetime,
                               label: str = "battery") -> FRBCSystemDescription:
    """An FRBC system description of a battery: fill level 0..capacity (kWh), modes charge / idle / discharge.

    Charge: 0..max_charge_kw taken, filling at power x efficiency. Discharge: -max_discharge_kw..0
    delivered, emptying at power / efficiency (factor 0 is full discharge, factor 1 none: S2 ranges
    run from low to high). Any mode can follow any other, without timers.
    """
    if capacity_kwh <= 0 or max_charge_kw < 0 or max_discharge_kw < 0:
        raise S2DispatchError(f"{label}: capacity must be > 0 and power limits >= 0 "
                              f"(got {capacity_kwh} kWh, {max_charge_kw} kW, {max_discharge_kw} kW)")
    per_s = 1 / SECONDS_PER_HOUR
    modes = [
        _mode("charge", (0.0, max_charge_kw * W_PER_KW), (0.0, max_charge_kw * charge_efficiency * per_s),
              capacity_kwh),
        _mode("idle", (0.0, 0.0), (0.0, 0.0), capacity_kwh),
        _mode("discharge", (-max_discharge_kw * W_PER_KW, 0.0),
              (-max_discharge_kw / discharge_efficiency * per_s, 0.0), capacity_kwh),
    ]
    transitions = [Transition(id=uuid.uuid4(), from_=a.id, to=b.id, start_timers=[], blocking_timers=[],
                              transition_costs=None, abnormal_condition_only=False)
                   for a in modes for b in modes if a.id != b.id]
    actuator = FRBCActuatorDescription(id=uuid.uuid4(), diagnostic_label=label,
                                       supported_commodities=[Commodity.ELECTRICITY], operation_modes=modes,
                                       transitions=transitions, timers=[])
    storage = FRBCStorageDescription(diagnostic_label=label, fill_level_label="kWh", provides_leakage_behaviour=False,
                                     provides_fill_level_target_profile=False, provides_usage_forecast=False,
                                     fill_level_range=NumberRange(start_of_range=0.0, end_of_range=capacity_kwh))
    return FRBCSystemDescription(message_id=uuid.uuid4(), valid_from=require_aware(valid_from, "valid_from"),
                                 actuators=[actuator], storage=storage)


# --- the CEM's translation of planned power into instructions ------------------------------------------


@dataclass(frozen=True)
class ModeChoice:
    """An operation mode and the factor (0..1) that gives the wanted power."""

    mode: FRBCOperationMode
    factor: float


def _electric_range(element: FRBCOperationModeElement) -> PowerRange | None:
    return next((r for r in element.power_ranges if r.commodity_quantity.value.startswith("ELECTRIC")), None)


def choose_mode(actuator: FRBCActuatorDescription, power_w: float, tolerance_w: float = 0.5) -> ModeChoice:
    """The normal operation mode whose electric power range holds ``power_w`` (the narrowest one, so that
    0 W is *idle* rather than *charge at factor 0*) and its factor; an error naming the ranges otherwise.
    """
    fits: list[tuple[float, FRBCOperationMode, PowerRange]] = []
    for mode in actuator.operation_modes:
        if mode.abnormal_condition_only:
            continue
        for element in mode.elements:
            r = _electric_range(element)
            if r is not None and r.start_of_range - tolerance_w <= power_w <= r.end_of_range + tolerance_w:
                fits.append((r.end_of_range - r.start_of_range, mode, r))
    if not fits:
        ranges = sorted((r.start_of_range, r.end_of_range) for m in actuator.operation_modes for e in m.elements
                        if (r := _electric_range(e)) is not None)
        shown = ", ".join(f"{a / W_PER_KW:g}..{b / W_PER_KW:g} kW" for a, b in ranges)
        raise S2DispatchError(f"actuator {actuator.diagnostic_label or actuator.id}: no operation mode can run at "
                              f"{power_w / W_PER_KW:g} kW (its modes: {shown})")
    width, mode, r = min(fits, key=lambda f: f[0])
    factor = 0.0 if width == 0 else (power_w - r.start_of_range) / width
    return ModeChoice(mode, min(1.0, max(0.0, factor)))


def frbc_instructions(setpoints: Sequence[SetPointLike], description: FRBCSystemDescription,
                      actuator_index: int = 0) -> list[FRBCInstruction]:
    """One instruction per planned quarter, executed at the quarter's start, for the described actuator."""
    actuator = description.actuators[actuator_index]
    out = []
    for sp in sorted(setpoints, key=lambda s: s.start):
        choice = choose_mode(actuator, float(sp.power_kw) * W_PER_KW)
        out.append(FRBCInstruction(message_id=uuid.uuid4(), id=uuid.uuid4(), actuator_id=actuator.id,
                                   operation_mode=choice.mode.id, operation_mode_factor=choice.factor,
                                   execution_time=require_aware(sp.start, "set-point start"),
                                   abnormal_condition=False))
    return out


def instruction_power_w(instruction: FRBCInstruction, description: FRBCSystemDescription) -> float:
    """The electric power (W) an instruction asks of the described actuator: the inverse of :func:`choose_mode`."""
    actuator = next(a for a in description.actuators if a.id == instruction.actuator_id)
    mode = next(m for m in actuator.operation_modes if m.id == instruction.operation_mode)
    r = _electric_range(mode.elements[0])
    if r is None:
        return 0.0
    return r.start_of_range + instruction.operation_mode_factor * (r.end_of_range - r.start_of_range)


# --- an in-process transport ---------------------------------------------------------------------------


class MemoryMedium(S2AsyncMediumConnection):
    """One end of an in-process S2 link: what it sends arrives at the other end's ``messages()``."""

    def __init__(self, inbox: asyncio.Queue[str | None], outbox: asyncio.Queue[str | None]) -> None:
        self._inbox, self._outbox = inbox, outbox
        self._open = True

    async def is_connected(self) -> bool:
        return self._open

    async def messages(self) -> AsyncGenerator[str, None]:  # type: ignore[override]
        while True:
            text = await self._inbox.get()
            if text is None:  # the other end closed
                self._open = False
                return
            yield text

    async def send(self, message: str) -> None:
        if not self._open:
            raise MediumClosedConnectionError("the in-process S2 link is closed")
        await self._outbox.put(message)

    async def close(self) -> None:
        """Close both directions: each end's message stream ends."""
        if self._open:
            self._open = False
            await self._outbox.put(None)
            await self._inbox.put(None)


def memory_media() -> tuple[MemoryMedium, MemoryMedium]:
    """Two connected ends (CEM, RM) of an in-process S2 link."""
    a_to_b: asyncio.Queue[str | None] = asyncio.Queue()
    b_to_a: asyncio.Queue[str | None] = asyncio.Queue()
    return MemoryMedium(b_to_a, a_to_b), MemoryMedium(a_to_b, b_to_a)


# --- the CEM session -----------------------------------------------------------------------------------


@dataclass
class DispatchReport:
    """What happened on one S2 session: the device, the instructions sent and each one's reception status."""

    resource: ResourceManagerDetails | None = None
    description: FRBCSystemDescription | None = None
    instructions: list[FRBCInstruction] = field(default_factory=list)
    statuses: list[ReceptionStatus] = field(default_factory=list)
    storage: FRBCStorageStatus | None = None
    error: str | None = None

    @property
    def acknowledged(self) -> int:
        """How many instructions the device accepted (ReceptionStatus OK)."""
        return sum(s.status == ReceptionStatusValues.OK for s in self.statuses)

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.instructions) and self.acknowledged == len(self.instructions)


class FrbcCem:
    """The CEM side of one S2 session: answers the handshake, selects FRBC, and once the device has
    described itself sends the instructions for ``setpoints`` and collects their reception statuses.
    """

    def __init__(self, setpoints: Sequence[SetPointLike], *, ack_timeout_s: float = 5.0) -> None:
        self.setpoints = list(setpoints)
        self.ack_timeout_s = ack_timeout_s
        self.report = DispatchReport()
        self.done = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    def register(self, connection: S2AsyncConnection) -> None:
        on: dict[type, Any] = {
            ConnectionStarted: self._ignore, ConnectionStopped: self._stopped, Handshake: self._on_handshake,
            HandshakeResponse: self._ok, ResourceManagerDetails: self._on_details,
            FRBCSystemDescription: self._on_description, FRBCStorageStatus: self._on_storage,
            FRBCActuatorStatus: self._ok,
        }
        for kind, handler in on.items():
            connection.register_handler(kind, handler)

    def _fail(self, message: str) -> None:
        if self.report.error is None:
            self.report.error = message
        self.done.set()

    async def _ignore(self, connection: S2AsyncConnection, event: object, send_okay: Any) -> None:
        return None

    async def _stopped(self, connection: S2AsyncConnection, event: object, send_okay: Any) -> None:
        if not self.done.is_set():
            self._fail("the S2 connection stopped before all instructions were acknowledged")

    async def _ok(self, connection: S2AsyncConnection, event: object, send_okay: Any) -> None:
        await send_okay()

    async def _on_handshake(self, connection: S2AsyncConnection, msg: Handshake, send_okay: Any) -> None:
        await send_okay()
        versions = msg.supported_protocol_versions or []
        if msg.role != EnergyManagementRole.RM:
            return self._fail(f"the other side says it is a {msg.role.value}, not a resource manager")
        if S2_VERSION not in versions:
            return self._fail(f"the resource manager speaks S2 {', '.join(versions) or '(none)'}; "
                              f"this CEM speaks {S2_VERSION}")
        await connection.send_msg_and_await_reception_status(
            Handshake(message_id=uuid.uuid4(), role=EnergyManagementRole.CEM, supported_protocol_versions=[S2_VERSION]),
            self.ack_timeout_s)
        await connection.send_msg_and_await_reception_status(
            HandshakeResponse(message_id=uuid.uuid4(), selected_protocol_version=S2_VERSION), self.ack_timeout_s)

    async def _on_details(self, connection: S2AsyncConnection, msg: ResourceManagerDetails, send_okay: Any) -> None:
        await send_okay()
        self.report.resource = msg
        if ControlType.FILL_RATE_BASED_CONTROL not in msg.available_control_types:
            offered = ", ".join(c.value for c in msg.available_control_types)
            return self._fail(f"resource {msg.name or msg.resource_id} offers no FRBC control (only {offered})")
        await connection.send_msg_and_await_reception_status(
            SelectControlType(message_id=uuid.uuid4(), control_type=ControlType.FILL_RATE_BASED_CONTROL),
            self.ack_timeout_s)

    async def _on_storage(self, connection: S2AsyncConnection, msg: FRBCStorageStatus, send_okay: Any) -> None:
        await send_okay()
        self.report.storage = msg

    async def _on_description(self, connection: S2AsyncConnection, msg: FRBCSystemDescription,
                              send_okay: Any) -> None:
        await send_okay()
        self.report.description = msg
        try:
            self.report.instructions = frbc_instructions(self.setpoints, msg)
        except S2DispatchError as exc:
            return self._fail(str(exc))
        # Sent from a task: the device may still be waiting for us to acknowledge its own messages.
        task = asyncio.get_running_loop().create_task(self._send_instructions(connection))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_instructions(self, connection: S2AsyncConnection) -> None:
        try:
            for instruction in self.report.instructions:
                status = await connection.send_msg_and_await_reception_status(
                    instruction, self.ack_timeout_s, raise_on_error=False)
                self.report.statuses.append(status)
        except (TimeoutError, MediumClosedConnectionError) as exc:
            self._fail(f"instruction {len(self.report.statuses) + 1} of {len(self.report.instructions)} "
                       f"was not acknowledged: {exc or type(exc).__name__}")
        except Exception as exc:  # the connection stopped underneath us
            self._fail(f"sending instructions failed: {exc}")
        self.done.set()


async def dispatch_frbc(setpoints: Sequence[SetPointLike], medium: S2AsyncMediumConnection, *,
                        timeout_s: float = 30.0, ack_timeout_s: float = 5.0) -> DispatchReport:
    """Run one S2 session as the CEM over ``medium`` until every instruction is acknowledged (or it fails).

    Raises :class:`S2DispatchError` when the session does not finish within ``timeout_s``.
    """
    cem = FrbcCem(setpoints, ack_timeout_s=ack_timeout_s)
    connection = S2AsyncConnection(medium, asyncio.get_running_loop())
    cem.register(connection)
    runner = asyncio.get_running_loop().create_task(connection.run())
    try:
        await asyncio.wait_for(cem.done.wait(), timeout_s)
    except TimeoutError:
        cem._fail(f"the S2 session did not finish within {timeout_s:g} s")
    finally:
        await connection.stop()
        await asyncio.wait([runner], timeout=ack_timeout_s)
        if not runner.done():
            runner.cancel()
    return cem.report
