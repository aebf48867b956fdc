"""The settle run: a local month of every connection, posted to the ledger as deltas of what is posted.

Steps, in one transaction:
1. read the community definition in force and the month's current readings of every meter;
2. estimate missing readings by the previous-same-weekday rule (the same local quarter-hour 1, 2, 3
   or 4 weeks earlier; 0 when there is no history), stored as ``estimated`` readings, so an actual
   reading imported later becomes a revision;
3. subtract each metering point's import from its main connection (its own supplier bills it);
4. settle every contract's part of the month with the engine, per plan;
5. round each (participant, meter, component) line to cents once; VAT per participant, supplier and
   rate on the VAT-able lines' cents;
6. post, per line, the difference between that and what the journal already holds for it: the
   first run posts ``settlement`` entries, later runs ``correction`` entries naming what changed.
   A second run with unchanged inputs posts nothing.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import numpy as np
import polars as pl
from sqlalchemy import Connection, Engine, func, insert, select, update

from kwartier.money import NANO_PER_CENT, format_eur, nano_to_cents, vat_cents
from kwartier.settle import ledger
from kwartier.settle.engine import PeriodEnergy, settle_plan
from kwartier.store import schema
from kwartier.store.versions import READING_VALUES, epoch_us, select_frame, write_versions
from kwartier.tariffs.compose import NANO, MissingData
from kwartier.tariffs.cost import derive_series
from kwartier.timegrid import interval_starts, local_period_bounds

ESTIMATE_SOURCE = "estimate:previous-weekday"
ESTIMATE_WEEKS = 4


class SettleError(ValueError):
    """A period that cannot be settled (no definition, prices missing or not fixed, bad period)."""


@dataclass
class SettleSummary:
    period: str
    connections: int = 0
    intervals: int = 0
    postings: int = 0
    new_postings: int = 0
    debit_total_nano: int = 0
    credit_total_nano: int = 0
    by_payee: dict[str, int] = field(default_factory=dict)
    by_participant: dict[str, int] = field(default_factory=dict)
    estimated_intervals: int = 0
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        cents = lambda n: format_eur(nano_to_cents(n))  # noqa: E731
        out: dict[str, object] = {
            "period": self.period, "connections": self.connections, "intervals": self.intervals,
            "postings": self.postings, "new_postings": self.new_postings,
            "debit_total": cents(self.debit_total_nano), "credit_total": cents(self.credit_total_nano),
            "by_payee": {k: cents(v) for k, v in sorted(self.by_payee.items())},
            "by_participant": {k: cents(v) for k, v in sorted(self.by_participant.items())},
            "estimated_intervals": self.estimated_intervals,
        }
        if self.notes:
            out["notes"] = self.notes
        return out


def parse_period(period: str) -> tuple[date, date]:
    try:
        y, m = (int(x) for x in period.split("-"))
        first = date(y, m, 1)
    except ValueError:
        raise SettleError(f"period {period!r} is not YYYY-MM") from None
    return first, date(y + (m == 12), m % 12 + 1, 1)


def _readings(conn: Connection, eans: list[str], start: datetime, stop: datetime) -> pl.DataFrame:
    r = schema.readings
    stmt = (select(r.c.connection, epoch_us(conn, r.c.interval_start), r.c.resolution, r.c.import_wh,
                   r.c.export_wh, r.c.status, r.c.version)
            .where(r.c.connection.in_(eans), r.c.is_current.is_(True), r.c.interval_start >= start,
                   r.c.interval_start < stop))
    frame = select_frame(conn, stmt, {"connection": pl.String, "interval_start": pl.Int64, "resolution": pl.String,
                                      "import_wh": pl.Int64, "export_wh": pl.Int64, "status": pl.String,
                                      "version": pl.Int64})
    return frame.with_columns(pl.from_epoch("interval_start", time_unit="us").dt.replace_time_zone("UTC"))


def _quarterly(frame: pl.DataFrame) -> pl.DataFrame:
    """Readings on the quarter grid: an hourly reading cannot be split, so it is refused here."""
    if (frame["resolution"] != "PT15M").any():
        bad = frame.filter(pl.col("resolution") != "PT15M").row(0, named=True)
        raise SettleError(f"connection {bad['connection']} has hourly readings ({bad['interval_start']}); "
                          "settlement needs quarter-hour readings")
    return frame


def _estimate(frame: pl.DataFrame, eans: list[str], starts: pl.Series, tz: str) -> pl.DataFrame:
    """Estimates for the (meter, quarter) pairs of the period that have no reading with both directions."""
    period = frame.filter(pl.col("interval_start") >= starts[0])
    have = period.filter(pl.col("import_wh").is_not_null() & pl.col("export_wh").is_not_null())
    grid = pl.DataFrame({"connection": eans}).join(pl.DataFrame({"interval_start": starts}), how="cross")
    missing = grid.join(have.select("connection", "interval_start"), on=["connection", "interval_start"], how="anti")
    if missing.is_empty():
        return missing.with_columns(import_wh=pl.lit(0, pl.Int64), export_wh=pl.lit(0, pl.Int64))
    known = frame.filter(pl.col("import_wh").is_not_null() & pl.col("export_wh").is_not_null()).select(
        "connection", "interval_start", "import_wh", "export_wh")
    out = missing.with_columns(import_wh=pl.lit(None, pl.Int64), export_wh=pl.lit(None, pl.Int64))
    for weeks in range(1, ESTIMATE_WEEKS + 1):
        earlier = out.with_columns(src=pl.col("interval_start").dt.convert_time_zone(tz)
                                   .dt.offset_by(f"-{weeks}w").dt.convert_time_zone("UTC"))
        found = earlier.join(known.rename({"interval_start": "src", "import_wh": "i", "export_wh": "e"}),
                             on=["connection", "src"], how="left")
        out = found.select("connection", "interval_start", pl.coalesce("import_wh", "i").alias("import_wh"),
                           pl.coalesce("export_wh", "e").alias("export_wh"))
    return out.with_columns(pl.col("import_wh", "export_wh").fill_null(0))


def _fingerprint(frame: pl.DataFrame) -> str:
    """A cheap digest of input rows, to name what changed in a correction.

    It may differ between polars versions; it never decides an amount (amounts are compared
    directly), it only labels the inputs of a posting.
    """
    if frame.is_empty():
        return "0" * 16
    return f"{int(frame.hash_rows(seed=7).sum()) % 2**64:016x}"


def settle(engine: Engine, period: str) -> SettleSummary:
    """Settle every connection of the community for the local month ``period`` (YYYY-MM)."""
    from kwartier.services.community import current_definition

    first, end = parse_period(period)
    defn = current_definition(engine)
    tz, zone = defn.community.timezone, defn.community.zone
    start, stop = local_period_bounds(first, end, tz)
    starts = interval_starts(start, stop)
    nq = starts.len()
    meters = [c.ean for c in defn.spec.connections] + [mp.ean for mp in defn.spec.metering_points]
    summary = SettleSummary(period, connections=len(meters), intervals=len(meters) * nq)
    year_start = local_period_bounds(date(first.year, 1, 1), end, tz)[0]
    # History: the whole previous month (derived rates) and at least the estimation weeks.
    prev_first = (first - timedelta(days=1)).replace(day=1)
    history_start = min(local_period_bounds(prev_first, first, tz)[0], start - timedelta(weeks=ESTIMATE_WEEKS))
    needs_history = any(s.kind == "derived" for p in defn.plans.values() for s in p.plan.series)
    with engine.begin() as conn:
        frame = _quarterly(_readings(conn, meters, history_start if needs_history else start, stop))
        if _incomplete(frame.filter(pl.col("interval_start") >= start), len(meters), nq):
            if not needs_history:  # estimates look back: read the weeks before too
                frame = _quarterly(_readings(conn, meters, history_start, stop))
            estimates = _estimate(frame, meters, starts, tz)
            summary.estimated_intervals = estimates.height
            if estimates.height:
                _store_estimates(conn, estimates)
                frame = _quarterly(_readings(conn, meters, history_start, stop))
        period_rows = frame.filter(pl.col("interval_start") >= start)
        imp, exp = _matrices(period_rows, meters, starts)
        index = {ean: i for i, ean in enumerate(meters)}
        for mp in defn.spec.metering_points:  # a sub-meter's energy is billed by its own supplier
            parent, child = index[mp.connection], index[mp.ean]
            imp[parent] -= imp[child]
            if (imp[parent] < 0).any():
                summary.notes.append(f"{mp.connection}: sub-meter {mp.ean} reads more than the main meter in "
                                     f"{int((imp[parent] < 0).sum())} quarter(s); those are billed as 0")
                np.maximum(imp[parent], 0, out=imp[parent])
        before = _year_before(conn, meters, year_start, start)
        market = _fixed_prices(conn, zone, start, stop, starts, tz)
        fingerprints = {ean: _fingerprint(part.select("interval_start", "version", "import_wh", "export_wh",
                                                      "status"))
                        for (ean,), part in period_rows.sort("interval_start").group_by(["connection"])}
        price_fp = _fingerprint(market.select("interval_start", "price_ueur_per_kwh"))
        targets = _settle_contracts(defn, first, end, starts, imp, exp, before, index, market, frame, tz)
        postings = _postings(conn, defn, period, targets, fingerprints, price_fp)
        run_id = int(conn.execute(insert(schema.settle_runs).values(
            period=period, started_at=datetime.now(UTC), summary={})).inserted_primary_key[0])
        summary.new_postings = ledger.append(conn, postings, run_id)
        n, head = ledger.head(conn)
        _totals(conn, period, summary)
        conn.execute(update(schema.settle_runs).where(schema.settle_runs.c.id == run_id).values(
            summary={**summary.to_json(), "journal": {"entries": n, "head": head}}))
    return summary


def _incomplete(period_rows: pl.DataFrame, meters: int, quarters: int) -> bool:
    """Whether some meter lacks a reading with both directions for some quarter of the period."""
    complete = period_rows.filter(pl.col("import_wh").is_not_null() & pl.col("export_wh").is_not_null())
    return complete.height < meters * quarters


def _store_estimates(conn: Connection, estimates: pl.DataFrame) -> None:
    now = datetime.now(UTC)
    import_id = int(conn.execute(insert(schema.imports).values(
        kind="readings", file_name="(estimated by kwartier settle)", sha256="0" * 64, format=ESTIMATE_SOURCE,
        target="*", imported_at=now, new=estimates.height, unchanged=0, revised=0, anomalies=[],
    )).inserted_primary_key[0])
    for (ean,), part in estimates.group_by(["connection"]):
        rows = part.select("interval_start", pl.lit("PT15M").alias("resolution"), "import_wh", "export_wh",
                           pl.lit("estimated").alias("status"))
        write_versions(conn, schema.readings, "connection", str(ean), rows, READING_VALUES,
                       {"source": ESTIMATE_SOURCE, "import_id": import_id, "imported_at": now})


def _matrices(rows: pl.DataFrame, meters: list[str], starts: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    n, nq = len(meters), starts.len()
    imp = np.zeros((n, nq), dtype=np.int64)
    exp = np.zeros((n, nq), dtype=np.int64)
    if rows.is_empty():
        return imp, exp
    m_idx = pl.DataFrame({"connection": meters, "m": np.arange(n)})
    q_idx = pl.DataFrame({"interval_start": starts, "q": np.arange(nq)})
    located = rows.join(m_idx, on="connection").join(q_idx, on="interval_start")
    mi, qi = located["m"].to_numpy(), located["q"].to_numpy()
    imp[mi, qi] = located["import_wh"].fill_null(0).to_numpy()
    exp[mi, qi] = located["export_wh"].fill_null(0).to_numpy()
    return imp, exp


def _year_before(conn: Connection, meters: list[str], year_start: datetime, start: datetime
                 ) -> dict[str, tuple[int, int]]:
    r = schema.readings
    rows = conn.execute(
        select(r.c.connection, func.coalesce(func.sum(r.c.import_wh), 0), func.coalesce(func.sum(r.c.export_wh), 0))
        .where(r.c.connection.in_(meters), r.c.is_current.is_(True), r.c.interval_start >= year_start,
               r.c.interval_start < start)
        .group_by(r.c.connection)
    ).all()
    return {str(c): (int(i), int(e)) for c, i, e in rows}


def _fixed_prices(conn: Connection, zone: str, start: datetime, stop: datetime, starts: pl.Series, tz: str
                  ) -> pl.DataFrame:
    p = schema.prices
    rows = conn.execute(
        select(epoch_us(conn, p.c.interval_start), p.c.resolution, p.c.price_ueur_per_kwh, p.c.status)
        .where(p.c.zone == zone, p.c.is_current.is_(True), p.c.interval_start >= start - timedelta(hours=1),
               p.c.interval_start < stop)
    ).all()
    cols = list(zip(*rows, strict=True)) if rows else [[]] * 4
    frame = pl.DataFrame({"interval_start": cols[0], "resolution": cols[1], "price_ueur_per_kwh": cols[2],
                          "status": cols[3]},
                         schema={"interval_start": pl.Int64, "resolution": pl.String, "price_ueur_per_kwh": pl.Int64,
                                 "status": pl.String})
    frame = frame.with_columns(pl.from_epoch("interval_start", time_unit="us").dt.replace_time_zone("UTC"))
    not_fixed = frame.filter(pl.col("status") != "fixed")
    if not_fixed.height:
        raise SettleError(f"zone {zone}: the price for {not_fixed['interval_start'][0]} is not fixed yet; "
                          "settlement only uses fixed prices")
    from kwartier.tariffs.compose import quarters_of

    covered = quarters_of(frame.select("interval_start", "resolution"))["quarter"]
    missing = starts.filter(~starts.is_in(covered.implode())).to_list()
    if missing:
        raise MissingData(f"fixed day-ahead prices for zone {zone}", missing, tz)
    return frame.drop("status")


@dataclass
class _Line:
    participant: str
    meter: str
    component: str
    payee: str
    supplier: str
    vat: bool
    vat_rate: Decimal
    nano: int
    contract: str
    plan_sha: str
    role: str = "supplier"  # the plan's payee role: the invoice section
    quantity: Decimal = Decimal(0)
    unit: str = "kWh"
    unit_price: str | None = None  # the plan's own price for per_day/per_month/per_year lines


def _quantities(plan, imp: np.ndarray, exp: np.ndarray, year_i: np.ndarray, year_e: np.ndarray,  # type: ignore[no-untyped-def]
                a: date, b: date) -> dict[str, np.ndarray | Decimal]:
    """The quantity of each component per meter (kWh as Decimal per row, days, prorated months/years)."""
    from fractions import Fraction

    from kwartier.tariffs.cost import _period_fraction

    imp_total, exp_total = imp.sum(axis=1), exp.sum(axis=1)
    out: dict[str, np.ndarray | Decimal] = {}
    for comp in plan.components:
        spec = comp.spec
        if spec.basis == "import_kwh" and spec.netted and plan.plan.netting == "annual":
            h = year_i - year_e
            out[spec.id] = np.maximum(0, h + imp_total - exp_total) - np.maximum(0, h)
        elif spec.basis in ("import_kwh", "export_kwh"):
            out[spec.id] = imp_total if spec.basis == "import_kwh" else exp_total
        elif spec.basis == "per_day":
            out[spec.id] = Decimal((b - a).days)
        elif spec.basis in ("per_month", "per_year"):
            f: Fraction = _period_fraction(a, b, spec.basis)
            out[spec.id] = Decimal(f.numerator) / Decimal(f.denominator)
    return out


def _settle_contracts(defn, first, end, starts, imp, exp, before, index, market, history, tz):  # type: ignore[no-untyped-def]
    """The engine's amounts per meter and component: one engine call per plan version and part of the month."""
    lines: list[_Line] = []
    local_days = starts.dt.convert_time_zone(tz).dt.date().to_numpy()
    groups: dict[tuple[str, date, date], list] = defaultdict(list)
    for contract in defn.spec.contracts:
        a = max(first, contract.valid_from)
        b = min(end, contract.valid_to) if contract.valid_to else end
        if a < b and contract.target in index:
            groups[(defn.plan_texts[contract.id].sha256, a, b)].append(contract)
    for (sha, a, b), contracts in groups.items():
        plan = defn.plans[contracts[0].id]
        cols = np.nonzero((local_days >= a) & (local_days < b))[0]
        rows = np.array([index[c.target] for c in contracts])
        year_i = np.array([before.get(c.target, (0, 0))[0] for c in contracts], dtype=np.int64)
        year_e = np.array([before.get(c.target, (0, 0))[1] for c in contracts], dtype=np.int64)
        if cols[0] > 0:  # a contract starting mid-month: the month's earlier days count for the year
            year_i += imp[rows, : cols[0]].sum(axis=1)
            year_e += exp[rows, : cols[0]].sum(axis=1)
        shares = _derived_shares(plan, contracts, history, market, a, b)
        energy = PeriodEnergy(a, b, starts.gather(cols), imp[np.ix_(rows, cols)], exp[np.ix_(rows, cols)],
                              year_i, year_e, shares)
        amounts = settle_plan(plan, energy, market)
        quantities = _quantities(plan, energy.import_wh, energy.export_wh, year_i, year_e, a, b)
        for k, contract in enumerate(contracts):
            participant = defn.participant_of(contract.target).id
            for comp in plan.components:
                spec = comp.spec
                q = quantities.get(spec.id, Decimal(0))
                qty = Decimal(int(q[k])).scaleb(-3) if isinstance(q, np.ndarray) else q
                fixed_price = (str(comp.price.evaluate(plan.env_constants()))
                               if spec.basis in ("per_day", "per_month", "per_year") and comp.price else None)
                lines.append(_Line(participant, contract.target, spec.id, defn.payee_party(contract, spec.payee),
                                   contract.supplier, spec.vat, plan.plan.vat_rate, int(amounts[spec.id][k]),
                                   contract.id, sha, spec.payee, qty, spec.unit, fixed_price))
    return lines


