"""Price API responses saved as JSON: EnergyZero (REST and GraphQL), easyEnergy and mark-vis yearly files.

- ``energyzero-json``: the REST shape ``{"interval", "range", "base": [{start, end, price:
  {value}}], "base_with_vat", "all_in", "all_in_with_vat"}`` (interval 1 = 15 minutes,
  2 = hours) and the GraphQL shape ``{"data": {"energyMarketPrices": {"prices": [{from, till,
  energyPriceExcl, type}]}}}``. The stored price is the bare market price excl. VAT: ``base``
  (REST) or ``energyPriceExcl`` (GraphQL), both EUR/kWh, with no energy tax or purchasing
  cost. An error response (``{"code", "message"}`` or GraphQL ``errors``), an empty price
  list and gas prices (GraphQL ``type: Gas``; REST daily slots on the 06:00 gas day) are rejected.
- ``easyenergy-json``: ``{"providedAt", "prices": [{from, until, price, unit, granularity}]}``;
  ``from`` is naive Europe/Amsterdam time (7-digit fractional seconds) unless it carries an
  offset; ``price`` is EUR/kWh excl. VAT; granularity ``hour`` or ``quarter``. Gas (unit
  ``m3``, granularity ``day``) is rejected.
- ``markvis-json``: ``{"year", "count", "prices": [{"timestamp", "price"}]}``, naive
  Europe/Amsterdam hour starts, EUR/MWh; the repeated autumn hour appears twice with the same
  string and row order tells them apart (:func:`kwartier.timegrid.localize_naive`).

Numbers are read as exact decimals. Rows are the physical line of each array element (a
one-line file has every element on line 1, so messages also name the element, e.g. ``prices[17]``).
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path

import polars as pl

from kwartier.ingest.base import Format, InputRejected, PriceImport, ReadOptions, read_text
from kwartier.ingest.prices_csv import (
    finish_prices,
    infer_resolution,
    place_local,
    price_decimals,
    price_frame,
)
from kwartier.timegrid import DEFAULT_TZ, PT15M, PT60M, RESOLUTIONS

_OFFSET = r"(Z|[+-]\d{2}:?\d{2})$"
_decoder = json.JSONDecoder(parse_float=Decimal)


def _load(path: Path) -> tuple[object, str]:
    text = read_text(path)
    try:
        return json.loads(text, parse_float=Decimal), text
    except json.JSONDecodeError as exc:
        problem = f"not valid JSON ({exc.msg}); is the file truncated?"
        raise InputRejected(path, problem, row=exc.lineno) from None


def _element_lines(text: str, key: str, count: int) -> list[int | None]:
    """The physical line of each element of the one array under ``"key"`` (None where unsure)."""
    found = [m.end() for m in re.finditer(r'"' + re.escape(key) + r'"\s*:\s*\[', text)]
    if len(found) != 1:
        return [None] * count
    pos = last = found[0]
    line = text.count("\n", 0, pos) + 1
    lines: list[int | None] = []
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text) or text[pos] == "]":
            break
        line += text.count("\n", last, pos)
        lines.append(line)
        last = pos
        try:
            _, pos = _decoder.raw_decode(text, pos)
        except json.JSONDecodeError:
            return [None] * count
    return lines if len(lines) == count else [None] * count


def _items(path: Path, doc: object, key: str, what: str) -> list[dict[str, object]]:
    items = doc.get(key) if isinstance(doc, dict) else None
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise InputRejected(path, f"{what}: expected a list of objects under {key!r}")
    return items


def _column(path: Path, items: list[dict[str, object]], key: str, where: str, lines: list[int | None],
            number: bool = False) -> pl.Series:
    """One field of every element as text; a missing or wrongly typed value is rejected naming the element.

    A ``number`` may be a JSON number or a numeric string (checked later); ``null`` is an empty cell.
    """
    out = []
    for i, item in enumerate(items):
        value: object = item
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if number:
            ok = value is None or (isinstance(value, Decimal | int | str) and not isinstance(value, bool))
        else:
            ok = isinstance(value, str)
        if not ok:
            kind = "number" if number else "string"
            raise InputRejected(path, f"{where}[{i}].{key}: {value!r} is not a {kind}", row=lines[i])
        out.append("" if value is None else format(value, "f") if isinstance(value, Decimal) else str(value))
    return pl.Series(key, out, dtype=pl.String)


def _aware_utc(path: Path, text: pl.Series, where: str, lines: pl.Series) -> pl.Series:
    bad = (~text.str.contains(_OFFSET)).arg_true()
    if not bad.len():
        utc = text.str.to_datetime(time_zone="UTC", strict=False, time_unit="us")
        bad = utc.is_null().arg_true()
        if not bad.len():
            return utc
    i = bad[0]
    raise InputRejected(path, f"{where}[{i}]: {text[i]!r} is not an ISO 8601 time with an offset",
                        row=lines[i])


def _line_series(lines: list[int | None]) -> pl.Series:
    return pl.Series("row", lines, dtype=pl.Int64)


# --- EnergyZero -------------------------------------------------------------------------------------


def _detect_energyzero(path: Path, head: str) -> bool:
    if '"energyMarketPrices"' in head:
        return True
    if re.search(r'"interval"\s*:\s*\d', head) and re.search(r'"base"\s*:\s*\[', head):
        return True
    return bool(re.match(r'\s*\{\s*"code"\s*:\s*\d+\s*,\s*"message"\s*:', head)) and '"details"' in head


def _read_energyzero(path: Path, options: ReadOptions) -> PriceImport:
    doc, text = _load(path)
    if not isinstance(doc, dict):
        raise InputRejected(path, "EnergyZero response: expected a JSON object")
    if "message" in doc and "code" in doc and "base" not in doc:
        raise InputRejected(path, f"an EnergyZero error response (code {doc['code']}): {doc['message']}")
    if doc.get("errors"):
        msgs = "; ".join(str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in doc["errors"])
        raise InputRejected(path, f"an EnergyZero GraphQL error response: {msgs}")
    if "data" in doc:
        return _read_graphql(path, doc, text, options)
    if "base" in doc:
        return _read_rest(path, doc, text, options)
    raise InputRejected(path, "EnergyZero response: neither a REST ('base') nor a GraphQL ('data') shape")


def _read_rest(path: Path, doc: dict[str, object], text: str, options: ReadOptions) -> PriceImport:
    items = _items(path, doc, "base", "EnergyZero REST response")
    if not items:
        raise InputRejected(path, "an EnergyZero REST response without prices (empty 'base' list)")
    lines = _element_lines(text, "base", len(items))
    rows = _line_series(lines)
    start = _aware_utc(path, _column(path, items, "start", "base", lines), "base", rows)
    end = _aware_utc(path, _column(path, items, "end", "base", lines), "base", rows)
    interval = doc.get("interval")
    res = {1: PT15M, 2: PT60M}.get(interval) if type(interval) is int else None  # not [], {}, true or 1.0
    if res is None:
        span = end[0] - start[0]
        gas = span.total_seconds() == 86400 and start[0].hour in (4, 5)
        raise InputRejected(path, f"EnergyZero REST response with interval {doc.get('interval')!r} "
                            f"(slots of {span.total_seconds() / 3600:g} h from {start[0]:%Y-%m-%dT%H:%MZ}): "
                            + ("daily slots on the 06:00 gas day, i.e. gas prices; only electricity "
                               "prices are imported" if gas else "only interval 1 (15 min) and 2 (hour) "
                               "are imported"))
    wrong = ((end - start) != RESOLUTIONS[res]).arg_true()
    if wrong.len():
        i = wrong[0]
        raise InputRejected(path, f"base[{i}] runs {start[i]:%H:%M}..{end[i]:%H:%M}Z, not one {res} interval "
                            f"as interval {doc.get('interval')} says", row=lines[i])
    raw = _column(path, items, "price.value", "base", lines, number=True)
    values = price_decimals(raw, rows, path, "base price.value")
    frame = price_frame(start, res, values, rows, "EUR/kWh", raw=raw)
    return finish_prices(frame, path, "energyzero-json", [], "EUR/kWh", options.tz or DEFAULT_TZ, zone="NL")


def _read_graphql(path: Path, doc: dict[str, object], text: str, options: ReadOptions) -> PriceImport:
    data = doc.get("data")
    market = data.get("energyMarketPrices") if isinstance(data, dict) else None
    if not isinstance(market, dict):
        raise InputRejected(path, "EnergyZero GraphQL response without data.energyMarketPrices")
    items = _items(path, market, "prices", "EnergyZero GraphQL response")
    if not items:
        raise InputRejected(path, "an EnergyZero GraphQL response without prices (empty 'prices' list, "
                            f"averageExcl {market.get('averageExcl')}): nothing published for that period")
    kinds = {str(i.get("type")) for i in items}
    if kinds != {"Electricity"}:
        what = "gas prices" if "Gas" in kinds else f"prices of type {sorted(kinds)}"
        raise InputRejected(path, f"an EnergyZero GraphQL response with {what}; "
                            "only electricity prices are imported")
    lines = _element_lines(text, "prices", len(items))
    rows = _line_series(lines)
    start = _aware_utc(path, _column(path, items, "from", "prices", lines), "prices", rows)
    till = _aware_utc(path, _column(path, items, "till", "prices", lines), "prices", rows)
    res = (till - start).replace_strict({RESOLUTIONS[PT15M]: PT15M, RESOLUTIONS[PT60M]: PT60M}, default=None,
                                        return_dtype=pl.String)
    wrong = res.is_null().arg_true()
    if wrong.len():
        i = wrong[0]
        raise InputRejected(path, f"prices[{i}] runs {start[i]:%Y-%m-%dT%H:%MZ}..{till[i]:%H:%MZ}: "
                            "not a 15- or 60-minute interval", row=lines[i])
    raw = _column(path, items, "energyPriceExcl", "prices", lines, number=True)
    values = price_decimals(raw, rows, path, "energyPriceExcl")
    frame = price_frame(start, res, values, rows, "EUR/kWh", raw=raw)
    return finish_prices(frame, path, "energyzero-json", [], "EUR/kWh", options.tz or DEFAULT_TZ, zone="NL")


# --- easyEnergy ----------------------------------------------------------------------------------------

_GRANULARITY = {"hour": PT60M, "quarter": PT15M}


def _detect_easyenergy(path: Path, head: str) -> bool:
    return '"providedAt"' in head and bool(re.search(r'"prices"\s*:\s*\[', head))


def _read_easyenergy(path: Path, options: ReadOptions) -> PriceImport:
    tz = options.tz or DEFAULT_TZ
    doc, text = _load(path)
    items = _items(path, doc, "prices", "easyEnergy response")
    if not items:
        raise InputRejected(path, "an easyEnergy response without prices (empty 'prices' list)")
    lines = _element_lines(text, "prices", len(items))
    rows = _line_series(lines)
    units = _column(path, items, "unit", "prices", lines)
    grains = _column(path, items, "granularity", "prices", lines)
    other = ((units != "kWh") | ~grains.is_in(list(_GRANULARITY))).arg_true()
    if other.len():
        i = other[0]
        what = "gas prices (per m3)" if units[i] == "m3" else f"prices per {units[i]} by {grains[i]}"
        raise InputRejected(path, f"prices[{i}]: {what}; only electricity prices per kWh by hour or quarter "
                            "are imported", row=lines[i])
    start_text = _column(path, items, "from", "prices", lines).str.strip_chars()
    aware = start_text.str.contains(_OFFSET)
    anomalies = []
    if aware.all():
        start = _aware_utc(path, start_text, "prices", rows)
    elif not aware.any():
        naive = start_text.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f", strict=False, time_unit="us")
        bad = naive.is_null().arg_true()
        if bad.len():
            raise InputRejected(path, f"prices[{bad[0]}].from {start_text[bad[0]]!r} is not a timestamp",
                                row=lines[bad[0]])
        start, anomalies = place_local(naive, rows, tz)
    else:
        i = aware.arg_min()
        raise InputRejected(path, f"prices[{i}].from mixes naive and offset times", row=lines[i])
    raw = _column(path, items, "price", "prices", lines, number=True)
    values = price_decimals(raw, rows, path, "price")
    res = grains.replace_strict(_GRANULARITY, return_dtype=pl.String)
    frame = price_frame(start, res, values, rows, "EUR/kWh", raw=raw)
    frame = frame.filter(pl.col("interval_start").is_not_null())
    return finish_prices(frame, path, "easyenergy-json", anomalies, "EUR/kWh", tz, zone="NL")


# --- mark-vis ---------------------------------------------------------------------------------------------


def _detect_markvis(path: Path, head: str) -> bool:
    return (bool(re.search(r'"year"\s*:\s*\d{4}', head)) and '"count"' in head
            and bool(re.search(r'"prices"\s*:\s*\[\s*(\]|\{\s*"(timestamp|price)")', head)))


def _read_markvis(path: Path, options: ReadOptions) -> PriceImport:
    tz = options.tz or DEFAULT_TZ
    doc, text = _load(path)
    items = _items(path, doc, "prices", "mark-vis price file")
    year, count = (doc.get("year"), doc.get("count")) if isinstance(doc, dict) else (None, None)
    if type(year) is not int or not 1900 <= year <= 2200:
        raise InputRejected(path, f"the file's year {year!r} is not a year such as 2023")
    if count != len(items):
        raise InputRejected(path, f"the file says count {count} but holds {len(items)} prices; truncated?")
    if not items:
        raise InputRejected(path, "a mark-vis file without prices")
    lines = _element_lines(text, "prices", len(items))
    rows = _line_series(lines)
    stamp = _column(path, items, "timestamp", "prices", lines).str.strip_chars()
    naive = stamp.str.to_datetime("%Y-%m-%dT%H:%M:%S", strict=False, time_unit="us")
    bad = (naive.is_null() | (naive.dt.year() != year)).arg_true()
    if bad.len():
        i = bad[0]
        raise InputRejected(path, f"prices[{i}].timestamp {stamp[i]!r} is not a local time in "
                            f"{year} like 2023-01-01T00:00:00", row=lines[i])
    raw = _column(path, items, "price", "prices", lines, number=True)
    values = price_decimals(raw, rows, path, "price")
    start, anomalies = place_local(naive, rows, tz, raw)
    res = infer_resolution(start, rows, path)
    frame = price_frame(start, res, values, rows, "EUR/MWh", raw=raw)
    frame = frame.filter(pl.col("interval_start").is_not_null())
    return finish_prices(frame, path, "markvis-json", anomalies, "EUR/MWh", tz, zone="NL")


FORMATS: list[Format] = [
    Format("energyzero-json", "prices", "EnergyZero API response (REST or GraphQL), price excl. VAT, EUR/kWh",
           _detect_energyzero, _read_energyzero),
    Format("easyenergy-json", "prices", "easyEnergy API response, price excl. VAT, EUR/kWh",
           _detect_easyenergy, _read_easyenergy),
    Format("markvis-json", "prices", "mark-vis yearly NL day-ahead JSON (local hour starts, EUR/MWh)",
           _detect_markvis, _read_markvis),
]
