"""Price CSV readers (jeroen.nl, generic) and the price-series rules that every price reader shares.

Shared rules (also used by :mod:`prices_entsoe` and :mod:`prices_json`):

- a price is stored as integer micro-euros per kWh; more precision is rounded half-even and
  reported once per file (:data:`PRICE_ROUNDED`, with the count);
- naive local times are placed on UTC by :func:`kwartier.timegrid.localize_naive` (row order
  resolves the repeated autumn hour); a wall-clock time that does not exist is dropped and
  reported (:data:`DST_PHANTOM`);
- a row without a value is skipped and reported (:data:`NO_DATA`, one anomaly per run of rows);
- identical duplicate intervals are kept once (:data:`DUPLICATE`), conflicting ones rejected;
- an hourly price that overlaps 15-minute prices is dropped: the 15-minute prices win
  (:data:`OVERLAP`, one anomaly per run of hours);
- a missing interval that is the second occurrence of the repeated autumn hour is reported as
  :data:`DST_REPEAT_MISSING` (one anomaly per interval); any other run of missing intervals
  between the first and the last price is one :data:`GAP`.

Formats here:

- ``jeroen-csv``: ``datum_nl;datum_utc;prijs_excl_belastingen`` (``;``, decimal comma, EUR/kWh).
  ``datum_utc`` is used; ``datum_nl`` must be the same instant in Europe/Amsterdam.
- ``generic-csv``: a header with exactly these columns (case and surrounding spaces ignored,
  other columns ignored): a timestamp column ``timestamp``, ``interval_start`` or ``time``
  (ISO 8601 with an offset or ``Z``; the interval start); exactly one price column
  ``price_eur_per_mwh`` / ``eur_per_mwh`` (EUR/MWh) or ``price_eur_per_kwh`` / ``eur_per_kwh``
  (EUR/kWh); optionally ``resolution`` (``PT15M`` or ``PT60M``). Without it the resolution is
  the most common spacing (15 or 60 minutes; longer steps must be whole multiples and are gaps,
  anything else is mixed spacing and rejected); a single row is taken as ``PT15M``.
  The separator is ``;`` when the header has one, else ``,``; a decimal comma is accepted
  with ``;``.
"""

from __future__ import annotations

import io
import re
from datetime import timedelta
from pathlib import Path

import polars as pl

from kwartier.ingest.base import (
    DST_PHANTOM,
    DST_REPEAT_MISSING,
    GAP,
    NO_DATA,
    OVERLAP,
    PRICE_ROUNDED,
    UTC_DT,
    Anomaly,
    Format,
    InputRejected,
    PriceImport,
    ReadOptions,
    duplicate_rows,
    read_text,
)
from kwartier.timegrid import (
    DEFAULT_TZ,
    HOUR,
    PT15M,
    PT60M,
    RESOLUTIONS,
    format_local,
    interval_starts,
    iso_utc,
    localize_naive,
)

PRICE_DECIMAL = pl.Decimal(38, 18)
_NO_VALUE = ["", "-", ".", "n/e", "N/A", "n/a", "NaN", "nan", "null"]


# --- shared price-series rules ------------------------------------------------------------------


def price_decimals(cells: pl.Series, rows: pl.Series, file: str | Path, column: str) -> pl.Series:
    """Text cells (decimal point or comma) as exact decimals; empty or NaN-like cells become null.

    A cell that is not a number raises :class:`InputRejected` naming its row.
    """
    text = cells.cast(pl.String).str.strip_chars()
    missing = (text.is_null() | text.is_in(_NO_VALUE)).fill_null(True)
    cleaned = pl.select(pl.when(missing).then(None).otherwise(text.str.replace(",", ".", literal=True)))
    values = cleaned.to_series().cast(PRICE_DECIMAL, strict=False)
    bad = (values.is_null() & ~missing).arg_true()
    if bad.len():
        i = bad[0]
        raise InputRejected(file, f"{column} {cells[i]!r} is not a number", row=rows[i])
    return values.alias(column)


def to_micro_per_kwh(values: pl.Series, unit: str) -> tuple[pl.Series, pl.Series]:
    """Exact decimal prices in ``EUR/MWh`` or ``EUR/kWh`` as integer uEUR/kWh, rounded half-even.

    Returns the prices and a mask of the ones that needed rounding (nulls stay null).
    """
    factor = {"EUR/MWh": 1_000, "EUR/kWh": 1_000_000}[unit]
    scaled = values.cast(PRICE_DECIMAL) * factor
    whole = scaled.round(0, mode="half_to_even")
    rounded = (whole != scaled).fill_null(False).alias("rounded")
    return whole.cast(pl.Int64).alias("price_ueur_per_kwh"), rounded


