"""Live telemetry: message checks, quarter maths, idempotent storage, MQTT consumption and restart."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from conftest import ROOT, data_file, need
from kwartier.ids import make_ean18
from kwartier.services.telemetry import (
    QUARTER_US,
    MessageRejected,
    Sample,
    TelemetryStore,
    parse_message,
    quarters_from_samples,
    register_at,
    topic_ean,
)
from kwartier.services.telemetry_mqtt import ConsumerOptions, TelemetryConsumer
from kwartier.store import make_engine, open_store, schema
from kwartier.store.schema_telemetry import alert_deliveries, telemetry_samples

EAN_A = make_ean18("87168712000000001")
EAN_B = make_ean18("87168712000000002")
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


def with_tables(engine):  # type: ignore[no-untyped-def]
    """The telemetry tables, whether or not migration 0006 ran (schema.py may not import them yet)."""
    schema.metadata.create_all(engine, tables=[telemetry_samples, alert_deliveries], checkfirst=True)
    return engine


def msg(**fields: object) -> bytes:
    return json.dumps(fields).encode()


# --- messages --------------------------------------------------------------------------------


def test_json_message_with_ean_from_topic_or_body():
    body = msg(timestamp="2026-11-22T13:00:10.7+01:00", import_wh=1234, export_wh=5, power_import_w=450)
    (s,) = parse_message(body, EAN_A, NOW)
    assert s == Sample(EAN_A, datetime(2026, 11, 22, 12, 0, 10, tzinfo=UTC), 1234, 5, 450, None)
    (s,) = parse_message(msg(ean=EAN_B, timestamp="2026-11-22T12:00:00Z", import_wh=0, export_wh=0), None, NOW)
    assert s.connection == EAN_B
    assert topic_ean("kwartier/+/p1", f"kwartier/{EAN_A}/p1") == EAN_A
    assert topic_ean("meters/#", "meters/x") is None


@pytest.mark.parametrize(("payload", "topic_id", "reason"), [
    (b"not json at all", EAN_A, "unknown_payload"),
    (b"{broken", EAN_A, "not_json"),
    (b"[1, 2]", EAN_A, "unknown_payload"),
    (msg(timestamp="2026-11-22T12:00:00Z", import_wh=1, export_wh=1), None, "bad_ean"),
    (msg(timestamp="2026-11-22T12:00:00Z", import_wh=1, export_wh=1), "871687120000000010", "bad_ean"),
    (msg(ean=EAN_B, timestamp="2026-11-22T12:00:00Z", import_wh=1, export_wh=1), EAN_A, "ean_mismatch"),
    (msg(timestamp="2026-11-22T12:00:00", import_wh=1, export_wh=1), EAN_A, "bad_timestamp"),
    (msg(timestamp="yesterday", import_wh=1, export_wh=1), EAN_A, "bad_timestamp"),
    (msg(timestamp="2026-11-22T12:06:00Z", import_wh=1, export_wh=1), EAN_A, "future_timestamp"),
    (msg(timestamp="2026-11-22T12:00:00Z", import_wh=1.5, export_wh=1), EAN_A, "bad_field"),
    (msg(timestamp="2026-11-22T12:00:00Z", import_wh=-1, export_wh=1), EAN_A, "bad_field"),
    (msg(timestamp="2026-11-22T12:00:00Z", import_wh=True, export_wh=1), EAN_A, "bad_field"),
    (msg(timestamp="2026-11-22T12:00:00Z", import_wh=1), EAN_A, "bad_field"),
    (b"{" + b" " * 70_000 + b"}", EAN_A, "too_large"),
    (b"/XYZ5 header only\r\n1-0:1.8.1(000001.000*kWh)\r\n", EAN_A, "bad_telegram"),
])
def test_bad_messages_are_rejected_with_a_reason(payload, topic_id, reason):
    with pytest.raises(MessageRejected) as info:
        parse_message(payload, topic_id, NOW)
    assert info.value.reason == reason


def test_raw_dsmr_telegram_is_read_by_the_p1_reader():
    payload = data_file("dsmr_p1_telegrams/telegram_v5.txt").read_bytes()
    (s,) = parse_message(payload, EAN_A, NOW)
    # 1.8.1 4.426 + 1.8.2 2.399 kWh; 2.8.1 2.444 + 2.8.2 0 kWh; 170102192002W = 18:20:02 UTC
    assert (s.connection, s.import_wh, s.export_wh) == (EAN_A, 6825, 2444)
    assert s.ts == datetime(2017, 1, 2, 18, 20, 2, tzinfo=UTC)


# --- quarter maths ---------------------------------------------------------------------------


def test_register_at_boundary_exact_or_interpolated_half_up():
    ts = [0, 20_000_000, 200_000_000]
    assert register_at(ts, [1000, 1003, 1100], 0) == (1000, True)
    assert register_at(ts, [1000, 1003, 1100], 10_000_000) == (1002, True)  # 1001.5 -> 1002
    assert register_at(ts, [1000, 1003, 1100], 110_000_000) == (1052, False)  # 1051.5, gap of 180 s


def test_quarters_hand_checked_with_a_gap_estimated():
    step = 10_000_000
    q = QUARTER_US
    # 10-s samples from 0 to 30 min, none from 30 to 60 min, then on to 75 min; 2 Wh per sample
    ts = [i * step for i in range(181)] + [q * 4 + i * step for i in range(91)]
    imp = [2 * i for i in range(181)] + [400 + 2 * i for i in range(91)]
    exp = [0] * len(ts)
    quarters, backwards = quarters_from_samples(ts, imp, exp)
    got = [(x.start_us // q, x.import_wh, x.actual) for x in quarters]
    # register 360 at 30 min, 400 at 60 min: 40 Wh spread over 2 quarters of the gap (estimated)
    assert got == [(0, 180, True), (1, 180, True), (2, 20, False), (3, 20, False), (4, 180, True)]
    assert backwards == 0
    assert sum(x.import_wh for x in quarters) == imp[-1] - imp[0]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 600), st.integers(0, 500)), min_size=2, max_size=60))
def test_quarters_conserve_energy_between_boundaries(steps):
    ts, imp = [0], [0]
    for dt_s, wh in steps:
        ts.append(ts[-1] + dt_s * 1_000_000)
        imp.append(imp[-1] + wh)
    quarters, _ = quarters_from_samples(ts, imp, imp)
    if quarters:
        first, last = quarters[0].start_us, quarters[-1].start_us + QUARTER_US
        total = register_at(ts, imp, last)[0] - register_at(ts, imp, first)[0]
        assert sum(x.import_wh for x in quarters) == total
        assert all(x.import_wh >= 0 for x in quarters)


# --- storage ---------------------------------------------------------------------------------


def series(ean: str, n: int, start: datetime = T0, every_s: int = 10) -> list[Sample]:
    """A meter using 1..5 Wh per 10 s and exporting every 7th sample (deterministic)."""
    out, imp, exp = [], 10_000, 500
    for i in range(n):
        imp += 1 + (i * 7919) % 5
        exp += i % 7 == 0
        out.append(Sample(ean, start + timedelta(seconds=every_s * i), imp, exp))
    return out


def expected_quarters(samples: list[Sample]) -> dict[tuple[str, datetime], tuple[int, int, str]]:
    out = {}
    for ean in {s.connection for s in samples}:
        own = sorted({s.ts: s for s in samples if s.connection == ean}.values(), key=lambda s: s.ts)
        us = [int((s.ts - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()) * 1_000_000 for s in own]
        quarters, _ = quarters_from_samples(us, [s.import_wh for s in own], [s.export_wh for s in own])
        for q in quarters:
            start = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=q.start_us)
            out[(ean, start)] = (q.import_wh, q.export_wh, "actual" if q.actual else "estimated")
    return out


def stored_quarters(engine) -> dict[tuple[str, datetime], tuple[int, int, str]]:  # type: ignore[no-untyped-def]
    r = schema.readings.c
    with engine.connect() as conn:
        rows = conn.execute(select(r.connection, r.interval_start, r.import_wh, r.export_wh, r.status)
                            .where(r.is_current.is_(True))).all()
    return {(c, t): (i, e, s) for c, t, i, e, s in rows}


def count(engine, table) -> int:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_store_is_idempotent_and_writes_complete_quarters(engine):
    store = TelemetryStore(with_tables(engine))
    samples = series(EAN_A, 200) + series(EAN_B, 95)  # A: 33 min 10 s; B: 15 min 40 s
    first = store.store(samples, NOW)
    assert (first.new_samples, first.duplicates, first.quarters.new) == (295, 0, 3)  # A 0/15 min, B 0 min
    assert stored_quarters(engine) == expected_quarters(samples)
    versions, imports = count(engine, schema.readings), count(engine, schema.imports)
    again = TelemetryStore(engine).store(samples[::-1], NOW)  # a restarted consumer, redelivered
    assert (again.new_samples, again.duplicates, again.quarters.new, again.quarters.revised) == (0, 295, 0, 0)
    assert (count(engine, schema.readings), count(engine, schema.imports)) == (versions, imports)
    assert count(engine, telemetry_samples) == 295


def test_out_of_order_gaps_and_duplicates_give_the_same_quarters(engine):
    with_tables(engine)
    samples = series(EAN_A, 450)
    del samples[150:300]  # a 25-minute gap ...
    late = series(EAN_A, 450)[150:300]  # ... filled in later, shuffled, with duplicates
    rng = random.Random(7)
    rng.shuffle(late)
    store = TelemetryStore(engine)
    store.store(samples[:150], NOW)
    store.store(samples[150:], NOW)
    assert stored_quarters(engine) == expected_quarters(samples)  # the gap estimated
    for i in range(0, 150, 40):
        store.store(late[i : i + 40] + late[i : i + 5], NOW)
    assert stored_quarters(engine) == expected_quarters(series(EAN_A, 450))


@settings(max_examples=8, deadline=None)
@given(st.randoms(use_true_random=False), st.integers(1, 80))
def test_any_arrival_order_and_batching_gives_the_same_result(tmp_path_factory, rnd, batch):
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('t') / 'k.db'}")
    schema.metadata.create_all(engine, tables=[schema.connections, schema.imports, schema.readings,
                                               telemetry_samples])
    samples = series(EAN_A, 120) + series(EAN_B, 100, T0 + timedelta(seconds=3))
    shuffled = samples + rnd.sample(samples, 20)
    rnd.shuffle(shuffled)
    store = TelemetryStore(engine)
    for i in range(0, len(shuffled), batch):
        store.store(shuffled[i : i + batch], NOW)
    assert stored_quarters(engine) == expected_quarters(samples)
    engine.dispose()


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 1500), min_size=1, max_size=40), st.randoms(use_true_random=False),
       st.integers(1, 12))
def test_irregular_samples_with_gaps_in_any_order_give_the_same_result(tmp_path_factory, steps, rnd, batch):
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('g') / 'k.db'}")
    schema.metadata.create_all(engine, tables=[schema.connections, schema.imports, schema.readings,
                                               telemetry_samples])
    at, imp, samples = T0 + timedelta(seconds=7), 100, []
    for i, dt_s in enumerate(steps):
        at, imp = at + timedelta(seconds=dt_s), imp + (dt_s * (i % 4)) // 3
        samples.append(Sample(EAN_A, at, imp, i))
    arrival = samples + rnd.sample(samples, min(3, len(samples)))
    rnd.shuffle(arrival)
    store = TelemetryStore(engine)
    for i in range(0, len(arrival), batch):
        store.store(arrival[i : i + batch], NOW)
    assert stored_quarters(engine) == expected_quarters(samples)
    engine.dispose()


def test_retention_deletes_old_samples_only(engine):
    store = TelemetryStore(with_tables(engine))
    store.store(series(EAN_A, 10, NOW - timedelta(days=31)) + series(EAN_A, 10, NOW - timedelta(days=1)), NOW)
    assert store.purge(NOW, timedelta(days=30)) == 10
    assert count(engine, telemetry_samples) == 10


# --- MQTT --------------------------------------------------------------------------------------


def broker() -> None:
    try:
        with socket.create_connection(("127.0.0.1", 1883), timeout=1):
            return
    except OSError:
        need(False, "Mosquitto is not reachable at 127.0.0.1:1883")


def publish(prefix: str, payloads: list[tuple[str, bytes]], per_second: float | None = None) -> None:
    """Publish with QoS 1 (optionally at a steady rate) and wait until the broker has them all."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}",
                         protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(100)
    client.connect("127.0.0.1", 1883)
    client.loop_start()
    infos, began = [], time.monotonic()
    for i, (ean, body) in enumerate(payloads):
        infos.append(client.publish(f"{prefix}/{ean}/p1", body, qos=1))
        if per_second and i % 20 == 19:
            time.sleep(max(0.0, began + (i + 1) / per_second - time.monotonic()))
    for info in infos:
        info.wait_for_publish(10)
    client.disconnect()
    client.loop_stop()


