"""The contract every importer keeps: typed frames out, anomalies reported, bad input rejected.

An importer reads one file and returns a :class:`PriceImport` or :class:`ReadingImport`:
a polars frame in the canonical schema below plus the list of :class:`Anomaly` it handled.
Input it cannot handle raises :class:`InputRejected`, naming the file, the row and the problem;
nothing is stored in that case.

Canonical schemas (all timestamps UTC interval starts, ``Datetime("us", "UTC")``):

- prices: ``interval_start``, ``resolution`` (``PT15M`` | ``PT60M``), ``price_ueur_per_kwh`` (Int64)
- readings: ``interval_start``, ``resolution``, ``import_wh`` (Int64 >= 0), ``export_wh``
  (Int64 >= 0), ``status`` (``actual`` | ``estimated``). A null energy means the file gives no
  value for that direction (not measured); it is never read as zero. An interval needs at least
  one known direction.
- registers (P1 only): ``ts`` (UTC instant), ``register`` (str), ``value_wh`` (Int64)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl

from kwartier.timegrid import PT15M, PT60M, QUARTER, iso_utc, resolution_of

UTC_DT = pl.Datetime("us", "UTC")

PRICE_SCHEMA: dict[str, pl.DataType] = {
    "interval_start": UTC_DT,
    "resolution": pl.String(),
    "price_ueur_per_kwh": pl.Int64(),
}
READING_SCHEMA: dict[str, pl.DataType] = {
    "interval_start": UTC_DT,
    "resolution": pl.String(),
    "import_wh": pl.Int64(),
    "export_wh": pl.Int64(),
    "status": pl.String(),
}
REGISTER_SCHEMA: dict[str, pl.DataType] = {"ts": UTC_DT, "register": pl.String(), "value_wh": pl.Int64()}

#: Anomaly kinds, each handled by one documented rule (see the README's table).
DST_PHANTOM = "dst_phantom_hour"  # a wall-clock time that does not exist: row dropped
DST_REPEAT_MISSING = "dst_repeated_hour_missing"  # the second autumn hour absent: intervals missing
DUPLICATE = "duplicate_row"  # identical rows: kept once
GAP = "gap"  # intervals missing inside the covered range
REGISTER_MISMATCH = "register_mismatch"  # a stated energy value disagrees with its registers
REGISTER_GLITCH = "register_glitch"  # one register reading out of line with both neighbours: row dropped
OUT_OF_PERIOD = "point_outside_period"  # a value placed beyond the period that holds it: dropped
PRICE_ROUNDED = "price_rounded"  # price had more than 6 decimals in EUR/kWh: rounded half-even
ENERGY_ROUNDED = "energy_rounded"  # energy had fractions of a Wh: rounded with carry (sum kept)
PARTIAL_INTERVAL = "partial_interval"  # a stream does not cover an interval from start to end
NO_DATA = "no_data"  # a row or series without a value (e.g. NaN): skipped
OVERLAP = "overlap"  # two series cover the same interval: the rule says which wins
TIME_CORRECTED = "time_corrected"  # a malformed timestamp repaired by an explicit rule
CRC_NOT_CHECKED = "crc_not_checked"  # a telegram without a CRC (DSMR < 4) or with a broken one


class InputRejected(Exception):
    """The input cannot be imported. The message names the file, the row or line, and the problem."""

    def __init__(self, file: str | Path, problem: str, row: int | None = None, rows: list[int] | None = None):
        self.file = str(file)
        self.problem = problem
        self.rows = rows if rows is not None else ([row] if row is not None else [])
        where = self.file
        if len(self.rows) == 1:
            where += f", row {self.rows[0]}"
        elif self.rows:
            where += ", rows " + ", ".join(str(r) for r in self.rows[:10])
            if len(self.rows) > 10:
                where += f" (and {len(self.rows) - 10} more)"
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True)
class Anomaly:
    """One handled irregularity: what rule applied, at which interval and row, and a detail."""

    kind: str
    at: datetime | None
    row: int | None
    detail: str

    def to_json(self) -> dict[str, object]:
        return {"kind": self.kind, "at": iso_utc(self.at), "row": self.row, "detail": self.detail}


@dataclass
class PriceImport:
    """Prices read from one file, in the canonical price schema."""

    frame: pl.DataFrame
    format: str
    anomalies: list[Anomaly] = field(default_factory=list)
    zone: str | None = None  # the bidding zone the file states, if any (e.g. ENTSO-E domain)
    currency: str = "EUR"


@dataclass
class ReadingImport:
    """Meter readings read from one file, in the canonical reading schema."""

    frame: pl.DataFrame
    format: str
    anomalies: list[Anomaly] = field(default_factory=list)
    registers: pl.DataFrame | None = None  # P1 register samples, when the source has them
    connection: str | None = None  # the EAN the file states, if any


def empty(schema: dict[str, pl.DataType]) -> pl.DataFrame:
    return pl.DataFrame(schema=schema)


def validate_frame(frame: pl.DataFrame, schema: dict[str, pl.DataType], file: str | Path) -> pl.DataFrame:
    """Cast to ``schema``, sort by time, and check the grid and uniqueness laws.

    Raises :class:`InputRejected` when an importer produced something the store must not take:
    an interval start off its resolution's grid, two values for one interval, negative energy.
    """
    missing = [c for c in schema if c not in frame.columns]
    if missing:
        raise InputRejected(file, f"importer produced no column(s) {missing}")
    frame = frame.select([pl.col(c).cast(t) for c, t in schema.items()])
    key = "interval_start" if "interval_start" in schema else "ts"
    frame = frame.sort(key)
    if key == "interval_start" and frame.height:
        bad_res = frame.filter(~pl.col("resolution").is_in([PT15M, PT60M]))
        if bad_res.height:
            raise InputRejected(file, f"unknown resolution {bad_res['resolution'][0]!r}")
        off = frame.filter(
            (pl.col("interval_start").dt.epoch("s") % 900 != 0)
            | ((pl.col("resolution") == PT60M) & (pl.col("interval_start").dt.epoch("s") % 3600 != 0))
        )
        if off.height:
            raise InputRejected(file, f"interval start {iso_utc(off['interval_start'][0])} is off its grid")
        dup = frame.filter(pl.col("interval_start").is_duplicated())
        if dup.height:
            raise InputRejected(file, f"two values for interval {iso_utc(dup['interval_start'][0])}")
        if frame["interval_start"].null_count():
            raise InputRejected(file, "an interval without a start time")
    if "import_wh" in frame.columns and frame.height:
        blank = frame.filter(pl.col("import_wh").is_null() & pl.col("export_wh").is_null())
        if blank.height:
            raise InputRejected(file, f"interval {iso_utc(blank['interval_start'][0])} has no energy at all")
    for col in ("import_wh", "export_wh"):
        if col in frame.columns and frame.height:
            neg = frame.filter(pl.col(col) < 0)
            if neg.height:
                raise InputRejected(file, f"negative {col} at {iso_utc(neg['interval_start'][0])}")
    return frame


def read_text(path: str | Path) -> str:
    """A file's text: UTF-8 (BOM removed) when it decodes, else latin-1. A clear error if unreadable."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise InputRejected(p, f"cannot read the file: {exc.strerror or exc}") from None
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def parse_decimal_column(frame: pl.DataFrame, column: str, file: str | Path, row_col: str = "row") -> pl.Series:
    """A text column of decimals (point or comma) as ``Decimal(38, 9)``; empty cells become null.

    A cell that is not a number raises :class:`InputRejected` naming its row.
    """
    text = frame[column].cast(pl.String).str.strip_chars()
    text = text.str.replace(",", ".", literal=True)
    text = pl.when(text == "").then(None).otherwise(text)
    values = pl.select(text.cast(pl.Decimal(38, 9), strict=False)).to_series()
    src = pl.select(pl.when(frame[column].cast(pl.String).str.strip_chars() == "").then(None)
                    .otherwise(frame[column].cast(pl.String).str.strip_chars())).to_series()
    bad = frame.filter(values.is_null() & src.is_not_null())
    if bad.height:
        raise InputRejected(file, f"column {column!r}: {bad[column][0]!r} is not a number", row=bad[row_col][0])
    return values.alias(column)


