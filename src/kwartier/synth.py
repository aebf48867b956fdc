"""Synthetic but physically shaped series: sun position, PV output, household load, day-ahead prices.

Used by the demo and the benchmarks. Every function is pure: times and a seeded
``numpy.random.Generator`` go in, arrays come out. Units are in the names.
"""

from __future__ import annotations

import numpy as np

QUARTER_H = 0.25


def _hours_since_epoch(starts_utc_s: np.ndarray) -> np.ndarray:
    return starts_utc_s.astype(np.float64) / 3600.0


def solar_elevation_sin(starts_utc_s: np.ndarray, lat_deg: float, lon_deg: float) -> np.ndarray:
    """sin(solar elevation) at the middle of each quarter (input: UTC epoch seconds of the starts).

    The usual declination and equation-of-time approximations; accurate to well under a degree,
    which is plenty for load and PV shapes.
    """
    mid_h = _hours_since_epoch(starts_utc_s) + QUARTER_H / 2
    day = mid_h / 24.0
    # Day of year, fractional (epoch 1970-01-01 was day 1 of its year).
    gamma = 2 * np.pi * ((day % 365.2422) / 365.2422)
    decl = (
        0.006918 - 0.399912 * np.cos(gamma) + 0.070257 * np.sin(gamma) - 0.006758 * np.cos(2 * gamma)
        + 0.000907 * np.sin(2 * gamma) - 0.002697 * np.cos(3 * gamma) + 0.00148 * np.sin(3 * gamma)
    )
    eot_min = 229.18 * (
        0.000075 + 0.001868 * np.cos(gamma) - 0.032077 * np.sin(gamma)
        - 0.014615 * np.cos(2 * gamma) - 0.040849 * np.sin(2 * gamma)
    )
    utc_hour = mid_h % 24.0
    solar_time_h = utc_hour + (eot_min + 4 * lon_deg) / 60.0
    hour_angle = np.deg2rad(15.0 * (solar_time_h - 12.0))
    lat = np.deg2rad(lat_deg)
    return np.sin(lat) * np.sin(decl) + np.cos(lat) * np.cos(decl) * np.cos(hour_angle)


def daily_cloudiness(n_days: int, rng: np.random.Generator) -> np.ndarray:
    """A clearness factor per day in [0.15, 1]: runs of sunny and grey days (AR(1) weather)."""
    out = np.empty(n_days)
    x = rng.uniform(0.3, 0.9)
    for i in range(n_days):
        x = 0.6 * x + 0.4 * rng.uniform(0.1, 1.0)
        out[i] = x
    return np.clip(out, 0.15, 1.0)


def pv_energy_wh(
    starts_utc_s: np.ndarray, kwp: float, clearness: np.ndarray, lat_deg: float = 51.59, lon_deg: float = 4.78
) -> np.ndarray:
    """PV energy per quarter in Wh for a ``kwp`` system; ``clearness`` is per quarter (0..1).

    Clear-sky output follows sin(elevation)^1.2 with 85 % system efficiency at 1 kW/m^2.
    Default site: Breda (51.59 N, 4.78 E).
    """
    s = np.clip(solar_elevation_sin(starts_utc_s, lat_deg, lon_deg), 0.0, None)
    power_w = kwp * 1000.0 * 0.85 * s**1.2 * clearness
    return np.rint(power_w * QUARTER_H).astype(np.int64)


def household_load_wh(
    local_hour: np.ndarray, annual_kwh: float, rng: np.random.Generator, weekend: np.ndarray | None = None
) -> np.ndarray:
    """Household consumption per quarter in Wh: base load, morning and evening peaks, noise.

    ``local_hour`` is the local clock hour (float, e.g. 7.25) of each quarter's start. The shape is
    scaled so that a full year would use about ``annual_kwh``.
    """
    morning = np.exp(-0.5 * ((local_hour - 7.5) / 1.0) ** 2)
    evening = np.exp(-0.5 * ((local_hour - 19.0) / 2.0) ** 2)
    night = (local_hour < 6) | (local_hour >= 23.5)
    shape = 0.35 + 0.8 * morning + 1.6 * evening - 0.15 * night
    if weekend is not None:
        shape = shape + 0.3 * weekend * np.exp(-0.5 * ((local_hour - 12.5) / 2.5) ** 2)
    noise = rng.gamma(shape=6.0, scale=1 / 6.0, size=shape.shape)  # mean 1, spiky
    mean_shape = 0.35 + 0.8 * 2.5 / 24 + 1.6 * 5.0 / 24 - 0.15 * 6.5 / 24
    per_quarter_wh = annual_kwh * 1000.0 / (365 * 96)
    return np.rint(per_quarter_wh * shape / mean_shape * noise).astype(np.int64)


def day_ahead_eur_per_mwh(
    local_hour: np.ndarray, solar_sin: np.ndarray, clearness: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """A day-ahead price shape in EUR/MWh, rounded to cents: evening peak, solar dip, noise.

    Sunny middays push the price down, sometimes below zero, as in the Dutch market of 2025.
    """
    evening = np.exp(-0.5 * ((local_hour - 19.0) / 1.5) ** 2)
    morning = np.exp(-0.5 * ((local_hour - 8.0) / 1.2) ** 2)
    solar = np.clip(solar_sin, 0, None) * clearness
    price = 85.0 + 60.0 * evening + 30.0 * morning - 140.0 * solar + rng.normal(0, 6.0, size=local_hour.shape)
    return np.round(price, 2)
