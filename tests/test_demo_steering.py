"""The demo's batteries steered by the optimiser: rolling plans, physics of the meter files, and the bill saving."""

from __future__ import annotations

import csv
import dataclasses
import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from kwartier import synth
from kwartier.services import demo, demo_steering
from kwartier.steer.prices import plan_prices
from kwartier.steer.problem import Prices
from kwartier.tariffs.cost import cost
from kwartier.tariffs.plan import load_plan
from kwartier.timegrid import interval_starts, local_period_bounds

ETA = demo.BATTERY_EFFICIENCY
CAP_WH, STEP_WH = demo.BATTERY_KWH * 1000, demo.BATTERY_KW * 1000 / 4
FIRST, END = date(2026, 1, 1), date(2026, 2, 1)


def starts_s(first: date, end: date) -> np.ndarray:
    return interval_starts(*local_period_bounds(first, end)).dt.epoch("s").to_numpy()


def test_the_controller_replans_at_13_over_the_rest_of_today_and_tomorrow():
    # Winter (UTC+1), 96 quarters a day: 13:00 local is quarter 52 of each day.
    windows = demo_steering.replan_windows
    assert windows(date(2026, 1, 10), date(2026, 1, 13), starts_s(date(2026, 1, 10), date(2026, 1, 13))) \
        == [(0, 52, 96), (52, 148, 192), (148, 244, 288), (244, 288, 288)]
    # Into summer time: 29 March 2026 has 92 quarters; its 13:00 is 48 quarters after its midnight.
    assert windows(date(2026, 3, 28), date(2026, 3, 30), starts_s(date(2026, 3, 28), date(2026, 3, 30))) \
        == [(0, 52, 96), (52, 144, 188), (144, 188, 188)]


def test_every_plan_fits_the_optimiser_and_the_windows_tile_the_period():
    s = starts_s(date(2026, 10, 1), date(2026, 11, 3))  # across the autumn change (100 quarters)
    windows = demo_steering.replan_windows(date(2026, 10, 1), date(2026, 11, 3), s)
    assert windows[0][0] == 0 and windows[-1][1] == len(s)
    assert all(a < b <= h <= a + 192 for a, b, h in windows)
    assert all(windows[i][1] == windows[i + 1][0] for i in range(len(windows) - 1))



def test_no_plan_uses_a_price_before_the_auction_publishes_it():
    """Every quarter of every horizon has its day-ahead price published (12:45 CET the day before) by the
    time the plan is made: the period's start for the first plan, 13:00 local for the others."""
    from kwartier.services.imports import day_ahead_known_at

    first, end = date(2026, 3, 20), date(2026, 4, 3)  # across the spring change
    s = interval_starts(*local_period_bounds(first, end))
    known = day_ahead_known_at(s).dt.epoch("s").to_numpy()
    epoch = s.dt.epoch("s").to_numpy()
    windows = demo_steering.replan_windows(first, end, epoch)
    for a, _applied, horizon in windows:
        assert known[a:horizon].max() <= epoch[a], (a, horizon)
    assert [h - a for a, _, h in windows[1:-1]] == [140] * 8 + [136] + [140] * 4  # 11 h + tomorrow (23 h on 29 March)

def test_a_derived_monthly_rate_is_priced_at_its_default_hand_checked():
    """JEM 2.0 at a market price of 0.10 EUR/kWh, tax share 1.00 (its first month), no congestion or profile:
    import = (0.10 supply + 0.10 tax + 0.018 markup) x 1.21; export = 0.10 - 0.015 fee, no VAT."""
    starts = tuple(datetime(2026, 1, 5, tzinfo=UTC) + i * timedelta(minutes=15) for i in range(8))
    market = pl.DataFrame({"interval_start": list(starts), "resolution": "PT15M", "price_ueur_per_kwh": 100_000},
                          schema_overrides={"interval_start": pl.Datetime("us", "UTC")})
    market = market.with_columns(known_at=pl.col("interval_start") - timedelta(days=1))
    p = demo_steering.marginal_prices(load_plan("jem-2.0"), market, starts)
    assert p.import_ueur_per_kwh.tolist() == [263_780] * 8 and p.export_ueur_per_kwh.tolist() == [85_000] * 8


