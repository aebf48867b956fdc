"""The demo community: 90 households whose models behave physically, imported, settled and billed, idempotently."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from collections import defaultdict
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from conftest import data_file
from kwartier import synth
from kwartier.ids import validate_ean18
from kwartier.services.community import current_definition
from kwartier.store import open_store

AMS = ZoneInfo("Europe/Amsterdam")
JANUARY = ("--from", "2026-01-01", "--to", "2026-02-01")


def demo(folder: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    clock = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "kwartier.cli", "demo", "--json", "--no-serve", *args], cwd=folder,
                       capture_output=True, text=True, timeout=600)
    return r, time.monotonic() - clock


@pytest.fixture(scope="module")
def january(tmp_path_factory) -> tuple[Path, dict, float]:
    """One demo run for January 2026 (a winter month) in a fresh folder, with its wall time."""
    folder = tmp_path_factory.mktemp("demo")
    r, seconds = demo(folder, *JANUARY)
    assert r.returncode == 0, r.stderr
    return folder, json.loads(r.stdout), seconds


def meta(folder: Path) -> list[dict]:
    return json.loads((folder / "kwartier-demo" / "households.json").read_text())["households"]


def daily_wh(folder: Path, ean: str, column: str) -> dict[date, int]:
    """Wh per local day from a generated meter file, read with the csv module (independent of the importer)."""
    out: dict[date, int] = defaultdict(int)
    with (folder / "kwartier-demo" / f"readings_{ean}.csv").open() as fh:
        for row in csv.DictReader(fh):
            ts = datetime.fromisoformat(row["timestamp"].replace("Z", "+00:00")).astimezone(AMS)
            out[ts.date()] += int(Decimal(row[column]) * 1000)
    return out


def weather(folder: Path) -> dict[date, tuple[float, float]]:
    with (folder / "kwartier-demo" / "weather.csv").open() as fh:
        return {date.fromisoformat(r["day"]): (float(r["temperature_c"]), float(r["clearness"]))
                for r in csv.DictReader(fh)}


def test_the_demo_finishes_in_time(january):
    _folder, out, seconds = january
    print(f"\ndemo, 90 households x January 2026 (generate, import twice, settle, bill): {seconds:.1f} s wall, "
          f"{out['seconds']} s inside")
    assert seconds < 120


def test_the_community_has_90_participants_and_39_batteries(january):
    folder, out, _ = january
    assert out["participants"] == 90 and out["batteries"] == 39 and out["from"] == "2026-01-01"
    assert out["to"] == "2026-02-01" and out["months"] == ["2026-01"] and out["not_billed"] is None
    homes = meta(folder)
    assert len(homes) == 90 and sum(h["battery"] for h in homes) == 39
    assert all(h["battery_kwh"] == 13.5 and h["battery_kw"] == 5.0 and h["pv_kwp"] > 0 for h in homes if h["battery"])
    assert sum(h["pv_kwp"] > 0 for h in homes) > 45  # solar on most
    assert 0 < sum(h["heat_loss_w_per_k"] > 0 for h in homes) < 45 and sum(h["ev_commute_km"] > 0 for h in homes) > 0
    defn = current_definition(open_store(f"sqlite:///{folder / 'kwartier.db'}"))
    assert len(defn.spec.participants) == 90 and len(defn.spec.connections) == 90
    assert {p.locale for p in defn.spec.participants} == {"nl", "en", "fr"}
    assert all(validate_ean18(c.ean) for c in defn.spec.connections)
    plans = [c.plan for c in defn.spec.contracts]
    assert plans.count("nl-dynamic-2026") > 45 and {"jem-2.0", "nl-fixed-2026", "nl-daynight-2026"} <= set(plans)
    roles = {p.id: (set(p.roles), p.vat_id) for p in defn.spec.parties}
    assert roles["zuidstroom"][0] == {"supplier", "aggregator"} and roles["zuidstroom"][1]
    assert roles["netbeheer"][0] == {"grid"} and roles["netbeheer"][1]
    assert {"tax", "community"} <= set().union(*(r for r, _ in roles.values()))
    assert out["invoices"] == len(out["invoice_list"]) == 90



def test_batteries_on_a_dynamic_plan_are_steered_and_save_money(january):
    """33 of the 39 batteries are on a dynamic plan and follow the optimiser, re-planned daily (31 days at
    13:00 plus the start); the 6 on the fixed plan keep the self-consumption rule."""
    folder, out, _ = january
    st = out["steering"]
    assert st["batteries_steered"] == 33 and st["solves"] == 33 * 32 and st["time_limited"] == 0
    for h in meta(folder):
        want = None if not h["battery"] else "self-consumption" if h["plan"] == "nl-fixed-2026" else "steered"
        assert h["battery_control"] == want, h["participant"]
    saving = st["saving"]
    assert (saving["from"], saving["to"]) == ("2026-01-01", "2026-02-01")
    assert Decimal(saving["eur"]) == Decimal(saving["self_consumption_eur"]) - Decimal(saving["steered_eur"]) > 0
    assert len(saving["by_participant"]) == 33 and all(Decimal(v) >= 0 for v in saving["by_participant"].values())
    print(f"\nsteering: {st['batteries_steered']} batteries, {st['solves']} plans in {st['seconds']} s; "
          f"January saving EUR {saving['eur']} ({saving['self_consumption_eur']} -> {saving['steered_eur']})")

def test_pv_households_export_on_sunny_days(january):
    folder, _out, _ = january
    days = weather(folder)
    by_clearness = sorted(days, key=lambda d: days[d][1])
    sunny, grey = by_clearness[-3:], by_clearness[:3]
    community = defaultdict(int)
    for h in meta(folder):
        exported = daily_wh(folder, h["ean"], "export_kwh")
        for d, wh in exported.items():
            community[d] += wh
        if not h["pv_kwp"]:
            assert sum(exported.values()) == 0, h["participant"]
        elif not h["battery"] and not h["heat_loss_w_per_k"]:  # a battery or heat pump may use a winter surplus
            assert all(exported[d] > 0 for d in sunny), h["participant"]
            assert sum(exported[d] for d in sunny) > sum(exported[d] for d in grey), h["participant"]
    order = sorted(days)
    r = np.corrcoef([days[d][1] for d in order], [community[d] for d in order])[0, 1]
    assert r > 0.5


def test_heat_pump_households_use_more_on_cold_days(january):
    folder, _out, _ = january
    days = weather(folder)
    order = sorted(days)
    pumps = [h for h in meta(folder) if h["heat_loss_w_per_k"]]
    total = defaultdict(int)
    for h in pumps:
        for d, wh in daily_wh(folder, h["ean"], "import_kwh").items():
            total[d] += wh
    r = np.corrcoef([days[d][0] for d in order], [total[d] for d in order])[0, 1]
    assert r < -0.6


def test_evs_charge_in_the_evening_at_11_kw(january):
    folder, _out, _ = january
    unsteered = [h for h in meta(folder) if h["battery_control"] != "steered"]  # a steered battery may charge
    assert sum(bool(h["ev_commute_km"]) for h in unsteered) >= 10  # from the grid at 5 kW at any hour
    for h in unsteered:
        big = []  # local hours of quarters taking 1.5 kWh or more (6 kW and up: a battery may cover 5 kW of 11)
        with (folder / "kwartier-demo" / f"readings_{h['ean']}.csv").open() as fh:
            for row in csv.DictReader(fh):
                if Decimal(row["import_kwh"]) >= Decimal("1.5"):
                    ts = datetime.fromisoformat(row["timestamp"].replace("Z", "+00:00")).astimezone(AMS)
                    big.append(ts.hour)
        if not h["ev_commute_km"]:
            assert big == [], h["participant"]
            continue
        assert len(big) >= 20, h["participant"]  # most days
        evening = sum(1 for hr in big if hr >= 16 or hr < 3)
        assert evening == len(big), (h["participant"], big)


def h25_column(month: int, day_type: str) -> np.ndarray:
    with data_file("profiles_bdew/h25.csv").open() as fh:
        rows = list(csv.reader(fh))
    col = 1 + 3 * (month - 1) + ("SA", "FT", "WT").index(day_type)
    assert rows[1][col] == day_type
    return np.array([float(r[col]) for r in rows[2:]])


@pytest.mark.parametrize(("month", "day_type", "ours"), [(1, "WT", synth.WORKDAY), (1, "SA", synth.SATURDAY),
                                                         (7, "WT", synth.WORKDAY), (10, "FT", synth.SUNDAY)])
def test_household_shape_correlates_with_bdew_h25(month, day_type, ours):
    hour = np.arange(96) / 4.0
    doy = np.full(96, date(2026, month, 15).timetuple().tm_yday, dtype=float)
    shape = synth.household_shape(hour, doy, np.full(96, ours))
    assert np.corrcoef(shape, h25_column(month, day_type))[0, 1] > 0.8


def test_a_households_winter_workdays_correlate_with_h25():
    """With individual variation and noise, the mean of a household's January workdays still has the h25 shape."""
    days = 21
    hour = np.tile(np.arange(96) / 4.0, days)
    day_index = np.repeat(np.arange(days), 96)
    wh = synth.household_demand_wh(hour, 5.0 + day_index, np.zeros_like(day_index), day_index, 3000,
                                   np.random.default_rng(3))
    assert np.corrcoef(wh.reshape(days, 96).mean(axis=0), h25_column(1, "WT"))[0, 1] > 0.8
    per_year_kwh = wh.sum() / days * 365 / 1000
    assert 2500 < per_year_kwh < 4200  # a winter month runs above the 3000 kWh yearly mean


