"""Household load: a weekly profile (same local quarter of the week, last N weeks) scaled to the recent level.

For a target day the profile is the mean, per local quarter-of-day, of the last :data:`WEEKS`
complete days of the history that fall on the same weekday. It is then multiplied by the recent
level, ``(mean of the last LEVEL_DAYS days / mean of the profile window) ** LEVEL_WEIGHT``: a damped
ratio, because a household's last two weeks say something about the next day (holidays, a cold
spell), but not everything. All days are local calendar days (92, 96 or 100 quarters).

Households differ: some live by the week (office days, the Saturday wash), others by the season
(electric heating follows last week's weather more than last month's Mondays). So the forecast is
``(1 - b) x weekly profile x level + b x mean of the last RECENT_DAYS days``, with the share ``b``
picked from :data:`BLEND_SHARES` by the smallest absolute error that each choice would have had over
the last :data:`VALIDATION_DAYS` days of the history (each of those days forecast from the days
before it only). On the NL households with a strong weekly rhythm ``b`` stays near 0.

Why the mean and not the median: 15-minute household load is spiky (a kettle, an oven), so a median
profile scores a much lower MAE but underestimates the energy of the day by a fifth or more, which
would mislead a battery or heat-pump plan. The mean is unbiased; its skill is reported in the README.
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

WH = "wh"
WEEKS = 8  # same-weekday days in the profile
LEVEL_DAYS = 14  # days that set the recent level
LEVEL_WEIGHT = 0.5  # exponent damping the level ratio (0 = no scaling, 1 = full scaling)
FALLBACK_DAYS = 14  # without a same-weekday day: the mean of the last this many complete days
RECENT_DAYS = 7  # the "recent days" component: mean of the last this many complete days
BLEND_SHARES = (0.0, 0.25, 0.5, 0.75, 1.0)  # candidate shares of the recent-days component
VALIDATION_DAYS = 56  # days of history on which the share is chosen
MIN_BEFORE = 14  # complete days a validation day needs before it


def _complete_rows(values: np.ndarray) -> np.ndarray:
    """Indices of day rows without a missing quarter."""
    return np.flatnonzero(~np.isnan(values).any(axis=1))


def weekly_profile(m: np.ndarray, complete: np.ndarray, first_day: int, day: int, weeks: int = WEEKS) -> np.ndarray:
    """Mean per quarter-of-day of the last ``weeks`` complete rows of ``m`` on ``day``'s weekday (Wh).

    Only rows before ``day`` count. Falls back to the mean of the last :data:`FALLBACK_DAYS` complete
    rows when no row has that weekday.
    """
    before = complete[complete < day - first_day]
    same = before[weekday(first_day + before) == weekday(day)][-weeks:]
    rows = same if same.size else before[-FALLBACK_DAYS:]
    if rows.size == 0:
        raise ForecastInputError("no complete day of load history before the forecast")
    return m[rows].mean(axis=0)


def recent_level(m: np.ndarray, complete: np.ndarray, weeks: int = WEEKS, level_days: int = LEVEL_DAYS,
                 weight: float = LEVEL_WEIGHT) -> float:
    """The damped ratio of the last ``level_days`` complete days' mean to the profile window's mean."""
    if complete.size == 0:
        return 1.0
    window = complete[complete > complete[-1] - 7 * weeks]
    recent = complete[complete > complete[-1] - level_days]
    base = float(m[window].mean())
    if base <= 0:
        return 1.0
    return float(m[recent].mean() / base) ** weight


def components(m: np.ndarray, complete: np.ndarray, first_day: int, day: int, weeks: int = WEEKS,
               level_days: int = LEVEL_DAYS, level_weight: float = LEVEL_WEIGHT) -> tuple[np.ndarray, np.ndarray]:
    """For local day ``day``, from the complete rows before it: (weekly profile x level, recent-days mean), Wh."""
    before = complete[complete < day - first_day]
    weekly = weekly_profile(m, before, first_day, day, weeks) * recent_level(m, before, weeks, level_days, level_weight)
    return weekly, m[before[-RECENT_DAYS:]].mean(axis=0)


def blend_share(m: np.ndarray, complete: np.ndarray, first_day: int, **params: float) -> float:
    """The share of the recent-days component with the least absolute error over the last validation days."""
    last = complete[-1] if complete.size else 0
    days = [int(i) for k, i in enumerate(complete) if i > last - VALIDATION_DAYS and k >= MIN_BEFORE]
    if not days:
        return 0.0
    errors = np.zeros(len(BLEND_SHARES))
    for i in days:
        weekly, recent = components(m, complete, first_day, first_day + i, **params)  # type: ignore[arg-type]
        for j, b in enumerate(BLEND_SHARES):
            errors[j] += np.abs((1.0 - b) * weekly + b * recent - m[i]).sum()
    return BLEND_SHARES[int(np.argmin(errors))]


def forecast_load(history: pl.DataFrame, starts: pl.Series, tz: str = "Europe/Amsterdam", *, weeks: int = WEEKS,
                  level_days: int = LEVEL_DAYS, level_weight: float = LEVEL_WEIGHT) -> pl.DataFrame:
    """Forecast household consumption for the quarters ``starts``.

    Parameters
    ----------
    history : frame ``start`` (or ``interval_start``; UTC quarter starts) and ``wh`` (Wh per quarter, >= 0).
    starts : UTC quarter starts to forecast, after the history (any horizon: each day uses the
        latest same-weekday days before it that the history has).
    tz : local time zone of the household (its days and clock).

    Returns
    -------
    frame ``start``, ``wh`` (Int64, Wh per quarter, >= 0), one row per asked start, in order.
    """
    s = target_starts(starts)
    if s.is_empty():
        return pl.DataFrame({"start": s, WH: pl.Series([], dtype=pl.Int64)})
    grid = day_grid(history, WH, tz)
    m = fill_within_days(grid.values)
    complete = _complete_rows(m)
    if complete.size == 0:
        raise ForecastInputError("no complete day of load history: cannot forecast load")
    params = {"weeks": weeks, "level_days": level_days, "level_weight": level_weight}
    share = blend_share(m, complete, grid.first_day, **params)
    days, _ = day_and_slot(s, tz)
    first = int(days.min())
    predicted = np.full((int(days.max()) - first + 1, SLOTS), np.nan)
    for d in np.unique(days):  # a day after the history sees all of it; a day inside it, the days before it
        weekly, recent = components(m, complete, grid.first_day, int(d), **params)  # type: ignore[arg-type]
        predicted[d - first] = np.maximum((1.0 - share) * weekly + share * recent, 0.0)
    return frame_from_grid(s, DayGrid(first, predicted), WH, tz, pl.Int64())


__all__ = ["WH", "blend_share", "components", "forecast_load", "recent_level", "weekly_profile"]
