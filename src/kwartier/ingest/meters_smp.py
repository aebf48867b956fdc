"""SlimmeMeterPortal 15-minute exports (xlsx and its csv conversion) to canonical interval readings.

Columns: ``datum_tijd`` is the interval END as ``DD-MM-YYYY HH:MM:SS +0100`` (explicit offset, so
DST needs no guessing: the autumn day has both ``02:00 +0200`` and ``02:00 +0100``);
``levering_normaal`` / ``levering_laag`` are the kWh taken in the interval in tariff T2 / T1 and
``teruglevering_normaal`` / ``teruglevering_laag`` the kWh fed in; the inactive tariff is empty.
Other columns (``buitentemperatuur``) are ignored. Decimal comma or point.

Rules:
- interval start = ``datum_tijd`` - 15 min; an end off the quarter grid is rejected;
- import_wh = T1 + T2 (export likewise); when BOTH tariff cells of a direction are empty the
  portal states no value (it writes ``0,00`` for a real zero), so that value is unknown (null),
  reported as ``no_data`` per run of rows; a row with no value at all is skipped (``no_data``);
- a negative or non-numeric value is rejected; duplicates follow ``duplicate_rows``;
- missing intervals are a ``gap``, or ``dst_repeated_hour_missing`` when the missing END stamps are
  exactly the second (winter-time) pass of the repeated autumn hour (zone: ``ReadOptions.tz``,
  default Europe/Amsterdam). An explicit offset is authoritative: no stamp is a DST phantom.
"""

from __future__ import annotations

from pathlib import Path

import openpyxl
import polars as pl

from kwartier.ingest.base import (
    Anomaly,
    Format,
    InputRejected,
    ReadingImport,
    ReadOptions,
    duplicate_rows,
    parse_decimal_column,
)
from kwartier.ingest.meters_generic import energy_kwh_to_wh, find_holes, hole_kind, reading_frame, unknown_directions
from kwartier.ingest.textio import ROW, CsvTable, header_fields, parse_datetimes, read_csv_table, require_columns
from kwartier.timegrid import DEFAULT_TZ, PT15M, QUARTER, iso_utc

STAMP = "datum_tijd"
IMPORT_COLS = ("levering_normaal", "levering_laag")
EXPORT_COLS = ("teruglevering_normaal", "teruglevering_laag")
REQUIRED = [STAMP, *IMPORT_COLS, *EXPORT_COLS]


def _has_smp_header(names: list[str]) -> bool:
    lowered = {str(n).strip().lower() for n in names if n is not None}
    return STAMP in lowered and "levering_normaal" in lowered


def _detect_csv(path: Path, head: str) -> bool:
    return not head.startswith("PK") and _has_smp_header(header_fields(head))


def _smp_sheet(path: Path) -> tuple[str, list[list[object]]] | None:
    """The first worksheet whose first row names the SlimmeMeterPortal columns, with all its rows."""
    wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    try:
        for ws in wb.worksheets:
            rows = ws.iter_rows(values_only=True)
            first = next(rows, None)
            if first and _has_smp_header(list(first)):
                return ws.title, [list(first), *(list(r) for r in rows)]
        return None
    finally:
        wb.close()


def _detect_xlsx(path: Path, head: str) -> bool:
    if path.suffix.lower() != ".xlsx" or not head.startswith("PK"):
        return False
    try:
        wb = openpyxl.load_workbook(path, read_only=True)
    except Exception:
        return False
    try:
        for ws in wb.worksheets:
            first = next(ws.iter_rows(max_row=1, values_only=True), None)
            if first and _has_smp_header(list(first)):
                return True
        return False
    finally:
        wb.close()


def _cell_text(value: object) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


def _xlsx_table(path: Path) -> CsvTable:
    """The SlimmeMeterPortal sheet as text columns; ``row`` is the sheet row number."""
    try:
        found = _smp_sheet(path)
    except Exception as exc:
        raise InputRejected(path, f"not a readable xlsx workbook: {exc}") from None
    if found is None:
        raise InputRejected(path, f"no worksheet with a {STAMP!r} / 'levering_normaal' header row")
    _, rows = found
    header = [str(h).strip() if h is not None else f"column{i + 1}" for i, h in enumerate(rows[0])]
    width = len(header)
    data: dict[str, list[str | None]] = {h: [] for h in header}
    numbers: list[int] = []
    for number, row in enumerate(rows[1:], start=2):  # a loop over cells is unavoidable for xlsx
        if all(v is None or (isinstance(v, str) and not v.strip()) for v in row):
            continue
        cells = (row + [None] * width)[:width]
        for h, v in zip(header, cells, strict=True):
            data[h].append(_cell_text(v))
        numbers.append(number)
    frame = pl.DataFrame(data, schema=dict.fromkeys(header, pl.String)).with_columns(
        pl.Series(ROW, numbers, dtype=pl.Int64))
    return CsvTable(frame, header, 1, "")