def as_json(s: Sample) -> tuple[str, bytes]:
    return s.connection, msg(timestamp=s.ts.isoformat(), import_wh=s.import_wh, export_wh=s.export_wh)


def test_consumer_stores_counts_rejects_and_survives_bad_messages(tmp_path):
    broker()
    engine = with_tables(open_store(f"sqlite:///{tmp_path / 'k.db'}"))
    prefix = f"kwtest-{uuid.uuid4().hex[:8]}"
    options = ConsumerOptions(topics=(f"{prefix}/+/p1",), client_id=f"kwtest-{uuid.uuid4().hex[:8]}",
                              session_expiry_s=30, idle_exit_s=1.5, flush_s=0.2)
    consumer = TelemetryConsumer(engine, options)
    thread = threading.Thread(target=lambda: consumer.run(clock=lambda: NOW), daemon=True)
    thread.start()
    time.sleep(0.5)  # subscribed
    samples = series(EAN_A, 100) + series(EAN_B, 100)
    bad = [(EAN_A, b"garbage"), ("123", msg(timestamp="2026-11-22T12:00:00Z", import_wh=1, export_wh=1)),
           (EAN_B, msg(timestamp="2026-11-22T12:00:00Z", import_wh="x", export_wh=1))]
    publish(prefix, [as_json(s) for s in samples] + bad + [as_json(s) for s in samples[:10]])
    thread.join(20)
    assert not thread.is_alive()
    s = consumer.stats
    assert (s.received, s.stored, s.duplicates) == (213, 200, 10)
    assert s.rejected == {"unknown_payload": 1, "bad_ean": 1, "bad_field": 1}
    assert stored_quarters(engine) == expected_quarters(samples)
    engine.dispose()


