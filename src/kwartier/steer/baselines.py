"""Baselines to compare a plan with, under the same energy accounting: no steering, greedy, perfect.

- *none*: nothing steered. Battery idle, the EV charges at full power from arrival, the heat pump
  is a thermostat holding the comfort minimum, appliances start at their earliest start.
- *greedy*: cheapest slots per device, the way evcc plans EV charging. The EV takes the cheapest
  quarters before departure, each appliance the start with the cheapest run, the battery charges
  in the cheapest quarters and discharges (to cover the household's own load, no export) in the
  dearest ones when that spread beats its losses and wear, and stores PV surplus; the heat pump
  stays a thermostat (greedy slot picking does not apply to a comfort band).
- *perfect*: the optimiser on the true prices (:func:`kwartier.steer.optimize.optimise`).
"""

from __future__ import annotations

import math

import numpy as np

from kwartier.steer.constraints import DT_H
from kwartier.steer.devices import HeatPump
from kwartier.steer.problem import Powers, Problem, appliance_starts, ev_window


def thermostat(hp: HeatPump, outdoor_c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Electric kW and indoor deg C of a thermostat that keeps the comfort minimum (1R1C, per quarter)."""
    a = math.exp(-DT_H / (hp.r_k_per_kw * hp.c_kwh_per_k))
    cop = hp.cop_at(outdoor_c)
    temp = hp.initial_indoor_c
    kw, indoor = np.zeros(len(outdoor_c)), np.zeros(len(outdoor_c))
    for t, out in enumerate(outdoor_c):
        need = ((hp.comfort_min_c - a * temp) / (1 - a) - out) / (hp.r_k_per_kw * cop[t])
        kw[t] = round(min(max(need, 0.0), hp.max_electric_kw), 3)
        temp = a * temp + (1 - a) * (out + hp.r_k_per_kw * cop[t] * kw[t])
        indoor[t] = temp
    return kw, indoor


def _ev_kw(problem: Problem, order: str) -> dict[str, np.ndarray]:
    out = {}
    price = problem.prices.import_ueur_per_kwh
    for ev in problem.devices.ev:
        a, d, needed = ev_window(ev, problem.starts)
        kw = np.zeros(problem.n)
        quarters = np.arange(a, d)
        if order == "cheapest":
            quarters = quarters[np.argsort(price[a:d], kind="stable")]
        left = needed
        for q in quarters:
            if left <= 1e-9:
                break
            kw[q] = round(min(ev.max_power_kw, left / (DT_H * ev.efficiency)), 3)
            left -= kw[q] * DT_H * ev.efficiency
        out[ev.id] = kw
    return out


def _appliance_kw(problem: Problem, cheapest: bool) -> dict[str, np.ndarray]:
    out = {}
    price = problem.prices.import_ueur_per_kwh
    for app in problem.devices.appliance:
        kw = np.zeros(problem.n)
        starts = appliance_starts(app, problem.starts)
        prof = np.asarray(app.profile_kw)
        if len(starts):
            if cheapest:
                costs = [float((prof * price[k:k + len(prof)]).sum()) for k in starts]
                k = int(starts[int(np.argmin(costs))])
            else:
                k = int(starts[0])
            kw[k:k + len(prof)] = prof
        out[app.id] = kw
    return out


def _heat_pumps(problem: Problem, powers: Powers) -> None:
    for hp in problem.devices.heat_pump:
        powers.kw[hp.id], powers.indoor_c[hp.id] = thermostat(hp, problem.outdoor_c)


def no_steering(problem: Problem) -> Powers:
    """Nothing steered (see the module docstring)."""
    p = Powers()
    for bat in problem.devices.battery:
        p.kw[bat.id] = np.zeros(problem.n)
        p.soc_kwh[bat.id] = np.full(problem.n, bat.soc_start_kwh)
    p.kw |= _ev_kw(problem, "arrival")
    _heat_pumps(problem, p)
    p.kw |= _appliance_kw(problem, cheapest=False)
    return p


def greedy(problem: Problem) -> Powers:
    """Cheapest slots per device (see the module docstring)."""
    p = Powers()
    p.kw |= _ev_kw(problem, "cheapest")
    _heat_pumps(problem, p)
    p.kw |= _appliance_kw(problem, cheapest=True)
    net = problem.base_kw - problem.pv_kw + sum(p.kw.values(), np.zeros(problem.n))
    for bat in problem.devices.battery:
        kw, soc = _greedy_battery(bat, problem.prices.import_ueur_per_kwh / 1e6, net)
        p.kw[bat.id], p.soc_kwh[bat.id] = kw, soc
        net = net + kw
    return p


def _greedy_battery(bat, price_eur: np.ndarray, net_kw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
    """Charge in the cheapest quarters, discharge in the dearest when the spread pays, store PV surplus."""
    n = len(price_eur)
    fill = max(bat.soc_max - bat.soc_min_kwh, 0.0)
    k = min(n // 2, math.ceil(fill / max(bat.max_charge_kw * DT_H * bat.charge_efficiency, 1e-9)))
    order = np.argsort(price_eur, kind="stable")
    cheap, dear = set(), set()
    eta = bat.charge_efficiency * bat.discharge_efficiency
    wear = float(bat.wear_cost_eur_per_kwh)
    for lo, hi in zip(order[:k], order[::-1][:k], strict=True):
        if price_eur[hi] * eta - price_eur[lo] > wear:
            cheap.add(int(lo))
            dear.add(int(hi))
    floor = max(bat.soc_min_kwh, bat.soc_end_min_kwh)
    soc = bat.soc_start_kwh
    kw, socs = np.zeros(n), np.zeros(n)
    for t in range(n):
        room_kw = max(bat.soc_max - soc, 0.0) / (DT_H * bat.charge_efficiency)
        avail_kw = max(soc - floor, 0.0) * bat.discharge_efficiency / DT_H
        if t in cheap:
            kw[t] = min(bat.max_charge_kw, room_kw)
        elif net_kw[t] < 0:
            kw[t] = min(bat.max_charge_kw, room_kw, -net_kw[t])
        elif t in dear:
            kw[t] = -min(bat.max_discharge_kw, avail_kw, max(net_kw[t], 0.0))
        kw[t] = round(kw[t], 3)
        soc += DT_H * (bat.charge_efficiency * max(kw[t], 0) + min(kw[t], 0) / bat.discharge_efficiency)
        socs[t] = soc
    return kw, socs


__all__ = ["greedy", "no_steering", "thermostat"]
