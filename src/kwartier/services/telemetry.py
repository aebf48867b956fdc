"""Live telemetry: meter messages -> raw samples (idempotent) -> quarter-hour readings (versioned).

Message (one per MQTT message, QoS 1, topic ``kwartier/<EAN>/p1`` by default), either JSON::

    {"ean": "871687120000000015", "timestamp": "2026-11-22T12:00:10Z",
     "import_wh": 1234567, "export_wh": 8901, "power_import_w": 450, "power_export_w": 0}

``timestamp`` ISO 8601 with a zone; ``import_wh``/``export_wh`` the meter's cumulative registers
(sum of its tariff registers) as integers >= 0; the power fields are optional, integer W >= 0.
``ean`` may be left out when the topic level matched by ``+`` holds it; if both are given they must
agree. Or the payload is raw DSMR P1 telegram text (starting with ``/``), read by the P1 reader of
:mod:`kwartier.ingest.p1` (CRC checked, registers summed over tariffs). Sample times are taken to
the whole second (a second sample in the same second is a duplicate). A message that fails any
check is rejected with a reason code (counted, never fatal).

Storage: samples go into ``telemetry_samples`` with key (connection, ts); a repeated key is ignored
(first one wins), so redelivery changes nothing. Samples older than the retention are deleted.

Quarters (same rule as the P1 file reader): the register at a boundary ``b`` is the sample stamped
``b``, else the linear interpolation between the last sample before ``b`` and the first after it
(rounded half up to the Wh). Energy of ``[b, b+15min)`` = register(b+15min) - register(b). A quarter
is written once a sample at or after its end is stored, through the versioned write path: a late or
out-of-order sample that changes a quarter makes a new version; the same value changes nothing. The
result depends only on the set of samples, never on arrival order or duplicates. Status is
``actual`` when both boundaries have a sample within 60 s, else ``estimated`` (a gap is spread
linearly: nothing is lost, sum of quarters = last - first register). A quarter whose registers go
backwards is not written (counted as ``register_backwards``).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
from sqlalchemy import Connection, Engine, delete, insert, select

from kwartier.ids import InvalidIdentifier, validate_ean18
from kwartier.ingest.base import InputRejected, ReadOptions
from kwartier.ingest.p1 import BOUNDARY_WINDOW, read_p1
from kwartier.store import schema
from kwartier.store.schema_telemetry import telemetry_samples
from kwartier.store.versions import READING_VALUES, VersionCounts, write_versions
from kwartier.timegrid import PT15M

SOURCE = "telemetry"
QUARTER_US = 15 * 60 * 1_000_000
WINDOW_US = int(BOUNDARY_WINDOW.total_seconds()) * 1_000_000
MAX_PAYLOAD_BYTES = 64 * 1024
MAX_REGISTER_WH = 10**12
MAX_POWER_W = 10**7
FUTURE_SLACK = timedelta(minutes=5)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Sample:
    """One telemetry sample: cumulative registers (Wh) of a connection at ``ts`` (UTC, whole second)."""

    connection: str
    ts: datetime
    import_wh: int
    export_wh: int
    power_import_w: int | None = None
    power_export_w: int | None = None


class MessageRejected(ValueError):
    """A message that cannot be used; ``reason`` is a short code for counting, the text says why."""

    def __init__(self, reason: str, detail: str):
        self.reason = reason
        super().__init__(f"{reason}: {detail}")


# ---------------------------------------------------------------------------------------------
# Parsing and validation (pure)


def topic_ean(pattern: str, topic: str) -> str | None:
    """The topic level matched by the first ``+`` of the subscription ``pattern`` (None if none)."""
    levels, got = pattern.split("/"), topic.split("/")
    if "+" not in levels:
        return None
    i = levels.index("+")
    return got[i] if i < len(got) else None


def parse_message(payload: bytes, topic_id: str | None, now: datetime) -> list[Sample]:
    """The samples in one message (JSON or P1 telegram text); ``topic_id``: the EAN the topic names."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise MessageRejected("too_large", f"{len(payload)} bytes; at most {MAX_PAYLOAD_BYTES}")
    head = payload.lstrip()[:1]
    if head == b"{":
        samples = [_parse_json(payload, topic_id)]
    elif head == b"/":
        samples = _parse_telegram(payload, topic_id)
    else:
        raise MessageRejected("unknown_payload", "neither a JSON object nor a DSMR telegram ('/' header)")
    late = [s for s in samples if s.ts > now + FUTURE_SLACK]
    if late:
        raise MessageRejected("future_timestamp", f"{late[0].ts.isoformat()} is after {now.isoformat()}")
    return samples


