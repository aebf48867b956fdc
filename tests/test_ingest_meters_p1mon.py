"""P1-Monitor dumps (uur/min CSV, xlsx): register energy, stated energy, glitches, gaps, DST, rejections."""

from __future__ import annotations

import csv
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from itertools import pairwise
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl
import pytest
from tests.conftest import data_file

from kwartier.ingest import InputRejected, read_readings
from kwartier.ingest.base import (
    DST_PHANTOM,
    DST_REPEAT_MISSING,
    DUPLICATE,
    ENERGY_ROUNDED,
    GAP,
    REGISTER_GLITCH,
    REGISTER_MISMATCH,
)

UUR = "household_nl/p1mon_e_history_uur.csv"
MIN = "household_nl/p1mon_e_history_min.csv"
XLSX = "household_nl/p1mon_e_historie.db.xlsx"
HEADER = ("TIMESTAMP,VERBR_KWH_181,VERBR_KWH_182,GELVR_KWH_281,GELVR_KWH_282,VERBR_KWH_X,GELVR_KWH_X,"
          "TARIEFCODE,VERBR_GAS_2421,VERBR_GAS_X")
IMPORT = ("VERBR_KWH_181", "VERBR_KWH_182")
EXPORT = ("GELVR_KWH_281", "GELVR_KWH_282")
AMS = ZoneInfo("Europe/Amsterdam")
HOUR, MINUTE, QUARTER = timedelta(hours=1), timedelta(minutes=1), timedelta(minutes=15)

Rows = dict[str, tuple[int, dict[str, str]]]


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def repeated(stamp: str) -> bool:
    """A local wall-clock time that occurs twice (the autumn hour)."""
    naive = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S")
    return naive.replace(tzinfo=AMS, fold=0).utcoffset() != naive.replace(tzinfo=AMS, fold=1).utcoffset()


def start_of(stamp: str) -> datetime:
    """UTC start of a row's period; a repeated time listed once (merged) is its second occurrence."""
    naive = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S")
    return naive.replace(tzinfo=AMS, fold=int(repeated(stamp))).astimezone(UTC)


def out_of_line(rows: Rows) -> set[int]:
    """Lines whose register is above the next or below the previous row's while those two are in order."""
    values = [(line, r) for line, r in rows.values()]
    return {
        line
        for (_, a), (line, x), (_, b) in zip(values, values[1:], values[2:], strict=False)
        for c in (*IMPORT, *EXPORT)
        if Decimal(a[c]) <= Decimal(b[c]) and not Decimal(a[c]) <= Decimal(x[c]) <= Decimal(b[c])
    }


