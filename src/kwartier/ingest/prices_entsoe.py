"""ENTSO-E Transparency day-ahead prices: the API's A44 XML, the website's CSV export, a BE re-export.

``entsoe-xml``: a ``Publication_MarketDocument`` of type A44 (any ``publicationdocument:7:x``
schema). Every ``TimeSeries`` / ``Period`` is read; ``resolution`` PT15M or PT60M; curveType
A01 (every position given: an absent one is a gap) or A03 (an absent position repeats the
previous given position's value up to the next given one or the end of the period). Prices must
be ``EUR`` per ``MWH``; the bidding zone comes from ``in_Domain.mRID`` (10YNL----------L -> NL).
Where an hourly and a 15-minute series cover the same time, the 15-minute prices win (OVERLAP).
A Point whose position lies beyond its Period (e.g. position 3 in a 2-hour PT60M period) is
dropped and reported as OUT_OF_PERIOD at the interval it would have had, naming its line, the
period and the value; it does not take part in the A03 filling. A repeated position or a period
that is not a whole number of intervals is rejected naming its line. Other ENTSO-E documents
(A75, A69, A68, ...) and the ``Acknowledgement_MarketDocument`` ("No matching data found") are
rejected saying what they are. The XML is read with expat and any DTD is refused, so no entity
is ever expanded or fetched.

``entsoe-csv``: ``"MTU (CET/CEST)","Day-ahead Price [EUR/MWh]","Currency","BZN|NL"`` with
``dd.mm.yyyy HH:MM - dd.mm.yyyy HH:MM`` local (Europe/Amsterdam unless ``ReadOptions.tz``).
The MTU start is placed with :func:`kwartier.timegrid.localize_naive`: the phantom spring row
is dropped (DST_PHANTOM), a repeated autumn hour listed once is the summer-time hour and the
winter-time hour is reported missing (DST_REPEAT_MISSING). ``n/e`` or empty prices: NO_DATA.

``rigaux-csv``: the BE day-ahead prices of Rigaux, Hamels & Ovaere (2025), taken from the
Transparency platform and saved by Stata: ``time,DAM_price``, ``01jan2022 00:00:00``
Europe/Brussels (unless ``ReadOptions.tz``), EUR/kWh with float noise (rounded to the
micro-euro: PRICE_ROUNDED). The spring rows at a non-existent 02:00 are dropped (DST_PHANTOM),
the doubled autumn 02:00 is read by row order, empty (NaN) prices are NO_DATA.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from xml.parsers import expat

import polars as pl

from kwartier.ingest.base import OUT_OF_PERIOD, Anomaly, Format, InputRejected, PriceImport, ReadOptions
from kwartier.ingest.prices_csv import (
    finish_prices,
    first_line,
    need_columns,
    parse_naive,
    place_local,
    price_decimals,
    price_frame,
    read_table,
)
from kwartier.timegrid import DEFAULT_TZ, PT15M, PT60M, RESOLUTIONS, quarters_in_local_day

_ENTSOE_ROOT = re.compile(  # an XML document whose root is an ENTSO-E *_MarketDocument
    r'\s*(<\?xml[^>]*\?>\s*)?(<!--.*?-->\s*)*<([\w.-]+:)?\w+_MarketDocument\b[^>]*'
    r'xmlns(:[\w.-]+)?\s*=\s*["\']urn:iec62325\.351:tc57wg16:451-', re.DOTALL)
_PUBLICATION_NS = "urn:iec62325.351:tc57wg16:451-3:publicationdocument:7:"

#: ENTSO-E bidding-zone EIC codes -> short names (an unknown code is kept as the zone).
ZONES = {
    "10YNL----------L": "NL", "10YBE----------2": "BE", "10Y1001A1001A82H": "DE-LU",
    "10Y1001A1001A63L": "DE-AT-LU", "10YFR-RTE------C": "FR", "10YAT-APG------L": "AT",
    "10YCH-SWISSGRIDZ": "CH", "10YPL-AREA-----S": "PL", "10YCZ-CEPS-----N": "CZ",
    "10YDK-1--------W": "DK1", "10YDK-2--------M": "DK2", "10YES-REE------0": "ES",
    "10YPT-REN------W": "PT", "10YFI-1--------U": "FI", "10YHU-MAVIR----U": "HU",
    "10YSK-SEPS-----K": "SK", "10YSI-ELES-----O": "SI", "10YHR-HEP------M": "HR",
    "10YRO-TEL------P": "RO", "10YCA-BULGARIA-R": "BG", "10YGR-HTSO-----Y": "GR",
    "10Y1001A1001A39I": "EE", "10YLV-1001A00074": "LV", "10YLT-1001A0008Q": "LT",
    "10YNO-1--------2": "NO1", "10YNO-2--------T": "NO2", "10YNO-3--------J": "NO3",
    "10YNO-4--------9": "NO4", "10Y1001A1001A48H": "NO5", "10Y1001A1001A44P": "SE1",
    "10Y1001A1001A45N": "SE2", "10Y1001A1001A46L": "SE3", "10Y1001A1001A47J": "SE4",
}
#: Document types a user may fetch by mistake, for the rejection message.
DOCUMENT_TYPES = {
    "A09": "finalised schedule", "A11": "aggregated energy data report", "A25": "allocation result",
    "A44": "day-ahead prices", "A61": "estimated net transfer capacity", "A65": "system total load",
    "A68": "installed generation capacity per type", "A69": "wind and solar generation forecast",
    "A70": "load forecast margin", "A71": "generation forecast", "A72": "reservoir filling information",
    "A73": "actual generation per generation unit", "A74": "wind and solar generation",
    "A75": "actual generation per production type", "A85": "imbalance prices", "A86": "imbalance volume",
}
_RESOLUTION_ALIASES = {"PT15M": PT15M, "PT60M": PT60M, "PT1H": PT60M}


@dataclass
class _Node:
    """An XML element: local tag name, namespace, 1-based line of its start tag, text and children."""

    tag: str
    ns: str
    line: int
    text: str = ""
    children: list[_Node] = field(default_factory=list)

    def all(self, tag: str) -> list[_Node]:
        return [c for c in self.children if c.tag == tag]

    def find(self, path: str) -> _Node | None:
        node: _Node | None = self
        for part in path.split("/"):
            node = next((c for c in node.children if c.tag == part), None) if node else None
        return node

    def text_of(self, path: str) -> str | None:
        node = self.find(path)
        return node.text if node is not None else None


def _parse_xml(path: Path) -> _Node:
    """The document as a :class:`_Node` tree, with line numbers; a DTD or entity is refused."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputRejected(path, f"cannot read the file: {exc.strerror or exc}") from None
    parser = expat.ParserCreate(namespace_separator=" ")
    top = _Node("", "", 0)
    stack, texts = [top], [[]]

    def start(name: str, _attrs: dict[str, str]) -> None:
        ns, _, local = name.rpartition(" ")
        node = _Node(local, ns, parser.CurrentLineNumber)
        stack[-1].children.append(node)
        stack.append(node)
        texts.append([])

    def end(_name: str) -> None:
        stack.pop().text = "".join(texts.pop()).strip()

    def refuse(*_args: object) -> None:
        raise InputRejected(path, "the XML declares a DTD or entities; refused for safety",
                            row=parser.CurrentLineNumber)

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = lambda data: texts[-1].append(data)
    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    try:
        parser.Parse(data, True)
    except expat.ExpatError as exc:
        problem = f"not well-formed XML: {expat.ErrorString(exc.code)}"
        raise InputRejected(path, problem, row=exc.lineno) from None
    if not top.children:
        raise InputRejected(path, "the XML has no root element")
    return top.children[0]