def _derived_shares(plan, contracts, history: pl.DataFrame, market: pl.DataFrame, a: date, b: date  # type: ignore[no-untyped-def]
                    ) -> dict[str, np.ndarray] | None:
    """Per-contract values of the plan's derived series (e.g. the JEM tax share), in nano units."""
    if not any(s.kind == "derived" for s in plan.plan.series):
        return None
    by_meter = {str(k[0]): v.drop("connection") for k, v in history.group_by(["connection"])}
    out: dict[str, list[int]] = defaultdict(list)
    for contract in contracts:
        empty = history.head(0).drop("connection")
        derived = derive_series(plan, by_meter.get(contract.target, empty), market, a, b)
        for sid, values in derived.items():
            default = next(s.default for s in plan.plan.series if s.id == sid)
            out[sid].append(int(values["value"][0]) if values.height else int((default or 0) * NANO))
    return {sid: np.array(v, dtype=np.int64) for sid, v in out.items()}


def _postings(conn: Connection, defn, period: str, lines: list[_Line], fps: dict[str, str], price_fp: str
              ) -> list[ledger.Posting]:  # type: ignore[no-untyped-def]
    """Cent-rounded lines plus VAT, minus what the journal already holds for each: the postings to add."""
    wanted: dict[tuple[str, str | None, str], tuple[str, int, dict[str, object]]] = {}
    vat_base: dict[tuple[str, str, Decimal], list[int]] = defaultdict(list)
    merged: dict[tuple[str, str, str, str], int] = defaultdict(int)
    qty: dict[tuple[str, str, str, str], Decimal] = defaultdict(Decimal)
    meta: dict[tuple[str, str, str, str], _Line] = {}
    for ln in lines:  # a contract change mid-month gives two parts of one line: add them before rounding
        key = (ln.participant, ln.meter, ln.component, ln.payee)
        merged[key] += ln.nano
        qty[key] += ln.quantity
        meta[key] = ln
    for key, nano in merged.items():
        ln = meta[key]
        cents = nano_to_cents(nano)
        quantity = qty[key] if ln.unit != "%" else Decimal(0)
        inputs = {"contract": ln.contract, "plan": ln.plan_sha, "readings": fps.get(ln.meter, "0" * 16),
                  "prices": price_fp, "role": ln.role, "supplier": ln.supplier, "vat": ln.vat,
                  "quantity": str(quantity.quantize(Decimal("0.0001")) if ln.unit in ("month", "year") else quantity),
                  "unit": ln.unit, **({"unit_price": ln.unit_price} if ln.unit_price else {})}
        wanted[(ln.participant, ln.meter, f"{ln.component}@{ln.payee}")] = (ln.payee, cents * NANO_PER_CENT, inputs)
        if ln.vat:
            vat_base[(ln.participant, ln.supplier, ln.vat_rate)].append(cents)
    tax_party = _tax_party(defn)
    for (participant, supplier, rate), cents_list in vat_base.items():
        vat = vat_cents({rate: cents_list})[rate]
        wanted[(participant, None, f"vat:{supplier}:{rate}")] = (tax_party, vat * NANO_PER_CENT,
                                                                {"rate": str(rate), "supplier": supplier})
    posted = _posted(conn, period)
    out = []
    for (participant, meter, comp_key), (payee, amount, inputs) in sorted(wanted.items(), key=lambda kv: (
            kv[0][0], kv[0][1] or "", kv[0][2])):
        old, old_inputs = posted.get((participant, meter, comp_key), (0, None))
        delta = amount - old
        if delta == 0:
            continue
        kind = "settlement" if old_inputs is None else "correction"
        if kind == "correction":
            changed = sorted(k for k in inputs if old_inputs.get(k) != inputs.get(k)) or ["rounding"]
            inputs = {**inputs, "corrects": old_inputs, "changed": changed}
        out.append(ledger.Posting(period, kind, participant, payee, delta, meter, comp_key, inputs))
    for key, (old, old_inputs) in posted.items():  # a line that disappeared (e.g. a contract removed)
        if key not in wanted and old != 0:
            participant, meter, comp_key = key
            payee = comp_key.split("@")[-1] if "@" in comp_key else tax_party
            out.append(ledger.Posting(period, "correction", participant, payee, -old, meter, comp_key,
                                      {"corrects": old_inputs, "changed": ["removed"]}))
    return out