def _ean(stated: str | None, topic_id: str | None) -> str:
    if stated is not None and topic_id is not None and stated != topic_id:
        raise MessageRejected("ean_mismatch", f"the message names {stated}, the topic {topic_id}")
    code = stated if stated is not None else topic_id
    if code is None:
        raise MessageRejected("bad_ean", "no EAN in the message or the topic")
    try:
        return validate_ean18(code)
    except InvalidIdentifier as exc:
        raise MessageRejected("bad_ean", str(exc)) from None


def _int_field(obj: dict[str, object], name: str, limit: int, *, required: bool) -> int | None:
    value = obj.get(name)
    if value is None and not required:
        return None
    if type(value) is not int or not 0 <= value <= limit:
        raise MessageRejected("bad_field", f"{name} must be an integer 0..{limit}, got {value!r}")
    return value


def _parse_json(payload: bytes, topic_id: str | None) -> Sample:
    try:
        obj = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MessageRejected("not_json", str(exc)) from None
    if not isinstance(obj, dict):
        raise MessageRejected("not_json", "the payload is no JSON object")
    stated = obj.get("ean")
    if stated is not None and not isinstance(stated, str):
        raise MessageRejected("bad_ean", f"ean must be a string, got {stated!r}")
    ean = _ean(stated, topic_id)
    ts = _timestamp(obj.get("timestamp"))
    return Sample(
        ean, ts,
        _int_field(obj, "import_wh", MAX_REGISTER_WH, required=True),  # type: ignore[arg-type]
        _int_field(obj, "export_wh", MAX_REGISTER_WH, required=True),  # type: ignore[arg-type]
        _int_field(obj, "power_import_w", MAX_POWER_W, required=False),
        _int_field(obj, "power_export_w", MAX_POWER_W, required=False),
    )


def _timestamp(value: object) -> datetime:
    if not isinstance(value, str):
        raise MessageRejected("bad_timestamp", f"timestamp must be an ISO 8601 string, got {value!r}")
    try:
        ts = datetime.fromisoformat(value)
    except ValueError:
        raise MessageRejected("bad_timestamp", f"{value!r} is no ISO 8601 time") from None
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise MessageRejected("bad_timestamp", f"{value!r} has no zone; add Z or an offset")
    return ts.astimezone(UTC).replace(microsecond=0)


def _parse_telegram(payload: bytes, topic_id: str | None) -> list[Sample]:
    """Telegram text through the P1 file reader (it reads files, so the text goes via a temp file)."""
    with tempfile.TemporaryDirectory(prefix="kwartier-p1-") as folder:
        path = Path(folder) / "telegram.txt"
        path.write_bytes(payload)
        try:
            result = read_p1(path, ReadOptions())
        except InputRejected as exc:
            raise MessageRejected("bad_telegram", exc.problem) from None
    regs = result.registers
    if regs is None or regs.is_empty():
        raise MessageRejected("bad_telegram", "no electricity register in the telegram")
    ean = _ean(result.connection, topic_id)
    wide = regs.pivot(on="register", index="ts", values="value_wh").sort("ts")
    return [Sample(ean, row["ts"].replace(microsecond=0), _side(row, "import"), _side(row, "export"))
            for row in wide.iter_rows(named=True)]


