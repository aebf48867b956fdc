"""Generic interval CSV reader (the demo's own format), plus energy and hole helpers shared by meter readers.

Format ``generic-csv``: one header line, then one row per interval, ``,`` or ``;`` separated.

========================  ==================================================================
column                    meaning
========================  ==================================================================
``timestamp``             interval START, ISO 8601 with an offset or ``Z``
(or ``interval_start``)   (``2025-01-01T00:00:00+01:00``, ``2025-01-01 00:00Z``); naive: rejected
``import_kwh``            energy taken from the grid in the interval, decimal kWh with a point
(or ``import_wh``)        ... or integer Wh
``export_kwh``            energy fed into the grid in the interval, decimal kWh with a point
(or ``export_wh``)        ... or integer Wh
``status`` (optional)     ``actual`` or ``estimated``; empty or absent: ``actual``
``resolution`` (opt.)     ``PT15M`` or ``PT60M``; empty or absent: inferred from the spacing of
                          the rows (15 or 60 minutes; a file with one row is ``PT15M``)
========================  ==================================================================

Names are matched case-insensitively; other columns are ignored. Rules: an interval start must
lie on its resolution's grid and intervals must not overlap (else rejected); an empty energy cell
leaves that value unknown (null, reported as ``no_data``), a row with both empty is skipped;
duplicates follow :func:`duplicate_rows`; holes are reported as ``gap`` (``dst_repeated_hour_missing``
when the hole is exactly the repeated autumn hour of ``ReadOptions.tz``, default Europe/Amsterdam).
"""

from __future__ import annotations

from datetime import timedelta
from decimal import ROUND_HALF_EVEN
from pathlib import Path

import polars as pl

from kwartier.ingest.base import (
    DST_REPEAT_MISSING,
    ENERGY_ROUNDED,
    GAP,
    NO_DATA,
    READING_SCHEMA,
    Anomaly,
    Format,
    InputRejected,
    ReadingImport,
    ReadOptions,
    duplicate_rows,
    empty,
    kwh_to_wh,
    parse_decimal_column,
)
from kwartier.ingest.textio import ROW, header_fields, parse_datetimes, read_csv_table
from kwartier.timegrid import DEFAULT_TZ, HOUR, PT15M, PT60M, QUARTER, iso_utc

# ---------------------------------------------------------------- shared energy and time helpers


def energy_kwh_to_wh(values_kwh: pl.Series, column: str) -> tuple[pl.Series, list[Anomaly]]:
    """Interval energy in decimal kWh to integer Wh with carry rounding, reporting the rounding once."""
    wh, rounded = kwh_to_wh(values_kwh)
    if not rounded:
        return wh, []
    exact = values_kwh.cast(pl.Decimal(38, 9)) * 1000
    count = int((exact != exact.cast(pl.Int64, strict=False).cast(pl.Decimal(38, 9))).sum())
    return wh, [Anomaly(ENERGY_ROUNDED, None, None,
                        f"{count} value(s) of {column!r} had fractions of a Wh; rounded with carry "
                        "so that the column total is kept")]


def register_kwh_to_wh(values_kwh: pl.Series, column: str) -> tuple[pl.Series, list[Anomaly]]:
    """Cumulative register readings in kWh to integer Wh, each rounded half-even.

    Rounding each reading (not each difference) keeps the sum of the interval energies equal
    to the rounded difference of the first and last reading, so no Wh is created or lost.
    """
    exact = values_kwh.cast(pl.Decimal(38, 9)) * 1000
    as_int = exact.cast(pl.Int64, strict=False)
    fractional = exact != as_int.cast(pl.Decimal(38, 9))
    count = int(fractional.sum() or 0)
    if not count:
        return as_int.alias(column), []
    rounded = [None if v is None else int(v.quantize(1, rounding=ROUND_HALF_EVEN)) for v in exact.to_list()]
    return pl.Series(column, rounded, dtype=pl.Int64), [
        Anomaly(ENERGY_ROUNDED, None, None,
                f"{count} reading(s) of register {column!r} had fractions of a Wh; each reading was "
                "rounded half-even (the interval energies still add up to the register's difference)")
    ]


