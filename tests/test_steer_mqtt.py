"""Set-points over MQTT against the real Mosquitto at 127.0.0.1:1883, and one `steer run --once` cycle."""

from __future__ import annotations

import json
import socket
import threading
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import paho.mqtt.client as paho
import polars as pl
import pytest
import typer
from typer.testing import CliRunner

from conftest import need
from kwartier.ids import make_ean18
from kwartier.services.imports import import_prices
from kwartier.services.steering import first_quarter, next_cycle_at
from kwartier.steer.mqtt import (
    Message,
    MqttError,
    MqttPublisher,
    SetPoint,
    broker_url,
    parse_broker_url,
    parse_state,
    setpoint_json,
    setpoint_messages,
    status_topic,
)
from kwartier.store import open_store
from kwartier.timegrid import floor_to_grid, interval_starts

URL = "mqtt://127.0.0.1:1883"
Q = timedelta(minutes=15)
T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def _reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 1883), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def broker() -> str:
    need(_reachable(), "the MQTT broker (Mosquitto) is not reachable at 127.0.0.1:1883")
    return URL


@pytest.fixture
def prefix(broker):
    """A topic prefix of this test alone; its retained messages are cleared afterwards."""
    p = f"kwtest-{uuid.uuid4().hex[:10]}"
    yield p
    clear_retained(f"{p}/#")