def test_the_battery_rule_never_charges_from_the_grid_and_keeps_energy():
    rng = np.random.default_rng(1)
    load = rng.integers(0, 800, size=(3, 400))
    pv = rng.integers(0, 1500, size=(3, 400))
    imp, exp = synth.battery_self_consumption(load, pv, 13_500, 5_000, efficiency=1.0, initial_soc=0.0)
    assert (imp >= 0).all() and (exp >= 0).all()
    assert (imp <= np.clip(load - pv, 0, None)).all() and (exp <= np.clip(pv - load, 0, None)).all()
    assert not ((imp > 0) & (exp > 0)).any()
    stored = (pv - load).sum(axis=1) - (exp - imp).sum(axis=1)  # what is left in the battery
    assert ((stored >= -3) & (stored <= 13_503)).all()
    assert ((np.clip(pv - load, 0, None) - exp) <= 1250 + 1).all()  # 5 kW for a quarter at most


def test_ev_charging_takes_the_days_need_at_11_kw():
    hour = np.tile(np.arange(96) / 4.0, 3)
    day_index = np.repeat(np.arange(3), 96)
    wh = synth.ev_charging_wh(hour, day_index, np.array([18.0, 21.5, 19.0]), np.array([6000.0, 9000.0, 0.0]))
    assert wh.max() == 2750 and wh[:72].sum() == 0
    assert wh[72:96 + 72].sum() == 6000 and wh[96 + 86:].sum() == 9000  # past midnight into day 3


