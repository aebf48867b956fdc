"""Forecasts: metrics by hand, DST day shapes, hand-checkable histories, skill over the naive baselines on real data."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import data_file
from kwartier.forecast import ForecastInputError, forecast_load, forecast_prices, forecast_pv, mae, rmse, skill
from kwartier.forecast import errors as E
from kwartier.forecast import load as load_mod
from kwartier.forecast.pv import clear_sky_wh
from kwartier.tariffs.lifecycle import baseline_forecast
from kwartier.timegrid import interval_starts, local_day_bounds, local_day_quarters

AMS = "Europe/Amsterdam"
PRICE = "price_ueur_per_kwh"


def series(start: datetime, end: datetime, value, name: str) -> pl.DataFrame:
    """A quarter series on [start, end) with ``value(start_series) -> array``."""
    s = interval_starts(start, end).alias("start")
    return pl.DataFrame({"start": s, name: value(s)})


def local_slot(s: pl.Series) -> np.ndarray:
    loc = s.dt.convert_time_zone(AMS)
    return (loc.dt.hour().cast(pl.Int64) * 4 + loc.dt.minute().cast(pl.Int64) // 15).to_numpy()


# --- metrics ---------------------------------------------------------------------------------------------


def test_metrics_by_hand():
    a, f = [0.0, 2.0, 4.0, 10.0], [1.0, 2.0, 1.0, 10.0]  # errors 1, 0, -3, 0
    assert mae(a, f) == 1.0
    assert rmse(a, f) == pytest.approx(np.sqrt(10 / 4))
    assert skill(1.0, 4.0) == 0.75
    assert skill(5.0, 4.0) == -0.25
    with pytest.raises(ForecastInputError):
        skill(1.0, 0.0)
    with pytest.raises(ForecastInputError, match="differ in length"):
        mae([1.0], [1.0, 2.0])


def test_score_skips_quarters_without_all_three():
    t0 = datetime(2025, 1, 1, 23, tzinfo=UTC)
    ev = pl.DataFrame({"start": [t0, t0 + timedelta(minutes=15), t0 + timedelta(minutes=30)],
                       "actual": [10.0, 20.0, 30.0], "forecast": [11.0, None, 27.0], "naive": [14.0, 0.0, 30.0]})
    sc = E.score(ev)
    assert (sc.quarters, sc.days) == (2, 1)
    assert (sc.mae, sc.naive_mae) == (2.0, 2.0)
    assert sc.skill == 0.0


# --- the grid and the naive baseline over DST -------------------------------------------------------------


@pytest.mark.parametrize(("day", "n"), [(date(2025, 3, 30), 92), (date(2025, 10, 26), 100), (date(2025, 6, 2), 96)])
def test_naive_same_quarter_yesterday_over_dst(day, n):
    hist = series(*local_day_bounds(day - timedelta(days=1), AMS), lambda s: local_slot(s) * 10, "v")
    out = E.naive_same_quarter(hist, local_day_quarters(day, AMS), value="v", lag_days=1, tz=AMS)
    assert out.height == n
    slots = local_slot(out["start"])
    # The same local quarter yesterday: slot x 10, also for both 02:xx quarters of the autumn day.
    assert out["v"].to_numpy().tolist() == (slots * 10.0).tolist()


def test_naive_after_spring_day_has_no_value_for_missing_hour():
    day = date(2025, 3, 31)  # yesterday had no 02:00-02:45
    hist = series(*local_day_bounds(date(2025, 3, 30), AMS), lambda s: np.ones(s.len()), "v")
    out = E.naive_same_quarter(hist, local_day_quarters(day, AMS), value="v", lag_days=1, tz=AMS)
    assert out["v"].null_count() == 4
    assert out.filter(pl.col("v").is_null())["start"].dt.convert_time_zone(AMS).dt.hour().unique().to_list() == [2]


def test_rolling_origin_hides_the_future():
    start, end = datetime(2025, 1, 1, 23, tzinfo=UTC), datetime(2025, 1, 20, 23, tzinfo=UTC)
    data = series(start, end, lambda s: np.arange(s.len(), dtype=float), "v")
    seen: list[tuple[datetime, datetime]] = []

    def peek(hist: pl.DataFrame, starts: pl.Series) -> pl.DataFrame:
        seen.append((hist["start"].max(), starts.min()))
        return pl.DataFrame({"start": starts, "v": np.zeros(starts.len())})

    ev = E.rolling_origin(data, peek, E.naive("v", 1, AMS), E.local_days(date(2025, 1, 10), date(2025, 1, 12)),
                          value="v", tz=AMS, history_days=5)
    assert ev.height == 3 * 96
    assert all(last < first for last, first in seen)
    assert all(first - last == timedelta(minutes=15) for last, first in seen)


# --- shapes on DST days ------------------------------------------------------------------------------------


def _weeks_of_prices(end_day: date, days: int) -> pl.DataFrame:
    start = local_day_bounds(end_day - timedelta(days=days), AMS)[0]
    end = local_day_bounds(end_day, AMS)[0]
    rng = np.random.default_rng(7)
    return series(start, end, lambda s: 80_000 + 40_000 * np.sin(local_slot(s) / 96 * 2 * np.pi)
                  + rng.normal(0, 5_000, s.len()), PRICE).with_columns(pl.col(PRICE).round(0).cast(pl.Int64))


@pytest.mark.parametrize(("day", "n"), [(date(2025, 3, 30), 92), (date(2025, 10, 26), 100)])
def test_every_forecast_has_the_quarters_of_a_dst_day(day, n):
    starts = local_day_quarters(day, AMS)
    prices = forecast_prices(_weeks_of_prices(day, 60), starts, AMS)
    load_hist = _weeks_of_prices(day, 60).rename({PRICE: "wh"}).with_columns(pl.col("wh") // 100)
    load = forecast_load(load_hist, starts, AMS)
    pv_hist = pl.DataFrame({"start": load_hist["start"],
                            "wh": np.rint(clear_sky_wh(load_hist["start"], 52.0, 5.0) * 4.0).astype(np.int64)})
    pv = forecast_pv(pv_hist, starts, lat=52.0, lon=5.0)
    for out, col in ((prices, PRICE), (load, "wh"), (pv, "wh")):
        assert out.height == n
        assert out["start"].to_list() == starts.to_list()
        assert out[col].dtype == pl.Int64 and out[col].null_count() == 0


def test_two_days_ahead_is_forecast_recursively():
    day = date(2025, 5, 20)
    starts = interval_starts(local_day_bounds(day, AMS)[0], local_day_bounds(day + timedelta(days=2), AMS)[0])
    out = forecast_prices(_weeks_of_prices(day, 60), starts, AMS)
    assert out.height == 192 and out[PRICE].null_count() == 0


# --- hand-checkable histories -----------------------------------------------------------------------------


def test_prices_repeat_a_steady_daily_pattern():
    day = date(2025, 6, 1)
    start, end = local_day_bounds(day - timedelta(days=120), AMS)[0], local_day_bounds(day, AMS)[0]
    hist = series(start, end, lambda s: 50_000 + 1_000 * local_slot(s), PRICE)
    out = forecast_prices(hist, local_day_quarters(day, AMS), AMS)
    expected = 50_000 + 1_000 * local_slot(out["start"])
    assert np.abs(out[PRICE].to_numpy() - expected).max() < 0.01 * 50_000


def test_prices_with_short_history_equal_the_seven_day_baseline():
    day = date(2025, 6, 1)
    start, end = local_day_bounds(day - timedelta(days=10), AMS)[0], local_day_bounds(day, AMS)[0]
    hist = series(start, end, lambda s: 7 * ((np.arange(s.len()) * 7919) % 20_011), PRICE)  # sums divisible by 7
    starts = local_day_quarters(day, AMS)
    mine = forecast_prices(hist, starts, AMS)
    theirs = baseline_forecast(hist.rename({"start": "interval_start"}).with_columns(resolution=pl.lit("PT15M")),
                               starts, AMS)
    assert mine[PRICE].to_list() == theirs["price_ueur_per_kwh"].to_list()


def _load_grid(day: date, weeks: int, wh) -> tuple[np.ndarray, np.ndarray, int]:
    """A load history of ``weeks`` weeks before ``day`` as the module's matrix, complete rows and first day."""
    start, end = local_day_bounds(day - timedelta(days=7 * weeks), AMS)[0], local_day_bounds(day, AMS)[0]
    grid = E.day_grid(series(start, end, wh, "wh"), "wh", AMS)
    m = E.fill_within_days(grid.values)
    return m, np.flatnonzero(~np.isnan(m).any(axis=1)), grid.first_day