def _side(row: dict[str, object], side: str) -> int:
    tariffs = [int(v) for k, v in row.items() if k.startswith(f"{side}_t") and v is not None]  # type: ignore[call-overload]
    total = row.get(f"{side}_total")
    return sum(tariffs) if tariffs else int(total) if total is not None else 0  # type: ignore[call-overload]


# ---------------------------------------------------------------------------------------------
# Quarter-hour energy from register samples (pure)


@dataclass(frozen=True, slots=True)
class Quarter:
    """Energy of one quarter ``[start, start + 15 min)``: Wh imported and exported, actual or estimated."""

    start_us: int  # UTC microseconds since 1970
    import_wh: int
    export_wh: int
    actual: bool


def register_at(ts_us: Sequence[int], values: Sequence[int], b: int) -> tuple[int, bool]:
    """The register (Wh) at time ``b`` and whether it is actual (a sample within 60 s on each side).

    ``ts_us`` sorted, unique, with ``ts_us[0] <= b <= ts_us[-1]``. Interpolation rounds half up.
    """
    j = bisect_right(ts_us, b) - 1
    t0, v0 = ts_us[j], values[j]
    if t0 == b:
        return v0, True
    t1, v1 = ts_us[j + 1], values[j + 1]
    num, den = b - t0, t1 - t0
    value = v0 + ((v1 - v0) * 2 * num + den) // (2 * den)
    return value, num <= WINDOW_US and t1 - b <= WINDOW_US


