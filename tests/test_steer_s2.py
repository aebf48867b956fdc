"""S2 dispatch: a CEM session against a simulated battery resource manager built with s2-python's RM side."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from s2python.common import Commodity as S2Commodity
from s2python.common import CommodityQuantity, ControlType, Duration, ReceptionStatusValues, Role, RoleType
from s2python.connection.asset_details import AssetDetails
from s2python.connection.async_ import S2AsyncConnection
from s2python.connection.async_.control_type.class_based import (
    FRBCControlType,
    NoControlControlType,
    ResourceManagerHandler,
)
from s2python.frbc import FRBCInstruction, FRBCStorageStatus

from kwartier.steer.mqtt import SetPoint
from kwartier.steer.s2 import (
    S2DispatchError,
    battery_system_description,
    choose_mode,
    dispatch_frbc,
    frbc_instructions,
    instruction_power_w,
    memory_media,
)

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
Q = timedelta(minutes=15)
CAPACITY_KWH, CHARGE_KW, DISCHARGE_KW, EFF = 13.5, 5.0, 5.0, 0.95


def description():
    return battery_system_description(CAPACITY_KWH, CHARGE_KW, DISCHARGE_KW, EFF, EFF, T0)


def plan(*powers_kw: str) -> list[SetPoint]:
    return [SetPoint(T0 + i * Q, "powerwall", Decimal(p), None, "test") for i, p in enumerate(powers_kw)]


class SimulatedBattery(FRBCControlType):
    """The device: announces itself on activation, acknowledges instructions and integrates its fill level."""

    def __init__(self, soc_kwh: float, refuse_after: int | None = None) -> None:
        self.soc_kwh = soc_kwh
        self.refuse_after = refuse_after
        self.system = description()
        self.received: list[FRBCInstruction] = []

    async def activate(self, connection: S2AsyncConnection) -> None:
        await connection.send_msg_and_await_reception_status(self.system)
        await connection.send_msg_and_await_reception_status(
            FRBCStorageStatus(message_id=uuid.uuid4(), present_fill_level=self.soc_kwh))

    async def deactivate(self, connection: S2AsyncConnection) -> None:
        return None

    async def handle_instruction(self, connection, msg, send_okay) -> None:  # type: ignore[no-untyped-def]
        if self.refuse_after is not None and len(self.received) >= self.refuse_after:
            await connection.respond_with_reception_status(msg.message_id, ReceptionStatusValues.TEMPORARY_ERROR,
                                                           "busy")
            return
        self.received.append(msg)
        # The fill rate of the chosen element, at the instructed factor, for one quarter (kWh/s x 900 s).
        actuator = self.system.actuators[0]
        mode = next(m for m in actuator.operation_modes if m.id == msg.operation_mode)
        rate = mode.elements[0].fill_rate
        per_s = rate.start_of_range + msg.operation_mode_factor * (rate.end_of_range - rate.start_of_range)
        self.soc_kwh += per_s * Q.total_seconds()
        await send_okay()


class Idle(NoControlControlType):
    async def activate(self, connection: S2AsyncConnection) -> None:
        return None

    async def deactivate(self, connection: S2AsyncConnection) -> None:
        return None


def asset() -> AssetDetails:
    return AssetDetails(resource_id=uuid.uuid4(), provides_forecast=False,
                        provides_power_measurements=[CommodityQuantity.ELECTRIC_POWER_3_PHASE_SYMMETRIC],
                        instruction_processing_delay=Duration(100),
                        roles=[Role(role=RoleType.ENERGY_STORAGE, commodity=S2Commodity.ELECTRICITY)],
                        name="powerwall")


async def session(setpoints, control_type, timeout_s: float = 5.0):
    cem_end, rm_end = memory_media()
    rm = S2AsyncConnection(rm_end, asyncio.get_running_loop())
    ResourceManagerHandler([control_type], asset()).register_handlers(rm)
    device = asyncio.get_running_loop().create_task(rm.run())
    try:
        return await dispatch_frbc(setpoints, cem_end, timeout_s=timeout_s, ack_timeout_s=2.0)
    finally:
        await cem_end.close()
        await rm.stop()
        await asyncio.wait([device], timeout=2)


def test_mode_choice_is_exact_and_invertible():
    desc = description()
    actuator = desc.actuators[0]
    assert choose_mode(actuator, 0.0).mode.diagnostic_label == "idle"
    full = choose_mode(actuator, 5000.0)
    assert (full.mode.diagnostic_label, full.factor) == ("charge", 1.0)
    half = choose_mode(actuator, -2500.0)
    assert (half.mode.diagnostic_label, half.factor) == ("discharge", 0.5)  # -5000 at 0 .. 0 at 1
    for sp, ins in zip(plan("3.2", "-1.25", "0", "5"), frbc_instructions(plan("3.2", "-1.25", "0", "5"), desc),
                       strict=True):
        assert instruction_power_w(ins, desc) == pytest.approx(float(sp.power_kw) * 1000)
        assert ins.execution_time == sp.start


def test_power_beyond_the_device_is_a_named_error():
    with pytest.raises(S2DispatchError, match=r"no operation mode can run at 7 kW \(its modes: -5..0 kW"):
        choose_mode(description().actuators[0], 7000.0)


def test_session_handshakes_and_every_instruction_is_acknowledged():
    battery = SimulatedBattery(soc_kwh=6.75)
    setpoints = plan("4", "4", "0", "-2.5", "-5")
    report = asyncio.run(session(setpoints, battery))
    assert report.error is None, report.error
    assert report.ok and report.acknowledged == 5
    assert report.resource is not None and report.resource.name == "powerwall"
    assert report.storage is not None and report.storage.present_fill_level == 6.75
    # The device got exactly the planned instructions, in order, and its fill level followed the plan:
    assert [i.message_id for i in battery.received] == [i.message_id for i in report.instructions]
    expected = 6.75 + 2 * 4 * 0.25 * EFF - (2.5 + 5) * 0.25 / EFF  # kWh, hand computed
    assert battery.soc_kwh == pytest.approx(expected, abs=1e-9)


def test_a_refused_instruction_is_reported_not_hidden():
    report = asyncio.run(session(plan("1", "2", "3"), SimulatedBattery(5.0, refuse_after=2)))
    assert report.acknowledged == 2 and not report.ok
    assert report.statuses[-1].status == ReceptionStatusValues.TEMPORARY_ERROR


def test_a_device_without_frbc_is_a_clear_failure():
    report = asyncio.run(session(plan("1"), Idle()))
    assert report.error is not None and "offers no FRBC control" in report.error
    assert report.resource is not None
    assert report.resource.available_control_types == [ControlType.NOT_CONTROLABLE]
