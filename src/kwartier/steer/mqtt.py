"""Set-points over MQTT: the topic layout, the JSON payloads and a publisher for a real broker.

Topic layout (see docs/mqtt.md; ``<prefix>`` is ``kwartier`` unless configured)::

    <prefix>/<community>/status                           online | offline  (retained; offline is the will)
    <prefix>/<community>/<ean>/<device>/setpoint          JSON set-point of the current quarter
    <prefix>/<community>/<ean>/<device>/schedule          JSON list: the whole planned horizon
    <prefix>/<community>/<ean>/<device>/state             from the device: {"soc_kwh": 6.2} (read by kwartier)
    <prefix>/<community>/prices/<plan>/...                price topics (see kwartier.steer.publish)

Every message is published with QoS 1 and retained, so a device that (re)connects gets the last
set-point at once. Sign: ``power_kw`` > 0 means the device takes power (a battery charges),
< 0 that it delivers power (a battery discharges). ``valid_until`` is the end of the quarter: a
device that receives no newer set-point by then should fall back to its own safe behaviour.

The broker comes from ``KWARTIER_MQTT_URL`` (``mqtt://user:password@host:1883``; ``mqtts://`` for
TLS), default ``mqtt://127.0.0.1:1883``.
"""

from __future__ import annotations

import contextlib
import json
import threading
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import unquote, urlsplit

from kwartier.timegrid import QUARTER, floor_to_grid, iso_utc, require_aware

ENV_VAR = "KWARTIER_MQTT_URL"
DEFAULT_URL = "mqtt://127.0.0.1:1883"
DEFAULT_PREFIX = "kwartier"
QOS = 1
_FORBIDDEN = set("+#/\x00")


class MqttError(RuntimeError):
    """The broker cannot be reached or refused a message; the message says which broker and why."""


@dataclass(frozen=True)
class Broker:
    """Where the broker is and how to log in."""

    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None

    @property
    def label(self) -> str:
        """``mqtt://host:port`` without the password, for messages."""
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


def broker_url(env: Mapping[str, str], given: str | None = None) -> str:
    """The broker URL: ``given`` (a --mqtt option), else ``$KWARTIER_MQTT_URL``, else the default."""
    return given or env.get(ENV_VAR) or DEFAULT_URL


def parse_broker_url(url: str) -> Broker:
    """``mqtt://[user[:password]@]host[:port]`` (port 1883; ``mqtts://`` is TLS on 8883)."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise MqttError(f"MQTT URL {url!r} is not mqtt://host:port or mqtts://host:port")
    tls = parts.scheme == "mqtts"
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError:
        raise MqttError(f"MQTT URL {url!r} has an invalid port") from None
    return Broker(parts.hostname, port, tls, unquote(parts.username) if parts.username else None,
                  unquote(parts.password) if parts.password else None)


def topic_segment(value: str, what: str) -> str:
    """``value`` as one topic level: not empty, no ``/``, ``+``, ``#`` or NUL (they would change the topic)."""
    if not value or _FORBIDDEN & set(value):
        raise MqttError(f"{what} {value!r} cannot be an MQTT topic level (empty, or contains / + # or NUL)")
    return value


def community_topic(prefix: str, community: str, *levels: str) -> str:
    """``<prefix>/<community>/<levels...>``; each level checked with :func:`topic_segment`."""
    parts = [topic_segment(p, "topic prefix") for p in prefix.split("/")]
    parts.append(topic_segment(community, "community"))
    parts.extend(topic_segment(level, "topic level") for level in levels)
    return "/".join(parts)


def status_topic(prefix: str, community: str) -> str:
    return community_topic(prefix, community, "status")


def device_topic(prefix: str, community: str, ean: str, device: str, leaf: str) -> str:
    """``<prefix>/<community>/<ean>/<device>/<leaf>`` (leaf: ``setpoint`` or ``schedule``)."""
    return community_topic(prefix, community, topic_segment(ean, "EAN"), topic_segment(device, "device id"), leaf)


@dataclass(frozen=True)
class Message:
    """One MQTT publication."""

    topic: str
    payload: bytes
    qos: int = QOS
    retain: bool = True


