"""Community congestion: households planned one by one, a feeder limit kept through congestion prices.

Instead of one giant MILP, every household is optimised on its own (small models, in parallel),
and a shared feeder limit (kW) on the sum of imports, and of exports, is reached in two phases:

1. *Price phase* (dual ascent): a congestion price per quarter (micro-euro/kWh) rises where the
   feeder is over its limit, and households re-plan against it. Prices only rise, so a household
   that neither imports (exports) in a quarter whose price rose keeps its optimal plan and is not
   re-solved: each round only re-solves the households that can move.
   Each household also gets its own tiny random tie-break price (at most :data:`DITHER_UEUR`), so
   households that are alike do not all jump to the same quarter.
2. *Share phase*: where the limit still does not hold (identical households facing identical
   prices tend to move together), each quarter's capacity is shared out once (:func:`share_caps`):
   every household keeps its inflexible load (base load minus PV) and the flexible load it uses
   now, scaled down where the quarter is over the limit, plus a share of any spare room in
   proportion to its flexible power. The shares add up to the limit, so the feeder holds once the
   households over their share have re-planned, and only those are re-solved (a plan within its
   shares stays optimal).

Reported: the iterations of both phases, solves, and the quarters still over the limit (only
possible when the inflexible loads alone exceed it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from time import perf_counter

import numpy as np

from kwartier.steer.optimize import Problem, SteerResult, optimise

TOL_KW = 1e-3
ROUNDING_MARGIN_KW = 0.002  # per household: plans are rounded to the watt-hour per quarter (0.5 Wh = 2 W)
MIN_STEP_UEUR = 2_000  # 0.002 EUR/kWh
GAIN_UEUR = 100_000  # 0.10 EUR/kWh for an excess equal to the whole limit
DITHER_UEUR = 100  # at most 0.0001 EUR/kWh: a household's own tie-break, so equal households spread out


@dataclass(frozen=True)
class FeederViolation:
    """A quarter where the feeder limit does not hold: direction and the excess in kW."""

    start: datetime
    direction: str  # import | export
    excess_kw: float


@dataclass
class CoordinationResult:
    """Household plans, the feeder's load, the congestion prices and how they were reached."""

    results: list[SteerResult]
    feeder_import_kw: np.ndarray
    feeder_export_kw: np.ndarray
    congestion_import_ueur_per_kwh: np.ndarray
    congestion_export_ueur_per_kwh: np.ndarray
    price_iterations: int
    share_rounds: int
    solves: int
    violations: list[FeederViolation] = field(default_factory=list)
    wall_seconds: float = 0.0
    first_peak_import_kw: float = 0.0  # the feeder's peak when every household plans alone
    first_peak_export_kw: float = 0.0


def _solve(args: tuple[Problem, float]) -> SteerResult:
    problem, limit = args
    return optimise(problem, time_limit_s=limit)


def flexible_kw(problem: Problem) -> float:
    """The power a household can move (kW): battery charge, EV, heat pump and appliance peaks."""
    d = problem.devices
    return (sum(b.max_charge_kw for b in d.battery) + sum(e.max_power_kw for e in d.ev)
            + sum(h.max_electric_kw for h in d.heat_pump) + sum(max(a.profile_kw) for a in d.appliance))


def _grid_kw(results: Sequence[SteerResult]) -> tuple[np.ndarray, np.ndarray]:
    imp = np.array([r.accounting.import_wh for r in results], dtype=float) / 250.0
    exp = np.array([r.accounting.export_wh for r in results], dtype=float) / 250.0
    return imp, exp


