"""Device models for steering: the device TOML file (battery, EV, heat pump, appliances, series, connection).

One pydantic schema is the file format and the validation. Units are in every field name: kW for
power, kWh for energy, degrees Celsius, hours. Times are ISO 8601 with an offset (TOML datetimes).

A *series* (``[base_load]``, ``[pv]``, ``[outdoor_temperature]``) is one of:
``value = 0.4`` (constant), ``values = [...]`` (one value per quarter from the horizon start,
repeated when shorter: 96 values are a daily profile), or ``csv = "file.csv"`` with a ``start``
column (ISO 8601 with offset) and a value ``column``; each CSV value holds until the next row.

Default battery wear cost: :data:`DEFAULT_WEAR_EUR_PER_KWH` = 0.05 EUR per kWh discharged. It is the
replacement cost of the storage divided by the energy it delivers over its life: about EUR 300 per
kWh of capacity for a replacement LFP pack, over about 6,000 full cycles (a typical LFP datasheet
rating at 80 % depth of discharge): 300 / 6000 = 0.05 EUR/kWh. Both figures are round ballpark
assumptions, not a quote; set ``wear_cost_eur_per_kwh`` to your own battery's figure.
"""

from __future__ import annotations

import tomllib
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from kwartier.tariffs.plan import validation_line

DEFAULT_WEAR_EUR_PER_KWH = Decimal("0.05")
QUARTER = timedelta(minutes=15)

Positive = Annotated[float, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]
Efficiency = Annotated[float, Field(gt=0, le=1)]
Ident = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$", max_length=60)]


class DeviceFileError(ValueError):
    """A device file that cannot be used; the message names the file, the device and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _aware(v: datetime, what: str) -> datetime:
    if v.tzinfo is None:
        raise ValueError(f"{what} {v.isoformat()} has no offset; write e.g. 2026-01-15T18:00:00+01:00")
    return v


class Connection(_Strict):
    """The grid connection: import and export limits in kW (3x25 A = 17.25 kW)."""

    import_limit_kw: Positive = 17.25
    export_limit_kw: NonNegative = 17.25


class Battery(_Strict):
    """A stationary battery: energy in kWh, power in kW, efficiencies per direction (0-1]."""

    id: Ident
    capacity_kwh: Positive
    max_charge_kw: NonNegative
    max_discharge_kw: NonNegative
    charge_efficiency: Efficiency = 0.95
    discharge_efficiency: Efficiency = 0.95
    soc_start_kwh: NonNegative
    soc_min_kwh: NonNegative = 0.0
    soc_max_kwh: NonNegative | None = None
    soc_end_min_kwh: NonNegative = 0.0
    wear_cost_eur_per_kwh: Annotated[Decimal, Field(ge=0)] = DEFAULT_WEAR_EUR_PER_KWH

    @model_validator(mode="after")
    def _levels(self) -> Battery:
        top = self.soc_max
        if self.soc_min_kwh > top:
            raise ValueError(f"soc_min_kwh {self.soc_min_kwh} is above the usable maximum {top}")
        if top > self.capacity_kwh:
            raise ValueError(f"soc_max_kwh {top} is above capacity_kwh {self.capacity_kwh}")
        if self.soc_start_kwh > self.capacity_kwh:
            raise ValueError(f"soc_start_kwh {self.soc_start_kwh} is above capacity_kwh {self.capacity_kwh}")
        if self.soc_end_min_kwh > top:
            raise ValueError(f"soc_end_min_kwh {self.soc_end_min_kwh} is above the usable maximum {top}")
        return self

    @property
    def soc_max(self) -> float:
        return self.capacity_kwh if self.soc_max_kwh is None else self.soc_max_kwh


class EV(_Strict):
    """One charging session: plugged in at ``arrival``, ``energy_needed_kwh`` in the car by ``departure``."""

    id: Ident
    arrival: datetime
    departure: datetime
    energy_needed_kwh: NonNegative
    max_power_kw: Positive
    efficiency: Efficiency = 0.9

    @model_validator(mode="after")
    def _times(self) -> EV:
        _aware(self.arrival, "arrival")
        _aware(self.departure, "departure")
        if self.departure <= self.arrival:
            raise ValueError(f"departure {self.departure.isoformat()} is not after arrival {self.arrival.isoformat()}")
        return self


class HeatPump(_Strict):
    """A heat pump heating a 1R1C building: R in K/kW, C in kWh/K, comfort band and COP table in deg C."""

    id: Ident
    r_k_per_kw: Positive
    c_kwh_per_k: Positive
    comfort_min_c: float
    comfort_max_c: float
    initial_indoor_c: float
    max_electric_kw: Positive
    cop: list[tuple[float, Positive]] = Field(min_length=1, description="[outdoor deg C, COP] points")

    @model_validator(mode="after")
    def _band(self) -> HeatPump:
        if self.comfort_max_c < self.comfort_min_c:
            raise ValueError(f"comfort_max_c {self.comfort_max_c} is below comfort_min_c {self.comfort_min_c}")
        temps = [t for t, _ in self.cop]
        if temps != sorted(set(temps)):
            raise ValueError("cop: outdoor temperatures must be strictly increasing")
        return self

    def cop_at(self, outdoor_c: np.ndarray) -> np.ndarray:
        """COP per quarter: linear between the table's points, constant beyond its ends."""
        temps = np.array([t for t, _ in self.cop])
        cops = np.array([c for _, c in self.cop])
        return np.interp(outdoor_c, temps, cops)