def start_consumer(db: str, prefix: str, client_id: str) -> subprocess.Popen:  # type: ignore[type-arg]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.Popen(
        [sys.executable, "-m", "kwartier.cli_telemetry", "telemetry", "run", "--db", db, "--topic",
         f"{prefix}/+/p1", "--client-id", client_id, "--session-expiry", "60", "--batch", "50",
         "--idle-exit", "2", "--json"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_subscribed(proc: subprocess.Popen) -> None:  # type: ignore[type-arg]
    """Block until the consumer says it is subscribed (its session exists on the broker)."""
    for line in proc.stderr:  # type: ignore[union-attr]
        if line.startswith(b"subscribed"):
            return
    raise AssertionError(f"the consumer exited before subscribing: {proc.wait()}")


def wait_for(engine, n: int, timeout: float) -> int:  # type: ignore[no-untyped-def]
    deadline, got = time.monotonic() + timeout, 0
    while time.monotonic() < deadline:
        got = count(engine, telemetry_samples)
        if got >= n:
            break
        time.sleep(0.05)
    return got


@pytest.mark.slow
def test_sigkill_mid_stream_and_restart_leaves_no_gap_and_no_double_count(tmp_path):
    broker()
    db = f"sqlite:///{tmp_path / 'k.db'}"
    engine = with_tables(open_store(db))
    prefix, client_id = f"kwtest-{uuid.uuid4().hex[:8]}", f"kwtest-{uuid.uuid4().hex[:8]}"
    samples = [s for i in range(4) for s in series(make_ean18(f"8716871200000010{i}"), 250)]
    samples.sort(key=lambda s: s.ts)
    payloads = [as_json(s) for s in samples]
    first = start_consumer(db, prefix, client_id)
    try:
        wait_subscribed(first)
        publisher = threading.Thread(target=publish, args=(prefix, payloads[:700], 400))
        publisher.start()
        assert wait_for(engine, 150, 20) >= 150
        first.send_signal(signal.SIGKILL)  # mid-stream: batches committed, others received and unacknowledged
        first.wait(5)
        publisher.join(20)
        killed_at = count(engine, telemetry_samples)
        assert killed_at < 700, "the consumer finished before the kill: nothing was tested"
        publish(prefix, payloads[700:])  # published while the consumer is down: the broker keeps them
    finally:
        if first.poll() is None:
            first.kill()
    second = start_consumer(db, prefix, client_id)
    out, err = second.communicate(timeout=40)
    assert second.returncode == 0, err.decode()
    stats = json.loads(out)
    assert count(engine, telemetry_samples) == len(samples)  # no gap
    assert stats["stored"] == len(samples) - killed_at  # no double count: redelivered ones were duplicates
    assert stored_quarters(engine) == expected_quarters(samples)
    engine.dispose()
