"""Generic interval CSV importer: a real year converted to the format, every column variant and rule."""

from __future__ import annotations

import csv
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from conftest import data_file
from kwartier.ingest import InputRejected, read_readings
from kwartier.ingest.base import DST_REPEAT_MISSING, DUPLICATE, ENERGY_ROUNDED, GAP, NO_DATA

SMP_2023 = "household_nl/slimmemeterportal_2023_15min.csv"


def _write(tmp_path: Path, name: str, lines: list[str]) -> Path:
    p = tmp_path / name
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return p


def _kwh(text: str) -> Decimal:
    return Decimal(text.replace(",", ".")) if text else Decimal(0)


def _generic_from_smp(tmp_path: Path) -> tuple[Path, Decimal, int]:
    """The real SlimmeMeterPortal 2023 year rewritten (stdlib only) as a generic CSV with interval starts."""
    with data_file(SMP_2023).open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    out = tmp_path / "year.csv"
    total = Decimal(0)
    with out.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["timestamp", "import_kwh", "export_kwh"])
        for r in rows:
            end = datetime.strptime(r["datum_tijd"], "%d-%m-%Y %H:%M:%S %z")
            imp = _kwh(r["levering_normaal"]) + _kwh(r["levering_laag"])
            exp = _kwh(r["teruglevering_normaal"]) + _kwh(r["teruglevering_laag"])
            total += imp
            w.writerow([(end - timedelta(minutes=15)).isoformat(), str(imp), str(exp)])
    return out, total, len(rows)


def test_a_real_year_in_generic_form_is_detected_and_totals_kept(tmp_path: Path) -> None:
    path, total_kwh, n = _generic_from_smp(tmp_path)
    began = time.perf_counter()
    result = read_readings(path)
    elapsed = time.perf_counter() - began
    assert result.format == "generic-csv"
    assert result.frame.height == n == 35040
    assert result.frame["import_wh"].sum() == int(total_kwh * 1000)
    assert round(total_kwh) == 8784  # PROVENANCE 4a
    assert set(result.frame["resolution"]) == {"PT15M"} and set(result.frame["status"]) == {"actual"}
    assert result.anomalies == []
    assert elapsed < 5.0, f"reading 35,040 rows took {elapsed:.2f} s"


def test_semicolon_wh_columns_interval_start_status_and_z(tmp_path: Path) -> None:
    p = _write(tmp_path, "wh.csv", [
        "interval_start;import_wh;export_wh;status",
        "2025-06-01T10:00:00Z;120;0;actual",
        "2025-06-01T10:15:00Z;0;340;estimated",
        "2025-06-01T12:30:00+02:00;5;6;",
    ])
    frame = read_readings(p).frame
    assert frame["interval_start"].to_list() == [datetime(2025, 6, 1, 10, tzinfo=UTC),
                                                 datetime(2025, 6, 1, 10, 15, tzinfo=UTC),
                                                 datetime(2025, 6, 1, 10, 30, tzinfo=UTC)]
    assert frame["import_wh"].to_list() == [120, 0, 5] and frame["export_wh"].to_list() == [0, 340, 6]
    assert frame["status"].to_list() == ["actual", "estimated", "actual"]


def test_resolution_given_inferred_hourly_and_single_row(tmp_path: Path) -> None:
    hourly = _write(tmp_path, "h.csv", ["timestamp,import_kwh,export_kwh", "2025-01-01T00:00:00+01:00,1.5,0",
                                         "2025-01-01T01:00:00+01:00,1.25,0", "2025-01-01T03:00:00+01:00,1,0"])
    result = read_readings(hourly)
    assert set(result.frame["resolution"]) == {"PT60M"} and result.frame.height == 3
    assert [(a.kind, a.at, a.row) for a in result.anomalies] == [
        (GAP, datetime(2025, 1, 1, 1, tzinfo=UTC), 4)]  # 02:00 (+01:00) missing
    given = _write(tmp_path, "g.csv", ["timestamp,import_wh,export_wh,resolution",
                                        "2025-01-01T00:00:00Z,1000,0,PT60M",
                                        "2025-01-01T01:00:00Z,900,0,pt15m"])
    assert read_readings(given).frame["resolution"].to_list() == ["PT60M", "PT15M"]
    single = _write(tmp_path, "s.csv", ["timestamp,import_wh,export_wh", "2025-01-01T00:45:00Z,10,0"])
    assert read_readings(single).frame["resolution"].to_list() == ["PT15M"]


def test_fractions_of_a_wh_are_carried_and_reported(tmp_path: Path) -> None:
    values = ["0.0004", "0.0004", "0.0004", "0.0014"]
    p = _write(tmp_path, "r.csv", ["timestamp,import_kwh,export_kwh",
                                    *(f"2025-01-01T00:{15 * i:02d}:00Z,{v},0" for i, v in enumerate(values))])
    result = read_readings(p)
    exact_wh = sum(Decimal(v) for v in values) * 1000
    assert result.frame["import_wh"].sum() == round(exact_wh) == 3  # 1.2 + 1.4 Wh: none lost per row
    rounded = [a for a in result.anomalies if a.kind == ENERGY_ROUNDED]
    assert len(rounded) == 1 and rounded[0].detail.startswith("4 value(s) of 'import_kwh'")


