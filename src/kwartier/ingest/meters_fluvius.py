"""Fluvius (Belgian DSO) quarter-hour CSV export: per-register rows pivoted to import/export per quarter.

The "Mijn Fluvius" download (``kwartiertotalen``) is ``;``-separated, UTF-8 with a BOM, decimal comma,
one row per quarter hour *and register*::

    From (date);From (time);Until (date);Until (time);EAN code;Meter;Meter type;Register;Volume;Unit;
    Validation status;Description
    29/10/2023;02:45:00;29/10/2023;02:00:00;="5414...";1SAG...;Digital meter;Offtake Night;0,295;kWh;Read;

The Dutch-language variant (``Van (datum)``/``Van datum``, ``Van (tijdstip)``, ``Tot (datum)``,
``Tot (tijdstip)``, ``EAN``/``EAN-code``, ``Eenheid``, ``Validatiestatus``; registers ``Afname``/``Injectie``;
dates ``dd-mm-yyyy``) is read the same way.

Rules:

- Registers: ``Offtake``/``Afname`` Day and Night add up to ``import_wh``; ``Injection``/``Injectie`` Day and
  Night to ``export_wh``. A file without any injection rows is an offtake-only connection (export 0).
- Time: ``From`` is the interval start and is authoritative, local wall-clock time in Europe/Brussels
  (``options.tz`` overrides). The repeated autumn hour is told apart by row order per direction
  (first occurrence = summer time, second = winter time, :func:`~kwartier.timegrid.localize_naive`);
  a non-existent spring time -> ``DST_PHANTOM``, row dropped.
- ``Until`` is only checked: it must lie 15 minutes after ``From`` on the wall clock, or be the local end
  of the quarter across a DST change, and never before ``From``. Otherwise the row is reported as
  ``TIME_CORRECTED`` (``From`` kept). The real file's first ``02:45`` on the autumn night has ``Until``
  ``02:00``: the correct winter-time end of the summer-time quarter, but earlier than ``From`` on the
  wall clock, so it is reported.
- ``Validation status``: ``Estimated``/``Geschat`` (any text containing "estim" or "geschat") ->
  status ``estimated``; every other value (``Read``, ``Uitgelezen``, ``Gemeten``, ``Validated``,
  ``Gevalideerd``, ``No consumption``, ``Geen verbruik``) -> ``actual``. A quarter is estimated when any
  of its register rows is.
- An empty ``Volume`` (status ``No consumption``/``Geen verbruik`` in the real files) -> ``NO_DATA``:
  the quarter is not imported (a missing value is not a zero).
- Identical repeated rows -> ``DUPLICATE`` (kept once); conflicting ones -> rejected; missing quarters
  -> ``GAP``; fractions of a Wh -> ``ENERGY_ROUNDED`` (carry rounding).
- The EAN (``="..."`` unwrapped) becomes ``ReadingImport.connection``; several EANs -> rejected.

Rejected (naming the row): a missing column, an unparseable date/time, an unknown register, a unit
other than kWh (e.g. a gas export in m³), a non-numeric or negative volume, an hourly/daily export.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import polars as pl

from kwartier.ingest.base import (
    DST_PHANTOM,
    DUPLICATE,
    ENERGY_ROUNDED,
    NO_DATA,
    READING_SCHEMA,
    TIME_CORRECTED,
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
from kwartier.ingest.textio import header_fields, localize, parse_datetimes, read_csv_table, require_columns
from kwartier.timegrid import PT15M, QUARTER, iso_utc

FORMAT_NAME = "fluvius-csv"
DEFAULT_TZ = "Europe/Brussels"

#: Normalised header name (lower case, no brackets or dashes) -> our key; English and Dutch exports.
_HEADER_KEYS = {
    "from date": "from_date",
    "van datum": "from_date",
    "from time": "from_time",
    "van tijdstip": "from_time",
    "until date": "until_date",
    "to date": "until_date",
    "tot datum": "until_date",
    "until time": "until_time",
    "to time": "until_time",
    "tot tijdstip": "until_time",
    "ean code": "ean",
    "ean": "ean",
    "register": "register",
    "volume": "volume",
    "unit": "unit",
    "eenheid": "unit",
    "validation status": "status",
    "validatiestatus": "status",
}
_REQUIRED = ("from_date", "from_time", "register", "volume", "unit")
_IMPORT_WORDS = ("offtake", "afname")
_EXPORT_WORDS = ("injection", "injectie")
_ESTIMATED = "(?i)estim|geschat"


def _normalise(name: str) -> str:
    return " ".join(re.sub(r"[()\-_]", " ", name.strip().strip('"').casefold()).split())


def detect(path: Path, head: str) -> bool:
    """A Fluvius export: a ``;`` header with From/Van date and time, Register, Volume and Unit/Eenheid."""
    keys = {_HEADER_KEYS.get(_normalise(c)) for c in header_fields(head, ";")}
    return all(k in keys for k in _REQUIRED)


def _local_naive(frame: pl.DataFrame, date_col: str, time_col: str, path: Path) -> pl.Series:
    """``dd/mm/yyyy`` (or ``dd-mm-yyyy``) plus ``HH:MM[:SS]`` as a naive local datetime."""
    date = frame[date_col].str.strip_chars().str.replace_all("-", "/", literal=True)
    text = date + " " + frame[time_col].str.strip_chars()
    return parse_datetimes(frame, text, ("%d/%m/%Y %H:%M:%S", "%d/%m/%Y %H:%M"), path, "date/time",
                           "dd/mm/yyyy HH:MM:SS", shown=[date_col, time_col])


def _prepare(frame: pl.DataFrame, path: Path) -> tuple[pl.DataFrame, str | None]:
    """Typed columns: naive from/until, direction, Decimal kWh volume, estimated flag; and the EAN."""
    register = frame["register"].str.strip_chars().str.to_lowercase()
    is_import = pl.any_horizontal([register.str.starts_with(w) for w in _IMPORT_WORDS])
    is_export = pl.any_horizontal([register.str.starts_with(w) for w in _EXPORT_WORDS])
    direction = pl.select(
        pl.when(is_import).then(pl.lit("import")).when(is_export).then(pl.lit("export"))
    ).to_series()
    unknown = frame.filter(direction.is_null())
    if unknown.height:
        raise InputRejected(
            path,
            f"unknown register {unknown['register'][0]!r} (expected Offtake/Afname or Injection/Injectie)",
            row=unknown["row"][0],
        )
    not_kwh = frame.filter(frame["unit"].str.strip_chars().str.to_lowercase() != "kwh")
    if not_kwh.height:
        raise InputRejected(
            path, f"unit {not_kwh['unit'][0]!r} is not kWh (a gas export?)", row=not_kwh["row"][0]
        )
    volume = parse_decimal_column(frame, "volume", path)
    negative = frame.filter(volume < 0)
    if negative.height:
        raise InputRejected(path, f"volume {negative['volume'][0]} kWh is negative", row=negative["row"][0])
    no_status = pl.Series([None] * frame.height, dtype=pl.String)
    status = frame["status"] if "status" in frame.columns else no_status
    ean = None
    if "ean" in frame.columns:
        eans = frame["ean"].str.strip_chars().str.strip_chars('="').drop_nulls().unique(maintain_order=True)
        if eans.len() > 1:
            other = frame.filter(frame["ean"].str.strip_chars().str.strip_chars('="') == eans[1])
            raise InputRejected(
                path,
                f"the file holds several EAN codes ({eans[0]}, {eans[1]}); import one connection per file",
                row=other["row"][0],
            )
        ean = eans[0] if eans.len() else None
    out = frame.select("row", "register").with_columns(
        from_naive=_local_naive(frame, "from_date", "from_time", path),
        until_naive=(
            _local_naive(frame, "until_date", "until_time", path)
            if "until_date" in frame.columns and "until_time" in frame.columns
            else pl.lit(None, dtype=pl.Datetime("us"))
        ),
        direction=direction,
        volume=volume,
        status_text=status,
        estimated=status.fill_null("").str.contains(_ESTIMATED),
    )
    return out, ean


def _localize(frame: pl.DataFrame, tz: str, path: Path) -> pl.DataFrame:
    """Add ``utc`` and ``phantom``: the repeated autumn hour is resolved by row order per direction."""
    parts = []
    for direction in ("import", "export"):
        sub = frame.filter(pl.col("direction") == direction)
        if sub.height:
            lz = localize(sub["from_naive"], tz, path)
            parts.append(sub.with_columns(utc=lz.utc, phantom=lz.phantom))
    return pl.concat(parts).sort("row")


def _until_anomalies(frame: pl.DataFrame, tz: str) -> list[Anomaly]:
    """``TIME_CORRECTED`` for rows whose ``Until`` is not 15 minutes after ``From`` (``From`` is kept)."""
    checked = frame.filter(pl.col("until_naive").is_not_null()).with_columns(
        local_end=(pl.col("utc") + QUARTER).dt.convert_time_zone(tz).dt.replace_time_zone(None),
    )
    until = pl.col("until_naive")
    bad = checked.filter(
        ((until != pl.col("from_naive") + QUARTER) & (until != pl.col("local_end")))
        | (until <= pl.col("from_naive"))
    )
    out = []
    for r in bad.iter_rows(named=True):
        across_dst = r["until_naive"] == r["local_end"]
        why = (
            "it is the local end of this quarter across the DST change, but lies before From on the "
            "wall clock"
            if across_dst
            else "it is not the end of a 15-minute interval"
        )
        out.append(
            Anomaly(
                TIME_CORRECTED,
                r["utc"],
                r["row"],
                f"{r['register']}: Until {r['until_naive']:%d/%m/%Y %H:%M} after From "
                f"{r['from_naive']:%d/%m/%Y %H:%M} ({why}); From is authoritative: interval "
                f"{iso_utc(r['utc'])} + 15 min",
            )
        )
    return out


def _no_data(frame: pl.DataFrame) -> tuple[pl.DataFrame, list[Anomaly]]:
    """Quarters with an empty volume, or without a row for a direction the file has, are not imported."""
    directions = frame["direction"].unique().to_list()
    per_quarter = frame.group_by("utc").agg(
        pl.col("row").sort().alias("rows"),
        pl.col("volume").is_null().any().alias("empty"),
        pl.col("status_text").filter(pl.col("volume").is_null()).first().alias("why"),
        *[(pl.col("direction") == d).any().alias(d) for d in directions],
    )
    bad = per_quarter.filter(pl.col("empty") | ~pl.all_horizontal(directions)).sort("utc")
    anomalies = [
        Anomaly(
            NO_DATA,
            r["utc"],
            r["rows"][0],
            (f"no volume (status {r['why']!r})" if r["empty"] else "a register row is missing")
            + f" in row(s) {', '.join(map(str, r['rows']))}; quarter not imported",
        )
        for r in bad.iter_rows(named=True)
    ]
    return frame.filter(~pl.col("utc").is_in(bad["utc"].implode())), anomalies


def read(path: Path, options: ReadOptions) -> ReadingImport:
    """Read a Fluvius quarter-hour export into quarter-hour readings (local time ``options.tz``)."""
    tz = options.tz or DEFAULT_TZ
    table = read_csv_table(path, ";")
    raw = table.frame.rename({c: _HEADER_KEYS[_normalise(c)] for c in table.columns if _normalise(c) in _HEADER_KEYS})
    require_columns(path, raw.columns, _REQUIRED, table.header_row)
    frame, ean = _prepare(raw, path)
    lengths = frame.filter(pl.col("until_naive").is_not_null()).select(
        (pl.col("until_naive") - pl.col("from_naive")).alias("d"), "row"
    )
    if lengths.height and (lengths["d"] == timedelta(minutes=15)).sum() * 2 < lengths.height:
        raise InputRejected(
            path,
            f"intervals are {lengths['d'].mode()[0]} long; only quarter-hour exports "
            "(kwartiertotalen) are read",
            row=lengths["row"][0],
        )
    frame = _localize(frame, tz, path)
    anomalies = [
        Anomaly(
            DST_PHANTOM,
            None,
            r["row"],
            f"{r['register']} at {r['from_naive']:%d/%m/%Y %H:%M} does not "
            f"exist in {tz} (spring forward); row dropped",
        )
        for r in frame.filter(pl.col("phantom")).iter_rows(named=True)
    ]
    frame = frame.filter(~pl.col("phantom"))
    off_grid = frame.filter(pl.col("utc").dt.epoch("s") % 900 != 0)
    if off_grid.height:
        raise InputRejected(
            path, f"From {off_grid['from_naive'][0]} is not on the quarter-hour grid", row=off_grid["row"][0]
        )
    anomalies += _until_anomalies(frame, tz)
    kept = []
    for register in frame["register"].unique(maintain_order=True):
        sub, dups = duplicate_rows(frame.filter(pl.col("register") == register), "utc", ["volume"], path)
        kept.append(sub)
        anomalies += [Anomaly(DUPLICATE, a.at, a.row, f"{register}: {a.detail}") for a in dups]
    frame, no_data = _no_data(pl.concat(kept))
    anomalies += no_data
    if not frame.height:
        return ReadingImport(empty(READING_SCHEMA), FORMAT_NAME, anomalies, connection=ean)
    quarters = (
        frame.group_by("utc")
        .agg(
            pl.col("row").min(),
            pl.col("volume").filter(pl.col("direction") == "import").sum().alias("import_kwh"),
            pl.col("volume").filter(pl.col("direction") == "export").sum().alias("export_kwh"),
            pl.col("estimated").any(),
        )
        .sort("utc")
        .rename({"utc": "interval_start"})
    )
    import_wh, import_rounded = kwh_to_wh(quarters["import_kwh"].cast(pl.Decimal(38, 9)))
    export_wh, export_rounded = kwh_to_wh(quarters["export_kwh"].cast(pl.Decimal(38, 9)))
    if import_rounded or export_rounded:
        anomalies.append(
            Anomaly(
                ENERGY_ROUNDED,
                None,
                None,
                "volumes with fractions of a Wh were rounded with carry, so the totals are kept",
            )
        )
    anomalies += gap_anomalies(quarters["interval_start"], PT15M, "quarter", quarters["row"])
    out = pl.DataFrame(
        {
            "interval_start": quarters["interval_start"],
            "resolution": pl.Series([PT15M] * quarters.height, dtype=pl.String),
            "import_wh": import_wh,
            "export_wh": export_wh,
            "status": pl.select(
                pl.when(quarters["estimated"]).then(pl.lit("estimated")).otherwise(pl.lit("actual"))
            ).to_series(),
        }
    )
    return ReadingImport(out, FORMAT_NAME, anomalies, connection=ean)


FORMATS: list[Format] = [
    Format(
        name=FORMAT_NAME,
        kind="readings",
        description="Fluvius (BE) quarter-hour export, English or Dutch headers, one row per register",
        detect=detect,
        read=read,
    )
]