def infer_resolution(stamps: pl.Series, path: str | Path, hint: str) -> str:
    """``PT15M`` or ``PT60M`` from the most common spacing of ``stamps`` (one stamp: ``PT15M``)."""
    diffs = stamps.drop_nulls().unique().sort().diff().drop_nulls()
    if not diffs.len():
        return PT15M
    minutes = int(diffs.mode().min().total_seconds()) // 60  # type: ignore[union-attr]
    if minutes not in (15, 60):
        raise InputRejected(path, f"rows are mostly {minutes} minutes apart; only 15- or 60-minute data "
                            f"can be imported ({hint})")
    return PT15M if minutes == 15 else PT60M


def in_repeated_hour(instant: pl.Expr, tz: str) -> pl.Expr:
    """True where a UTC instant lies in the second pass of a repeated (fall-back) hour of ``tz``."""
    local = instant.dt.convert_time_zone(tz).dt.replace_time_zone(None)
    return local == (instant - HOUR).dt.convert_time_zone(tz).dt.replace_time_zone(None)


def find_holes(frame: pl.DataFrame, stamp: str, expected_next: str, tz: str) -> pl.DataFrame:
    """Rows after which the next stamp comes later than ``expected_next``: the holes of a sorted series.

    Adds ``_next`` (the next stamp), ``_next_row`` and ``dst_repeat`` (the missing stamps
    ``[expected_next, _next)`` are exactly within the repeated autumn hour of ``tz``).
    """
    f = frame.with_columns(_next=pl.col(stamp).shift(-1), _next_row=pl.col(ROW).shift(-1))
    holes = f.filter(pl.col("_next") > pl.col(expected_next))
    return holes.with_columns(
        dst_repeat=in_repeated_hour(pl.col(expected_next), tz)
        & in_repeated_hour(pl.col("_next") - QUARTER, tz)
        & (pl.col("_next") - pl.col(expected_next) <= HOUR)
    )


def hole_kind(dst_repeat: bool) -> str:
    return DST_REPEAT_MISSING if dst_repeat else GAP


def null_runs(frame: pl.DataFrame, flag: pl.Expr, at: str, what: str) -> list[Anomaly]:
    """One ``no_data`` anomaly per run of consecutive rows (in file order) where ``flag`` holds."""
    f = frame.sort(ROW).with_columns(flag=flag.fill_null(False))
    f = f.with_columns(run=(pl.col("flag") != pl.col("flag").shift(1)).fill_null(True).cum_sum())
    runs = f.filter("flag").group_by("run").agg(
        pl.col(ROW).first().alias("first"), pl.col(ROW).last().alias("last"), pl.len().alias("n"),
        pl.col(at).first().alias("at"),
    ).sort("first")
    return [Anomaly(NO_DATA, a, first, f"{what}: {n} row(s), rows {first}..{last}")
            for first, last, n, a in runs.select("first", "last", "n", "at").iter_rows()]


def unknown_directions(frame: pl.DataFrame, neither: str, no_import: str, no_export: str
                       ) -> tuple[pl.DataFrame, list[Anomaly]]:
    """Skip rows with neither ``import`` nor ``export``; report each run of rows missing one (``no_data``)."""
    both_null = pl.col("import").is_null() & pl.col("export").is_null()
    anomalies = null_runs(frame, both_null, "interval_start", neither)
    frame = frame.filter(~both_null)
    anomalies += null_runs(frame, pl.col("import").is_null(), "interval_start", no_import)
    anomalies += null_runs(frame, pl.col("export").is_null(), "interval_start", no_export)
    return frame, anomalies


def reading_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """The canonical reading columns of ``frame`` (which has interval_start, resolution, import_wh, ...)."""
    return frame.select([pl.col(c).cast(t) for c, t in READING_SCHEMA.items()])


# ---------------------------------------------------------------- the generic format

