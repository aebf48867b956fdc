"""Fluvius quarter-hour export: register pivot, totals, the DST night, status, Dutch headers, rejections."""

from __future__ import annotations

import csv
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from tests.conftest import data_file

from kwartier.ingest import InputRejected, ReadOptions, read_readings
from kwartier.ingest.base import DST_PHANTOM, DUPLICATE, GAP, NO_DATA, TIME_CORRECTED
from kwartier.timegrid import local_day_quarters

REAL = "household_be/fluvius_2023-10-22_2023-12-31_15min.csv"
HEADER = ("From (date);From (time);Until (date);Until (time);EAN code;Meter;Meter type;Register;Volume;Unit;"
          "Validation status;Description")
DUTCH = ("Van (datum);Van (tijdstip);Tot (datum);Tot (tijdstip);EAN-code;Meter;Metertype;Register;Volume;"
         "Eenheid;Validatiestatus")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture(scope="module")
def real():
    return read_readings(data_file(REAL))


@pytest.fixture(scope="module")
def source_rows() -> list[tuple[int, dict[str, str]]]:
    """(physical line number, row) read with the stdlib, independently of the importer."""
    with data_file(REAL).open(newline="", encoding="utf-8-sig") as fh:
        return [(i, r) for i, r in enumerate(csv.DictReader(fh, delimiter=";"), start=2)]


def row(start: str, register: str, volume: str, status: str = "Read", until: str | None = None,
        ean: str = "541448800000000001") -> str:
    """One English data row; ``start`` is ``dd/mm/yyyy HH:MM``."""
    d, t = start.split(" ")
    if until is None:
        end = datetime.strptime(start, "%d/%m/%Y %H:%M") + timedelta(minutes=15)
        until = end.strftime("%d/%m/%Y %H:%M")
    ud, ut = until.split(" ")
    return f'{d};{t}:00;{ud};{ut}:00;="{ean}";1SAG1;Digital meter;{register};{volume};kWh;{status};'


def write(tmp_path: Path, *rows: str, header: str = HEADER) -> Path:
    p = tmp_path / "fluvius-export.csv"
    p.write_bytes(("\ufeff" + "\r\n".join([header, *rows]) + "\r\n").encode("utf-8"))
    return p


def test_detected_with_connection_and_quarters(real, source_rows) -> None:
    assert real.format == "fluvius-csv"
    eans = {r["EAN code"] for _, r in source_rows}
    assert len(eans) == 1 and real.connection == eans.pop().strip('="')
    frame = real.frame
    assert frame["resolution"].unique().to_list() == ["PT15M"]
    # one quarter per pair of register rows (the DST night has four extra), minus the empty first quarter
    assert frame.height == len(source_rows) // 2 - 1
    assert frame["interval_start"][0] == utc(2023, 10, 21, 22, 15)
    assert frame["interval_start"][-1] == utc(2023, 12, 31, 22, 45)
    assert not [a for a in real.anomalies if a.kind == GAP]


def test_register_totals_match_provenance_and_an_independent_sum(real, source_rows) -> None:
    sums: dict[str, Decimal] = {}
    for _, r in source_rows:
        volume = Decimal((r["Volume"] or "0").replace(",", "."))
        sums[r["Register"]] = sums.get(r["Register"], Decimal(0)) + volume
    # PROVENANCE.md: offtake 738.8 (night) + 723.5 (day), injection 43.6 + 81.3 kWh
    rounded = {k: v.quantize(Decimal("0.1")) for k, v in sums.items()}
    assert rounded == {"Offtake Night": Decimal("738.8"), "Offtake Day": Decimal("723.5"),
                       "Injection Night": Decimal("43.6"), "Injection Day": Decimal("81.3")}
    assert real.frame["import_wh"].sum() == (sums["Offtake Night"] + sums["Offtake Day"]) * 1000
    assert real.frame["export_wh"].sum() == (sums["Injection Night"] + sums["Injection Day"]) * 1000


