"""``kwartier plan``: the JSON shape of the issue, the plan's full prices, languages and clear errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import polars as pl
import pytest
import typer
from typer.testing import CliRunner

from kwartier.cli_steer import plan_prices, register
from kwartier.tariffs.plan import load_plan

BATTERY = """
[connection]
import_limit_kw = 17.25
export_limit_kw = 17.25

[[battery]]
id = "powerwall"
capacity_kwh = 1.0
max_charge_kw = 4.0
max_discharge_kw = 4.0
charge_efficiency = 1.0
discharge_efficiency = 1.0
soc_start_kwh = 0.0
soc_end_min_kwh = 0.0
wear_cost_eur_per_kwh = 0.05
"""

runner = CliRunner()


@pytest.fixture
def app() -> typer.Typer:
    a = typer.Typer()

    @a.callback()
    def main() -> None:
        """Test app."""

    register(a)
    return a


@pytest.fixture
def files(tmp_path):
    dev = tmp_path / "house.toml"
    dev.write_text(BATTERY)
    prices = tmp_path / "prices.csv"
    rows = ["timestamp,price_eur_per_kwh"]
    for i, p in enumerate(["0.10", "0.30", "0.10", "0.30"]):
        rows.append(f"2026-01-15T{i // 4:02d}:{15 * (i % 4):02d}:00Z,{p}")
    prices.write_text("\n".join(rows) + "\n")
    return dev, prices


def test_json_shape_and_hand_solved_cost(app, files):
    dev, prices = files
    res = runner.invoke(app, ["plan", "--devices", str(dev), "--prices", str(prices), "--from", "2026-01-15T00:00Z",
                              "--to", "2026-01-15T01:00Z", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert list(out) == ["cost", "wear_cost", "baselines", "schedule", "violations", "solve_seconds"]
    assert out["cost"] == "-0.40" and out["wear_cost"] == "0.10"
    # greedy charges 1 kWh in the cheapest quarter but only discharges to cover own load (none here): 0.10
    assert out["baselines"] == {"none": "0.00", "greedy": "0.10", "perfect": "-0.40"}
    first = out["schedule"][0]
    assert first == {"start": "2026-01-15T00:00:00Z", "device": "powerwall", "power_kw": "4.000", "soc_kwh": "1.000",
                     "reason": first["reason"]}
    assert first["reason"].startswith("charging at 0.10 EUR/kWh to use later at 0.30")
    assert [r["power_kw"] for r in out["schedule"]] == ["4.000", "-4.000", "4.000", "-4.000"]
    assert out["violations"] == [] and isinstance(out["solve_seconds"], float)


def test_reasons_in_dutch_and_the_table_output(app, files):
    dev, prices = files
    args = ["plan", "--devices", str(dev), "--prices", str(prices), "--from", "2026-01-15T00:00Z", "--to",
            "2026-01-15T01:00Z"]
    nl = json.loads(runner.invoke(app, [*args, "--json", "--lang", "nl"]).stdout)
    assert nl["schedule"][1]["reason"].startswith("ontladen bij 0,30 EUR/kWh")
    text = runner.invoke(app, args)
    assert text.exit_code == 0 and "energy cost -0.40 EUR" in text.stdout and "no steering 0.00" in text.stdout


@pytest.mark.parametrize(("extra", "message"), [
    ([], "give --prices FILE or --plan ID"),
    (["--lang", "de"], "--lang 'de'"),
])
def test_usage_errors(app, files, extra, message):
    dev, prices = files
    args = ["plan", "--devices", str(dev), "--from", "2026-01-15T00:00Z", "--to", "2026-01-15T01:00Z", *extra]
    if extra:
        args += ["--prices", str(prices)]
    res = runner.invoke(app, args)
    assert res.exit_code == 2 and message in res.output


def test_prices_not_covering_the_horizon_and_bad_devices_are_named(app, files, tmp_path):
    dev, prices = files
    res = runner.invoke(app, ["plan", "--devices", str(dev), "--prices", str(prices), "--from", "2026-01-15T00:00Z",
                              "--to", "2026-01-15T02:00Z"])
    assert res.exit_code == 2 and "no price for 4 quarter(s) of the horizon, first 2026-01-15T01:00:00+00:00" in \
        res.output.replace("\n", "")
    bad = tmp_path / "bad.toml"
    bad.write_text(BATTERY.replace("capacity_kwh = 1.0", "capacity_kwh = 0"))
    res = runner.invoke(app, ["plan", "--devices", str(bad), "--prices", str(prices), "--from", "2026-01-15T00:00Z",
                              "--to", "2026-01-15T01:00Z"])
    assert res.exit_code == 2 and "[[battery]] #1 (powerwall), field 'capacity_kwh'" in res.output.replace("\n", "")
    res = runner.invoke(app, ["plan", "--devices", str(dev), "--prices", str(prices), "--from", "2026-01-15T00:00",
                              "--to", "2026-01-15T01:00Z"])
    assert res.exit_code == 2 and "has no offset" in res.output


def test_plan_prices_add_markup_tax_and_vat_and_netting_for_export():
    loaded = load_plan("nl-dynamic-2026")
    start = datetime(2026, 1, 15, tzinfo=UTC)
    starts = tuple(start + timedelta(minutes=15 * i) for i in range(4))
    market = pl.DataFrame({"interval_start": [start], "resolution": ["PT60M"], "price_ueur_per_kwh": [100_000],
                           "known_at": [start - timedelta(days=1)]},
                          schema_overrides={"interval_start": pl.Datetime("us", "UTC"),
                                            "known_at": pl.Datetime("us", "UTC")})
    p = plan_prices(loaded, market, starts)
    # import: (0.10 market + 0.018 markup) x 1.21 + 0.09161 energy tax x 1.21
    imp = (Decimal("0.118") * Decimal("1.21")).quantize(Decimal("0.000001")) + \
        (Decimal("0.09161") * Decimal("1.21")).quantize(Decimal("0.000001"))
    assert p.import_ueur_per_kwh.tolist() == [int(imp * 1_000_000)] * 4
    # export under annual netting: (0.10 - 0.015) x 1.21 received, plus the tax it saves
    exp = (Decimal("0.085") * Decimal("1.21")).quantize(Decimal("0.000001")) + \
        (Decimal("0.09161") * Decimal("1.21")).quantize(Decimal("0.000001"))
    assert p.export_ueur_per_kwh.tolist() == [int(exp * 1_000_000)] * 4
    # without netting (2027) a fed-in kWh only earns the feed-in price
    p27 = plan_prices(load_plan("nl-dynamic-2027"), market, starts)
    assert p27.export_ueur_per_kwh[0] < p.export_ueur_per_kwh[0]
    assert np.all(p27.import_ueur_per_kwh > p27.export_ueur_per_kwh)


def test_plan_over_a_price_file(app, files):
    dev, prices = files
    res = runner.invoke(app, ["plan", "--devices", str(dev), "--prices", str(prices), "--plan", "nl-dynamic-2026",
                              "--from", "2026-01-15T00:00Z", "--to", "2026-01-15T01:00Z", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    # the plan's spread (0.30 - 0.10) x 1.21 = 0.242 still beats the wear: two cycles, dearer energy than the market
    assert [r["power_kw"] for r in out["schedule"]] == ["4.000", "-4.000", "4.000", "-4.000"]
    assert Decimal(out["cost"]) < 0


def test_plan_over_stored_market_prices(app, files, tmp_path):
    from kwartier.services.imports import import_prices
    from kwartier.store import open_store

    dev, prices = files
    url = f"sqlite:///{tmp_path / 'kwartier.db'}"
    engine = open_store(url)
    import_prices(engine, prices)
    engine.dispose()
    args = ["plan", "--devices", str(dev), "--plan", "nl-dynamic-2026", "--from", "2026-01-15T00:00Z", "--to",
            "2026-01-15T01:00Z", "--json"]
    stored = runner.invoke(app, [*args, "--db", url])
    assert stored.exit_code == 0, stored.output
    from_file = runner.invoke(app, [*args, "--prices", str(prices)])
    assert json.loads(stored.stdout)["cost"] == json.loads(from_file.stdout)["cost"]
    empty = runner.invoke(app, [*args, "--db", f"sqlite:///{tmp_path / 'empty.db'}"])
    assert empty.exit_code == 2 and "no stored NL market prices" in empty.output
