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


# --- the demo community's households: load shape, weather, heat pump, EV, battery ---------------------

WORKDAY, SATURDAY, SUNDAY = 0, 1, 2  # day types, as in standard load profiles (Sunday = Sunday or holiday)
EV_POWER_W = 11_000.0
EV_KWH_PER_KM = 0.18
HEATING_LIMIT_C = 15.5  # heating degree hours count below this outdoor temperature


def _bump(hour: np.ndarray, centre_h: np.ndarray | float, width_h: np.ndarray | float) -> np.ndarray:
    """A Gaussian bump over the clock hour, wrapping around midnight."""
    d = (hour - centre_h + 12.0) % 24.0 - 12.0
    return np.exp(-0.5 * (d / width_h) ** 2)


def winter_weight(day_of_year: np.ndarray) -> np.ndarray:
    """1 in mid-January, 0 in mid-July: the season as a smooth weight."""
    return 0.5 * (1.0 + np.cos(2 * np.pi * (day_of_year - 15.0) / 365.25))


def household_shape(
    local_hour: np.ndarray, day_of_year: np.ndarray, day_type: np.ndarray, peak_shift_h: float = 0.0,
    evening_gain: float = 1.0,
) -> np.ndarray:
    """Relative household demand per quarter: night base, morning and evening peaks, weekend middays.

    A parametric shape of our own (not a standard-profile table): a base with a night trough, a
    morning peak (07:15 on workdays, 09:00 at weekends), a midday plateau (higher at weekends) and
    an evening peak that is larger and earlier in winter (19:00) than in summer (20:10), times a
    seasonal factor (+/-12 %, highest in winter). ``peak_shift_h`` and ``evening_gain`` are the
    household's own variation. Dimensionless; :func:`household_demand_wh` scales it to kWh.
    """
    winter = winter_weight(day_of_year)
    weekend = day_type > WORKDAY
    h = local_hour - peak_shift_h
    shape = 0.62 - 0.10 * _bump(h, 3.5, 2.0)
    shape = shape + np.where(weekend, 0.25, 0.38) * _bump(h, np.where(weekend, 9.0, 7.3), np.where(weekend, 1.6, 1.0))
    shape = shape + np.where(weekend, 0.75, 0.42) * _bump(h, 12.8, np.where(weekend, 2.6, 3.2))
    shape = shape + evening_gain * (0.62 + 0.30 * winter) * _bump(h, 19.0 + 1.2 * (1.0 - winter), 2.3)
    return shape * (1.0 + 0.12 * (2.0 * winter - 1.0))


def _reference_year() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clock hour, day of year and day type of every quarter of a 365-day year (5 workdays a week)."""
    q = np.arange(365 * 96)
    day = q // 96
    return (q % 96) / 4.0, day + 1.0, np.select([day % 7 == 5, day % 7 == 6], [SATURDAY, SUNDAY], WORKDAY)


def household_demand_wh(
    local_hour: np.ndarray, day_of_year: np.ndarray, day_type: np.ndarray, day_index: np.ndarray,
    annual_kwh: float, rng: np.random.Generator,
) -> np.ndarray:
    """A household's consumption per quarter in Wh: :func:`household_shape` with individual variation.

    The household draws its own peak shift (sd 0.4 h) and evening gain (0.7..1.3); each day gets a
    factor (log-normal, sd 12 %) and each quarter a spiky gamma noise (mean 1). Scaled so that a
    full year would use about ``annual_kwh``. ``day_index`` numbers the local days (0, 1, ...).
    """
    shift, gain = float(rng.normal(0.0, 0.4)), float(rng.uniform(0.7, 1.3))
    ref = household_shape(*_reference_year(), peak_shift_h=shift, evening_gain=gain)
    shape = household_shape(local_hour, day_of_year, day_type, peak_shift_h=shift, evening_gain=gain)
    daily = rng.lognormal(0.0, 0.12, size=int(day_index.max()) + 1)[day_index]
    noise = rng.gamma(shape=4.0, scale=0.25, size=shape.shape)
    per_quarter_wh = annual_kwh * 1000.0 / (365 * 96)
    return np.rint(per_quarter_wh * shape / ref.mean() * daily * noise).astype(np.int64)


def daily_weather(first_day_ordinal: int, n_days: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Daily mean outdoor temperature in C and clearness (0.15..1) for ``n_days`` from a proleptic ordinal.

    The temperature is a seasonal mean for the southern Netherlands (about 3.4 C in January, 17.8 C
    in July) plus AR(1) weather anomalies (sd about 3 C, day-to-day correlation 0.75); clearness
    follows :func:`daily_cloudiness`. Both are run from 2000-01-01 with ``seed`` so that a day's
    weather does not depend on which period is asked for.
    """
    epoch = 730120  # date(2000, 1, 1).toordinal()
    if first_day_ordinal < epoch:
        raise ValueError("the synthetic weather starts on 2000-01-01")
    total = first_day_ordinal - epoch + n_days
    rng = np.random.default_rng(seed)
    shocks = rng.normal(0.0, 2.0, size=total)
    anomaly = np.empty(total)
    x = 0.0
    for i in range(total):
        x = 0.75 * x + shocks[i]
        anomaly[i] = x
    clear = daily_cloudiness(total, rng)
    days = np.arange(first_day_ordinal, first_day_ordinal + n_days)
    doy = (days - epoch) % 365.2425
    seasonal_c = 10.6 - 7.2 * np.cos(2 * np.pi * (doy - 18.0) / 365.2425)
    return seasonal_c + anomaly[-n_days:], clear[-n_days:]