def _detect_xml(path: Path, head: str) -> bool:
    return bool(_ENTSOE_ROOT.match(head))


def _reject_other_document(path: Path, root: _Node) -> None:
    """Reject anything but an A44 publication document, saying what the document is."""
    if not root.tag.endswith("_MarketDocument"):
        raise InputRejected(path, f"not an ENTSO-E market document (root <{root.tag}>)", row=root.line)
    if root.tag == "Acknowledgement_MarketDocument":
        reasons = "; ".join(f"reason {r.text_of('code')}: {r.text_of('text')}" for r in root.all("Reason"))
        raise InputRejected(path, f"an ENTSO-E acknowledgement, not prices ({reasons or 'no reason given'})",
                            row=root.line)
    doc_type = root.text_of("type")
    if root.tag != "Publication_MarketDocument" or doc_type != "A44":
        what = DOCUMENT_TYPES.get(doc_type or "", "an unknown document type")
        raise InputRejected(path, f"an ENTSO-E {root.tag} of type {doc_type} ({what}), "
                            "not day-ahead prices (A44)", row=root.line)
    if not root.ns.startswith(_PUBLICATION_NS):
        raise InputRejected(path, f"unsupported schema {root.ns!r}; expected {_PUBLICATION_NS}x",
                            row=root.line)


