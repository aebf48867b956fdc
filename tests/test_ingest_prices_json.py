"""JSON price importers: EnergyZero REST/GraphQL (energyzero-json), easyEnergy, mark-vis yearly files."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl
import pytest

from conftest import data_file
from kwartier.ingest import InputRejected, read_prices
from kwartier.ingest.base import DST_PHANTOM, DST_REPEAT_MISSING, GAP

EZ = "prices_nl/energyzero_fixtures/"
EE = "prices_nl/easyenergy_fixtures/"
MV = "prices_nl/mark_vis_epex_json/prices_{}.json"
AMS = ZoneInfo("Europe/Amsterdam")


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def prices_of(frame: pl.DataFrame) -> dict[datetime, int]:
    return dict(zip(frame["interval_start"].to_list(), frame["price_ueur_per_kwh"].to_list(), strict=True))


def load(rel: str) -> object:
    return json.loads(data_file(rel).read_text(encoding="utf-8"), parse_float=Decimal)


def rejected(path: Path, **kw) -> InputRejected:
    with pytest.raises(InputRejected) as exc:
        read_prices(path, **kw)
    assert path.name in str(exc.value)
    return exc.value


# --- EnergyZero ---------------------------------------------------------------------------------------


def test_rest_quarter_response_stores_the_base_price():
    r = read_prices(data_file(EZ + "rest_electricity_quarter_response.json"))
    assert (r.format, r.zone) == ("energyzero-json", "NL")
    base = load(EZ + "rest_electricity_quarter_response.json")["base"]
    expected = {datetime.fromisoformat(s["start"]): int(Decimal(s["price"]["value"]) * 10**6) for s in base}
    assert len(expected) == 288 and prices_of(r.frame) == expected
    assert set(r.frame["resolution"]) == {"PT15M"} and r.anomalies == []
    assert prices_of(r.frame)[utc("2025-12-15T23:00:00")] == 79_940  # base, not base_with_vat 0.0967274


def test_rest_hour_response_is_hourly():
    r = read_prices(data_file(EZ + "rest_electricity_hour_response.json"))
    base = load(EZ + "rest_electricity_hour_response.json")["base"]
    assert r.frame.height == 72 and set(r.frame["resolution"]) == {"PT60M"}
    assert sum(r.frame["price_ueur_per_kwh"]) == sum(int(Decimal(s["price"]["value"]) * 10**6) for s in base)


def test_graphql_response_stores_energy_price_excl_exactly():
    r = read_prices(data_file(EZ + "graphql_energy.json"))
    items = load(EZ + "graphql_energy.json")["data"]["energyMarketPrices"]["prices"]
    assert r.frame.height == 24 and set(r.frame["resolution"]) == {"PT60M"}
    assert prices_of(r.frame) == {datetime.fromisoformat(p["from"]): int(p["energyPriceExcl"] * 10**6)
                                  for p in items}
    assert prices_of(r.frame)[utc("2025-05-31T08:00:00")] == -20  # written as -2e-05 in the JSON


def test_rest_error_response_is_rejected():
    err = rejected(data_file(EZ + "rest_error_response.json"))
    assert "error response (code 3)" in str(err) and "DailyEnergyPricesRequest" in str(err)


def test_graphql_without_prices_is_rejected():
    err = rejected(data_file(EZ + "graphql_energy_no_prices.json"))
    assert "without prices" in str(err)


@pytest.mark.parametrize("name", ["graphql_gas.json", "rest_gas_day_response.json"])
def test_gas_responses_are_rejected(name):
    err = rejected(data_file(EZ + name))
    assert "gas" in str(err).lower() and "only electricity" in str(err)


def test_truncated_json_is_rejected_naming_the_line(tmp_path):
    text = data_file(EZ + "rest_electricity_quarter_response.json").read_text(encoding="utf-8")
    path = tmp_path / "cut.json"
    path.write_text(text[:5000], encoding="utf-8")
    err = rejected(path)
    assert "not valid JSON" in str(err) and err.rows == [text[:5000].count("\n") + 1]


def test_corrupt_rest_value_is_rejected_naming_the_element_and_line(tmp_path):
    text = data_file(EZ + "rest_electricity_quarter_response.json").read_text(encoding="utf-8")
    path = tmp_path / "bad.json"
    path.write_text(text.replace('"value": "0.08307"', '"value": "0.08x07"', 1), encoding="utf-8")
    err = rejected(path)
    assert "'0.08x07' is not a number" in str(err)
    assert err.rows == [15]  # the line of base[1]'s opening brace


def test_rest_slot_without_offset_is_rejected(tmp_path):
    text = data_file(EZ + "rest_electricity_quarter_response.json").read_text(encoding="utf-8")
    path = tmp_path / "naive.json"
    path.write_text(text.replace('"start": "2025-12-15T23:15:00Z"', '"start": "2025-12-15T23:15:00"', 1),
                    encoding="utf-8")
    err = rejected(path)
    assert "base[1]" in str(err) and "offset" in str(err)


def test_rest_missing_slot_is_a_gap(tmp_path):
    doc = load(EZ + "rest_electricity_quarter_response.json")
    del doc["base"][10]
    path = tmp_path / "gap.json"
    path.write_text(json.dumps(doc, default=str, indent=2), encoding="utf-8")
    r = read_prices(path)
    assert r.frame.height == 287
    (gap,) = r.anomalies
    assert gap.kind == GAP and gap.at == utc("2025-12-16T01:30:00")


# --- easyEnergy -----------------------------------------------------------------------------------------


def test_easyenergy_hourly_local_times_and_prices():
    r = read_prices(data_file(EE + "energy.json"))
    assert r.format == "easyenergy-json" and r.frame.height == 24
    items = load(EE + "energy.json")["prices"]
    expected = {datetime.strptime(p["from"][:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=AMS).astimezone(UTC):
                int(p["price"] * 10**6) for p in items}
    assert prices_of(r.frame) == expected
    assert r.frame["interval_start"][0] == utc("2026-04-18T22:00:00")  # 00:00 CEST
    assert (r.frame["price_ueur_per_kwh"].min(), r.frame["price_ueur_per_kwh"].max()) == (-3_000, 124_640)


def test_easyenergy_quarters_average_to_the_hourly_price():
    q = prices_of(read_prices(data_file(EE + "energy_quarter.json")).frame)
    h = prices_of(read_prices(data_file(EE + "energy.json")).frame)
    assert len(q) == 5 and all(v < 0 for v in q.values())
    hour = utc("2026-04-19T12:00:00")  # 14:00 CEST
    mean = sum(q[hour + timedelta(minutes=15 * k)] for k in range(4)) / 4
    assert abs(mean - h[hour]) <= 10


def test_easyenergy_gas_is_rejected():
    err = rejected(data_file(EE + "gas.json"))
    assert "gas prices (per m3)" in str(err) and err.rows == [4]


def easy_doc(tmp_path: Path, froms: list[str]) -> Path:
    items = [{"from": f, "until": f, "price": Decimal(100 + i) / 1000, "unit": "kWh", "granularity": "hour"}
             for i, f in enumerate(froms)]
    path = tmp_path / "easy.json"
    doc = json.dumps({"providedAt": "2025-10-26T12:00:00Z", "prices": items}, indent=2, default=float)
    path.write_text(doc, encoding="utf-8")
    return path


def test_easyenergy_dst_days_follow_row_order(tmp_path):
    autumn = easy_doc(tmp_path, [f"2025-10-26T0{h}:00:00.0000000" for h in (1, 2, 2, 3)])
    p = prices_of(read_prices(autumn).frame)
    assert list(p) == [utc("2025-10-25T23:00:00") + timedelta(hours=k) for k in range(4)]
    spring = easy_doc(tmp_path, [f"2025-03-30T0{h}:00:00.0000000" for h in (1, 2, 3)])
    r = read_prices(spring)
    (ghost,) = r.anomalies
    assert ghost.kind == DST_PHANTOM and ghost.at == utc("2025-03-30T01:00:00") and r.frame.height == 2


# --- mark-vis -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("year", range(2013, 2027))
def test_markvis_every_year_is_complete_except_the_documented_hours(year):
    r = read_prices(data_file(MV.format(year)))
    doc = load(MV.format(year))
    assert r.format == "markvis-json" and set(r.frame["resolution"]) == {"PT60M"}
    assert r.frame.height == doc["count"] == len(doc["prices"])
    assert sum(r.frame["price_ueur_per_kwh"]) == sum(int(p["price"] * 1000) for p in doc["prices"])
    doubled = [s for s, n in Counter(p["timestamp"] for p in doc["prices"]).items() if n == 2]
    repeat_missing = [a.at for a in r.anomalies if a.kind == DST_REPEAT_MISSING]
    if year <= 2019 or year == 2022:  # the autumn 02:00 is listed once
        last_sunday = max(d for d in (datetime(year, 10, 31) - timedelta(days=k) for k in range(7))
                          if d.weekday() == 6)
        assert not doubled and repeat_missing == [last_sunday.replace(hour=1, tzinfo=UTC)]
    else:
        assert repeat_missing == [] and len(doubled) == (1 if year < 2026 else 0)
    gaps = [a.at for a in r.anomalies if a.kind == GAP]
    assert gaps == ([utc("2022-10-30T21:00:00")] if year == 2022 else [])  # 22:00 local absent in 2022


def test_markvis_doubled_autumn_hour_is_summer_then_winter_time():
    p = prices_of(read_prices(data_file(MV.format(2023))).frame)
    assert p[utc("2023-10-29T00:00:00")] == -1_900 and p[utc("2023-10-29T01:00:00")] == -1_600


@pytest.mark.parametrize("year, low, high", [(2022, -222_400, 871_000), (2023, -500_000, 463_800),
                                             (2024, -200_000, 873_000), (2025, -350_000, 523_500)])
def test_markvis_documented_price_ranges(year, low, high):
    f = read_prices(data_file(MV.format(year))).frame["price_ueur_per_kwh"]
    assert (f.min(), f.max()) == (low, high)


def test_markvis_count_mismatch_is_rejected(tmp_path):
    text = data_file(MV.format(2026)).read_text(encoding="utf-8")
    path = tmp_path / "short.json"
    path.write_text(text.replace('"count":2567', '"count":2568', 1), encoding="utf-8")
    assert "count 2568 but holds 2567 prices" in str(rejected(path))


def test_markvis_bad_timestamp_is_rejected_naming_the_element(tmp_path):
    text = data_file(MV.format(2026)).read_text(encoding="utf-8")
    path = tmp_path / "bad.json"
    path.write_text(text.replace('"2026-01-01T05:00:00"', '"2026-01-01 5h"', 1), encoding="utf-8")
    err = rejected(path)
    assert "prices[5].timestamp" in str(err) and err.rows == [1]


def test_markvis_truncated_file_is_rejected(tmp_path):
    text = data_file(MV.format(2026)).read_text(encoding="utf-8")
    path = tmp_path / "cut.json"
    path.write_text(text[:-100], encoding="utf-8")
    assert "not valid JSON" in str(rejected(path))
