"""Forecasts of PV output, household load and day-ahead prices, each with its error measured against a naive baseline.

Pure functions over polars frames: a history (``start`` = UTC quarter start, plus a value column) and
the quarters to forecast go in, a frame ``start`` + value comes out. No clock, no database.

- :func:`forecast_pv` (``wh``): clear sky x the recent measured / clear-sky ratio (:mod:`.pv`);
- :func:`forecast_load` (``wh``): weekly profile x recent level (:mod:`.load`);
- :func:`forecast_prices` (``price_ueur_per_kwh``): per-hour regression on recent days (:mod:`.prices`);
- :mod:`.errors`: MAE, RMSE, skill, the naive baselines and the rolling-origin evaluation.
"""

from __future__ import annotations

from kwartier.forecast.errors import (
    ForecastInputError,
    Score,
    mae,
    naive_same_quarter,
    rmse,
    rolling_origin,
    score,
    skill,
)
from kwartier.forecast.load import forecast_load
from kwartier.forecast.prices import forecast_prices
from kwartier.forecast.pv import clear_sky_wh, forecast_pv

__all__ = [
    "ForecastInputError", "Score", "clear_sky_wh", "forecast_load", "forecast_prices", "forecast_pv", "mae",
    "naive_same_quarter", "rmse", "rolling_origin", "score", "skill",
]