@dataclass(frozen=True)
class SetPoint:
    """What one device should do during the quarter starting at ``start`` (UTC).

    ``power_kw``: > 0 takes power (charging, consuming), < 0 delivers power (discharging).
    ``soc_kwh``: the planned state of charge at the end of the quarter (None for devices without one).
    """

    start: datetime
    device: str
    power_kw: Decimal
    soc_kwh: Decimal | None
    reason: str


def setpoint_json(sp: SetPoint) -> dict[str, object]:
    """The JSON object of one set-point: start, power_kw, soc_kwh, reason, valid_until (numbers in kW, kWh)."""
    start = require_aware(sp.start, "set-point start")
    return {"start": iso_utc(start), "power_kw": float(round(sp.power_kw, 3)),
            "soc_kwh": None if sp.soc_kwh is None else float(round(sp.soc_kwh, 3)),
            "reason": sp.reason, "valid_until": iso_utc(start + QUARTER)}


def encode(obj: object) -> bytes:
    """Compact, key-sorted UTF-8 JSON: the same object always gives the same bytes."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()


def current_setpoint(setpoints: Sequence[SetPoint], now: datetime) -> SetPoint | None:
    """The set-point of the quarter containing ``now``, else the first one after it; None when all are past."""
    quarter = floor_to_grid(now)
    upcoming = [sp for sp in setpoints if sp.start >= quarter]
    return min(upcoming, key=lambda sp: sp.start) if upcoming else None


def setpoint_messages(prefix: str, community: str, ean: str, setpoints: Iterable[SetPoint],
                      now: datetime) -> list[Message]:
    """Per device of one connection: its current ``setpoint`` and its whole ``schedule`` (both retained)."""
    by_device: dict[str, list[SetPoint]] = {}
    for sp in setpoints:
        by_device.setdefault(sp.device, []).append(sp)
    messages = []
    for device, rows in sorted(by_device.items()):
        rows.sort(key=lambda sp: sp.start)
        now_sp = current_setpoint(rows, now)
        if now_sp is not None:
            messages.append(Message(device_topic(prefix, community, ean, device, "setpoint"),
                                    encode(setpoint_json(now_sp))))
        future = [setpoint_json(sp) for sp in rows if sp.start >= floor_to_grid(now)]
        messages.append(Message(device_topic(prefix, community, ean, device, "schedule"), encode(future)))
    return messages


@dataclass(frozen=True)
class DeviceState:
    """What a device reported on its ``state`` topic: its state of charge (kWh), and when it arrived."""

    soc_kwh: Decimal
    received_at: datetime


def state_filter(prefix: str, community: str) -> str:
    """The subscription for every device's ``state`` topic of a community."""
    return community_topic(prefix, community) + "/+/+/state"


def parse_state(topic: str, payload: bytes, prefix: str, community: str, received_at: datetime
                ) -> tuple[str, str, DeviceState] | None:
    """``(ean, device, state)`` from a ``.../<ean>/<device>/state`` message with ``{"soc_kwh": number >= 0}``;
    None for another topic or a payload that is not that (a device's garbage never steers anything).
    """
    base = [*prefix.split("/"), community]
    levels = topic.split("/")
    if len(levels) != len(base) + 3 or levels[:len(base)] != base or levels[-1] != "state":
        return None
    try:
        soc = Decimal(str(json.loads(payload)["soc_kwh"]))
    except (ValueError, KeyError, TypeError, ArithmeticError):
        return None
    if not soc.is_finite() or soc < 0:
        return None
    return levels[-3], levels[-2], DeviceState(soc, require_aware(received_at, "received_at"))