def _utc(path: Path, node: _Node | None, what: str, line: int) -> datetime:
    text = node.text if node is not None else ""
    try:
        ts = datetime.fromisoformat(text)
    except ValueError:
        ts = None
    if ts is None or ts.tzinfo is None:
        raise InputRejected(path, f"{what} {text!r} is not a UTC timestamp", row=node.line if node else line)
    return ts


def _series_meta(path: Path, ts: _Node) -> tuple[str, str]:
    """Check a TimeSeries' currency and unit; return its zone EIC and curve type."""
    currency = ts.text_of("currency_Unit.name")
    unit = ts.text_of("price_Measure_Unit.name")
    if currency != "EUR":
        raise InputRejected(path, f"prices in {currency}; only EUR prices are imported", row=ts.line)
    if unit != "MWH":
        raise InputRejected(path, f"prices per {unit}; expected per MWH", row=ts.line)
    eic = ts.text_of("in_Domain.mRID") or ts.text_of("out_Domain.mRID")
    if not eic:
        raise InputRejected(path, "a TimeSeries without in_Domain.mRID (bidding zone)", row=ts.line)
    curve = ts.text_of("curveType") or "A01"
    if curve not in ("A01", "A03"):
        raise InputRejected(path, f"curveType {curve} is not supported (A01 or A03)", row=ts.line)
    return eic, curve


