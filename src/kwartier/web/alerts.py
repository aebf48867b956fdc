"""Alert rules on stored prices and readings: pure functions from frames to triggered alerts."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

import polars as pl

QUARTERS_PER_HOUR = 4
UNUSUAL_FACTOR = Decimal("1.5")  # yesterday above this times the usual same weekday is unusual
WEEKS_BACK = 4


@dataclass(frozen=True)
class Alert:
    """A triggered rule: its kind (an i18n key), when it applies (UTC) and the values its text needs."""

    kind: str
    at_utc: datetime
    values: dict[str, str | Decimal | int | datetime] = field(default_factory=dict)


def _local_day(column: str, tz: str) -> pl.Expr:
    return pl.col(column).dt.convert_time_zone(tz).dt.date()


def cheapest_window(prices: pl.DataFrame, tz: str, day: date, hours: int = 3) -> Alert | None:
    """The cheapest run of ``hours`` whole hours (quarter by quarter) of the local ``day``.

    ``prices``: interval_start (UTC), price_ueur_per_kwh (micro-EUR/kWh), fixed (bool). Only a day
    whose every quarter is fixed counts: a forecast is no advice; nor is a window no cheaper than
    the day's mean (a flat price).
    """
    rows = prices.filter(_local_day("interval_start", tz) == day).sort("interval_start")
    n = hours * QUARTERS_PER_HOUR
    if rows.height < n or not rows["fixed"].all() or rows.height < 92:  # 92: the shortest (spring) day
        return None
    sums = rows["price_ueur_per_kwh"].cast(pl.Int64).rolling_sum(n).to_list()
    best = min(range(n - 1, rows.height), key=lambda i: (sums[i], i))
    if sums[best] * rows.height >= int(rows["price_ueur_per_kwh"].sum()) * n:
        return None  # no cheaper than the day's mean (a flat price): nothing to advise
    start = rows["interval_start"][best - n + 1]
    mean_ueur = Decimal(sums[best]) / n
    return Alert("alert_cheapest", start, {"hours": hours, "end": rows["interval_start"][best] + timedelta(minutes=15),
                                           "eur_per_kwh": (mean_ueur / 1_000_000).quantize(Decimal("0.0001"))})


def negative_prices(market: pl.DataFrame, now: datetime) -> Alert | None:
    """The first market interval after ``now`` with a price below zero, and how many there are."""
    ahead = market.filter((pl.col("interval_start") >= now) & (pl.col("price_ueur_per_kwh") < 0)).sort(
        "interval_start")
    if ahead.is_empty():
        return None
    lowest = int(ahead["price_ueur_per_kwh"].min())  # type: ignore[arg-type]
    return Alert("alert_negative", ahead["interval_start"][0],
                 {"count": ahead.height, "eur_per_kwh": Decimal(lowest).scaleb(-6)})


def congestion_ahead(values: pl.DataFrame, now: datetime) -> Alert | None:
    """The first interval after ``now`` with a congestion surcharge (``value``, EUR/kWh) above zero."""
    ahead = values.filter((pl.col("interval_start") >= now) & (pl.col("value") > 0)).sort("interval_start")
    if ahead.is_empty():
        return None
    return Alert("alert_congestion", ahead["interval_start"][0],
                 {"count": ahead.height, "eur_per_kwh": Decimal(str(ahead["value"].max()))})


def daily_import_wh(readings: pl.DataFrame, tz: str) -> pl.DataFrame:
    """Imported Wh per local day (day, import_wh, intervals) of a reading frame."""
    return (readings.filter(pl.col("import_wh").is_not_null())
            .group_by(_local_day("interval_start", tz).alias("day"))
            .agg(pl.col("import_wh").sum(), pl.len().alias("intervals")).sort("day"))


def unusual_consumption(daily: pl.DataFrame, yesterday: date, start_utc: datetime) -> Alert | None:
    """Yesterday's import above 1.5x the mean of the same weekday in the 4 weeks before.

    ``daily`` as from :func:`daily_import_wh`; at least two earlier same weekdays must be known.
    """
    by_day = dict(zip(daily["day"].to_list(), daily["import_wh"].to_list(), strict=True))
    if yesterday not in by_day:
        return None
    earlier = [by_day[d] for d in (yesterday - timedelta(weeks=k) for k in range(1, WEEKS_BACK + 1)) if d in by_day]
    if len(earlier) < 2:
        return None
    mean_wh = Decimal(sum(earlier)) / len(earlier)
    used_wh = Decimal(by_day[yesterday])
    if mean_wh <= 0 or used_wh <= UNUSUAL_FACTOR * mean_wh:
        return None
    return Alert("alert_unusual", start_utc, {"kwh": used_wh.scaleb(-3).quantize(Decimal("0.1")),
                                             "usual_kwh": mean_wh.scaleb(-3).quantize(Decimal("0.1")),
                                             "weeks": len(earlier)})
