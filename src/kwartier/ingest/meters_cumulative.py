"""Cumulative-register exports (Energie Manager Online, HomeWizard P1) to canonical interval readings.

Both formats give meter registers at interval boundaries; the energy of ``[t, t + step)`` is
``register(t + step) - register(t)`` (via :func:`register_deltas`, which rejects a register that
goes backwards, naming both rows). Readings are rounded to whole Wh one by one (half-even, reported
as ``energy_rounded``): the interval energies then still add up to the register's difference.

``emo-csv`` (Energie Manager Online): ``;``-separated, often a blank first line; columns
``name;ean;code;moment;moment-date;value;factor;type``. ``moment`` is the reading instant in Unix
seconds (UTC, so DST is never ambiguous; the local ``moment-date`` is ignored), the register reading
is ``value x |factor|`` kWh (EMO writes the feed-in register with a negative factor: the sign marks
the direction, not a decreasing register). ``code`` ``ellm`` = import register, ``eltm`` = export
register; any other code is rejected (it could hold energy we would otherwise lose). One EAN per
file (-> ``ReadingImport.connection``). A row with an empty value is skipped (``no_data``).
Rule for registers that cover different periods: an interval is imported when at least one register
was read at both its ends; the other direction is then unknown (null). Inside a register's range
such holes are reported by :func:`register_deltas` as ``gap`` (with the energy they hold); before
its first or after its last reading one ``gap`` anomaly per side says how many intervals lack it.

``homewizard-csv`` (HomeWizard Energy P1 export): ``time`` (local wall clock, naive, ``YYYY-MM-DD
HH:MM``; zone ``ReadOptions.tz``, default Europe/Amsterdam) and cumulative registers ``Import T1
kWh``, ``Import T2 kWh``, ``Export T1 kWh``, ``Export T2 kWh`` (any ``Import|Export [Tn] kWh``).
Step 15 or 60 minutes, inferred from the spacing. DST by row order (:func:`localize_naive`): a
non-existent spring time is a ``dst_phantom_hour`` row (dropped: the registers are cumulative, so
no energy is lost); readings missing exactly for the repeated autumn hour are
``dst_repeated_hour_missing``, other missing readings a ``gap`` (both with the energy of the span
they leave unimported). A row with an empty register cell is skipped (``no_data``).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl

from kwartier.ingest.base import (
    DST_PHANTOM,
    GAP,
    NO_DATA,
    READING_SCHEMA,
    UTC_DT,
    Anomaly,
    Format,
    InputRejected,
    ReadingImport,
    ReadOptions,
    duplicate_rows,
    empty,
    parse_decimal_column,
    register_deltas,
)
from kwartier.ingest.meters_generic import (
    find_holes,
    hole_kind,
    infer_resolution,
    null_runs,
    reading_frame,
    register_kwh_to_wh,
)
from kwartier.ingest.textio import ROW, header_fields, localize, parse_datetimes, read_csv_table, require_columns
from kwartier.timegrid import DEFAULT_TZ, RESOLUTIONS, iso_utc

# ---------------------------------------------------------------- Energie Manager Online

EMO_COLUMNS = ["ean", "code", "moment", "value", "factor"]
EMO_CODES = {"ellm": "import", "eltm": "export"}


def _detect_emo(path: Path, head: str) -> bool:
    names = {n.lower() for n in header_fields(head, ";")}
    return set(EMO_COLUMNS) <= names and "moment-date" in names


def _no_data_file(fmt: str) -> ReadingImport:
    return ReadingImport(empty(READING_SCHEMA), fmt,
                         [Anomaly(NO_DATA, None, None, "the file has no data rows")])


def _emo_connection(f: pl.DataFrame, path: Path) -> str | None:
    ean = f["ean"].str.strip_chars().str.strip_chars('="')
    ean = pl.select(pl.when(ean == "").then(None).otherwise(ean)).to_series()
    firsts = f.with_columns(ean=ean).drop_nulls("ean").unique("ean", keep="first", maintain_order=True)
    if firsts.height > 1:
        raise InputRejected(path, f"more than one EAN in the file ({', '.join(firsts['ean'].head(3))}); "
                            "import one connection at a time", rows=firsts[ROW].head(2).to_list())
    return firsts["ean"][0] if firsts.height else None


def _emo_registers(path: Path) -> tuple[pl.DataFrame, str | None, list[Anomaly]]:
    """The EMO rows as ``row, ts, code, kwh`` (register reading in kWh), the EAN, and no_data anomalies."""
    table = read_csv_table(path, ";", empty_ok=True)
    require_columns(path, table.columns, EMO_COLUMNS, table.header_row)
    f = table.frame
    moment_text = f["moment"].str.strip_chars()
    moment = moment_text.cast(pl.Int64, strict=False)
    bad = f.filter(moment.is_null())
    if bad.height:
        raise InputRejected(path, f"moment {bad['moment'][0]!r} is not a Unix time in seconds",
                            row=bad[ROW][0])
    off = f.filter(moment % 900 != 0)
    if off.height:
        raise InputRejected(path, f"moment {off['moment'][0]} is not on the quarter-hour grid",
                            row=off[ROW][0])
    code = f["code"].str.strip_chars().str.to_lowercase()
    unknown = f.filter(~code.is_in(list(EMO_CODES)) | code.is_null())
    if unknown.height:
        raise InputRejected(path, f"register code {unknown['code'][0]!r} is not known (ellm = import, "
                            "eltm = export); refusing to drop a register that may hold energy",
                            row=unknown[ROW][0])
    value = parse_decimal_column(f, "value", path, ROW)
    factor = parse_decimal_column(f, "factor", path, ROW)
    bad = f.filter(factor.is_null() | (factor == 0))
    if bad.height:
        raise InputRejected(path, f"factor {bad['factor'][0]!r} is empty or zero", row=bad[ROW][0])
    rows = pl.DataFrame({
        ROW: f[ROW], "ts": pl.from_epoch(moment, time_unit="s").cast(UTC_DT), "code": code,
        "kwh": value * factor.abs(),
    })
    negative = f.filter(rows["kwh"] < 0)
    if negative.height:
        raise InputRejected(path, f"register value {negative['value'][0]!r} is negative",
                            row=negative[ROW][0])
    anomalies = null_runs(rows, pl.col("kwh").is_null(), "ts", "register value empty: reading skipped")
    return rows.drop_nulls("kwh"), _emo_connection(f, path), anomalies


def _coverage_anomalies(frame: pl.DataFrame, direction: str, code: str,
                        first: datetime | None, last: datetime | None) -> list[Anomaly]:
    """``gap`` anomalies for the intervals before the first / after the last reading of a register."""
    col = f"{direction}_wh"
    if first is None or last is None:
        if not frame.height:
            return []
        return [Anomaly(GAP, frame["interval_start"].min(), None,  # type: ignore[arg-type]
                        f"no readings of register {code!r} in the file: {col} is unknown (null) "
                        f"for all {frame.height} interval(s)")]
    out = []
    for side, cond in (("before its first", pl.col("interval_start") < first),
                       ("after its last", pl.col("interval_start") >= last)):
        lacking = frame.filter(cond & pl.col(col).is_null())
        if lacking.height:
            a, b = lacking["interval_start"].min(), lacking["interval_start"].max()
            edge = first if side.startswith("before") else last
            out.append(Anomaly(GAP, a, None,  # type: ignore[arg-type]
                               f"register {code!r} has no readings {side} reading ({iso_utc(edge)}): {col} "
                               f"is unknown (null) for {lacking.height} interval(s) from {iso_utc(a)} "
                               f"to {iso_utc(b)} (starts); those intervals are not complete"))
    return out


def read_emo(path: Path, options: ReadOptions) -> ReadingImport:
    """Read an Energie Manager Online cumulative CSV export (see the module docstring)."""
    rows, connection, anomalies = _emo_registers(path)
    if not rows.height:
        result = _no_data_file("emo-csv")
        result.connection, result.anomalies = connection, anomalies + result.anomalies
        return result
    parts: dict[str, pl.DataFrame] = {}
    spans: dict[str, tuple[datetime | None, datetime | None]] = {}
    for code, direction in EMO_CODES.items():
        sub = rows.filter(pl.col("code") == code)
        sub, dups = duplicate_rows(sub, "ts", ["kwh"], path, ROW)
        sub = sub.sort("ts")
        wh, rounding = register_kwh_to_wh(sub["kwh"], code)
        deltas, gaps = register_deltas(sub["ts"], wh, sub[ROW], path, code)
        anomalies += dups + rounding + gaps
        parts[direction] = deltas.rename({"energy_wh": f"{direction}_wh"})
        spans[direction] = (sub["ts"].min(), sub["ts"].max()) if sub.height else (None, None)  # type: ignore[assignment]
    frame = parts["import"].join(parts["export"], on="interval_start", how="full", coalesce=True)
    frame = frame.sort("interval_start")
    for code, direction in EMO_CODES.items():
        anomalies += _coverage_anomalies(frame, direction, code, *spans[direction])
    out = frame.with_columns(resolution=pl.lit("PT15M"), status=pl.lit("actual"))
    return ReadingImport(reading_frame(out), "emo-csv", anomalies, connection=connection)


# ---------------------------------------------------------------- HomeWizard P1

_HW_REGISTER = re.compile(r"^(import|export)( t\d+)? kwh$", re.IGNORECASE)


def _hw_columns(names: list[str]) -> tuple[str | None, list[str], list[str]]:
    time = next((n for n in names if n.lower() == "time"), None)
    regs = [n for n in names if _HW_REGISTER.match(n)]
    imports = [n for n in regs if n.lower().startswith("import")]
    return time, imports, [n for n in regs if n not in imports]


def _detect_homewizard(path: Path, head: str) -> bool:
    time, imports, exports = _hw_columns(header_fields(head))
    return time is not None and bool(imports) and bool(exports)


def _hw_hole_anomalies(f: pl.DataFrame, regs: list[str], step: timedelta, tz: str) -> list[Anomaly]:
    nxt = f.with_columns([pl.col(c).shift(-1).alias(f"{c} next") for c in regs])
    nxt = nxt.with_columns(expected=pl.col("ts") + step)
    out = []
    for h in find_holes(nxt, "ts", "expected", tz).iter_rows(named=True):
        n = (h["_next"] - h["ts"]) // step
        energy = ", ".join(f"{c} {h[f'{c} next'] - h[c]} Wh" for c in regs)
        kind = hole_kind(h["dst_repeat"])
        why = "the repeated autumn hour is absent: " if h["dst_repeat"] else ""
        missing = f"{iso_utc(h['expected'])} to {iso_utc(h['_next'] - step)}"
        out.append(Anomaly(kind, h["ts"], h["_next_row"],
                           f"{why}no readings from {missing}; {n} interval(s) from {iso_utc(h['ts'])} "
                           f"up to {iso_utc(h['_next'])} not imported (their energy cannot be placed "
                           f"per interval: {energy})"))
    return out


def read_homewizard(path: Path, options: ReadOptions) -> ReadingImport:
    """Read a HomeWizard Energy P1 CSV export with cumulative registers (see the module docstring)."""
    table = read_csv_table(path, empty_ok=True)
    time_col, imports, exports = _hw_columns(table.columns)
    if time_col is None or not imports or not exports:
        raise InputRejected(path, "missing column(s): need 'time', 'Import T1 kWh'-style and 'Export T1 kWh'-"
                            f"style columns; found {table.columns}", row=table.header_row)
    regs = imports + exports
    f = table.frame
    if not f.height:
        return _no_data_file("homewizard-csv")
    naive = parse_datetimes(f, time_col, ("%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S"), path, "time",
                            "'YYYY-MM-DD HH:MM'")
    tz = options.tz or DEFAULT_TZ
    loc = localize(naive, tz, path)
    values = {c: parse_decimal_column(f, c, path, ROW) for c in regs}
    for c, v in values.items():
        neg = f.filter(v < 0)
        if neg.height:
            raise InputRejected(path, f"register {c!r} reading {neg[c][0]!r} is negative", row=neg[ROW][0])
    g = pl.DataFrame({ROW: f[ROW], "ts": loc.utc.cast(UTC_DT), "local": f[time_col].str.strip_chars(),
                      "phantom": loc.phantom, **values})
    anomalies = [Anomaly(DST_PHANTOM, None, r, f"local time {t!r} does not exist in {tz} (clocks jump "
                         "forward); reading dropped, the next reading's register covers its energy")
                 for r, t in g.filter("phantom").select(ROW, "local").iter_rows()]
    g = g.filter(~pl.col("phantom"))
    g = g.with_columns(complete=pl.all_horizontal(pl.col(c).is_not_null() for c in regs))
    anomalies += null_runs(g, ~pl.col("complete"), "ts", "a register cell is empty: reading skipped")
    g = g.filter("complete")
    for c in regs:
        wh, rounding = register_kwh_to_wh(g[c], c)
        g = g.with_columns(wh)
        anomalies += rounding
    g, dups = duplicate_rows(g, "ts", regs, path, ROW)
    anomalies += dups
    g = g.sort("ts")
    resolution = infer_resolution(g["ts"], path, "a HomeWizard export of 15-minute or hourly values")
    step = RESOLUTIONS[resolution]
    off = g.filter(pl.col("ts").dt.epoch("s") % int(step.total_seconds()) != 0)
    if off.height:
        raise InputRejected(path, f"time {off['local'][0]!r} is not on the {resolution} grid",
                            row=off[ROW][0])
    frame = None
    for c in regs:
        deltas, _ = register_deltas(g["ts"], g[c], g[ROW], path, c, step)  # holes reported below, merged
        deltas = deltas.rename({"energy_wh": c})
        frame = deltas if frame is None else frame.join(deltas, on="interval_start", how="inner")
    assert frame is not None
    anomalies += _hw_hole_anomalies(g, regs, step, tz)
    out = frame.select(
        "interval_start", resolution=pl.lit(resolution), import_wh=pl.sum_horizontal(imports),
        export_wh=pl.sum_horizontal(exports), status=pl.lit("actual"))
    return ReadingImport(reading_frame(out), "homewizard-csv", anomalies)


FORMATS: list[Format] = [
    Format("emo-csv", "readings",
           "Energie Manager Online CSV: cumulative registers (ellm import, eltm export) at Unix-time moments",
           _detect_emo, read_emo),
    Format("homewizard-csv", "readings",
           "HomeWizard Energy P1 CSV: local time, cumulative Import/Export T1/T2 kWh registers",
           _detect_homewizard, read_homewizard),
]
