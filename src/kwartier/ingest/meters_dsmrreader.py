"""DSMR-reader hourly CSV export: per-hour import/export kWh with ISO 8601 offsets, kept hourly.

DSMR-reader (dsmr-reader.readthedocs.io) exports one row per hour::

    Hour Start,Electricity 1 (Dutch Users: Low Tariff),Electricity 2 (Dutch Users: Normal Tariff),
    Electricity 1 Returned (...),Electricity 2 Returned (...),Gas
    2024-10-27T02:00:00+02:00,0.207,0,0,0,0

``Hour Start`` carries its UTC offset, so the repeated autumn hour is two distinct rows and the
spring hour simply does not exist: no DST rule is needed. The values are kWh consumed (T1 + T2 ->
``import_wh``) and returned (T1 + T2 -> ``export_wh``) within the hour; gas is not electricity and is
ignored. The data stay hourly (``PT60M``); an hour the export lacks is reported as a gap.

Rules (each reported as an :class:`~kwartier.ingest.base.Anomaly`):

- missing hours between the first and last row -> ``GAP`` (the export has no energy for them);
- identical repeated rows -> ``DUPLICATE`` (kept once); conflicting repeats -> rejected;
- more than three decimals of kWh -> rounded to Wh with carry, ``ENERGY_ROUNDED`` (one per file).

Rejected (``InputRejected`` naming the row): a missing column, an unparseable or offset-less
``Hour Start``, an hour start off the hour, an empty, non-numeric or negative energy cell.
"""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl

from kwartier.ingest.base import (
    ENERGY_ROUNDED,
    READING_SCHEMA,
    Anomaly,
    Format,
    InputRejected,
    ReadingImport,
    ReadOptions,
    duplicate_rows,
    empty,
    gap_anomalies,
    kwh_to_wh,
    parse_decimal_column,
)
from kwartier.ingest.textio import header_fields, parse_datetimes, read_csv_table
from kwartier.timegrid import PT60M

FORMAT_NAME = "dsmrreader-csv"
HOUR_START = "Hour Start"
#: "Electricity 1 (Dutch Users: Low Tariff)", "Electricity 2 Returned (...)", or the bare names.
_ENERGY_COLUMN = re.compile(r"^Electricity ([12])( Returned)?(\s*\(.*\))?$")
_OFFSET_FORMATS = ("%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M%z", "%Y-%m-%d %H:%M:%S%z", "%Y-%m-%d %H:%M%z")


def _energy_columns(columns: list[str]) -> dict[str, str]:
    """Map ``import_t1``, ``import_t2``, ``export_t1``, ``export_t2`` to the file's column names."""
    found: dict[str, str] = {}
    for name in columns:
        m = _ENERGY_COLUMN.match(name.strip())
        if m:
            key = ("export_t" if m.group(2) else "import_t") + m.group(1)
            found.setdefault(key, name)
    return found


def detect(path: Path, head: str) -> bool:
    """A DSMR-reader hourly export: first header name ``Hour Start`` and the Electricity 1/2 columns."""
    names = header_fields(head, ",")
    return bool(names) and names[0] == HOUR_START and len(_energy_columns(names)) == 4


def _parse_hour_start(frame: pl.DataFrame, path: Path) -> pl.Series:
    """``Hour Start`` (ISO 8601 with an offset) as UTC; a value without an offset is rejected."""
    text = frame[HOUR_START].str.strip_chars().str.replace(r"Z$", "+00:00")
    parsed = parse_datetimes(frame, text, _OFFSET_FORMATS, path, HOUR_START, "an ISO 8601 time with a UTC offset",
                             shown=[HOUR_START], time_zone="UTC")
    off_hour = frame.filter(parsed.dt.epoch("s") % 3600 != 0)
    if off_hour.height:
        raise InputRejected(
            path,
            f"{HOUR_START} {off_hour[HOUR_START][0]} is not the start of an hour",
            row=off_hour["row"][0],
        )
    return parsed.alias("interval_start")


def _energy_kwh(frame: pl.DataFrame, column: str, path: Path) -> pl.Series:
    """One energy column as Decimal kWh; empty or negative cells are rejected naming the row."""
    values = parse_decimal_column(frame, column, path)
    empty_cells = frame.filter(values.is_null())
    if empty_cells.height:
        raise InputRejected(
            path, f"column {column!r} is empty (a truncated line?)", row=empty_cells["row"][0]
        )
    negative = frame.filter(values < 0)
    if negative.height:
        raise InputRejected(
            path, f"column {column!r}: {negative[column][0]} kWh is negative", row=negative["row"][0]
        )
    return values


def read(path: Path, options: ReadOptions) -> ReadingImport:
    """Read a DSMR-reader hourly export into hourly readings (``options.tz`` is not needed)."""
    table = read_csv_table(path, ",", pad_short_lines=True)
    frame = table.frame
    columns = _energy_columns(frame.columns)
    missing = [k for k in ("import_t1", "import_t2", "export_t1", "export_t2") if k not in columns]
    if HOUR_START not in frame.columns or missing:
        what = [HOUR_START] if HOUR_START not in frame.columns else []
        what += [f"Electricity {k[-1]}{' Returned' if k.startswith('export') else ''}" for k in missing]
        raise InputRejected(path, f"missing column(s) {what}", row=table.header_row)
    frame = frame.select(
        "row",
        _parse_hour_start(frame, path),
        (
            _energy_kwh(frame, columns["import_t1"], path) + _energy_kwh(frame, columns["import_t2"], path)
        ).alias("import_kwh"),
        (
            _energy_kwh(frame, columns["export_t1"], path) + _energy_kwh(frame, columns["export_t2"], path)
        ).alias("export_kwh"),
    )
    anomalies: list[Anomaly] = []
    frame, dups = duplicate_rows(frame, "interval_start", ["import_kwh", "export_kwh"], path)
    anomalies += dups
    frame = frame.sort("interval_start")
    if not frame.height:
        return ReadingImport(empty(READING_SCHEMA), FORMAT_NAME, anomalies)
    import_wh, import_rounded = kwh_to_wh(frame["import_kwh"])
    export_wh, export_rounded = kwh_to_wh(frame["export_kwh"])
    if import_rounded or export_rounded:
        thousandths = frame.filter(
            ((pl.col("import_kwh") * 1000).round(0) != pl.col("import_kwh") * 1000)
            | ((pl.col("export_kwh") * 1000).round(0) != pl.col("export_kwh") * 1000)
        )
        anomalies.append(
            Anomaly(
                ENERGY_ROUNDED,
                None,
                thousandths["row"][0],
                f"{thousandths.height} row(s) hold fractions of a Wh; rounded with carry so the totals "
                "are kept",
            )
        )
    anomalies += gap_anomalies(frame["interval_start"], PT60M, "hour", frame["row"])
    out = pl.DataFrame(
        {
            "interval_start": frame["interval_start"],
            "resolution": pl.Series([PT60M] * frame.height, dtype=pl.String),
            "import_wh": import_wh,
            "export_wh": export_wh,
            "status": pl.Series(["actual"] * frame.height, dtype=pl.String),
        }
    )
    return ReadingImport(out, FORMAT_NAME, anomalies)


FORMATS: list[Format] = [
    Format(
        name=FORMAT_NAME,
        kind="readings",
        description="DSMR-reader hourly export (Hour Start with offset, Electricity 1/2 [Returned] kWh)",
        detect=detect,
        read=read,
    )
]
