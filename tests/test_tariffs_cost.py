"""The cost calculator: real files against an independent Decimal computation, hand-checked taxes, properties."""

from __future__ import annotations

import csv
import json
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from zoneinfo import ZoneInfo

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import data_file
from kwartier.ingest import read_prices, read_readings
from kwartier.tariffs.compose import MissingData
from kwartier.tariffs.cost import cost
from kwartier.tariffs.plan import plan_from_text

AMS = ZoneInfo("Europe/Amsterdam")
CENT = Decimal("0.01")

PLAN = """
id = "test-dynamic"
name = "Test dynamic"
vat_rate = "0.21"
netting = "{netting}"
[parameters]
markup = "0.0181"
[[components]]
id = "supply"
label = "Supply"
payee = "supplier"
basis = "import_kwh"
price = "market + markup"
fixed = "day-ahead"
[[components]]
id = "feed_in"
label = "Feed-in"
payee = "supplier"
basis = "export_kwh"
price = "-(market - 0.0150)"
fixed = "day-ahead"
[[components]]
id = "energy_tax"
label = "Energy tax"
payee = "tax"
basis = "import_kwh"
netted = {netted}
bands = [{{up_to_kwh = "10000", price = "0.09161"}}, {{up_to_kwh = "50000", price = "0.06671"}}, {{price = "0.03735"}}]
[[components]]
id = "reduction"
label = "Tax reduction"
payee = "tax"
basis = "per_year"
price = "-519.80"
[[components]]
id = "grid"
label = "Grid capacity"
payee = "grid"
basis = "per_day"
price = "0.9876"
[[components]]
id = "fee"
label = "Fixed fee"
payee = "supplier"
basis = "per_month"
price = "5.99"
"""


def plan(netting: str = "none"):
    return plan_from_text(PLAN.format(netting=netting, netted="true" if netting == "annual" else "false"), "t")


def q(d: Decimal) -> Decimal:
    return d.quantize(CENT, rounding=ROUND_HALF_EVEN)


def line(result, cid: str) -> Decimal:
    return Decimal(next(ln for ln in result.to_json()["lines"] if ln["component"] == cid)["amount"])


def _markvis_prices(path) -> dict[datetime, Decimal]:
    """mark-vis JSON read with the stdlib: local naive hours, a repeated autumn hour resolved by order."""
    rows = json.loads(path.read_text())["prices"]
    seen: dict[str, int] = {}
    out = {}
    for r in rows:
        naive = datetime.fromisoformat(r["timestamp"])
        fold = seen.get(r["timestamp"], 0)
        seen[r["timestamp"]] = fold + 1
        t = naive.replace(tzinfo=AMS, fold=fold).astimezone(UTC)
        if t.replace(tzinfo=None) != naive.replace(tzinfo=AMS, fold=fold).astimezone(UTC).replace(tzinfo=None):
            continue
        out[t] = Decimal(str(r["price"])) / 1000
    return out


@pytest.mark.shared_data
def test_dsmrreader_2024_year_matches_an_independent_decimal_computation():
    readings_path = data_file("household_nl/dsmrreader_export_2024_hourly.csv")
    prices_path = data_file("prices_nl/mark_vis_epex_json/prices_2024.json")
    price = _markvis_prices(prices_path)
    supply = feed = Decimal(0)
    imp = exp = Decimal(0)
    with readings_path.open(newline="") as fh:
        for r in csv.DictReader(fh):
            t = datetime.fromisoformat(r["Hour Start"]).astimezone(UTC)
            i = Decimal(r["Electricity 1 (Dutch Users: Low Tariff)"]) + Decimal(
                r["Electricity 2 (Dutch Users: Normal Tariff)"])
            e = Decimal(r["Electricity 1 Returned (Dutch Users: Low Tariff)"]) + Decimal(
                r["Electricity 2 Returned (Dutch Users: Normal Tariff)"])
            imp, exp = imp + i, exp + e
            supply += i * (price[t] + Decimal("0.0181"))
            feed += e * -(price[t] - Decimal("0.0150"))
    result = cost(plan(), read_readings(readings_path).frame, read_prices(prices_path).frame,
                  date(2024, 1, 1), date(2025, 1, 1), allow_gaps=True)  # the export has two gaps
    assert line(result, "supply") == q(supply)
    assert line(result, "feed_in") == q(feed)
    assert Decimal(result.to_json()["import_kwh"]) == imp and Decimal(result.to_json()["export_kwh"]) == exp
    assert line(result, "energy_tax") == q(imp * Decimal("0.09161"))  # all below 10,000 kWh
    assert line(result, "reduction") == Decimal("-519.80")  # a whole (leap) year
    assert line(result, "grid") == q(366 * Decimal("0.9876"))
    assert line(result, "fee") == q(12 * Decimal("5.99"))
    assert result.gaps and "without readings" in result.gaps[0]