class Appliance(_Strict):
    """A deferrable appliance: its run profile in kW per quarter, to run inside [earliest_start, latest_end)."""

    id: Ident
    profile_kw: list[NonNegative] = Field(min_length=1)
    earliest_start: datetime
    latest_end: datetime

    @model_validator(mode="after")
    def _window(self) -> Appliance:
        _aware(self.earliest_start, "earliest_start")
        _aware(self.latest_end, "latest_end")
        if self.latest_end <= self.earliest_start:
            raise ValueError("latest_end is not after earliest_start")
        return self


class SeriesSpec(_Strict):
    """A time series: a constant ``value``, inline ``values`` per quarter, or a ``csv`` file."""

    value: float | None = None
    values: list[float] | None = Field(default=None, min_length=1)
    csv: str | None = None
    column: str = "value"

    @model_validator(mode="after")
    def _one(self) -> SeriesSpec:
        given = [x is not None for x in (self.value, self.values, self.csv)]
        if sum(given) != 1:
            raise ValueError("give exactly one of value, values or csv")
        return self


class Devices(_Strict):
    """Everything in a device file."""

    connection: Connection = Connection()
    battery: list[Battery] = []
    ev: list[EV] = []
    heat_pump: list[HeatPump] = []
    appliance: list[Appliance] = []
    base_load: SeriesSpec | None = None
    pv: SeriesSpec | None = None
    outdoor_temperature: SeriesSpec | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Devices:
        ids = [d.id for d in self.all_devices()]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"device id(s) used twice: {', '.join(dup)}")
        if self.heat_pump and self.outdoor_temperature is None:
            raise ValueError("a heat pump needs an [outdoor_temperature] series")
        return self

    def all_devices(self) -> list[Battery | EV | HeatPump | Appliance]:
        return [*self.battery, *self.ev, *self.heat_pump, *self.appliance]