def place_local(naive: pl.Series, rows: pl.Series, tz: str,
                values: pl.Series | None = None) -> tuple[pl.Series, list[Anomaly]]:
    """Naive local interval starts in ``tz`` as UTC (row order resolves the repeated autumn hour).

    A wall-clock time that does not exist (spring forward) is null in the result and reported as
    :data:`DST_PHANTOM`; its ``at`` is the UTC instant the time would have had without the jump.
    """
    loc = localize_naive(naive, tz)
    anomalies: list[Anomaly] = []
    idx = loc.phantom.arg_true()
    if idx.len():
        ghost = naive.gather(idx)
        before = (ghost - HOUR).dt.replace_time_zone(tz, ambiguous="earliest", non_existent="null")
        at = (before + HOUR).dt.convert_time_zone("UTC")
        for k, i in enumerate(idx.to_list()):
            value = f" (value {values[i]})" if values is not None else ""
            detail = f"local time {ghost[k]:%Y-%m-%d %H:%M} does not exist in {tz} (clocks jump forward)"
            anomalies.append(Anomaly(DST_PHANTOM, at[k], rows[i], f"{detail}; the row{value} is dropped"))
    return loc.utc.dt.cast_time_unit("us").alias("interval_start"), anomalies


def infer_resolution(starts: pl.Series, rows: pl.Series, file: str | Path) -> str:
    """The resolution a series of UTC interval starts is spaced at: its most common step (15 or 60 min).

    Longer steps must be whole multiples (they are gaps); a step that is shorter or not a multiple
    is mixed spacing and raises :class:`InputRejected` naming the row. One row is ``PT15M``.
    """
    frame = pl.DataFrame({"t": starts, "row": rows}).drop_nulls("t").unique("t", keep="first").sort("t")
    steps = frame.with_columns(step=pl.col("t").diff()).drop_nulls("step")
    if not steps.height:
        return PT15M
    common = steps["step"].mode().sort()[0]
    by_step = {v: k for k, v in RESOLUTIONS.items()}
    if common not in by_step:
        raise InputRejected(file, f"rows are {common} apart; only 15- or 60-minute prices are supported",
                            row=steps["row"][0])
    odd = steps.filter(pl.col("step").dt.total_seconds() % int(common.total_seconds()) != 0)
    if odd.height:
        raise InputRejected(file, f"mixed spacing: {odd['step'][0]} after the previous row while the file is "
                            f"spaced at {common}; add a resolution column", row=odd["row"][0])
    return by_step[common]


def _runs(starts: pl.Series, step: timedelta) -> list[pl.Series]:
    """Sorted ``starts`` split into runs of consecutive intervals."""
    frame = pl.DataFrame({"t": starts.sort()}).with_columns(
        run=(pl.col("t").diff() != step).fill_null(True).cum_sum()
    )
    return [g["t"] for _, g in frame.group_by("run", maintain_order=True)]


def _no_data(frame: pl.DataFrame) -> list[Anomaly]:
    """One :data:`NO_DATA` anomaly per run of consecutive rows without a price."""
    is_empty = pl.col("price_ueur_per_kwh").is_null()
    run = is_empty.cast(pl.Int8).diff().fill_null(1).ne(0).cum_sum()
    empty = frame.with_columns(run=run).filter(is_empty)
    out = []
    for _, g in empty.group_by("run", maintain_order=True):
        first, last = g.row(0, named=True), g.row(-1, named=True)
        span = f"rows {first['row']}..{last['row']}" if g.height > 1 else f"row {first['row']}"
        out.append(Anomaly(NO_DATA, first["interval_start"], first["row"],
                           f"{g.height} interval(s) without a price ({span}, from "
                           f"{iso_utc(first['interval_start'])}); skipped"))
    return out


def _drop_overlapped_hours(frame: pl.DataFrame) -> tuple[pl.DataFrame, list[Anomaly]]:
    """The 15-minute prices win: an hourly price whose hour holds any 15-minute price is dropped."""
    quarter_hours = frame.filter(pl.col("resolution") == PT15M)["interval_start"].dt.truncate("1h").unique()
    hit = (pl.col("resolution") == PT60M) & pl.col("interval_start").is_in(quarter_hours.implode())
    over = frame.filter(hit).sort("interval_start")
    if not over.height:
        return frame, []
    rows = dict(zip(over["interval_start"].to_list(), over["row"].to_list(), strict=True))
    out = []
    for run in _runs(over["interval_start"], HOUR):
        out.append(Anomaly(OVERLAP, run[0], rows[run[0]],
                           f"{run.len()} hourly price(s) {iso_utc(run[0])}..{iso_utc(run[-1] + HOUR)} "
                           "overlap 15-minute prices; the 15-minute prices are kept, the hourly dropped"))
    return frame.filter(~hit), out