def _period_frame(path: Path, period: _Node, curve: str) -> tuple[pl.DataFrame, list[Anomaly]]:
    """One Period as (interval_start, resolution, amount, row) with A03 positions filled.

    Also returns an OUT_OF_PERIOD anomaly for each Point beyond the period, which is dropped.
    """
    start = _utc(path, period.find("timeInterval/start"), "period start", period.line)
    end = _utc(path, period.find("timeInterval/end"), "period end", period.line)
    res_node = period.find("resolution")
    res = _RESOLUTION_ALIASES.get(res_node.text if res_node else "")
    if res is None:
        raise InputRejected(path, f"resolution {res_node.text if res_node else None!r} is not supported "
                            "(PT15M or PT60M)", row=res_node.line if res_node else period.line)
    step = RESOLUTIONS[res]
    if end <= start or (end - start) % step:
        raise InputRejected(path, f"period {start:%Y-%m-%dT%H:%MZ}..{end:%Y-%m-%dT%H:%MZ} is not a whole "
                            f"number of {res} intervals", row=period.line)
    n = (end - start) // step
    positions, amounts, lines, outside = [], [], [], []
    for point in period.all("Point"):
        pos = point.text_of("position") or ""
        if not pos.isdigit() or int(pos) < 1:
            raise InputRejected(path, f"Point position {pos!r} is not a positive integer", row=point.line)
        amount = point.find("price.amount")
        if amount is None:
            raise InputRejected(path, "a Point without price.amount", row=point.line)
        if int(pos) > n:  # beyond its period: dropped, not moved into the next one
            outside.append(Anomaly(OUT_OF_PERIOD, start + (int(pos) - 1) * step, point.line,
                                   f"Point position {pos} lies outside its period {start:%Y-%m-%dT%H:%MZ}.."
                                   f"{end:%Y-%m-%dT%H:%MZ} ({n} x {res}); its price {amount.text} EUR/MWh "
                                   "was dropped"))
            continue
        positions.append(int(pos))
        amounts.append(amount.text)
        lines.append(point.line)
    pts = pl.DataFrame({"position": positions, "amount": amounts, "row": lines},
                       schema={"position": pl.Int64, "amount": pl.String, "row": pl.Int64})
    dup = pts.filter(pl.col("position").is_duplicated()).sort("position", "row")
    if dup.height:
        raise InputRejected(path, f"position {dup['position'][0]} appears twice in one Period",
                            rows=dup.filter(pl.col("position") == dup["position"][0])["row"].to_list())
    full = pl.DataFrame({"position": pl.int_range(1, n + 1, eager=True, dtype=pl.Int64)}).join(
        pts, on="position", how="left")
    if curve == "A03":
        full = full.with_columns(pl.col("amount").forward_fill(), pl.col("row").forward_fill())
    frame = full.filter(pl.col("row").is_not_null()).select(
        interval_start=pl.lit(start).dt.replace_time_zone("UTC").dt.cast_time_unit("us")
        + (pl.col("position") - 1) * step,
        resolution=pl.lit(res),
        amount=pl.col("amount"),
        row=pl.col("row"),
    )
    return frame, outside


def _read_xml(path: Path, options: ReadOptions) -> PriceImport:
    root = _parse_xml(path)
    _reject_other_document(path, root)
    series = root.all("TimeSeries")
    if not series:
        raise InputRejected(path, "an A44 document without any TimeSeries", row=root.line)
    frames, zones, anomalies = [], set(), []
    for ts in series:
        eic, curve = _series_meta(path, ts)
        zones.add(eic)
        periods = ts.all("Period")
        if not periods:
            raise InputRejected(path, "a TimeSeries without any Period", row=ts.line)
        for period in periods:
            period_points, outside = _period_frame(path, period, curve)
            frames.append(period_points)
            anomalies += outside
    if len(zones) > 1:
        names = sorted(ZONES.get(z, z) for z in zones)
        raise InputRejected(path, f"prices for several bidding zones ({', '.join(names)}); "
                            "import one zone per file")
    points = pl.concat(frames)
    values = price_decimals(points["amount"], points["row"], path, "price.amount")
    frame = price_frame(points["interval_start"], points["resolution"], values, points["row"], "EUR/MWh",
                        raw=points["amount"])
    eic = zones.pop()
    tz = options.tz or DEFAULT_TZ
    return finish_prices(frame, path, "entsoe-xml", anomalies, "EUR/MWh", tz, ZONES.get(eic, eic))


# --- the website's CSV export -------------------------------------------------------------------------

_MTU_ZONES = {"CET/CEST": None, "UTC": "UTC", "CET": "Etc/GMT-1"}


def _detect_csv(path: Path, head: str) -> bool:
    line = first_line(head)
    return '"MTU (' in line and "Day-ahead Price [" in line