class MqttPublisher:
    """A connection to a real broker that publishes :class:`Message` s and waits for the broker's PUBACK.

    With ``status_topic`` it announces ``online`` (retained) and leaves ``offline`` as its will, so
    subscribers see when kwartier stops steering. With ``watch`` = ``(prefix, community)`` it also
    listens to the devices' ``state`` topics (see :meth:`measured_soc`). Use as a context manager.
    """

    def __init__(self, url: str, *, status_topic: str | None = None, timeout_s: float = 10.0,
                 client_id: str | None = None, watch: tuple[str, str] | None = None) -> None:
        self.broker = parse_broker_url(url)
        self.status_topic = status_topic
        self.watch = watch
        self._states: dict[tuple[str, str], DeviceState] = {}
        self._states_lock = threading.Lock()
        self.timeout_s = timeout_s
        self.client_id = client_id or f"kwartier-{uuid.uuid4().hex[:12]}"
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._refused: str | None = None
        self._client: Any = None  # paho.mqtt.client.Client once connected

    def __enter__(self) -> MqttPublisher:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def connect(self) -> None:
        import paho.mqtt.client as paho

        client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=self.client_id)
        if self.broker.username:
            client.username_pw_set(self.broker.username, self.broker.password)
        if self.broker.tls:
            client.tls_set()
        if self.status_topic:
            client.will_set(self.status_topic, b"offline", qos=QOS, retain=True)
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.on_subscribe = lambda *_: self._subscribed.set()
        try:
            client.connect(self.broker.host, self.broker.port, keepalive=60)
        except OSError as exc:
            raise MqttError(f"cannot reach the MQTT broker {self.broker.label}: {exc}; "
                            f"start one or set ${ENV_VAR}") from None
        client.loop_start()
        self._client = client
        if not self._connected.wait(self.timeout_s) or self._refused:
            self.close(announce=False)
            why = self._refused or f"no answer within {self.timeout_s:g} s"
            raise MqttError(f"the MQTT broker {self.broker.label} did not accept the connection: {why}")
        if self.watch and not self._subscribed.wait(self.timeout_s):
            self.close(announce=False)
            raise MqttError(f"the MQTT broker {self.broker.label} did not confirm the subscription to "
                            f"{state_filter(*self.watch)!r} within {self.timeout_s:g} s")
        if self.status_topic:
            self.publish([Message(self.status_topic, b"online")])

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:  # type: ignore[no-untyped-def]
        if reason_code.is_failure:
            self._refused = str(reason_code)
        elif self.watch:  # (re)subscribe on every connect: a reconnect starts a new session
            client.subscribe(state_filter(*self.watch), qos=QOS)
        self._connected.set()

    def _on_message(self, client, userdata, msg) -> None:  # type: ignore[no-untyped-def]
        if not self.watch:
            return
        parsed = parse_state(msg.topic, msg.payload, *self.watch, datetime.now(UTC))
        if parsed is not None:
            ean, device, state = parsed
            with self._states_lock:
                self._states[(ean, device)] = state

    def measured_soc(self, now: datetime, max_age: timedelta = timedelta(minutes=30)
                     ) -> dict[str, dict[str, Decimal]]:
        """The states of charge devices reported within ``max_age`` before ``now``: ``{ean: {device: kWh}}``."""
        with self._states_lock:
            fresh = [(k, s) for k, s in self._states.items() if now - s.received_at <= max_age]
        out: dict[str, dict[str, Decimal]] = {}
        for (ean, device), state in fresh:
            out.setdefault(ean, {})[device] = state.soc_kwh
        return out

    def publish(self, messages: Iterable[Message]) -> int:
        """Publish all ``messages`` and wait until the broker acknowledged each; returns how many."""
        if self._client is None:
            raise MqttError("publish before connect()")
        infos = [(m, self._client.publish(m.topic, m.payload, qos=m.qos, retain=m.retain)) for m in messages]
        for m, info in infos:
            if info.rc != 0:
                raise MqttError(f"the MQTT broker {self.broker.label} refused {m.topic!r} (code {info.rc})")
            info.wait_for_publish(self.timeout_s)
            if not info.is_published():
                raise MqttError(f"no acknowledgement from {self.broker.label} for {m.topic!r} "
                                f"within {self.timeout_s:g} s")
        return len(infos)

    def close(self, announce: bool = True) -> None:
        """Say ``offline`` (a clean stop does not trigger the will) and disconnect."""
        client, self._client = self._client, None
        if client is None:
            return
        if announce and self.status_topic and self._connected.is_set() and not self._refused:
            info = client.publish(self.status_topic, b"offline", qos=QOS, retain=True)
            with contextlib.suppress(RuntimeError):  # the connection dropped meanwhile: the will says it
                info.wait_for_publish(self.timeout_s)
        client.disconnect()
        client.loop_stop()