def test_duplicates_gaps_and_missing_repeated_hour(tmp_path: Path) -> None:
    p = _write(tmp_path, "d.csv", [
        "timestamp,import_wh,export_wh",
        "2025-10-26T02:30:00+02:00,10,0",
        "2025-10-26T02:45:00+02:00,10,0",
        "2025-10-26T02:45:00+02:00,10,0",
        "2025-10-26T03:00:00+01:00,10,0",   # 02:00-02:45 (+01:00) absent
        "2025-10-26T04:00:00+01:00,10,0",   # 03:15-03:45 absent
    ])
    result = read_readings(p)
    assert [(a.kind, a.at, a.row) for a in result.anomalies] == [
        (DUPLICATE, datetime(2025, 10, 26, 0, 45, tzinfo=UTC), 4),
        (DST_REPEAT_MISSING, datetime(2025, 10, 26, 1, tzinfo=UTC), 5),
        (GAP, datetime(2025, 10, 26, 2, 15, tzinfo=UTC), 6),
    ]
    conflict = _write(tmp_path, "c.csv", ["timestamp,import_wh,export_wh", "2025-01-01T00:00:00Z,1,0",
                                           "2025-01-01T01:00:00+01:00,2,0"])
    with pytest.raises(InputRejected, match=r"c\.csv, rows 2, 3: conflicting duplicate"):
        read_readings(conflict)


def test_empty_cells_are_unknown_and_empty_rows_skipped(tmp_path: Path) -> None:
    p = _write(tmp_path, "e.csv", ["timestamp,import_kwh,export_kwh", "2025-01-01T00:00:00Z,0.1,",
                                    "", "2025-01-01T00:15:00Z,,", "2025-01-01T00:30:00Z,0.2,0"])
    result = read_readings(p)
    assert [(a.kind, a.row) for a in result.anomalies] == [(NO_DATA, 4), (NO_DATA, 2), (GAP, 5)]
    assert result.frame["export_wh"].to_list() == [None, 0]
    assert result.frame["import_wh"].to_list() == [100, 200]
    assert isinstance(result.frame["export_wh"].dtype, pl.Int64)


KWH = "timestamp,import_kwh,export_kwh"
WH = "timestamp,import_wh,export_wh"
T0 = "2025-01-01T00:00:00Z"


@pytest.mark.parametrize(
    ("lines", "problem"),
    [
        ([KWH, "2025-01-01T00:00:00,0.1,0"], r"row 2: timestamp '2025-01-01T00:00:00' has no UTC offset"),
        ([KWH, "yesterday+01:00,0.1,0"], r"row 2: timestamp 'yesterday\+01:00' is not"),
        ([KWH.replace(",", ";"), f"{T0};0,1;0"], r"row 2: column 'import_kwh'.* comma"),
        ([KWH, f"{T0},0.1,zero"], r"row 2: column 'export_kwh'"),
        ([WH, f"{T0},1.5,0"], r"row 2: column 'import_wh'.* whole"),
        ([WH, f"{T0},-1,0"], r"row 2: column 'import_wh'.* negative"),
        ([WH + ",status", f"{T0},1,0,guessed"], r"row 2: status 'guessed'"),
        ([WH + ",resolution", f"{T0},1,0,P1D"], r"row 2: resolution 'P1D'"),
        ([WH, "2025-01-01T00:10:00Z,1,0"], r"row 2: interval start .* not on the"),
        ([WH + ",resolution", f"{T0},1,0,PT60M", "2025-01-01T00:15:00Z,1,0,PT15M"],
         r"rows 2, 3: intervals overlap"),
        ([WH, f"{T0},1,0", "2025-01-01T00:15:00Z,1"], r"row 3: 2 fields where the header has 3"),
        (["timestamp,import_wh", f"{T0},1"], r"row 1: missing column export_kwh or export_wh"),
        (["timestamp,import_wh,import_kwh,export_wh", f"{T0},1,0.001,0"], r"row 1: both"),
    ],
)
def test_bad_input_rejected_naming_file_and_row(tmp_path: Path, lines: list[str], problem: str) -> None:
    p = _write(tmp_path, "bad_generic.csv", lines)
    with pytest.raises(InputRejected, match=r"bad_generic\.csv, " + problem):
        read_readings(p, format="generic-csv")


def test_naive_file_is_still_detected_so_the_user_sees_why(tmp_path: Path) -> None:
    p = _write(tmp_path, "naive.csv", ["timestamp,import_kwh,export_kwh", "2025-01-01 00:00,0.1,0"])
    with pytest.raises(InputRejected, match=r"naive\.csv, row 2: .*no UTC offset"):
        read_readings(p)