def share_caps(inflexible_kw: np.ndarray, use_kw: np.ndarray, weights: np.ndarray, limit_kw: float) -> np.ndarray:
    """One quarter's capacity shared out; the caps add up to the limit (kW per household).

    Each household keeps its inflexible kW. What the limit leaves (the room) goes first to the
    flexible kW the households use now: all of it when it fits (the rest of the room is shared by
    ``weights``), else scaled down in proportion. So a quarter within the limit forces nobody to
    move. When the inflexible loads alone exceed the limit, each household keeps just those.
    """
    room = max(limit_kw - float(inflexible_kw.sum()), 0.0)
    use = np.maximum(use_kw, 0.0)
    used = float(use.sum())
    if used >= room:
        return inflexible_kw + (use * (room / used) if used > 0 else 0.0)
    total = float(weights.sum())
    share = weights / total if total > 0 else np.full(len(weights), 1.0 / max(len(weights), 1))
    return inflexible_kw + use + (room - used) * share


def coordinate(
    problems: Sequence[Problem],
    feeder_import_kw: float,
    feeder_export_kw: float | None = None,
    *,
    max_price_iterations: int = 3,
    max_share_rounds: int = 3,
    workers: int = 1,
    time_limit_s: float = 5.0,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> CoordinationResult:
    """Plan every household so the feeder's summed import (and export) stays within its limits."""
    t0 = perf_counter()
    say = progress or (lambda _m: None)
    probs = list(problems)
    n_h, n_q = len(probs), probs[0].n
    lam, mu = np.zeros(n_q), np.zeros(n_q)
    dither = np.random.default_rng(seed).uniform(0, DITHER_UEUR, (n_h, n_q))
    pool = ProcessPoolExecutor(max_workers=workers) if workers > 1 else None
    solves = 0

    def run(idx: list[int]) -> None:
        nonlocal solves
        if not idx:
            return
        args = [(probs[i], time_limit_s) for i in idx]
        chunk = max(1, len(args) // (4 * workers))
        done = list(pool.map(_solve, args, chunksize=chunk)) if pool else [_solve(a) for a in args]
        for i, r in zip(idx, done, strict=True):
            results[i] = r
        solves += len(idx)

    results: list[SteerResult] = [None] * n_h  # type: ignore[list-item]
    inflex_i = np.array([np.maximum(p.base_kw - p.pv_kw, 0.0) for p in probs])
    inflex_e = np.array([np.maximum(p.pv_kw - p.base_kw, 0.0) for p in probs])
    try:
        run(list(range(n_h)))
        imp, exp = _grid_kw(results)
        first_peaks = float(imp.sum(axis=0).max()), float(exp.sum(axis=0).max())
        price_rounds = 0
        for _ in range(max_price_iterations):
            over_i = imp.sum(axis=0) - feeder_import_kw
            over_e = exp.sum(axis=0) - (feeder_export_kw if feeder_export_kw is not None else np.inf)
            up_i, up_e = over_i > TOL_KW, over_e > TOL_KW
            if not up_i.any() and not up_e.any():
                break
            price_rounds += 1
            lam[up_i] += np.maximum(MIN_STEP_UEUR, GAIN_UEUR * over_i[up_i] / feeder_import_kw)
            if feeder_export_kw:
                mu[up_e] += np.maximum(MIN_STEP_UEUR, GAIN_UEUR * over_e[up_e] / feeder_export_kw)
            slack = TOL_KW + ROUNDING_MARGIN_KW
            movers = [i for i in range(n_h) if (imp[i, up_i] > inflex_i[i, up_i] + slack).any()
                      or (exp[i, up_e] > inflex_e[i, up_e] + slack).any()]
            for i in movers:
                probs[i] = dataclasses.replace(probs[i], congestion_import_ueur_per_kwh=lam + dither[i],
                                               congestion_export_ueur_per_kwh=mu + dither[i])
            say(f"price round {price_rounds}: {int(up_i.sum())} import and {int(up_e.sum())} export quarters "
                f"over the limit, re-solving {len(movers)} households")
            run(movers)
            imp, exp = _grid_kw(results)
        for i in range(n_h):  # every household plans with the final prices from now on
            probs[i] = dataclasses.replace(probs[i], congestion_import_ueur_per_kwh=lam + dither[i],
                                           congestion_export_ueur_per_kwh=mu + dither[i])
        share_rounds = _share_phase(probs, results, imp, exp, feeder_import_kw, feeder_export_kw, run,
                                    max_share_rounds, say)
    finally:
        if pool:
            pool.shutdown()
    imp, exp = _grid_kw(results)
    feeder_i, feeder_e = imp.sum(axis=0), exp.sum(axis=0)
    violations = _feeder_violations(probs[0], feeder_i, feeder_e, feeder_import_kw, feeder_export_kw)
    return CoordinationResult(results, feeder_i, feeder_e, lam, mu, price_rounds, share_rounds, solves, violations,
                              perf_counter() - t0, *first_peaks)


def _share_phase(probs: list[Problem], results: list[SteerResult], imp: np.ndarray, exp: np.ndarray,
                 limit_i: float, limit_e: float | None, run: Callable[[list[int]], None], max_rounds: int,
                 say: Callable[[str], None]) -> int:
    n_h, n_q = imp.shape
    margin = ROUNDING_MARGIN_KW * n_h
    weights = np.array([flexible_kw(p) for p in probs])
    inflex_i = np.array([np.maximum(p.base_kw - p.pv_kw, 0.0) for p in probs])
    inflex_e = np.array([np.maximum(p.pv_kw - p.base_kw, 0.0) for p in probs])
    cap_i, cap_e = np.full((n_h, n_q), np.inf), np.full((n_h, n_q), np.inf)
    shared_i, shared_e = np.zeros(n_q, bool), np.zeros(n_q, bool)
    rounds = 0
    for _ in range(max_rounds):
        over_i = imp.sum(axis=0) > limit_i + TOL_KW
        over_e = (exp.sum(axis=0) > limit_e + TOL_KW) if limit_e is not None else np.zeros(n_q, bool)
        if not (over_i & ~shared_i).any() and not (over_e & ~shared_e).any():
            break
        rounds += 1
        # Share every quarter at once: a quarter within the limit keeps everyone's current use, so only the
        # households in quarters over the limit have to move, and they cannot create a new excess anywhere.
        new_i = ~shared_i
        new_e = ~shared_e if limit_e is not None else np.zeros(n_q, bool)
        for t in np.flatnonzero(new_i):
            cap_i[:, t] = share_caps(inflex_i[:, t], imp[:, t] - inflex_i[:, t], weights, limit_i - margin)
        for t in np.flatnonzero(new_e):
            cap_e[:, t] = share_caps(inflex_e[:, t], exp[:, t] - inflex_e[:, t], weights, (limit_e or 0.0) - margin)
        shared_i |= new_i
        shared_e |= new_e
        slack = TOL_KW + ROUNDING_MARGIN_KW
        movers = [i for i in range(n_h) if (imp[i] > cap_i[i] + slack).any() or (exp[i] > cap_e[i] + slack).any()]
        for i in range(n_h):
            probs[i] = dataclasses.replace(probs[i], import_cap_kw=cap_i[i].copy(), export_cap_kw=cap_e[i].copy())
        say(f"share round {rounds}: {int(over_i.sum())} import and {int(over_e.sum())} export quarters over the "
            f"limit, re-solving {len(movers)} households")
        run(movers)
        imp, exp = _grid_kw(results)
    return rounds


def _feeder_violations(p: Problem, feeder_i: np.ndarray, feeder_e: np.ndarray, limit_i: float,
                       limit_e: float | None) -> list[FeederViolation]:
    out = [FeederViolation(p.starts[t], "import", float(feeder_i[t] - limit_i))
           for t in np.flatnonzero(feeder_i > limit_i + TOL_KW)]
    if limit_e is not None:
        out += [FeederViolation(p.starts[t], "export", float(feeder_e[t] - limit_e))
                for t in np.flatnonzero(feeder_e > limit_e + TOL_KW)]
    return out


__all__ = ["CoordinationResult", "FeederViolation", "coordinate", "flexible_kw", "share_caps"]