@pytest.mark.shared_data
def test_slimmemeterportal_quarters_priced_with_hourly_entsoe_prices():
    readings_path = data_file("household_nl/slimmemeterportal_2023_15min.csv")
    prices_path = data_file("prices_nl/entsoe_tp_export_NL_Day-ahead_Prices_202301010000-202401010000.csv")
    hourly: dict[datetime, Decimal] = {}
    with prices_path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        next(reader)
        for row in reader:
            start = datetime.strptime(row[0].split(" - ")[0], "%d.%m.%Y %H:%M").replace(tzinfo=AMS)
            if start.astimezone(UTC).astimezone(AMS).replace(tzinfo=None) != start.replace(tzinfo=None):
                continue  # the phantom spring row
            hourly.setdefault(start.astimezone(UTC), Decimal(row[1]) / 1000)
    supply = Decimal(0)
    with readings_path.open(newline="", encoding="utf-8-sig") as fh:
        for r in csv.DictReader(fh):
            end = datetime.strptime(r["datum_tijd"], "%d-%m-%Y %H:%M:%S %z").astimezone(UTC)
            start = end - timedelta(minutes=15)
            if not date(2023, 3, 1) <= start.astimezone(AMS).date() < date(2023, 4, 1):
                continue
            kwh = sum(Decimal((r[c] or "0").replace(",", ".")) for c in ("levering_normaal", "levering_laag"))
            supply += kwh * (hourly[start.replace(minute=0)] + Decimal("0.0181"))
    result = cost(plan(), read_readings(readings_path).frame, read_prices(prices_path).frame,
                  date(2023, 3, 1), date(2023, 4, 1))
    assert line(result, "supply") == q(supply)
    assert result.to_json()["lines"][3]["quantity"] == str(Decimal(31) / 365)[:6]


def _frame(start: datetime, import_wh: list[int], export_wh: list[int] | None = None, res: str = "PT60M"):
    step = timedelta(hours=1) if res == "PT60M" else timedelta(minutes=15)
    n = len(import_wh)
    return pl.DataFrame({
        "interval_start": [start + k * step for k in range(n)], "resolution": [res] * n,
        "import_wh": import_wh, "export_wh": export_wh or [0] * n, "status": ["actual"] * n,
    }).with_columns(pl.col("interval_start").dt.cast_time_unit("us"))


def _market(start: datetime, hours: int, eur_per_mwh: int = 100):
    return pl.DataFrame({"interval_start": [start + timedelta(hours=k) for k in range(hours)],
                         "resolution": ["PT60M"] * hours, "price_ueur_per_kwh": [eur_per_mwh * 1000] * hours}
                        ).with_columns(pl.col("interval_start").dt.cast_time_unit("us"))