def test_prices_over_the_period_are_those_of_each_plan_window():
    s = interval_starts(*local_period_bounds(date(2026, 1, 1), date(2026, 1, 4)))
    rng = np.random.default_rng(5)
    market = pl.DataFrame({"interval_start": s, "resolution": "PT15M",
                           "price_ueur_per_kwh": rng.integers(-20_000, 300_000, s.len())})
    market = market.with_columns(known_at=pl.col("interval_start") - timedelta(days=1))
    starts = tuple(s.to_list())
    loaded = load_plan("nl-dynamic-2026")
    whole = demo_steering.marginal_prices(loaded, market, starts)
    part = plan_prices(loaded, market, starts[52:192])
    assert (whole.import_ueur_per_kwh[52:192] == part.import_ueur_per_kwh).all()
    assert (whole.export_ueur_per_kwh[52:192] == part.export_ueur_per_kwh).all()


def test_a_battery_buys_at_night_and_sells_at_the_evening_peak_carrying_its_soc():
    """Two days, no load: 0.05 EUR/kWh at night, 0.40 from 17:00 to 21:00, 0.20 otherwise (both directions).
    The battery fills at night and empties in the peak, every day, and its SOC is continuous over the plans."""
    first, end = date(2026, 1, 10), date(2026, 1, 12)
    s = interval_starts(*local_period_bounds(first, end))
    hour = s.dt.convert_time_zone("Europe/Amsterdam").dt.hour().to_numpy()
    price = np.where(hour < 6, 50_000, np.where((hour >= 17) & (hour < 21), 400_000, 200_000)).astype(np.int64)
    windows = demo_steering.replan_windows(first, end, s.dt.epoch("s").to_numpy())
    run = demo_steering.steer_battery(np.zeros(s.len(), np.int64), Prices.market(price), tuple(s.to_list()), windows)
    assert run.solves == len(windows) == 3
    assert not ((run.charge_wh > 0) & (run.discharge_wh > 0)).any()
    assert (run.charge_wh <= STEP_WH).all() and (run.discharge_wh <= STEP_WH).all()
    for day in (0, 1):
        q = slice(96 * day, 96 * (day + 1))
        assert run.soc_wh[96 * day + 23] > CAP_WH - 2  # full at 06:00 (to the Wh rounding)
        assert run.soc_wh[96 * day + 83] < 2  # empty at 21:00
        assert run.charge_wh[q][hour[q] >= 6].sum() == 0  # nothing bought at 0.20 or more
        assert run.discharge_wh[q][(hour[q] < 17) | (hour[q] >= 21)].sum() == 0  # nothing sold below 0.40
    soc = CAP_WH * demo.BATTERY_SOC_START + np.cumsum(run.charge_wh * ETA - run.discharge_wh / ETA)
    assert np.allclose(run.soc_wh, soc) and (soc >= 0).all() and (soc <= CAP_WH + 1e-6).all()


# --- the demo's generator on a few households for January 2026 ------------------------------------


def pick_homes() -> list[demo.Household]:
    homes = demo.households()
    want = [next(h for h in homes if h.battery and h.plan == p) for p in
            ("nl-dynamic-2026", "jem-2.0", "nl-daynight-2026", "nl-fixed-2026")]
    return [*want, next(h for h in homes if h.battery and h.plan == "nl-dynamic-2026" and h.heat_loss_w_per_k),
            next(h for h in homes if not h.battery and h.pv_kwp)]


def flows(folder: Path, ean: str) -> tuple[np.ndarray, np.ndarray]:
    imp, exp = [], []
    with (folder / f"readings_{ean}.csv").open() as fh:
        for row in csv.DictReader(fh):
            imp.append(int(Decimal(row["import_kwh"]) * 1000))
            exp.append(int(Decimal(row["export_kwh"]) * 1000))
    return np.array(imp), np.array(exp)


@pytest.fixture(scope="module")
def january(tmp_path_factory):
    """The same households generated twice for January 2026: with their batteries, and without any."""
    homes = pick_homes()
    with_b, without = tmp_path_factory.mktemp("steered"), tmp_path_factory.mktemp("bare")
    gen = demo.generate(with_b, FIRST, END, homes)
    demo.generate(without, FIRST, END, [dataclasses.replace(h, battery=False) for h in homes])
    return homes, with_b, without, gen


