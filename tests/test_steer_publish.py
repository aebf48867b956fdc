"""Prices for home automation: per-quarter prices, the cheapest window, HA discovery, and the evcc endpoint."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from kwartier.services.imports import day_ahead_known_at, import_prices
from kwartier.steer.mqtt import MqttError
from kwartier.steer.publish import (
    QuarterPrice,
    cheapest_window,
    evcc_rates,
    ha_discovery_messages,
    price_state_messages,
    quarter_prices,
)
from kwartier.tariffs.plan import load_plan
from kwartier.timegrid import floor_to_grid, interval_starts, local_date_of, local_day_bounds
from kwartier.web.feeds import router

TZ = "Europe/Amsterdam"
Q = timedelta(minutes=15)
PLAN = load_plan("nl-dynamic-2026")  # supply = market + 0.0180 (import), feed_in = -(market - 0.0150) (export)


def qp(start: datetime, *cents: float) -> list[QuarterPrice]:
    return [QuarterPrice(start + i * Q, Decimal(str(c)) / 100, "fixed") for i, c in enumerate(cents)]


def test_quarter_prices_sum_the_direction_and_apply_vat_per_component():
    t = datetime(2026, 3, 2, 12, tzinfo=UTC)
    table = pl.DataFrame({
        "interval_start": [t, t, t + Q, t + Q],
        "component": ["supply", "feed_in", "supply", "feed_in"],
        "price_ueur_per_kwh": [100_000, -85_000, 123_457, -85_000],
        "status": ["fixed", "fixed", "forecast", "fixed"],
    }).with_columns(pl.col("interval_start").dt.replace_time_zone("UTC"))
    grid = quarter_prices(table, PLAN)
    assert [(q.eur_per_kwh, q.status) for q in grid] == [(Decimal("0.100000"), "fixed"),
                                                          (Decimal("0.123457"), "forecast")]
    # 123457 x 1.21 = 149382.97 micro-euro -> 0.149383; the feed-in pay is positive.
    assert [q.eur_per_kwh for q in quarter_prices(table, PLAN, with_vat=True)] == [Decimal("0.121000"),
                                                                                   Decimal("0.149383")]
    assert [q.eur_per_kwh for q in quarter_prices(table, PLAN, "feedin")] == [Decimal("0.085000")] * 2
    assert [q.eur_per_kwh for q in quarter_prices(table, PLAN, "feedin", with_vat=True)] == [Decimal("0.102850")] * 2


def test_cheapest_window_is_the_lowest_mean_run_left_today():
    t = datetime(2026, 3, 2, 20, tzinfo=UTC)  # 21:00 local; the local day ends at 23:00 UTC
    quarters = qp(t, 5, 4, 3, 9, 1, 1, 1, 1, 8, 8, 8, 8) + qp(t + 12 * Q, 0, 0, 0, 0)  # the last: tomorrow
    w = cheapest_window(quarters, t + timedelta(minutes=5), TZ)
    assert w is not None and (w.start, w.end, w.mean_eur_per_kwh) == (t + 4 * Q, t + 8 * Q, Decimal("0.010000"))
    # Past quarters do not count; only one run of 4 remains from 22:00 UTC.
    late = cheapest_window(quarters, t + 8 * Q, TZ)
    assert late is not None and late.start == t + 8 * Q
    assert cheapest_window(quarters, t + 9 * Q, TZ) is None
    # A tie goes to the earlier run; a gap breaks a run.
    assert cheapest_window(qp(t, 2, 2, 2, 2), t, TZ, length=2).start == t  # type: ignore[union-attr]
    gap = qp(t, 1) + qp(t + 2 * Q, 1, 5)
    assert cheapest_window(gap, t, TZ, length=2).start == t + 2 * Q  # type: ignore[union-attr]


def test_cheapest_window_respects_a_short_dst_day():
    t = datetime(2026, 3, 29, 21, tzinfo=UTC)  # 23:00 CEST on the 23-hour day; it ends at 22:00 UTC
    w = cheapest_window(qp(t, 9, 9, 9, 9, 1, 1, 1, 1), t, TZ)
    assert w is not None and w.start == t and w.end == t + 4 * Q


def test_home_assistant_discovery_and_states():
    configs = ha_discovery_messages("kw", "c1", "nl-dynamic-2026", discovery_prefix="ha")
    assert [m.topic for m in configs] == [f"ha/sensor/kwartier_nl-dynamic-2026_{w}/config"
                                          for w in ("current", "next", "cheapest_window")]
    assert all(m.retain and m.qos == 1 for m in configs)
    current, _, window = (json.loads(m.payload) for m in configs)
    assert current["state_topic"] == "kw/c1/prices/nl-dynamic-2026/current"
    assert current["unit_of_measurement"] == "EUR/kWh" and current["availability_topic"] == "kw/c1/status"
    assert window["device_class"] == "timestamp"
    assert window["json_attributes_topic"] == "kw/c1/prices/nl-dynamic-2026/cheapest_window/attributes"
    assert len({json.loads(m.payload)["unique_id"] for m in configs}) == 3

    t = datetime(2026, 3, 2, 20, tzinfo=UTC)
    guess = [QuarterPrice(t + 8 * Q, Decimal("0.02"), "forecast")]
    states = {m.topic.rsplit("nl-dynamic-2026/", 1)[1]: m.payload
              for m in price_state_messages("kw", "c1", "nl-dynamic-2026", qp(t, 5, 4, 3, 9, 1, 1, 1, 1) + guess,
                                            t + timedelta(minutes=20), TZ)}
    assert states["current"] == b"0.04" and states["next"] == b"0.03"
    assert states["cheapest_window"] == b"2026-03-02T21:00:00+00:00"
    assert json.loads(states["cheapest_window/attributes"])["mean_eur_per_kwh"] == "0.010000"
    assert len(json.loads(states["quarters"])) == 8  # fixed prices only: the forecast one is left out
    after = {m.topic.rsplit("/", 1)[1]: m.payload for m in price_state_messages("kw", "c1", "p", qp(t, 1), t + Q, TZ)}
    assert after["current"] == b"None"


def test_topic_levels_cannot_be_injected():
    with pytest.raises(MqttError, match="cannot be an MQTT topic level"):
        ha_discovery_messages("kw", "c1/#", "p")


def test_evcc_rates_shape():
    t = datetime(2026, 3, 2, 23, 45, tzinfo=UTC)
    assert evcc_rates(qp(t, 12.3456)) == [{"start": "2026-03-02T23:45:00Z", "end": "2026-03-03T00:00:00Z",
                                            "value": 0.123456}]


def _import_prices(engine, tmp_path: Path, start: datetime, end: datetime) -> pl.DataFrame:
    starts = interval_starts(start, end)
    eur_per_mwh = [40 + (i % 96) for i in range(starts.len())]
    frame = pl.DataFrame({"timestamp": starts.dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
                          "price_eur_per_mwh": [f"{p:.2f}" for p in eur_per_mwh]})
    frame.write_csv(tmp_path / "prices.csv")
    import_prices(engine, tmp_path / "prices.csv")
    return pl.DataFrame({"interval_start": starts, "eur_per_mwh": eur_per_mwh})


def test_evcc_endpoint_serves_the_stored_fixed_prices(engine, tmp_path):
    now = datetime.now(UTC)
    today = local_date_of(now, TZ)
    first, _ = local_day_bounds(today - timedelta(days=2), TZ)
    _, last = local_day_bounds(today + timedelta(days=1), TZ)
    market = _import_prices(engine, tmp_path, first, last)
    app = FastAPI()
    app.state.engine = engine
    app.include_router(router)
    client = TestClient(app)

    rates = client.get("/api/v1/tariff/nl-dynamic-2026/evcc").json()
    day_start, day_end = local_day_bounds(today, TZ)
    known = market.with_columns(known_at=day_ahead_known_at(market["interval_start"])).filter(
        pl.col("interval_start") >= day_start, pl.col("known_at") <= now)
    assert len(rates) == known.height >= 92  # today, and tomorrow once published
    by_start = dict(zip(known["interval_start"].dt.strftime("%Y-%m-%dT%H:%M:%SZ"), known["eur_per_mwh"],
                        strict=True))
    for r in rates:
        assert r["value"] == pytest.approx(by_start[r["start"]] / 1000 + 0.018, abs=1e-9)  # market + markup
        assert datetime.fromisoformat(r["end"]) - datetime.fromisoformat(r["start"]) == Q
    assert rates[0]["start"] == day_start.strftime("%Y-%m-%dT%H:%M:%SZ")
    now_q = floor_to_grid(now).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert now_q in by_start or now >= day_end

    vat = client.get("/api/v1/tariff/nl-dynamic-2026/evcc", params={"vat": "true", "direction": "feedin"}).json()
    assert vat[0]["value"] == pytest.approx(round((by_start[vat[0]["start"]] / 1000 - 0.015) * 1.21, 6), abs=1e-9)
    forecast = client.get("/api/v1/tariff/nl-dynamic-2026/evcc", params={"forecast": "true"}).json()
    assert len(forecast) >= len(rates)
    assert client.get("/api/v1/tariff/no-such-plan/evcc").status_code == 404
    assert client.get("/api/v1/tariff/nl-dynamic-2026/evcc", params={"direction": "up"}).status_code == 422


def test_evcc_endpoint_without_prices_is_an_empty_list(engine):
    app = FastAPI()
    app.state.engine = engine
    app.include_router(router)
    assert TestClient(app).get("/api/v1/tariff/nl-dynamic-2026/evcc").json() == []