def missing_anomalies(frame: pl.DataFrame, tz: str = DEFAULT_TZ, reported: pl.Series | None = None
                      ) -> list[Anomaly]:
    """DST_REPEAT_MISSING per missing interval of the repeated autumn hour; one GAP per other run.

    Per resolution, between its first and last price; an interval covered by a price of the
    other resolution (a quarter inside a priced hour, an hour holding quarters) is not missing,
    nor is one already ``reported`` (a row without a price).
    """
    hours = frame.filter(pl.col("resolution") == PT60M)["interval_start"]
    quarters = frame.filter(pl.col("resolution") == PT15M)["interval_start"]
    out: list[Anomaly] = []
    for res, present, covered in ((PT60M, hours, quarters.dt.truncate("1h")), (PT15M, quarters, None)):
        if not present.len():
            continue
        step = RESOLUTIONS[res]
        expected = interval_starts(present.min(), present.max() + step, step)
        missing = expected.filter(~expected.is_in(present.implode()))
        if reported is not None:
            missing = missing.filter(~missing.is_in(reported.implode()))
        if covered is not None:
            missing = missing.filter(~missing.is_in(covered.implode()))
        else:
            missing = missing.filter(~missing.dt.truncate("1h").is_in(hours.implode()))
        if not missing.len():
            continue
        wall = missing.dt.convert_time_zone(tz).dt.replace_time_zone(None)
        earliest = wall.dt.replace_time_zone(tz, ambiguous="earliest", non_existent="null")
        earliest = earliest.dt.convert_time_zone("UTC")
        second = set(missing.filter(earliest != missing).to_list())
        for run in _runs(missing, step):
            if all(t in second for t in run.to_list()):
                out.extend(Anomaly(DST_REPEAT_MISSING, t, None,
                                   f"{res} interval {format_local(t, tz)} (the second occurrence of the "
                                   "repeated autumn hour) is not in the file") for t in run.to_list())
            else:
                span = (f"{format_local(run[0], tz)} ({iso_utc(run[0])})" if run.len() == 1 else
                        f"{format_local(run[0], tz)} .. {format_local(run[-1], tz)} "
                        f"({iso_utc(run[0])} .. {iso_utc(run[-1])})")
                out.append(Anomaly(GAP, run[0], None, f"{run.len()} {res} interval(s) missing: {span}"))
    return out


def finish_prices(frame: pl.DataFrame, file: str | Path, fmt: str, anomalies: list[Anomaly], unit: str,
                  tz: str = DEFAULT_TZ, zone: str | None = None) -> PriceImport:
    """Apply the shared rules to a :func:`price_frame` and return the :class:`PriceImport`."""
    frame = frame.select(
        pl.col("interval_start").cast(UTC_DT), pl.col("resolution").cast(pl.String),
        pl.col("price_ueur_per_kwh").cast(pl.Int64), pl.col("row").cast(pl.Int64),
        pl.col("rounded").cast(pl.Boolean), pl.col("raw").cast(pl.String),
    ).sort("interval_start", "row")
    out = list(anomalies)
    out += _no_data(frame)
    empty = frame.filter(pl.col("price_ueur_per_kwh").is_null())["interval_start"]
    frame = frame.filter(pl.col("price_ueur_per_kwh").is_not_null())
    parts = []
    for res in (PT60M, PT15M):  # duplicates within a resolution; across resolutions it is an overlap
        kept, dups = duplicate_rows(frame.filter(pl.col("resolution") == res), "interval_start",
                                    ["price_ueur_per_kwh"], file)
        parts.append(kept)
        out += dups
    frame = pl.concat(parts).sort("interval_start", "row")
    frame, overlaps = _drop_overlapped_hours(frame)
    out += overlaps
    out += missing_anomalies(frame, tz, empty)
    rounded = frame.filter(pl.col("rounded"))
    if rounded.height:
        r = rounded.row(0, named=True)
        out.append(Anomaly(PRICE_ROUNDED, r["interval_start"], r["row"],
                           f"{rounded.height} price(s) had more than 6 decimals in EUR/kWh and were rounded "
                           f"half-even to the micro-euro, e.g. {r['raw']} {unit} -> "
                           f"{r['price_ueur_per_kwh']} uEUR/kWh"))
    prices = frame.select("interval_start", "resolution", "price_ueur_per_kwh")
    return PriceImport(frame=prices, format=fmt, anomalies=out, zone=zone)


