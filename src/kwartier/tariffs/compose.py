"""Compose prices per interval: align the series a plan reads, evaluate each component's expression.

Series are carried as Int64 *nano units* (value x 10**9: nano-euros per kWh for prices, 10**-9 for
fractions), so aligning them is exact integer work. A component's price for an interval is its
expression evaluated exactly on the series values of that interval, then rounded once, half-even,
to the micro-euro per kWh (the engine's price unit). Expressions run once per distinct combination
of input values, not once per interval.

Alignment rules:
- an hourly (PT60M) series applies to each of the four quarters of its hour;
- an hourly interval reads the time-weighted mean of a 15-minute series over its four quarters
  (an hourly reading cannot be split, so its energy meets the hour's average price);
- a calendar series is 1 inside its local-time windows (and on weekends if asked), else 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from zoneinfo import ZoneInfo

import polars as pl

from kwartier.tariffs.expr import Expression
from kwartier.tariffs.plan import LoadedPlan, SeriesDecl

NANO = 10**9
UTC_DT = pl.Datetime("us", "UTC")


class MissingData(ValueError):
    """Readings or prices missing for intervals that a calculation needs."""

    def __init__(self, what: str, missing: list[datetime], tz: str):
        from kwartier.timegrid import format_local

        self.what = what
        self.missing = missing
        shown = ", ".join(format_local(t, tz) for t in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        super().__init__(f"no {what} for {len(missing)} interval(s): {shown}{more}")


def quarters_of(intervals: pl.DataFrame) -> pl.DataFrame:
    """Each interval (``interval_start``, ``resolution``) as its quarters: ``interval_start``, ``quarter``."""
    n = pl.when(pl.col("resolution") == "PT60M").then(4).otherwise(1)
    return (
        intervals.select("interval_start", n.alias("n"))
        .with_columns(k=pl.int_ranges(0, pl.col("n")))
        .explode("k")
        .select("interval_start", (pl.col("interval_start") + pl.duration(minutes=15) * pl.col("k")).alias("quarter"))
    )


def price_series_nano(prices: pl.DataFrame) -> pl.DataFrame:
    """A stored price frame (``price_ueur_per_kwh``) as quarter values in nano units: ``quarter``, ``value``."""
    q = quarters_of(prices.select("interval_start", "resolution"))
    vals = prices.select("interval_start", (pl.col("price_ueur_per_kwh") * 1000).alias("value"))
    out = q.join(vals, on="interval_start").select("quarter", "value")
    # Where an hourly and a quarter price both cover a quarter, the quarter price wins.
    if out["quarter"].is_duplicated().any():
        res = q.join(prices.select("interval_start", "resolution"), on="interval_start").select("quarter", "resolution")
        out = out.with_columns(res=res["resolution"]).sort("quarter", "res", descending=[False, True])
        out = out.unique("quarter", keep="first", maintain_order=True).drop("res")
    return out


def calendar_nano(quarters: pl.Series, decl: SeriesDecl, tz: str) -> pl.Series:
    """1 (as 10**9) in the declaration's local windows and weekends, else 0, per quarter start."""
    local = quarters.dt.convert_time_zone(tz)
    minute = local.dt.hour().cast(pl.Int32) * 60 + local.dt.minute().cast(pl.Int32)
    inside = pl.lit(False)
    for w in decl.windows:
        a, b = w.split("-")
        start = int(a[:2]) * 60 + int(a[3:])
        end = int(b[:2]) * 60 + int(b[3:])
        if start <= end:
            inside = inside | ((pl.col("m") >= start) & (pl.col("m") < end))
        else:  # wraps midnight
            inside = inside | (pl.col("m") >= start) | (pl.col("m") < end)
    if decl.weekend:
        inside = inside | (pl.col("wd") >= 6)
    frame = pl.DataFrame({"m": minute, "wd": local.dt.weekday()})
    return frame.select(pl.when(inside).then(NANO).otherwise(0).cast(pl.Int64)).to_series().alias(decl.id)


