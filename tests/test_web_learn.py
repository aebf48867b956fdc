"""The participant's learn, performance, alerts and export pages, and the alert rules."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl
import pytest
from fastapi.testclient import TestClient

from kwartier.services.prices import stored_prices
from kwartier.services.settle import parse_period
from kwartier.store import open_store
from kwartier.synth import battery_self_consumption
from kwartier.tariffs.cost import cost
from kwartier.tariffs.plan import builtin_ids, load_plan
from kwartier.timegrid import interval_starts, local_period_bounds
from kwartier.web import alerts, i18n
from kwartier.web.app import create_app
from test_web_api import build_world
from test_web_isolation import login

TZ = "Europe/Amsterdam"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    folder = tmp_path_factory.mktemp("learn")
    engine = open_store(f"sqlite:///{folder / 'kwartier.db'}")
    yield build_world(engine, folder)
    engine.dispose()


@pytest.fixture(scope="module")
def client(world):
    c = TestClient(create_app(world.engine, secret=b"s"))
    login(c, "user0")
    return c


def _frame(world) -> pl.DataFrame:
    return world.readings[world.eans[0]].with_columns(resolution=pl.lit("PT15M"), status=pl.lit("actual"))


def _cells(html: str, table_id: str) -> list[str]:
    body = re.search(rf'<table id="{table_id}">(.*?)</table>', html, re.S).group(1)
    return re.findall(r'<td class="num">([^<]*)</td>', body)


def _month(world):
    first, end = parse_period(world.period)
    start, stop = local_period_bounds(first, end, TZ)
    return first, end, start, stop, stored_prices(world.engine, "NL", start - timedelta(days=40), stop)


def test_moving_an_appliance_equals_cost_on_a_frame_moved_by_hand(world, client):
    page = client.get("/learn", params={"kwh": "1.5", "from_hour": 19, "to_hour": 23})
    assert page.status_code == 200
    first, end, start, stop, market = _month(world)
    frame = _frame(world)
    rows = frame.to_dicts()
    by_local = {r["interval_start"].astimezone(ZoneInfo(TZ)).replace(tzinfo=None): r for r in rows
                if start <= r["interval_start"] < stop}
    for when, r in by_local.items():  # 1500 Wh a day = 375 Wh per quarter of 19:00-20:00, to 23:00-00:00
        if when.hour != 19 or when.replace(hour=23) not in by_local:
            continue
        target = by_local[when.replace(hour=23)]
        take = min(r["import_wh"], 375)
        r["import_wh"] -= take
        absorbed = min(target["export_wh"], take)
        target["export_wh"] -= absorbed
        target["import_wh"] += take - absorbed
    moved = pl.DataFrame(rows, schema=frame.schema)
    assert moved["import_wh"].sum() != frame["import_wh"].sum() or moved["export_wh"].sum() != frame[
        "export_wh"].sum() or not moved.equals(frame)
    plan = load_plan("nl-dynamic-2026")
    before = cost(plan, frame, market, first, end, allow_gaps=True).total_cents
    after = cost(plan, moved, market, first, end, allow_gaps=True).total_cents
    assert _cells(page.text, "shift-result") == [i18n.money(before, "en"), i18n.money(after, "en"),
                                                 i18n.money(after - before, "en")]


def test_a_battery_equals_cost_on_the_synth_rule(world, client):
    page = client.get("/learn", params={"battery_kwh": "5", "battery_kw": "2.5"})
    first, end, start, stop, market = _month(world)
    frame = _frame(world)
    inside = frame.filter((pl.col("interval_start") >= start) & (pl.col("interval_start") < stop))
    imp, exp = battery_self_consumption(np.array([inside["import_wh"].to_list()]),
                                        np.array([inside["export_wh"].to_list()]), capacity_wh=5000, power_w=2500,
                                        initial_soc=0.0)
    assert imp.sum() < inside["import_wh"].sum()  # the battery does something here
    with_battery = pl.concat([frame.filter(pl.col("interval_start") < start),
                              inside.with_columns(import_wh=pl.Series(imp[0]), export_wh=pl.Series(exp[0])),
                              frame.filter(pl.col("interval_start") >= stop)])
    plan = load_plan("nl-dynamic-2026")
    before = cost(plan, frame, market, first, end, allow_gaps=True).total_cents
    after = cost(plan, with_battery, market, first, end, allow_gaps=True).total_cents
    assert _cells(page.text, "battery-result") == [i18n.money(before, "en"), i18n.money(after, "en"),
                                                   i18n.money(after - before, "en")]


def test_the_plan_table_has_every_builtin_plan_with_its_cost(world, client):
    page = client.get("/learn?lang=nl").text
    assert re.findall(r'data-plan="([^"]+)"', page) == builtin_ids() and "nl-dynamic-2027" in builtin_ids()
    first, end, _, _, market = _month(world)
    for pid in ("nl-dynamic-2027", "nl-fixed-2026"):
        total = cost(load_plan(pid), _frame(world), market, first, end, allow_gaps=True).total_cents
        row = re.search(rf'data-plan="{pid}">(.*?)</tr>', page, re.S).group(1)
        assert i18n.money(total, "nl") in row
    assert "Dezelfde maand onder elk tarief" in page


def test_bad_form_values_are_refused(client):
    assert client.get("/learn", params={"kwh": "lots"}).status_code == 422
    assert client.get("/learn", params={"to_hour": 24}).status_code == 422


def test_performance_shows_the_billed_averages(world, client):
    from sqlalchemy import select

    from kwartier.billing.documents import invoice_from_json
    from kwartier.store import schema

    page = client.get("/performance")
    assert page.status_code == 200 and 'id="performance-chart"' in page.text
    data = json.loads(re.search(r'id="performance-data">(.*?)</script>', page.text, re.S).group(1))
    with world.engine.connect() as conn:
        content = conn.execute(select(schema.invoices.c.content).where(
            schema.invoices.c.number == world.invoices["p0"][0])).scalar()
    _, info = invoice_from_json(content)
    assert data["x"] == [world.period]
    assert Decimal(str(data["mine"][0])) == info.average_eur_per_kwh
    assert Decimal(str(data["community"][0])) == info.community_average_eur_per_kwh


def _day_prices(day: date, price_ueur: int, fixed: bool = True) -> pl.DataFrame:
    start, stop = local_period_bounds(day, day + timedelta(days=1), TZ)
    q = interval_starts(start, stop)
    return pl.DataFrame({"interval_start": q, "price_ueur_per_kwh": [price_ueur] * q.len(), "fixed": [fixed] * q.len()})


def test_cheapest_window_is_the_lowest_three_hours_only_when_fixed():
    day = date(2026, 6, 10)
    prices = _day_prices(day, 300_000)
    local = prices["interval_start"].dt.convert_time_zone(TZ).dt.hour()
    prices = prices.with_columns(price_ueur_per_kwh=pl.when(local.is_between(13, 15)).then(100_000)
                                 .otherwise(pl.col("price_ueur_per_kwh")))
    alert = alerts.cheapest_window(prices, TZ, day)
    assert alert.at_utc == datetime(2026, 6, 10, 11, tzinfo=UTC) and alert.values["eur_per_kwh"] == Decimal("0.1")
    assert alerts.cheapest_window(prices.with_columns(fixed=pl.lit(False)), TZ, day) is None
    assert alerts.cheapest_window(prices, TZ, day + timedelta(days=1)) is None
    assert alerts.cheapest_window(_day_prices(day, 300_000), TZ, day) is None  # a flat price: no advice


def test_a_negative_price_tomorrow_fires_and_only_then():
    now = datetime(2026, 6, 10, 12, tzinfo=UTC)
    market = _day_prices(date(2026, 6, 11), 80_000).drop("fixed")
    assert alerts.negative_prices(market, now) is None
    dip = market.with_columns(price_ueur_per_kwh=pl.when(pl.int_range(pl.len()) == 50).then(-12_000)
                              .otherwise(pl.col("price_ueur_per_kwh")))
    alert = alerts.negative_prices(dip, now)
    assert alert.at_utc == market["interval_start"][50] and alert.values["count"] == 1
    assert alert.values["eur_per_kwh"] == Decimal("-0.012")
    assert alerts.negative_prices(dip, market["interval_start"][51]) is None  # it is past


def test_congestion_ahead_fires_on_a_positive_surcharge():
    now = datetime(2026, 6, 10, 12, tzinfo=UTC)
    starts = [now + timedelta(minutes=15 * k) for k in range(4)]
    assert alerts.congestion_ahead(pl.DataFrame({"interval_start": starts, "value": [0.0] * 4}), now) is None
    alert = alerts.congestion_ahead(pl.DataFrame({"interval_start": starts, "value": [0.0, 0.0, 0.05, 0.0]}), now)
    assert alert.at_utc == starts[2]


def test_an_unusual_day_fires_and_a_usual_one_does_not():
    yesterday = date(2026, 6, 9)
    start, stop = local_period_bounds(yesterday - timedelta(days=28), yesterday + timedelta(days=1), TZ)
    q = interval_starts(start, stop)
    base = pl.DataFrame({"interval_start": q, "import_wh": [100] * q.len()})
    day_of = base["interval_start"].dt.convert_time_zone(TZ).dt.date()
    for factor, fires in ((Decimal("1.6"), True), (Decimal("1.4"), False)):
        frame = base.with_columns(import_wh=pl.when(day_of == yesterday).then(int(100 * factor))
                                  .otherwise(pl.col("import_wh")))
        alert = alerts.unusual_consumption(alerts.daily_import_wh(frame, TZ), yesterday, start)
        assert (alert is not None) is fires, factor
    alert = alerts.unusual_consumption(alerts.daily_import_wh(base.with_columns(
        import_wh=pl.when(day_of == yesterday).then(200).otherwise(pl.col("import_wh"))), TZ), yesterday, start)
    assert alert.values["kwh"] == Decimal("19.2") and alert.values["usual_kwh"] == Decimal("9.6")


def test_the_alerts_page_lists_a_negative_price_stored_for_tomorrow(world, client, tmp_path):
    from kwartier.services.imports import import_prices

    assert "Negative prices" not in client.get("/alerts").text
    when = (datetime.now(UTC) + timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
    (tmp_path / "neg.csv").write_text(f"timestamp,price_eur_per_mwh\n{when:%Y-%m-%dT%H:%M:%SZ},-25.00\n")
    import_prices(world.engine, tmp_path / "neg.csv")
    page = client.get("/alerts?lang=en").text
    assert "Negative prices" in page and when.astimezone(ZoneInfo(TZ)).strftime("%Y-%m-%d %H:%M") in page


def test_exports_are_the_participants_own_data(world, client):
    mine = world.readings[world.eans[0]]
    rows = list(csv.DictReader(io.StringIO(client.get("/export/readings.csv").text)))
    assert {r["connection"] for r in rows} == {world.eans[0]} and len(rows) == mine.height
    assert sum(int(r["import_wh"]) for r in rows) == mine["import_wh"].sum()
    as_json = client.get("/export/readings.json").json()
    assert len(as_json) == mine.height and {r["connection"] for r in as_json} == {world.eans[0]}
    numbers = sorted(d["invoice"]["number"] for d in client.get("/export/invoices.json").json())
    assert numbers == sorted(world.invoices["p0"])
    costs = client.get("/export/costs.json").json()
    assert [c["period"] for c in costs] == [world.period] and costs[0]["invoice"] in world.invoices["p0"]
    prices = list(csv.DictReader(io.StringIO(client.get("/export/prices.csv").text)))
    assert prices and all(Decimal(p["eur_per_kwh"]) for p in prices) and {p["status"] for p in prices} <= {
        "fixed", "forecast"}
    links = client.get("/export").text
    assert all(f'href="/export/{f}"' in links for f in ("readings.csv", "readings.json", "invoices.json",
                                                         "costs.json", "prices.csv"))


def test_exports_of_another_are_not_there(world):
    other = TestClient(create_app(world.engine, secret=b"s"))
    login(other, "user1")
    text = other.get("/export/readings.csv").text
    assert world.eans[0] not in text and world.eans[1] in text
    assert not set(world.invoices["p0"]) & {d["invoice"]["number"] for d in other.get("/export/invoices.json").json()}
    assert other.get("/export/readings.csv", params={"connection": world.eans[0]}).text == text
    assert other.get(f"/export/{world.eans[0]}.csv").status_code == 404
    operator = TestClient(create_app(world.engine, secret=b"s"))
    login(operator, "olga")
    for path in ("/learn", "/performance", "/alerts", "/export", "/export/readings.csv"):
        assert operator.get(path).status_code == 404, path
