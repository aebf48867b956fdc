"""SlimmeMeterPortal xlsx/csv importer: real 2023 and 2024 exports, DST, gaps, rejections."""

from __future__ import annotations

import csv
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import openpyxl
import polars as pl
import pytest

from conftest import data_file
from kwartier.ingest import InputRejected, read_readings
from kwartier.ingest.base import DST_REPEAT_MISSING, DUPLICATE, GAP, NO_DATA
from kwartier.ingest.meters_smp import FORMATS
from kwartier.timegrid import local_day_bounds

CSV_2023 = "household_nl/slimmemeterportal_2023_15min.csv"
XLSX_2023 = "household_nl/slimmemeterportal_2023_15min.xlsx"
CSV_2024 = "household_nl/slimmemeterportal_2024_15min_partial.csv"
XLSX_2024 = "household_nl/slimmemeterportal_2024_15min_partial.xlsx"
Q = timedelta(minutes=15)


def _kwh(cell: object) -> Decimal:
    text = "" if cell is None else str(cell).strip()
    return Decimal(text.replace(",", ".")) if text else Decimal(0)


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _end(text: str) -> datetime:
    return datetime.strptime(text, "%d-%m-%Y %H:%M:%S %z").astimezone(UTC)


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def _write(tmp_path: Path, name: str, lines: list[str]) -> Path:
    p = tmp_path / name
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return p


def _quarters_on_local_day(frame: pl.DataFrame, day: date) -> int:
    start, end = local_day_bounds(day)
    return frame.filter((pl.col("interval_start") >= start) & (pl.col("interval_start") < end)).height


def test_csv_2023_totals_match_provenance_and_independent_sum() -> None:
    path = data_file(CSV_2023)
    rows = _csv_rows(path)
    t2 = sum(_kwh(r["levering_normaal"]) for r in rows)
    t1 = sum(_kwh(r["levering_laag"]) for r in rows)
    export = sum(_kwh(r["teruglevering_normaal"]) + _kwh(r["teruglevering_laag"]) for r in rows)
    assert (round(t2), round(t1), round(t1 + t2)) == (6328, 2455, 8784)  # PROVENANCE 4a (rounded)
    result = read_readings(path)
    assert result.format == "slimmemeterportal-csv"
    assert result.frame["import_wh"].sum() == int((t1 + t2) * 1000)
    assert result.frame["export_wh"].sum() == int(export * 1000) == 0
    assert result.frame["export_wh"].null_count() == 0
    assert result.frame.height == len(rows) == 35040
    assert set(result.frame["status"]) == {"actual"} and set(result.frame["resolution"]) == {"PT15M"}
    assert result.anomalies == []


def test_xlsx_2023_detected_and_same_total_as_its_cells() -> None:
    path = data_file(XLSX_2023)
    wb = openpyxl.load_workbook(path, read_only=True)
    cells = list(wb.worksheets[0].iter_rows(values_only=True))
    wb.close()
    head = list(cells[0])
    i2, i1 = head.index("levering_normaal"), head.index("levering_laag")
    total = sum(_kwh(r[i2]) + _kwh(r[i1]) for r in cells[1:])
    result = read_readings(path)
    assert result.format == "slimmemeterportal-xlsx"
    assert result.frame["import_wh"].sum() == int(total * 1000)
    assert round(total) == 8784


def test_xlsx_and_csv_give_the_same_frame() -> None:
    for xlsx, conv in ((XLSX_2023, CSV_2023), (XLSX_2024, CSV_2024)):
        a, b = read_readings(data_file(xlsx)), read_readings(data_file(conv))
        assert a.frame.equals(b.frame)
        assert a.anomalies == b.anomalies


def test_datum_tijd_is_the_interval_end() -> None:
    path = data_file(CSV_2023)
    rows = _csv_rows(path)
    frame = read_readings(path).frame
    first = _end(rows[0]["datum_tijd"]) - Q
    assert frame["interval_start"][0] == first == datetime(2022, 12, 31, 23, tzinfo=UTC)
    assert frame["interval_start"][-1] == _end(rows[-1]["datum_tijd"]) - Q
    # each row's energy sits in the quarter that ENDS at its datum_tijd
    r = rows[100]
    start = _end(r["datum_tijd"]) - Q
    got = frame.filter(pl.col("interval_start") == start)["import_wh"][0]
    assert got == int((_kwh(r["levering_normaal"]) + _kwh(r["levering_laag"])) * 1000)


