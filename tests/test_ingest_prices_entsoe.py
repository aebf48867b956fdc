"""ENTSO-E price importers: A44 XML (entsoe-xml), the website CSV (entsoe-csv), the Rigaux BE CSV."""

from __future__ import annotations

import csv
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl
import pytest

from conftest import data_file
from kwartier.ingest import InputRejected, read_prices
from kwartier.ingest.base import (
    DST_PHANTOM,
    DST_REPEAT_MISSING,
    DUPLICATE,
    GAP,
    NO_DATA,
    OUT_OF_PERIOD,
    OVERLAP,
    PRICE_ROUNDED,
)

A03_NL = "entsoe_xml/A44_NL_20260930_20261001_PT15M_A03_splashcode01.xml"
A01_NL = "entsoe_xml/bertrik_energymix_A44_day_ahead_prices.xml"
BE_60M = "entsoe_xml/hass_entsoe_BE_60M.xml"
BE_MIX = "entsoe_xml/hass_entsoe_BE_60M_15M_mix.xml"
BE_EXACT4 = "entsoe_xml/hass_entsoe_BE_15M_exact4.xml"
BE_AVG = "entsoe_xml/hass_entsoe_BE_15M_avg.xml"
DE_OVERLAP = "entsoe_xml/hass_entsoe_DE_60M_15M_overlap.xml"
TP_CSV = "prices_nl/entsoe_tp_export_NL_Day-ahead_Prices_202301010000-202401010000.csv"
MARKVIS_2023 = "prices_nl/mark_vis_epex_json/prices_2023.json"
RIGAUX = "prices_be/be_dayahead_2022_2024_hourly_rigaux.csv"
AMS, BRU = ZoneInfo("Europe/Amsterdam"), ZoneInfo("Europe/Brussels")


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def prices_of(frame: pl.DataFrame, resolution: str | None = None) -> dict[datetime, int]:
    if resolution:
        frame = frame.filter(pl.col("resolution") == resolution)
    return dict(zip(frame["interval_start"].to_list(), frame["price_ueur_per_kwh"].to_list(), strict=True))


def kinds(result) -> list[str]:
    return [a.kind for a in result.anomalies]


def etree_series(path: Path) -> list[dict[datetime, Decimal]]:
    """Independent reading with the stdlib: one {UTC start: EUR/MWh} per TimeSeries, A03 filled."""
    root = ET.parse(path).getroot()
    ns = {"d": root.tag[1:].split("}")[0]}

    def text(el: ET.Element, path: str) -> str:
        return el.findtext("/".join(f"d:{part}" for part in path.split("/")), namespaces=ns)

    out = []
    for ts in root.findall("d:TimeSeries", ns):
        curve = text(ts, "curveType")
        series: dict[datetime, Decimal] = {}
        for period in ts.findall("d:Period", ns):
            start = datetime.fromisoformat(text(period, "timeInterval/start"))
            end = datetime.fromisoformat(text(period, "timeInterval/end"))
            step = timedelta(minutes=15 if text(period, "resolution") == "PT15M" else 60)
            points = {int(text(p, "position")): Decimal(text(p, "price.amount"))
                      for p in period.findall("d:Point", ns)}
            last = None
            for pos in range(1, (end - start) // step + 1):
                if pos in points:
                    last = points[pos]
                elif curve != "A03":
                    continue
                series[start + (pos - 1) * step] = last
        out.append(series)
    return out


def micro(eur_per_mwh: Decimal) -> int:
    return int(eur_per_mwh * 1000)


def copy_with(tmp_path: Path, rel: str, old: str, new: str, name: str | None = None, count: int = 1) -> Path:
    text = data_file(rel).read_text(encoding="utf-8")
    assert old in text
    out = tmp_path / (name or Path(rel).name)
    out.write_text(text.replace(old, new, count), encoding="utf-8")
    return out


def line_of(path: Path, needle: str, after: str | None = None) -> int:
    lines = path.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if after in line) if after else 0
    return next(i for i, line in enumerate(lines) if i >= start and needle in line) + 1


