"""Forecast error: MAE, RMSE and skill, the naive baselines, and a rolling-origin evaluation.

Everything here works on the *local day x quarter-of-day* grid: a series (UTC quarter starts) is
placed in a matrix with one row per local calendar day and 96 columns, one per local clock quarter
(``hour * 4 + minute // 15``). A 100-quarter autumn day puts the two 02:00-02:45 quarters in the same
columns (averaged); a 92-quarter spring day leaves columns 8-11 empty (NaN). Looking a value up for
a target quarter goes the other way, so a forecast always has exactly the quarters it was asked for.

The naive baselines are "the same quarter ``lag_days`` ago": yesterday (``lag_days=1``) or last week
(``lag_days=7``). Pass ``tz="UTC"`` for PV, where the sun and not the clock sets the pattern.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import polars as pl

from kwartier.timegrid import local_day_bounds

SLOTS = 96  # quarters in a 24-hour local day
UTC_DT = pl.Datetime("us", "UTC")
EPOCH = date(1970, 1, 1)

#: A forecaster: (history frame ``start`` + value column, target starts) -> frame ``start`` + value column.
Forecaster = Callable[[pl.DataFrame, pl.Series], pl.DataFrame]


class ForecastInputError(ValueError):
    """A history or target series a forecast cannot use (wrong columns, times not on the UTC grid)."""


# --- the local day x quarter grid -------------------------------------------------------------------------


def history_frame(history: pl.DataFrame, value: str) -> pl.DataFrame:
    """``history`` reduced to ``start`` (UTC) and ``value``, sorted, nulls dropped.

    Accepts ``interval_start`` for ``start`` (the ingest and store frames use that name).
    """
    frame = history
    if "start" not in frame.columns and "interval_start" in frame.columns:
        frame = frame.rename({"interval_start": "start"})
    if "resolution" in frame.columns and (frame["resolution"] != "PT15M").any():
        raise ForecastInputError(f"history has {frame['resolution'].filter(frame['resolution'] != 'PT15M')[0]} "
                                 f"rows: give one {value} value per quarter")
    missing = [c for c in ("start", value) if c not in frame.columns]
    if missing:
        raise ForecastInputError(f"history needs columns start and {value}; missing {', '.join(missing)} "
                                 f"(has {', '.join(frame.columns) or 'none'})")
    dtype = frame.schema["start"]
    if not isinstance(dtype, pl.Datetime) or dtype.time_zone is None:
        raise ForecastInputError(f"history column start must be a tz-aware datetime (UTC), got {dtype}")
    return (frame.select(pl.col("start").dt.convert_time_zone("UTC").dt.cast_time_unit("us"),
                         pl.col(value).cast(pl.Float64))
            .drop_nulls().filter(pl.col(value).is_not_nan()).sort("start"))


def target_starts(starts: pl.Series) -> pl.Series:
    """``starts`` as a UTC ``Datetime(us)`` series named ``start``; refuses naive times."""
    dtype = starts.dtype
    if not isinstance(dtype, pl.Datetime) or dtype.time_zone is None:
        raise ForecastInputError(f"target starts must be tz-aware datetimes (UTC), got {dtype}")
    return starts.dt.convert_time_zone("UTC").dt.cast_time_unit("us").alias("start")


def day_and_slot(starts: pl.Series, tz: str) -> tuple[np.ndarray, np.ndarray]:
    """Local day number (days since 1970-01-01) and quarter-of-day column (0..95) of each UTC start."""
    local = starts.dt.convert_time_zone(tz)
    day = local.dt.date().cast(pl.Int32).to_numpy().astype(np.int64)
    slot = (local.dt.hour().cast(pl.Int64) * 4 + local.dt.minute().cast(pl.Int64) // 15).to_numpy()
    return day, slot


def weekday(day: np.ndarray | int) -> np.ndarray:
    """ISO weekday index, Monday = 0 .. Sunday = 6, of a day number (days since 1970-01-01, a Thursday)."""
    return (np.asarray(day) + 3) % 7


@dataclass(frozen=True)
class DayGrid:
    """A series as a matrix: row ``i`` is local day ``first_day + i`` (days since 1970), 96 columns, NaN = none."""

    first_day: int
    values: np.ndarray

    @property
    def n_days(self) -> int:
        return int(self.values.shape[0])

    def row(self, day: int) -> np.ndarray:
        """The 96 values of local day ``day`` (all NaN outside the grid)."""
        i = day - self.first_day
        if 0 <= i < self.n_days:
            return self.values[i]
        return np.full(SLOTS, np.nan)

    def lookup(self, day: np.ndarray, slot: np.ndarray) -> np.ndarray:
        """Values at (day, slot) pairs; NaN where the grid has none."""
        i = day - self.first_day
        inside = (i >= 0) & (i < self.n_days)
        out = np.full(day.shape, np.nan)
        out[inside] = self.values[i[inside], slot[inside]]
        return out


def day_grid(history: pl.DataFrame, value: str, tz: str) -> DayGrid:
    """Place ``history`` (``start``, ``value``; see :func:`history_frame`) on the local day x quarter grid.

    The grid runs from the first to the last local day with data; values of the same cell (the
    repeated autumn hour) are averaged.
    """
    frame = history_frame(history, value)
    if frame.is_empty():
        return DayGrid(0, np.full((0, SLOTS), np.nan))
    day, slot = day_and_slot(frame["start"], tz)
    first = int(day.min())
    n = int(day.max()) - first + 1
    sums = np.zeros((n, SLOTS))
    counts = np.zeros((n, SLOTS))
    np.add.at(sums, (day - first, slot), frame[value].to_numpy())
    np.add.at(counts, (day - first, slot), 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        values = np.where(counts > 0, sums / np.maximum(counts, 1.0), np.nan)
    return DayGrid(first, values)


def fill_within_days(values: np.ndarray, min_present: int = 48) -> np.ndarray:
    """Fill empty cells of each day row by linear interpolation along the day (edges: nearest value).

    Rows with fewer than ``min_present`` values stay as they are (a day mostly missing is not guessed).
    Used for the spring-forward hole (columns 8-11) and short gaps, so a feature is never NaN by DST.
    """
    out = values.copy()
    x = np.arange(values.shape[1])
    for i, row in enumerate(values):
        ok = ~np.isnan(row)
        if ok.sum() >= min_present and not ok.all():
            out[i] = np.interp(x, x[ok], row[ok])
    return out


def frame_from_grid(starts: pl.Series, predicted: DayGrid, value: str, tz: str, dtype: pl.DataType) -> pl.DataFrame:
    """The frame ``start`` + ``value`` for ``starts``, read from a grid of predictions (rounded to ints)."""
    s = target_starts(starts)
    day, slot = day_and_slot(s, tz)
    vals = predicted.lookup(day, slot)
    col = pl.Series(value, vals, dtype=pl.Float64).fill_nan(None)
    if dtype.is_integer():
        col = col.round(0).cast(dtype)
    return pl.DataFrame({"start": s, value: col})


# --- the naive baselines ----------------------------------------------------------------------------------


def naive_same_quarter(history: pl.DataFrame, starts: pl.Series, *, value: str, lag_days: int = 1,
                       tz: str = "Europe/Amsterdam") -> pl.DataFrame:
    """The naive forecast: each target quarter gets the value of the same local quarter ``lag_days`` earlier.

    ``lag_days=1`` is "yesterday", ``7`` is "same quarter last week". Null where history has no value.
    With ``tz="UTC"`` the lag is exactly ``lag_days * 24`` hours (right for PV across DST).
    """
    s = target_starts(starts)
    day, slot = day_and_slot(s, tz)
    grid = day_grid(history, value, tz)
    vals = grid.lookup(day - lag_days, slot)
    return pl.DataFrame({"start": s, value: pl.Series(vals).fill_nan(None)})


def naive(value: str, lag_days: int, tz: str) -> Forecaster:
    """:func:`naive_same_quarter` as a forecaster for :func:`rolling_origin`."""
    return lambda history, starts: naive_same_quarter(history, starts, value=value, lag_days=lag_days, tz=tz)


# --- metrics ----------------------------------------------------------------------------------------------


def _pair(actual: np.ndarray | Sequence[float], forecast: np.ndarray | Sequence[float]) -> np.ndarray:
    a = np.asarray(actual, dtype=np.float64)
    f = np.asarray(forecast, dtype=np.float64)
    if a.shape != f.shape:
        raise ForecastInputError(f"actual and forecast differ in length: {a.shape} vs {f.shape}")
    if a.size == 0:
        raise ForecastInputError("no values to score")
    return f - a


def mae(actual: np.ndarray | Sequence[float], forecast: np.ndarray | Sequence[float]) -> float:
    """Mean absolute error, in the unit of the series."""
    return float(np.mean(np.abs(_pair(actual, forecast))))


def rmse(actual: np.ndarray | Sequence[float], forecast: np.ndarray | Sequence[float]) -> float:
    """Root mean squared error, in the unit of the series."""
    return float(np.sqrt(np.mean(_pair(actual, forecast) ** 2)))


def skill(model_error: float, naive_error: float) -> float:
    """Skill score ``1 - model / naive``: 0 = as good as the naive baseline, 1 = perfect, < 0 = worse."""
    if naive_error <= 0:
        raise ForecastInputError("the naive baseline has no error: skill is undefined")
    return 1.0 - model_error / naive_error


# --- rolling-origin evaluation ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Score:
    """A forecast's error over a rolling-origin evaluation, with the naive baseline's on the same quarters."""

    days: int
    quarters: int
    mae: float
    rmse: float
    naive_mae: float
    naive_rmse: float

    @property
    def skill(self) -> float:
        """MAE skill against the naive baseline."""
        return skill(self.mae, self.naive_mae)

    @property
    def rmse_skill(self) -> float:
        return skill(self.rmse, self.naive_rmse)


def rolling_origin(series: pl.DataFrame, forecaster: Forecaster, baseline: Forecaster, days: Sequence[date], *,
                   value: str, tz: str = "Europe/Amsterdam", history_days: int = 63) -> pl.DataFrame:
    """Forecast each local day of ``days`` from the ``history_days`` days before its local midnight.

    The origin is the local midnight that starts the day; nothing at or after it is visible to the
    forecaster. Returns ``start``, ``actual``, ``forecast``, ``naive`` for every quarter of those days
    that has an actual value (forecast or naive may be null: :func:`score` skips those quarters).
    """
    full = history_frame(series, value)
    out = []
    for d in days:
        origin, end = local_day_bounds(d, tz)
        hist = full.filter(pl.col("start").is_between(origin - timedelta(days=history_days), origin, closed="left"))
        actual = full.filter(pl.col("start").is_between(origin, end, closed="left"))
        if actual.is_empty():
            continue
        starts = pl.datetime_range(origin, end - timedelta(minutes=15), timedelta(minutes=15), eager=True,
                                   time_unit="us", time_zone="UTC").alias("start")
        fc = forecaster(hist, starts).select("start", pl.col(value).cast(pl.Float64).alias("forecast"))
        nv = baseline(hist, starts).select("start", pl.col(value).cast(pl.Float64).alias("naive"))
        if fc.height != starts.len():
            raise ForecastInputError(f"forecaster returned {fc.height} quarters for {d} ({starts.len()} asked)")
        out.append(actual.rename({value: "actual"}).join(fc, on="start", how="left").join(nv, on="start",
                                                                                           how="left"))
    if not out:
        return pl.DataFrame(schema={"start": UTC_DT, "actual": pl.Float64, "forecast": pl.Float64,
                                    "naive": pl.Float64})
    return pl.concat(out)


def score(evaluated: pl.DataFrame, tz: str = "Europe/Amsterdam") -> Score:
    """MAE and RMSE of forecast and naive over the quarters where actual, forecast and naive all exist."""
    ok = evaluated.drop_nulls(["actual", "forecast", "naive"])
    if ok.is_empty():
        raise ForecastInputError("no quarter has an actual value, a forecast and a naive forecast")
    a, f, n = (ok[c].to_numpy() for c in ("actual", "forecast", "naive"))
    days = ok["start"].dt.convert_time_zone(tz).dt.date().n_unique()
    return Score(days=days, quarters=ok.height, mae=mae(a, f), rmse=rmse(a, f), naive_mae=mae(a, n),
                 naive_rmse=rmse(a, n))


def local_days(first: date, last: date) -> list[date]:
    """Every calendar date from ``first`` to ``last`` inclusive."""
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


__all__ = [
    "SLOTS", "DayGrid", "ForecastInputError", "Forecaster", "Score", "day_and_slot", "day_grid",
    "fill_within_days", "frame_from_grid", "history_frame", "local_days", "mae", "naive", "naive_same_quarter",
    "rmse", "rolling_origin", "score", "skill", "target_starts", "weekday",
]