_TIME = ("timestamp", "interval_start")
_STATUS = ("actual", "estimated")
_STEPS = {PT15M: 900, PT60M: 3600}


def _lower_map(columns: list[str]) -> dict[str, str]:
    return {c.lower(): c for c in columns}


def _detect(path: Path, head: str) -> bool:
    names = {n.lower() for n in header_fields(head)}
    has_energy = bool(names & {"import_kwh", "import_wh"}) and bool(names & {"export_kwh", "export_wh"})
    return bool(names & set(_TIME)) and has_energy


def _parse_start(frame: pl.DataFrame, column: str, path: Path) -> pl.Series:
    norm = frame[column].str.strip_chars().str.replace(r"[zZ]$", "+00:00")
    norm = norm.str.replace(r"^(\d{4}-\d{2}-\d{2}) ", "${1}T")
    return parse_datetimes(frame, norm, ("%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%dT%H:%M%z"), path, "timestamp",
                           "an ISO 8601 date-time with an offset or 'Z'", shown=[column], time_zone="UTC")


def _energy_column(frame: pl.DataFrame, names: dict[str, str], what: str, path: Path,
                   header_row: int) -> tuple[pl.Series, str]:
    """The ``what`` energy as Decimal kWh (from ``_kwh``) or Int64 Wh (from ``_wh``), and its unit."""
    kwh, wh = names.get(f"{what}_kwh"), names.get(f"{what}_wh")
    if kwh and wh:
        raise InputRejected(path, f"both {kwh!r} and {wh!r}: give {what} in one unit only", row=header_row)
    if not (kwh or wh):
        raise InputRejected(path, f"missing column {what}_kwh or {what}_wh", row=header_row)
    col = kwh or wh
    text = frame[col].str.strip_chars()
    if kwh:
        comma = frame.filter(text.str.contains(",", literal=True))
        if comma.height:
            raise InputRejected(path, f"column {col!r}: {comma[col][0]!r} has a decimal comma; "
                                "write a decimal point", row=comma[ROW][0])
        values = parse_decimal_column(frame, col, path, ROW)
    else:
        text = pl.select(pl.when(text == "").then(None).otherwise(text)).to_series()
        values = text.cast(pl.Int64, strict=False)
        bad = frame.filter(values.is_null() & text.is_not_null())
        if bad.height:
            raise InputRejected(path, f"column {col!r}: {bad[col][0]!r} is not a whole number of Wh",
                                row=bad[ROW][0])
    neg = frame.filter(values < 0)
    if neg.height:
        raise InputRejected(path, f"column {col!r}: {neg[col][0]!r} is negative", row=neg[ROW][0])
    return values.alias(what), "kwh" if kwh else "wh"


def _resolutions(raw: pl.Series | None, starts: pl.Series, rows: pl.Series, path: Path) -> pl.Series:
    """Each row's resolution: as given, or inferred from the most common spacing of the starts."""
    given = raw.str.strip_chars().str.to_uppercase() if raw is not None else pl.Series([None] * starts.len(),
                                                                                        dtype=pl.String)
    given = pl.select(pl.when(given == "").then(None).otherwise(given)).to_series()
    bad = given.is_not_null() & ~given.is_in(list(_STEPS))
    if bad.any():
        i = int(bad.arg_max())  # type: ignore[arg-type]
        raise InputRejected(path, f"resolution {given[i]!r} is not PT15M or PT60M", row=rows[i])
    if given.null_count():
        given = given.fill_null(infer_resolution(starts, path, "add a resolution column"))
    return given.alias("resolution")


def _status(frame: pl.DataFrame, names: dict[str, str], path: Path) -> pl.Series:
    if "status" not in names:
        return pl.Series("status", ["actual"] * frame.height)
    s = frame[names["status"]].str.strip_chars().str.to_lowercase().fill_null("")
    s = pl.select(pl.when(s == "").then(pl.lit("actual")).otherwise(s)).to_series()
    bad = frame.filter(~s.is_in(list(_STATUS)))
    if bad.height:
        raise InputRejected(path, f"status {bad[names['status']][0]!r} is not 'actual' or 'estimated'",
                            row=bad[ROW][0])
    return s.alias("status")