# --- entsoe-xml: real A44 documents --------------------------------------------------------------


def test_a03_nl_two_days_of_quarters_match_an_independent_reading():
    path = data_file(A03_NL)
    r = read_prices(path)
    assert (r.format, r.zone, r.currency) == ("entsoe-xml", "NL", "EUR")
    assert r.frame.height == 192 and set(r.frame["resolution"]) == {"PT15M"}
    expected = {t: micro(v) for s in etree_series(path) for t, v in s.items()}
    assert prices_of(r.frame) == expected
    assert r.anomalies == []  # A03 compression is the format, not an anomaly


def test_a03_omitted_position_14_repeats_position_13():
    path = data_file(A03_NL)
    p = prices_of(read_prices(path).frame)
    day2 = utc("2026-09-30T22:00:00")  # TimeSeries 2 starts here
    pos13, pos14, pos15 = (day2 + timedelta(minutes=15 * k) for k in (12, 13, 14))
    assert p[pos13] == 164_230 and p[pos14] == 164_230 and p[pos15] == 161_650


def test_a01_schema_7_0_hourly():
    path = data_file(A01_NL)
    r = read_prices(path)
    assert (r.format, r.zone) == ("entsoe-xml", "NL")
    assert r.frame.height == 24 and set(r.frame["resolution"]) == {"PT60M"}
    (series,) = etree_series(path)
    assert prices_of(r.frame) == {t: micro(v) for t, v in series.items()}
    assert prices_of(r.frame)[utc("2022-07-30T22:00:00")] == 382_790


def test_be_hourly_zone_and_values():
    path = data_file(BE_60M)
    r = read_prices(path)
    assert r.zone == "BE" and r.frame.height == 24
    (series,) = etree_series(path)
    assert sum(r.frame["price_ueur_per_kwh"]) == sum(micro(v) for v in series.values())
    assert prices_of(r.frame)[utc("2024-10-08T17:00:00")] == 115_470


def test_be_mixed_periods_keep_their_own_resolution_without_gaps():
    path = data_file(BE_MIX)
    r = read_prices(path)
    counts = dict(r.frame["resolution"].value_counts().iter_rows())
    assert counts == {"PT15M": 192, "PT60M": 24}  # sparse A03 periods (23-24 points) fill to 96 each
    (series,) = etree_series(path)
    assert prices_of(r.frame) == {t: micro(v) for t, v in series.items()}
    assert r.anomalies == []


def test_de_overlap_keeps_the_15_minute_series_and_reports_the_overlap():
    path = data_file(DE_OVERLAP)
    r = read_prices(path)
    assert r.zone == "DE-LU"
    hourly, quarterly = etree_series(path)  # classificationSequence 1 = PT60M, 2 = PT15M
    assert set(r.frame["resolution"]) == {"PT15M"} and r.frame.height == 192
    assert prices_of(r.frame) == {t: micro(v) for t, v in quarterly.items()}
    (overlap,) = [a for a in r.anomalies if a.kind == OVERLAP]
    assert overlap.at == utc("2024-10-05T22:00:00")
    assert overlap.row == line_of(path, "<Point>")  # the first hourly point
    assert "48 hourly" in overlap.detail
    assert len(hourly) == 48
    assert kinds(r) == [OVERLAP]


def test_exact_four_quarters():
    r = read_prices(data_file(BE_EXACT4))
    assert list(r.frame["price_ueur_per_kwh"]) == [55_350, 44_220, 40_320, 31_860]


