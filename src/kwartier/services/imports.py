"""Import use cases: read a price or meter file and store it as versions, in one transaction per file."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import polars as pl
from sqlalchemy import Engine, and_, insert, select, update

from kwartier.ids import InvalidIdentifier, validate_ean18
from kwartier.ingest import InputRejected, ReadOptions, read_prices, read_readings
from kwartier.ingest.base import Anomaly
from kwartier.money import micro_to_eur_per_kwh
from kwartier.store import schema
from kwartier.store.versions import PRICE_VALUES, READING_VALUES, VersionCounts, bulk_insert, write_versions
from kwartier.timegrid import iso_utc

#: Day-ahead results (SDAC) are published around 12:45 CET on the day before delivery.
AUCTION_TZ = "Europe/Brussels"
AUCTION_PUBLICATION = timedelta(hours=12, minutes=45)
DEFAULT_ZONE = "NL"
REVISED = "revised"
CONNECTION_MISMATCH = "connection_mismatch"
SOURCE_DISAGREEMENT = "source_disagreement"
#: Two sources disagree on an hour when their hourly means differ by more than both of these.
DISAGREE_ABS_UEUR = 10_000  # 10 EUR/MWh
DISAGREE_REL = 0.2

Progress = Callable[[str], None]


@dataclass
class ImportSummary:
    """What an import did, in the shape the CLI prints with ``--json``."""

    kind: str
    target: str  # zone or connection EAN
    file: str
    format: str
    intervals: int
    first: datetime | None
    last: datetime | None
    resolution: str | None
    counts: VersionCounts
    anomalies: list[Anomaly] = field(default_factory=list)
    import_wh: int = 0
    export_wh: int = 0
    min_ueur: int | None = None
    max_ueur: int | None = None
    registers: int = 0

    def to_json(self) -> dict[str, object]:
        common: dict[str, object] = {
            "intervals": self.intervals,
            "first": iso_utc(self.first),
            "last": iso_utc(self.last),
            "resolution": self.resolution,
        }
        tail: dict[str, object] = {
            "new": self.counts.new,
            "unchanged": self.counts.unchanged,
            "revised": self.counts.revised,
            "anomalies": [a.to_json() for a in self.anomalies],
        }
        if self.kind == "prices":
            return {
                "zone": self.target,
                **common,
                "min_eur_per_kwh": _eur(self.min_ueur),
                "max_eur_per_kwh": _eur(self.max_ueur),
                **tail,
            }
        return {
            "connection": self.target,
            **common,
            "import_kwh": str(Decimal(self.import_wh).scaleb(-3)),
            "export_kwh": str(Decimal(self.export_wh).scaleb(-3)),
            **tail,
        }


def _eur(micro: int | None) -> str | None:
    return None if micro is None else str(micro_to_eur_per_kwh(micro))


def _resolution_label(frame: pl.DataFrame) -> str | None:
    labels = sorted(set(frame["resolution"].to_list()))
    if not labels:
        return None
    return labels[0] if len(labels) == 1 else "mixed"  # documented: a file may mix PT15M and PT60M


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def day_ahead_known_at(starts: pl.Series) -> pl.Series:
    """When a day-ahead price became known: 12:45 CET on the day before its delivery day."""
    local_day = starts.dt.convert_time_zone(AUCTION_TZ).dt.date()
    published = (local_day - pl.duration(days=1)).cast(pl.Datetime("us")) + pl.duration(hours=12, minutes=45)
    return pl.select(published.dt.replace_time_zone(AUCTION_TZ).dt.convert_time_zone("UTC")).to_series()


def _revision_anomaly(counts: VersionCounts, what: str) -> list[Anomaly]:
    if not counts.revised:
        return []
    first = sorted(counts.revised_starts)[:5]
    shown = ", ".join(iso_utc(t) or "" for t in first)
    more = f" and {counts.revised - len(first)} more" if counts.revised > len(first) else ""
    return [
        Anomaly(
            REVISED,
            first[0],
            None,
            f"{counts.revised} {what} changed value: stored as a new version, the old one kept ({shown}{more})",
        )
    ]


def _log_import(conn, kind: str, path: Path, digest: str, fmt: str, target: str, now: datetime) -> int:  # type: ignore[no-untyped-def]
    return int(
        conn.execute(
            insert(schema.imports).values(
                kind=kind, file_name=str(path), sha256=digest, format=fmt, target=target,
                imported_at=now, new=0, unchanged=0, revised=0, anomalies=[],
            )
        ).inserted_primary_key[0]
    )


def _finish_log(conn, import_id: int, counts: VersionCounts, anomalies: list[Anomaly]) -> None:  # type: ignore[no-untyped-def]
    conn.execute(
        update(schema.imports)
        .where(schema.imports.c.id == import_id)
        .values(new=counts.new, unchanged=counts.unchanged, revised=counts.revised,
                anomalies=[a.to_json() for a in anomalies])
    )


def import_prices(
    engine: Engine,
    path: str | Path,
    *,
    zone: str | None = None,
    format: str | None = None,
    tz: str | None = None,
    progress: Progress | None = None,
) -> ImportSummary:
    """Import a price file for ``zone`` (the file's own zone, else NL, when not given).

    Imported market prices are ``fixed`` and ``known_at`` the day-ahead publication time.
    """
    p = Path(path)
    say = progress or (lambda _msg: None)
    say(f"reading {p.name}")
    result = read_prices(p, format, ReadOptions(tz=tz))
    if zone and result.zone and zone != result.zone:
        raise InputRejected(p, f"the file holds prices for zone {result.zone}, not {zone} as asked (--zone)")
    target = zone or result.zone or DEFAULT_ZONE
    frame = result.frame.with_columns(
        status=pl.lit("fixed"), known_at=day_ahead_known_at(result.frame["interval_start"])
    )
    now = datetime.now(UTC)
    say(f"storing {frame.height} prices")
    with engine.begin() as conn:
        cross = cross_check_prices(conn, target, frame, result.format)
        import_id = _log_import(conn, "prices", p, _sha256(p), result.format, target, now)
        counts = write_versions(
            conn, schema.prices, "zone", target,
            frame.select("interval_start", "resolution", *PRICE_VALUES, "known_at"),
            PRICE_VALUES,
            {"source": result.format, "import_id": import_id, "imported_at": now},
        )
        anomalies = result.anomalies + cross + _revision_anomaly(counts, "prices")
        if counts.new or counts.revised:
            _finish_log(conn, import_id, counts, anomalies)
        else:  # nothing changed: leave no trace, so importing twice changes nothing at all
            conn.rollback()
    prices_col = frame["price_ueur_per_kwh"]
    return ImportSummary(
        kind="prices", target=target, file=str(p), format=result.format, intervals=frame.height,
        first=frame["interval_start"].min(), last=frame["interval_start"].max(),  # type: ignore[arg-type]
        resolution=_resolution_label(frame), counts=counts, anomalies=anomalies,
        min_ueur=prices_col.min(), max_ueur=prices_col.max(),  # type: ignore[arg-type]
    )


def import_readings(
    engine: Engine,
    path: str | Path,
    connection: str,
    *,
    format: str | None = None,
    tz: str | None = None,
    at: datetime | None = None,
    progress: Progress | None = None,
) -> ImportSummary:
    """Import a meter file (interval readings, or P1 telegrams with their registers) for ``connection``."""
    p = Path(path)
    say = progress or (lambda _msg: None)
    try:
        ean = validate_ean18(connection)
    except InvalidIdentifier as exc:
        raise InputRejected(p, f"--connection: {exc}") from None
    say(f"reading {p.name}")
    result = read_readings(p, format, ReadOptions(tz=tz, at=at))
    anomalies = list(result.anomalies)
    if result.connection and result.connection != ean:
        anomalies.append(Anomaly(CONNECTION_MISMATCH, None, None,
                                 f"the file names connection {result.connection}; stored under {ean} as asked"))
    frame = result.frame
    now = datetime.now(UTC)
    say(f"storing {frame.height} intervals")
    with engine.begin() as conn:
        known = conn.execute(select(schema.connections.c.ean).where(schema.connections.c.ean == ean)).first()
        if known is None:
            conn.execute(insert(schema.connections).values(ean=ean, created_at=now))
        import_id = _log_import(conn, "readings", p, _sha256(p), result.format, ean, now)
        counts = write_versions(
            conn, schema.readings, "connection", ean,
            frame.select("interval_start", "resolution", *READING_VALUES), READING_VALUES,
            {"source": result.format, "import_id": import_id, "imported_at": now},
        )
        new_registers = 0
        if result.registers is not None and result.registers.height:
            new_registers = _store_registers(conn, p, ean, result.registers, import_id)
        anomalies += _revision_anomaly(counts, "readings")
        if counts.new or counts.revised or new_registers:
            _finish_log(conn, import_id, counts, anomalies)
        else:
            conn.rollback()
    return ImportSummary(
        kind="readings", target=ean, file=str(p), format=result.format, intervals=frame.height,
        first=frame["interval_start"].min() if frame.height else None,  # type: ignore[arg-type]
        last=frame["interval_start"].max() if frame.height else None,  # type: ignore[arg-type]
        resolution=_resolution_label(frame), counts=counts, anomalies=anomalies,
        import_wh=int(frame["import_wh"].sum()), export_wh=int(frame["export_wh"].sum()),
        registers=new_registers,
    )


def _store_registers(conn, path: Path, ean: str, regs: pl.DataFrame, import_id: int) -> int:  # type: ignore[no-untyped-def]
    """Insert register samples not stored yet; a stored sample with another value is rejected."""
    t = schema.registers
    lo, hi = regs["ts"].min(), regs["ts"].max()
    rows = conn.execute(
        select(t.c.ts, t.c.register, t.c.value_wh).where(and_(t.c.connection == ean, t.c.ts >= lo, t.c.ts <= hi))
    ).all()
    existing = pl.DataFrame(
        [tuple(r) for r in rows], schema={"ts": pl.Datetime("us", "UTC"), "register": pl.String(),
                                          "value_old": pl.Int64()}, orient="row",
    )
    joined = regs.join(existing, on=["ts", "register"], how="left")
    clash = joined.filter(pl.col("value_old").is_not_null() & (pl.col("value_old") != pl.col("value_wh")))
    if clash.height:
        c = clash.row(0, named=True)
        raise InputRejected(
            path,
            f"register {c['register']} at {iso_utc(c['ts'])} reads {c['value_wh']} Wh, "
            f"but {c['value_old']} Wh is stored for that moment",
        )
    fresh = joined.filter(pl.col("value_old").is_null()).select(
        pl.lit(ean).alias("connection"), "ts", "register", "value_wh", pl.lit(import_id).alias("import_id")
    )
    bulk_insert(conn, t, fresh)
    return fresh.height


def _hourly_means(frame: pl.DataFrame) -> pl.DataFrame:
    """Mean price per UTC hour, over hours the frame covers completely (4 quarters or 1 hour)."""
    return (
        frame.with_columns(hour=pl.col("interval_start").dt.truncate("1h"),
                           weight=pl.when(pl.col("resolution") == "PT60M").then(4).otherwise(1))
        .group_by("hour")
        .agg((pl.col("price_ueur_per_kwh") * pl.col("weight")).sum().alias("total"), pl.col("weight").sum())
        .filter(pl.col("weight") == 4)
        .select("hour", (pl.col("total") / 4).alias("mean"))
    )


def cross_check_prices(conn, zone: str, frame: pl.DataFrame, source: str) -> list[Anomaly]:  # type: ignore[no-untyped-def]
    """Compare a file's hourly mean prices with those another source already stored for the zone.

    Rule: an hour differs when the means are more than 10 EUR/MWh and more than 20 % apart; one
    ``source_disagreement`` anomaly per local day names the hours and the median ratio. This is how
    a wrong day at the source (such as jeroen.nl's 2025-11-07, a quarter of the true price) is found:
    no single file can show it. The values are stored as the file gives them; the report says which
    day to check.
    """
    if frame.is_empty():
        return []
    t = schema.prices
    lo, hi = frame["interval_start"].min(), frame["interval_start"].max()
    rows = conn.execute(
        select(t.c.interval_start, t.c.resolution, t.c.price_ueur_per_kwh, t.c.source).where(
            t.c.zone == zone, t.c.is_current.is_(True), t.c.source != source,
            t.c.interval_start >= lo - timedelta(hours=1), t.c.interval_start <= hi)
    ).all()
    if not rows:
        return []
    stored = pl.DataFrame([tuple(r) for r in rows], orient="row", schema={
        "interval_start": pl.Datetime("us", "UTC"), "resolution": pl.String(), "price_ueur_per_kwh": pl.Int64(),
        "source": pl.String()})
    out: list[Anomaly] = []
    for (other,), part in stored.group_by(["source"], maintain_order=True):
        joined = _hourly_means(frame).join(_hourly_means(part), on="hour", suffix="_other")
        diff = (pl.col("mean") - pl.col("mean_other")).abs()
        scale = pl.max_horizontal(pl.col("mean").abs(), pl.col("mean_other").abs())
        bad = joined.filter((diff > DISAGREE_ABS_UEUR) & (diff > DISAGREE_REL * scale)).with_columns(
            day=pl.col("hour").dt.convert_time_zone(AUCTION_TZ).dt.date(),
            ratio=pl.col("mean") / pl.col("mean_other"),
        )
        for (day,), hours in bad.sort("hour").group_by(["day"], maintain_order=True):
            out.append(Anomaly(
                SOURCE_DISAGREEMENT, hours["hour"][0], None,
                f"{hours.height} hour(s) on {day} differ from the prices stored from {other} "
                f"(median ratio {hours['ratio'].median():.3f}); stored as given: check the source",
            ))
    return out