def align(intervals: pl.DataFrame, quarter_values: pl.DataFrame, name: str) -> pl.DataFrame:
    """Per interval, the time-weighted mean of ``quarter_values`` (``quarter``, ``value``) over its quarters.

    Returns ``interval_start``, ``name`` (nano units; null where any quarter has no value).
    """
    q = quarters_of(intervals).join(quarter_values, on="quarter", how="left")
    agg = q.group_by("interval_start").agg(
        pl.col("value").sum().alias("s"), pl.col("value").count().alias("have"), pl.len().alias("need")
    )
    mean = pl.when(pl.col("have") == pl.col("need")).then(pl.col("s") // pl.col("need"))
    exact = (pl.col("s") % pl.col("need")) == 0
    out = agg.select("interval_start", mean.alias(name), exact.alias("exact"))
    if not out.filter(pl.col(name).is_not_null() & ~pl.col("exact")).is_empty():
        raise ValueError(f"series {name}: an hourly mean is finer than 10**-9; give values with fewer decimals")
    return intervals.select("interval_start").join(out.drop("exact"), on="interval_start", how="left")


MEMO_LIMIT = 1_000_000  # remembered results per expression before the memo starts over


def evaluate_micro(expr: Expression, env: pl.DataFrame, constants: Mapping[str, Decimal]) -> pl.Series:
    """The expression per row of ``env`` (nano-unit columns), in micro-euros per kWh, half-even.

    Evaluated exactly once per distinct combination of the names it reads, and remembered on the
    expression (with the constants it reads) so that pricing the same market again, under another
    what-if or for another household, does not evaluate again.
    """
    names = sorted(expr.names - set(constants))
    fixed = tuple((n, constants[n]) for n in sorted(expr.names & set(constants)))
    if not names:
        return pl.repeat(_to_micro(expr.evaluate(dict(constants))), env.height, dtype=pl.Int64, eager=True)
    distinct = env.select(names).unique()
    if len(expr.memo) > MEMO_LIMIT:
        expr.memo.clear()
    values = []
    for row in distinct.iter_rows():
        key = (fixed, row)
        micro = expr.memo.get(key)
        if micro is None:
            scope = dict(constants)
            scope.update({n: Decimal(v).scaleb(-9) for n, v in zip(names, row, strict=True)})
            micro = expr.memo[key] = _to_micro(expr.evaluate(scope))
        values.append(micro)
    table = distinct.with_columns(pl.Series("__price", values, dtype=pl.Int64))
    return env.select(names).join(table, on=names, how="left", maintain_order="left")["__price"]


def _to_micro(eur_per_unit: Decimal) -> int:
    return int((eur_per_unit * 1_000_000).to_integral_value(rounding=ROUND_HALF_EVEN))


def series_env(
    plan: LoadedPlan,
    intervals: pl.DataFrame,
    market: pl.DataFrame | None,
    inputs: Mapping[str, pl.DataFrame] | None = None,
    derived: Mapping[str, pl.DataFrame] | None = None,
) -> pl.DataFrame:
    """Every series the plan reads, aligned to ``intervals``, in nano units (one column each).

    ``market`` is a stored price frame; ``inputs`` maps an input series id to a frame of
    ``interval_start``, ``resolution``, ``value`` (Decimal or decimal text, in the series' unit);
    ``derived`` maps a derived series id to ``quarter``, ``value`` in nano units.
    Raises :class:`MissingData` when a series without a default has no value for an interval.
    """
    tz = plan.plan.timezone
    env = intervals.select("interval_start", "resolution")
    used: set[str] = set()
    for c in plan.components:
        for e in [c.price, *(b for _, b in c.bands)]:
            if e is not None:
                used |= e.names
    if "market" in used:
        if market is None or market.is_empty():
            raise MissingData("day-ahead prices", intervals["interval_start"].to_list(), tz)
        env = env.join(align(intervals, price_series_nano(market), "market"), on="interval_start", how="left")
        _require(env, "market", "day-ahead prices", tz)
    quarters = quarters_of(intervals)
    for decl in plan.plan.series:
        if decl.id not in used:
            continue
        if decl.kind == "calendar":
            qv = pl.DataFrame({"quarter": quarters["quarter"], "value": calendar_nano(quarters["quarter"], decl, tz)})
        elif decl.kind == "derived":
            qv = (derived or {}).get(decl.id, pl.DataFrame(schema={"quarter": UTC_DT, "value": pl.Int64}))
        else:
            given = (inputs or {}).get(decl.id)
            qv = _input_quarters(given) if given is not None else pl.DataFrame(
                schema={"quarter": UTC_DT, "value": pl.Int64})
        col = align(intervals, qv.unique("quarter"), decl.id) if not qv.is_empty() else intervals.select(
            "interval_start", pl.lit(None, pl.Int64).alias(decl.id))
        env = env.join(col, on="interval_start", how="left")
        if decl.default is not None:
            env = env.with_columns(pl.col(decl.id).fill_null(int(decl.default * NANO)))
        _require(env, decl.id, f"values of series {decl.id!r}", tz)
    return env


def _input_quarters(frame: pl.DataFrame) -> pl.DataFrame:
    nano = [int(Decimal(str(v)) * NANO) for v in frame["value"].to_list()]
    vals = frame.select("interval_start").with_columns(pl.Series("value", nano, dtype=pl.Int64))
    return quarters_of(frame.select("interval_start", "resolution")).join(vals, on="interval_start").select(
        "quarter", "value")


def _require(env: pl.DataFrame, column: str, what: str, tz: str) -> None:
    missing = env.filter(pl.col(column).is_null())["interval_start"].to_list()
    if missing:
        raise MissingData(what, missing, tz)


def local_zone(plan: LoadedPlan) -> ZoneInfo:
    return ZoneInfo(plan.plan.timezone)
