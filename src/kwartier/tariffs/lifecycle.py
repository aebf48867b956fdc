"""The price lifecycle: for each quarter and component, its value, ``forecast`` or ``fixed``, and when known.

A component's price is *fixed* once its fixing deadline has passed and every series it reads has a
value known by then; before that it is a *forecast*. Deadlines (``fixed`` in the plan):

- ``day-ahead``: the SDAC auction's publication, 12:45 CET on the day before delivery;
- ``PT4H`` (any duration): that long before the interval starts (the congestion surcharge);
- ``month-start``: local midnight at the start of the interval's month;
- ``contract``: known when the plan is (a constant of the contract).

A value that arrives after its series' deadline is refused (:class:`LatePrice`): what was fixed is
never changed. Forecasts cover at most 48 hours after ``known_at``; the market forecast is a
seasonal baseline: the mean of the same local quarter-hour over the last 7 days known by then.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import polars as pl

from kwartier.tariffs.compose import NANO, evaluate_micro, series_env
from kwartier.tariffs.plan import LoadedPlan
from kwartier.timegrid import iso_utc, require_aware

AUCTION_TZ = "Europe/Brussels"
FORECAST_HORIZON = timedelta(hours=48)
BASELINE_DAYS = 7
UTC_DT = pl.Datetime("us", "UTC")


class LatePrice(ValueError):
    """A value that became known after its fixing deadline."""


class BeyondHorizon(ValueError):
    """Asked for prices further ahead than a forecast reaches."""


def deadline_expr(fixed: str, tz: str) -> pl.Expr:
    """The fixing deadline of each ``interval_start`` for a plan's ``fixed`` rule, as a polars expression."""
    start = pl.col("interval_start")
    if fixed == "day-ahead":
        day = start.dt.convert_time_zone(AUCTION_TZ).dt.date() - pl.duration(days=1)
        return (day.cast(pl.Datetime("us")) + pl.duration(hours=12, minutes=45)).dt.replace_time_zone(
            AUCTION_TZ).dt.convert_time_zone("UTC")
    m = re.fullmatch(r"PT(\d+)([HM])", fixed)
    if m:
        n = int(m.group(1))
        return start - (pl.duration(hours=n) if m.group(2) == "H" else pl.duration(minutes=n))
    if fixed == "month-start":
        return start.dt.convert_time_zone(tz).dt.truncate("1mo").dt.convert_time_zone("UTC")
    return pl.lit(datetime(1970, 1, 1, tzinfo=UTC)).dt.cast_time_unit("us")  # contract


def market_as_known(market: pl.DataFrame, known_at: datetime) -> pl.DataFrame:
    """The stored market prices (with ``known_at``) that were known at ``known_at``."""
    return market.filter(pl.col("known_at") <= known_at)