def quarters_from_samples(ts_us: Sequence[int], import_wh: Sequence[int], export_wh: Sequence[int]
                          ) -> tuple[list[Quarter], int]:
    """Every quarter covered by the samples (sorted, unique times), and how many went backwards."""
    if not ts_us:
        return [], 0
    first_b = -(-ts_us[0] // QUARTER_US) * QUARTER_US
    regs = {b: (register_at(ts_us, import_wh, b), register_at(ts_us, export_wh, b))
            for b in range(first_b, ts_us[-1] + 1, QUARTER_US)}
    out: list[Quarter] = []
    backwards = 0
    for b, ((i0, a0), (e0, _)) in regs.items():
        end = regs.get(b + QUARTER_US)
        if end is None:
            continue
        (i1, a1), (e1, _) = end
        if i1 < i0 or e1 < e0:
            backwards += 1
            continue
        out.append(Quarter(b, i1 - i0, e1 - e0, a0 and a1))
    return out, backwards


# ---------------------------------------------------------------------------------------------
# Storage


@dataclass
class StoreResult:
    """What one batch did: samples new and duplicate, quarters written, and anomalies counted."""

    new_samples: int = 0
    duplicates: int = 0
    quarters: VersionCounts = field(default_factory=VersionCounts)
    backwards: int = 0


def _us(ts: datetime) -> int:
    return (ts - _EPOCH) // timedelta(microseconds=1)


def _dt(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


class TelemetryStore:
    """Stores sample batches in one transaction each and keeps the quarters they complete up to date.

    Holds a cache of the quarter values last written (per connection, recent only), to skip
    versioned writes that would change nothing; after a restart it starts empty and the
    versioned write path itself makes the rewrite a no-op.
    """

    def __init__(self, engine: Engine, *, origin: str = "mqtt", keep_cached: int = 200):
        self.engine = engine
        self.origin = origin
        self.keep_cached = keep_cached
        self._written: dict[str, dict[int, tuple[int, int, str]]] = defaultdict(dict)
        self._known: set[str] = set()

    def store(self, samples: Sequence[Sample], now: datetime) -> StoreResult:
        """Insert ``samples`` (duplicates ignored) and write every quarter they complete or change."""
        result = StoreResult()
        if not samples:
            return result
        pending: dict[str, list[Quarter]] = {}
        try:
            with self.engine.begin() as conn:
                result.new_samples = insert_samples(conn, samples, now)
                result.duplicates = len(samples) - result.new_samples
                for ean, rows in neighbourhoods(conn, _spans(samples)).items():
                    ts, imp, exp = zip(*rows, strict=True)
                    quarters, backwards = quarters_from_samples(ts, imp, exp)
                    result.backwards += backwards
                    changed = [q for q in quarters if self._written[ean].get(q.start_us) != _values(q)]
                    if changed:
                        pending[ean] = changed
                if pending:
                    self._write(conn, pending, now, result.quarters)
        except BaseException:
            self.forget()  # the connections cache may name rows that were rolled back
            raise
        for ean, quarters in pending.items():  # committed: remember what is stored
            cache = self._written[ean]
            cache.update((q.start_us, _values(q)) for q in quarters)
            if len(cache) > self.keep_cached:
                for old in sorted(cache)[: len(cache) - self.keep_cached // 2]:
                    del cache[old]
        return result

    def _write(self, conn: Connection, pending: dict[str, list[Quarter]], now: datetime,
               counts: VersionCounts) -> None:
        self._ensure_connections(conn, pending, now)
        written = sorted((e, q.start_us, _values(q)) for e, qs in pending.items() for q in qs)
        digest = hashlib.sha256(repr(written).encode()).hexdigest()
        target = next(iter(pending)) if len(pending) == 1 else f"{len(pending)} connections"
        import_id = int(conn.execute(insert(schema.imports).values(
            kind="readings", file_name=self.origin, sha256=digest, format=SOURCE, target=target,
            imported_at=now, new=0, unchanged=0, revised=0, anomalies=[])).inserted_primary_key[0])
        for ean, quarters in pending.items():
            frame = pl.DataFrame({
                "interval_start": [_dt(q.start_us) for q in quarters],
                "resolution": PT15M,
                "import_wh": [q.import_wh for q in quarters],
                "export_wh": [q.export_wh for q in quarters],
                "status": ["actual" if q.actual else "estimated" for q in quarters],
            }, schema_overrides={"interval_start": pl.Datetime("us", "UTC"), "import_wh": pl.Int64,
                                 "export_wh": pl.Int64})
            c = write_versions(conn, schema.readings, "connection", ean, frame, READING_VALUES,
                               {"source": SOURCE, "import_id": import_id, "imported_at": now})
            counts.new += c.new
            counts.unchanged += c.unchanged
            counts.revised += c.revised
        log = schema.imports.c.id == import_id
        if counts.new or counts.revised:
            conn.execute(schema.imports.update().where(log).values(
                new=counts.new, unchanged=counts.unchanged, revised=counts.revised))
        else:  # a redelivery changed nothing: leave no trace
            conn.execute(delete(schema.imports).where(log))

    def _ensure_connections(self, conn: Connection, eans: Iterable[str], now: datetime) -> None:
        missing = set(eans) - self._known
        if not missing:
            return
        c = schema.connections.c
        have = {r[0] for r in conn.execute(select(c.ean).where(c.ean.in_(sorted(missing))))}
        fresh = sorted(missing - have)
        if fresh:
            conn.execute(insert(schema.connections), [{"ean": e, "created_at": now} for e in fresh])
        self._known |= missing  # store() forgets it if the transaction rolls back

    def purge(self, now: datetime, retention: timedelta) -> int:
        """Delete samples older than ``retention`` before ``now``; returns how many."""
        with self.engine.begin() as conn:
            res = conn.execute(delete(telemetry_samples).where(telemetry_samples.c.ts < now - retention))
        return int(res.rowcount or 0)

    def forget(self) -> None:
        """Drop the caches (after a failed transaction they may claim rows that were rolled back)."""
        self._written.clear()
        self._known.clear()


def _values(q: Quarter) -> tuple[int, int, str]:
    return q.import_wh, q.export_wh, "actual" if q.actual else "estimated"


def _spans(samples: Sequence[Sample]) -> dict[str, tuple[datetime, datetime]]:
    spans: dict[str, list[datetime]] = {}
    for s in samples:
        span = spans.get(s.connection)
        if span is None:
            spans[s.connection] = [s.ts, s.ts]
        elif s.ts < span[0]:
            span[0] = s.ts
        elif s.ts > span[1]:
            span[1] = s.ts
    return {ean: (lo, hi) for ean, (lo, hi) in spans.items()}


def _sql(conn: Connection) -> tuple[str, object]:
    """The driver's placeholder and how it takes a UTC timestamp (SQLite: the text UtcDateTime stores)."""
    if conn.dialect.name == "sqlite":
        return "?", lambda ts: ts.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
    if conn.dialect.name == "postgresql":
        return "%s", lambda ts: ts
    raise NotImplementedError(f"telemetry storage supports SQLite and PostgreSQL, not {conn.dialect.name}")


def insert_samples(conn: Connection, samples: Sequence[Sample], now: datetime) -> int:
    """Insert samples whose (connection, ts) is not stored yet; returns how many were new.

    Goes straight to the driver's ``executemany`` (SQLAlchemy's per-row work would dominate at
    thousands of messages per second), inside the caller's transaction.
    """
    mark, stamp = _sql(conn)
    t = telemetry_samples
    cols = ", ".join(c.name for c in t.columns)
    received = stamp(now)  # type: ignore[operator]
    rows = [(s.connection, stamp(s.ts), s.import_wh, s.export_wh, s.power_import_w, s.power_export_w,  # type: ignore[operator]
             received) for s in samples]
    cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        if conn.dialect.name == "sqlite":
            cur.executemany(f"INSERT OR IGNORE INTO {t.name} ({cols}) VALUES ({', '.join([mark] * 7)})", rows)
            return int(cur.rowcount)
        # PostgreSQL: COPY into a per-session scratch table, then one INSERT .. ON CONFLICT DO NOTHING
        cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS {t.name}_incoming (LIKE {t.name}) ON COMMIT DELETE ROWS")
        with cur.copy(f"COPY {t.name}_incoming ({cols}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        cur.execute(f"INSERT INTO {t.name} ({cols}) SELECT {cols} FROM {t.name}_incoming ON CONFLICT DO NOTHING")
        inserted = int(cur.rowcount)
        cur.execute(f"TRUNCATE {t.name}_incoming")
        return inserted
    finally:
        cur.close()


def _floor_q(ts: datetime) -> datetime:
    return _dt(_us(ts) // QUARTER_US * QUARTER_US)


def _ceil_q(ts: datetime) -> datetime:
    return _dt(-(-_us(ts) // QUARTER_US) * QUARTER_US)


def _around_sql(conn: Connection) -> str:
    """One connection's samples in [lo, hi] with the last one before lo and the first one after hi.

    Parameters: connection, lo, connection, lo, hi, connection, hi. Rows: ts (epoch us), import, export.
    """
    mark, _ = _sql(conn)
    if conn.dialect.name == "sqlite":
        us = "CAST(strftime('%s', ts) AS INTEGER) * 1000000"
    else:
        us = "CAST(floor(extract(epoch FROM ts) * 1000000) AS BIGINT)"
    cols = f"{us} AS ts_us, import_wh, export_wh"
    t, own = telemetry_samples.name, f"connection = {mark}"
    return (f"SELECT * FROM (SELECT {cols} FROM {t} WHERE {own} AND ts < {mark} ORDER BY ts DESC LIMIT 1) b "
            f"UNION ALL SELECT {cols} FROM {t} WHERE {own} AND ts >= {mark} AND ts <= {mark} "
            f"UNION ALL SELECT * FROM (SELECT {cols} FROM {t} WHERE {own} AND ts > {mark} ORDER BY ts LIMIT 1) a")


def neighbourhoods(conn: Connection, spans: dict[str, tuple[datetime, datetime]]
                   ) -> dict[str, list[tuple[int, int, int]]]:
    """Per connection, the stored samples (ts_us, import_wh, export_wh) needed to recompute every
    quarter that samples in its span [tmin, tmax] can change.

    That is a contiguous run of samples from the last one at or before the quarter start preceding
    the span's predecessor sample, to the first one at or after the quarter end following the span's
    successor sample. One indexed query per connection (the span's quarters and one sample either
    side) covers it when the predecessor and successor lie in those quarters; else a second query
    reaches back (or on) to the quarter boundary before (after) them.
    """
    sql = _around_sql(conn)
    _, stamp = _sql(conn)
    cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]

    def fetch(ean: str, lo: datetime, hi: datetime) -> list[tuple[int, int, int]]:
        a, b = stamp(lo), stamp(hi)  # type: ignore[operator]
        cur.execute(sql, (ean, a, ean, a, b, ean, b))
        return [(int(ts), int(i), int(e)) for ts, i, e in cur.fetchall()]

    windows = {ean: (_floor_q(tmin), _ceil_q(tmax)) for ean, (tmin, tmax) in spans.items()}
    out: dict[str, list[tuple[int, int, int]]] = {}
    try:
        if conn.dialect.name == "postgresql":  # one round trip for every connection
            first = _fetch_lateral(cur, windows)
        else:  # in-process: a query per connection costs microseconds
            first = {ean: set(fetch(ean, lo, hi)) for ean, (lo, hi) in windows.items()}
        for ean, (tmin, tmax) in spans.items():
            (lo, hi), rows = windows[ean], first.get(ean, set())
            ts = sorted(r[0] for r in rows)
            lo_us, hi_us, tmin_us, tmax_us = _us(lo), _us(hi), _us(tmin), _us(tmax)
            if ts and ts[0] < lo_us and not any(lo_us <= t < tmin_us for t in ts):  # a gap before the span
                rows |= set(fetch(ean, _floor_q(_dt(ts[0])), lo))
            if ts and ts[-1] > hi_us and not any(tmax_us < t <= hi_us for t in ts):  # a gap after it
                rows |= set(fetch(ean, hi, _ceil_q(_dt(ts[-1]))))
            out[ean] = sorted(rows)
    finally:
        cur.close()
    return out


def _fetch_lateral(cur, windows: dict[str, tuple[datetime, datetime]]) -> dict[str, set[tuple[int, int, int]]]:  # type: ignore[no-untyped-def]
    """PostgreSQL: :func:`_around_sql` for every connection at once (a LATERAL join over arrays)."""
    t = telemetry_samples.name
    us = "CAST(floor(extract(epoch FROM ts) * 1000000) AS BIGINT)"
    cols = f"{us} AS ts_us, import_wh, export_wh"
    own = "connection = w.ean"
    cur.execute(
        f"SELECT w.ean, s.ts_us, s.import_wh, s.export_wh "
        f"FROM unnest(%s::text[], %s::timestamptz[], %s::timestamptz[]) AS w(ean, lo, hi) CROSS JOIN LATERAL ("
        f"(SELECT {cols} FROM {t} WHERE {own} AND ts < w.lo ORDER BY ts DESC LIMIT 1) "
        f"UNION ALL (SELECT {cols} FROM {t} WHERE {own} AND ts >= w.lo AND ts <= w.hi) "
        f"UNION ALL (SELECT {cols} FROM {t} WHERE {own} AND ts > w.hi ORDER BY ts LIMIT 1)) AS s",
        (list(windows), [lo for lo, _ in windows.values()], [hi for _, hi in windows.values()]))
    out: dict[str, set[tuple[int, int, int]]] = defaultdict(set)
    for ean, ts, imp, exp in cur.fetchall():
        out[ean].add((int(ts), int(imp), int(exp)))
    return out