def quarter_temperature_c(daily_mean_c: np.ndarray, local_hour: np.ndarray) -> np.ndarray:
    """Outdoor temperature per quarter: the day's mean plus a 3 C daily swing (coolest 05:00, warmest 15:00)."""
    return daily_mean_c - 3.0 * np.cos(2 * np.pi * (local_hour - 3.0) / 24.0)


def heating_presence(local_hour: np.ndarray, day_type: np.ndarray, away_on_workdays: bool) -> np.ndarray:
    """The share of full heating wanted: 1 at home and awake, 0.8 asleep (23-06), 0.6 away (workdays 08-17:30)."""
    asleep = (local_hour >= 23.0) | (local_hour < 6.0)
    away = away_on_workdays & (day_type == WORKDAY) & (local_hour >= 8.0) & (local_hour < 17.5)
    return np.where(asleep, 0.8, np.where(away, 0.6, 1.0))


def heat_pump_cop(temperature_c: np.ndarray) -> np.ndarray:
    """Coefficient of performance of an air-to-water heat pump: 2.44 at -7 C, 3.0 at 0 C, 3.8 at 10 C."""
    return np.clip(3.0 + 0.08 * temperature_c, 1.8, 5.0)


def heat_pump_electricity_wh(
    temperature_c: np.ndarray, presence: np.ndarray, heat_loss_w_per_k: float, max_electric_w: float = 3000.0,
) -> np.ndarray:
    """A heat pump's electricity per quarter in Wh from heating degree hours below 15.5 C and the COP.

    Heat demand (W) = ``heat_loss_w_per_k`` x (15.5 C - outdoor temperature) x presence; electricity =
    heat / COP, limited to ``max_electric_w``.
    """
    heat_w = heat_loss_w_per_k * np.clip(HEATING_LIMIT_C - temperature_c, 0.0, None) * presence
    electric_w = np.minimum(heat_w / heat_pump_cop(temperature_c), max_electric_w)
    return np.rint(electric_w * QUARTER_H).astype(np.int64)


def ev_daily_need_wh(day_type: np.ndarray, commute_km: float, rng: np.random.Generator) -> np.ndarray:
    """Energy an EV takes per day in Wh: the commute there and back on workdays, errands (0-40 km) otherwise."""
    workday_km = 2.0 * commute_km * rng.uniform(0.95, 1.25, size=day_type.shape)
    errand_km = rng.uniform(0.0, 40.0, size=day_type.shape)
    return np.where(day_type == WORKDAY, workday_km, errand_km) * EV_KWH_PER_KM * 1000.0


def ev_charging_wh(
    local_hour: np.ndarray, day_index: np.ndarray, arrival_h: np.ndarray, need_wh: np.ndarray,
    power_w: float = EV_POWER_W,
) -> np.ndarray:
    """EV charging per quarter in Wh: from the first quarter at or after each day's arrival, at ``power_w``,
    until that day's ``need_wh`` is in (a session may run past midnight until the next arrival).

    ``arrival_h`` and ``need_wh`` are per local day (indexed by ``day_index``).
    """
    session = np.where(local_hour >= arrival_h[day_index], day_index, day_index - 1)
    q = np.arange(session.size)
    starts = np.r_[True, session[1:] != session[:-1]]
    k = q - np.maximum.accumulate(np.where(starts, q, 0))  # quarters since the session started
    need = np.where(session >= 0, need_wh[np.maximum(session, 0)], 0.0)
    per_quarter = power_w * QUARTER_H
    return np.rint(np.clip(need - k * per_quarter, 0.0, per_quarter)).astype(np.int64)


def battery_self_consumption(
    load_wh: np.ndarray, pv_wh: np.ndarray, capacity_wh: float = 13_500.0, power_w: float = 5_000.0,
    efficiency: float = 0.95, initial_soc: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Import and export (Wh per quarter, both >= 0) behind a battery run for self-consumption.

    PLACEHOLDER until steering exists: charge from PV surplus, discharge to cover load, never charge
    from the grid; ``efficiency`` is one-way (charging and discharging each). Arrays are
    (households, quarters); the loop runs over quarters, vectorised over households.
    """
    net = load_wh.astype(np.float64) - pv_wh
    step_wh = power_w * QUARTER_H
    soc = np.full(net.shape[0], capacity_wh * initial_soc)
    imp, exp = np.empty_like(net), np.empty_like(net)
    for q in range(net.shape[1]):
        surplus = np.clip(-net[:, q], 0.0, None)
        charge = np.minimum(np.minimum(surplus, step_wh), (capacity_wh - soc) / efficiency)
        deficit = np.clip(net[:, q], 0.0, None)
        discharge = np.minimum(np.minimum(deficit, step_wh), soc * efficiency)
        soc = soc + charge * efficiency - discharge / efficiency
        imp[:, q] = deficit - discharge
        exp[:, q] = surplus - charge
    return np.rint(imp).astype(np.int64), np.rint(exp).astype(np.int64)