def test_energy_tax_bands_cross_10000_kwh_within_the_year():
    # 9,990 kWh used on 1 January (before the period), then 20 kWh on 2 January:
    # 10 kWh at 0.09161 + 10 kWh at 0.06671 = 0.9161 + 0.6671 = 1.5832 -> 1.58 EUR.
    jan1 = datetime(2025, 12, 31, 23, tzinfo=UTC)  # local midnight 2026-01-01
    frame = _frame(jan1, [9_990_000 // 24] * 23 + [9_990_000 - 23 * (9_990_000 // 24)] + [10_000, 10_000]
                   + [0] * 22)
    result = cost(plan(), frame, _market(jan1, 48), date(2026, 1, 2), date(2026, 1, 3))
    assert line(result, "energy_tax") == Decimal("1.58")
    # From 1 January the whole 10,010 kWh: 10,000 x 0.09161 + 10 x 0.06671 = 916.10 + 0.6671 = 916.7671.
    whole = cost(plan(), frame, _market(jan1, 48), date(2026, 1, 1), date(2026, 1, 3))
    assert line(whole, "energy_tax") == Decimal("916.77")


def test_tax_reduction_is_prorated_per_day_and_vat_is_on_the_line_totals():
    jan1 = datetime(2025, 12, 31, 23, tzinfo=UTC)
    days = 31
    frame = _frame(jan1, [500] * (24 * days))
    result = cost(plan(), frame, _market(jan1, 24 * days), date(2026, 1, 1), date(2026, 2, 1))
    # -519.80 x 31 / 365 = -44.1473... -> -44.15
    assert line(result, "reduction") == Decimal("-44.15")
    # 372 kWh: supply (0.100 + 0.0181) x 372 = 43.9332 -> 43.93; tax 0.09161 x 372 = 34.07892 -> 34.08
    assert line(result, "supply") == Decimal("43.93") and line(result, "energy_tax") == Decimal("34.08")
    assert line(result, "grid") == Decimal("30.62")  # 31 x 0.9876 = 30.6156
    assert line(result, "fee") == Decimal("5.99")
    net = Decimal("43.93") + Decimal("0") + Decimal("34.08") - Decimal("44.15") + Decimal("30.62") + Decimal("5.99")
    out = result.to_json()
    assert Decimal(out["net_total"]) == net == Decimal("70.47")
    assert Decimal(out["vat"]) == q(net * Decimal("0.21")) == Decimal("14.80")
    assert Decimal(out["total"]) == Decimal("85.27")


def test_annual_netting_charges_tax_on_net_import_only():
    jan1 = datetime(2025, 12, 31, 23, tzinfo=UTC)
    frame = _frame(jan1, [2000] * 24, [1500] * 24)  # 48 kWh in, 36 kWh out
    netted = cost(plan("annual"), frame, _market(jan1, 24), date(2026, 1, 1), date(2026, 1, 2))
    plain = cost(plan(), frame, _market(jan1, 24), date(2026, 1, 1), date(2026, 1, 2))
    assert line(netted, "energy_tax") == q(12 * Decimal("0.09161")) == Decimal("1.10")
    assert line(plain, "energy_tax") == q(48 * Decimal("0.09161")) == Decimal("4.40")
    more_out = _frame(jan1, [1000] * 24, [1500] * 24)
    assert line(cost(plan("annual"), more_out, _market(jan1, 24), date(2026, 1, 1), date(2026, 1, 2)),
                "energy_tax") == Decimal("0.00")  # netting up to the imported amount, never below zero


def test_missing_readings_and_prices_are_named_or_reported():
    jan1 = datetime(2025, 12, 31, 23, tzinfo=UTC)
    frame = _frame(jan1, [100] * 24).filter(pl.col("interval_start") != jan1 + timedelta(hours=5))
    with pytest.raises(MissingData, match=r"no readings for 4 interval\(s\): 2026-01-01 05:00 \(\+01:00\)"):
        cost(plan(), frame, _market(jan1, 24), date(2026, 1, 1), date(2026, 1, 2))
    gappy = cost(plan(), frame, _market(jan1, 24), date(2026, 1, 1), date(2026, 1, 2), allow_gaps=True)
    assert gappy.gaps == ["4 quarter-hour(s) without readings, first 2026-01-01T04:00:00Z"]
    full = _frame(jan1, [100] * 24)
    with pytest.raises(MissingData, match=r"no day-ahead prices for 1 interval\(s\): 2026-01-01 23:00"):
        cost(plan(), full, _market(jan1, 23), date(2026, 1, 1), date(2026, 1, 2))


@settings(max_examples=40, deadline=None)
@given(
    data=st.lists(st.tuples(st.integers(0, 3000), st.integers(0, 3000)), min_size=96 * 4, max_size=96 * 4),
    prices=st.lists(st.integers(-500_000, 900_000), min_size=24 * 4 + 1, max_size=24 * 4 + 1),
    cut=st.integers(1, 3),
)
def test_lines_sum_and_cutting_into_days_changes_no_energy_amount(data, prices, cut):
    start = datetime(2026, 3, 27, 23, tzinfo=UTC)  # local 2026-03-28 00:00; the period spans the DST change
    n_quarters = 96 * 4 - 4  # 28, 29 (92 quarters), 30, 31 March
    frame = _frame(start, [a for a, _ in data][:n_quarters], [b for _, b in data][:n_quarters], res="PT15M")
    market = pl.DataFrame({"interval_start": [start + timedelta(hours=k) for k in range(97)],
                           "resolution": ["PT60M"] * 97, "price_ueur_per_kwh": prices}
                          ).with_columns(pl.col("interval_start").dt.cast_time_unit("us"))
    days = [date(2026, 3, 28) + timedelta(days=k) for k in range(5)]
    whole = cost(plan(), frame, market, days[0], days[4])
    out = whole.to_json()
    assert sum(Decimal(ln["amount"]) for ln in out["lines"]) == Decimal(out["net_total"])
    assert Decimal(out["total"]) == Decimal(out["net_total"]) + Decimal(out["vat"])
    pieces = [cost(plan(), frame, market, a, b) for a, b in [(days[0], days[cut]), (days[cut], days[4])]]
    for cid in ("supply", "feed_in", "energy_tax"):
        assert _nano(whole, cid) == sum(_nano(p, cid) for p in pieces)  # exact: only the line rounding differs


def _nano(result, cid: str) -> int:
    return next(ln.amount_nano for ln in result.lines if ln.component == cid)


@pytest.mark.shared_data
def test_jem_percentage_tax_follows_last_months_consumption_value():
    """JEM 2.0 factor 3: March's tax share = 0.09161 x February's kWh / February's market value."""
    from kwartier.tariffs.plan import load_plan

    r = read_readings(data_file("household_nl/slimmemeterportal_2023_15min.csv")).frame
    m = read_prices(data_file("prices_nl/entsoe_tp_export_NL_Day-ahead_Prices_202301010000-202401010000.csv")).frame
    result = cost(load_plan("jem-2.0"), r, m, date(2023, 3, 1), date(2023, 4, 1))
    feb0, mar0, apr0 = (datetime(2023, 1, 31, 23, tzinfo=UTC), datetime(2023, 2, 28, 23, tzinfo=UTC),
                        datetime(2023, 3, 31, 22, tzinfo=UTC))
    hourly = {t: Decimal(p).scaleb(-6) for t, p in m.select("interval_start", "price_ueur_per_kwh").iter_rows()}
    price = {t + timedelta(minutes=15 * k): p for t, p in hourly.items() for k in range(4)}

    def month(a, b):
        rows = r.filter((pl.col("interval_start") >= a) & (pl.col("interval_start") < b)
                        & pl.col("import_wh").is_not_null() & pl.col("export_wh").is_not_null())
        kwh = [Decimal(w).scaleb(-3) for w in rows["import_wh"]]
        return sum(kwh), sum(k * price[t] for k, t in zip(kwh, rows["interval_start"], strict=True))

    feb_kwh, feb_value = month(feb0, mar0)
    share = (Decimal("0.09161") * feb_kwh / feb_value).quantize(Decimal("1e-9"), rounding=ROUND_HALF_EVEN)
    _, mar_value = month(mar0, apr0)
    assert line(result, "supply") == q(mar_value)
    assert line(result, "energy_tax") == q(share * mar_value)
    tax = next(ln for ln in result.to_json()["lines"] if ln["component"] == "energy_tax")
    assert tax["unit"] == "%" and Decimal(tax["quantity"]) == (share * 100).quantize(Decimal("0.01"))


def test_an_unknown_export_matters_only_to_plans_that_price_export():
    jan1 = datetime(2025, 12, 31, 23, tzinfo=UTC)
    frame = _frame(jan1, [100] * 24).with_columns(export_wh=pl.lit(None, pl.Int64))
    supply_only = PLAN.split('[[components]]\nid = "feed_in"')[0]
    import_only = plan_from_text(supply_only.format(netting="none", netted="false"), "import-only")
    ok = cost(import_only, frame, _market(jan1, 24), date(2026, 1, 1), date(2026, 1, 2))
    assert ok.gaps == [] and line(ok, "supply") == q(Decimal("2.4") * Decimal("0.1181"))
    with pytest.raises(MissingData, match="no readings for 96"):
        cost(plan(), frame, _market(jan1, 24), date(2026, 1, 1), date(2026, 1, 2))


def test_annual_netting_months_add_up_to_the_year_and_a_later_surplus_returns_tax():
    # January: 100 kWh net import; February: 60 kWh net export. Year: 40 kWh net -> 40 x 0.09161 = 3.6644.
    jan1 = datetime(2025, 12, 31, 23, tzinfo=UTC)
    jan = _frame(jan1, [100_000 // 24] * 23 + [100_000 - 23 * (100_000 // 24)], [0] * 24)
    feb1 = datetime(2026, 1, 31, 23, tzinfo=UTC)
    feb = _frame(feb1, [0] * 24, [60_000 // 24] * 24)
    frame = pl.concat([jan, feb])
    market = pl.concat([_market(jan1, 24), _market(feb1, 24)])
    partial = dict(allow_gaps=True)
    m1 = cost(plan("annual"), frame, market, date(2026, 1, 1), date(2026, 2, 1), **partial)
    m2 = cost(plan("annual"), frame, market, date(2026, 2, 1), date(2026, 3, 1), **partial)
    both = cost(plan("annual"), frame, market, date(2026, 1, 1), date(2026, 3, 1), **partial)
    nano = [_nano(r, "energy_tax") for r in (m1, m2, both)]
    assert nano[0] == 100_000 * 91_610 and nano[1] == -60_000 * 91_610  # February returns tax on 60 kWh
    assert nano[0] + nano[1] == nano[2] == 40_000 * 91_610
