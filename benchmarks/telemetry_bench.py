"""Telemetry throughput against the real Mosquitto: publish N meters x 10-s samples, consume, check exactly.

    .venv/bin/python benchmarks/telemetry_bench.py [--meters 200] [--samples 500] [--rate 4000] [--db URL]

Starts ``kwartier telemetry run`` as a subprocess (persistent session, QoS 1), publishes the samples
at ``--rate`` messages per second (0: as fast as the publisher can), waits until every sample is
stored and prints the sustained rate (messages stored / seconds from the first publish to the last
commit). Checks: every sample stored exactly once, none rejected, and every quarter-hour reading
equal to the one computed directly from the samples. Exits 1 on a failed check.

The publish rate matters: Mosquitto queues at most ``max_queued_messages`` (default 1000) beyond
the consumer's receive maximum, so a consumer that falls far behind a faster publisher would lose
messages at the broker; the benchmark shows the consumer keeps up with the given rate.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from kwartier.ids import make_ean18  # noqa: E402
from kwartier.services.telemetry import quarters_from_samples  # noqa: E402
from kwartier.store import open_store, schema  # noqa: E402
from kwartier.store.schema_telemetry import alert_deliveries, telemetry_samples  # noqa: E402

START = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def meter_series(meter: int, n: int) -> list[tuple[int, int, int]]:
    """(seconds since START, import register Wh, export register Wh) every 10 s for one meter."""
    rng = random.Random(meter)
    imp, exp, pv = rng.randrange(10**6, 10**7), rng.randrange(0, 10**6), meter % 3 == 0
    out = []
    for i in range(n):
        imp += rng.randrange(0, 9)  # 0..2.9 kW
        exp += rng.randrange(0, 12) if pv else 0
        out.append((10 * i, imp, exp))
    return out


def expected_readings(eans: list[str], data: list[list[tuple[int, int, int]]]) -> dict[tuple[str, datetime], tuple]:
    out: dict[tuple[str, datetime], tuple] = {}
    base_us = int((START - EPOCH).total_seconds()) * 1_000_000
    for ean, rows in zip(eans, data, strict=True):
        ts = [base_us + s * 1_000_000 for s, _, _ in rows]
        quarters, _ = quarters_from_samples(ts, [r[1] for r in rows], [r[2] for r in rows])
        for q in quarters:
            out[(ean, EPOCH + timedelta(microseconds=q.start_us))] = (
                q.import_wh, q.export_wh, "actual" if q.actual else "estimated")
    return out


def count_samples(engine) -> int:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(telemetry_samples)).scalar_one())


def start_consumer(db: str, prefix: str, client_id: str, batch: int) -> subprocess.Popen:  # type: ignore[type-arg]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "kwartier.cli_telemetry", "telemetry", "run", "--db", db, "--topic",
         f"{prefix}/+/p1", "--client-id", client_id, "--session-expiry", "120", "--batch", str(batch),
         "--idle-exit", "3", "--json"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    for line in proc.stderr:  # type: ignore[union-attr]
        if line.startswith(b"subscribed"):
            return proc
    raise SystemExit(f"FAIL: the consumer exited before subscribing ({proc.wait()})")


def _packet(first_byte: int, body: bytes) -> bytes:
    """An MQTT 3.1.1 packet: fixed header (type/flags, remaining length as varint) + body."""
    n, size = len(body), bytearray()
    while True:
        n, digit = divmod(n, 128)
        size.append(digit | (0x80 if n else 0))
        if not n:
            return bytes([first_byte]) + bytes(size) + body


def _utf8(text: str) -> bytes:
    raw = text.encode()
    return len(raw).to_bytes(2, "big") + raw


class RawPublisher:
    """A minimal MQTT 3.1.1 QoS 1 publisher on a plain socket, standing in for a fleet of meters.

    paho's per-message Python work would make the publisher, not the consumer under test, the
    bottleneck on 2 shared cores. Packets are encoded up front and written in chunks; a reader
    thread counts the broker's PUBACKs, so "published" means the broker has taken every message.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 1883):
        self.sock = socket.create_connection((host, port))
        client_id = f"bench-pub-{uuid.uuid4().hex[:8]}"
        self.sock.sendall(_packet(0x10, _utf8("MQTT") + bytes([4, 0x02, 0, 60]) + _utf8(client_id)))
        if self.sock.recv(4)[:1] != b"\x20":
            raise SystemExit("FAIL: the broker refused the benchmark publisher")
        self.acked = 0
        self._reader = threading.Thread(target=self._read_acks, daemon=True)
        self._reader.start()

    def _read_acks(self) -> None:
        buf = b""
        while True:
            chunk = self.sock.recv(65536)
            if not chunk:
                return
            buf += chunk
            whole = len(buf) // 4 * 4  # PUBACK: 0x40 0x02 id id
            self.acked += whole // 4
            buf = buf[whole:]

    def publish_all(self, messages: list[tuple[str, bytes]], rate: float) -> tuple[float, float]:
        """Publish at ``rate`` msgs/s (0: as fast as the broker takes them); (first sent, all acknowledged)."""
        packets = [_packet(0x32, _utf8(topic) + ((i % 65535) + 1).to_bytes(2, "big") + body)
                   for i, (topic, body) in enumerate(messages)]
        began, chunk = time.monotonic(), 100
        for i in range(0, len(packets), chunk):
            while i - self.acked > 30_000:  # never reuse a packet id that may still be unacknowledged
                time.sleep(0.001)
            self.sock.sendall(b"".join(packets[i : i + chunk]))
            if rate:
                time.sleep(max(0.0, began + (i + chunk) / rate - time.monotonic()))
        while self.acked < len(packets):
            time.sleep(0.001)
        done = time.monotonic()
        self.sock.sendall(b"\xe0\x00")
        self.sock.close()
        return began, done


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--meters", type=int, default=200)
    ap.add_argument("--samples", type=int, default=500, help="10-s samples per meter")
    ap.add_argument("--rate", type=float, default=4000, help="publish rate, msgs/s (0: unthrottled)")
    ap.add_argument("--batch", type=int, default=5000, help="consumer messages per transaction")
    ap.add_argument("--db", default=None, help="database URL (default: a fresh SQLite file)")
    args = ap.parse_args()

    folder = tempfile.mkdtemp(prefix="kwartier-telemetry-bench-")
    db = args.db or f"sqlite:///{folder}/bench.db"
    engine = open_store(db)
    schema.metadata.create_all(engine, tables=[telemetry_samples, alert_deliveries], checkfirst=True)
    if count_samples(engine):
        raise SystemExit("FAIL: the benchmark needs an empty telemetry_samples table (use a fresh --db)")
    eans = [make_ean18(f"871687129{m:08d}") for m in range(args.meters)]
    data = [meter_series(m, args.samples) for m in range(args.meters)]
    prefix = f"kwbench-{uuid.uuid4().hex[:8]}"
    messages = []
    for i in range(args.samples):
        for ean, rows in zip(eans, data, strict=True):
            sec, imp, exp = rows[i]
            ts = (START + timedelta(seconds=sec)).isoformat().replace("+00:00", "Z")
            body = json.dumps({"timestamp": ts, "import_wh": imp, "export_wh": exp, "power_import_w": 0})
            messages.append((f"{prefix}/{ean}/p1", body.encode()))
    total = len(messages)
    print(f"{args.meters} meters x {args.samples} samples = {total:,} messages, publish rate "
          f"{args.rate or 'unthrottled'} msg/s, db {db.split('://')[0]}")

    consumer = start_consumer(db, prefix, f"kwbench-{uuid.uuid4().hex[:8]}", args.batch)
    began, published = RawPublisher().publish_all(messages, args.rate)
    stored, last_change, last_count = 0, time.monotonic(), -1
    while stored < total and time.monotonic() - last_change < 20:
        time.sleep(0.1)
        stored = count_samples(engine)
        if stored != last_count:
            last_change, last_count = time.monotonic(), stored
    finished = last_change
    out, err = consumer.communicate(timeout=60)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # the consumer: the only child waited for
    cpu_s = usage.ru_utime + usage.ru_stime
    stats = json.loads(out) if out.strip() else {}
    elapsed = finished - began
    print(f"published in {published - began:.1f} s ({total / (published - began):,.0f} msg/s)")
    print(f"stored {stored:,} of {total:,} in {elapsed:.1f} s: {stored / elapsed:,.0f} msg/s sustained "
          f"(consumer: {stats.get('batches')} batches, lag after the last publish {finished - published:.1f} s)")
    print(f"consumer CPU {cpu_s:.1f} s incl. start-up: {cpu_s / total * 1e6:.0f} us per message, "
          f"{total / cpu_s:,.0f} msg/s per free core (load average now {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} cores)")

    r = schema.readings.c
    with engine.connect() as conn:
        rows = conn.execute(select(r.connection, r.interval_start, r.import_wh, r.export_wh, r.status)
                            .where(r.is_current.is_(True))).all()
    got = {(c, t): (i, e, s) for c, t, i, e, s in rows}
    want = expected_readings(eans, data)
    checks = {
        "every sample stored exactly once": stored == total and stats.get("stored") == total,
        "nothing rejected": stats.get("rejected") == {},
        "no duplicates seen (no loss, no redelivery)": stats.get("duplicates") == 0,
        f"{len(want):,} quarter-hour readings exact": got == want,
        ">= 2,000 msg/s sustained": stored / elapsed >= 2000,
    }
    for name, ok in checks.items():
        print(f"  {'ok  ' if ok else 'FAIL'} {name}")
    if err.strip() and not all(checks.values()):
        print(err.decode()[-2000:])
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