def test_explicit_offsets_give_92_and_100_quarter_days() -> None:
    path = data_file(CSV_2023)
    frame = read_readings(path).frame
    assert _quarters_on_local_day(frame, date(2023, 3, 26)) == 92
    assert _quarters_on_local_day(frame, date(2023, 10, 29)) == 100
    # the second 02:00 (+0100) row ends the quarter 00:45Z..01:00Z
    row = next(r for r in _csv_rows(path) if r["datum_tijd"] == "29-10-2023 02:00:00 +0100")
    got = frame.filter(pl.col("interval_start") == datetime(2023, 10, 29, 0, 45, tzinfo=UTC))["import_wh"][0]
    assert got == int(_kwh(row["levering_laag"]) * 1000 + _kwh(row["levering_normaal"]) * 1000)


def test_2024_partial_gaps_reported_where_rows_are_missing() -> None:
    path = data_file(CSV_2024)
    rows = _csv_rows(path)
    expected = []
    for i in range(1, len(rows)):
        prev, cur = _end(rows[i - 1]["datum_tijd"]), _end(rows[i]["datum_tijd"])
        if cur - prev > Q:
            expected.append((prev, (cur - prev) // Q - 1, i + 2))  # first missing start, count, file row
    assert len(expected) == 4
    result = read_readings(path)
    gaps = [a for a in result.anomalies if a.kind == GAP]
    assert [(a.at, a.row) for a in gaps] == [(at, row) for at, _, row in expected]
    for a, (_, n, _) in zip(gaps, expected, strict=True):
        assert a.detail.startswith(f"{n} interval(s) missing")
    t = sum(_kwh(r["levering_normaal"]) + _kwh(r["levering_laag"]) for r in rows)
    assert result.frame["import_wh"].sum() == int(t * 1000)
    assert result.frame.height == len(rows)


def test_2024_empty_export_columns_are_unknown_not_zero() -> None:
    path = data_file(CSV_2024)
    rows = _csv_rows(path)
    empty = [i + 2 for i, r in enumerate(rows)
             if not r["teruglevering_normaal"] and not r["teruglevering_laag"]]
    result = read_readings(path)
    assert result.frame["export_wh"].null_count() == len(empty) == 21199
    no_data = [a for a in result.anomalies if a.kind == NO_DATA]
    assert len(no_data) == 1  # one contiguous run of rows
    assert no_data[0].row == empty[0] == 2402
    assert f"{len(empty)} row(s), rows {empty[0]}..{empty[-1]}" in no_data[0].detail
    assert result.frame["export_wh"].drop_nulls().sum() == 0


def test_missing_repeated_autumn_hour_is_reported(tmp_path: Path) -> None:
    lines = _lines(data_file(CSV_2023))
    day = [ln for ln in lines if ln.startswith("29-10-2023 0")]
    kept = [ln for ln in day if not (ln.startswith("29-10-2023 02:") and "+0100" in ln)]
    assert len(day) - len(kept) == 4
    p = _write(tmp_path, "smp.csv", [lines[0], *kept])
    result = read_readings(p)
    assert [a.kind for a in result.anomalies] == [DST_REPEAT_MISSING]
    a = result.anomalies[0]
    # rows ending 02:00..02:45 (+0100) = 01:00Z..01:45Z are absent: quarters 00:45Z..01:30Z missing
    assert a.at == datetime(2023, 10, 29, 0, 45, tzinfo=UTC)
    assert a.row == next(i for i, ln in enumerate(kept) if ln.startswith("29-10-2023 03:00:00 +0100")) + 2
    assert a.detail.startswith("4 interval(s) missing")


def test_identical_duplicate_kept_once_and_conflict_rejected(tmp_path: Path) -> None:
    lines = _lines(data_file(CSV_2023))
    p = _write(tmp_path, "dup.csv", [*lines[:6], lines[5]])
    result = read_readings(p)
    assert [(a.kind, a.row) for a in result.anomalies] == [(DUPLICATE, 7)]
    assert result.frame.height == 5
    changed = lines[5].replace('"0,', '"9,', 1)
    p = _write(tmp_path, "conflict.csv", [*lines[:6], changed])
    with pytest.raises(InputRejected, match=r"conflict\.csv, rows 6, 7: conflicting duplicate"):
        read_readings(p)


def test_row_without_any_value_is_skipped_and_reported(tmp_path: Path) -> None:
    lines = _lines(data_file(CSV_2023))
    stamp = lines[3].split(",")[0]
    p = _write(tmp_path, "empty.csv", [*lines[:3], f"{stamp},,,,,-", *lines[4:8]])
    result = read_readings(p)
    kinds = {(a.kind, a.row) for a in result.anomalies}
    assert (NO_DATA, 4) in kinds and (GAP, 5) in kinds
    assert result.frame.height == 6


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('01-01-2023 00:15:00 +0100,,"0,1x",,"0,00",-', "row 2: column 'levering_laag'"),
        ('01-01-2023 00:15:00,,"0,11",,"0,00",-', "row 2: datum_tijd '01-01-2023 00:15:00'"),
        ('01-01-2023 00:20:00 +0100,,"0,11",,"0,00",-', "row 2: datum_tijd .* not on the quarter-hour grid"),
        ('01-01-2023 00:15:00 +0100,,"-0,11",,"0,00",-', "row 2: column 'levering_laag'.* negative"),
        ('01-01-2023 00:15:00 +0100,,"0,11"', "row 2: 3 fields where the header has 6"),
    ],
)
def test_bad_csv_rows_rejected_naming_file_and_row(tmp_path: Path, line: str, problem: str) -> None:
    header = _lines(data_file(CSV_2023))[0]
    p = _write(tmp_path, "bad_smp.csv", [header, line, '01-01-2023 00:30:00 +0100,,"0,12",,"0,00",-'])
    with pytest.raises(InputRejected, match="bad_smp.csv, " + problem):
        read_readings(p, format="slimmemeterportal-csv")