def test_a_heat_pump_needs_nothing_above_155_c_and_more_when_colder():
    temps = np.array([20.0, 15.5, 10.0, 0.0, -10.0])
    wh = synth.heat_pump_electricity_wh(temps, np.ones(5), 200.0)
    assert wh[0] == wh[1] == 0 and wh[2] < wh[3] < wh[4]
    assert wh[3] == round(200 * 15.5 / 3.0 * 0.25)  # COP 3 at 0 C


@pytest.mark.shared_data
def test_a_real_price_file_is_used(tmp_path):
    path = data_file("prices_nl/mark_vis_epex_json/prices_2025.json")
    r, _ = demo(tmp_path, "--prices", str(path), "--from", "2025-03-01", "--to", "2025-04-01")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["price_source"] == "markvis-json" and out["months"] == ["2025-03"] and out["invoices"] == 90
    assert not (tmp_path / "kwartier-demo" / "prices_NL.csv").exists()
    # Independent reference: the file's hourly EUR/MWh by local hour (no repeated hour in March).
    price_of = {e["timestamp"]: Decimal(str(e["price"])) for e in json.loads(path.read_text())["prices"]}
    window = out["spot_window"]
    for c in out["connections"][:10]:
        exact = Decimal(0)
        with (tmp_path / "kwartier-demo" / f"readings_{c['ean']}.csv").open() as fh:
            for row in csv.DictReader(fh):
                if window["from"] <= row["timestamp"] < window["to"]:
                    ts = datetime.fromisoformat(row["timestamp"].replace("Z", "+00:00"))
                    hour = ts.astimezone(AMS).replace(minute=0, tzinfo=None).isoformat()
                    exact += Decimal(row["import_kwh"]) * price_of[hour] / 1000
        assert Decimal(c["spot_cost_eur"]) == exact.quantize(Decimal("0.01")), c["ean"]


