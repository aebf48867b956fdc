"""CSV price importers: jeroen.nl (jeroen-csv) and the generic price CSV (generic-csv)."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

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
    OVERLAP,
    PRICE_ROUNDED,
)

JEROEN = "prices_nl/nl_dayahead_2025_15min_jeroen_nl.csv"
EZ_QUARTER = "prices_nl/energyzero_fixtures/rest_electricity_quarter_response.json"
MARKVIS_2025 = "prices_nl/mark_vis_epex_json/prices_2025.json"


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def prices_of(frame: pl.DataFrame) -> dict[datetime, int]:
    return dict(zip(frame["interval_start"].to_list(), frame["price_ueur_per_kwh"].to_list(), strict=True))


def jeroen_rows() -> list[list[str]]:
    with data_file(JEROEN).open(newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh, delimiter=";"))[1:]


def rejected(path: Path, **kw) -> InputRejected:
    with pytest.raises(InputRejected) as exc:
        read_prices(path, **kw)
    assert path.name in str(exc.value)
    return exc.value


# --- jeroen.nl 2025 -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def jeroen():
    return read_prices(data_file(JEROEN))


def test_jeroen_2025_counts_range_and_negatives(jeroen):
    f = jeroen.frame
    assert (jeroen.format, jeroen.zone) == ("jeroen-csv", "NL")
    assert f.height == 35_036 and set(f["resolution"]) == {"PT15M"}
    assert f["price_ueur_per_kwh"].min() == -350_000 and f["price_ueur_per_kwh"].max() == 523_470
    assert (f["price_ueur_per_kwh"] < 0).sum() == 2_257


def test_jeroen_total_matches_an_independent_sum(jeroen):
    rows = jeroen_rows()
    exact = sum(Decimal(r[2].replace(",", ".")) for r in rows) * 1_000_000
    assert sum(jeroen.frame["price_ueur_per_kwh"]) == exact
    assert not [a for a in jeroen.anomalies if a.kind == PRICE_ROUNDED]


def test_jeroen_missing_repeated_autumn_hour_is_four_quarters(jeroen):
    missing = [a for a in jeroen.anomalies if a.kind == DST_REPEAT_MISSING]
    first = utc("2025-10-26T01:00:00")  # 02:00 CET, the winter-time 02:00
    assert [a.at for a in missing] == [first + timedelta(minutes=15 * k) for k in range(4)]
    assert {a.kind for a in jeroen.anomalies} == {DST_REPEAT_MISSING}  # spring is correct: no phantom, no gap


def test_jeroen_hourly_prices_repeated_four_times_are_stored_as_given(jeroen):
    p = prices_of(jeroen.frame)
    first_hour = [p[utc("2024-12-31T23:00:00") + timedelta(minutes=15 * k)] for k in range(4)]
    assert first_hour == [13_620] * 4


def test_jeroen_agrees_with_energyzero_quarters_within_50_micro_euro(jeroen):
    ez = read_prices(data_file(EZ_QUARTER)).frame
    both = ez.join(jeroen.frame, on="interval_start", suffix="_jeroen")
    assert both.height == 288
    assert (both["price_ueur_per_kwh"] - both["price_ueur_per_kwh_jeroen"]).abs().max() <= 50


def test_jeroen_quarter_price_bug_on_7_november_is_kept_as_given(jeroen):
    """On local day 2025-11-07 each hour's price sits in its first quarter and the other three are 0.

    So hourly means are 1/4 of the true price. No single-file rule can tell those zeros from
    real ones; the cross-check against mark-vis (EnergyZero) finds exactly that day, plus the
    hour jeroen.nl mislabels on the DST night; every other hour agrees within 0.1 EUR/MWh.
    """
    mv = read_prices(data_file(MARKVIS_2025)).frame
    hourly = jeroen.frame.group_by(pl.col("interval_start").dt.truncate("1h")).agg(
        jeroen=pl.col("price_ueur_per_kwh").mean())
    both = mv.join(hourly, on="interval_start")
    off = both.filter((pl.col("jeroen") - pl.col("price_ueur_per_kwh")).abs() > 100)
    local_days = off["interval_start"].dt.convert_time_zone("Europe/Amsterdam").dt.date()
    assert both.height == 8_759
    assert local_days.value_counts().sort("interval_start").rows() == [
        (datetime(2025, 10, 26).date(), 1), (datetime(2025, 11, 7).date(), 24)]
    # the DST-night hour: jeroen's rows labelled 00:00-00:45Z hold the winter-time hour's prices
    night = off.filter(local_days == datetime(2025, 10, 26).date()).row(0, named=True)
    assert night["interval_start"] == utc("2025-10-26T00:00:00")
    assert abs(night["jeroen"] - prices_of(mv)[utc("2025-10-26T01:00:00")]) <= 100
    bug = off.filter(local_days == datetime(2025, 11, 7).date())
    assert ((bug["price_ueur_per_kwh"] / bug["jeroen"]).round(2) == 4.0).all()
    p = prices_of(jeroen.frame)  # stored as the file says
    assert [p[utc("2025-11-07T16:00:00") + timedelta(minutes=15 * k)] for k in range(4)] == [165_040, 0, 0, 0]


def jeroen_copy(tmp_path: Path, edit) -> Path:
    lines = data_file(JEROEN).read_text(encoding="utf-8").split("\n")
    out = tmp_path / "jeroen.csv"
    out.write_text("\n".join(edit(lines)), encoding="utf-8")
    return out


def test_jeroen_corrupt_value_is_rejected_naming_its_row(tmp_path):
    def edit(lines):
        lines[1233] = lines[1233].rsplit(";", 1)[0] + ";0,0x5"
        return lines
    err = rejected(jeroen_copy(tmp_path, edit))
    assert err.rows == [1234] and "'0,0x5' is not a number" in str(err)


def test_jeroen_missing_column_is_rejected(tmp_path):
    def edit(lines):
        lines[0] = "datum_nl;datum_utc;prijs"
        return lines
    assert "prijs_excl_belastingen" in str(rejected(jeroen_copy(tmp_path, edit), format="jeroen-csv"))


def test_jeroen_truncated_last_line_is_rejected_naming_it(tmp_path):
    def edit(lines):
        return [*lines[:100], lines[100][:30]]
    assert rejected(jeroen_copy(tmp_path, edit)).rows == [101]


def test_jeroen_local_and_utc_columns_must_agree(tmp_path):
    def edit(lines):
        lines[9] = lines[9].replace("2025-01-01 02:00:00", "2025-01-01 03:00:00", 1)
        return lines
    err = rejected(jeroen_copy(tmp_path, edit))
    assert err.rows == [10] and "is not datum_utc" in str(err)


# --- generic-csv -----------------------------------------------------------------------------------------


def write(tmp_path: Path, text: str, name: str = "prices.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_generic_rebuilt_from_the_real_energyzero_quarters(tmp_path):
    base = json.loads(data_file(EZ_QUARTER).read_text(encoding="utf-8"))["base"]
    body = "".join(f"{s['start']};{s['price']['value'].replace('.', ',')}\n" for s in base)
    r = read_prices(write(tmp_path, "interval_start;price_eur_per_kwh\n" + body))
    assert r.format == "generic-csv" and r.frame.height == 288 and set(r.frame["resolution"]) == {"PT15M"}
    expected = {datetime.fromisoformat(s["start"]): int(Decimal(s["price"]["value"]) * 10**6) for s in base}
    assert prices_of(r.frame) == expected


def test_generic_hourly_eur_per_mwh_with_offsets(tmp_path):
    r = read_prices(write(tmp_path, "timestamp,price_eur_per_mwh,source\n"
                                    "2025-01-01T00:00:00+01:00,100.5,x\n2025-01-01T01:00:00+01:00,-3.25,x\n"
                                    "2025-01-01T02:00:00+01:00,0,x\n"))
    assert list(r.frame["resolution"]) == ["PT60M"] * 3
    assert prices_of(r.frame) == {utc("2024-12-31T23:00:00"): 100_500, utc("2025-01-01T00:00:00"): -3_250,
                                  utc("2025-01-01T01:00:00"): 0}


def test_generic_single_row_defaults_to_quarters(tmp_path):
    r = read_prices(write(tmp_path, "time,eur_per_kwh\n2025-06-01T10:00:00Z,0.1\n"))
    assert list(r.frame["resolution"]) == ["PT15M"]


def test_generic_resolution_column_allows_mixing(tmp_path):
    r = read_prices(write(tmp_path, "timestamp,resolution,eur_per_mwh\n2025-06-01T10:00Z,PT60M,50\n"
                                    "2025-06-01T11:00Z,PT15M,40\n2025-06-01T11:15Z,PT15M,41\n"
                                    "2025-06-01T11:30Z,PT15M,42\n2025-06-01T11:45Z,PT15M,43\n"))
    assert dict(r.frame["resolution"].value_counts().iter_rows()) == {"PT60M": 1, "PT15M": 4}
    assert r.anomalies == []


def test_generic_hour_overlapping_quarters_loses_to_them(tmp_path):
    r = read_prices(write(tmp_path, "timestamp,resolution,eur_per_mwh\n2025-06-01T10:00Z,PT60M,50\n"
                                    "2025-06-01T10:00Z,PT15M,40\n2025-06-01T10:15Z,PT15M,41\n"
                                    "2025-06-01T10:30Z,PT15M,42\n2025-06-01T10:45Z,PT15M,43\n"))
    assert set(r.frame["resolution"]) == {"PT15M"}
    (overlap,) = r.anomalies
    assert overlap.kind == OVERLAP and overlap.at == utc("2025-06-01T10:00:00") and overlap.row == 2


def test_generic_naive_timestamp_is_rejected_naming_the_row(tmp_path):
    err = rejected(write(tmp_path, "timestamp,eur_per_mwh\n2025-01-01T00:00:00Z,1\n2025-01-01T00:15:00,2\n"))
    assert err.rows == [3] and "no UTC offset" in str(err)


def test_generic_unparseable_timestamp_and_value_are_rejected(tmp_path):
    assert rejected(write(tmp_path, "timestamp,eur_per_mwh\n2025-13-45T00:00Z,1\n")).rows == [2]
    assert rejected(write(tmp_path, "timestamp,eur_per_mwh\n2025-01-01T00:00Z,1\n"
                                    "2025-01-01T00:15Z,one\n")).rows == [3]


def test_generic_mixed_spacing_without_resolution_is_rejected(tmp_path):
    err = rejected(write(tmp_path, "timestamp,eur_per_mwh\n2025-01-01T00:00Z,1\n2025-01-01T01:00Z,2\n"
                                   "2025-01-01T02:00Z,3\n2025-01-01T02:15Z,4\n"))
    assert err.rows == [5] and "mixed spacing" in str(err)


def test_generic_gap_duplicate_and_empty_value(tmp_path):
    r = read_prices(write(tmp_path, "timestamp;price_eur_per_kwh\n2025-01-01T00:00Z;0,1\n"
                                    "2025-01-01T00:15Z;0,2\n2025-01-01T00:15Z;0,2\n2025-01-01T01:00Z;\n"
                                    "2025-01-01T01:15Z;0,3\n"))
    assert prices_of(r.frame) == {utc("2025-01-01T00:00:00"): 100_000, utc("2025-01-01T00:15:00"): 200_000,
                                  utc("2025-01-01T01:15:00"): 300_000}
    by_kind = {a.kind: a for a in r.anomalies}
    assert set(by_kind) == {DUPLICATE, NO_DATA, GAP}
    assert by_kind[DUPLICATE].row == 4 and by_kind[NO_DATA].row == 5
    assert by_kind[GAP].at == utc("2025-01-01T00:30:00") and by_kind[GAP].detail.startswith("2 PT15M")


def test_generic_conflicting_duplicates_are_rejected_naming_both_rows(tmp_path):
    err = rejected(write(tmp_path, "timestamp,eur_per_mwh\n2025-01-01T00:00Z,1\n2025-01-01T00:00Z,2\n"))
    assert err.rows == [2, 3]


def test_generic_missing_price_column_and_off_grid_start_are_rejected(tmp_path):
    assert "price column" in str(rejected(write(tmp_path, "timestamp,price\n2025-01-01T00:00Z,1\n"),
                                          format="generic-csv"))
    err = rejected(write(tmp_path, "timestamp,eur_per_mwh\n2025-01-01T00:00Z,1\n2025-01-01T00:20Z,2\n"
                                   "2025-01-01T00:40Z,2\n"))
    assert "only 15- or 60-minute" in str(err) and err.rows == [3]


def test_generic_quarter_interval_off_its_grid_is_rejected(tmp_path):
    err = rejected(write(tmp_path, "timestamp,resolution,eur_per_mwh\n2025-01-01T00:05Z,PT15M,1\n"))
    assert err.rows == [2] and "not the start of a PT15M interval" in str(err)


def test_generic_dst_night_in_utc_reports_the_repeated_hour(tmp_path):
    starts = [utc("2025-10-26T00:00:00"), utc("2025-10-26T02:00:00")]  # 02:00 CEST, then 03:00 CET
    body = "".join(f"{t.isoformat()},PT60M,1\n" for t in starts)
    r = read_prices(write(tmp_path, "timestamp,resolution,eur_per_mwh\n" + body))
    assert [a.kind for a in r.anomalies] == [DST_REPEAT_MISSING]
    assert r.anomalies[0].at == starts[0] + timedelta(hours=1)
    assert DST_PHANTOM not in {a.kind for a in r.anomalies}
