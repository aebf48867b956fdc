"""Device files for steering: the issue's battery file, every device table, series, and errors that name the field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest

from kwartier.steer.devices import (
    DEFAULT_WEAR_EUR_PER_KWH,
    DeviceFileError,
    HeatPump,
    devices_from_text,
    load_devices,
    series_values,
)

ISSUE_BATTERY = """
[connection]
import_limit_kw = 17.25
export_limit_kw = 17.25

[[battery]]
id = "powerwall"
capacity_kwh = 13.5
max_charge_kw = 5.0
max_discharge_kw = 5.0
charge_efficiency = 0.95
discharge_efficiency = 0.95
soc_start_kwh = 6.75
soc_end_min_kwh = 6.75
wear_cost_eur_per_kwh = 0.0   # per kWh discharged; default a realistic value
"""

FULL = """
[[battery]]
id = "bat"
capacity_kwh = 10
max_charge_kw = 3
max_discharge_kw = 3
soc_start_kwh = 5

[[ev]]
id = "car"
arrival = 2026-01-15T18:00:00+01:00
departure = 2026-01-16T07:00:00+01:00
energy_needed_kwh = 20
max_power_kw = 11
efficiency = 0.9

[[heat_pump]]
id = "hp"
r_k_per_kw = 6.0
c_kwh_per_k = 10.0
comfort_min_c = 19.5
comfort_max_c = 22.0
initial_indoor_c = 20.0
max_electric_kw = 3.0
cop = [[-7, 2.5], [7, 4.0]]

[[appliance]]
id = "dishwasher"
profile_kw = [2.0, 0.2, 1.8]
earliest_start = 2026-01-15T20:00:00+01:00
latest_end = 2026-01-16T07:00:00+01:00

[base_load]
values = [0.3, 0.5]

[pv]
value = 0.0

[outdoor_temperature]
csv = "temps.csv"
column = "celsius"
"""


def test_the_issue_battery_file_loads_exactly(tmp_path):
    p = tmp_path / "house.toml"
    p.write_text(ISSUE_BATTERY)
    d = load_devices(p)
    b = d.battery[0]
    assert (b.id, b.capacity_kwh, b.max_charge_kw, b.soc_start_kwh, b.soc_end_min_kwh) == ("powerwall", 13.5, 5.0,
                                                                                            6.75, 6.75)
    assert b.wear_cost_eur_per_kwh == Decimal("0.0")
    assert d.connection.import_limit_kw == 17.25


def test_default_wear_cost_is_the_stated_figure():
    d = devices_from_text(ISSUE_BATTERY.replace("wear_cost_eur_per_kwh = 0.0", ""), "x")
    assert d.battery[0].wear_cost_eur_per_kwh == DEFAULT_WEAR_EUR_PER_KWH == Decimal("0.05")


def test_every_device_table_and_a_csv_series(tmp_path):
    (tmp_path / "temps.csv").write_text("start,celsius\n2026-01-15T00:00:00Z,4.0\n2026-01-15T01:00:00Z,6.5\n")
    p = tmp_path / "house.toml"
    p.write_text(FULL)
    d = load_devices(p)
    assert [x.id for x in d.all_devices()] == ["bat", "car", "hp", "dishwasher"]
    starts = [datetime(2026, 1, 15, tzinfo=UTC) + timedelta(minutes=15 * i) for i in range(6)]
    # each CSV value holds until the next row
    assert series_values(d.outdoor_temperature, starts, "t").tolist() == [4.0] * 4 + [6.5] * 2
    # an inline list repeats
    assert series_values(d.base_load, starts, "b").tolist() == [0.3, 0.5] * 3
    assert series_values(None, starts, "x").tolist() == [0.0] * 6


def test_csv_series_not_covering_the_horizon_names_the_file(tmp_path):
    (tmp_path / "temps.csv").write_text("start,celsius\n2026-01-15T06:00:00Z,4.0\n")
    p = tmp_path / "house.toml"
    p.write_text(FULL)
    d = load_devices(p)
    with pytest.raises(DeviceFileError, match=r"temps\.csv: the outdoor_temperature series starts after"):
        series_values(d.outdoor_temperature, [datetime(2026, 1, 15, tzinfo=UTC)], "outdoor_temperature")


def test_cop_is_interpolated_and_flat_beyond_the_table():
    hp = HeatPump(id="h", r_k_per_kw=5, c_kwh_per_k=10, comfort_min_c=19, comfort_max_c=21, initial_indoor_c=20,
                  max_electric_kw=2, cop=[(-7.0, 2.5), (7.0, 4.0)])
    assert np.allclose(hp.cop_at(np.array([-20.0, 0.0, 30.0])), [2.5, 3.25, 4.0])


@pytest.mark.parametrize(("change", "message"), [
    (("capacity_kwh = 13.5", "capacity_kwh = -1"), r"\[\[battery\]\] #1 \(powerwall\), field 'capacity_kwh'"),
    (("soc_start_kwh = 6.75", "soc_start_kwh = 20"), r"powerwall\).*soc_start_kwh 20.0 is above capacity_kwh"),
    (("max_charge_kw = 5.0", "max_charge_kw = 5.0\ncolour = 1"), r"field 'colour': unknown field"),
    (("import_limit_kw = 17.25", "import_limit_kw = 0"), r"\[connection\], field 'import_limit_kw'"),
])
def test_errors_name_the_file_device_and_field(tmp_path, change, message):
    p = tmp_path / "bad.toml"
    p.write_text(ISSUE_BATTERY.replace(*change))
    with pytest.raises(DeviceFileError, match=message) as info:
        load_devices(p)
    assert str(p) in str(info.value)


def test_heat_pump_without_outdoor_temperature_and_duplicate_ids_are_refused():
    text = FULL.replace('[outdoor_temperature]\ncsv = "temps.csv"\ncolumn = "celsius"\n', "")
    with pytest.raises(DeviceFileError, match="needs an \\[outdoor_temperature\\] series"):
        devices_from_text(text, "house.toml")
    with pytest.raises(DeviceFileError, match="device id\\(s\\) used twice: bat"):
        devices_from_text(FULL.replace('id = "car"', 'id = "bat"'), "house.toml")


def test_naive_times_and_bad_toml_are_refused(tmp_path):
    with pytest.raises(DeviceFileError, match="has no offset"):
        devices_from_text(FULL.replace("2026-01-15T18:00:00+01:00", "2026-01-15T18:00:00"), "house.toml")
    with pytest.raises(DeviceFileError, match=r"house\.toml: not valid TOML"):
        devices_from_text("[[battery]\n", "house.toml")
    with pytest.raises(DeviceFileError, match="no such device file"):
        load_devices(tmp_path / "absent.toml")