def test_load_weekly_component_is_the_same_weekday_mean_times_the_damped_level():
    day = date(2025, 6, 2)  # a Monday
    cut = local_day_bounds(day - timedelta(days=14), AMS)[0]

    def wh(s: pl.Series) -> np.ndarray:  # 100 Wh on Mondays, 50 on other days; the last 14 days doubled
        base = np.where(s.dt.convert_time_zone(AMS).dt.weekday().to_numpy() == 1, 100, 50)
        return base * np.where((s >= cut).to_numpy(), 2, 1)

    m, complete, first = _load_grid(day, 8, wh)
    weekly, recent = load_mod.components(m, complete, first, (day - date(1970, 1, 1)).days)
    # Monday profile: 6 Mondays at 100 and 2 at 200 -> 125. Level: the last 14 days' mean over the
    # 8 weeks' mean, square-rooted. Recent days: the last 7 days, one Monday at 200 and six days at 100.
    level = ((200 + 6 * 100) / 7 / ((6 * 100 + 36 * 50 + 2 * 200 + 12 * 100) / 56)) ** 0.5
    assert np.allclose(weekly, 125 * level)
    assert np.allclose(recent, (200 + 6 * 100) / 7)


def test_load_blend_follows_the_household():
    day = date(2025, 6, 2)
    weekday_rhythm = lambda s: np.where(s.dt.convert_time_zone(AMS).dt.weekday().to_numpy() >= 6, 300, 60)  # noqa: E731
    m, complete, first = _load_grid(day, 16, weekday_rhythm)
    assert load_mod.blend_share(m, complete, first) == 0.0
    t0 = local_day_bounds(day - timedelta(days=112), AMS)[0]
    first_day = (day - timedelta(days=112) - date(1970, 1, 1)).days
    drifting = lambda s: 50 + 3 * (s.dt.convert_time_zone(AMS).dt.date().cast(pl.Int32).to_numpy() - first_day)  # noqa: E731
    m, complete, first = _load_grid(day, 16, drifting)
    assert load_mod.blend_share(m, complete, first) == 1.0
    out = forecast_load(series(t0, local_day_bounds(day, AMS)[0], drifting, "wh"), local_day_quarters(day, AMS), AMS)
    assert out["wh"].unique().to_list() == [50 + 3 * 108]  # the mean of the last 7 days (days 105..111)


