"""DSMR-reader hourly export: detection, year totals, DST by offsets, gaps, duplicates, rejections."""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import pairwise
from pathlib import Path

import polars as pl
import pytest
from tests.conftest import data_file

from kwartier.ingest import InputRejected, read_readings
from kwartier.ingest.base import DUPLICATE, ENERGY_ROUNDED, GAP

REAL = "household_nl/dsmrreader_export_2024_hourly.csv"
HEADER = (
    "Hour Start,Electricity 1 (Dutch Users: Low Tariff),Electricity 2 (Dutch Users: Normal Tariff),"
    "Electricity 1 Returned (Dutch Users: Low Tariff),Electricity 2 Returned (Dutch Users: Normal Tariff),Gas"
)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture(scope="module")
def real():
    return read_readings(data_file(REAL))


@pytest.fixture(scope="module")
def source_rows() -> list[dict[str, str]]:
    with data_file(REAL).open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def write(tmp_path: Path, *rows: str, header: str = HEADER) -> Path:
    p = tmp_path / "dsmrreader-export.csv"
    p.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return p


def test_detected_and_kept_hourly(real, source_rows) -> None:
    assert real.format == "dsmrreader-csv"
    frame = real.frame
    assert frame.height == len(source_rows) == 8754
    assert frame["resolution"].unique().to_list() == ["PT60M"]
    assert (frame["interval_start"].dt.epoch("s") % 3600 == 0).all()
    assert frame["status"].unique().to_list() == ["actual"]
    assert frame["interval_start"][0] == utc(2023, 12, 31, 23)  # 2024-01-01T00:00+01:00


def test_year_totals_match_provenance_and_an_independent_sum(real, source_rows) -> None:
    cols = list(source_rows[0])
    sums = {c: sum(Decimal(r[c]) for r in source_rows) for c in cols[1:5]}
    t1, t2, r1, r2 = (sums[c] for c in cols[1:5])
    # PROVENANCE.md: import 1,829 + 1,914, export 651 + 1,477 kWh
    assert [round(v) for v in (t1, t2, r1, r2)] == [1829, 1914, 651, 1477]
    assert real.frame["import_wh"].sum() == (t1 + t2) * 1000
    assert real.frame["export_wh"].sum() == (r1 + r2) * 1000


def test_autumn_repeated_hour_is_two_hours_by_offset(real, source_rows) -> None:
    twice = [r for r in source_rows if r["Hour Start"].startswith("2024-10-27T02:00")]
    assert [r["Hour Start"][-6:] for r in twice] == ["+02:00", "+01:00"]
    hours = real.frame.filter(pl.col("interval_start").is_in([utc(2024, 10, 27, 0), utc(2024, 10, 27, 1)]))
    cols = list(source_rows[0])
    assert hours["import_wh"].to_list() == [
        int((Decimal(r[cols[1]]) + Decimal(r[cols[2]])) * 1000) for r in twice
    ]
    assert not [a for a in real.anomalies if a.kind.startswith("dst")]


def test_spring_forward_hour_simply_absent(real) -> None:
    day = real.frame.filter(pl.col("interval_start").is_between(utc(2024, 3, 30, 23), utc(2024, 3, 31, 3)))
    assert day["interval_start"].to_list() == [utc(2024, 3, 30, 23) + timedelta(hours=h) for h in range(5)]


def test_gaps_reported_where_the_export_skips_hours(real, source_rows) -> None:
    starts = [datetime.fromisoformat(r["Hour Start"]).astimezone(UTC) for r in source_rows]
    holes = [(a + timedelta(hours=1), int((b - a) / timedelta(hours=1)) - 1, i + 3)
             for i, (a, b) in enumerate(pairwise(starts)) if b - a > timedelta(hours=1)]
    assert [(at, n) for at, n, _ in holes] == [(utc(2024, 3, 16, 12), 29), (utc(2024, 3, 21, 5), 1)]
    gaps = [a for a in real.anomalies if a.kind == GAP]
    assert [(a.at, a.row) for a in gaps] == [(at, row) for at, _, row in holes]
    assert [a.detail.split(" ")[0] for a in gaps] == ["29", "1"]
    assert real.frame.filter(pl.col("interval_start").is_between(utc(2024, 3, 16, 12), utc(2024, 3, 17, 16)))\
        .is_empty()


