"""Every real file of a supported format imports through the service; importing it again changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from conftest import SHARED_DATA, data_file
from kwartier.ingest import InputRejected
from kwartier.services.imports import import_prices, import_readings
from kwartier.store import schema as s

EAN = "871687120058657526"


#: Files in ../shared/data that are not electricity prices or meter readings of a supported format,
#: each with the reason. Every other file there must import, and import again as a no-op.
NOT_IMPORTED = {
    "entsoe_xml/bertrik_energymix_A75_actualgeneration.xml": "generation, not prices (rejected, tested)",
    "entsoe_xml/bertrik_energymix_A69_solar_wind_forecast.xml": "forecast, not prices (rejected, tested)",
    "entsoe_xml/bertrik_energymix_A68_installed_capacity.xml": "capacity, not prices (rejected, tested)",
    "prices_nl/energyzero_fixtures/graphql_gas.json": "gas (rejected, tested)",
    "prices_nl/energyzero_fixtures/rest_gas_day_response.json": "gas (rejected, tested)",
    "prices_nl/energyzero_fixtures/rest_error_response.json": "an API error (rejected, tested)",
    "prices_nl/energyzero_fixtures/graphql_energy_no_prices.json": "an empty API answer (rejected, tested)",
    "prices_nl/easyenergy_fixtures/gas.json": "gas (rejected, tested)",
    "dsmr_p1_telegrams/telegram_unpadded_crc.txt": "a heat meter, no electricity (no_data, test_ingest_p1.py)",
    "household_nl/liander_daily_readings_2023.csv": "daily DSO readings: not a format of this release",
    "household_nl/p1mon_e_historie.db.xlsx": "imported in tests/test_ingest_meters_p1mon.py (slow workbook)",
}
UNDATED_TELEGRAMS = {"telegram_v2_2.txt", "telegram_v3.txt", "telegram_esy5q3da1004_v304.txt",
                     "telegram_esy5q3db1024_v304.txt", "Landis_Gyr_E350.telegram"}


def _files(patterns: list[str]) -> list[str]:
    found = sorted({str(p.relative_to(SHARED_DATA)) for pat in patterns for p in SHARED_DATA.glob(pat)})
    return [f for f in found if f not in NOT_IMPORTED] or ["(shared data absent)"]


PRICE_FILES = _files(["entsoe_xml/*.xml", "prices_nl/**/*.json", "prices_nl/*.csv", "prices_be/*.csv"])
METER_FILES = _files(["household_nl/*.csv", "household_nl/*.xlsx", "household_be/*.csv",
                      "dsmr_p1_telegrams/**/*.txt", "dsmr_p1_telegrams/**/*.telegram", "dsmr_p1_telegrams/**/*.log"])


@pytest.mark.shared_data
@pytest.mark.parametrize("rel", PRICE_FILES)
def test_price_file_imports_and_reimport_changes_nothing(engine, rel):
    path = data_file(rel)
    first = import_prices(engine, path)
    assert first.intervals > 0 and first.counts.new == first.intervals
    second = import_prices(engine, path)
    assert (second.counts.new, second.counts.revised) == (0, 0)
    assert second.counts.unchanged == first.intervals
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(s.imports)).scalar() == 1  # no trace of the no-op


@pytest.mark.shared_data
@pytest.mark.parametrize("rel", METER_FILES)
def test_meter_file_imports_and_reimport_changes_nothing(engine, rel):
    path = data_file(rel)
    at = datetime(2024, 1, 1, 12, tzinfo=UTC) if path.name in UNDATED_TELEGRAMS else None
    first = import_readings(engine, path, EAN, at=at)
    assert first.counts.new == first.intervals
    assert first.intervals > 0 or first.registers > 0
    second = import_readings(engine, path, EAN, at=at)
    assert (second.counts.new, second.counts.revised, second.registers) == (0, 0, 0)
    with engine.connect() as conn:
        stored = conn.execute(
            select(func.count(), func.coalesce(func.sum(s.readings.c.import_wh), 0)).where(s.readings.c.is_current)
        ).one()
    assert tuple(stored) == (first.intervals, first.import_wh)


def test_a_changed_value_becomes_a_new_version_and_is_reported(engine, tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("timestamp,import_kwh,export_kwh\n2025-01-01T00:00:00Z,0.100,0\n2025-01-01T00:15:00Z,0.200,0\n")
    import_readings(engine, path, EAN)
    path.write_text("timestamp,import_kwh,export_kwh\n2025-01-01T00:00:00Z,0.100,0\n2025-01-01T00:15:00Z,0.250,0\n")
    again = import_readings(engine, path, EAN)
    assert (again.counts.new, again.counts.unchanged, again.counts.revised) == (0, 1, 1)
    revised = [a for a in again.anomalies if a.kind == "revised"]
    assert revised and revised[0].at == datetime(2025, 1, 1, 0, 15, tzinfo=UTC)
    with engine.connect() as conn:
        versions = conn.execute(
            select(s.readings.c.version, s.readings.c.import_wh, s.readings.c.is_current)
            .where(s.readings.c.interval_start == datetime(2025, 1, 1, 0, 15, tzinfo=UTC))
            .order_by(s.readings.c.version)
        ).all()
    assert [tuple(v) for v in versions] == [(1, 200, False), (2, 250, True)]


def test_bad_file_is_rejected_and_nothing_is_half_imported(engine, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(
        "timestamp,import_kwh,export_kwh\n2025-01-01T00:00:00Z,0.100,0\n2025-01-01T00:15:00Z,zero,0\n"
    )
    with pytest.raises(InputRejected, match=r"bad\.csv, row 3.*'zero'"):
        import_readings(engine, path, EAN)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(s.readings)).scalar() == 0
        assert conn.execute(select(func.count()).select_from(s.imports)).scalar() == 0


def test_wrong_ean_is_refused(engine, tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("timestamp,import_kwh,export_kwh\n2025-01-01T00:00:00Z,0.100,0\n")
    with pytest.raises(InputRejected, match="check digit"):
        import_readings(engine, path, "871687120058657527")


def test_zone_conflict_is_refused(engine):
    path = data_file("entsoe_xml/hass_entsoe_BE_60M.xml")
    with pytest.raises(InputRejected, match="zone BE, not NL"):
        import_prices(engine, path, zone="NL")


@pytest.mark.shared_data
def test_a_wrong_day_at_the_source_is_found_by_the_cross_check(engine):
    """jeroen.nl's 2025-11-07 holds a quarter of the true price (PROVENANCE 1a); mark-vis has the true one."""
    import_prices(engine, data_file("prices_nl/mark_vis_epex_json/prices_2025.json"))
    summary = import_prices(engine, data_file("prices_nl/nl_dayahead_2025_15min_jeroen_nl.csv"))
    found = [a for a in summary.anomalies if a.kind == "source_disagreement"]
    assert len(found) == 1, [a.detail for a in found]
    assert found[0].at == datetime(2025, 11, 6, 23, tzinfo=UTC)  # local midnight of 2025-11-07
    assert "24 hour(s) on 2025-11-07" in found[0].detail and "median ratio 0.250" in found[0].detail
