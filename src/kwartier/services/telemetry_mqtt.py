"""The telemetry consumer over MQTT: at-least-once delivery (QoS 1, a persistent MQTT 5 session,
each message acknowledged only after the samples it holds are committed), validation and storage
through :mod:`kwartier.services.telemetry`."""

from __future__ import annotations

import queue
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.client import topic_matches_sub
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from kwartier.services.telemetry import MessageRejected, Sample, TelemetryStore, parse_message, topic_ean

# ---------------------------------------------------------------------------------------------
# The MQTT consumer: at-least-once delivery (QoS 1, acknowledged only after the commit)

DEFAULT_TOPIC = "kwartier/+/p1"
DEFAULT_URL = "mqtt://127.0.0.1:1883"


def parse_mqtt_url(url: str) -> tuple[str, int, str | None, str | None]:
    """Host, port, user and password of ``mqtt://[user[:password]@]host[:port]``."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "tcp") or not parts.hostname:
        raise ValueError(f"{url!r} is no MQTT URL; expected mqtt://host[:port]")
    return parts.hostname, parts.port or 1883, parts.username, parts.password


@dataclass
class ConsumerOptions:
    """How ``kwartier telemetry run`` subscribes, batches and keeps samples."""

    url: str = DEFAULT_URL
    topics: tuple[str, ...] = (DEFAULT_TOPIC,)
    client_id: str = "kwartier-telemetry"  # the persistent session's name: keep it across restarts
    session_expiry_s: int = 7 * 24 * 3600  # the broker keeps messages for a stopped consumer this long
    retention: timedelta = timedelta(days=30)
    batch_max: int = 5000  # messages per transaction
    flush_s: float = 0.5  # the longest a message waits for its transaction
    receive_maximum: int = 65535  # unacknowledged messages the broker may send ahead (the MQTT maximum)
    idle_exit_s: float | None = None  # stop after this long without a message (tests, backfills)


@dataclass
class ConsumerStats:
    """Running totals of a consumer, as ``--json`` prints them."""

    received: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    quarters_new: int = 0
    quarters_revised: int = 0
    backwards: int = 0
    batches: int = 0
    db_errors: int = 0
    purged: int = 0

    def to_json(self) -> dict[str, object]:
        return {k: (dict(v) if isinstance(v, dict) else v) for k, v in self.__dict__.items()}


class TelemetryConsumer:
    """Subscribes with a persistent session and stores what arrives in batches, acknowledging after commit.

    Messages that arrive while it is down are kept by the broker (session expiry) and delivered on
    restart; messages received but not yet committed when it dies are not acknowledged, so the
    broker sends them again. Storage is idempotent, so redelivery never counts twice.
    """

    def __init__(self, engine: Engine, options: ConsumerOptions, log=None):  # type: ignore[no-untyped-def]
        self.options = options
        self.store = TelemetryStore(engine, origin=f"{options.url} {','.join(options.topics)}")
        self.stats = ConsumerStats()
        self._queue: queue.SimpleQueue[tuple[int, int, str, bytes]] = queue.SimpleQueue()
        self._stopping = False
        self._log = log or (lambda _msg: None)

    def stop(self) -> None:
        """Finish the current batch and return from :meth:`run` (safe from a signal handler)."""
        self._stopping = True

    def _client(self):  # type: ignore[no-untyped-def]
        o = self.options
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=o.client_id,
                             protocol=mqtt.MQTTv5, manual_ack=True)
        host, port, user, password = parse_mqtt_url(o.url)
        if user:
            client.username_pw_set(user, password)

        def on_connect(c, _userdata, _flags, reason, _props):  # type: ignore[no-untyped-def]
            if reason.is_failure:
                self._log(f"MQTT connect refused: {reason}")
                return
            c.subscribe([(t, 1) for t in o.topics])

        def on_message(_c, _userdata, msg):  # type: ignore[no-untyped-def]
            self._queue.put((msg.mid, msg.qos, msg.topic, msg.payload))

        def on_subscribe(_c, _userdata, _mid, reasons, _props):  # type: ignore[no-untyped-def]
            refused = [str(r) for r in reasons if r.is_failure]
            self._log(f"subscription refused: {refused}" if refused else f"subscribed to {', '.join(o.topics)}")

        client.on_connect = on_connect
        client.on_subscribe = on_subscribe
        client.on_message = on_message
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = o.session_expiry_s
        props.ReceiveMaximum = o.receive_maximum
        client.connect(host, port, keepalive=30, clean_start=False, properties=props)
        return client

    def run(self, clock=None) -> ConsumerStats:  # type: ignore[no-untyped-def]
        """Consume until :meth:`stop` (or ``idle_exit_s`` without messages); returns the totals."""
        now = clock or (lambda: datetime.now(UTC))
        client = self._client()
        client.loop_start()
        last_message = last_purge = time.monotonic()
        self.stats.purged += self.store.purge(now(), self.options.retention)
        try:
            while not self._stopping:
                batch = self._take_batch()
                if batch:
                    last_message = time.monotonic()
                    self._process(client, batch, now())
                elif self._idle_for(time.monotonic() - last_message):
                    break
                if time.monotonic() - last_purge > 3600:
                    self.stats.purged += self.store.purge(now(), self.options.retention)
                    last_purge = time.monotonic()
        finally:
            client.disconnect()
            client.loop_stop()
        return self.stats

    def _idle_for(self, seconds: float) -> bool:
        return self.options.idle_exit_s is not None and seconds > self.options.idle_exit_s

    def _take_batch(self) -> list[tuple[int, int, str, bytes]]:
        batch: list[tuple[int, int, str, bytes]] = []
        deadline = time.monotonic() + self.options.flush_s
        while len(batch) < self.options.batch_max:
            wait = deadline - time.monotonic()
            if wait <= 0:
                break
            try:
                batch.append(self._queue.get(timeout=wait))
            except queue.Empty:
                break
        return batch

    def _process(self, client, batch: list[tuple[int, int, str, bytes]], now: datetime) -> None:  # type: ignore[no-untyped-def]
        samples: list[Sample] = []
        for _mid, _qos, topic, payload in batch:
            pattern = next((p for p in self.options.topics if topic_matches_sub(p, topic)), "")
            try:
                samples += parse_message(payload, topic_ean(pattern, topic), now)
            except MessageRejected as exc:
                self.stats.rejected[exc.reason] = self.stats.rejected.get(exc.reason, 0) + 1
                self._log(f"rejected a message on {topic}: {exc}")
        delay = 0.5
        while True:  # the database may be away for a while: keep the batch (unacknowledged) and retry
            try:
                result = self.store.store(samples, now)
                break
            except (SQLAlchemyError, OSError) as exc:  # nothing was committed
                if self._stopping:
                    raise
                self.stats.db_errors += 1
                self._log(f"storing a batch failed ({exc.__class__.__name__}); retrying in {delay:.1f} s")
                time.sleep(delay)
                delay = min(delay * 2, 30.0)
        for mid, qos, _topic, _payload in batch:
            client.ack(mid, qos)
        s = self.stats
        s.received += len(batch)
        s.stored += result.new_samples
        s.duplicates += result.duplicates
        s.quarters_new += result.quarters.new
        s.quarters_revised += result.quarters.revised
        s.backwards += result.backwards
        s.batches += 1
