"""A plan's marginal import and export prices per quarter for the optimiser, and market prices on the horizon."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

import numpy as np
import polars as pl

from kwartier.steer.optimize import Prices, SteerError


def market_quarters(frame: pl.DataFrame, starts: tuple[datetime, ...], where: str) -> np.ndarray:
    """Market prices (canonical price frame) per horizon quarter, micro-euro/kWh; hourly prices fill 4."""
    from kwartier.tariffs.compose import price_series_nano

    q = price_series_nano(frame)
    want = pl.DataFrame({"quarter": list(starts)}, schema={"quarter": pl.Datetime("us", "UTC")})
    got = want.join(q, on="quarter", how="left")
    missing = got.filter(pl.col("value").is_null())["quarter"].to_list()
    if missing:
        shown = ", ".join(t.isoformat() for t in missing[:3])
        raise SteerError(f"{where}: no price for {len(missing)} quarter(s) of the horizon, first {shown}")
    return (got["value"] // 1000).to_numpy().astype(np.int64)


def _with_vat(micro: int, vat: bool, rate: Decimal) -> int:
    if not vat:
        return micro
    return int((Decimal(micro) * (1 + rate)).to_integral_value(ROUND_HALF_EVEN))


def plan_prices(loaded, market: pl.DataFrame, starts: tuple[datetime, ...]) -> Prices:  # type: ignore[no-untyped-def]
    """A tariff plan's marginal import and export prices per quarter, VAT included, micro-euro/kWh.

    Import: every ``import_kwh`` component (a banded one at its first band's price) plus VAT where
    the component carries it, plus constant-rate ``percent`` components of those. Export (received):
    minus every ``export_kwh`` component, plus, under annual netting, the netted import components
    (a kWh fed in saves their tax as long as the year's net import stays positive).
    ``market``: stored prices with ``known_at``; all of them are used (the plan's prices as fixed).
    """
    from kwartier.tariffs.lifecycle import prices as lifecycle_prices

    plan = loaded.plan
    n = len(starts)
    end = starts[-1] + timedelta(minutes=15)
    rows = lifecycle_prices(loaded, market, starts[0], end, known_at=end)
    by_comp = {cid: part.sort("interval_start")["price_ueur_per_kwh"].to_numpy()
               for (cid,), part in rows.group_by(["component"])} if rows.height else {}
    constants = loaded.env_constants()
    imp, exp = np.zeros(n, dtype=object), np.zeros(n, dtype=object)
    per_comp: dict[str, np.ndarray] = {}
    for comp in loaded.components:
        spec = comp.spec
        if spec.basis not in ("import_kwh", "export_kwh"):
            continue
        if comp.bands:
            first = comp.bands[0][1].evaluate(dict(constants))
            values = np.full(n, int((first * 1_000_000).to_integral_value(ROUND_HALF_EVEN)), dtype=object)
        else:
            values = np.array([int(v) for v in by_comp[spec.id]], dtype=object)
        per_comp[spec.id] = values
        taxed = np.array([_with_vat(int(v), spec.vat, plan.vat_rate) for v in values], dtype=object)
        if spec.basis == "import_kwh":
            imp = imp + taxed
            if spec.netted and plan.netting == "annual":
                exp = exp + taxed
        else:
            exp = exp - taxed
    for comp in loaded.components:
        spec = comp.spec
        if spec.basis != "percent" or comp.price is None:
            continue
        if comp.price.names - set(constants):
            raise SteerError(f"plan {loaded.id}: component {spec.id!r} has a varying rate; steering needs a constant")
        rate = comp.price.evaluate(dict(constants))
        for other in spec.of or []:
            if other in per_comp:
                extra = np.array([_with_vat(int((Decimal(int(v)) * rate).to_integral_value(ROUND_HALF_EVEN)),
                                            spec.vat, plan.vat_rate) for v in per_comp[other]], dtype=object)
                basis = loaded.plan.component(other).basis
                if basis == "import_kwh":
                    imp = imp + extra
                else:
                    exp = exp - extra
    return Prices(imp.astype(np.int64), exp.astype(np.int64))