def test_households_json_says_how_each_battery_is_run(january):
    homes, folder, _bare, gen = january
    got = {h["participant"]: h["battery_control"] for h in json.loads((folder / "households.json").read_text())[
        "households"]}
    assert got == {h.participant: ("steered" if h.battery and h.plan != "nl-fixed-2026" else
                                   "self-consumption" if h.battery else None) for h in homes}
    assert gen.steering.steered == 4 and gen.steering.solves == 4 * 32 and gen.steering.not_optimal == 0


def test_meter_files_of_steered_batteries_keep_energy_power_and_capacity(january):
    """From the meter files alone: the battery's Wh per quarter is what the flows differ from the bare
    household's; it stays within 5 kW, and the SOC it implies (95 % each way, from 6.75 kWh, carried
    over every plan) stays within 0 .. 13.5 kWh. Energy balance: import - export = load - PV + charged -
    discharged, where charged - discharged = the SOC's change + the losses of both directions."""
    homes, folder, bare, _gen = january
    for h in homes[:3] + homes[4:5]:
        imp, exp = flows(folder, h.ean)
        imp0, exp0 = flows(bare, h.ean)  # load - PV, no battery
        battery = (imp - exp) - (imp0 - exp0)
        charged, discharged = np.maximum(battery, 0), np.maximum(-battery, 0)
        assert not ((imp > 0) & (exp > 0)).any(), h.participant
        assert np.abs(battery).max() <= STEP_WH, h.participant
        soc = CAP_WH / 2 + np.cumsum(charged * ETA - discharged / ETA)
        assert soc.min() >= -1e-6 and soc.max() <= CAP_WH + 1e-6, h.participant
        losses = charged.sum() * (1 - ETA) + discharged.sum() * (1 / ETA - 1)
        assert (imp - exp).sum() - (imp0 - exp0).sum() == pytest.approx(soc[-1] - CAP_WH / 2 + losses, abs=1e-6)
        assert 0 < losses < 0.11 * (charged.sum() + discharged.sum()), h.participant
        if h.plan != "nl-daynight-2026":  # two prices a day: a spread below losses and wear, so little cycling
            assert discharged.sum() > 100_000, h.participant  # it really cycles: > 100 kWh in January


def self_consumption(imp0: np.ndarray, exp0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rule on the bare household's net load (the rule only sees load - PV)."""
    i, e = synth.battery_self_consumption(imp0[None, :], exp0[None, :], CAP_WH, demo.BATTERY_KW * 1000)
    return i[0], e[0]


def bill(plan: str, imp: np.ndarray, exp: np.ndarray, market: pl.DataFrame) -> int:
    s = interval_starts(*local_period_bounds(FIRST, END))
    readings = pl.DataFrame({"interval_start": s, "resolution": "PT15M", "import_wh": imp, "export_wh": exp,
                             "status": "actual"})
    return cost(load_plan(plan), readings, market, FIRST, END).total_cents


def test_a_steered_household_pays_no_more_than_with_self_consumption(january):
    """Each steered household's January bill (tariffs.cost, VAT in) from its meter file is at most what
    the self-consumption rule's flows would cost; the fixed-plan battery runs the rule itself."""
    homes, folder, bare, gen = january
    market = demo_steering.read_market(folder / "prices_NL.csv")
    for h in homes[:3] + homes[4:5]:
        imp0, exp0 = flows(bare, h.ean)
        sc = bill(h.plan, *self_consumption(imp0, exp0), market)
        steered = bill(h.plan, *flows(folder, h.ean), market)
        assert steered <= sc, h.participant
        assert gen.steering.cents[h.participant] == (sc, steered), h.participant
    assert gen.steering.saving_cents > 0
    fixed = homes[3]
    assert (np.stack(flows(folder, fixed.ean)) == np.stack(self_consumption(*flows(bare, fixed.ean)))).all()
    summary = gen.steering.to_json()
    assert summary["saving"]["from"] == "2026-01-01" and summary["saving"]["to"] == "2026-02-01"  # type: ignore[index]


def test_a_price_file_that_misses_quarters_is_a_clear_error(tmp_path):
    homes = pick_homes()[:1]
    market = demo_steering.read_market(demo.generate(tmp_path / "a", FIRST, date(2026, 1, 3), homes).prices)  # type: ignore[arg-type]
    with pytest.raises(demo.DemoError, match="no price for 96 quarter"):
        demo.generate(tmp_path / "b", FIRST, date(2026, 1, 4), homes, synthetic_prices=False, market=market)