# --- CSV tables ----------------------------------------------------------------------------------


def first_line(head: str) -> str:
    """The first non-blank line of a file's head."""
    return next((line.strip() for line in head.splitlines() if line.strip()), "")


def read_table(path: Path, separator: str) -> pl.DataFrame:
    """A CSV file as text columns plus ``row``, the physical line number of each record.

    Blank lines are skipped; the first non-blank line is the header. Records must not span lines.
    """
    text = read_text(path)
    lines = (pl.DataFrame({"line": text.split("\n")}).with_row_index("row", offset=1)
             .with_columns(pl.col("line").str.strip_suffix("\r"))
             .filter(pl.col("line").str.strip_chars() != ""))
    if lines.height < 2:
        raise InputRejected(path, "the file has no data rows" if lines.height else "the file is empty")
    odd = lines.filter(pl.col("line").str.count_matches('"', literal=True) % 2 == 1)
    if odd.height:  # records never span lines here, so this is a cut or corrupt line
        raise InputRejected(path, f"unbalanced quote in {odd['line'][0][:60]!r}", row=odd["row"][0])
    try:
        table = pl.read_csv(io.StringIO("\n".join(lines["line"].to_list())), separator=separator,
                            infer_schema=False, has_header=True)
    except pl.exceptions.PolarsError as exc:
        reason = str(exc).strip().splitlines()[0]
        raise InputRejected(path, f"not a well-formed '{separator}'-separated table: {reason}") from None
    if table.height != lines.height - 1:
        raise InputRejected(path, "the rows could not be numbered: a record spans lines")
    table = table.rename({c: c.strip() for c in table.columns})
    return table.with_columns(row=lines["row"][1:].cast(pl.Int64))


def need_columns(table: pl.DataFrame, names: list[str], file: Path, what: str) -> None:
    """Reject a table that lacks any of ``names``, naming the header row."""
    missing = [n for n in names if n not in table.columns]
    if missing:
        raise InputRejected(file, f"{what}: missing column(s) {missing}; the header has {table.columns}",
                            row=1)


def parse_naive(cells: pl.Series, rows: pl.Series, fmt: str, file: Path, column: str) -> pl.Series:
    """Text timestamps in strftime ``fmt`` as naive datetimes; a bad one is rejected naming its row."""
    text = cells.str.strip_chars()
    parsed = text.str.to_datetime(fmt, strict=False, time_unit="us")
    bad = parsed.is_null().arg_true()
    if bad.len():
        i = bad[0]
        raise InputRejected(file, f"{column} {cells[i]!r} is not a timestamp like {fmt}", row=rows[i])
    return parsed


def price_frame(starts: pl.Series, resolution: str | pl.Series, values: pl.Series, rows: pl.Series,
                unit: str, raw: pl.Series | None = None) -> pl.DataFrame:
    """The working frame :func:`finish_prices` takes, from UTC starts and exact decimal prices.

    ``raw`` is the price as written in the file (for the rounding message).
    """
    micro, rounded = to_micro_per_kwh(values, unit)
    res = resolution if isinstance(resolution, pl.Series) else pl.repeat(resolution, starts.len(), eager=True)
    return pl.DataFrame({
        "interval_start": starts, "resolution": res, "price_ueur_per_kwh": micro, "row": rows,
        "rounded": rounded, "raw": (raw if raw is not None else values).cast(pl.String),
    })


# --- jeroen.nl ------------------------------------------------------------------------------------


def _detect_jeroen(path: Path, head: str) -> bool:
    names = [c.strip().strip('"').lower() for c in first_line(head).split(";")]
    return "datum_utc" in names and "prijs_excl_belastingen" in names


def _read_jeroen(path: Path, options: ReadOptions) -> PriceImport:
    tz = options.tz or DEFAULT_TZ
    t = read_table(path, ";")
    need_columns(t, ["datum_utc", "prijs_excl_belastingen"], path, "jeroen.nl CSV")
    utc = parse_naive(t["datum_utc"], t["row"], "%Y-%m-%d %H:%M:%S", path, "datum_utc")
    utc = utc.dt.replace_time_zone("UTC")
    if "datum_nl" in t.columns:
        local = parse_naive(t["datum_nl"], t["row"], "%Y-%m-%d %H:%M:%S", path, "datum_nl")
        off = (utc.dt.convert_time_zone(tz).dt.replace_time_zone(None) != local).arg_true()
        if off.len():
            i = off[0]
            raise InputRejected(path, f"datum_nl {t['datum_nl'][i]} is not datum_utc {t['datum_utc'][i]} "
                                f"in {tz}", row=t["row"][i])
    values = price_decimals(t["prijs_excl_belastingen"], t["row"], path, "prijs_excl_belastingen")
    res = infer_resolution(utc, t["row"], path)
    frame = price_frame(utc, res, values, t["row"], "EUR/kWh", raw=t["prijs_excl_belastingen"])
    return finish_prices(frame, path, "jeroen-csv", [], "EUR/kWh", tz, zone="NL")