def _direction_kwh(frame: pl.DataFrame, cols: tuple[str, str], path: Path) -> pl.Series:
    """T2 + T1 in decimal kWh; null when both cells are empty. Negative values are rejected."""
    a, b = (parse_decimal_column(frame, c, path, ROW) for c in cols)
    for c, v in ((cols[0], a), (cols[1], b)):
        neg = frame.filter(v < 0)
        if neg.height:
            raise InputRejected(path, f"column {c!r}: {neg[c][0]!r} is negative", row=neg[ROW][0])
    zero = pl.lit(0).cast(pl.Decimal(38, 9))
    return pl.select(pl.when(a.is_null() & b.is_null()).then(None)
                     .otherwise(a.fill_null(zero) + b.fill_null(zero))).to_series()


def _read_table(path: Path, table: CsvTable, fmt: str, options: ReadOptions) -> ReadingImport:
    f = table.frame.rename({c: c.lower() for c in table.columns if c.lower() in REQUIRED})
    require_columns(path, f.columns, REQUIRED, table.header_row)
    end = parse_datetimes(f, STAMP, ["%d-%m-%Y %H:%M:%S %z"], path, STAMP, "'DD-MM-YYYY HH:MM:SS +HHMM'",
                          time_zone="UTC")
    off = f.filter(end.dt.epoch("s") % 900 != 0)
    if off.height:
        raise InputRejected(path, f"{STAMP} {off[STAMP][0]!r} is not on the quarter-hour grid",
                            row=off[ROW][0])
    f = pl.DataFrame({
        ROW: f[ROW], "end": end, "interval_start": end - QUARTER,
        "import": _direction_kwh(f, IMPORT_COLS, path), "export": _direction_kwh(f, EXPORT_COLS, path),
    })
    f, anomalies = unknown_directions(f, "no import and no export value: row skipped",
                                      "both levering columns empty: import_wh unknown (null)",
                                      "both teruglevering columns empty: export_wh unknown (null)")
    f, dups = duplicate_rows(f, "interval_start", ["import", "export"], path, ROW)
    anomalies += dups
    f = f.sort("interval_start").with_columns(expected=pl.col("end") + QUARTER)
    for h in find_holes(f, "end", "expected", options.tz or DEFAULT_TZ).iter_rows(named=True):
        first_start = h["expected"] - QUARTER
        n = (h["_next"] - h["expected"]) // QUARTER
        anomalies.append(Anomaly(
            hole_kind(h["dst_repeat"]), first_start, h["_next_row"],
            f"{n} interval(s) missing, from {iso_utc(first_start)} up to {iso_utc(h['_next'] - QUARTER)} "
            f"(no rows with an end from {iso_utc(h['expected'])} to {iso_utc(h['_next'] - QUARTER)})",
        ))
    imp_wh, r1 = energy_kwh_to_wh(f["import"], "levering")
    exp_wh, r2 = energy_kwh_to_wh(f["export"], "teruglevering")
    out = f.select("interval_start").with_columns(
        resolution=pl.lit(PT15M), import_wh=imp_wh, export_wh=exp_wh, status=pl.lit("actual"))
    return ReadingImport(reading_frame(out), fmt, anomalies + r1 + r2)


def read_smp_csv(path: Path, options: ReadOptions) -> ReadingImport:
    """Read a SlimmeMeterPortal csv (the plain conversion of its xlsx export)."""
    return _read_table(path, read_csv_table(path), "slimmemeterportal-csv", options)


def read_smp_xlsx(path: Path, options: ReadOptions) -> ReadingImport:
    """Read a SlimmeMeterPortal xlsx export (the first sheet with its header)."""
    return _read_table(path, _xlsx_table(path), "slimmemeterportal-xlsx", options)


FORMATS: list[Format] = [
    Format("slimmemeterportal-xlsx", "readings",
           "SlimmeMeterPortal xlsx: datum_tijd (interval end, with offset), levering/teruglevering T1/T2 kWh",
           _detect_xlsx, read_smp_xlsx),
    Format("slimmemeterportal-csv", "readings",
           "SlimmeMeterPortal csv: datum_tijd (interval end, with offset), levering/teruglevering T1/T2 kWh",
           _detect_csv, read_smp_csv),
]
