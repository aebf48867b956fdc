"""Day-ahead prices beyond the published horizon: a per-hour regression on recent days (least squares).

The model is a small "expert" autoregression of the kind used in the price-forecasting literature,
fitted afresh on every call from the history passed in (no state, no clock). For a target local day
``T`` and quarter ``q`` it predicts the price from:

- the prices of the same quarter on ``T-1``, ``T-2`` and ``T-7`` (yesterday, the day before, last week);
- yesterday's mean, minimum and maximum and its last quarter (the level the market left off at);
- dummies for Saturday, Sunday and Monday (weekend and the Monday ramp), and an intercept.

One set of coefficients per local clock hour (24 small least-squares fits, its 4 quarters pooled),
with a light ridge penalty, over the last :data:`TRAIN_DAYS` days. Prices are fitted in a
variance-stabilised scale, ``asinh((p - median) / MAD)``, so that a -500 EUR/MWh hour does not
swing the coefficients; predictions are clipped to the training range in that scale (plus a margin)
before transforming back. Days further ahead than one day past the history are forecast recursively
(a forecast day serves as "yesterday" for the next).

With less than :data:`MIN_TRAIN_DAYS` usable training days the forecast falls back to the seasonal
profile: the mean of the same local quarter over the last 7 known days (what
:func:`kwartier.tariffs.lifecycle.baseline_forecast` does).

Measured on NL day-ahead prices (see the README and ``benchmarks/forecast_bench.py``), this beats
both the "same quarter yesterday" naive forecast and the 7-day seasonal baseline.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from kwartier.forecast.errors import (
    SLOTS,
    DayGrid,
    ForecastInputError,
    day_and_slot,
    day_grid,
    fill_within_days,
    frame_from_grid,
    target_starts,
    weekday,
)

PRICE = "price_ueur_per_kwh"
TRAIN_DAYS = 112  # 16 weeks of training days
MIN_TRAIN_DAYS = 14
RIDGE = 50.0  # ridge penalty in the transformed scale, on every coefficient but the intercept
CLIP_MARGIN = 0.5  # allowed overshoot of the training range, in the transformed scale
SEASONAL_DAYS = 7
LAGS = (1, 2, 7)


def day_features(m: np.ndarray, i: int, wd: int) -> np.ndarray:
    """The regressors of day row ``i`` of the (filled) price matrix ``m``: a (96, 11) matrix, one row per quarter."""
    y1, y2, y7 = (m[i - k] for k in LAGS)
    one = np.ones(SLOTS)
    return np.column_stack([
        one, y1, y2, y7,
        one * y1.mean(), one * y1.min(), one * y1.max(), one * y1[-1],
        one * (wd == 5), one * (wd == 6), one * (wd == 0),
    ])


TRANSFORMED = slice(1, 8)  # the feature columns that are prices (transformed like the target)
#: The coefficients the ridge penalty pulls towards: a seasonal average of the three lag days. With no
#: evidence against it the fit keeps the quarter-by-quarter shape of recent days (a penalty towards 0
#: would flatten the four quarters of an hour towards their mean).
PRIOR = np.array([0.0, 0.4, 0.2, 0.4, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])


def _complete(m: np.ndarray, i: int) -> bool:
    return 0 <= i < m.shape[0] and not np.isnan(m[i]).any()


def _scale(train: np.ndarray) -> tuple[float, float]:
    """Median and MAD (scaled to a normal sigma, at least 1 micro-euro) of the training prices."""
    v = train[~np.isnan(train)]
    med = float(np.median(v))
    return med, float(np.median(np.abs(v - med))) * 1.4826 + 1.0


def _fit_hourly(x: np.ndarray, y: np.ndarray, slot: np.ndarray, ridge: float) -> np.ndarray:
    """Ridge least-squares coefficients per local hour, shrunk towards :data:`PRIOR`: a (24, n_features) array."""
    k = x.shape[1]
    penalty = ridge * np.eye(k)
    penalty[0, 0] = 0.0
    betas = np.zeros((24, k))
    for h in range(24):
        rows = (slot // 4) == h
        xh, yh = x[rows], y[rows]
        betas[h] = np.linalg.lstsq(xh.T @ xh + penalty, xh.T @ yh + penalty @ PRIOR, rcond=None)[0]
    return betas


def _train_rows(m: np.ndarray, last: int, train_days: int) -> list[int]:
    """Day rows up to ``last`` whose target and lag days are all complete."""
    return [i for i in range(max(max(LAGS), last - train_days + 1), last + 1)
            if all(_complete(m, i - k) for k in (0, *LAGS))]


def _seasonal(m: np.ndarray, before: int) -> np.ndarray:
    """Mean of the same quarter over the last :data:`SEASONAL_DAYS` complete days before row ``before``."""
    rows = [i for i in range(before - 1, -1, -1) if _complete(m, i)][:SEASONAL_DAYS]
    if not rows:
        raise ForecastInputError("no complete day of price history before the forecast")
    return m[rows].mean(axis=0)


def quarter_prices(history: pl.DataFrame) -> pl.DataFrame:
    """A stored price frame with ``resolution`` as one row per quarter: an hourly (PT60M) price holds for
    its four quarters. Frames without ``resolution`` are returned as they are."""
    if "resolution" not in history.columns:
        return history
    start = "interval_start" if "interval_start" in history.columns else "start"
    n = pl.when(pl.col("resolution") == "PT60M").then(4).otherwise(1)
    return (history.select(pl.col(start).alias("start"), pl.col(PRICE), pl.int_ranges(0, n).alias("k"))
            .explode("k")
            .select((pl.col("start") + pl.duration(minutes=15) * pl.col("k")).alias("start"), PRICE))


def forecast_prices(history: pl.DataFrame, starts: pl.Series, tz: str = "Europe/Amsterdam", *,
                    train_days: int = TRAIN_DAYS, ridge: float = RIDGE) -> pl.DataFrame:
    """Forecast day-ahead prices for the quarters ``starts`` from the price ``history``.

    Parameters
    ----------
    history : frame with ``start`` (or ``interval_start``; UTC quarter starts) and ``price_ueur_per_kwh``
        (micro-euro/kWh), one row per quarter; or a stored price frame with ``resolution``, whose
        hourly prices count for their four quarters.
    starts : UTC quarter starts to forecast (any days; usually those after the last published day).
    tz : the market's local time zone (days, weekdays and clock hours are local).

    Returns
    -------
    frame ``start``, ``price_ueur_per_kwh`` (Int64, micro-euro/kWh), one row per asked start, in order.
    """
    s = target_starts(starts)
    if s.is_empty():
        return pl.DataFrame({"start": s, PRICE: pl.Series([], dtype=pl.Int64)})
    grid = day_grid(quarter_prices(history), PRICE, tz)
    if grid.n_days == 0:
        raise ForecastInputError("no price history: cannot forecast prices")
    days, _ = day_and_slot(s, tz)
    first, last_target = grid.first_day, int(days.max())
    n = max(grid.n_days, last_target - first + 1)
    m = np.full((n, SLOTS), np.nan)
    m[: grid.n_days] = fill_within_days(grid.values)
    known = [i for i in range(grid.n_days) if _complete(m, i)]
    if not known:
        raise ForecastInputError("no complete day of price history: cannot forecast prices")

    rows = _train_rows(m, known[-1], train_days)
    model = None
    if len(rows) >= MIN_TRAIN_DAYS:
        med, mad = _scale(m[rows])
        x = np.concatenate([day_features(m, i, int(weekday(first + i))) for i in rows])
        x[:, TRANSFORMED] = np.arcsinh((x[:, TRANSFORMED] - med) / mad)
        y = np.arcsinh((np.concatenate([m[i] for i in rows]) - med) / mad)
        betas = _fit_hourly(x, y, np.tile(np.arange(SLOTS), len(rows)), ridge)
        model = (betas, med, mad, float(y.min()) - CLIP_MARGIN, float(y.max()) + CLIP_MARGIN)

    wanted = set((days - first).tolist())
    predicted = np.full((n, SLOTS), np.nan)
    for i in range(max(0, min(wanted)), n):
        if i not in wanted and _complete(m, i):
            continue
        pred = _predict_day(m, i, first, model)
        predicted[i] = pred
        if not _complete(m, i):
            m[i] = pred  # serves as a lag for the days after it
    return frame_from_grid(s, DayGrid(first, predicted), PRICE, tz, pl.Int64())


def _predict_day(m: np.ndarray, i: int, first: int, model: tuple | None) -> np.ndarray:
    """One day row of predictions (micro-euro/kWh); the seasonal profile when a lag day or the model is missing."""
    if model is None or not all(_complete(m, i - k) for k in LAGS):
        return _seasonal(m, i)
    betas, med, mad, lo, hi = model
    x = day_features(m, i, int(weekday(first + i)))
    x[:, TRANSFORMED] = np.arcsinh((x[:, TRANSFORMED] - med) / mad)
    z = np.einsum("qk,qk->q", x, betas[np.arange(SLOTS) // 4])
    return np.sinh(np.clip(z, lo, hi)) * mad + med


__all__ = ["PRICE", "TRAIN_DAYS", "day_features", "forecast_prices", "quarter_prices"]
