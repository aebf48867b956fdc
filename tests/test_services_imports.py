"""Every real file of a supported format imports through the service; importing it again changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from conftest import data_file
from kwartier.ingest import InputRejected
from kwartier.services.imports import import_prices, import_readings
from kwartier.store import schema as s

EAN = "871687120058657526"

PRICE_FILES = [
    "entsoe_xml/A44_NL_20260930_20261001_PT15M_A03_splashcode01.xml",
    "entsoe_xml/bertrik_energymix_A44_day_ahead_prices.xml",
    "entsoe_xml/hass_entsoe_BE_60M.xml",
    "entsoe_xml/hass_entsoe_BE_60M_15M_mix.xml",
    "entsoe_xml/hass_entsoe_BE_15M_avg.xml",
    "entsoe_xml/hass_entsoe_BE_15M_exact4.xml",
    "entsoe_xml/hass_entsoe_DE_60M_15M_overlap.xml",
    "prices_nl/entsoe_tp_export_NL_Day-ahead_Prices_202301010000-202401010000.csv",
    "prices_nl/energyzero_fixtures/rest_electricity_quarter_response.json",
    "prices_nl/energyzero_fixtures/rest_electricity_hour_response.json",
    "prices_nl/energyzero_fixtures/graphql_energy.json",
    "prices_nl/easyenergy_fixtures/energy.json",
    "prices_nl/easyenergy_fixtures/energy_quarter.json",
    "prices_nl/nl_dayahead_2025_15min_jeroen_nl.csv",
    "prices_nl/mark_vis_epex_json/prices_2019.json",
    "prices_nl/mark_vis_epex_json/prices_2022.json",
    "prices_nl/mark_vis_epex_json/prices_2025.json",
]

METER_FILES = [
    "household_nl/slimmemeterportal_2023_15min.csv",
    "household_nl/slimmemeterportal_2023_15min.xlsx",
    "household_nl/slimmemeterportal_2024_15min_partial.csv",
    "household_nl/energiemanageronline_2025_15min_cumulative.csv",
    "household_nl/homewizard_p1_2022-09_15min_cumulative.csv",
    "household_nl/dsmrreader_export_2024_hourly.csv",
    "household_nl/p1mon_e_history_uur.csv",
    "household_nl/p1mon_e_history_min.csv",
    "household_be/fluvius_2023-10-22_2023-12-31_15min.csv",
    "dsmr_p1_telegrams/p1_log_hu/sample_depersonalised_p1_meter_w_solar_20230824.log",
    "dsmr_p1_telegrams/telegram_v5.txt",
    "dsmr_p1_telegrams/telegram_fluvius_v171.txt",
    "dsmr_p1_telegrams/openhab/dsmr_50.telegram",
]


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
    first = import_readings(engine, path, EAN)
    assert first.counts.new == first.intervals
    second = import_readings(engine, path, EAN)
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