@pytest.mark.shared_data
def test_a_price_file_of_another_zone_is_rejected(tmp_path):
    path = data_file("prices_be/be_dayahead_2022_2024_hourly_rigaux.csv")
    r, _ = demo(tmp_path, "--prices", str(path), "--from", "2024-03-01", "--to", "2024-03-03")
    assert r.returncode == 2 and r.stdout == ""
    assert "BE" in r.stderr and "NL" in r.stderr and path.name in r.stderr


def test_a_partial_month_is_imported_but_not_billed(tmp_path):
    r, _ = demo(tmp_path, "--from", "2026-02-10", "--to", "2026-02-14")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["months"] == [] and out["invoices"] == 0 and out["settlement"] is None
    assert "not settled or billed" in out["not_billed"]
    assert out["imported"]["new"] == 91 * 4 * 96  # prices and 90 meters, 4 days of quarters
    bad, _ = demo(tmp_path, "--from", "2026-02-14", "--to", "2026-02-10")
    assert bad.returncode == 2 and "must be after" in bad.stderr


def test_the_demo_is_idempotent(january):
    folder, first, _ = january
    r, _ = demo(folder, *JANUARY)
    assert r.returncode == 0, r.stderr
    again = json.loads(r.stdout)
    assert again["imported"]["new"] == 0 and again["imported"]["revised"] == 0
    assert again["imported"]["unchanged"] == first["imported"]["new"]
    assert again["settlement"]["new_postings"] == 0 and again["settlement"] == {**first["settlement"],
                                                                               "new_postings": 0}
    assert [i["number"] for i in again["invoice_list"]] == [i["number"] for i in first["invoice_list"]]
    assert again["connections"] == first["connections"]


def test_the_demo_prints_logins_that_work_on_the_served_portal(january):
    """`kwartier serve` on the demo's database (what `kwartier demo` runs after building): the logins work."""
    import socket
    import urllib.parse
    import urllib.request

    folder, out, _seconds = january
    users = {u["role"]: u for u in out["users"]}
    assert set(users) == {"operator", "grid", "participant"} and out["url"] == ""  # --no-serve: no URL
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "kwartier.cli", "serve", "--port", str(port)], cwd=folder,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/login", timeout=2) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert time.monotonic() < deadline, "the portal did not come up"
                time.sleep(0.3)
        who = users["participant"]
        form = urllib.parse.urlencode({"username": who["username"], "password": who["password"]}).encode()
        with urllib.request.urlopen(f"{base}/api/v1/auth/token", data=form, timeout=10) as r:
            token = json.loads(r.read())["access_token"]
        req = urllib.request.Request(f"{base}/api/v1/me", headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            assert json.loads(r.read())["participant"] == who["participant"]
    finally:
        proc.terminate()
        proc.wait(timeout=20)