class Subscriber:
    """A real MQTT client that records every message under ``topic_filter``."""

    def __init__(self, topic_filter: str) -> None:
        self.messages: dict[str, paho.MQTTMessage] = {}
        self.count = 0
        self._changed = threading.Condition()
        self._subscribed = threading.Event()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"kwtest-sub-{uuid.uuid4().hex[:8]}")
        self.client.on_connect = lambda c, *_: c.subscribe(topic_filter, qos=1)
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", 1883)
        self.client.loop_start()
        assert self._subscribed.wait(5), "the subscription was not acknowledged"

    def _on_message(self, client, userdata, msg) -> None:  # type: ignore[no-untyped-def]
        with self._changed:
            if msg.payload:  # an empty retained payload is a deletion
                self.messages[msg.topic] = msg
            self.count += 1
            self._changed.notify_all()

    def wait_for(self, n: int, timeout: float = 5.0) -> dict[str, paho.MQTTMessage]:
        with self._changed:
            self._changed.wait_for(lambda: len(self.messages) >= n, timeout)
            return dict(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def clear_retained(topic_filter: str) -> None:
    """Delete every retained message under ``topic_filter`` (publish an empty retained payload)."""
    sub = Subscriber(topic_filter)
    topics = list(sub.wait_for(10_000, timeout=0.5))
    sub.close()
    if topics:
        with MqttPublisher(URL) as pub:
            pub.publish([Message(t, b"") for t in topics])


def plan_rows() -> list[SetPoint]:
    return [SetPoint(T0 + i * Q, "powerwall", Decimal(p), Decimal(s), "cheapest quarters before the evening peak")
            for i, (p, s) in enumerate([("5", "7.9375"), ("2.5", "8.53125"), ("-4.75", "7.28125")])]


# --- pure parts -------------------------------------------------------------------------------------------


def test_broker_url_and_topic_layout():
    assert parse_broker_url("mqtt://u%40x:p%2Fw@broker.example:1884") .__dict__ == {
        "host": "broker.example", "port": 1884, "tls": False, "username": "u@x", "password": "p/w"}
    assert parse_broker_url("mqtts://h").port == 8883
    assert broker_url({"KWARTIER_MQTT_URL": "mqtt://a:1"}) == "mqtt://a:1"
    assert broker_url({}, None) == "mqtt://127.0.0.1:1883"
    with pytest.raises(MqttError, match="not mqtt://host:port"):
        parse_broker_url("http://h")
    with pytest.raises(MqttError, match="cannot be an MQTT topic level"):
        setpoint_messages("kwartier", "c", "8712+", plan_rows(), T0)


def test_setpoint_json_and_messages():
    sp = plan_rows()[2]
    assert setpoint_json(sp) == {"start": "2026-03-02T12:30:00Z", "power_kw": -4.75, "soc_kwh": 7.281,
                                 "reason": "cheapest quarters before the evening peak",
                                 "valid_until": "2026-03-02T12:45:00Z"}
    msgs = setpoint_messages("kw", "c1", "871000000000000012", plan_rows(), T0 + timedelta(minutes=20))
    assert [m.topic for m in msgs] == ["kw/c1/871000000000000012/powerwall/setpoint",
                                       "kw/c1/871000000000000012/powerwall/schedule"]
    assert json.loads(msgs[0].payload)["start"] == "2026-03-02T12:15:00Z"  # the quarter containing now
    assert [r["power_kw"] for r in json.loads(msgs[1].payload)] == [2.5, -4.75]  # past quarters dropped
    assert all(m.qos == 1 and m.retain for m in msgs)


def test_device_state_parsing_accepts_only_a_sane_soc():
    ok = parse_state("kw/c1/871000000000000012/powerwall/state", b'{"soc_kwh": 6.2}', "kw", "c1", T0)
    assert ok is not None and ok[:2] == ("871000000000000012", "powerwall") and ok[2].soc_kwh == Decimal("6.2")
    for topic, payload in [("kw/c1/871000000000000012/powerwall/setpoint", b'{"soc_kwh": 6.2}'),
                           ("kw/c2/871000000000000012/powerwall/state", b'{"soc_kwh": 6.2}'),
                           ("kw/c1/871000000000000012/powerwall/state", b'{"soc_kwh": -1}'),
                           ("kw/c1/871000000000000012/powerwall/state", b'{"soc_kwh": "NaN"}'),
                           ("kw/c1/871000000000000012/powerwall/state", b"6.2"),
                           ("kw/c1/871000000000000012/powerwall/state", b"not json")]:
        assert parse_state(topic, payload, "kw", "c1", T0) is None, (topic, payload)


def test_cycle_timing_is_aligned_to_the_quarter():
    lead = timedelta(seconds=60)
    assert next_cycle_at(T0 + timedelta(minutes=3), lead) == T0 + timedelta(minutes=14)
    assert next_cycle_at(T0 + timedelta(minutes=14), lead) == T0 + timedelta(minutes=29)  # strictly later
    assert first_quarter(T0 + timedelta(minutes=14, seconds=1), lead) == T0 + Q  # plans the coming quarter
    assert first_quarter(T0 + timedelta(minutes=3), lead) == T0


# --- against the real broker ------------------------------------------------------------------------------


def test_subscriber_receives_exactly_what_was_published(prefix):
    ean = make_ean18("87100000000000001")
    sent = setpoint_messages(prefix, "c1", ean, plan_rows(), T0)
    live = Subscriber(f"{prefix}/#")
    with MqttPublisher(URL, status_topic=status_topic(prefix, "c1")) as pub:
        assert pub.publish(sent) == 2
        got = live.wait_for(3)  # 2 + status online
    live.close()
    assert {t: m.payload for t, m in got.items() if t in {s.topic for s in sent}} == {s.topic: s.payload
                                                                                      for s in sent}
    assert all(got[s.topic].qos == 1 for s in sent)
    # A device connecting later still gets the last set-point, retained; and the status says offline now.
    late = Subscriber(f"{prefix}/#")
    again = late.wait_for(3)
    late.close()
    assert again[sent[0].topic].retain and again[sent[0].topic].payload == sent[0].payload
    assert json.loads(again[sent[0].topic].payload)["power_kw"] == 5.0
    assert again[status_topic(prefix, "c1")].payload == b"offline"


def test_unreachable_broker_is_a_clear_error():
    with pytest.raises(MqttError, match=r"cannot reach the MQTT broker mqtt://127.0.0.1:1"):
        MqttPublisher("mqtt://127.0.0.1:1", timeout_s=2).connect()


BATTERY = """
[connection]
import_limit_kw = 17.25
export_limit_kw = 17.25

[[battery]]
id = "powerwall"
capacity_kwh = 10.0
max_charge_kw = 5.0
max_discharge_kw = 5.0
charge_efficiency = 0.95
discharge_efficiency = 0.95
soc_start_kwh = 0.0
soc_end_min_kwh = 0.0
wear_cost_eur_per_kwh = 0.02
"""


def _prices_around_now(tmp_path: Path, now: datetime) -> Path:
    """8 days back to 2 days ahead: -50 EUR/MWh for the quarters within [-1 h, +2 h) of now's time of day,
    300 EUR/MWh otherwise (every day alike, so that the forecast for tomorrow agrees)."""
    q0 = floor_to_grid(now)
    starts = interval_starts(q0 - timedelta(days=8), q0 + timedelta(days=2))
    slot = ((starts - q0).dt.total_minutes() // 15) % 96
    cheap = (slot >= 96 - 4) | (slot < 8)
    pl.DataFrame({"timestamp": starts.dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
                  "price_eur_per_mwh": pl.Series(cheap).map_elements(lambda c: "-50.00" if c else "300.00",
                                                                     return_dtype=pl.String)}
                 ).write_csv(tmp_path / "prices.csv")
    return tmp_path / "prices.csv"


@pytest.mark.slow
def test_steer_run_once_publishes_the_optimal_setpoints(prefix, tmp_path, monkeypatch):
    from kwartier.cli_dispatch import register

    db = f"sqlite:///{tmp_path / 'kw.db'}"
    monkeypatch.setenv("KWARTIER_DATABASE_URL", db)
    engine = open_store(db)
    import_prices(engine, _prices_around_now(tmp_path, datetime.now(UTC)))
    engine.dispose()
    folder = tmp_path / "households"
    folder.mkdir()
    ean = make_ean18("87100000000000002")
    (folder / f"{ean}.toml").write_text(BATTERY)
    (folder / "not-an-ean.toml").write_text(BATTERY)

    app = typer.Typer()
    steer = typer.Typer()
    app.add_typer(steer, name="steer")
    register(steer)
    sub = Subscriber(f"{prefix}/#")
    result = CliRunner().invoke(app, ["steer", "run", "--devices", str(folder), "--plan", "nl-dynamic-2026",
                                      "--mqtt", URL, "--once", "--community", "c1", "--prefix", prefix,
                                      "--ha-prefix", f"{prefix}/ha", "--json"])
    got = sub.wait_for(3 + 3 + 5)  # set-point, schedule, status; 3 HA configs; 5 price states
    sub.close()
    report = json.loads(result.stdout.splitlines()[0])
    assert result.exit_code == 1  # the badly named file is an error, and named
    assert report["households"] == 1 and report["planned"] == 1
    assert any("not-an-ean.toml" in e for e in report["errors"])
    sp = json.loads(got[f"{prefix}/c1/{ean}/powerwall/setpoint"].payload)
    # Cheap now (below zero), dear for the rest of the day: charge at full power from the first quarter.
    assert sp["start"] == report["first_quarter"] and sp["power_kw"] == 5.0
    assert sp["soc_kwh"] == pytest.approx(5.0 * 0.25 * 0.95, abs=1e-3)
    assert datetime.fromisoformat(sp["valid_until"]) - datetime.fromisoformat(sp["start"]) == Q
    schedule = json.loads(got[f"{prefix}/c1/{ean}/powerwall/schedule"].payload)
    assert len(schedule) == 96 and all(-5.0 - 1e-6 <= r["power_kw"] <= 5.0 + 1e-6 for r in schedule)
    assert min(r["power_kw"] for r in schedule) < 0  # and it sells later, at the dear price
    assert got[f"{prefix}/c1/status"].payload in (b"online", b"offline")
    # Home Assistant: the sensors are announced and the price now is the stored one: -0.050 + 0.018 markup.
    config = json.loads(got[f"{prefix}/ha/sensor/kwartier_nl-dynamic-2026_current/config"].payload)
    assert got[config["state_topic"]].payload == b"-0.032000"
    assert f"{prefix}/c1/prices/nl-dynamic-2026/cheapest_window" in got


class ListSink:
    """Collects what a cycle publishes, per call."""

    def __init__(self) -> None:
        self.calls: list[list[Message]] = []

    def publish(self, messages) -> int:  # type: ignore[no-untyped-def]
        self.calls.append(list(messages))
        return len(self.calls[-1])


def test_the_loop_plans_each_quarter_from_the_soc_it_planned_before(tmp_path):
    from kwartier.services.steering import Settings, optimiser_planner, run_loop
    from kwartier.tariffs.plan import load_plan

    engine = open_store(f"sqlite:///{tmp_path / 'kw.db'}")
    q0 = floor_to_grid(datetime.now(UTC))
    import_prices(engine, _prices_around_now(tmp_path, q0))
    folder = tmp_path / "households"
    folder.mkdir()
    ean = make_ean18("87100000000000003")
    (folder / f"{ean}.toml").write_text(BATTERY)
    times = iter([q0 + timedelta(minutes=2), q0 + timedelta(minutes=3), q0 + timedelta(minutes=14)])
    sleeps: list[float] = []
    sink = ListSink()
    reports = run_loop(engine, load_plan("nl-dynamic-2026"), folder, sink,
                       Settings(community="c1", home_assistant=False), optimiser_planner(),
                       clock=lambda: next(times), sleep=sleeps.append, max_cycles=2)
    engine.dispose()
    assert sleeps == [660.0]  # from 00:03 to 00:14, one minute before the next quarter
    assert [r.first_quarter for r in reports] == [q0, q0 + Q]
    assert all(not r.errors and r.planned == 1 for r in reports)
    topic = f"kwartier/c1/{ean}/powerwall/setpoint"
    first, second = (json.loads(next(m.payload for m in call if m.topic == topic)) for call in sink.calls)
    # Full charge in both cheap quarters; the second cycle starts where the first planned to be.
    assert (first["power_kw"], second["power_kw"]) == (5.0, 5.0)
    assert first["soc_kwh"] == pytest.approx(1.1875, abs=1e-3)
    assert second["soc_kwh"] == pytest.approx(2.375, abs=1e-3)


def test_a_cycle_starts_from_the_soc_the_device_reports(prefix, tmp_path):
    from kwartier.services.steering import Settings, optimiser_planner, run_cycle
    from kwartier.tariffs.plan import load_plan

    engine = open_store(f"sqlite:///{tmp_path / 'kw.db'}")
    now = floor_to_grid(datetime.now(UTC)) + timedelta(minutes=2)
    import_prices(engine, _prices_around_now(tmp_path, now))
    folder = tmp_path / "households"
    folder.mkdir()
    ean = make_ean18("87100000000000004")
    (folder / f"{ean}.toml").write_text(BATTERY)
    with MqttPublisher(URL, watch=(prefix, "c1")) as pub:
        with MqttPublisher(URL) as device:  # the battery's gateway reports its state of charge
            device.publish([Message(f"{prefix}/c1/{ean}/powerwall/state", b'{"soc_kwh": 7.5}', retain=False),
                            Message(f"{prefix}/c1/{ean}/powerwall/state-x", b'{"soc_kwh": 1}', retain=False)])
        for _ in range(50):
            if pub.measured_soc(datetime.now(UTC)):
                break
            threading.Event().wait(0.05)
        measured = pub.measured_soc(datetime.now(UTC))
        assert measured == {ean: {"powerwall": Decimal("7.5")}}
        assert pub.measured_soc(datetime.now(UTC) + timedelta(hours=1)) == {}  # too old to trust
        sink = ListSink()
        report = run_cycle(engine, load_plan("nl-dynamic-2026"), folder, sink, now,
                           Settings(community="c1", prefix=prefix, home_assistant=False), optimiser_planner(),
                           measured_soc=measured)
    engine.dispose()
    assert not report.errors
    schedule = json.loads(next(m.payload for m in sink.calls[0] if m.topic.endswith("/powerwall/schedule")))
    first = schedule[0]
    assert first["soc_kwh"] == pytest.approx(7.5 + max(first["power_kw"], 0) * 0.25 * 0.95, abs=1e-3)
    # From 7.5 kWh the cheap quarters fill it to the brim (10 kWh); from the file's 0 kWh, 8 cheap
    # quarters at 5 kW could only reach 8 x 1.1875 = 9.5 kWh.
    assert max(r["soc_kwh"] for r in schedule) == pytest.approx(10.0, abs=1e-3)
