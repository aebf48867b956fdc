"""Alert delivery: e-mail (SMTP), signed webhooks (HMAC-SHA256) and MQTT, once per alert and recipient.

An alert (see :mod:`kwartier.web.alerts`) for a subject (a participant) has a key: the SHA-256 of
its canonical JSON (subject, kind, time, values). ``alert_deliveries`` holds one row per key,
channel and recipient (unique). A delivery first *claims* its row (pending or failed -> sending, in
one UPDATE, so two concurrent runs cannot both send), then tries with exponential backoff, and
records delivered or failed. A rerun skips delivered rows and retries failed ones.

The one gap no sender can close alone: a crash after the receiver accepted the message but before
the row says delivered. Such a row stays ``sending``; after ``stale`` (10 min) a rerun sends again.
Every message therefore carries the delivery id for the receiver to drop a repeat: the webhook's
``Idempotency-Key`` header and body ``id``, the e-mail's ``Message-ID``, the MQTT payload's ``id``.

Webhook signature: header ``X-Kwartier-Signature: sha256=<hex>``, the HMAC-SHA256 of the exact body
bytes with the shared secret (check it with :func:`verify_signature`). HTTP 5xx, 408, 429 and
network errors are retried; another 4xx is permanent (retrying cannot help). SMTP refusals of the
recipient are permanent; other SMTP and network errors are retried.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import smtplib
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.message import EmailMessage

import paho.mqtt.client as mqtt
from sqlalchemy import Engine, and_, or_, select, update

from kwartier.services.telemetry_mqtt import parse_mqtt_url
from kwartier.store.schema_telemetry import alert_deliveries
from kwartier.web.alerts import Alert

SIGNATURE_HEADER = "X-Kwartier-Signature"
STALE_CLAIM = timedelta(minutes=10)


@dataclass(frozen=True)
class EmailTarget:
    """An e-mail address and the SMTP server that takes the message."""

    address: str
    host: str = "127.0.0.1"
    port: int = 25
    sender: str = "kwartier@localhost"
    username: str | None = None
    password: str | None = None
    starttls: bool = False
    channel = "email"

    @property
    def recipient(self) -> str:
        return self.address


@dataclass(frozen=True)
class WebhookTarget:
    """An HTTP(S) URL that receives the alert as a signed JSON POST."""

    url: str
    secret: str
    timeout_s: float = 10.0
    channel = "webhook"

    @property
    def recipient(self) -> str:
        return self.url


@dataclass(frozen=True)
class MqttTarget:
    """An MQTT topic (QoS 1) on a broker."""

    topic: str
    url: str = "mqtt://127.0.0.1:1883"
    channel = "mqtt"

    @property
    def recipient(self) -> str:
        return f"{self.url.rstrip('/')}/{self.topic}"


Target = EmailTarget | WebhookTarget | MqttTarget


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts per delivery and the backoff between them: ``base_s * factor**(n-1)``, at most ``max_s``."""

    attempts: int = 5
    base_s: float = 0.5
    factor: float = 2.0
    max_s: float = 60.0

    def delay(self, failed_attempts: int) -> float:
        return min(self.base_s * self.factor ** (failed_attempts - 1), self.max_s)


@dataclass(frozen=True)
class Outcome:
    """What happened to one (alert, target): delivered, failed, or already (delivered or claimed before)."""

    channel: str
    recipient: str
    status: str
    attempts: int
    error: str | None = None


class PermanentFailure(Exception):
    """The receiver refused the message in a way a retry cannot change."""


# --- the alert as text and JSON (pure) ----------------------------------------------------------


def _plain(value: object) -> object:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, Decimal | int | str):
        return str(value) if isinstance(value, Decimal) else value
    return str(value)


def alert_document(alert: Alert, subject: str) -> dict[str, object]:
    """The alert as JSON-ready data (Decimal as text, times as UTC ISO 8601), keyed by its ``id``."""
    doc: dict[str, object] = {"subject": subject, "kind": alert.kind, "at": _plain(alert.at_utc),
                              "values": {k: _plain(v) for k, v in sorted(alert.values.items())}}
    doc["id"] = hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return doc


def alert_text(alert: Alert, lang: str = "en", tz: str = "Europe/Amsterdam") -> tuple[str, str]:
    """The alert's title and sentence in ``lang`` (the portal's texts), times shown in ``tz``."""
    from kwartier.timegrid import format_local
    from kwartier.web import i18n

    fields = {k: (format_local(v, tz) if isinstance(v, datetime) else v) for k, v in alert.values.items()}
    return i18n.t(f"{alert.kind}_title", lang), i18n.t(alert.kind, lang, **fields)


