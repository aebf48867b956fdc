"""PV output: the clear-sky curve of the site, scaled by the measured-to-clear-sky ratio of recent days.

The clear-sky energy per quarter comes from :func:`kwartier.synth.pv_energy_wh` (sun position and
the sin(elevation)^1.2 clear-sky shape), for 1 kWp: the system size, orientation and shading are not
needed, because the measured history tells them. The forecast for a quarter ``q`` of the day is::

    clear_sky(q) x site_shape(q) x (w x ratio(last RECENT_DAYS days) + (1 - w) x ratio(last SITE_DAYS days))

- ``ratio(days)`` is measured energy / clear-sky energy over those days (the system size and the
  weather of those days);
- ``site_shape(q)`` is the per-quarter ratio over the last :data:`SITE_DAYS` days divided by the
  overall ratio: it carries what the clear-sky curve does not know (panels facing east or west, a
  tree in the afternoon), shrunk towards 1 where the clear sky gives little energy (dawn, dusk);
- blending the recent ratio with the month's (``w`` = :data:`RECENT_WEIGHT`) keeps tomorrow from
  simply copying today's weather, which is what the naive "yesterday" forecast does.

Days are UTC days and quarters are UTC quarters: the sun keeps solar time, not the clock, so DST has
no effect on the grid. Missing quarters (a logger that stores nothing at night) are left out of both
sides of every ratio.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from kwartier.forecast.errors import SLOTS, ForecastInputError, day_and_slot, day_grid, target_starts
from kwartier.synth import pv_energy_wh

WH = "wh"
RECENT_DAYS = 3
SITE_DAYS = 28
RECENT_WEIGHT = 0.5
SHRINK = 0.05  # weight of the prior "shape 1" per quarter, as a share of the largest clear-sky sum
_KWP_SCALE = 1000.0  # pv_energy_wh rounds to whole Wh: ask for 1000 kWp and divide, to keep mWh


def clear_sky_wh(starts: pl.Series, lat: float, lon: float) -> np.ndarray:
    """Clear-sky PV energy per quarter (Wh, float) of a 1 kWp system at (``lat``, ``lon``) degrees."""
    s = target_starts(starts)
    epoch_s = s.dt.epoch("s").to_numpy()
    return pv_energy_wh(epoch_s, _KWP_SCALE, np.ones(s.len()), lat, lon) / _KWP_SCALE


def _day_starts(first_day: int, n_days: int) -> pl.Series:
    """The UTC quarter starts of ``n_days`` whole UTC days from day number ``first_day``."""
    epoch_s = (np.arange(first_day * SLOTS, (first_day + n_days) * SLOTS, dtype=np.int64) * 900)
    return pl.Series("start", epoch_s * 1_000_000).cast(pl.Datetime("us", "UTC"))


def ratio(measured: np.ndarray, clear: np.ndarray) -> float:
    """Measured / clear-sky energy over the cells where a measurement exists (0 without clear-sky energy)."""
    ok = ~np.isnan(measured)
    cs = float(clear[ok].sum())
    return float(measured[ok].sum()) / cs if cs > 0 else 0.0


def site_shape(measured: np.ndarray, clear: np.ndarray, overall: float) -> np.ndarray:
    """Per quarter-of-day: that quarter's ratio over the days, divided by ``overall``, shrunk towards 1."""
    if overall <= 0:
        return np.ones(measured.shape[1])
    ok = ~np.isnan(measured)
    m = np.where(ok, measured, 0.0).sum(axis=0)
    c = np.where(ok, clear, 0.0).sum(axis=0)
    prior = SHRINK * float(c.max())
    if prior <= 0:
        return np.ones(measured.shape[1])
    return (m + prior * overall) / (c + prior) / overall


def forecast_pv(history: pl.DataFrame, starts: pl.Series, *, lat: float, lon: float,
                recent_days: int = RECENT_DAYS, site_days: int = SITE_DAYS,
                recent_weight: float = RECENT_WEIGHT) -> pl.DataFrame:
    """Forecast PV energy for the quarters ``starts`` from measured PV ``history`` at (``lat``, ``lon``).

    Parameters
    ----------
    history : frame ``start`` (or ``interval_start``; UTC quarter starts) and ``wh`` (measured PV
        energy, Wh per quarter, >= 0). The last ``site_days`` days are used; gaps are allowed.
    starts : UTC quarter starts to forecast (usually after the history; any horizon).
    lat, lon : site latitude and longitude in degrees (north, east positive).

    Returns
    -------
    frame ``start``, ``wh`` (Int64, Wh per quarter, >= 0), one row per asked start, in order.
    """
    s = target_starts(starts)
    if s.is_empty():
        return pl.DataFrame({"start": s, WH: pl.Series([], dtype=pl.Int64)})
    grid = day_grid(history, WH, "UTC")
    measured_days = np.flatnonzero(~np.isnan(grid.values).all(axis=1))
    if measured_days.size == 0:
        raise ForecastInputError("no PV history: cannot forecast PV")
    last = int(measured_days[-1])
    lo = max(0, last - site_days + 1)
    measured = grid.values[lo: last + 1]
    clear = clear_sky_wh(_day_starts(grid.first_day + lo, last - lo + 1), lat, lon).reshape(-1, SLOTS)
    overall = ratio(measured, clear)
    recent = ratio(measured[-recent_days:], clear[-recent_days:])
    shape = site_shape(measured, clear, overall)
    weather = recent_weight * recent + (1.0 - recent_weight) * overall
    _, slot = day_and_slot(s, "UTC")
    wh = np.maximum(clear_sky_wh(s, lat, lon) * shape[slot] * weather, 0.0)
    return pl.DataFrame({"start": s, WH: pl.Series(np.rint(wh), dtype=pl.Float64).cast(pl.Int64)})


__all__ = ["WH", "clear_sky_wh", "forecast_pv", "ratio", "site_shape"]
