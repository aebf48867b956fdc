"""Cumulative-register importers: Energie Manager Online and HomeWizard P1 (real files + rule cases)."""

from __future__ import annotations

import csv
import itertools
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from conftest import data_file
from kwartier.ingest import InputRejected, ReadOptions, read_readings
from kwartier.ingest.base import DST_PHANTOM, DST_REPEAT_MISSING, DUPLICATE, ENERGY_ROUNDED, GAP, NO_DATA
from kwartier.timegrid import local_day_bounds

EMO = "household_nl/energiemanageronline_2025_15min_cumulative.csv"
HW = "household_nl/homewizard_p1_2022-09_15min_cumulative.csv"
HW_HEADER = "time,Import T1 kWh,Import T2 kWh,Export T1 kWh,Export T2 kWh"


def _quarters_on_local_day(frame: pl.DataFrame, day: date) -> int:
    start, end = local_day_bounds(day)
    return frame.filter((pl.col("interval_start") >= start) & (pl.col("interval_start") < end)).height


def _emo_registers(path: Path, code: str) -> list[tuple[int, Decimal, int]]:
    """(moment, kWh reading, file line) of one register code, read with the stdlib."""
    lines = path.read_text(encoding="utf-8").splitlines()
    header = next(i for i, ln in enumerate(lines) if ln.strip())
    out = []
    for number, rec in enumerate(csv.reader(lines[header + 1 :], delimiter=";"), start=header + 2):
        if rec and rec[2] == code:
            out.append((int(rec[3]), Decimal(rec[5]) * abs(Decimal(rec[6])), number))
    return sorted(out)


def _write(tmp_path: Path, name: str, lines: list[str]) -> Path:
    p = tmp_path / name
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return p


# ---------------------------------------------------------------- Energie Manager Online


def test_emo_import_total_is_the_register_difference() -> None:
    path = data_file(EMO)
    regs = _emo_registers(path, "ellm")
    total_kwh = regs[-1][1] - regs[0][1]
    assert round(total_kwh) == 7524  # PROVENANCE 4a: +7,524 kWh over 2025
    across_gaps = sum(b[1] - a[1] for a, b in itertools.pairwise(regs) if b[0] - a[0] > 900)
    result = read_readings(path)
    assert result.format == "emo-csv"
    assert result.frame["import_wh"].sum() == int((total_kwh - across_gaps) * 1000)
    assert result.frame["import_wh"].null_count() == 0
    assert result.frame.height == sum(1 for a, b in itertools.pairwise(regs) if b[0] - a[0] == 900)


def test_emo_missing_import_reading_is_a_gap_with_its_energy() -> None:
    path = data_file(EMO)
    regs = _emo_registers(path, "ellm")
    holes = [(a, b) for a, b in itertools.pairwise(regs) if b[0] - a[0] > 900]
    assert len(holes) == 1
    (m0, v0, _), (_, v1, row1) = holes[0]
    result = read_readings(path)
    gaps = [a for a in result.anomalies if a.kind == GAP and a.row is not None]
    assert len(gaps) == 1
    # The reading at m0 + 900 is missing, so both intervals [m0, m0 + 900) and [m0 + 900, m0 + 1800) are.
    assert gaps[0].at == datetime.fromtimestamp(m0, UTC) and gaps[0].row == row1 == 1480
    assert "2 interval(s) missing" in gaps[0].detail
    assert f"{int((v1 - v0) * 1000)} Wh" in gaps[0].detail


def test_emo_export_register_ends_in_january_export_unknown_after() -> None:
    path = data_file(EMO)
    exp = _emo_registers(path, "eltm")
    assert exp[-1][1] - exp[0][1] == 0  # constant register: no export while it was read
    last = datetime.fromtimestamp(exp[-1][0], UTC)
    result = read_readings(path)
    frame = result.frame
    known = frame.filter(pl.col("export_wh").is_not_null())
    assert known["export_wh"].sum() == 0
    assert known.height == len(exp) - 1 and known["interval_start"].max() == last - timedelta(minutes=15)
    unknown = frame.filter(pl.col("interval_start") >= last)
    assert unknown["export_wh"].null_count() == unknown.height == frame["export_wh"].null_count()
    tail = [a for a in result.anomalies if a.kind == GAP and a.at == last]
    assert len(tail) == 1 and f"null) for {unknown.height} interval(s)" in tail[0].detail


def test_emo_connection_is_the_ean_and_dst_is_unambiguous() -> None:
    path = data_file(EMO)
    with path.open(encoding="utf-8") as fh:
        eans = {rec[1] for rec in csv.reader(fh, delimiter=";") if len(rec) > 1 and rec[1] != "ean"}
    result = read_readings(path)
    assert {result.connection} == eans
    # moment-date repeats 02:00-02:45 on 2025-10-26 and skips 02:00 on 2025-03-30; the epoch does not
    assert _quarters_on_local_day(result.frame, date(2025, 10, 26)) == 100
    assert _quarters_on_local_day(result.frame, date(2025, 3, 30)) == 92
    assert not [a for a in result.anomalies if a.kind in (DUPLICATE, DST_PHANTOM, DST_REPEAT_MISSING)]