def _format_errors(where: str, data: dict[str, Any], exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = list(err["loc"])
        prefix = where
        if len(loc) >= 2 and isinstance(loc[1], int):
            table = loc[0]
            items = data.get(str(table))
            item = items[loc[1]] if isinstance(items, list) and loc[1] < len(items) else None
            did = item.get("id") if isinstance(item, dict) else None
            prefix += f": [[{table}]] #{loc[1] + 1}" + (f" ({did})" if did else "")
            loc = loc[2:]
        elif loc and isinstance(loc[0], str) and loc[0] in Devices.model_fields:
            prefix += f": [{loc[0]}]"
            loc = loc[1:]
        lines.append(validation_line(prefix, loc, err))
    return "\n".join(lines)


def devices_from_text(text: str, where: str, folder: Path | None = None) -> Devices:
    """Parse and validate a device file's TOML text; CSV paths are made relative to ``folder``."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DeviceFileError(f"{where}: not valid TOML: {exc}") from None
    if folder is not None:
        for key in ("base_load", "pv", "outdoor_temperature"):
            table = data.get(key)
            if isinstance(table, dict) and isinstance(table.get("csv"), str):
                table["csv"] = str((folder / table["csv"]).resolve())
    try:
        return Devices.model_validate(data)
    except ValidationError as exc:
        raise DeviceFileError(_format_errors(where, data, exc)) from None


def load_devices(path: str | Path) -> Devices:
    """Load a device TOML file; errors name the file, the device and the field."""
    p = Path(path)
    if not p.is_file():
        raise DeviceFileError(f"{p}: no such device file")
    return devices_from_text(p.read_text(encoding="utf-8"), str(p), p.parent)


def series_values(spec: SeriesSpec | None, starts: list[datetime], what: str) -> np.ndarray:
    """The series per quarter start (float64); zeros without a spec. ``what`` names it in errors."""
    n = len(starts)
    if spec is None:
        return np.zeros(n)
    if spec.value is not None:
        return np.full(n, float(spec.value))
    if spec.values is not None:
        vals = np.asarray(spec.values, dtype=float)
        return np.resize(vals, n)
    return _csv_series(Path(spec.csv or ""), spec.column, starts, what)


def _csv_series(path: Path, column: str, starts: list[datetime], what: str) -> np.ndarray:
    if not path.is_file():
        raise DeviceFileError(f"{path}: no such file (the {what} series)")
    try:
        frame = pl.read_csv(path, try_parse_dates=False)
    except pl.exceptions.PolarsError as exc:
        raise DeviceFileError(f"{path}: cannot read as CSV ({what} series): {exc}") from None
    for col in ("start", column):
        if col not in frame.columns:
            raise DeviceFileError(f"{path}: no column {col!r} ({what} series; columns: {', '.join(frame.columns)})")
    times: list[datetime] = []
    for i, text in enumerate(frame["start"].cast(pl.String).to_list(), start=2):
        try:
            ts = datetime.fromisoformat(str(text))
        except ValueError:
            raise DeviceFileError(f"{path}, row {i}: start {text!r} is not an ISO 8601 time") from None
        if ts.tzinfo is None:
            raise DeviceFileError(f"{path}, row {i}: start {text!r} has no offset")
        times.append(ts)
    try:
        values = frame[column].cast(pl.Float64).to_numpy()
    except pl.exceptions.PolarsError:
        raise DeviceFileError(f"{path}: column {column!r} holds values that are not numbers") from None
    order = np.argsort(np.array([t.timestamp() for t in times]))
    stamps = np.array([times[i].timestamp() for i in order])
    values = values[order]
    want = np.array([s.timestamp() for s in starts])
    idx = np.searchsorted(stamps, want, side="right") - 1
    if len(starts) and (idx < 0).any():
        first = starts[int(np.argmax(idx < 0))]
        raise DeviceFileError(f"{path}: the {what} series starts after {first.isoformat()}, which the plan needs")
    out = values[idx]
    if np.isnan(out).any():
        raise DeviceFileError(f"{path}: the {what} series has empty values inside the horizon")
    return out


__all__ = [
    "DEFAULT_WEAR_EUR_PER_KWH",
    "EV",
    "Appliance",
    "Battery",
    "Connection",
    "DeviceFileError",
    "Devices",
    "HeatPump",
    "SeriesSpec",
    "devices_from_text",
    "load_devices",
    "series_values",
]