def _tax_party(defn) -> str:  # type: ignore[no-untyped-def]
    """The party that receives VAT: the one with role tax."""
    holders = [p.id for p in defn.spec.parties if "tax" in p.roles]
    if len(holders) != 1:
        raise SettleError(f"VAT needs exactly one party with role tax; the community has {len(holders)}")
    return holders[0]


def _posted(conn: Connection, period: str) -> dict[tuple[str, str | None, str], tuple[int, dict | None]]:
    """Signed amount per (participant, meter, component@payee) already in the journal for the period."""
    j = schema.journal
    out: dict[tuple[str, str | None, str], tuple[int, dict | None]] = {}
    for row in conn.execute(select(j.c.participant, j.c.connection, j.c.component, j.c.debit, j.c.amount_nano,
                                   j.c.inputs).where(j.c.period == period,
                                                     j.c.kind.in_(("settlement", "correction"))).order_by(j.c.seq)):
        sign = 1 if row.debit == f"participant:{row.participant}" else -1
        key = (row.participant, row.connection, row.component)
        total, _ = out.get(key, (0, None))
        inputs = {k: v for k, v in row.inputs.items() if k not in ("corrects", "changed")}
        out[key] = (total + sign * int(row.amount_nano), inputs)
    return out


def _totals(conn: Connection, period: str, summary: SettleSummary) -> None:
    j = schema.journal
    rows = conn.execute(select(j.c.participant, j.c.payee, j.c.debit, j.c.amount_nano)
                        .where(j.c.period == period)).all()
    summary.postings = len(rows)
    for participant, payee, debit, amount in rows:
        signed = int(amount) if debit == f"participant:{participant}" else -int(amount)
        summary.debit_total_nano += int(amount)
        summary.credit_total_nano += int(amount)
        summary.by_participant[participant] = summary.by_participant.get(participant, 0) + signed
        summary.by_payee[payee] = summary.by_payee.get(payee, 0) + signed

