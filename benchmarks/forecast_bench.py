"""Forecast benchmark: rolling-origin error of the PV, load and price forecasts on real data, against naive baselines.

For every day of each evaluation window the forecast sees only the history before that day's
midnight (local midnight; UTC midnight for PV) and forecasts the whole day (92/96/100 quarters).
The naive baselines: PV = same quarter yesterday; load = same quarter yesterday or last week (the
better of the two is shown); prices = same quarter yesterday. For prices the 7-day seasonal baseline
of :func:`kwartier.tariffs.lifecycle.baseline_forecast` is scored as well.

Prints one table (model, data file, days, MAE, RMSE, naive MAE, naive RMSE, skill) and checks that
every forecast beats its naive baseline in MAE and RMSE and that the price model beats the lifecycle
baseline; exits 1 if a check fails.

    .venv/bin/python benchmarks/forecast_bench.py
    .venv/bin/python benchmarks/forecast_bench.py --days 60     # a shorter window per file
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import polars as pl

from kwartier.forecast import errors as E
from kwartier.forecast import forecast_load, forecast_prices, forecast_pv
from kwartier.ingest import read_prices, read_readings
from kwartier.tariffs.compose import price_series_nano
from kwartier.tariffs.lifecycle import baseline_forecast

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
PRICE = "price_ueur_per_kwh"


@dataclass
class Row:
    model: str
    file: str
    unit: str
    score: E.Score
    naive: str
    seconds: float


# --- real data as quarter series --------------------------------------------------------------------------


def price_quarters(rel: str) -> pl.DataFrame:
    """A price file (any kwartier reader) as ``start``, ``price_ueur_per_kwh`` per quarter (hourly -> 4 quarters)."""
    frame = read_prices(DATA / rel).frame
    return price_series_nano(frame).select(pl.col("quarter").alias("start"), (pl.col("value") // 1000).alias(PRICE))


def import_quarters(rel: str) -> pl.DataFrame:
    """A meter file (any kwartier reader) as ``start``, ``wh`` = import energy per quarter."""
    frame = read_readings(DATA / rel).frame
    if set(frame["resolution"].unique()) != {"PT15M"}:
        raise SystemExit(f"{rel}: needs 15-minute readings")
    return frame.select(pl.col("interval_start").alias("start"), pl.col("import_wh").alias("wh")).drop_nulls()


def emhass_quarters(rel: str, column: str, outage_days: bool) -> pl.DataFrame:
    """An EMHASS sensor (W, 30-minute means, UTC) as Wh per quarter (each half hour -> two quarters).

    No kwartier reader exists for this Home Assistant export, so it is read here. For PV
    (``outage_days``) a null is the inverter asleep (0 W), and a UTC day without any positive value
    is a logger outage, left out; for load a null is a missing value.
    """
    raw = pl.read_csv(DATA / rel).select(
        pl.col("timestamp_utc").str.to_datetime(time_zone="UTC").dt.cast_time_unit("us").alias("start"),
        (pl.col(column) * 0.25).alias("wh"))
    if outage_days:
        raw = raw.with_columns(pl.col("wh").fill_null(0.0))
    q = pl.concat([raw, raw.with_columns(pl.col("start") + pl.duration(minutes=15))]).drop_nulls().sort("start")
    if outage_days:
        live = q.group_by(pl.col("start").dt.date().alias("d")).agg((pl.col("wh") > 0).any().alias("live"))
        q = q.join(live, left_on=pl.col("start").dt.date(), right_on="d").filter("live").select("start", "wh")
    return q


def window(series: pl.DataFrame, tz: str, lead_days: int, max_days: int | None) -> list[date]:
    """The days to evaluate: from ``lead_days`` after the first day with data to the last one."""
    local = series["start"].dt.convert_time_zone(tz).dt.date()
    first, last = local.min() + timedelta(days=lead_days), local.max()  # type: ignore[operator]
    days = E.local_days(first, last)
    return days[-max_days:] if max_days else days


# --- evaluations ------------------------------------------------------------------------------------------


def evaluate(series: pl.DataFrame, model: Callable, baselines: dict[str, E.Forecaster], days: list[date], value: str,
             tz: str, history_days: int) -> tuple[E.Score, str, float]:
    """Score ``model`` against the best of ``baselines`` (by MAE), on the same quarters."""
    t0 = time.perf_counter()
    best: tuple[E.Score, str] | None = None
    for name, baseline in baselines.items():
        ev = E.rolling_origin(series, model, baseline, days, value=value, tz=tz, history_days=history_days)
        sc = E.score(ev, tz)
        if best is None or sc.naive_mae < best[0].naive_mae:
            best = (sc, name)
    assert best is not None
    return best[0], best[1], (time.perf_counter() - t0) / len(baselines)


def lifecycle_baseline(tz: str) -> E.Forecaster:
    def run(hist: pl.DataFrame, starts: pl.Series) -> pl.DataFrame:
        f = hist.rename({"start": "interval_start"}).with_columns(resolution=pl.lit("PT15M"))
        return baseline_forecast(f, starts, tz).rename({"interval_start": "start"})
    return run


def price_rows(max_days: int | None) -> list[Row]:
    rows = []
    for rel, tz in (("prices_nl/nl_dayahead_2025_15min_jeroen_nl.csv", "Europe/Amsterdam"),
                    ("prices_nl/mark_vis_epex_json/prices_2024.json", "Europe/Amsterdam"),
                    ("prices_nl/mark_vis_epex_json/prices_2023.json", "Europe/Amsterdam"),
                    ("prices_be/be_dayahead_2022_2024_hourly_rigaux.csv", "Europe/Brussels")):
        q = price_quarters(rel)
        days = window(q, tz, 35, max_days)
        naive = {"yesterday": E.naive(PRICE, 1, tz)}
        for name, model in (("prices: hourly regression", lambda h, s, tz=tz: forecast_prices(h, s, tz)),
                            ("prices: 7-day seasonal (lifecycle)", lifecycle_baseline(tz))):
            sc, nv, secs = evaluate(q, model, naive, days, PRICE, tz, history_days=130)
            rows.append(Row(name, rel, "EUR/MWh", sc, nv, secs))
    return rows


def load_rows(max_days: int | None) -> list[Row]:
    rows = []
    sources = [
        ("household_nl/energiemanageronline_2025_15min_cumulative.csv", "Europe/Amsterdam", None),
        ("household_nl/slimmemeterportal_2023_15min.csv", "Europe/Amsterdam", None),
        ("household_nl/slimmemeterportal_2024_15min_partial.csv", "Europe/Amsterdam", None),
        ("emhass/long_train_data_load_pv_30min.csv", "Europe/Paris", "sensor.power_load_no_var_loads"),
    ]
    for rel, tz, column in sources:
        q = emhass_quarters(rel, column, outage_days=False) if column else import_quarters(rel)
        days = window(q, tz, 56, max_days)
        naive = {"last week": E.naive("wh", 7, tz), "yesterday": E.naive("wh", 1, tz)}
        model = lambda h, s, tz=tz: forecast_load(h, s, tz)  # noqa: E731
        sc, nv, secs = evaluate(q, model, naive, days, "wh", tz, history_days=119)
        rows.append(Row("load: weekly profile x level", rel, "Wh/quarter", sc, nv, secs))
    return rows


def pv_rows(max_days: int | None) -> list[Row]:
    rel = "emhass/long_train_data_load_pv_30min.csv"  # measured PV; site 48.83 N, 6.86 E (EMHASS metadata)
    q = emhass_quarters(rel, "sensor.power_photovoltaics", outage_days=True)
    days = window(q, "UTC", 28, max_days)
    model = lambda h, s: forecast_pv(h, s, lat=48.83, lon=6.86)  # noqa: E731
    sc, nv, secs = evaluate(q, model, {"yesterday": E.naive("wh", 1, "UTC")}, days, "wh", "UTC", history_days=28)
    return [Row("pv: clear sky x recent ratio", rel, "Wh/quarter", sc, nv, secs)]


# --- report -----------------------------------------------------------------------------------------------


def scale(row: Row) -> float:
    return 1000.0 if row.unit == "EUR/MWh" else 1.0  # prices: micro-euro/kWh -> EUR/MWh


def print_table(rows: list[Row]) -> None:
    head = (f"{'model':36} {'data file':56} {'days':>5} {'MAE':>8} {'RMSE':>8} {'naive':>10} {'naive MAE':>9} "
            f"{'naive RMSE':>10} {'skill':>6} {'RMSE sk':>7} {'unit':>10} {'s':>5}")
    print(head)
    print("-" * len(head))
    for r in rows:
        k, s = scale(r), r.score
        print(f"{r.model:36} {r.file:56} {s.days:5d} {s.mae / k:8.2f} {s.rmse / k:8.2f} {r.naive:>10} "
              f"{s.naive_mae / k:9.2f} {s.naive_rmse / k:10.2f} {s.skill:6.1%} {s.rmse_skill:7.1%} {r.unit:>10} "
              f"{r.seconds:5.1f}")


def checks(rows: list[Row]) -> list[str]:
    failed = []
    for r in rows:
        if "lifecycle" in r.model:
            continue
        if r.score.skill <= 0 or r.score.rmse_skill <= 0:
            failed.append(f"{r.model} on {r.file}: no better than the naive baseline ({r.score})")
    ours = {r.file: r for r in rows if r.model.startswith("prices: hourly")}
    for r in rows:
        if "lifecycle" in r.model and ours[r.file].score.mae >= r.score.mae:
            failed.append(f"price regression on {r.file}: MAE not below the lifecycle baseline")
    return failed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=None, help="evaluate only the last N days of each file")
    args = ap.parse_args()
    if not DATA.is_dir():
        print(f"real data folder {DATA} is absent", file=sys.stderr)
        return 1
    rows = pv_rows(args.days) + load_rows(args.days) + price_rows(args.days)
    print_table(rows)
    failed = checks(rows)
    for f in failed:
        print("CHECK FAILED:", f, file=sys.stderr)
    print("all checks passed" if not failed else f"{len(failed)} check(s) failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