def baseline_forecast(history: pl.DataFrame, starts: pl.Series, tz: str) -> pl.DataFrame:
    """A seasonal baseline for the quarters ``starts``: the mean price of the same local quarter-hour
    over the last :data:`BASELINE_DAYS` days of ``history`` (a price frame), in micro-euros per kWh.
    """
    from kwartier.tariffs.compose import price_series_nano

    q = price_series_nano(history).sort("quarter")
    if q.is_empty():
        return pl.DataFrame(schema={"interval_start": UTC_DT, "resolution": pl.String,
                                    "price_ueur_per_kwh": pl.Int64})
    last = q["quarter"].max()
    recent = q.filter(pl.col("quarter") > last - timedelta(days=BASELINE_DAYS))  # type: ignore[operator]
    slot = lambda c: (pl.col(c).dt.convert_time_zone(tz).dt.hour() * 4  # noqa: E731
                      + pl.col(c).dt.convert_time_zone(tz).dt.minute() // 15)
    means = recent.group_by(slot("quarter").alias("slot")).agg((pl.col("value").mean() / 1000).round(0).cast(
        pl.Int64).alias("price_ueur_per_kwh"))
    target = pl.DataFrame({"interval_start": starts}).with_columns(slot("interval_start").alias("slot"))
    return target.join(means, on="slot", how="left").select(
        "interval_start", pl.lit("PT15M").alias("resolution"), "price_ueur_per_kwh")


def prices(
    plan: LoadedPlan,
    market: pl.DataFrame,
    start: datetime,
    end: datetime,
    known_at: datetime,
    inputs: Mapping[str, pl.DataFrame] | None = None,
) -> pl.DataFrame:
    """Per quarter in [start, end) and energy component: value, status and known-at, as of ``known_at``.

    ``market``: stored prices with ``known_at`` (any history; what was known at ``known_at`` is
    used, the rest forecast). ``inputs``: input series frames with ``interval_start``, ``resolution``,
    ``value`` and ``known_at``. Returns ``interval_start``, ``component``, ``price_ueur_per_kwh``,
    ``status``, ``known_at`` (null for a forecast).
    """
    known_at = require_aware(known_at, "known_at")
    tz = plan.plan.timezone
    from kwartier.timegrid import interval_starts

    starts = interval_starts(start, end)
    if starts.len() and starts.max() >= known_at + FORECAST_HORIZON:  # type: ignore[operator]
        raise BeyondHorizon(f"prices up to {iso_utc(end)} asked at {iso_utc(known_at)}: a forecast reaches "
                            f"{int(FORECAST_HORIZON.total_seconds() // 3600)} h ahead at most")
    quarters = pl.DataFrame({"interval_start": starts, "resolution": "PT15M"})
    known_market = market_as_known(market, known_at)
    mk = known_market.select("interval_start", "resolution", "price_ueur_per_kwh", "known_at")
    # Quarters whose market price is not known yet get the baseline forecast.
    have = _quarter_known(mk, starts)
    fc = baseline_forecast(known_market, starts, tz)  # everything published by then, future hours too
    market_rows = pl.concat([
        mk.select("interval_start", "resolution", "price_ueur_per_kwh"),
        fc.filter(~pl.col("interval_start").is_in(have["interval_start"].implode())),
    ], how="vertical_relaxed")
    fixed_inputs: dict[str, pl.DataFrame] = {}
    input_known: dict[str, pl.DataFrame] = {}
    for decl in plan.plan.series:
        frame = (inputs or {}).get(decl.id)
        if frame is None:
            continue
        late = frame.with_columns(deadline=deadline_expr(decl.fixed, tz)).filter(pl.col("known_at") > pl.col(
            "deadline"))
        if late.height:
            r = late.row(0, named=True)
            raise LatePrice(f"series {decl.id!r}: the value for {iso_utc(r['interval_start'])} became known at "
                            f"{iso_utc(r['known_at'])}, after its fixing deadline {iso_utc(r['deadline'])}")
        visible = frame.filter(pl.col("known_at") <= known_at)
        fixed_inputs[decl.id] = visible
        input_known[decl.id] = visible.select("interval_start", "known_at")
    env = series_env(plan, quarters, market_rows, fixed_inputs)
    rows = []
    for comp in plan.components:
        if comp.spec.basis not in ("import_kwh", "export_kwh") or comp.price is None:
            continue
        value = evaluate_micro(comp.price, env, plan.env_constants())
        deadline = quarters.with_columns(d=deadline_expr(comp.spec.fixed, tz))["d"]  # a literal is broadcast
        frame = pl.DataFrame({"interval_start": starts, "component": comp.spec.id, "price_ueur_per_kwh": value,
                              "deadline": deadline})
        reads_market = "market" in comp.price.names
        frame = frame.join(have.rename({"known_at": "market_known"}), on="interval_start", how="left")
        ok = pl.col("deadline") <= known_at
        if reads_market:
            ok = ok & pl.col("market_known").is_not_null()
        for sid in comp.price.names & set(input_known):
            frame = frame.join(input_known[sid].rename({"known_at": f"k_{sid}"}), on="interval_start", how="left")
        when_known = pl.max_horizontal([pl.col("deadline"), *(
            [pl.col("market_known")] if reads_market else []), *(pl.col(c) for c in frame.columns if c.startswith(
                "k_"))])
        frame = frame.with_columns(
            status=pl.when(ok).then(pl.lit("fixed")).otherwise(pl.lit("forecast")),
            known_at=pl.when(ok).then(when_known),
        )
        rows.append(frame.select("interval_start", "component", "price_ueur_per_kwh", "status", "known_at"))
    return pl.concat(rows) if rows else pl.DataFrame()


def _quarter_known(mk: pl.DataFrame, starts: pl.Series) -> pl.DataFrame:
    """When each quarter's market price became known (hourly prices cover four quarters)."""
    from kwartier.tariffs.compose import quarters_of

    q = quarters_of(mk.select("interval_start", "resolution")).join(
        mk.select("interval_start", "known_at"), on="interval_start")
    q = q.group_by("quarter").agg(pl.col("known_at").min())
    return q.rename({"quarter": "interval_start"}).filter(pl.col("interval_start").is_in(starts.implode()))


def eur(micro: int) -> Decimal:
    return Decimal(micro).scaleb(-6)


__all__ = ["NANO", "BeyondHorizon", "LatePrice", "baseline_forecast", "deadline_expr", "prices"]