def _emo_lines(n: int = 8) -> list[str]:
    lines = data_file(EMO).read_text(encoding="utf-8").splitlines()
    return lines[: 2 + n]  # blank line, header, n readings (ellm)


def test_emo_backwards_register_rejected_naming_both_rows(tmp_path: Path) -> None:
    lines = _emo_lines()
    f = lines[6].split(";")
    f[5] = str(int(f[5]) - 10_000)
    lines[6] = ";".join(f)
    p = _write(tmp_path, "back.csv", lines)
    with pytest.raises(InputRejected, match=r"back\.csv, rows 6, 7: register ellm goes backwards"):
        read_readings(p)


@pytest.mark.parametrize(
    ("column", "value", "problem"),
    [
        (2, "elgm", r"row 5: register code 'elgm' is not known"),
        (3, "17356x", r"row 5: moment '17356x' is not a Unix time"),
        (3, "1735687801", r"row 5: moment 1735687801 is not on the quarter-hour grid"),
        (1, "871717720000099999", r"rows 3, 5: more than one EAN"),
        (5, "abc", r"row 5: column 'value': 'abc' is not a number"),
    ],
)
def test_emo_bad_rows_rejected(tmp_path: Path, column: int, value: str, problem: str) -> None:
    lines = _emo_lines()
    f = lines[4].split(";")
    f[column] = value
    lines[4] = ";".join(f)
    p = _write(tmp_path, "bad_emo.csv", lines)
    with pytest.raises(InputRejected, match=r"bad_emo\.csv, " + problem):
        read_readings(p)


def test_emo_missing_column_and_empty_value(tmp_path: Path) -> None:
    lines = _emo_lines()
    p = _write(tmp_path, "nofactor.csv", [";".join(ln.split(";")[:6]) for ln in lines])
    with pytest.raises(InputRejected, match=r"nofactor\.csv, row 2: missing column\(s\) \['factor'\]"):
        read_readings(p, format="emo-csv")
    f = lines[5].split(";")
    f[5] = ""
    lines[5] = ";".join(f)
    result = read_readings(_write(tmp_path, "hole.csv", lines))
    found = [(a.kind, a.row) for a in result.anomalies if a.kind in (NO_DATA, GAP)]
    assert found[:2] == [(NO_DATA, 6), (GAP, 7)]
    assert result.frame.height == 8 - 1 - 2


def test_emo_negative_factor_marks_export_not_a_falling_register(tmp_path: Path) -> None:
    lines = _emo_lines(4)
    export = []
    for i, ln in enumerate(lines[2:]):
        f = ln.split(";")
        f[2], f[5], f[6] = "eltm", str(33038920 + 250 * i), "-0.001"
        export.append(";".join(f))
    result = read_readings(_write(tmp_path, "both.csv", [*lines, *export]))
    assert result.frame["export_wh"].to_list() == [250, 250, 250]
    assert result.anomalies == []


def test_emo_reading_finer_than_a_wh_is_rounded(tmp_path: Path) -> None:
    lines = _emo_lines(4)
    out = lines[:2]
    for ln in lines[2:]:
        f = ln.split(";")
        f[5], f[6] = f[5] + "5", "0.0001"  # ten times finer: 0.1 Wh resolution
        out.append(";".join(f))
    result = read_readings(_write(tmp_path, "fine.csv", out))
    assert [a.kind for a in result.anomalies if a.kind == ENERGY_ROUNDED] == [ENERGY_ROUNDED]
    regs = [Decimal(ln.split(";")[5]) * Decimal("0.0001") * 1000 for ln in out[2:]]
    assert result.frame["import_wh"].sum() == round(regs[-1]) - round(regs[0])


# ---------------------------------------------------------------- HomeWizard


def test_homewizard_month_totals_match_independent_register_differences() -> None:
    path = data_file(HW)
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    diff = {c: Decimal(rows[-1][c]) - Decimal(rows[0][c]) for c in HW_HEADER.split(",")[1:]}
    # PROVENANCE 4a: import 855.8 + 500.6, export 285.0 + 576.1 kWh
    assert [round(v, 1) for v in diff.values()] == [Decimal(x) for x in ("855.8", "500.6", "285.0", "576.1")]
    result = read_readings(path)
    assert result.format == "homewizard-csv"
    assert result.frame["import_wh"].sum() == int((diff["Import T1 kWh"] + diff["Import T2 kWh"]) * 1000)
    assert result.frame["export_wh"].sum() == int((diff["Export T1 kWh"] + diff["Export T2 kWh"]) * 1000)
    assert result.frame.height == len(rows) - 1
    assert result.anomalies == []


def test_homewizard_time_is_local_wall_clock() -> None:
    path = data_file(HW)
    first = read_readings(path).frame["interval_start"][0]
    assert first == datetime(2022, 8, 31, 22, tzinfo=UTC)  # 2022-09-01 00:00 CEST
    assert read_readings(path, options=ReadOptions(tz="UTC")).frame["interval_start"][0] == datetime(
        2022, 9, 1, tzinfo=UTC)


