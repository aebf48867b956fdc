"""Price use cases: read stored market prices (with when they became known) and a plan's day of prices."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import polars as pl
from sqlalchemy import Engine, select

from kwartier.store import schema
from kwartier.store.versions import epoch_us
from kwartier.tariffs.lifecycle import prices
from kwartier.tariffs.plan import LoadedPlan
from kwartier.timegrid import local_period_bounds


def stored_prices(engine: Engine, zone: str, start: datetime, end: datetime) -> pl.DataFrame:
    """Current stored prices of ``zone`` with ``known_at``, for interval starts in [start, end)."""
    t = schema.prices
    with engine.connect() as conn:
        rows = conn.execute(
            select(epoch_us(conn, t.c.interval_start), t.c.resolution, t.c.price_ueur_per_kwh,
                   epoch_us(conn, t.c.known_at))
            .where(t.c.zone == zone, t.c.is_current.is_(True), t.c.interval_start >= start,
                   t.c.interval_start < end)
            .order_by(t.c.interval_start)
        ).all()
    cols = list(zip(*rows, strict=True)) if rows else [[], [], [], []]
    frame = pl.DataFrame({"interval_start": cols[0], "resolution": cols[1], "price_ueur_per_kwh": cols[2],
                          "known_at": cols[3]},
                         schema={"interval_start": pl.Int64, "resolution": pl.String, "price_ueur_per_kwh": pl.Int64,
                                 "known_at": pl.Int64})
    return frame.with_columns(
        pl.from_epoch(c, time_unit="us").dt.replace_time_zone("UTC") for c in ("interval_start", "known_at"))


def day_prices(engine: Engine, plan: LoadedPlan, zone: str, day: date, known_at: datetime) -> pl.DataFrame:
    """The plan's energy prices for every quarter of the local ``day``, as known at ``known_at``.

    Reads the last 8 days of stored market prices before the day too, for the forecast baseline.
    """
    start, end = local_period_bounds(day, day + timedelta(days=1), plan.plan.timezone)
    market = stored_prices(engine, zone, start - timedelta(days=8), end)
    return prices(plan, market, start, end, known_at)