def test_pv_recovers_a_clear_sky_system_of_any_size():
    day = date(2025, 6, 21)
    start, end = datetime(2025, 5, 20, tzinfo=UTC), datetime(2025, 6, 21, tzinfo=UTC)
    hist = series(start, end, lambda s: clear_sky_wh(s, 52.0, 5.0) * 6.4, "wh")
    starts = interval_starts(datetime(2025, 6, 21, tzinfo=UTC), datetime(2025, 6, 22, tzinfo=UTC))
    out = forecast_pv(hist, starts, lat=52.0, lon=5.0)
    expected = clear_sky_wh(starts, 52.0, 5.0) * 6.4
    assert np.abs(out["wh"].to_numpy() - expected).max() <= 1.0
    assert out["wh"].sum() == pytest.approx(expected.sum(), rel=1e-3)
    assert expected.max() > 1000  # a 6.4 kWp system at midsummer noon: about 1.3 kWh per quarter
    del day


def test_pv_learns_an_afternoon_shadow():
    start, end = datetime(2025, 5, 1, tzinfo=UTC), datetime(2025, 6, 1, tzinfo=UTC)
    shadow = lambda s: np.where(s.dt.hour().to_numpy() >= 15, 0.2, 1.0)  # noqa: E731
    hist = series(start, end, lambda s: clear_sky_wh(s, 52.0, 5.0) * 3.0 * shadow(s), "wh")
    starts = interval_starts(end, end + timedelta(days=1))
    out = forecast_pv(hist, starts, lat=52.0, lon=5.0)["wh"].to_numpy()
    cs = clear_sky_wh(starts, 52.0, 5.0) * 3.0
    late = starts.dt.hour().to_numpy() >= 15
    assert out[late].sum() < 0.4 * cs[late].sum()
    assert out[~late].sum() > 0.9 * cs[~late].sum()