def _hw_file(tmp_path: Path, name: str, stamps: list[str], step_wh: int = 100) -> tuple[Path, int]:
    """A HomeWizard file whose four registers each rise ``step_wh`` per row; returns it and the rise."""
    lines = [HW_HEADER]
    for i, s in enumerate(stamps):
        v = Decimal(1000) + Decimal(i * step_wh) / 1000
        lines.append(f"{s},{v},{v + 1},{v + 2},{v + 3}")
    return _write(tmp_path, name, lines), (len(stamps) - 1) * step_wh


def _local_stamps(day: str, hours: list[int]) -> list[str]:
    return [f"{day} {h:02d}:{m:02d}" for h in hours for m in (0, 15, 30, 45)]


def test_homewizard_spring_phantom_rows_dropped_without_losing_energy(tmp_path: Path) -> None:
    stamps = _local_stamps("2023-03-26", [0, 1, 2, 3, 4])  # 02:00-02:45 do not exist
    p, rise = _hw_file(tmp_path, "spring.csv", stamps)
    result = read_readings(p)
    phantoms = [a for a in result.anomalies if a.kind == DST_PHANTOM]
    assert [a.row for a in phantoms] == [10, 11, 12, 13]
    assert [a.kind for a in result.anomalies if a.kind != DST_PHANTOM] == []
    assert result.frame.height == 15  # 16 real readings -> 15 intervals, continuous in UTC
    assert result.frame["import_wh"].sum() == 2 * rise  # the phantom rows' rise lands in the next quarter


def test_homewizard_repeated_hour_listed_once_is_reported(tmp_path: Path) -> None:
    stamps = _local_stamps("2022-10-30", [0, 1, 2, 3])  # 02:xx only once: read as summer time
    p, _ = _hw_file(tmp_path, "autumn.csv", stamps)
    result = read_readings(p)
    assert [a.kind for a in result.anomalies] == [DST_REPEAT_MISSING]
    a = result.anomalies[0]
    assert a.at == datetime(2022, 10, 30, 0, 45, tzinfo=UTC) and a.row == 14  # 03:00 (+01:00) row
    assert "Import T1 kWh 100 Wh" in a.detail
    assert result.frame.height == 15 - 1  # 16 readings, one span of 5 quarters not imported


def test_homewizard_repeated_hour_twice_gives_a_100_quarter_day(tmp_path: Path) -> None:
    stamps = [*_local_stamps("2022-10-30", list(range(3))), *_local_stamps("2022-10-30", list(range(2, 24))),
              "2022-10-31 00:00"]
    p, rise = _hw_file(tmp_path, "autumn_full.csv", stamps)
    result = read_readings(p)
    assert result.anomalies == []
    assert _quarters_on_local_day(result.frame, date(2022, 10, 30)) == 100
    assert result.frame["import_wh"].sum() == 2 * rise


def test_homewizard_gap_duplicate_empty_and_hourly(tmp_path: Path) -> None:
    lines = data_file(HW).read_text(encoding="utf-8").splitlines()
    p = _write(tmp_path, "holes.csv", [*lines[:4], *lines[6:9], lines[8], lines[9].split(",")[0] + ",,,,"])
    result = read_readings(p)
    assert [(a.kind, a.row) for a in result.anomalies] == [(NO_DATA, 9), (DUPLICATE, 8), (GAP, 5)]
    assert result.anomalies[2].at == datetime(2022, 8, 31, 22, 30, tzinfo=UTC)
    hourly = [lines[0], *[ln for ln in lines[1:40] if ln[14:16] == "00"]]
    result = read_readings(_write(tmp_path, "hourly.csv", hourly))
    assert set(result.frame["resolution"]) == {"PT60M"} and result.frame.height == len(hourly) - 2


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ("2022-09-01 00:15,8350.385,4650.468,3095.078", r"row 3: 4 fields where the header has 5"),
        ("2022-09-01 0015,8350.385,4650.468,3095.078,7450.301", r"row 3: time '2022-09-01 0015'"),
        ("2022-09-01 00:15,8350.385,4650.468,3095.078,x", r"row 3: column 'Export T2 kWh': 'x'"),
        ("2022-09-01 00:15,8350.100,4650.468,3095.078,7450.301",
         r"rows 2, 3: register Import T1 kWh goes back"),
    ],
)
def test_homewizard_bad_rows_rejected(tmp_path: Path, row: str, problem: str) -> None:
    lines = data_file(HW).read_text(encoding="utf-8").splitlines()
    p = _write(tmp_path, "bad_hw.csv", [lines[0], lines[1], row, lines[3]])
    with pytest.raises(InputRejected, match=r"bad_hw\.csv, " + problem):
        read_readings(p)


def test_homewizard_missing_export_columns_rejected(tmp_path: Path) -> None:
    p = _write(tmp_path, "noexp.csv", ["time,Import T1 kWh,Import T2 kWh", "2022-09-01 00:00,1,2"])
    with pytest.raises(InputRejected, match=r"noexp\.csv, row 1: missing column"):
        read_readings(p, format="homewizard-csv")
