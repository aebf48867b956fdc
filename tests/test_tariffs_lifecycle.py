"""The price lifecycle and explanations: deadlines per rule, forecast becomes fixed, late values refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from kwartier.tariffs.explain import explain
from kwartier.tariffs.lifecycle import BeyondHorizon, LatePrice, deadline_expr, prices
from kwartier.tariffs.plan import load_plan, plan_from_text

JEMLIKE = """
id = "t-congestion"
name = "T"
vat_rate = "0.21"
[[series]]
id = "congestion"
label = "Congestion surcharge"
fixed = "PT4H"
default = "0"
[[components]]
id = "supply"
label = "Supply"
payee = "supplier"
basis = "import_kwh"
price = "market + 0.0181"
fixed = "day-ahead"
[[components]]
id = "congestion"
label = "Congestion"
payee = "grid"
basis = "import_kwh"
price = "congestion"
fixed = "PT4H"
"""
DAY = datetime(2026, 6, 9, 22, tzinfo=UTC)  # local 2026-06-10 00:00 (+02:00)


def market(days: int = 9, start: datetime = DAY - timedelta(days=8)) -> pl.DataFrame:
    n = days * 96
    starts = [start + timedelta(minutes=15 * k) for k in range(n)]
    frame = pl.DataFrame({"interval_start": starts, "resolution": ["PT15M"] * n,
                          "price_ueur_per_kwh": [50_000 + 1000 * (k % 96) for k in range(n)]})
    frame = frame.with_columns(pl.col("interval_start").dt.cast_time_unit("us"))
    local_day = frame["interval_start"].dt.convert_time_zone("Europe/Brussels").dt.date()
    known = (local_day - pl.duration(days=1)).cast(pl.Datetime("us")) + pl.duration(hours=12, minutes=45)
    return frame.with_columns(known_at=known.dt.replace_time_zone("Europe/Brussels").dt.convert_time_zone("UTC"))


def test_deadlines_per_rule():
    f = pl.DataFrame({"interval_start": [datetime(2026, 3, 29, 1, 30, tzinfo=UTC)]}).with_columns(
        pl.col("interval_start").dt.cast_time_unit("us"))
    get = lambda rule: f.select(deadline_expr(rule, "Europe/Amsterdam"))[0, 0]  # noqa: E731
    assert get("day-ahead") == datetime(2026, 3, 28, 11, 45, tzinfo=UTC)  # 12:45 CET on the day before
    assert get("PT4H") == datetime(2026, 3, 28, 21, 30, tzinfo=UTC)
    assert get("PT15M") == datetime(2026, 3, 29, 1, 15, tzinfo=UTC)
    assert get("month-start") == datetime(2026, 2, 28, 23, tzinfo=UTC)  # local midnight 1 March


def test_a_day_is_forecast_before_the_auction_and_fixed_after():
    plan = load_plan("nl-dynamic-2026")
    m = market()
    before = prices(plan, m, DAY, DAY + timedelta(days=1), datetime(2026, 6, 9, 10, 0, tzinfo=UTC))
    after = prices(plan, m, DAY, DAY + timedelta(days=1), datetime(2026, 6, 9, 10, 45, tzinfo=UTC))
    assert set(before["status"]) == {"forecast"} and before["known_at"].null_count() == before.height
    assert set(after["status"]) == {"fixed"}
    assert set(after["known_at"]) == {datetime(2026, 6, 9, 10, 45, tzinfo=UTC)}
    supply = after.filter(pl.col("component") == "supply")["price_ueur_per_kwh"].to_list()
    assert supply[:3] == [50_000 + 18_000, 51_000 + 18_000, 52_000 + 18_000]  # market + 0.0180 markup
    # The baseline forecast repeats the same local quarter of the last 7 known days: here the same shape.
    assert before.filter(pl.col("component") == "supply")["price_ueur_per_kwh"].to_list() == supply


def test_congestion_is_fixed_4h_ahead_and_a_late_value_is_refused():
    plan = plan_from_text(JEMLIKE, "t")
    m = market()
    q = DAY + timedelta(hours=18)
    cong = pl.DataFrame({"interval_start": [q], "resolution": ["PT15M"], "value": ["0.0500"],
                         "known_at": [q - timedelta(hours=5)]}).with_columns(
        pl.col("interval_start", "known_at").dt.cast_time_unit("us"))
    early = prices(plan, m, q, q + timedelta(minutes=15), q - timedelta(hours=6), {"congestion": cong})
    fixed = prices(plan, m, q, q + timedelta(minutes=15), q - timedelta(hours=4), {"congestion": cong})
    row = lambda t: t.filter(pl.col("component") == "congestion").row(0, named=True)  # noqa: E731
    assert (row(early)["status"], row(early)["price_ueur_per_kwh"]) == ("forecast", 0)  # not known yet: default
    assert (row(fixed)["status"], row(fixed)["price_ueur_per_kwh"]) == ("fixed", 50_000)
    late = cong.with_columns(known_at=pl.lit(q - timedelta(hours=3)).dt.cast_time_unit("us"))
    with pytest.raises(LatePrice, match="after its fixing deadline"):
        prices(plan, m, q, q + timedelta(minutes=15), q, {"congestion": late})


def test_no_forecast_beyond_48_hours():
    with pytest.raises(BeyondHorizon, match="48 h"):
        prices(load_plan("nl-dynamic-2026"), market(), DAY + timedelta(days=3), DAY + timedelta(days=4),
               DAY - timedelta(hours=1))


@pytest.mark.parametrize(("locale", "words"), [("nl", "leverancier"), ("en", "supplier"), ("fr", "fournisseur")])
def test_explanations_in_three_languages(locale, words):
    parts = explain(load_plan("nl-dynamic-2026"), market(), DAY + timedelta(hours=12),
                    datetime(2026, 6, 9, 11, tzinfo=UTC), locale)
    supply = next(p for p in parts if p.component == "supply")
    assert words in supply.sentence and supply.status == "fixed"
    feed = next(p for p in parts if p.component == "feed_in")
    assert feed.eur_per_kwh < 0
    assert {"nl": "je ontvangt", "en": "you receive", "fr": "vous recevez"}[locale] in feed.sentence


@pytest.mark.parametrize("plan_id", ["nl-fixed-2026", "nl-daynight-2026"])
def test_contract_prices_are_fixed_from_the_start(plan_id):
    table = prices(load_plan(plan_id), market(), DAY, DAY + timedelta(days=1), DAY - timedelta(hours=12))
    assert table.height == 96 * len(set(table["component"]))
    assert set(table["status"]) == {"fixed"}  # known when the contract was signed