def _read_csv(path: Path, options: ReadOptions) -> PriceImport:
    t = read_table(path, ",")
    mtu = next((c for c in t.columns if c.startswith("MTU (")), "MTU (CET/CEST)")
    price = next((c for c in t.columns if c.startswith("Day-ahead Price [")), "Day-ahead Price [EUR/MWh]")
    need_columns(t, [mtu, price], path, "ENTSO-E day-ahead CSV")
    label = mtu[len("MTU ("):].rstrip(")")
    if label not in _MTU_ZONES or price != "Day-ahead Price [EUR/MWh]":
        raise InputRejected(path, f"unsupported columns {mtu!r} / {price!r}; expected MTU (CET/CEST) or "
                            "(UTC) and Day-ahead Price [EUR/MWh]", row=1)
    tz = _MTU_ZONES[label] or options.tz or DEFAULT_TZ
    zone = next((c.split("|", 1)[1] for c in t.columns if c.startswith("BZN|")), None)
    rows = t["row"]
    if "Currency" in t.columns:
        other = (t["Currency"].is_not_null() & (t["Currency"].str.strip_chars() != "EUR")).arg_true()
        if other.len():
            raise InputRejected(path, f"currency {t['Currency'][other[0]]!r}; only EUR prices are imported",
                                row=rows[other[0]])
    parts = t[mtu].str.split_exact(" - ", 1).struct.unnest()
    start = parse_naive(parts["field_0"], rows, "%d.%m.%Y %H:%M", path, "MTU start")
    end = parse_naive(parts["field_1"].fill_null(""), rows, "%d.%m.%Y %H:%M", path, "MTU end")
    values = price_decimals(t[price], rows, path, price)
    minutes = (end - start).dt.total_minutes()
    res = minutes.replace_strict({15: PT15M, 60: PT60M}, default=None, return_dtype=pl.String)
    odd = res.is_null().arg_true()
    if odd.len():  # only a DST changeover day may show a 0- or 120-minute wall-clock MTU
        usual = res.drop_nulls().mode().sort()
        for i in odd.to_list():
            if not usual.len() or quarters_in_local_day(start[i].date(), tz) == 96:
                raise InputRejected(path, f"MTU {t[mtu][i]!r} is {minutes[i]} minutes long; "
                                    "expected 15 or 60", row=rows[i])
        res = res.fill_null(usual[0])
    utc, anomalies = place_local(start, rows, tz, t[price].fill_null("empty"))
    frame = price_frame(utc, res, values, rows, "EUR/MWh", raw=t[price]).filter(
        pl.col("interval_start").is_not_null())
    return finish_prices(frame, path, "entsoe-csv", anomalies, "EUR/MWh", tz, zone)


# --- Rigaux et al. BE -------------------------------------------------------------------------------


def _detect_rigaux(path: Path, head: str) -> bool:
    return first_line(head).replace(" ", "").replace('"', "").lower() == "time,dam_price"


def _read_rigaux(path: Path, options: ReadOptions) -> PriceImport:
    tz = options.tz or "Europe/Brussels"
    t = read_table(path, ",")
    need_columns(t, ["time", "DAM_price"], path, "Rigaux BE CSV")
    naive = parse_naive(t["time"], t["row"], "%d%b%Y %H:%M:%S", path, "time")
    values = price_decimals(t["DAM_price"], t["row"], path, "DAM_price")
    utc, anomalies = place_local(naive, t["row"], tz, t["DAM_price"].fill_null("empty"))
    frame = price_frame(utc, PT60M, values, t["row"], "EUR/kWh", raw=t["DAM_price"])
    frame = frame.filter(pl.col("interval_start").is_not_null())
    return finish_prices(frame, path, "rigaux-csv", anomalies, "EUR/kWh", tz, zone="BE")


FORMATS: list[Format] = [
    Format("entsoe-xml", "prices", "ENTSO-E Transparency API XML, A44 day-ahead prices (EUR/MWh)",
           _detect_xml, _read_xml),
    Format("entsoe-csv", "prices", "ENTSO-E Transparency website CSV export, day-ahead prices (EUR/MWh)",
           _detect_csv, _read_csv),
    Format("rigaux-csv", "prices", "Rigaux et al. BE day-ahead CSV (time,DAM_price; Brussels time, EUR/kWh)",
           _detect_rigaux, _read_rigaux),
]