def sign(secret: str, body: bytes) -> str:
    """The signature header value for ``body``: ``sha256=`` + hex HMAC-SHA256 with ``secret``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(secret: str, body: bytes, header: str | None) -> bool:
    """Whether ``header`` is the signature of ``body`` under ``secret`` (constant-time compare)."""
    return header is not None and hmac.compare_digest(sign(secret, body), header)


# --- senders: one attempt each --------------------------------------------------------------------


def send_email(target: EmailTarget, doc: dict[str, object], title: str, text: str) -> None:
    msg = EmailMessage()
    msg["Subject"] = f"kwartier: {title}"
    msg["From"] = target.sender
    msg["To"] = target.address
    msg["Message-ID"] = f"<{doc['id']}.{hashlib.sha256(target.address.encode()).hexdigest()[:12]}@kwartier>"
    msg.set_content(f"{text}\n\n-- \nkwartier alert {doc['kind']} ({doc['id'][:12]})\n")  # type: ignore[index]
    try:
        with smtplib.SMTP(target.host, target.port, timeout=10) as smtp:
            if target.starttls:
                smtp.starttls()
            if target.username:
                smtp.login(target.username, target.password or "")
            smtp.send_message(msg)
    except (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused) as exc:
        raise PermanentFailure(f"SMTP refused: {exc}") from None


def send_webhook(target: WebhookTarget, doc: dict[str, object], title: str, text: str) -> None:
    body = json.dumps({**doc, "title": title, "text": text}, sort_keys=True).encode()
    request = urllib.request.Request(target.url, data=body, method="POST", headers={
        "Content-Type": "application/json", SIGNATURE_HEADER: sign(target.secret, body),
        "Idempotency-Key": str(doc["id"]), "User-Agent": "kwartier-alerts"})
    try:
        with urllib.request.urlopen(request, timeout=target.timeout_s) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        if 400 <= exc.code < 500 and exc.code not in (408, 429):
            raise PermanentFailure(f"HTTP {exc.code} {exc.reason}") from None
        raise


def send_mqtt(target: MqttTarget, doc: dict[str, object], title: str, text: str) -> None:
    host, port, user, password = parse_mqtt_url(target.url)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"kwartier-alert-{str(doc['id'])[:12]}")
    if user:
        client.username_pw_set(user, password)
    client.connect(host, port, keepalive=10)
    client.loop_start()
    try:
        info = client.publish(target.topic, json.dumps({**doc, "title": title, "text": text}), qos=1)
        info.wait_for_publish(10)
        if not info.is_published():
            raise OSError(f"the broker at {host}:{port} did not acknowledge the message")
    finally:
        client.disconnect()
        client.loop_stop()


SENDERS: dict[str, Callable[..., None]] = {"email": send_email, "webhook": send_webhook, "mqtt": send_mqtt}


# --- the delivery log -------------------------------------------------------------------------------


def _row(key: str, target: Target):  # type: ignore[no-untyped-def]
    c = alert_deliveries.c
    return and_(c.alert_key == key, c.channel == target.channel, c.recipient == target.recipient)


def claim(engine: Engine, key: str, target: Target, now: datetime, stale: timedelta = STALE_CLAIM) -> bool:
    """Create the delivery row if new and take it (-> sending); False if delivered or claimed by another run."""
    c = alert_deliveries.c
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        else:
            from sqlalchemy.dialects.sqlite import insert as dialect_insert  # type: ignore[assignment]
        conn.execute(dialect_insert(alert_deliveries).values(
            alert_key=key, channel=target.channel, recipient=target.recipient, status="pending", attempts=0,
            created_at=now).on_conflict_do_nothing())
        taken = conn.execute(update(alert_deliveries).where(
            _row(key, target),
            or_(c.status.in_(["pending", "failed"]), and_(c.status == "sending", c.claimed_at < now - stale)),
        ).values(status="sending", claimed_at=now))
        return taken.rowcount == 1


def _finish(engine: Engine, key: str, target: Target, status: str, attempts: int, error: str | None,
            now: datetime) -> None:
    c = alert_deliveries.c
    with engine.begin() as conn:
        conn.execute(update(alert_deliveries).where(_row(key, target)).values(
            status=status, attempts=c.attempts + attempts, last_error=error,
            delivered_at=now if status == "delivered" else None))


def deliver(
    engine: Engine,
    alert: Alert,
    subject: str,
    targets: Sequence[Target],
    *,
    lang: str = "en",
    policy: RetryPolicy = RetryPolicy(),  # frozen: a shared default is safe
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> list[Outcome]:
    """Deliver ``alert`` for ``subject`` to every target at most once each; returns one outcome per target."""
    doc = alert_document(alert, subject)
    key = str(doc["id"])
    title, text = alert_text(alert, lang)
    outcomes: list[Outcome] = []
    for target in targets:
        if not claim(engine, key, target, clock()):
            outcomes.append(Outcome(target.channel, target.recipient, "already", 0))
            continue
        attempts, error = 0, None
        while True:
            attempts += 1
            try:
                SENDERS[target.channel](target, doc, title, text)
                error = None
                break
            except PermanentFailure as exc:
                error = str(exc)
                break
            except (OSError, smtplib.SMTPException) as exc:  # network, HTTP 5xx, SMTP trouble: try again
                error = f"{exc.__class__.__name__}: {exc}"
                if attempts >= policy.attempts:
                    break
                sleep(policy.delay(attempts))
        status = "failed" if error else "delivered"
        _finish(engine, key, target, status, attempts, error, clock())
        outcomes.append(Outcome(target.channel, target.recipient, status, attempts, error))
    return outcomes


def delivery_log(engine: Engine) -> list[dict[str, object]]:
    """Every delivery row (for operators and tests), oldest first."""
    c = alert_deliveries.c
    with engine.connect() as conn:
        rows = conn.execute(select(c.alert_key, c.channel, c.recipient, c.status, c.attempts, c.last_error)
                            .order_by(c.id)).mappings().all()
    return [dict(r) for r in rows]