def test_a_stored_hourly_price_frame_counts_for_its_quarters():
    day = date(2025, 6, 1)
    q = _weeks_of_prices(day, 40)
    hourly = (q.group_by_dynamic("start", every="1h").agg(pl.col(PRICE).first())
              .rename({"start": "interval_start"}).with_columns(resolution=pl.lit("PT60M")))
    expanded = q.with_columns(pl.col(PRICE).first().over(pl.col("start").dt.truncate("1h")))
    starts = local_day_quarters(day, AMS)
    assert forecast_prices(hourly, starts, AMS).equals(forecast_prices(expanded, starts, AMS))


# --- errors a user can act on -----------------------------------------------------------------------------


def test_bad_input_names_the_problem():
    starts = local_day_quarters(date(2025, 6, 1), AMS)
    with pytest.raises(ForecastInputError, match="missing price_ueur_per_kwh"):
        forecast_prices(pl.DataFrame({"start": starts, "price": [1] * 96}), starts)
    with pytest.raises(ForecastInputError, match="no price history"):
        forecast_prices(pl.DataFrame({"start": starts[:0], PRICE: []}), starts)
    with pytest.raises(ForecastInputError, match="tz-aware"):
        forecast_load(pl.DataFrame({"start": starts, "wh": [1] * 96}), starts.dt.replace_time_zone(None))
    with pytest.raises(ForecastInputError, match="PT60M rows: give one wh value per quarter"):
        forecast_load(pl.DataFrame({"interval_start": starts, "wh": [1] * 96, "resolution": ["PT60M"] * 96}), starts)
    with pytest.raises(ForecastInputError, match="no PV history"):
        forecast_pv(pl.DataFrame({"start": starts[:0], "wh": []}), starts, lat=52.0, lon=5.0)


# --- the claim: better than the naive baseline on real data -----------------------------------------------


