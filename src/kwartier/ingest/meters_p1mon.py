"""P1-Monitor (ZTATZ) database dumps: hourly and minute register tables to hourly/quarter-hour energy.

P1-Monitor keeps one row per local wall-clock hour (``e_history_uur``) or minute (``e_history_min``),
keyed by a naive local ``TIMESTAMP`` and overwritten by every telegram until the period ends: a row holds
the registers ``VERBR_KWH_181/182`` (import T1/T2) and ``GELVR_KWH_281/282`` (export T1/T2) as read at the
*end* of its period (the ``12:00`` hour row equals the ``12:59`` minute row); ``VERBR_KWH_X`` and
``GELVR_KWH_X`` state the energy of the period.

Formats: ``p1mon-uur-csv`` / ``p1mon-min-csv`` (CSV dumps, told apart by the spacing of their first
rows), ``p1mon-xlsx`` (the workbook export; reads the ``e_history_uur`` sheet, or ``uur``) and
``p1mon-xlsx-min`` (its ``e_history_min``/``min`` sheet; only with ``--format``). Hourly tables give
``PT60M``; minute tables ``PT15M`` from the rows at the quarter boundaries (``:14``, ``:29``, ``:44``,
``:59``).

Rules (times are local, Europe/Amsterdam unless ``options.tz`` says otherwise):

- Energy comes from the registers (:func:`~kwartier.ingest.base.register_deltas`), each row read at the
  end of its period. Rows ``a`` and ``b`` with none between leave the intervals from the end of ``a`` to
  the end of ``b`` out: one ``GAP`` at the end of ``a`` (the first missing interval), on ``b``'s row, with
  the number of intervals and the import and export energy they hold.
- The stated ``VERBR_KWH_X``/``GELVR_KWH_X`` are compared with the register movement since the
  previous row (when that row is the previous period); a difference of a Wh or more ->
  ``REGISTER_MISMATCH`` (e.g. 2023-10-29 02:00: 22.31 kWh stated, registers moved 4.306 kWh).
- A row whose register is out of line with both of its neighbours while they agree with each other
  (a spike, or a reading lower than the one before) is not a meter reading: -> ``REGISTER_GLITCH`` at the
  start of the row's period, row dropped; the periods around it become a reported ``GAP``. When two
  adjacent rows each qualify (either one could be the wrong one), both are dropped. A register that goes
  backwards for good (meter exchange, wrong file) is rejected, naming both rows.
- DST: the spring hour is simply absent (nothing to report); a non-existent time -> ``DST_PHANTOM``,
  dropped. The repeated autumn hour is *merged* into one row that was last written at the end of the
  second occurrence; it is placed there, so nothing was read at the end of the first. The hole, from
  02:00 summer time to the end of the first merged boundary row (two hours; five quarters in ``min``),
  is reported as ``DST_REPEAT_MISSING`` instead of ``GAP``. A file listing the hour twice is read by row order.
- Identical duplicate rows -> ``DUPLICATE`` (kept once), conflicting ones rejected; registers with
  fractions of a Wh -> rounded half-even, ``ENERGY_ROUNDED`` (deltas telescope, totals are kept).

``ReadingImport.registers``: every kept sample (``import_t1/t2``, ``export_t1/t2``, Wh) when it was read.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from itertools import pairwise
from pathlib import Path

import openpyxl
import polars as pl
from openpyxl.utils.exceptions import InvalidFileException

from kwartier.ingest.base import (
    DST_PHANTOM,
    DST_REPEAT_MISSING,
    ENERGY_ROUNDED,
    GAP,
    REGISTER_GLITCH,
    REGISTER_MISMATCH,
    Anomaly,
    Format,
    InputRejected,
    ReadingImport,
    ReadOptions,
    duplicate_rows,
    parse_decimal_column,
    register_deltas,
)
from kwartier.ingest.textio import localize, parse_datetimes, read_csv_table, require_columns
from kwartier.timegrid import DEFAULT_TZ, HOUR, PT15M, PT60M, QUARTER, iso_utc

MINUTE = timedelta(minutes=1)
#: P1-Monitor column -> register name in ``ReadingImport.registers`` (the names the P1 reader uses).
REGISTERS = {"VERBR_KWH_181": "import_t1", "VERBR_KWH_182": "import_t2", "GELVR_KWH_281": "export_t1",
             "GELVR_KWH_282": "export_t2"}
#: direction -> (its registers, the column stating its energy per period)
DIRECTIONS = {
    "import": (("VERBR_KWH_181", "VERBR_KWH_182"), "VERBR_KWH_X"),
    "export": (("GELVR_KWH_281", "GELVR_KWH_282"), "GELVR_KWH_X"),
}
REQUIRED = ("TIMESTAMP", *REGISTERS, "VERBR_KWH_X", "GELVR_KWH_X")


@dataclass(frozen=True)
class _Table:
    """One P1-Monitor table: how far apart its rows are and what resolution it yields."""

    period: timedelta
    step: timedelta
    resolution: str
    sheets: tuple[str, ...]


UUR = _Table(HOUR, HOUR, PT60M, ("e_history_uur", "uur"))
MIN = _Table(MINUTE, QUARTER, PT15M, ("e_history_min", "min"))


def _row_period(head: str) -> timedelta | None:
    """The usual spacing of the first rows of a P1-Monitor CSV, or None when it is not one."""
    lines = head.lstrip("\ufeff").splitlines()
    if not lines or not all(c in lines[0].split(",") for c in REQUIRED):
        return None
    stamps = []
    for line in lines[1:61]:
        try:
            stamps.append(datetime.strptime(line.split(",", 1)[0].strip(), "%Y-%m-%d %H:%M:%S"))
        except ValueError:
            continue
    steps = [b - a for a, b in pairwise(stamps) if b > a]
    return max(set(steps), key=steps.count) if steps else None


def _is_workbook_with(path: Path, head: str) -> bool:
    """An xlsx workbook (zip) whose ``xl/workbook.xml`` names an ``e_history_uur`` sheet."""
    if not head.startswith("PK\x03\x04"):
        return False
    try:
        with zipfile.ZipFile(path) as z:
            book = z.read("xl/workbook.xml").decode("utf-8", "replace")
    except (OSError, KeyError, zipfile.BadZipFile):
        return False
    return UUR.sheets[0] in re.findall(r'<sheet\b[^>]*\bname="([^"]+)"', book)


def _cell_text(value: object) -> str | None:
    """A workbook cell as the text a CSV dump would hold (floats in their shortest exact form)."""
    if value is None:
        return None
    if isinstance(value, float):
        return format(Decimal(repr(value)), "f")
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def _sheet_frame(path: Path, sheets: tuple[str, ...]) -> pl.DataFrame:
    """The first of ``sheets`` in the workbook as text columns plus ``row`` (the sheet row number)."""
    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, InvalidFileException) as exc:
        raise InputRejected(path, f"not a readable xlsx workbook: {exc}") from None
    try:
        name = next((s for s in sheets if s in book.sheetnames), None)
        if name is None:
            raise InputRejected(path, f"no sheet {' or '.join(sheets)} (the workbook has {book.sheetnames})")
        rows = book[name].iter_rows(values_only=True)
        header = [str(h).strip() if h is not None else "" for h in next(rows, ())]
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise InputRejected(path, f"sheet {name}: missing column(s) {missing}", row=1)
        where = [header.index(c) for c in REQUIRED]
        numbers: list[int] = []
        cells: list[list[str | None]] = [[] for _ in REQUIRED]
        for number, values in enumerate(rows, start=2):
            if not values or all(v is None for v in values):
                continue
            numbers.append(number)
            for out, i in zip(cells, where, strict=True):
                out.append(_cell_text(values[i]) if i < len(values) else None)
    finally:
        book.close()
    if not numbers:
        raise InputRejected(path, f"sheet {name} has no data rows")
    frame = pl.DataFrame({c: pl.Series(v, dtype=pl.String) for c, v in zip(REQUIRED, cells, strict=True)})
    return frame.with_columns(pl.Series("row", numbers, dtype=pl.Int64))


def _register_wh(frame: pl.DataFrame, path: Path) -> tuple[pl.DataFrame, list[Anomaly]]:
    """The four registers as Int64 Wh (rounded half-even when finer than a Wh); empty cells rejected."""
    anomalies: list[Anomaly] = []
    for column in REGISTERS:
        kwh = parse_decimal_column(frame, column, path)
        if kwh.null_count():
            raise InputRejected(
                path, f"register {column} is empty", row=frame.filter(kwh.is_null())["row"][0]
            )
        wh = kwh * 1000
        fine = frame.filter(wh.round(0, mode="half_to_even") != wh)
        if fine.height:
            detail = f"{column}: {fine.height} reading(s) finer than a Wh, rounded half-even (total kept)"
            anomalies.append(Anomaly(ENERGY_ROUNDED, None, fine["row"][0], detail))
        frame = frame.with_columns(wh.round(0, mode="half_to_even").cast(pl.Int64).alias(column))
    return frame, anomalies


def _place(frame: pl.DataFrame, tz: str, table: _Table, path: Path) -> pl.DataFrame:
    """Add ``naive``, ``start`` (UTC start of the row's period), ``merged`` and ``phantom``."""
    naive = parse_datetimes(frame, "TIMESTAMP", ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"), path, "TIMESTAMP",
                            "YYYY-MM-DD HH:MM:SS")
    lz = localize(naive, tz, path)
    placed = (
        frame.with_columns(naive=naive, lz_utc=lz.utc, phantom=lz.phantom)
        .with_columns(
            early=pl.col("naive").dt.replace_time_zone(tz, ambiguous="earliest", non_existent="null"),
            late=pl.col("naive").dt.replace_time_zone(tz, ambiguous="latest", non_existent="null"),
        )
        .with_columns(
            merged=((pl.col("early") != pl.col("late")) & (pl.len().over("naive") == 1)).fill_null(False)
        )
    )
    placed = placed.with_columns(
        start=pl.when(pl.col("merged"))
        .then(pl.col("late").dt.convert_time_zone("UTC"))
        .otherwise(pl.col("lz_utc")),
        early=pl.col("early").dt.convert_time_zone("UTC"),
    )
    off = placed.filter(pl.col("start").dt.epoch("s") % int(table.period.total_seconds()) != 0)
    if off.height:
        raise InputRejected(
            path,
            f"TIMESTAMP {off['TIMESTAMP'][0]} is not the start of a {table.period} period",
            row=off["row"][0],
        )
    return placed


def _glitches(frame: pl.DataFrame) -> tuple[pl.DataFrame, list[Anomaly]]:
    """``REGISTER_GLITCH``: drop rows whose registers are out of line with both neighbours (which agree)."""
    flags = []
    for c in REGISTERS:
        prev, nxt, x = pl.col(c).shift(1), pl.col(c).shift(-1), pl.col(c)
        ordered = prev.is_null() | nxt.is_null() | (prev <= nxt)
        flags.append((ordered & ((x > nxt).fill_null(False) | (x < prev).fill_null(False))).alias(c))
    marked = frame.with_columns(
        pl.any_horizontal(flags).alias("glitch"),
        *[pl.col(c).shift(1).alias(f"prev_{c}") for c in REGISTERS],
        *[pl.col(c).shift(-1).alias(f"next_{c}") for c in REGISTERS],
    )
    anomalies = []
    for r in marked.filter(pl.col("glitch")).iter_rows(named=True):
        odd = ", ".join(
            f"{c} {r[c]} Wh between {r[f'prev_{c}']} and {r[f'next_{c}']}"
            for c in REGISTERS
            if (r[f"next_{c}"] is not None and r[c] > r[f"next_{c}"])
            or (r[f"prev_{c}"] is not None and r[c] < r[f"prev_{c}"])
        )
        detail = f"{r['TIMESTAMP']}: registers out of line with both neighbouring rows: {odd}; row dropped"
        anomalies.append(Anomaly(REGISTER_GLITCH, r["start"], r["row"], detail))
    return marked.filter(~pl.col("glitch")), anomalies


def _stated_mismatches(frame: pl.DataFrame, period: timedelta) -> list[Anomaly]:
    """``REGISTER_MISMATCH`` where a stated period energy differs from the registers' movement."""
    follows = (pl.col("naive") - pl.col("naive").shift(1) == period) | (
        pl.col("reading") - pl.col("reading").shift(1) == period
    )
    anomalies = []
    for direction, (regs, stated_col) in DIRECTIONS.items():
        total = pl.sum_horizontal([pl.col(c) for c in regs])
        checked = frame.with_columns(
            moved=total - total.shift(1),
            stated=(pl.col(stated_col) * 1000).round(0, mode="half_to_even").cast(pl.Int64),
            span_start=pl.col("reading").shift(1),
            prev_row=pl.col("row").shift(1),
            follows=follows,
        ).filter(pl.col("follows") & pl.col("stated").is_not_null() & (pl.col("stated") != pl.col("moved")))
        anomalies += [
            Anomaly(
                REGISTER_MISMATCH,
                r["span_start"],
                r["row"],
                f"{r['TIMESTAMP']}: {stated_col} states {r['stated']} Wh {direction} but {'+'.join(regs)} "
                f"moved {r['moved']} Wh since row {r['prev_row']} ({iso_utc(r['span_start'])}.."
                f"{iso_utc(r['reading'])}); the registers are used",
            )
            for r in checked.iter_rows(named=True)
        ]
    return anomalies


def _deltas(bounds: pl.DataFrame, table: _Table, path: Path) -> tuple[pl.DataFrame, list[Anomaly]]:
    """Interval energy per direction from the boundary rows; one ``GAP`` per hole with both energies."""
    for c in REGISTERS:  # each register on its own: a backwards step is rejected naming both rows
        register_deltas(bounds["reading"], bounds[c], bounds["row"], path, c, table.step)
    energy, gaps = [], {}
    for direction, (regs, _) in DIRECTIONS.items():
        total = bounds.select(pl.sum_horizontal(list(regs))).to_series()
        out, found = register_deltas(
            bounds["reading"],
            total,
            bounds["row"],
            path,
            f"{direction} ({'+'.join(regs)})",
            table.step,
        )
        energy.append(out.rename({"energy_wh": f"{direction}_wh"}))
        for a in found:
            gaps.setdefault((a.at, a.row), []).append(a.detail)
    merged = energy[0].join(energy[1], on="interval_start", how="inner")
    return merged, [Anomaly(GAP, at, row, "; ".join(details)) for (at, row), details in gaps.items()]


def _merged_hour(gap: Anomaly, bounds: pl.DataFrame) -> Anomaly:
    """The gap as ``DST_REPEAT_MISSING`` when it ends at a merged row and starts before its first occurrence ends."""
    hit = bounds.filter((pl.col("row") == gap.row) & pl.col("merged") & (pl.col("early_reading") > gap.at))
    if gap.at is None or not hit.height:
        return gap
    return Anomaly(DST_REPEAT_MISSING, gap.at, gap.row, f"{hit['TIMESTAMP'][0]} is listed once for both occurrences "
                   f"of the repeated hour (merged by P1-Monitor, last written at the end of the second), so the "
                   f"registers were not read at the end of the first: {gap.detail}")


def read_table(
    path: Path, frame: pl.DataFrame, table: _Table, options: ReadOptions, name: str, header_row: int = 1
) -> ReadingImport:
    """Turn one P1-Monitor table (text columns + ``row``) into readings; see the module rules."""
    tz = options.tz or DEFAULT_TZ
    require_columns(path, frame.columns, REQUIRED, header_row)
    frame, anomalies = _register_wh(frame, path)
    frame = frame.with_columns(
        parse_decimal_column(frame, "VERBR_KWH_X", path), parse_decimal_column(frame, "GELVR_KWH_X", path)
    )
    frame = _place(frame, tz, table, path)
    anomalies += [
        Anomaly(DST_PHANTOM, None, r["row"], f"{r['TIMESTAMP']} does not exist in {tz}; row dropped")
        for r in frame.filter(pl.col("phantom")).iter_rows(named=True)
    ]
    frame, dups = duplicate_rows(frame.filter(~pl.col("phantom")), "start", list(REGISTERS), path)
    anomalies += dups
    frame, glitches = _glitches(frame.sort("start"))
    anomalies += glitches
    frame = frame.with_columns(
        reading=pl.col("start") + table.period, early_reading=pl.col("early") + table.period
    )
    anomalies += _stated_mismatches(frame, table.period)
    bounds = frame.filter(pl.col("reading").dt.epoch("s") % int(table.step.total_seconds()) == 0)
    energy, gaps = _deltas(bounds, table, path)
    anomalies += [_merged_hour(gap, bounds) for gap in gaps]
    out = energy.sort("interval_start").with_columns(
        resolution=pl.lit(table.resolution), status=pl.lit("actual")
    )
    registers = (
        frame.select(pl.col("reading").alias("ts"), *REGISTERS)
        .unpivot(index="ts", variable_name="register", value_name="value_wh")
        .with_columns(pl.col("register").replace_strict(REGISTERS))
    )
    anomalies.sort(key=lambda a: (a.row or 0, a.kind))
    return ReadingImport(out, name, anomalies, registers=registers)


def _read_csv(table: _Table, name: str) -> Callable[[Path, ReadOptions], ReadingImport]:
    def read(path: Path, options: ReadOptions) -> ReadingImport:
        csv = read_csv_table(path, ",", pad_short_lines=True)
        return read_table(path, csv.frame, table, options, name, csv.header_row)

    return read


def _read_xlsx(table: _Table, name: str) -> Callable[[Path, ReadOptions], ReadingImport]:
    def read(path: Path, options: ReadOptions) -> ReadingImport:
        return read_table(path, _sheet_frame(path, table.sheets), table, options, name)

    return read


FORMATS: list[Format] = [
    Format("p1mon-uur-csv", "readings", "P1-Monitor e_history_uur CSV dump (hourly registers), hourly energy",
           lambda path, head: _row_period(head) == HOUR, _read_csv(UUR, "p1mon-uur-csv")),
    Format("p1mon-min-csv", "readings", "P1-Monitor e_history_min CSV dump (minute registers), 15-min energy",
           lambda path, head: _row_period(head) == MINUTE, _read_csv(MIN, "p1mon-min-csv")),
    Format("p1mon-xlsx", "readings", "P1-Monitor database as xlsx: the e_history_uur sheet, hourly energy",
           lambda path, head: _is_workbook_with(path, head), _read_xlsx(UUR, "p1mon-xlsx")),
    Format("p1mon-xlsx-min", "readings", "P1-Monitor database as xlsx: the e_history_min sheet, 15-min "
           "energy (only with --format)", lambda path, head: False, _read_xlsx(MIN, "p1mon-xlsx-min")),
]