def test_missing_column_rejected(tmp_path: Path) -> None:
    p = _write(tmp_path, "nocol.csv", ["datum_tijd,levering_normaal,levering_laag",
                                       '01-01-2023 00:15:00 +0100,,"0,11"'])
    with pytest.raises(InputRejected, match=r"nocol\.csv, row 1: missing column\(s\) \['teruglevering"):
        read_readings(p)


def test_bad_xlsx_cell_rejected_naming_sheet_row(tmp_path: Path) -> None:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["datum_tijd", "levering_normaal", "levering_laag", "teruglevering_normaal",
               "teruglevering_laag"])
    ws.append(["01-01-2023 00:15:00 +0100", None, "0,11", None, "0,00"])
    ws.append(["01-01-2023 00:30:00 +0100", None, "n/a", None, "0,00"])
    p = tmp_path / "bad.xlsx"
    wb.save(p)
    with pytest.raises(InputRejected, match=r"bad\.xlsx, row 3: column 'levering_laag': 'n/a'"):
        read_readings(p)


def test_sniffers_do_not_claim_other_meter_files() -> None:
    from kwartier.ingest import _head

    others = ["household_nl/p1mon_e_historie.db.xlsx",
              "household_nl/homewizard_p1_2022-09_15min_cumulative.csv",
              "household_nl/energiemanageronline_2025_15min_cumulative.csv",
              "household_nl/dsmrreader_export_2024_hourly.csv", "uk_lcl_dtou/lcl_dtou_2013_features.xlsx"]
    for rel in others:
        p = data_file(rel)
        assert not any(f.detect(p, _head(p)) for f in FORMATS), rel
    csv_fmt, xlsx_fmt = FORMATS[1], FORMATS[0]
    p = data_file(CSV_2023)
    assert csv_fmt.detect(p, _head(p)) and not xlsx_fmt.detect(p, _head(p))