def kwh_to_wh(values_kwh: pl.Series) -> tuple[pl.Series, bool]:
    """Decimal kWh to integer Wh; fractions of a Wh are rounded with carry, so the total is kept.

    The carry rule rounds the running sum and takes differences, so the rounded values add up
    to the rounded exact total and no Wh is created or lost over a series. Nulls stay null
    (they carry nothing). Returns the values and whether any rounding was needed.
    """
    wh = (values_kwh.cast(pl.Decimal(38, 9)) * 1000).alias(values_kwh.name)
    as_int = wh.cast(pl.Int64, strict=False)
    frac = wh - as_int.cast(pl.Decimal(38, 9))
    if not bool((frac.fill_null(0) != 0).any()):
        return as_int, False
    filled = wh.fill_null(0)
    running = filled.cum_sum()
    # Round the running sum half-even at the Wh, then difference.
    rounded_running = pl.Series([int(v.to_integral_value()) for v in running.to_list()], dtype=pl.Int64)
    diffs = rounded_running.diff().fill_null(rounded_running[0])
    diffs = pl.select(pl.when(wh.is_null()).then(None).otherwise(diffs)).to_series()
    return diffs.alias(values_kwh.name), True


def register_deltas(
    ts: pl.Series,
    register_wh: pl.Series,
    rows: pl.Series,
    file: str | Path,
    name: str,
    step: timedelta = QUARTER,
) -> tuple[pl.DataFrame, list[Anomaly]]:
    """Energy per interval from a cumulative register read at interval boundaries.

    The energy of ``[t, t + step)`` is ``reading(t + step) - reading(t)``; a boundary that was not
    read leaves its intervals missing (reported as a gap, with the energy the gap holds, so no Wh
    is lost silently). A register that goes backwards is rejected, naming both rows.
    ``ts`` must be sorted, unique, UTC and on the ``step`` grid.
    """
    frame = pl.DataFrame({"ts": ts, "v": register_wh, "row": rows}).drop_nulls(["ts", "v"])
    frame = frame.with_columns(
        next_ts=pl.col("ts").shift(-1), next_v=pl.col("v").shift(-1), next_row=pl.col("row").shift(-1)
    )
    back = frame.filter(pl.col("next_v") < pl.col("v"))
    if back.height:
        r = back.row(0, named=True)
        raise InputRejected(
            file,
            f"register {name} goes backwards from {r['v']} Wh to {r['next_v']} Wh",
            rows=[r["row"], r["next_row"]],
        )
    anomalies: list[Anomaly] = []
    ok = frame.filter(pl.col("next_ts") - pl.col("ts") == step)
    long = frame.filter(pl.col("next_ts") - pl.col("ts") > step)
    for r in long.iter_rows(named=True):
        # Readings at t and t + k*step with none between: the k intervals from t on have no energy
        # of their own, only a sum over all of them.
        n = (r["next_ts"] - r["ts"]) // step
        anomalies.append(
            Anomaly(
                GAP,
                r["ts"],
                r["next_row"],
                f"register {name} not read between {iso_utc(r['ts'])} and {iso_utc(r['next_ts'])}: "
                f"{n} interval(s) missing; the {r['next_v'] - r['v']} Wh read over them "
                f"cannot be placed in a single interval and is not imported",
            )
        )
    out = ok.select(
        pl.col("ts").alias("interval_start"), (pl.col("next_v") - pl.col("v")).alias("energy_wh")
    )
    return out, anomalies