def etree_points(path: Path) -> list[tuple[datetime, datetime, str, int, Decimal]]:
    """Every Point as (period start, period end, resolution, position, EUR/MWh), read with ElementTree."""
    root = ET.parse(path).getroot()
    ns = {"d": root.tag[1:].split("}")[0]}
    return [(datetime.fromisoformat(period.findtext("d:timeInterval/d:start", namespaces=ns)),
             datetime.fromisoformat(period.findtext("d:timeInterval/d:end", namespaces=ns)),
             period.findtext("d:resolution", namespaces=ns),
             int(point.findtext("d:position", namespaces=ns)),
             Decimal(point.findtext("d:price.amount", namespaces=ns)))
            for period in root.iter(f"{{{ns['d']}}}Period")
            for point in period.findall("d:Point", ns)]


def test_trimmed_excerpt_imports_without_the_point_outside_its_period():
    path = data_file(BE_AVG)
    r = read_prices(path)
    assert (r.format, r.zone) == ("entsoe-xml", "BE")
    points = etree_points(path)
    outside = [(s, e, res, pos, v) for s, e, res, pos, v in points
               if s + pos * timedelta(minutes=15 if res == "PT15M" else 60) > e]
    assert len(points) == 8 and outside == [(utc("2024-10-06T03:00:00"), utc("2024-10-06T05:00:00"),
                                             "PT60M", 3, Decimal("57.86"))]
    (dropped,) = r.anomalies
    assert dropped.kind == OUT_OF_PERIOD
    assert dropped.row == line_of(path, "<position>3</position>", after="PT60M") - 1 == 66  # its <Point>
    assert dropped.at == utc("2024-10-06T05:00:00")  # 03:00Z + (3 - 1) hours
    assert "position 3" in dropped.detail and "57.86" in dropped.detail
    assert "2024-10-06T03:00Z..2024-10-06T05:00Z" in dropped.detail
    (series,) = etree_series(path)  # A03 filled within each period; position 3 lies beyond its period
    expected = {t: micro(v) for t, v in series.items()}
    assert r.frame.height == len(expected) == 20 + 2
    assert prices_of(r.frame) == expected
    assert dict(r.frame["resolution"].value_counts().iter_rows()) == {"PT15M": 20, "PT60M": 2}
    assert prices_of(r.frame)[utc("2024-10-06T04:00:00")] == 64_980  # A03 repeats position 1, not 3


SMALL_A01 = """<?xml version="1.0" encoding="utf-8"?>
<Publication_MarketDocument xmlns="urn:iec62325.351:tc57wg16:451-3:publicationdocument:7:3">
  <type>A44</type>
  <TimeSeries>
    <in_Domain.mRID codingScheme="A01">10YNL----------L</in_Domain.mRID>
    <currency_Unit.name>EUR</currency_Unit.name>
    <price_Measure_Unit.name>MWH</price_Measure_Unit.name>
    <curveType>A01</curveType>
    <Period>
      <timeInterval><start>2025-01-01T22:00Z</start><end>2025-01-01T23:00Z</end></timeInterval>
      <resolution>PT15M</resolution>
      <Point><position>1</position><price.amount>10.5</price.amount></Point>
      <Point><position>2</position><price.amount>11.5</price.amount></Point>
      <Point><position>3</position><price.amount>12.5</price.amount></Point>
      <Point><position>4</position><price.amount>13.5</price.amount></Point>
      <Point><position>5</position><price.amount>999.99</price.amount></Point>
    </Period>
    <Period>
      <timeInterval><start>2025-01-01T23:00Z</start><end>2025-01-02T00:00Z</end></timeInterval>
      <resolution>PT15M</resolution>
      <Point><position>1</position><price.amount>20.5</price.amount></Point>
      <Point><position>2</position><price.amount>21.5</price.amount></Point>
      <Point><position>3</position><price.amount>22.5</price.amount></Point>
      <Point><position>4</position><price.amount>23.5</price.amount></Point>
    </Period>
  </TimeSeries>
</Publication_MarketDocument>
"""