def test_autumn_night_repeated_quarters_read_in_row_order(real, source_rows) -> None:
    day = local_day_quarters(date(2023, 10, 29), "Europe/Brussels")
    assert day.len() == 100 and day.is_in(real.frame["interval_start"].implode()).all()
    offtake_0200 = [(i, r["Volume"]) for i, r in source_rows
                    if r["From (date)"] == "29/10/2023" and r["From (time)"] == "02:00:00"
                    and r["Register"].startswith("Offtake")]
    assert [i for i, _ in offtake_0200] == [1362, 1364]
    summer, winter = (int(Decimal(v.replace(",", ".")) * 1000) for _, v in offtake_0200)
    got = dict(real.frame.select("interval_start", "import_wh").iter_rows())
    assert (got[utc(2023, 10, 29, 0)], got[utc(2023, 10, 29, 1)]) == (summer, winter)


def test_until_before_from_reported_as_time_corrected(real, source_rows) -> None:
    odd = [i for i, r in source_rows
           if r["From (date)"] == r["Until (date)"] and r["Until (time)"] < r["From (time)"]]
    assert odd == [1374, 1375]
    corrected = [a for a in real.anomalies if a.kind == TIME_CORRECTED]
    at = utc(2023, 10, 29, 0, 45)  # the summer-time 02:45 (first occurrence)
    assert [(a.row, a.at) for a in corrected] == [(1374, at), (1375, at)]
    assert "From is authoritative" in corrected[0].detail
    volume = dict(source_rows)[1374]["Volume"]
    got = dict(real.frame.select("interval_start", "import_wh").iter_rows())
    assert got[utc(2023, 10, 29, 0, 45)] == int(Decimal(volume.replace(",", ".")) * 1000)


def test_empty_volume_is_no_data_not_zero(real, source_rows) -> None:
    empty = [i for i, r in source_rows if not r["Volume"]]
    assert empty == [2, 3]
    no_data = [a for a in real.anomalies if a.kind == NO_DATA]
    assert [(a.at, a.row) for a in no_data] == [(utc(2023, 10, 21, 22), 2)]
    assert "No consumption" in no_data[0].detail
    assert utc(2023, 10, 21, 22) not in real.frame["interval_start"].to_list()


def test_status_from_validation_status(real, tmp_path) -> None:
    assert real.frame["status"].unique().to_list() == ["actual"]  # the file only has Read / No consumption
    p = write(tmp_path, row("04/12/2023 10:00", "Offtake Day", "0,100"),
              row("04/12/2023 10:00", "Injection Day", "0,000", "Estimated"),
              row("04/12/2023 10:15", "Offtake Day", "0,200", "Validated"),
              row("04/12/2023 10:15", "Injection Day", "0,010", "Validated"))
    result = read_readings(p)
    assert result.frame["status"].to_list() == ["estimated", "actual"]
    assert result.frame["import_wh"].to_list() == [100, 200]


def test_dutch_header_variant(tmp_path) -> None:
    ean = '="541448800000000002";1SAG;Digitale meter'
    rows = [f"12-10-2023;07:30:00;12-10-2023;07:45:00;{ean};Afname Dag;0,067;kWh;Gevalideerd",
            f"12-10-2023;07:30:00;12-10-2023;07:45:00;{ean};Injectie Dag;0,010;kWh;Gevalideerd",
            f"12-10-2023;07:45:00;12-10-2023;08:00:00;{ean};Afname Dag;0,080;kWh;Geschat",
            f"12-10-2023;07:45:00;12-10-2023;08:00:00;{ean};Injectie Dag;0,000;kWh;Geschat"]
    result = read_readings(write(tmp_path, *rows, header=DUTCH))
    assert result.format == "fluvius-csv" and result.connection == "541448800000000002"
    assert result.frame["interval_start"].to_list() == [utc(2023, 10, 12, 5, 30), utc(2023, 10, 12, 5, 45)]
    assert result.frame["import_wh"].to_list() == [67, 80]
    assert result.frame["export_wh"].to_list() == [10, 0]
    assert result.frame["status"].to_list() == ["actual", "estimated"]


def test_time_zone_option_overrides_brussels(tmp_path) -> None:
    p = write(tmp_path, row("04/12/2023 10:00", "Offtake Day", "0,100"),
              row("04/12/2023 10:00", "Injection Day", "0,000"))
    assert read_readings(p, options=ReadOptions(tz="UTC")).frame["interval_start"][0] == utc(2023, 12, 4, 10)
    assert read_readings(p).frame["interval_start"][0] == utc(2023, 12, 4, 9)