def _prices(rel: str) -> pl.DataFrame:
    from kwartier.ingest import read_prices
    from kwartier.tariffs.compose import price_series_nano

    frame = read_prices(data_file(rel)).frame
    return price_series_nano(frame).select(pl.col("quarter").alias("start"), (pl.col("value") // 1000).alias(PRICE))


def _baseline(hist: pl.DataFrame, starts: pl.Series) -> pl.DataFrame:
    f = hist.rename({"start": "interval_start"}).with_columns(resolution=pl.lit("PT15M"))
    return baseline_forecast(f, starts, AMS).rename({"interval_start": "start"})


@pytest.mark.shared_data
@pytest.mark.slow
@pytest.mark.parametrize(("rel", "first", "last"), [
    ("prices_nl/nl_dayahead_2025_15min_jeroen_nl.csv", date(2025, 10, 2), date(2025, 11, 30)),
    ("prices_nl/mark_vis_epex_json/prices_2024.json", date(2024, 5, 1), date(2024, 6, 29)),
])
def test_prices_beat_yesterday_and_the_lifecycle_baseline(rel, first, last):
    q = _prices(rel)
    days = E.local_days(first, last)
    ev = E.rolling_origin(q, forecast_prices, E.naive(PRICE, 1, AMS), days, value=PRICE, history_days=130)
    ours = E.score(ev)
    base = E.score(E.rolling_origin(q, _baseline, E.naive(PRICE, 1, AMS), days, value=PRICE, history_days=130))
    assert ours.days == len(days)
    assert ours.skill > 0.08, ours
    assert ours.rmse_skill > 0.08, ours
    assert ours.mae < 0.95 * base.mae, (ours, base)


@pytest.mark.shared_data
@pytest.mark.slow
@pytest.mark.parametrize("rel", ["household_nl/energiemanageronline_2025_15min_cumulative.csv",
                                 "household_nl/slimmemeterportal_2023_15min.csv"])
def test_load_beats_last_week_and_yesterday(rel):
    from kwartier.ingest import read_readings

    f = read_readings(data_file(rel)).frame.select(pl.col("interval_start").alias("start"),
                                                   pl.col("import_wh").alias("wh"))
    year = f["start"].dt.convert_time_zone(AMS).dt.year().mode().item()
    days = E.local_days(date(year, 9, 1), date(year, 11, 29))  # includes the autumn DST day
    ev = E.rolling_origin(f, forecast_load, E.naive("wh", 7, AMS), days, value="wh", history_days=119)
    yesterday = E.naive_same_quarter(f, ev["start"], value="wh", lag_days=1, tz=AMS)["wh"].cast(pl.Float64)
    for lag, frame in ((7, ev), (1, ev.with_columns(naive=yesterday))):
        sc = E.score(frame)
        assert sc.days >= 85
        assert sc.skill > 0.05, (lag, sc)
        assert sc.rmse_skill > 0.1, (lag, sc)


def emhass_pv_quarters(path) -> pl.DataFrame:
    """EMHASS measured PV (W, 30-min means) as Wh per quarter. Null = inverter asleep (0 W); a UTC day
    with no positive value at all is a logger outage and is left out."""
    f = pl.read_csv(path).select(
        pl.col("timestamp_utc").str.to_datetime(time_zone="UTC").dt.cast_time_unit("us").alias("start"),
        (pl.col("sensor.power_photovoltaics").fill_null(0.0) * 0.25).alias("wh"))
    q = pl.concat([f, f.with_columns(pl.col("start") + pl.duration(minutes=15))]).sort("start")
    live = q.group_by(pl.col("start").dt.date().alias("d")).agg((pl.col("wh") > 0).any().alias("live"))
    return q.join(live, left_on=pl.col("start").dt.date(), right_on="d").filter("live").select("start", "wh")


@pytest.mark.shared_data
def test_pv_beats_yesterday_on_measured_pv():
    q = emhass_pv_quarters(data_file("emhass/long_train_data_load_pv_30min.csv"))
    days = E.local_days(date(2024, 5, 1), date(2024, 7, 29))
    ev = E.rolling_origin(q, lambda h, s: forecast_pv(h, s, lat=48.83, lon=6.86), E.naive("wh", 1, "UTC"), days,
                          value="wh", tz="UTC", history_days=28)
    sc = E.score(ev, "UTC")
    assert sc.days >= 80
    assert sc.skill > 0.03, sc
    assert sc.rmse_skill > 0.1, sc


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(offset_q=st.integers(0, 3 * 96), length_q=st.integers(1, 300))
def test_any_window_gets_exactly_its_quarters(offset_q, length_q):
    day = date(2025, 10, 24)  # windows run over the autumn DST night
    hist = _weeks_of_prices(day, 40)
    t0 = local_day_bounds(day, AMS)[0] + timedelta(minutes=15 * offset_q)
    starts = interval_starts(t0, t0 + timedelta(minutes=15 * length_q))
    load_hist = hist.rename({PRICE: "wh"}).with_columns(pl.col("wh") // 100)
    for out, col in ((forecast_prices(hist, starts, AMS), PRICE), (forecast_load(load_hist, starts, AMS), "wh"),
                     (forecast_pv(load_hist, starts, lat=52.0, lon=5.0), "wh")):
        assert out["start"].to_list() == starts.to_list()
        assert out[col].null_count() == 0
        assert col == PRICE or out[col].min() >= 0