def test_a_point_outside_its_period_is_dropped_not_moved_into_the_next_period(tmp_path):
    path = tmp_path / "outside.xml"
    path.write_text(SMALL_A01, encoding="utf-8")
    r = read_prices(path)
    assert r.frame.height == 8
    assert prices_of(r.frame)[utc("2025-01-01T23:00:00")] == 20_500  # the next period's own position 1
    assert 999_990 not in prices_of(r.frame).values()
    (dropped,) = r.anomalies
    assert dropped.kind == OUT_OF_PERIOD and dropped.row == line_of(path, "<position>5<") == 16
    assert dropped.at == utc("2025-01-01T23:00:00")  # 22:00Z + (5 - 1) quarters
    assert "position 5" in dropped.detail and "999.99" in dropped.detail


@pytest.mark.parametrize("rel, code, what", [
    ("entsoe_xml/bertrik_energymix_A75_actualgeneration.xml", "A75", "actual generation per production type"),
    ("entsoe_xml/bertrik_energymix_A69_solar_wind_forecast.xml", "A69", "wind and solar generation forecast"),
    ("entsoe_xml/bertrik_energymix_A68_installed_capacity.xml", "A68", "installed generation capacity"),
])
def test_other_entsoe_documents_are_rejected_saying_what_they_are(rel, code, what):
    with pytest.raises(InputRejected) as exc:
        read_prices(data_file(rel))
    msg = str(exc.value)
    assert f"type {code}" in msg and what in msg and "not day-ahead prices (A44)" in msg


NO_DATA_TEXT = ("No matching data found for Data item ENERGY_PRICES [12.1.D] (10YNL----------L, "
                "10YNL----------L) and interval 2025-10-01T22:00:00.000Z/2025-10-02T22:00:00.000Z.")
ACK = f"""<?xml version="1.0" encoding="utf-8"?>
<Acknowledgement_MarketDocument xmlns="urn:iec62325.351:tc57wg16:451-1:acknowledgementdocument:7:0">
  <mRID>7b8c0d2e-acknowledgement</mRID>
  <createdDateTime>2025-10-02T20:14:35Z</createdDateTime>
  <sender_MarketParticipant.mRID codingScheme="A01">10X1001A1001A450</sender_MarketParticipant.mRID>
  <sender_MarketParticipant.marketRole.type>A32</sender_MarketParticipant.marketRole.type>
  <receiver_MarketParticipant.mRID codingScheme="A01">10X1001A1001A450</receiver_MarketParticipant.mRID>
  <receiver_MarketParticipant.marketRole.type>A39</receiver_MarketParticipant.marketRole.type>
  <received_MarketDocument.createdDateTime>2025-10-02T20:14:35Z</received_MarketDocument.createdDateTime>
  <Reason>
    <code>999</code>
    <text>{NO_DATA_TEXT}</text>
  </Reason>
</Acknowledgement_MarketDocument>
"""


def test_acknowledgement_no_matching_data_is_rejected(tmp_path):
    path = tmp_path / "acknowledgement.xml"
    path.write_text(ACK, encoding="utf-8")
    with pytest.raises(InputRejected) as exc:
        read_prices(path)
    msg = str(exc.value)
    assert "acknowledgement" in msg and "reason 999" in msg and "No matching data found" in msg


# --- entsoe-xml: rejections and rules on small edits of real files -------------------------------


def test_corrupt_price_is_rejected_naming_its_line(tmp_path):
    path = copy_with(tmp_path, BE_EXACT4, "<price.amount>40.32<", "<price.amount>40,3x<")
    with pytest.raises(InputRejected) as exc:
        read_prices(path)
    assert exc.value.rows == [line_of(path, "40,3x") - 2]  # the line of its <Point>
    assert "'40,3x' is not a number" in str(exc.value)


