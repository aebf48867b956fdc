"""DSMR P1 importer: the real telegrams and the Hungarian log, and streams built here with a valid CRC."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl
import pytest
from dsmr_parser.parsers import TelegramParser
from tests.conftest import data_file

from kwartier.ingest import InputRejected, ReadingImport, ReadOptions, detect_format, read_readings
from kwartier.ingest.base import (
    CRC_NOT_CHECKED,
    DUPLICATE,
    ENERGY_ROUNDED,
    GAP,
    NO_DATA,
    PARTIAL_INTERVAL,
    REGISTER_MISMATCH,
    Anomaly,
)
from kwartier.ingest.p1 import FORMATS, crc16_arc

P1 = "dsmr_p1_telegrams/"
HU_LOG = P1 + "p1_log_hu/sample_depersonalised_p1_meter_w_solar_20230824.log"
DATED = [
    "telegram_fluvius_v171.txt", "telegram_fluvius_v171_alt.txt", "telegram_iskra_ie.txt",
    "telegram_sagemcom_t210_d_r.txt", "telegram_v4_2.txt", "telegram_v5.txt", "telegram_v5_eon_hu.txt",
    "telegram_v5_two_mbus.txt", "openhab/Iskra_AM550.telegram", "openhab/Sagemcom_XS210.telegram",
    "openhab/dsmr_42.telegram", "openhab/dsmr_50.telegram", "openhab/dsmr_50_austria.telegram",
    "openhab/flu5.telegram", "openhab/flu5_extra.telegram",
]
UNDATED = ["telegram_v2_2.txt", "telegram_v3.txt", "telegram_esy5q3da1004_v304.txt",
           "telegram_esy5q3db1024_v304.txt", "openhab/Landis_Gyr_E350.telegram"]
ALL_FILES = [*DATED, *UNDATED, "telegram_unpadded_crc.txt", HU_LOG.removeprefix(P1)]
AMS = ZoneInfo("Europe/Amsterdam")
ENERGY_RE = re.compile(r"(?m)^\d-\d:([12])\.8\.([0-4])(?:\*255)?\((\d+(?:\.\d+)?)\*?(k?Wh)\)")
STAMP_RE = re.compile(r"(?m)^0-0:1\.0\.0\((\d{12})([SW])\)")
NOT_PLACED_RE = re.compile(r"(-?\d+) Wh import and (-?\d+) Wh export")


# --- independent helpers: read the raw text with regexes, build telegrams with dsmr-parser's CRC ---

def raw_text(path: Path) -> str:
    return path.read_bytes().decode("latin-1")


def registers_in(telegram: str) -> dict[str, int]:
    """The energy registers of one raw telegram, in Wh, read with a regex (kWh x 1000, half-even)."""
    out = {}
    for direction, index, value, unit in ENERGY_RE.findall(telegram):
        name = ("import_" if direction == "1" else "export_") + ("total" if index == "0" else "t" + index)
        wh = Decimal(value) * (1000 if unit == "kWh" else 1)
        out[name] = int(wh.to_integral_value(ROUND_HALF_EVEN))
    return out


def telegrams_in(text: str) -> list[str]:
    return re.findall(r"(?ms)^/.*?^![0-9A-F]*", text)


def dsmr_time(ts: datetime) -> str:
    local = ts.astimezone(AMS)
    return local.strftime("%y%m%d%H%M%S") + ("S" if local.dst() else "W")


def kwh(wh: int) -> str:
    return f"{wh // 1000:06d}.{wh % 1000:03d}"


def build_telegram(ts: datetime | None, imp: tuple[int, int], exp: tuple[int, int] = (0, 0), *,
                   equipment: str = "4530303434303037333832323436303139", extra: tuple[str, ...] = (),
                   drop: str = "", eol: str = "\r\n") -> str:
    """A DSMR 5 telegram (Iskra AM550 layout) with registers in Wh and a CRC from dsmr-parser."""
    lines = ["/ISK5\\2M550T-1012", "", "1-3:0.2.8(50)"]
    lines += [f"0-0:1.0.0({dsmr_time(ts)})"] if ts else []
    lines += [f"0-0:96.1.1({equipment})", *extra,
              f"1-0:1.8.1({kwh(imp[0])}*kWh)", f"1-0:1.8.2({kwh(imp[1])}*kWh)",
              f"1-0:2.8.1({kwh(exp[0])}*kWh)", f"1-0:2.8.2({kwh(exp[1])}*kWh)",
              "0-0:96.14.0(0001)", "1-0:1.7.0(00.111*kW)", "1-0:2.7.0(00.000*kW)", "0-0:96.7.21(00005)",
              "0-0:96.7.9(00003)", "1-0:99.97.0(1)(0-0:96.7.19)(190326095015W)(0000002014*s)",
              "1-0:32.32.0(00001)", "1-0:32.36.0(00001)", "0-0:96.13.0()", "1-0:32.7.0(229.9*V)",
              "1-0:52.7.0(229.2*V)", "1-0:72.7.0(222.9*V)", "1-0:31.7.0(000*A)", "1-0:51.7.0(000*A)",
              "1-0:71.7.0(001*A)", "1-0:21.7.0(00.056*kW)", "1-0:41.7.0(00.000*kW)", "1-0:61.7.0(00.055*kW)",
              "1-0:22.7.0(00.000*kW)", "1-0:42.7.0(00.000*kW)", "1-0:62.7.0(00.000*kW)", "0-1:24.1.0(003)",
              "0-1:96.1.0(4730303339303031393336393930363139)", "0-1:24.2.1(200426223001S)(00246.138*m3)"]
    lines = [ln for ln in lines if not (drop and ln.startswith(drop))]
    body = eol.join(lines) + eol + "!"
    return f"{body}{TelegramParser.crc16(body):04X}{eol}"


def write(tmp_path: Path, name: str, telegrams: list[str], header: str = "=~=~= PuTTY log =~=~=\r\n") -> Path:
    path = tmp_path / name
    path.write_bytes((header + "".join(telegrams)).encode("latin-1"))
    return path


def header_lines(path: Path) -> list[int]:
    """Physical line numbers of the telegram headers, counted here independently."""
    return [i for i, line in enumerate(raw_text(path).split("\n"), 1) if line.startswith("/")]


def by_kind(result: ReadingImport, kind: str) -> list[Anomaly]:
    return [a for a in result.anomalies if a.kind == kind]


def not_placed(result: ReadingImport) -> tuple[int, int]:
    """The Wh the GAP and PARTIAL_INTERVAL anomalies state as not placed in any quarter."""
    stated = by_kind(result, GAP) + by_kind(result, PARTIAL_INTERVAL)
    pairs = [NOT_PLACED_RE.search(a.detail).groups() for a in stated]
    return sum(int(i) for i, _ in pairs), sum(int(e) for _, e in pairs)


# --- detection ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ALL_FILES)
def test_every_real_telegram_file_is_detected_as_p1(name):
    assert detect_format(data_file(P1 + name), "readings").name == "dsmr-p1"


@pytest.mark.parametrize("name", ["household_nl/homewizard_p1_2022-09_15min_cumulative.csv",
                                  "household_nl/dsmrreader_export_2024_hourly.csv",
                                  "prices_nl/nl_dayahead_2025_15min_jeroen_nl.csv"])
def test_the_sniffer_does_not_claim_other_real_files(name):
    path = data_file(name)
    head = path.read_bytes()[:65536].decode("latin-1")
    assert not FORMATS[0].detect(path, head)


# --- the real single telegrams ----------------------------------------------------------------------

@pytest.mark.parametrize("name", DATED)
def test_real_telegram_registers_and_time(name):
    path = data_file(P1 + name)
    text = raw_text(path)
    result = read_readings(path)
    got = {r["register"]: r["value_wh"] for r in result.registers.iter_rows(named=True)}
    assert got == registers_in(text)
    stamp, flag = STAMP_RE.search(text).groups()
    naive = datetime.strptime(stamp, "%y%m%d%H%M%S")
    if "iskra_ie" in name:  # Irish meter: Europe/Dublin, GMT in February
        expected = naive.replace(tzinfo=UTC)
    else:  # CET/CEST meters: S = UTC+2, W = UTC+1
        expected = (naive - timedelta(hours=2 if flag == "S" else 1)).replace(tzinfo=UTC)
    assert set(result.registers["ts"].to_list()) == {expected}
    # one telegram: no quarter is covered from start to end, and one anomaly says so
    assert result.frame.height == 0
    assert [a.at for a in by_kind(result, PARTIAL_INTERVAL)] == [
        expected - (expected - datetime(1970, 1, 1, tzinfo=UTC)) % timedelta(minutes=15)]
    assert not by_kind(result, CRC_NOT_CHECKED)  # every one carries a valid CRC


@pytest.mark.parametrize("name", UNDATED)
def test_undated_telegram_needs_at_and_imports_with_it(name):
    path = data_file(P1 + name)
    with pytest.raises(InputRejected) as exc:
        read_readings(path)
    assert path.name in str(exc.value) and "row 1" in str(exc.value)
    assert "has no timestamp (DSMR 2.2/3.0); give the reading time with --at" in str(exc.value)
    at = datetime(2024, 3, 1, 12, 0, 7, tzinfo=ZoneInfo("Europe/Amsterdam"))
    result = read_readings(path, options=ReadOptions(at=at))
    got = {r["register"]: r["value_wh"] for r in result.registers.iter_rows(named=True)}
    assert got == registers_in(raw_text(path))
    assert set(result.registers["ts"].to_list()) == {at.astimezone(UTC)}
    assert len(by_kind(result, CRC_NOT_CHECKED)) == 1


def test_easymeter_fractions_of_a_wh_are_rounded_and_reported():
    path = data_file(P1 + "telegram_esy5q3db1024_v304.txt")
    result = read_readings(path, options=ReadOptions(at=datetime(2024, 1, 1, tzinfo=UTC)))
    got = {r["register"]: r["value_wh"] for r in result.registers.iter_rows(named=True)}
    assert got == {"import_total": 52185783, "export_total": 19949322}  # 52185.7825309 / 19949.3221493 kWh
    assert "2 register reading(s)" in by_kind(result, ENERGY_ROUNDED)[0].detail


def test_sagemcom_registers_are_already_in_wh():
    result = read_readings(data_file(P1 + "telegram_sagemcom_t210_d_r.txt"))
    got = {r["register"]: r["value_wh"] for r in result.registers.iter_rows(named=True)}
    assert got["import_total"] == 6545766 == got["import_t1"] + got["import_t2"]  # 1.8.0(006545766*Wh)
    assert not by_kind(result, REGISTER_MISMATCH)


def test_fluvius_units_without_star_are_read():
    got = read_readings(data_file(P1 + "openhab/flu5.telegram")).registers
    assert dict(got.select("register", "value_wh").iter_rows()) == {
        "import_t1": 123456, "import_t2": 234567, "export_t1": 345678, "export_t2": 456789}


def test_irish_time_follows_the_zone_option():
    path = data_file(P1 + "telegram_iskra_ie.txt")  # 0-0:1.0.0(230202132747S)
    assert read_readings(path).registers["ts"][0] == datetime(2023, 2, 2, 13, 27, 47, tzinfo=UTC)
    as_cet = read_readings(path, options=ReadOptions(tz="Europe/Amsterdam")).registers["ts"][0]
    assert as_cet == datetime(2023, 2, 2, 12, 27, 47, tzinfo=UTC)


def test_heat_meter_without_electricity_registers_is_no_data():
    result = read_readings(data_file(P1 + "telegram_unpadded_crc.txt"))  # 3-digit CRC !B9F, verified
    assert result.registers.height == 0 and result.frame.height == 0
    assert [a.kind for a in result.anomalies] == [NO_DATA]


def test_no_real_equipment_id_is_an_ean():
    for name in DATED:
        assert read_readings(data_file(P1 + name)).connection is None


@pytest.mark.parametrize("name", [n for n in ALL_FILES if "unpadded" in n or n in DATED])
def test_crc_matches_dsmr_parser_and_the_stated_value(name):
    text = raw_text(data_file(P1 + name))
    body, stated = re.search(r"(?s)(/.*!)([0-9A-F]{3,4})", text).groups()
    assert crc16_arc(body.encode("latin-1")) == TelegramParser.crc16(body) == int(stated, 16)


# --- the Hungarian stream (PROVENANCE 3c) -----------------------------------------------------------

def test_hungarian_log_54_telegrams_registers_and_coverage():
    path = data_file(HU_LOG)
    text = raw_text(path)
    raws = telegrams_in(text)
    assert len(raws) == 54
    result = read_readings(path)
    budapest = ZoneInfo("Europe/Budapest")
    expected = []
    for t in raws:
        stamp, flag = STAMP_RE.search(t).groups()
        ts = datetime.strptime(stamp, "%y%m%d%H%M%S").replace(tzinfo=budapest).astimezone(UTC)
        assert flag == "S"
        expected += [(ts, name, wh) for name, wh in registers_in(t).items()]
    assert len(expected) == 540
    got = result.registers.sort("ts", "register")
    assert got.rows() == sorted(expected)
    assert got["ts"].n_unique() == 54
    assert got["ts"].min() == datetime(2023, 8, 23, 23, 21, 30, tzinfo=UTC)  # 01:21:30 local
    assert got["ts"].max() == datetime(2023, 8, 23, 23, 30, 20, tzinfo=UTC)  # 01:30:20 local
    assert (got.group_by("register").agg(ok=(pl.col("value_wh").diff().drop_nulls() >= 0).all())["ok"]).all()
    # 01:21:30..01:30:20 local: the quarter 01:15 lacks its start, 01:30 its end -> none complete
    assert result.frame.height == 0
    partial = by_kind(result, PARTIAL_INTERVAL)
    assert [a.at for a in partial] == [datetime(2023, 8, 23, 23, 15, tzinfo=UTC),
                                       datetime(2023, 8, 23, 23, 30, tzinfo=UTC)]
    assert [a.row for a in partial] == [2, header_lines(path)[51]]  # the 01:30:00 telegram
    # depersonalised + LF endings: every CRC fails -> imported with one CRC_NOT_CHECKED
    crc = by_kind(result, CRC_NOT_CHECKED)
    assert len(crc) == 1 and "all 54" in crc[0].detail
    first, last = registers_in(raws[0]), registers_in(raws[-1])
    tariffs = [f"import_t{k}" for k in range(1, 5)]
    assert not_placed(result)[0] == sum(last[t] for t in tariffs) - sum(first[t] for t in tariffs)


def test_hungarian_log_with_a_corrupted_register_is_rejected(tmp_path):
    text = raw_text(data_file(HU_LOG))
    cut = text.rindex("\n/") + 1  # the last telegram: no CRC can vouch for it, its total must
    last = text[cut:]
    value = re.search(r"1-0:1\.8\.1\((\d+\.\d+)\*kWh\)", last).group(1)
    changed = f"{Decimal(value) + Decimal('0.1'):010.3f}"
    bad = tmp_path / "hu.log"
    bad.write_bytes((text[:cut] + last.replace(value, changed, 1)).encode("latin-1"))
    with pytest.raises(InputRejected) as exc:
        read_readings(bad)
    assert exc.value.rows == [header_lines(bad)[-1]] and "import_total" in exc.value.problem


# --- CRC rule ---------------------------------------------------------------------------------------

def test_a_single_telegram_with_one_digit_changed_is_rejected(tmp_path):
    good = raw_text(data_file(P1 + "telegram_v5.txt"))
    bad = tmp_path / "v5.txt"
    bad.write_bytes(good.replace("1-0:1.8.1(000004.426", "1-0:1.8.1(000004.427").encode("latin-1"))
    with pytest.raises(InputRejected) as exc:
        read_readings(bad)
    assert "v5.txt, row 1:" in str(exc.value) and "fail their CRC" in str(exc.value)


def test_lf_line_endings_still_verify_the_crc(tmp_path):
    lf = tmp_path / "v5_lf.txt"
    lf.write_bytes(raw_text(data_file(P1 + "telegram_v5.txt")).replace("\r\n", "\n").encode("latin-1"))
    result = read_readings(lf)
    assert result.registers.height == 4 and not by_kind(result, CRC_NOT_CHECKED)


def test_one_corrupted_telegram_in_a_stream_rejects_the_file(tmp_path):
    t0 = datetime(2025, 1, 15, 10, 0, tzinfo=UTC)
    telegrams = [build_telegram(t0 + timedelta(seconds=10 * k), (1000 + k, 0)) for k in range(20)]
    telegrams[7] = telegrams[7].replace("1-0:1.8.2(000000.000", "1-0:1.8.2(000000.001")
    path = write(tmp_path, "stream.log", telegrams)
    with pytest.raises(InputRejected) as exc:
        read_readings(path)
    assert exc.value.rows == [header_lines(path)[7]] and "1 of 20 telegram(s)" in exc.value.problem


def test_a_stream_in_which_every_crc_fails_is_imported_unverified(tmp_path):
    t0 = datetime(2025, 1, 15, 10, 0, tzinfo=UTC)
    good = [build_telegram(t0 + timedelta(seconds=10 * k), (1000 + k, 0)) for k in range(3)]
    telegrams = [re.sub(r"![0-9A-F]{4}", "!0000", t) for t in good]
    result = read_readings(write(tmp_path, "all_bad.log", telegrams))
    assert result.registers["ts"].n_unique() == 3
    assert len(by_kind(result, CRC_NOT_CHECKED)) == 1


# --- quarters from a built stream -------------------------------------------------------------------

def test_45_minutes_of_telegrams_give_the_expected_quarters(tmp_path):
    t0 = datetime(2025, 1, 15, 10, 0, tzinfo=UTC)
    imp, exp, telegrams = [1_000_000, 2_000_000], [500, 600], []
    for k in range(271):  # 10:00:00 .. 10:45:00 every 10 s; import +3 Wh/10 s on T1, then +5 on T2, then
        if 1 <= k <= 90:  # +1 on T2 with export +4 on T2
            imp[0] += 3
        elif 91 <= k <= 180:
            imp[1] += 5
        elif k >= 181:
            imp[1], exp[1] = imp[1] + 1, exp[1] + 4
        if k != 90:  # no telegram at 10:15:00: that boundary is interpolated from 10:14:50 and 10:15:10
            telegrams.append(build_telegram(t0 + timedelta(seconds=10 * k), tuple(imp), tuple(exp)))
        if k == 30:
            telegrams.append("junk \xff\xfe between telegrams\r\n")
    result = read_readings(write(tmp_path, "45min.log", telegrams))
    # 10:15 boundary = R(10:14:50) + (R(10:15:10) - R(10:14:50)) / 2 = 89*3 + (3 + 5)/2 = 271 Wh above
    # R(10:00), so Q1 = 271 (true 270), Q2 = 90*3 + 90*5 - 271 = 449, Q3 = 90; export only in Q3: 90*4 = 360.
    assert result.frame.select("interval_start", "import_wh", "export_wh", "status").rows() == [
        (t0, 271, 0, "actual"), (t0 + timedelta(minutes=15), 449, 0, "actual"),
        (t0 + timedelta(minutes=30), 90, 360, "actual")]
    assert result.anomalies == []
    assert result.registers["ts"].n_unique() == 270


def test_a_logger_outage_is_a_gap_and_no_wh_is_lost(tmp_path):
    t0 = datetime(2025, 6, 1, 10, 0, tzinfo=UTC)
    times = [t0 + timedelta(seconds=10 * k) for k in range(121)]  # 10:00:00 .. 10:20:00
    times += [t0 + timedelta(minutes=67, seconds=30 + 10 * k) for k in range(136)]  # 11:07:30 .. 11:30:00
    telegrams = [build_telegram(t, (5000 + 2 * i, 7000), (100, 300 + i)) for i, t in enumerate(times)]
    result = read_readings(write(tmp_path, "gap.log", telegrams))
    q = timedelta(minutes=15)
    assert result.frame["interval_start"].to_list() == [t0, t0 + 5 * q]
    assert [(a.kind, a.at) for a in result.anomalies] == [
        (PARTIAL_INTERVAL, t0 + q), (GAP, t0 + 2 * q), (PARTIAL_INTERVAL, t0 + 4 * q)]
    assert "2 quarter(s)" in by_kind(result, GAP)[0].detail
    # everything read is either in a quarter or stated as not placed: 2 Wh import, 1 Wh export per telegram
    assert int(result.frame["import_wh"].sum()) + not_placed(result)[0] == 2 * (len(times) - 1)
    assert int(result.frame["export_wh"].sum()) + not_placed(result)[1] == len(times) - 1


def test_autumn_dst_flags_place_the_repeated_hour(tmp_path):
    # 00:10Z .. 01:20Z is local 02:10:00S .. 02:59:50S, then 02:00:00W .. 02:20:00W: wall-clock times
    # 02:10-02:20 occur twice, told apart only by the S/W flag
    t0 = datetime(2025, 10, 26, 0, 10, tzinfo=UTC)
    telegrams = [build_telegram(t0 + timedelta(seconds=10 * k), (9000 + 2 * k, 0)) for k in range(421)]
    assert "251026021500S" in "".join(telegrams) and "251026021500W" in "".join(telegrams)
    result = read_readings(write(tmp_path, "dst.log", telegrams))
    assert result.frame.select("interval_start", "import_wh").rows() == [
        (datetime(2025, 10, 26, 0, 15 * i, tzinfo=UTC) + timedelta(minutes=15), 180) for i in range(4)]
    assert result.registers["ts"].n_unique() == 421


@pytest.mark.parametrize(("flag", "utc_hour"), [("S", 0), ("W", 1)])
def test_one_repeated_wall_clock_time_by_its_flag(tmp_path, flag, utc_hour):
    telegram = build_telegram(datetime(2025, 10, 26, 0, 30, tzinfo=UTC), (1000, 0))
    telegram = telegram.replace("0-0:1.0.0(251026023000S)", f"0-0:1.0.0(251026023000{flag})")
    body = telegram[: telegram.index("!") + 1]
    path = write(tmp_path, "one.txt", [f"{body}{TelegramParser.crc16(body):04X}\r\n"], header="")
    assert read_readings(path).registers["ts"][0] == datetime(2025, 10, 26, utc_hour, 30, tzinfo=UTC)


def test_a_day_of_10_second_telegrams(tmp_path):
    t0 = datetime(2025, 3, 12, 0, 0, tzinfo=UTC)
    telegrams = [build_telegram(t0 + timedelta(seconds=10 * k), (10_000 + k, 20_000), (0, k // 2))
                 for k in range(8640)]
    path = write(tmp_path, "day.log", telegrams)
    start = time.perf_counter()
    result = read_readings(path)
    elapsed = time.perf_counter() - start
    size_mb = path.stat().st_size / 1e6
    print(f"\n[p1 performance] {len(telegrams)} telegrams ({size_mb:.1f} MB) imported in {elapsed:.2f} s")
    assert result.frame.height == 95  # 00:00 .. 23:30 complete; 23:45 ends at 23:59:50
    assert set(result.frame["import_wh"].to_list()) == {90}
    assert set(result.frame["export_wh"].to_list()) == {45}
    assert [a.kind for a in result.anomalies] == [PARTIAL_INTERVAL]


# --- rejections and the other rules -----------------------------------------------------------------

def test_a_truncated_telegram_is_rejected(tmp_path):
    text = raw_text(data_file(P1 + "telegram_v5.txt"))
    cut = tmp_path / "cut.txt"
    cut.write_bytes("\r\n".join(text.split("\r\n")[:12]).encode("latin-1"))
    with pytest.raises(InputRejected, match=r"cut\.txt, row 1: incomplete telegram"):
        read_readings(cut, format="dsmr-p1")


def test_a_capture_that_began_mid_telegram_is_rejected(tmp_path):
    lines = raw_text(data_file(HU_LOG)).split("\n")
    mid = tmp_path / "mid.log"
    mid.write_bytes("\n".join(lines[19:]).encode("latin-1"))  # starts at 1-0:2.8.1 of the first telegram
    with pytest.raises(InputRejected, match=r"mid\.log, row 1: OBIS data outside a telegram"):
        read_readings(mid, format="dsmr-p1")


def test_a_non_numeric_register_is_rejected_naming_its_line(tmp_path):
    t = build_telegram(datetime(2025, 1, 1, tzinfo=UTC), (1234, 0))
    t = t.replace("000001.234*kWh", "0000x1.234*kWh")
    body = t[: t.index("!") + 1]
    path = write(tmp_path, "bad_value.txt", [f"{body}{TelegramParser.crc16(body):04X}\r\n"], header="")
    line = next(i for i, ln in enumerate(raw_text(path).split("\n"), 1) if "0000x1.234" in ln)
    with pytest.raises(InputRejected) as exc:
        read_readings(path)
    assert exc.value.rows == [line] and "bad_value.txt" in str(exc.value)


def test_a_register_missing_from_one_telegram_is_rejected(tmp_path):
    t0 = datetime(2025, 1, 15, 10, 0, tzinfo=UTC)
    telegrams = [build_telegram(t0 + timedelta(seconds=10 * k), (1000 + k, 0),
                                drop="1-0:2.8.2" if k == 3 else "") for k in range(6)]
    path = write(tmp_path, "missing.log", telegrams)
    with pytest.raises(InputRejected) as exc:
        read_readings(path)
    assert exc.value.rows == [header_lines(path)[3]] and "same" in exc.value.problem


def test_a_register_going_backwards_is_rejected_naming_both_telegrams(tmp_path):
    t0 = datetime(2025, 1, 15, 10, 0, tzinfo=UTC)
    values = [1000, 1001, 1002, 1003, 999, 1005]
    telegrams = [build_telegram(t0 + timedelta(seconds=10 * k), (v, 0)) for k, v in enumerate(values)]
    path = write(tmp_path, "back.log", telegrams)
    with pytest.raises(InputRejected) as exc:
        read_readings(path)
    assert exc.value.rows == header_lines(path)[3:5] and "backwards" in exc.value.problem


def test_duplicate_telegrams_are_kept_once_and_conflicts_rejected(tmp_path):
    t0 = datetime(2025, 1, 15, 10, 0, tzinfo=UTC)
    telegrams = [build_telegram(t0 + timedelta(seconds=10 * k), (1000 + k, 0)) for k in range(4)]
    path = write(tmp_path, "dup.log", [*telegrams[:3], telegrams[2], telegrams[3]])
    result = read_readings(path)
    assert result.registers["ts"].n_unique() == 4 and result.registers.height == 16
    dup = by_kind(result, DUPLICATE)
    assert [(a.at, a.row) for a in dup] == [(t0 + timedelta(seconds=20), header_lines(path)[3])]
    other = build_telegram(t0 + timedelta(seconds=20), (1002, 5))
    path = write(tmp_path, "conflict.log", [*telegrams[:3], other, telegrams[3]])
    with pytest.raises(InputRejected) as exc:
        read_readings(path)
    assert exc.value.rows == header_lines(path)[2:4]


def test_an_ean_equipment_id_is_the_connection_and_two_meters_are_rejected(tmp_path):
    ean = "871687400000000011"
    t0 = datetime(2025, 1, 15, 10, 0, tzinfo=UTC)
    hex_id = ean.encode().hex().upper()
    telegrams = [build_telegram(t0 + timedelta(seconds=10 * k), (1000, 0), equipment=hex_id)
                 for k in range(2)]
    assert read_readings(write(tmp_path, "ean.log", telegrams)).connection == ean
    telegrams.append(build_telegram(t0 + timedelta(seconds=20), (1000, 0)))
    with pytest.raises(InputRejected, match="more than one meter"):
        read_readings(write(tmp_path, "two.log", telegrams))


def test_a_stated_total_that_disagrees_with_its_tariffs_is_a_register_mismatch(tmp_path):
    t = build_telegram(datetime(2025, 1, 15, 10, 0, tzinfo=UTC), (1000, 2000),
                       extra=("1-0:1.8.0(000003.100*kWh)",))
    result = read_readings(write(tmp_path, "total.txt", [t], header=""))
    assert len(by_kind(result, REGISTER_MISMATCH)) == 1
    assert "3100 Wh" in by_kind(result, REGISTER_MISMATCH)[0].detail


def test_at_must_be_aware_and_can_date_only_one_telegram(tmp_path):
    path = data_file(P1 + "telegram_v2_2.txt")
    with pytest.raises(InputRejected, match="no time zone"):
        read_readings(path, options=ReadOptions(at=datetime(2024, 1, 1, 12)))
    text = raw_text(path)
    two = tmp_path / "two_v22.txt"
    two.write_bytes((text + text).encode("latin-1"))
    with pytest.raises(InputRejected, match="--at can date only a single telegram"):
        read_readings(two, options=ReadOptions(at=datetime(2024, 1, 1, 12, tzinfo=UTC)))


def test_an_energy_line_the_specification_does_not_read_is_rejected(tmp_path):
    t = build_telegram(datetime(2025, 1, 15, 10, 0, tzinfo=UTC), (1000, 2000),
                       extra=("1-0:1.8.3(000005.000*kWh)",))
    path = write(tmp_path, "t3.txt", [t], header="")  # DSMR 5 (V5) has no third import tariff
    line = next(i for i, ln in enumerate(raw_text(path).split("\n"), 1) if ln.startswith("1-0:1.8.3"))
    with pytest.raises(InputRejected, match="not read by the V5 specification") as exc:
        read_readings(path)
    assert exc.value.rows == [line]