def test_spring_phantom_rows_dropped(tmp_path) -> None:
    p = write(tmp_path, *(row(f"26/03/2023 {t}", reg, "0,100") for t in ("01:45", "02:00", "03:00")
                          for reg in ("Offtake Night", "Injection Night")))
    result = read_readings(p)
    assert result.frame["interval_start"].to_list() == [utc(2023, 3, 26, 0, 45), utc(2023, 3, 26, 1)]
    phantom = [a for a in result.anomalies if a.kind == DST_PHANTOM]
    assert [a.row for a in phantom] == [4, 5]


def test_duplicates_and_gaps(tmp_path) -> None:
    rows = [row("04/12/2023 10:00", "Offtake Day", "0,100"),
            row("04/12/2023 10:00", "Injection Day", "0,000"),
            row("04/12/2023 10:00", "Offtake Day", "0,100"),
            row("04/12/2023 10:45", "Offtake Day", "0,300"),
            row("04/12/2023 10:45", "Injection Day", "0,000")]
    result = read_readings(write(tmp_path, *rows))
    assert result.frame["import_wh"].to_list() == [100, 300]
    assert [(a.kind, a.at, a.row) for a in result.anomalies if a.kind in (DUPLICATE, GAP)] == [
        (DUPLICATE, utc(2023, 12, 4, 9), 4), (GAP, utc(2023, 12, 4, 9, 15), 5)]


def test_conflicting_duplicate_rejected_naming_both_rows(tmp_path) -> None:
    p = write(tmp_path, row("04/12/2023 10:00", "Offtake Day", "0,100"),
              row("04/12/2023 10:00", "Offtake Day", "0,200"),
              row("04/12/2023 10:00", "Injection Day", "0,000"))
    with pytest.raises(InputRejected, match=r"fluvius-export\.csv, rows 2, 3: conflicting"):
        read_readings(p)


@pytest.mark.parametrize(
    ("rows", "header", "message"),
    [
        ([row("04/12/2023 10:00", "Offtake Day", "abc")], HEADER,
         r"row 2: column 'volume': 'abc' is not a number"),
        ([row("04/12/2023 10:00", "Offtake Day", "0,1"), row("31/02/2023 10:00", "Offtake Day", "0,1",
                                                             until="31/02/2023 10:15")],
         HEADER, r"row 3: date/time '31/02/2023' '10:00:00'"),
        ([row("04/12/2023 10:00", "Reactive", "0,1")], HEADER, r"row 2: unknown register 'Reactive'"),
        ([row("04/12/2023 10:00", "Offtake Day", "0,1").replace(";kWh;", ";m³;")], HEADER,
         r"row 2: unit 'm³' is not kWh"),
        ([row("04/12/2023 10:00", "Offtake Day", "-0,1")], HEADER, r"row 2: volume -0.1.* is negative"),
        ([row("04/12/2023 10:00", "Offtake Day", "0,1"),
          row("04/12/2023 10:15", "Offtake Day", "0,1", ean="2")], HEADER,
         r"row 3: the file holds several EAN codes"),
        ([row("04/12/2023 10:00", "Offtake Day", "0,1", until="04/12/2023 11:00"),
          row("04/12/2023 11:00", "Offtake Day", "0,1", until="04/12/2023 12:00")], HEADER,
         r"row 2: intervals are 1:00:00 long; only quarter-hour"),
        (['04/12/2023;10:00:00;04/12/2023;10:15:00;="1";m;t;Offtake Day;kWh;Read;'],
         HEADER.replace(";Volume", ""), r"row 1: missing column\(s\) \['volume'\]"),
    ],
)
def test_bad_input_rejected_naming_file_and_row(tmp_path, rows, header, message) -> None:
    with pytest.raises(InputRejected, match=r"fluvius-export\.csv, " + message):
        read_readings(write(tmp_path, *rows, header=header), format="fluvius-csv")


def test_sniffer_claims_only_fluvius_files() -> None:
    from kwartier.ingest.meters_fluvius import detect

    for other in ("household_nl/dsmrreader_export_2024_hourly.csv", "household_nl/p1mon_e_history_uur.csv",
                  "household_nl/slimmemeterportal_2023_15min.csv",
                  "household_nl/energiemanageronline_2025_15min_cumulative.csv"):
        p = data_file(other)
        assert not detect(p, p.read_text(encoding="utf-8-sig")[:65536])
    p = data_file(REAL)
    assert detect(p, p.read_text(encoding="utf-8-sig")[:65536])
