"""The stateless cost calculator: price a meter series under a plan for the local days [first, end).

Rules, each exact until one rounding per line:
- energy lines (``import_kwh``/``export_kwh``): sum over intervals of Wh x price (micro-euro per
  kWh, rounded once per interval and component) = nano-euros;
- energy-tax bands count kWh cumulatively per calendar year (local time) from the first reading
  of that year the series holds, so earlier readings in the same year push later ones into higher
  bands even when they lie before ``first``;
- ``netting = "annual"``: a ``netted`` component is charged on the year-to-date net import,
  telescoped (:func:`netted_nano`): over a calendar year on max(0, import - export), and months
  add up to the year exactly;
- ``per_day``: local days; ``per_month``/``per_year``: prorated by days of that month/year;
- ``percent``: the rate times the amounts of the components it names (per interval where the
  rate varies);
- a line's amount is rounded half-even to cents once; VAT = rate x sum of the VAT-able lines'
  cents, half-even; total = net_total + VAT.
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction

import numpy as np
import polars as pl

from kwartier.money import format_eur, nano_to_cents, vat_cents
from kwartier.tariffs.compose import (
    NANO,
    MissingData,
    align,
    evaluate_micro,
    price_series_nano,
    quarters_of,
    series_env,
)
from kwartier.tariffs.plan import CompiledComponent, LoadedPlan, PlanError
from kwartier.timegrid import interval_starts, iso_utc, local_period_bounds


@dataclass
class CostLine:
    component: str
    label: str
    payee: str
    quantity: Decimal
    unit: str
    amount_nano: int
    vat: bool

    @property
    def cents(self) -> int:
        return nano_to_cents(self.amount_nano)

    def to_json(self) -> dict[str, str]:
        return {"component": self.component, "label": self.label, "payee": self.payee,
                "quantity": str(self.quantity), "unit": self.unit, "amount": format_eur(self.cents)}


@dataclass
class CostResult:
    plan: str
    first: date
    end: date
    import_wh: int
    export_wh: int
    lines: list[CostLine]
    vat_rate: Decimal
    gaps: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def net_total_cents(self) -> int:
        return sum(line.cents for line in self.lines)

    @property
    def vat_cents(self) -> int:
        return vat_cents({self.vat_rate: [ln.cents for ln in self.lines if ln.vat]})[self.vat_rate]

    @property
    def total_cents(self) -> int:
        return self.net_total_cents + self.vat_cents

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "plan": self.plan, "from": self.first.isoformat(), "to": self.end.isoformat(),
            "import_kwh": str(Decimal(self.import_wh).scaleb(-3)),
            "export_kwh": str(Decimal(self.export_wh).scaleb(-3)),
            "lines": [ln.to_json() for ln in self.lines],
            "net_total": format_eur(self.net_total_cents), "vat": format_eur(self.vat_cents),
            "total": format_eur(self.total_cents),
        }
        if self.gaps:
            out["gaps"] = self.gaps
        if self.notes:
            out["notes"] = self.notes
        return out


def needed_directions(plan: LoadedPlan) -> list[str]:
    """The energy columns the plan prices: export only when a component (or netting) reads it."""
    bases = {c.spec.basis for c in plan.components}
    cols = ["import_wh"]
    if "export_kwh" in bases or plan.plan.netting == "annual":
        cols.append("export_wh")
    return cols


def _missing_readings(readings: pl.DataFrame, start, end, needed: list[str]) -> list:  # type: ignore[no-untyped-def]
    expected = interval_starts(start, end)
    known = readings.filter(pl.all_horizontal(pl.col(c).is_not_null() for c in needed))
    covered = quarters_of(known.select("interval_start", "resolution"))["quarter"]
    return expected.filter(~expected.is_in(covered.implode())).to_list()


def _year_of(starts: pl.Series, tz: str) -> pl.Series:
    return starts.dt.convert_time_zone(tz).dt.year()


def _bands_micro(comp: CompiledComponent, constants: Mapping[str, Decimal]) -> tuple[list[int | None], list[int]]:
    limits, prices = [], []
    for up_to, e in comp.bands:
        if e.names - set(constants):
            raise PlanError(f"component {comp.spec.id!r}: band prices must be constants or parameters")
        limits.append(None if up_to is None else int(up_to * 1000))
        prices.append(int((e.evaluate(dict(constants)) * 1_000_000).to_integral_value(ROUND_HALF_EVEN)))
    return limits, prices


def banded_nano(before_wh: np.ndarray, qty_wh: np.ndarray, limits_wh: list[int | None], prices: list[int]) -> int:
    """Exact cost of ``qty_wh`` on top of ``before_wh`` already counted, across cumulative bands."""
    total = 0
    lo = 0
    after = before_wh + qty_wh
    for limit, price in zip(limits_wh, prices, strict=True):
        hi = np.iinfo(np.int64).max if limit is None else limit
        portion = np.clip(after, lo, hi) - np.clip(before_wh, lo, hi)
        total += int(portion.sum()) * price
        lo = hi
    return total


def _period_fraction(first: date, end: date, unit: str) -> Fraction:
    """Days of [first, end) in each month (or year) over that month's (year's) days, summed."""
    total, d = Fraction(0), first
    while d < end:
        if unit == "per_month":
            span_days = calendar.monthrange(d.year, d.month)[1]
            nxt = date(d.year + (d.month == 12), d.month % 12 + 1, 1)
        else:
            span_days = 366 if calendar.isleap(d.year) else 365
            nxt = date(d.year + 1, 1, 1)
        stop = min(nxt, end)
        total += Fraction((stop - d).days, span_days)
        d = stop
    return total


def _nano(value: Fraction | Decimal) -> int:
    f = Fraction(value) * NANO
    q, r = divmod(f.numerator, f.denominator)
    twice = 2 * r
    return q + (1 if twice > f.denominator or (twice == f.denominator and q % 2) else 0)


def cost(
    plan: LoadedPlan,
    readings: pl.DataFrame,
    market: pl.DataFrame | None,
    first: date,
    end: date,
    *,
    inputs: Mapping[str, pl.DataFrame] | None = None,
    allow_gaps: bool = False,
) -> CostResult:
    """Price ``readings`` (canonical reading frame) under ``plan`` for local days [first, end)."""
    tz = plan.plan.timezone
    start, stop = local_period_bounds(first, end, tz)
    readings = readings.sort("interval_start")
    inside = readings.filter((pl.col("interval_start") >= start) & (pl.col("interval_start") < stop))
    result = CostResult(plan.id, first, end, 0, 0, [], plan.plan.vat_rate)
    needed = needed_directions(plan)
    missing = _missing_readings(inside, start, stop, needed)
    if missing and not allow_gaps:
        raise MissingData("readings", missing, tz)
    if missing:
        result.gaps.append(f"{len(missing)} quarter-hour(s) without readings, first {iso_utc(missing[0])}")
    inside = inside.filter(pl.all_horizontal(pl.col(c).is_not_null() for c in needed)).with_columns(
        pl.col("import_wh", "export_wh").fill_null(0))  # a direction the plan does not price is not needed
    if (inside["resolution"] == "PT60M").any() and market is not None and not market.filter(
            (pl.col("resolution") == "PT15M") & (pl.col("interval_start") >= start)
            & (pl.col("interval_start") < stop)).is_empty():
        result.notes.append("hourly readings are priced at the mean of their hour's quarter prices")
    derived = derive_series(plan, readings, market, first, end)
    try:
        env = series_env(plan, inside, market, inputs, derived)
    except MissingData as exc:
        if not allow_gaps:
            raise
        bad = set(exc.missing)
        result.gaps.append(f"{len(bad)} interval(s) without {exc.what}, first {iso_utc(min(bad))}")
        inside = inside.filter(~pl.col("interval_start").is_in(list(bad)))
        env = series_env(plan, inside, market, inputs, derived)
    imp = inside["import_wh"].to_numpy().astype(np.int64)
    exp = inside["export_wh"].to_numpy().astype(np.int64)
    result.import_wh, result.export_wh = int(imp.sum()), int(exp.sum())
    constants = plan.env_constants()
    per_interval: dict[str, np.ndarray] = {}
    for comp in plan.components:
        spec = comp.spec
        if spec.basis in ("import_kwh", "export_kwh"):
            energy = imp if spec.basis == "import_kwh" else exp
            if spec.netted and plan.plan.netting == "annual":
                result.lines.append(_netted_line(plan, comp, readings, inside, start, constants))
                continue
            if comp.bands:
                limits, prices = _bands_micro(comp, constants)
                before = _cumulative_before(readings, inside, tz, spec.basis)
                amount = banded_nano(before, energy, limits, prices)
            else:
                price = evaluate_micro(comp.price, env, constants).to_numpy().astype(np.int64)  # type: ignore[arg-type]
                per_interval[spec.id] = energy * price
                amount = int(per_interval[spec.id].sum())
            qty = Decimal(int(energy.sum())).scaleb(-3)
        elif spec.basis == "per_day":
            days = (end - first).days
            amount = _nano(comp.price.evaluate(dict(constants)) * days)  # type: ignore[union-attr]
            qty = Decimal(days)
        elif spec.basis in ("per_month", "per_year"):
            frac = _period_fraction(first, end, spec.basis)
            amount = _nano(Fraction(comp.price.evaluate(dict(constants))) * frac)  # type: ignore[union-attr]
            qty = (Decimal(frac.numerator) / Decimal(frac.denominator)).quantize(Decimal("0.0001"))
        else:  # percent
            amount, qty = _percent(comp, plan, env, constants, per_interval, result.lines)
        result.lines.append(CostLine(spec.id, spec.label, spec.payee, qty, spec.unit, amount, spec.vat))
    return result


def _cumulative_before(readings: pl.DataFrame, inside: pl.DataFrame, tz: str, basis: str) -> np.ndarray:
    """For each interval inside the period: Wh of ``basis`` earlier in the same local calendar year."""
    col = "import_wh" if basis == "import_kwh" else "export_wh"
    every = readings.select("interval_start", pl.col(col).fill_null(0)).with_columns(
        year=_year_of(readings["interval_start"], tz))
    every = every.with_columns(before=pl.col(col).cum_sum().over("year") - pl.col(col))
    joined = inside.select("interval_start").join(every.select("interval_start", "before"), on="interval_start",
                                                  how="left")
    return joined["before"].to_numpy().astype(np.int64)


def netted_nano(history_net_wh: int, period_net_wh: int, limits_wh: list[int | None] | None, prices: list[int]) -> int:
    """Annual netting, telescoped: tax on the year-to-date net import at the period's end minus at its start.

    ``history_net_wh`` and ``period_net_wh`` are signed import - export sums (before the period in the
    same calendar year, and inside it). Over a whole year this is the tax on max(0, import - export);
    split into months it adds up to exactly that, and an export surplus later in the year returns tax
    charged on earlier net import (never below zero for the year).
    """
    before, after = max(0, history_net_wh), max(0, history_net_wh + period_net_wh)
    if limits_wh is None:
        return (after - before) * prices[0]
    zero = np.zeros(1, dtype=np.int64)
    return (banded_nano(zero, np.array([after]), limits_wh, prices)
            - banded_nano(zero, np.array([before]), limits_wh, prices))


def _netted_line(plan: LoadedPlan, comp: CompiledComponent, readings: pl.DataFrame, inside: pl.DataFrame,
                 start, constants: Mapping[str, Decimal]) -> CostLine:  # type: ignore[no-untyped-def]
    """Annual netting per calendar-year part of the period (see :func:`netted_nano`)."""
    tz = plan.plan.timezone
    spec = comp.spec
    if comp.bands:
        limits, prices = _bands_micro(comp, constants)
    else:
        if comp.price.names - set(constants):  # type: ignore[union-attr]
            raise PlanError(f"component {spec.id!r}: a netted price must be a constant or parameter")
        limits = None
        prices = [int((comp.price.evaluate(dict(constants)) * 1_000_000).to_integral_value(ROUND_HALF_EVEN))]  # type: ignore[union-attr]
    earlier = readings.filter(pl.col("interval_start") < start)
    hist = earlier.with_columns(year=_year_of(earlier["interval_start"], tz))
    part = inside.with_columns(year=_year_of(inside["interval_start"], tz))
    amount, qty_wh = 0, 0
    for (year,), seg in part.group_by(["year"], maintain_order=True):
        h = hist.filter(pl.col("year") == year)
        h_net = int(h["import_wh"].fill_null(0).sum()) - int(h["export_wh"].fill_null(0).sum())
        s_net = int(seg["import_wh"].sum()) - int(seg["export_wh"].sum())
        qty_wh += max(0, h_net + s_net) - max(0, h_net)
        amount += netted_nano(h_net, s_net, limits, prices)
    return CostLine(spec.id, spec.label, spec.payee, Decimal(qty_wh).scaleb(-3), spec.unit, amount, spec.vat)


def _percent(comp: CompiledComponent, plan: LoadedPlan, env: pl.DataFrame, constants: Mapping[str, Decimal],
             per_interval: dict[str, np.ndarray], lines: list[CostLine]) -> tuple[int, Decimal]:
    spec = comp.spec
    expr = comp.price
    assert expr is not None and spec.of is not None
    base_total = sum(ln.amount_nano for ln in lines if ln.component in spec.of)
    if not expr.names - set(constants):  # a constant rate
        rate = expr.evaluate(dict(constants))
        amount = _nano(rate * Decimal(base_total) / NANO)
    else:
        missing = [c for c in spec.of if c not in per_interval]
        if missing:
            raise PlanError(f"component {spec.id!r}: a varying percentage needs per-interval components, "
                            f"not {', '.join(missing)}")
        base = np.sum([per_interval[c] for c in spec.of], axis=0)
        names = sorted(expr.names - set(constants))
        frame = env.select(names).with_columns(pl.Series("__base", base, dtype=pl.Int64))
        exact = Fraction(0)
        for row in frame.group_by(names).agg(pl.col("__base").sum()).iter_rows():
            scope = dict(constants) | {n: Decimal(v).scaleb(-9) for n, v in zip(names, row[:-1], strict=True)}
            exact += Fraction(expr.evaluate(scope)) * row[-1]
        amount = _nano(exact / NANO)
    pct = (Decimal(amount) / Decimal(base_total) * 100).quantize(Decimal("0.01")) if base_total else Decimal(0)
    return amount, pct


def derive_series(plan: LoadedPlan, readings: pl.DataFrame, market: pl.DataFrame | None, first: date,
                  end: date) -> dict[str, pl.DataFrame]:
    """Derived series of the plan, as quarter values in nano units, for the months of [first, end).

    ``previous_month_tax_share``: for month M, the plan parameter ``tax_eur_per_kwh`` times last
    month's imported kWh, divided by last month's import value at the market price. Fixed at the
    start of M; without last month's data (or a value <= 0) the series default applies.
    """
    out: dict[str, pl.DataFrame] = {}
    tz = plan.plan.timezone
    for decl in plan.plan.series:
        if decl.kind != "derived":
            continue
        tax = plan.plan.parameters.get("tax_eur_per_kwh")
        if tax is None:
            raise PlanError(f"{plan.where}: series {decl.id!r} (previous_month_tax_share) needs the parameter "
                            "tax_eur_per_kwh")
        frames = []
        m = date(first.year, first.month, 1)
        while m < end:
            prev = (m - timedelta(days=1)).replace(day=1)
            nxt = date(m.year + (m.month == 12), m.month % 12 + 1, 1)
            p0, p1 = local_period_bounds(prev, m, tz)
            m0, m1 = local_period_bounds(m, nxt, tz)
            last = readings.filter((pl.col("interval_start") >= p0) & (pl.col("interval_start") < p1)
                                   & pl.col("import_wh").is_not_null())
            share = None
            if last.height and market is not None and not market.is_empty():
                priced = align(last.select("interval_start", "resolution"), price_series_nano(market), "p")
                if priced["p"].null_count() == 0:
                    # Wh x nano-EUR/kWh = pico-euros: exact, divided once.
                    value_pico = int((last["import_wh"].cast(pl.Int64) * priced["p"]).sum())
                    kwh = Decimal(int(last["import_wh"].sum())) / 1000
                    if value_pico > 0:
                        share = tax * kwh / Decimal(value_pico).scaleb(-12)
            if share is not None:
                q = interval_starts(m0, m1)
                frames.append(pl.DataFrame({"quarter": q, "value": pl.repeat(_nano(share), q.len(), eager=True)}))
            m = nxt
        out[decl.id] = pl.concat(frames) if frames else pl.DataFrame(schema={"quarter": pl.Datetime("us", "UTC"),
                                                                            "value": pl.Int64})
    return out