def test_truncated_xml_is_rejected_naming_the_line(tmp_path):
    text = data_file(A01_NL).read_text(encoding="utf-8")
    path = tmp_path / "cut.xml"
    path.write_text(text[: len(text) // 2], encoding="utf-8")
    with pytest.raises(InputRejected) as exc:
        read_prices(path)
    assert "not well-formed XML" in str(exc.value) and exc.value.rows


def test_a_dtd_is_refused(tmp_path):
    text = data_file(BE_EXACT4).read_text(encoding="utf-8")
    evil = text.replace('<?xml version="1.0" encoding="utf-8"?>',
                        '<?xml version="1.0"?>\n<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>', 1)
    path = tmp_path / "dtd.xml"
    path.write_text(evil, encoding="utf-8")
    with pytest.raises(InputRejected, match="DTD"):
        read_prices(path, format="entsoe-xml")


def test_non_eur_currency_and_non_mwh_unit_are_rejected(tmp_path):
    for old, new, words in (("<currency_Unit.name>EUR<", "<currency_Unit.name>PLN<", "PLN"),
                            ("<price_Measure_Unit.name>MWH<", "<price_Measure_Unit.name>KWH<", "KWH")):
        path = copy_with(tmp_path, BE_EXACT4, old, new)
        with pytest.raises(InputRejected, match=words):
            read_prices(path)


def test_two_bidding_zones_in_one_document_are_rejected(tmp_path):
    path = copy_with(tmp_path, DE_OVERLAP, "10Y1001A1001A82H</in_Domain", "10YNL----------L</in_Domain")
    with pytest.raises(InputRejected, match="several bidding zones"):
        read_prices(path)


def test_a_repeated_position_is_rejected_naming_both_lines(tmp_path):
    path = copy_with(tmp_path, BE_EXACT4, "<position>2</position>", "<position>1</position>")
    with pytest.raises(InputRejected) as exc:
        read_prices(path)
    assert len(exc.value.rows) == 2 and "position 1 appears twice" in str(exc.value)


def test_unsupported_resolution_is_rejected(tmp_path):
    path = copy_with(tmp_path, BE_EXACT4, "<resolution>PT15M<", "<resolution>PT30M<")
    with pytest.raises(InputRejected, match="PT30M"):
        read_prices(path)


def test_a01_missing_point_is_a_gap(tmp_path):
    text = data_file(A01_NL).read_text(encoding="utf-8")
    start = text.index("<Point>", text.index("<position>5</position>") - 40)
    end = text.index("</Point>", start) + len("</Point>")
    path = tmp_path / "a01_gap.xml"
    path.write_text(text[:start] + text[end:], encoding="utf-8")
    r = read_prices(path)
    assert r.frame.height == 23
    (gap,) = r.anomalies
    assert gap.kind == GAP and gap.at == utc("2022-07-31T02:00:00")  # position 5 of a 22:00Z period


def test_price_with_more_than_micro_euro_precision_is_rounded_and_reported(tmp_path):
    path = copy_with(tmp_path, BE_EXACT4, ">55.35<", ">55.3456<")
    r = read_prices(path)
    assert prices_of(r.frame)[utc("2024-10-05T22:00:00")] == 55_346  # 55.3456 EUR/MWh, half-even
    (rounded,) = [a for a in r.anomalies if a.kind == PRICE_ROUNDED]
    assert rounded.detail.startswith("1 price(s)") and rounded.at == utc("2024-10-05T22:00:00")


def test_two_identical_series_are_kept_once(tmp_path):
    text = data_file(BE_EXACT4).read_text(encoding="utf-8")
    ts = text[text.index("<TimeSeries>"): text.index("</TimeSeries>") + len("</TimeSeries>")]
    path = tmp_path / "twice.xml"
    path.write_text(text.replace(ts, ts + "\n" + ts), encoding="utf-8")
    r = read_prices(path)
    assert r.frame.height == 4 and kinds(r) == [DUPLICATE] * 4


# --- entsoe-csv: the Transparency website export, NL 2023 ----------------------------------------


def tp_rows() -> list[tuple[int, str, str]]:
    """(line, MTU, price) of every data row, read with the stdlib csv module."""
    with data_file(TP_CSV).open(newline="", encoding="utf-8") as fh:
        return [(i, r[0], r[1]) for i, r in enumerate(csv.reader(fh), start=1) if i > 1]


def local_start(mtu: str) -> datetime:
    return datetime.strptime(mtu.split(" - ")[0], "%d.%m.%Y %H:%M")


def exists(naive: datetime, tz: ZoneInfo) -> bool:
    aware = naive.replace(tzinfo=tz)
    return aware.astimezone(UTC).astimezone(tz).replace(tzinfo=None) == naive


def test_tp_export_counts_and_total():
    r = read_prices(data_file(TP_CSV))
    assert (r.format, r.zone) == ("entsoe-csv", "NL")
    rows = tp_rows()
    assert len(rows) == 8760
    real = [(line, mtu, p) for line, mtu, p in rows if exists(local_start(mtu), AMS)]
    assert r.frame.height == len(real) == 8759 and set(r.frame["resolution"]) == {"PT60M"}
    assert sum(r.frame["price_ueur_per_kwh"]) == sum(micro(Decimal(p)) for _, _, p in real)


def test_tp_export_min_and_max_at_the_documented_hours():
    p = prices_of(read_prices(data_file(TP_CSV)).frame)
    low = min(p, key=p.get)
    high = max(p, key=p.get)
    assert p[low] == -500_000 and low.astimezone(AMS) == datetime(2023, 7, 2, 13, tzinfo=AMS)
    assert p[high] == 463_770 and high.astimezone(AMS) == datetime(2023, 9, 11, 19, tzinfo=AMS)


def test_tp_export_phantom_spring_row_is_dropped_and_reported():
    path = data_file(TP_CSV)
    r = read_prices(path)
    (ghost,) = [a for a in r.anomalies if a.kind == DST_PHANTOM]
    assert ghost.row == line_of(path, '"26.03.2023 02:00 - 26.03.2023 03:00"') == 2020
    assert ghost.at == utc("2023-03-26T01:00:00") and "80.00" in ghost.detail


def test_tp_export_autumn_hour_listed_once_is_summer_time_and_the_other_is_missing():
    r = read_prices(data_file(TP_CSV))
    (missing,) = [a for a in r.anomalies if a.kind == DST_REPEAT_MISSING]
    assert missing.at == utc("2023-10-29T01:00:00")
    p = prices_of(r.frame)
    assert p[utc("2023-10-29T00:00:00")] == -1_930 and utc("2023-10-29T01:00:00") not in p
    assert sorted(kinds(r)) == sorted([DST_PHANTOM, DST_REPEAT_MISSING])


def test_tp_export_agrees_with_mark_vis_2023():
    tp = read_prices(data_file(TP_CSV)).frame
    mv = read_prices(data_file(MARKVIS_2023)).frame
    both = tp.join(mv, on="interval_start", suffix="_mv")
    assert both.height == 8759
    assert (both["price_ueur_per_kwh"] - both["price_ueur_per_kwh_mv"]).abs().max() <= 50  # 0.05 EUR/MWh


def tp_copy(tmp_path: Path, edit) -> Path:
    lines = data_file(TP_CSV).read_text(encoding="utf-8").split("\n")
    out = tmp_path / "tp.csv"
    out.write_text("\n".join(edit(lines)), encoding="utf-8")
    return out


def test_tp_corrupt_value_is_rejected_naming_its_row(tmp_path):
    def edit(lines):
        lines[99] = lines[99].replace('","', '","x', 1)
        return lines
    with pytest.raises(InputRejected) as exc:
        read_prices(tp_copy(tmp_path, edit))
    assert exc.value.rows == [100] and "tp.csv" in str(exc.value)


def test_tp_missing_price_column_is_rejected(tmp_path):
    def edit(lines):
        lines[0] = lines[0].replace("Day-ahead Price [EUR/MWh]", "Price")
        return lines
    with pytest.raises(InputRejected, match="missing column"):
        read_prices(tp_copy(tmp_path, edit), format="entsoe-csv")


def test_tp_truncated_last_row_is_rejected_naming_it(tmp_path):
    def edit(lines):
        return [*lines[:500], lines[500][:20]]
    with pytest.raises(InputRejected) as exc:
        read_prices(tp_copy(tmp_path, edit))
    assert exc.value.rows == [501]


def test_tp_other_currency_is_rejected(tmp_path):
    def edit(lines):
        lines[10] = lines[10].replace('"EUR"', '"USD"')
        return lines
    with pytest.raises(InputRejected, match="USD") as exc:
        read_prices(tp_copy(tmp_path, edit))
    assert exc.value.rows == [11]


def test_tp_not_published_prices_are_no_data(tmp_path):
    def edit(lines):
        for i in (200, 201, 202):
            head, _, tail = lines[i].partition('","')
            lines[i] = head + '","n/e' + tail[tail.index('"'):]
        return lines
    r = read_prices(tp_copy(tmp_path, edit))
    (nodata,) = [a for a in r.anomalies if a.kind == NO_DATA]
    assert nodata.row == 201 and nodata.detail.startswith("3 interval(s)")
    assert r.frame.height == 8759 - 3
    assert GAP not in kinds(r)  # reported once, as no data


# --- rigaux-csv: BE 2022-2024 -------------------------------------------------------------------------


def rigaux_rows() -> list[tuple[int, datetime, str]]:
    with data_file(RIGAUX).open(newline="", encoding="utf-8") as fh:
        return [(i, datetime.strptime(r[0], "%d%b%Y %H:%M:%S"), r[1])
                for i, r in enumerate(csv.reader(fh), start=1) if i > 1]


def test_rigaux_stored_hours_and_total():
    r = read_prices(data_file(RIGAUX))
    assert (r.format, r.zone) == ("rigaux-csv", "BE")
    rows = rigaux_rows()
    assert len(rows) == 26307 and sum(1 for _, _, v in rows if v) == 22583
    kept = [v for _, t, v in rows if v and exists(t, BRU)]
    assert r.frame.height == len(kept) == 22583
    exact = sum(Decimal(v) for v in kept) * 1_000_000
    assert abs(sum(r.frame["price_ueur_per_kwh"]) - exact) <= len(kept) / 2


def test_rigaux_spring_rows_at_02_00_are_phantoms():
    rows = rigaux_rows()
    expected = [line for line, t, _ in rows if not exists(t, BRU)]
    r = read_prices(data_file(RIGAUX))
    assert [a.row for a in r.anomalies if a.kind == DST_PHANTOM] == expected == [2044, 10781, 19686]


def test_rigaux_doubled_autumn_hour_is_read_by_row_order():
    p = prices_of(read_prices(data_file(RIGAUX)).frame)
    assert p[utc("2022-10-30T00:00:00")] == 100_220  # first 02:00 = 02:00 CEST
    assert p[utc("2022-10-30T01:00:00")] == 99_930  # second 02:00 = 02:00 CET


def test_rigaux_nan_tail_is_one_no_data_run_and_stata_noise_is_rounded():
    rows = rigaux_rows()
    r = read_prices(data_file(RIGAUX))
    (nodata,) = [a for a in r.anomalies if a.kind == NO_DATA]
    first_empty = next(line for line, t, v in rows if not v and exists(t, BRU))
    assert nodata.row == first_empty and nodata.detail.startswith(f"{26308 - first_empty + 1} interval(s)")
    (rounded,) = [a for a in r.anomalies if a.kind == PRICE_ROUNDED]
    noisy = sum(1 for _, t, v in rows if v and exists(t, BRU) and Decimal(v).as_tuple().exponent < -6)
    assert rounded.detail.startswith(f"{noisy} price(s)")
    assert prices_of(r.frame)[utc("2021-12-31T23:00:00")] == 82_020  # .0820199966430664 EUR/kWh