def test_identical_duplicate_kept_once(tmp_path) -> None:
    p = write(tmp_path, "2024-01-01T00:00:00+01:00,0.1,0,0,0,0", "2024-01-01T01:00:00+01:00,0.2,0,0,0.5,0",
              "2024-01-01T01:00:00+01:00,0.2,0,0,0.5,0", "2024-01-01T02:00:00+01:00,0.3,0.1,0,0,0")
    result = read_readings(p)
    assert result.frame["import_wh"].to_list() == [100, 200, 400]
    assert result.frame["export_wh"].to_list() == [0, 500, 0]
    dups = [a for a in result.anomalies if a.kind == DUPLICATE]
    assert [(a.at, a.row) for a in dups] == [(utc(2024, 1, 1, 0), 4)]


def test_conflicting_duplicate_rejected_naming_both_rows(tmp_path) -> None:
    p = write(tmp_path, "2024-01-01T00:00:00+01:00,0.1,0,0,0,0", "2024-01-01T00:00:00+01:00,0.2,0,0,0,0")
    with pytest.raises(InputRejected, match=r"dsmrreader-export\.csv, rows 2, 3: conflicting"):
        read_readings(p)


def test_fractional_wh_rounded_with_carry(tmp_path) -> None:
    p = write(tmp_path, *(f"2024-01-01T0{h}:00:00+01:00,0.0005,0.0001,0,0,0" for h in range(4)))
    result = read_readings(p)
    assert result.frame["import_wh"].sum() == 2  # 4 x 0.6 Wh = 2.4 Wh -> 2, kept by the carry
    assert [a.kind for a in result.anomalies] == [ENERGY_ROUNDED]


@pytest.mark.parametrize(
    ("rows", "header", "message"),
    [
        (["2024-01-01T00:00:00+01:00,0.1,0,0,0,0", "2024-13-01T01:00:00+01:00,0.1,0,0,0,0"], HEADER,
         r"row 3: Hour Start '2024-13-01T01:00:00\+01:00' is not"),
        (["2024-01-01T00:00:00,0.1,0,0,0,0"], HEADER, r"row 2: Hour Start .* with a UTC offset"),
        (["2024-01-01T00:30:00+01:00,0.1,0,0,0,0"], HEADER, r"row 2: .* is not the start of an hour"),
        (["2024-01-01T00:00:00+01:00,0.1,0,0,0,0", "2024-01-01T01:00:00+01:00,abc,0,0,0,0"], HEADER,
         r"row 3: column 'Electricity 1 .*'abc' is not a number"),
        (["2024-01-01T00:00:00+01:00,0.1,0,0,0,0", "2024-01-01T01:00:00+01:00,0.1,0"], HEADER,
         r"row 3: column 'Electricity 1 Returned .* is empty \(a truncated line\?\)"),
        (["2024-01-01T00:00:00+01:00,0.1,-0.2,0,0,0"], HEADER, r"row 2: .* is negative"),
        (["2024-01-01T00:00:00+01:00,0.1,0,0,0"], HEADER.rsplit(",", 2)[0] + ",Gas",
         r"row 1: missing column\(s\) \['Electricity 2 Returned'\]"),
    ],
)
def test_bad_input_rejected_naming_file_and_row(tmp_path, rows, header, message) -> None:
    p = write(tmp_path, *rows, header=header)
    with pytest.raises(InputRejected, match=r"dsmrreader-export\.csv, " + message):
        read_readings(p, format="dsmrreader-csv")


def test_sniffer_claims_only_dsmrreader_files() -> None:
    from kwartier.ingest.meters_dsmrreader import detect

    for other in ("household_nl/p1mon_e_history_uur.csv",
                  "household_be/fluvius_2023-10-22_2023-12-31_15min.csv",
                  "household_nl/homewizard_p1_2022-09_15min_cumulative.csv"):
        p = data_file(other)
        assert not detect(p, p.read_text(encoding="utf-8-sig")[:65536])