def gap_anomalies(
    starts: pl.Series, resolution: str, what: str = "interval", rows: pl.Series | None = None
) -> list[Anomaly]:
    """One :data:`GAP` anomaly per run of missing intervals between the first and last present.

    With ``rows`` (the file row of each start), each gap names the row that follows the hole, so
    the user can find it in the file.
    """
    step = resolution_of(resolution)
    if starts.len() < 2:
        return []
    frame = pl.DataFrame({"t": starts, "row": rows if rows is not None else pl.repeat(None, starts.len(), eager=True)})
    frame = frame.sort("t").with_columns(nxt=pl.col("t").shift(-1), nxt_row=pl.col("row").shift(-1))
    holes = frame.filter(pl.col("nxt") - pl.col("t") > step)
    out = []
    for t, nxt, row in holes.select("t", "nxt", "nxt_row").iter_rows():
        n = (nxt - t) // step - 1
        out.append(Anomaly(GAP, t + step, row, f"{n} {what}(s) missing: {iso_utc(t + step)} .. {iso_utc(nxt)}"))
    return out


def duplicate_rows(
    frame: pl.DataFrame, key: str, value_cols: list[str], file: str | Path, row_col: str = "row"
) -> tuple[pl.DataFrame, list[Anomaly]]:
    """Apply the duplicate rule: identical rows are kept once (reported); conflicting ones rejected.

    ``key`` is the column that must be unique (usually the UTC interval start).
    """
    dups = frame.filter(pl.col(key).is_duplicated())
    if not dups.height:
        return frame, []
    conflicts = dups.group_by(key).agg(
        pl.struct(value_cols).n_unique().alias("n"), pl.col(row_col).sort().alias("rows")
    ).filter(pl.col("n") > 1).sort(key)
    if conflicts.height:
        c = conflicts.row(0, named=True)
        raise InputRejected(
            file,
            f"conflicting duplicate rows for {iso_utc(c[key]) if isinstance(c[key], datetime) else c[key]}: "
            "the same interval with different values",
            rows=c["rows"],
        )
    anomalies = []
    for k, rows in dups.group_by(key).agg(pl.col(row_col).sort()).sort(key).iter_rows():
        anomalies.append(
            Anomaly(DUPLICATE, k if isinstance(k, datetime) else None, rows[1],
                    f"rows {', '.join(map(str, rows))} are identical; kept once")
        )
    kept = frame.unique(subset=[key], keep="first", maintain_order=True)
    return kept, anomalies


@dataclass(frozen=True)
class ReadOptions:
    """What the caller knows that the file may not say.

    ``tz``: the local time zone of naive timestamps (None: the format's own default, e.g.
    Europe/Amsterdam for Dutch exports, Europe/Brussels for Fluvius). ``at``: the moment of a
    single P1 telegram that carries no timestamp (DSMR 2.2/3.0).
    """

    tz: str | None = None
    at: datetime | None = None


@dataclass(frozen=True)
class Format:
    """One file format: a name for ``--format``, a content sniffer and a reader.

    ``detect(path, head)`` gets the path and the first 64 KiB of the file as text (latin-1 for
    binary files) and says whether the content is this format. ``read(path, options)`` returns a
    :class:`PriceImport` or :class:`ReadingImport` or raises :class:`InputRejected`.
    """

    name: str
    kind: str  # "prices" | "readings"
    description: str
    detect: object  # Callable[[Path, str], bool]
    read: object  # Callable[[Path, ReadOptions], PriceImport | ReadingImport]
