"""Alert delivery: real SMTP (aiosmtpd), a real HTTP receiver checking the HMAC, Mosquitto; once only."""

from __future__ import annotations

import json
import queue
import socket
import threading
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import need
from kwartier.services.alert_delivery import (
    SIGNATURE_HEADER,
    EmailTarget,
    MqttTarget,
    RetryPolicy,
    WebhookTarget,
    alert_document,
    claim,
    deliver,
    delivery_log,
    sign,
    verify_signature,
)
from kwartier.store import schema
from kwartier.store.schema_telemetry import alert_deliveries, telemetry_samples
from kwartier.web.alerts import Alert

ALERT = Alert("alert_negative", datetime(2026, 11, 23, 11, 0, tzinfo=UTC),
              {"count": 6, "eur_per_kwh": Decimal("-0.012300")})
SECRET = "s3cret-shared"


@pytest.fixture
def store(engine):  # type: ignore[no-untyped-def]
    schema.metadata.create_all(engine, tables=[telemetry_samples, alert_deliveries], checkfirst=True)
    return engine


class Receiver(BaseHTTPRequestHandler):
    """Answers with the next status of ``server.script`` (then 200) and records verified bodies."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        ok = verify_signature(SECRET, body, self.headers.get(SIGNATURE_HEADER))
        status = self.server.script.pop(0) if self.server.script else (200 if ok else 401)  # type: ignore[attr-defined]
        self.server.calls.append((status, ok, self.headers.get("Idempotency-Key"), body))  # type: ignore[attr-defined]
        self.send_response(status)
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        return


@pytest.fixture
def receiver():  # type: ignore[no-untyped-def]
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    server.script, server.calls = [], []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def url(server) -> str:  # type: ignore[no-untyped-def]
    return f"http://127.0.0.1:{server.server_address[1]}/hook"


def test_signature_is_hmac_sha256_of_the_body():
    # hand-checked with: printf '{"a":1}' | openssl dgst -sha256 -hmac key
    assert sign("key", b'{"a":1}') == "sha256=88a67f24bbcdaed0e6c997404bb79a743baf44c6bab2f4c27328e3009d22e342"
    assert verify_signature("key", b'{"a":1}', sign("key", b'{"a":1}'))
    assert not verify_signature("key", b'{"a":2}', sign("key", b'{"a":1}'))
    assert not verify_signature("other", b'{"a":1}', sign("key", b'{"a":1}'))
    assert not verify_signature("key", b"x", None)


def test_alert_id_is_stable_and_depends_on_subject_and_values():
    a, b = alert_document(ALERT, "P1"), alert_document(ALERT, "P1")
    assert a == b and a["values"] == {"count": 6, "eur_per_kwh": "-0.012300"} and a["at"] == "2026-11-23T11:00:00Z"
    assert alert_document(ALERT, "P2")["id"] != a["id"]
    other = Alert(ALERT.kind, ALERT.at_utc, {**ALERT.values, "count": 7})
    assert alert_document(other, "P1")["id"] != a["id"]


def test_webhook_retries_with_backoff_then_once_only(store, receiver):
    receiver.script = [503, 500]
    slept: list[float] = []
    target = WebhookTarget(url(receiver), SECRET)
    (out,) = deliver(store, ALERT, "P1", [target], sleep=slept.append)
    assert (out.status, out.attempts) == ("delivered", 3)
    assert slept == [0.5, 1.0]  # exponential backoff
    assert [(s, ok) for s, ok, _, _ in receiver.calls] == [(503, True), (500, True), (200, True)]
    key, body = receiver.calls[-1][2], json.loads(receiver.calls[-1][3])
    assert key == body["id"] == alert_document(ALERT, "P1")["id"]
    assert body["kind"] == "alert_negative" and "-0.012300" in body["text"]
    (again,) = deliver(store, ALERT, "P1", [target], sleep=slept.append)  # a rerun
    assert again.status == "already" and len(receiver.calls) == 3
    (other,) = deliver(store, ALERT, "P2", [target], sleep=slept.append)  # another participant's alert
    assert other.status == "delivered" and len(receiver.calls) == 4
    log = delivery_log(store)
    assert [(r["status"], r["attempts"]) for r in log] == [("delivered", 3), ("delivered", 1)]


def test_a_refused_webhook_is_permanent_and_an_unreachable_one_is_retried_later(store, receiver):
    bad = WebhookTarget(url(receiver), "wrong-secret")
    (out,) = deliver(store, ALERT, "P1", [bad], sleep=lambda _s: None)
    assert (out.status, out.attempts) == ("failed", 1) and "401" in (out.error or "")
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    down = WebhookTarget(f"http://127.0.0.1:{dead_port}/hook", SECRET, timeout_s=2)
    slept: list[float] = []
    (out,) = deliver(store, ALERT, "P1", [down], policy=RetryPolicy(attempts=4, base_s=0.1), sleep=slept.append)
    assert (out.status, out.attempts) == ("failed", 4)
    assert slept == pytest.approx([0.1, 0.2, 0.4])
    # the receiver comes back: a rerun delivers the failed row, and only that one
    up = WebhookTarget(url(receiver), SECRET)
    assert [o.status for o in deliver(store, ALERT, "P1", [up], sleep=lambda _s: None)] == ["delivered"]


def test_a_claimed_row_is_not_sent_by_a_concurrent_run(store, receiver):
    target = WebhookTarget(url(receiver), SECRET)
    key = str(alert_document(ALERT, "P1")["id"])
    now = datetime.now(UTC)
    assert claim(store, key, target, now)  # another run holds it (crashed or still sending)
    (out,) = deliver(store, ALERT, "P1", [target], sleep=lambda _s: None)
    assert out.status == "already" and receiver.calls == []
    later = datetime(2100, 1, 1, tzinfo=UTC)  # long after: the claim is stale and may be taken over
    (out,) = deliver(store, ALERT, "P1", [target], sleep=lambda _s: None, clock=lambda: later)
    assert out.status == "delivered" and len(receiver.calls) == 1


def test_email_through_a_real_smtp_server_once(tmp_path):
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Message

    from kwartier.store import open_store

    engine = open_store(f"sqlite:///{tmp_path / 'k.db'}")
    schema.metadata.create_all(engine, tables=[alert_deliveries], checkfirst=True)
    received: list = []

    class Collect(Message):
        def handle_message(self, message) -> None:  # type: ignore[no-untyped-def]
            received.append(message)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    controller = Controller(Collect(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        target = EmailTarget("jan@example.org", port=port, sender="alerts@kwartier.example")
        assert [o.status for o in deliver(engine, ALERT, "P1", [target], lang="nl")] == ["delivered"]
        assert [o.status for o in deliver(engine, ALERT, "P1", [target], lang="nl")] == ["already"]
    finally:
        controller.stop()
    (mail,) = received
    mail = message_from_bytes(mail.as_bytes())
    assert mail["To"] == "jan@example.org" and mail["Subject"] == "kwartier: Negatieve prijzen"
    assert str(alert_document(ALERT, "P1")["id"]) in mail["Message-ID"]
    assert "-0.012300 EUR/kWh" in mail.get_payload()
    engine.dispose()


def test_mqtt_delivery_to_mosquitto_once(tmp_path):
    try:
        socket.create_connection(("127.0.0.1", 1883), timeout=1).close()
    except OSError:
        need(False, "Mosquitto is not reachable at 127.0.0.1:1883")
    import paho.mqtt.client as mqtt

    from kwartier.store import open_store

    engine = open_store(f"sqlite:///{tmp_path / 'k.db'}")
    schema.metadata.create_all(engine, tables=[alert_deliveries], checkfirst=True)
    topic = f"kwtest-{uuid.uuid4().hex[:8]}/alerts/P1"
    got: queue.Queue[bytes] = queue.Queue()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    sub.on_message = lambda _c, _u, m: got.put(m.payload)
    subscribed = threading.Event()
    sub.on_subscribe = lambda *_a: subscribed.set()
    sub.connect("127.0.0.1", 1883)
    sub.subscribe(topic, qos=1)
    sub.loop_start()
    try:
        assert subscribed.wait(5)
        target = MqttTarget(topic)
        assert [o.status for o in deliver(engine, ALERT, "P1", [target])] == ["delivered"]
        doc = json.loads(got.get(timeout=5))
        assert doc["id"] == alert_document(ALERT, "P1")["id"] and doc["kind"] == "alert_negative"
        assert [o.status for o in deliver(engine, ALERT, "P1", [target])] == ["already"]
        with pytest.raises(queue.Empty):
            got.get(timeout=0.5)
    finally:
        sub.disconnect()
        sub.loop_stop()
    engine.dispose()