# --- generic ----------------------------------------------------------------------------------------

_TIME_NAMES = ("timestamp", "interval_start", "time")
_PRICE_UNITS = {"price_eur_per_mwh": "EUR/MWh", "eur_per_mwh": "EUR/MWh",
                "price_eur_per_kwh": "EUR/kWh", "eur_per_kwh": "EUR/kWh"}
_OFFSET = re.compile(r"(Z|[+-]\d{2}(:?\d{2})?)$", re.IGNORECASE)


def _generic_header(head: str) -> tuple[str, list[str]]:
    line = first_line(head)
    sep = ";" if ";" in line else ","
    return sep, [c.strip().strip('"').strip().lower() for c in line.split(sep)]


def _detect_generic(path: Path, head: str) -> bool:
    _, names = _generic_header(head)
    return any(n in names for n in _TIME_NAMES) and any(n in names for n in _PRICE_UNITS)


def _read_generic(path: Path, options: ReadOptions) -> PriceImport:
    sep, _ = _generic_header(read_text(path)[:65536])
    t = read_table(path, sep)
    t = t.rename({c: c.strip('"').strip().lower() for c in t.columns if c != "row"})
    time_col = next((n for n in _TIME_NAMES if n in t.columns), None)
    price_cols = [n for n in _PRICE_UNITS if n in t.columns]
    if time_col is None:
        raise InputRejected(path, f"no timestamp column (one of {list(_TIME_NAMES)})", row=1)
    if len(price_cols) != 1:
        raise InputRejected(path, f"need exactly one price column (one of {list(_PRICE_UNITS)}), "
                            f"found {price_cols or 'none'}", row=1)
    rows = t["row"]
    text = t[time_col].str.strip_chars()
    naive = (text.is_null() | ~text.str.contains(_OFFSET.pattern)).arg_true()
    if naive.len():
        raise InputRejected(path, f"{time_col} {text[naive[0]]!r} has no UTC offset; write it with an offset "
                            "or Z (e.g. 2025-01-01T00:00:00+01:00)", row=rows[naive[0]])
    utc = text.str.to_datetime(time_zone="UTC", strict=False, time_unit="us")
    bad = utc.is_null().arg_true()
    if bad.len():
        i = bad[0]
        raise InputRejected(path, f"{time_col} {text[i]!r} is not an ISO 8601 timestamp", row=rows[i])
    unit = _PRICE_UNITS[price_cols[0]]
    values = price_decimals(t[price_cols[0]], rows, path, price_cols[0])
    if "resolution" in t.columns:
        res = t["resolution"].str.strip_chars().str.to_uppercase().replace({"PT1H": PT60M})
        odd = (~res.is_in([PT15M, PT60M])).fill_null(True).arg_true()
        if odd.len():
            raise InputRejected(path, f"resolution {t['resolution'][odd[0]]!r} is not PT15M or PT60M",
                                row=rows[odd[0]])
    else:
        res = pl.repeat(infer_resolution(utc, rows, path), t.height, eager=True)
    step_s = res.replace_strict({PT15M: 900, PT60M: 3600}, return_dtype=pl.Int64)
    off = (utc.dt.epoch("s") % step_s != 0).arg_true()
    if off.len():
        i = off[0]
        raise InputRejected(path, f"{text[i]} is not the start of a {res[i]} interval", row=rows[i])
    frame = price_frame(utc, res, values, rows, unit, raw=t[price_cols[0]])
    return finish_prices(frame, path, "generic-csv", [], unit, options.tz or DEFAULT_TZ)


FORMATS: list[Format] = [
    Format("jeroen-csv", "prices", "jeroen.nl NL day-ahead CSV (datum_utc; EUR/kWh excl. taxes)",
           _detect_jeroen, _read_jeroen),
    Format("generic-csv", "prices", "generic price CSV: timestamp with offset + price_eur_per_mwh|kwh",
           _detect_generic, _read_generic),
]