def holes(rows: Rows, period: timedelta, step: timedelta) -> dict[int, tuple[datetime, int, str, str]]:
    """Where the registers were not read for a while, from the raw rows (glitch rows left out).

    Each row is read at the end of its period; boundary rows are those read on the ``step`` grid.
    Rows ``a`` and ``b`` read more than a step apart: the intervals from the end of ``a`` to the end of
    ``b`` are missing. Returns line of ``b`` -> (first missing interval, count, stamp a, stamp b).
    """
    dropped = out_of_line(rows)
    read = [(start_of(stamp) + period, stamp, line) for stamp, (line, _) in rows.items() if line not in dropped]
    bounds = [(t, stamp, line) for t, stamp, line in read if (t - utc(2000, 1, 1)) % step == timedelta(0)]
    return {line: (ta, (tb - ta) // step, a, b) for (ta, a, _), (tb, b, line) in pairwise(bounds) if tb - ta > step}


def moved_wh(rows: Rows, a: str, b: str, registers: tuple[str, ...]) -> int:
    return int((kwh(rows, b, registers) - kwh(rows, a, registers)) * 1000)


def holds(detail: str, count: int, import_wh: int, export_wh: int) -> bool:
    """The anomaly detail states the count of missing intervals and the energy per direction."""
    imp, exp = detail.split("; register export")
    return f"{count} interval(s) missing; the {import_wh} Wh" in imp and \
        f"{count} interval(s) missing; the {export_wh} Wh" in exp


def source(rel: str) -> Rows:
    """TIMESTAMP -> (physical line, row), read with the stdlib (TIMESTAMPs are unique in these dumps)."""
    with data_file(rel).open(newline="", encoding="utf-8") as fh:
        return {r["TIMESTAMP"]: (i, r) for i, r in enumerate(csv.DictReader(fh), start=2)}


def kwh(rows: Rows, stamp: str, registers: tuple[str, ...]) -> Decimal:
    return sum((Decimal(rows[stamp][1][c]) for c in registers), Decimal(0))


@pytest.fixture(scope="module")
def uur():
    return read_readings(data_file(UUR))


@pytest.fixture(scope="module")
def uur_rows():
    return source(UUR)


@pytest.fixture(scope="module")
def minute():
    return read_readings(data_file(MIN))


@pytest.fixture(scope="module")
def min_rows():
    return source(MIN)


def energy(result, start: datetime, end: datetime, column: str) -> int:
    return result.frame.filter(pl.col("interval_start").is_between(start, end, closed="left"))[column].sum()


def test_uur_detected_hourly(uur) -> None:
    assert uur.format == "p1mon-uur-csv"
    assert uur.frame["resolution"].unique().to_list() == ["PT60M"]
    assert (uur.frame["interval_start"].dt.epoch("s") % 3600 == 0).all()
    # the first row is read at 2021-03-03 13:00 local (end of its hour): the first hour is 12:00Z..13:00Z
    assert uur.frame["interval_start"][0] == utc(2021, 3, 3, 12)
    assert uur.registers is not None
    assert set(uur.registers["register"].unique()) == {"import_t1", "import_t2", "export_t1", "export_t2"}


def test_uur_totals_over_five_months_equal_the_register_movement(uur, uur_rows) -> None:
    # Local 2023-09-01 .. 2024-02-01: no gaps or glitches, one merged autumn hour (not imported).
    first, last, merged, before = "2023-08-31 23:00:00", "2024-01-31 23:00:00", "2023-10-29 02:00:00", \
        "2023-10-29 01:00:00"
    for column, regs in (("import_wh", IMPORT), ("export_wh", EXPORT)):
        moved = kwh(uur_rows, last, regs) - kwh(uur_rows, first, regs)
        held_by_dst = kwh(uur_rows, merged, regs) - kwh(uur_rows, before, regs)
        assert energy(uur, utc(2023, 8, 31, 22), utc(2024, 1, 31, 23), column) == (moved - held_by_dst) * 1000


def test_uur_stated_energy_glitch_on_2023_10_29(uur, uur_rows) -> None:
    line, r = uur_rows["2023-10-29 02:00:00"]
    stated = Decimal(r["VERBR_KWH_X"]).quantize(Decimal("0.001"))
    moved = kwh(uur_rows, "2023-10-29 02:00:00", IMPORT) - kwh(uur_rows, "2023-10-29 01:00:00", IMPORT)
    assert (stated, moved) == (Decimal("22.310"), Decimal("4.306"))
    found = [a for a in uur.anomalies if a.kind == REGISTER_MISMATCH and a.row == line]
    assert len(found) == 1
    assert found[0].at == utc(2023, 10, 29, 0)  # the span starts at local 02:00 summer time
    assert "VERBR_KWH_X states 22310 Wh import" in found[0].detail and "moved 4306 Wh" in found[0].detail


def test_uur_merged_autumn_hour_reported_with_its_energy(uur, uur_rows) -> None:
    merged = [stamp for stamp in uur_rows if repeated(stamp)]
    assert merged == ["2021-10-31 02:00:00", "2022-10-30 02:00:00", "2023-10-29 02:00:00"]  # each listed once
    stamps = list(uur_rows)
    # the row before (01:00 CEST) is read at 02:00 CEST; the merged row at the end of 02:00 CET: 2 hours apart
    expected = [(start_of(stamps[stamps.index(s) - 1]) + HOUR, uur_rows[s][0]) for s in merged]
    dst = [a for a in uur.anomalies if a.kind == DST_REPEAT_MISSING]
    assert [(a.at, a.row) for a in dst] == expected
    assert dst[-1].at == utc(2023, 10, 29, 0)
    for a, stamp in zip(dst, merged, strict=True):
        before = stamps[stamps.index(stamp) - 1]
        count = (start_of(stamp) + HOUR - a.at) // HOUR
        assert count == 2
        assert holds(a.detail, count, moved_wh(uur_rows, before, stamp, IMPORT),
                     moved_wh(uur_rows, before, stamp, EXPORT)), a.detail
    assert "the 4306 Wh" in dst[-1].detail
    assert not [a for a in uur.anomalies if a.kind == GAP and a.row in {row for _, row in expected}]
    starts = set(uur.frame["interval_start"].to_list())
    assert utc(2023, 10, 28, 23) in starts and utc(2023, 10, 29, 2) in starts
    assert utc(2023, 10, 29, 0) not in starts and utc(2023, 10, 29, 1) not in starts


def test_uur_spring_hour_absent_without_anomaly(uur, uur_rows) -> None:
    assert "2023-03-26 02:00:00" not in uur_rows
    got = dict(uur.frame.select("interval_start", "import_wh").iter_rows())
    moved = kwh(uur_rows, "2023-03-26 03:00:00", IMPORT) - kwh(uur_rows, "2023-03-26 01:00:00", IMPORT)
    assert got[utc(2023, 3, 26, 1)] == moved * 1000  # local 03:00-04:00 CEST, read at the end of each row
    assert not [a for a in uur.anomalies if a.kind in (GAP, DST_PHANTOM, DST_REPEAT_MISSING)
                and a.at is not None and a.at.date() == date(2023, 3, 26)]


def test_uur_gaps_reported_with_the_energy_they_hold(uur, uur_rows) -> None:
    expected = holes(uur_rows, HOUR, HOUR)
    merged = {line for line, (*_, b) in expected.items() if repeated(b)}
    gaps = {a.row: a for a in uur.anomalies if a.kind == GAP}
    # e.g. 11 days (2021-06), 3 days (2021-08), 46 days (2022-11), and those left by dropped glitch rows
    assert len(gaps) == 10
    assert {row: a.at for row, a in gaps.items()} == {line: at for line, (at, *_) in expected.items()
                                                     if line not in merged}
    for line, a in gaps.items():
        _, count, before, after = expected[line]
        assert holds(a.detail, count, moved_wh(uur_rows, before, after, IMPORT),
                     moved_wh(uur_rows, before, after, EXPORT)), a.detail
    # the 11-day hole: read at the end of 2021-05-29 23:00 (22:00Z) and of 2021-06-09 23:00 (06-09 22:00Z)
    assert expected[uur_rows["2021-06-09 23:00:00"][0]][:2] == (utc(2021, 5, 29, 22), 264)
    # the spring hour is no hole: 01:00 CET is read at 02:00 CET, 03:00 CEST an hour later
    assert not {uur_rows[s][0] for s in ("2021-03-28 03:00:00", "2022-03-27 03:00:00", "2023-03-26 03:00:00")} \
        & set(gaps)


def test_uur_glitch_rows_dropped(uur, uur_rows) -> None:
    glitches = [a for a in uur.anomalies if a.kind == REGISTER_GLITCH]
    assert [a.row for a in glitches] == sorted(out_of_line(uur_rows))
    by_line = {line: stamp for stamp, (line, _) in uur_rows.items()}
    assert [a.at for a in glitches] == [start_of(by_line[a.row]) for a in glitches]
    kept = set(uur.registers["ts"].to_list())
    assert not {start_of(by_line[a.row]) + HOUR for a in glitches} & kept
    assert not {a.row for a in uur.anomalies if a.kind == REGISTER_MISMATCH} & {a.row for a in glitches}


def stated_mismatches(rows: Rows, period: timedelta) -> set[tuple[int, str]]:
    """(line, stated column) where VERBR_KWH_X/GELVR_KWH_X differ from the register movement since the
    previous kept row, when that row is the previous period (on the wall clock or in time)."""
    dropped = out_of_line(rows)
    kept = [(stamp, line, r) for stamp, (line, r) in rows.items() if line not in dropped]
    out = set()
    for (a, _, ra), (b, line, rb) in pairwise(kept):
        naive_step = datetime.strptime(b, "%Y-%m-%d %H:%M:%S") - datetime.strptime(a, "%Y-%m-%d %H:%M:%S")
        if period not in (naive_step, start_of(b) - start_of(a)):
            continue
        for column, regs in (("VERBR_KWH_X", IMPORT), ("GELVR_KWH_X", EXPORT)):
            moved = sum(Decimal(rb[c]) - Decimal(ra[c]) for c in regs) * 1000
            if rb[column] and (Decimal(rb[column]) * 1000).quantize(Decimal(1)) != moved:  # half-even to the Wh
                out.add((line, column))
    return out


def test_uur_stated_energy_checked_against_the_registers(uur, uur_rows) -> None:
    found = {(a.row, a.detail.split(": ", 1)[1].split(" ", 1)[0]) for a in uur.anomalies
             if a.kind == REGISTER_MISMATCH}
    assert found == stated_mismatches(uur_rows, HOUR)
    assert (uur_rows["2023-10-29 02:00:00"][0], "VERBR_KWH_X") in found


def test_uur_register_spike_dropped_not_imported(uur, uur_rows) -> None:
    line, r = uur_rows["2022-11-04 15:00:00"]
    assert Decimal(r["VERBR_KWH_181"]) - Decimal(uur_rows["2022-11-04 16:00:00"][1]["VERBR_KWH_181"]) > 990
    found = [a for a in uur.anomalies if a.kind == REGISTER_GLITCH and a.row == line]
    assert len(found) == 1 and "out of line" in found[0].detail
    assert found[0].at == utc(2022, 11, 4, 14)  # the row's own period, 15:00-16:00 CET
    assert uur.registers.filter(pl.col("ts") == utc(2022, 11, 4, 15)).is_empty()  # read at 16:00 local
    assert uur.registers.filter(pl.col("ts") == utc(2022, 11, 4, 14)).height == 4
    assert energy(uur, utc(2022, 11, 4, 13), utc(2022, 11, 4, 16), "import_wh") < 1000
    # the 14:00 row is read at 14:00Z, the 16:00 row at 16:00Z: both hours around the spike are missing
    gap = next(a for a in uur.anomalies if a.kind == GAP and a.row == line + 1)
    moved = moved_wh(uur_rows, "2022-11-04 14:00:00", "2022-11-04 16:00:00", IMPORT)
    assert gap.at == utc(2022, 11, 4, 14) and holds(gap.detail, 2, moved, moved_wh(
        uur_rows, "2022-11-04 14:00:00", "2022-11-04 16:00:00", EXPORT))


def test_min_quarter_hours_from_registers_at_quarter_boundaries(minute, min_rows) -> None:
    assert minute.format == "p1mon-min-csv"
    assert minute.frame["resolution"].unique().to_list() == ["PT15M"]
    assert (minute.frame["interval_start"].dt.minute() % 15 == 0).all()
    # the 11:14 row is read at 11:15 local: the first quarter is 10:15Z..10:30Z
    assert minute.frame["interval_start"][0] == utc(2024, 2, 1, 10, 15)
    for column, regs in (("import_wh", IMPORT), ("export_wh", EXPORT)):
        moved = kwh(min_rows, "2024-02-23 23:59:00", regs) - kwh(min_rows, "2024-02-01 23:59:00", regs)
        assert energy(minute, utc(2024, 2, 1, 23), utc(2024, 2, 23, 23), column) == moved * 1000
    first = kwh(min_rows, "2024-02-01 11:29:00", IMPORT) - kwh(min_rows, "2024-02-01 11:14:00", IMPORT)
    assert minute.frame["import_wh"][0] == first * 1000


def test_min_gap_and_glitch(minute, min_rows) -> None:
    spike_line, _ = min_rows["2024-02-24 23:17:00"]
    assert sorted(out_of_line(min_rows)) == [spike_line]
    glitches = [a for a in minute.anomalies if a.kind == REGISTER_GLITCH]
    assert [(a.at, a.row) for a in glitches] == [(utc(2024, 2, 24, 22, 17), spike_line)]
    assert {(a.row, a.detail.split(": ", 1)[1].split(" ", 1)[0]) for a in minute.anomalies
            if a.kind == REGISTER_MISMATCH} == stated_mismatches(min_rows, MINUTE)
    # boundary rows 2024-02-24 23:59 (read at 23:00Z) and 2024-02-25 11:14 (read at 10:15Z): 45 quarters
    expected = holes(min_rows, MINUTE, QUARTER)
    assert {line: v[:2] for line, v in expected.items()} == {
        min_rows["2024-02-25 11:14:00"][0]: (utc(2024, 2, 24, 23), 45)}
    gaps = [a for a in minute.anomalies if a.kind == GAP]
    assert [(a.at, a.row) for a in gaps] == [(at, line) for line, (at, *_) in expected.items()]
    _, count, before, after = next(iter(expected.values()))
    assert holds(gaps[0].detail, count, moved_wh(min_rows, before, after, IMPORT),
                 moved_wh(min_rows, before, after, EXPORT))
    assert minute.frame.filter(pl.col("interval_start").is_between(utc(2024, 2, 24, 23), utc(2024, 2, 25, 10))
                               ).is_empty()


def test_min_merged_autumn_hour_leaves_five_quarters(tmp_path) -> None:
    # A minute table over the 2023-10-29 change: each wall-clock minute once, 02:xx merged (second occurrence).
    naive = [datetime(2023, 10, 29, 1, 40) + i * MINUTE for i in range(101)]  # 01:40 .. 03:20
    stamps = [f"{t:%Y-%m-%d %H:%M:%S}" for t in naive]
    p = tmp_path / "e_history_min.csv"
    p.write_text("\n".join([HEADER, *(line(s, f"{1 + i / 1000:.3f}") for i, s in enumerate(stamps))]) + "\n")
    result = read_readings(p)
    assert result.format == "p1mon-min-csv"
    # 01:59 CEST is read at 00:00Z; the first merged boundary row, 02:14, at the end of 02:14 CET = 01:15Z
    first, merged = start_of("2023-10-29 01:59:00") + MINUTE, start_of("2023-10-29 02:14:00") + MINUTE
    count = (merged - first) // QUARTER
    assert (first, count) == (utc(2023, 10, 29, 0), 5)
    dst = [a for a in result.anomalies if a.kind == DST_REPEAT_MISSING]
    assert [(a.at, a.row) for a in dst] == [(first, stamps.index("2023-10-29 02:14:00") + 2)]
    assert holds(dst[0].detail, count, 15, 0)  # 02:00 .. 02:14: 15 rows of 1 Wh each
    assert not [a for a in result.anomalies if a.kind == GAP]
    starts = result.frame["interval_start"].to_list()
    assert not [t for t in starts if first <= t < merged]
    assert [first - QUARTER, merged] == starts[:2]


def test_min_and_uur_agree_hour_by_hour(minute, uur) -> None:
    hourly = minute.frame.group_by(pl.col("interval_start").dt.truncate("1h")).agg(
        pl.col("import_wh", "export_wh").sum(), pl.len()).filter(pl.col("len") == 4).drop("len")
    both = hourly.join(uur.frame, on="interval_start", suffix="_uur")
    assert both.height > 700
    assert (both["import_wh"] == both["import_wh_uur"]).all()
    assert (both["export_wh"] == both["export_wh_uur"]).all()


@pytest.mark.slow
def test_xlsx_reads_the_uur_sheet_like_its_csv(uur) -> None:
    book = read_readings(data_file(XLSX))
    assert book.format == "p1mon-xlsx"
    assert book.frame.equals(uur.frame)
    assert [(a.kind, a.at, a.row) for a in book.anomalies] == [(a.kind, a.at, a.row) for a in uur.anomalies]


@pytest.mark.slow
def test_xlsx_min_sheet_when_forced(minute) -> None:
    book = read_readings(data_file(XLSX), format="p1mon-xlsx-min")
    assert book.frame.equals(minute.frame)


def write(tmp_path: Path, *rows: str, header: str = HEADER) -> Path:
    p = tmp_path / "e_history_uur.csv"
    p.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return p


def line(stamp: str, t1: str, x: str = "", t2: str = "10.000", e1: str = "5.000", e2: str = "6.000") -> str:
    """One hourly row; an empty ``x`` (stated import) is not compared."""
    return f"{stamp},{t1},{t2},{e1},{e2},{x},,P,0,0"


def test_duplicate_rows_kept_once(tmp_path) -> None:
    p = write(tmp_path, line("2024-01-10 10:00:00", "1.000"), line("2024-01-10 11:00:00", "1.500", "0.5"),
              line("2024-01-10 11:00:00", "1.500", "0.5"), line("2024-01-10 12:00:00", "2.250", "0.75"))
    result = read_readings(p)
    assert result.format == "p1mon-uur-csv"
    assert result.frame["import_wh"].to_list() == [500, 750]
    assert [(a.kind, a.row) for a in result.anomalies] == [(DUPLICATE, 4)]


def test_conflicting_duplicate_rejected(tmp_path) -> None:
    p = write(tmp_path, line("2024-01-10 10:00:00", "1.000"), line("2024-01-10 11:00:00", "1.500"),
              line("2024-01-10 11:00:00", "1.600"), line("2024-01-10 12:00:00", "2.000"))
    with pytest.raises(InputRejected, match=r"e_history_uur\.csv, rows 3, 4: conflicting"):
        read_readings(p)


def test_register_going_back_for_good_rejected_naming_both_rows(tmp_path) -> None:
    p = write(tmp_path, *(line(f"2024-01-10 1{h}:00:00", v) for h, v in enumerate(
        ("100.000", "101.000", "50.000", "51.000", "52.000"))))
    with pytest.raises(InputRejected, match=r"uur\.csv, rows 3, 4: register VERBR_KWH_181 goes backwards"):
        read_readings(p)


def test_spring_phantom_row_dropped(tmp_path) -> None:
    p = write(tmp_path, line("2023-03-26 01:00:00", "1.000"), line("2023-03-26 02:00:00", "1.100"),
              line("2023-03-26 03:00:00", "1.200"), line("2023-03-26 04:00:00", "1.400"))
    result = read_readings(p)
    assert [(a.kind, a.row) for a in result.anomalies] == [(DST_PHANTOM, 3)]
    assert result.frame.select("interval_start", "import_wh").rows() == [(utc(2023, 3, 26, 1), 200),
                                                                        (utc(2023, 3, 26, 2), 200)]


def test_registers_finer_than_a_wh_rounded(tmp_path) -> None:
    p = write(tmp_path, line("2024-01-10 10:00:00", "1.0004"), line("2024-01-10 11:00:00", "1.5006"),
              line("2024-01-10 12:00:00", "2.0000"))
    result = read_readings(p)
    assert result.frame["import_wh"].to_list() == [501, 499]
    assert [a.kind for a in result.anomalies] == [ENERGY_ROUNDED]


@pytest.mark.parametrize(
    ("rows", "header", "message"),
    [
        ([line("2024-01-10 10:00:00", "1.0"), line("2024-01-10 11:00:00", "1.0"), line("2024-01-1x", "1.0")],
         HEADER, r"row 4: TIMESTAMP '2024-01-1x' is not"),
        ([line("2024-01-10 10:00:00", "1.0"), line("2024-01-10 11:00:00", "1,0.0")], HEADER,
         r"row 3: column 'VERBR_KWH_182': '1' is not a number|row 3: not a readable CSV"),
        ([line("2024-01-10 10:00:00", "1.0"), line("2024-01-10 11:00:00", "abc")], HEADER,
         r"row 3: column 'VERBR_KWH_181': 'abc' is not a number"),
        ([line("2024-01-10 10:00:00", "1.0"), "2024-01-10 11:00:00,1.0,2.0"], HEADER,
         r"row 3: register GELVR_KWH_281 is empty"),
        ([line("2024-01-10 10:00:00", "1.0"), line("2024-01-10 10:30:00", "1.0")], HEADER,
         r"row 3: TIMESTAMP 2024-01-10 10:30:00 is not the start of a 1:00:00 period"),
        (["2024-01-10 10:00:00,1.0,10.0,5.0,6.0,0.0,P,0,0"], HEADER.replace("GELVR_KWH_X,", ""),
         r"row 1: missing column\(s\) \['GELVR_KWH_X'\]"),
    ],
)
def test_bad_input_rejected_naming_file_and_row(tmp_path, rows, header, message) -> None:
    with pytest.raises(InputRejected, match=r"e_history_uur\.csv, (" + message + ")"):
        read_readings(write(tmp_path, *rows, header=header), format="p1mon-uur-csv")


def test_xlsx_without_the_uur_sheet_rejected(tmp_path) -> None:
    import openpyxl

    book = openpyxl.Workbook()
    book.active.title = "e_history_dag"
    book.active.append(["TIMESTAMP", "VERBR_KWH_181"])
    p = tmp_path / "p1mon.xlsx"
    book.save(p)
    with pytest.raises(InputRejected, match=r"p1mon\.xlsx: no sheet e_history_uur or uur"):
        read_readings(p, format="p1mon-xlsx")


def test_sniffers_claim_only_their_own_table() -> None:
    from kwartier.ingest.meters_p1mon import FORMATS

    detect = {f.name: f.detect for f in FORMATS}
    for rel, expected in ((UUR, {"p1mon-uur-csv"}), (MIN, {"p1mon-min-csv"}),
                          ("household_nl/dsmrreader_export_2024_hourly.csv", set()),
                          ("household_nl/homewizard_p1_2022-09_15min_cumulative.csv", set()),
                          ("household_nl/slimmemeterportal_2023_15min.xlsx", set()), (XLSX, {"p1mon-xlsx"})):
        p = data_file(rel)
        head = p.read_bytes()[:65536].decode("latin-1")
        assert {name for name, d in detect.items() if d(p, head)} == expected, rel