def read_generic_csv(path: Path, options: ReadOptions) -> ReadingImport:
    """Read a ``generic-csv`` file (see the module docstring for its columns and rules)."""
    table = read_csv_table(path, empty_ok=True)
    names = _lower_map(table.columns)
    time_cols = [names[t] for t in _TIME if t in names]
    if len(time_cols) != 1:
        problem = "missing column 'timestamp' (or 'interval_start')" if not time_cols else \
            "both 'timestamp' and 'interval_start': give the interval start once"
        raise InputRejected(path, problem, row=table.header_row)
    f = table.frame
    imp, imp_unit = _energy_column(f, names, "import", path, table.header_row)
    exp, exp_unit = _energy_column(f, names, "export", path, table.header_row)
    tz = options.tz or DEFAULT_TZ
    if not f.height:
        return ReadingImport(empty(READING_SCHEMA), "generic-csv",
                             [Anomaly(NO_DATA, None, None, "the file has no data rows")])
    starts = _parse_start(f, time_cols[0], path)
    raw_res = f[names["resolution"]] if "resolution" in names else None
    f = pl.DataFrame({ROW: f[ROW], "interval_start": starts, "import": imp, "export": exp,
                      "status": _status(f, names, path),
                      "resolution": _resolutions(raw_res, starts, f[ROW], path)})
    off = f.filter(pl.col("interval_start").dt.epoch("s") % pl.col("resolution").replace_strict(_STEPS) != 0)
    if off.height:
        raise InputRejected(path, f"interval start {iso_utc(off['interval_start'][0])} is not on the "
                            f"{off['resolution'][0]} grid", row=off[ROW][0])
    f, anomalies = unknown_directions(f, "import and export both empty: row skipped",
                                      "import empty: import_wh unknown (null)",
                                      "export empty: export_wh unknown (null)")
    f, dups = duplicate_rows(f, "interval_start", ["import", "export", "status", "resolution"], path, ROW)
    anomalies += dups
    f = f.sort("interval_start").with_columns(
        end=pl.col("interval_start") + pl.col("resolution").replace_strict(
            {k: timedelta(seconds=v) for k, v in _STEPS.items()}, return_dtype=pl.Duration("us")))
    over = f.filter(pl.col("end") > pl.col("interval_start").shift(-1))
    if over.height:
        r = over.row(0, named=True)
        nxt = f.filter(pl.col("interval_start") > r["interval_start"]).row(0, named=True)
        raise InputRejected(path, f"intervals overlap: {r['resolution']} from {iso_utc(r['interval_start'])} "
                            f"and {nxt['resolution']} from {iso_utc(nxt['interval_start'])}",
                            rows=sorted([r[ROW], nxt[ROW]]))
    for h in find_holes(f, "interval_start", "end", tz).iter_rows(named=True):
        minutes = int((h["_next"] - h["end"]).total_seconds()) // 60
        span = f"{iso_utc(h['end'])} .. {iso_utc(h['_next'])}"
        anomalies.append(Anomaly(hole_kind(h["dst_repeat"]), h["end"], h["_next_row"],
                                 f"{minutes} minutes without data: {span}"))
    for what, unit in (("import", imp_unit), ("export", exp_unit)):
        if unit == "kwh":
            wh, rounding = energy_kwh_to_wh(f[what], names[f"{what}_kwh"])
            f = f.with_columns(wh.alias(what))
            anomalies += rounding
    f = f.rename({"import": "import_wh", "export": "export_wh"})
    return ReadingImport(reading_frame(f), "generic-csv", anomalies)


FORMATS: list[Format] = [
    Format(
        name="generic-csv",
        kind="readings",
        description="Interval CSV: timestamp (ISO 8601 start with offset), import_kwh/export_kwh or "
        "import_wh/export_wh, optional status and resolution",
        detect=_detect,
        read=read_generic_csv,
    )
]
