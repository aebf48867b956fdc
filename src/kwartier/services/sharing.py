"""A month's community sharing from stored readings, its KPIs, and its settlement in the ledger.

:func:`compute_sharing` reads the community definition in force, the month's current readings of
every participant's connections (summed per participant; metering points are behind a connection,
so already in its readings; a missing reading counts as 0 and is noted) and the rules in force.
When the governance service knows of rulebook versions, each span of the month is shared under the
version in force for it, and only members during a quarter share in that quarter; otherwise the
given (or the default) rulebook is used for the whole month and every participant is a member.

Prices: each member's supply price S and feed-in price F per quarter come from the plan of the
contract on its main connection (its first EAN) in force that day, from the stored fixed day-ahead
prices (``community.pricing.supplier_prices``). When the plans cannot price the month (prices not
imported, a quarter without a contract), the rulebook's reference constants stand in, a note says
why, and the month cannot be posted.

:func:`kwartier.services.sharing_ledger.post_sharing` posts, on a settled month, the lines that
turn the settlement (full import billed, full export paid by each member's supplier) into
collective self-consumption: per member
and supplier a ``shared_supply`` line (``e x (C - S)``: the supplier takes back the supply price of
the kWh the member took from the community and charges the community price instead) and a
``shared_feed_in`` line (``f x (F - C)``: the supplier pays the community price instead of the
feed-in price for the kWh the member gave), each rounded once to cents, with the plan's VAT flag,
plus a VAT line that brings that supplier's VAT to the rate times the invoice's whole VAT-able base;
and, through the community's account (the one party with role ``community``), the solidarity lines.
Postings are the difference with what the journal already holds for those lines, of kind ``share``
(first time) or ``share_correction``: a second run with the same inputs posts nothing, and after a
settle correction a new run brings the VAT line in step. The supplier lines carry the supplier and
role ``community``, so the bill run puts them on the supplier's invoice under the community heading.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from decimal import Decimal

import numpy as np
import polars as pl
from sqlalchemy import Connection, Engine

from kwartier.community.kpis import Kpis, gini, kpis
from kwartier.community.pricing import (
    PricingError,
    ShareSettlement,
    SupplierDifferential,
    SupplierPrices,
    community_price_ueur,
    member_savings_nano,
    reference_prices,
    settle_shares,
    shared_reference,
    supplier_differential,
    supplier_prices,
)
from kwartier.community.rules import Rulebook, default_rulebook
from kwartier.community.sharing import Allocation, SharingError, share
from kwartier.timegrid import interval_starts, local_period_bounds

KINDS = ("share", "share_correction")  # the journal kind column holds 16 characters
SETTLED_KINDS = ("settlement", "correction")
LineKey = tuple[str, str | None, str]  # participant, connection (None for VAT), component@payee or vat:supplier:rate


class SharingServiceError(ValueError):
    """A period whose sharing cannot be computed or posted (no definition, no community party, bad keys)."""


@dataclass(frozen=True)
class RuleSpanUsed:
    """A stretch ``[start, stop)`` of the period shared under one rulebook (its version and digest)."""

    start: datetime
    stop: datetime
    version: int
    digest: str


@dataclass(frozen=True)
class Tariff:
    """A supplier and the plan (text SHA-256) its lines are priced by; ``plan == "rulebook"``: the constants."""

    supplier: str
    plan: str
    vat_rate: Decimal
    supply_vat: bool
    feed_in_vat: bool


@dataclass(frozen=True, eq=False)
class MemberPrices:
    """Per member x quarter: S and F (uEUR/kWh) and the index of the tariff in force (-1: no contract)."""

    supply_ueur_per_kwh: np.ndarray
    feed_in_ueur_per_kwh: np.ndarray
    tariff: np.ndarray
    tariffs: tuple[Tariff, ...]
    problem: str | None = None  # why the plans could not price the month (then the rulebook's constants did)


@dataclass
class SharingResult:
    """A period's sharing: the allocation, what members pay and receive, the KPIs and the rules used."""

    period: str
    starts: pl.Series
    allocation: Allocation
    money: ShareSettlement  # at the community (base) price, with the solidarity lines
    kpis: Kpis
    rules: list[RuleSpanUsed]
    connections: dict[str, str]  # participant -> the connection EAN its community lines are posted on
    prices: MemberPrices
    base_ueur_per_kwh: np.ndarray  # the community price C per quarter
    differential: SupplierDifferential  # the lines with the suppliers
    timezone: str = "Europe/Amsterdam"  # the community's: local days and the CSV's local times
    notes: list[str] = field(default_factory=list)

    def digest(self) -> str:
        """SHA-256 of the allocation, the rules, the prices and the money per member: same inputs, same digest."""
        d = self.differential
        supplier = {f"{p}|{t.supplier}|{t.plan}": [int(d.take_nano[i, k]), int(d.give_nano[i, k])]
                    for i, p in enumerate(self.allocation.participants) for k, t in enumerate(self.prices.tariffs)
                    if d.take_wh[i, k] or d.give_wh[i, k]}
        doc = {"allocation": self.allocation.digest(), "rules": [r.digest for r in self.rules],
               "money": {f"{p}|{c}": v for (p, c), v in sorted(self.money.lines_nano().items())},
               "base": hashlib.sha256(np.ascontiguousarray(self.base_ueur_per_kwh, "<i8").tobytes()).hexdigest(),
               "supplier": supplier, "priced_by": "rulebook" if self.prices.problem else "plans"}
        return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()

    def to_json(self) -> dict[str, object]:
        """The ``kwartier community share --json`` document (energy as decimal kWh text)."""
        k = self.kpis
        members = [{"participant": p, "production_kwh": _kwh(t["production"]), "surplus_kwh": _kwh(t["surplus"]),
                    "consumption_kwh": _kwh(t["consumption"]), "community_kwh": _kwh(t["community"]),
                    "complement_kwh": _kwh(t["complement"])}
                   for p, t in zip(self.allocation.participants, self.allocation.member_totals(), strict=True)]
        return {"period": self.period, "production_kwh": _kwh(k.production_wh),
                "consumption_kwh": _kwh(k.consumption_wh), "shared_kwh": _kwh(k.shared_wh),
                "self_consumption": _ratio(k.self_consumption), "self_sufficiency": _ratio(k.self_sufficiency),
                "members": members}


def _kwh(wh: int) -> str:
    return str(Decimal(int(wh)).scaleb(-3))


def _ratio(v: Decimal | None) -> str:
    return "0" if v is None else str(v)


def _participants(defn) -> tuple[tuple[str, ...], dict[str, list[str]]]:  # type: ignore[no-untyped-def]
    """Participant ids (sorted) and each one's connection EANs (sorted)."""
    people = tuple(sorted(p.id for p in defn.spec.participants))
    conns: dict[str, list[str]] = {p: [] for p in people}
    for c in defn.spec.connections:
        conns[c.participant].append(c.ean)
    return people, {p: sorted(v) for p, v in conns.items()}


def _energy(conn: Connection, people: tuple[str, ...], conns: dict[str, list[str]], start: datetime,
            stop: datetime, starts: pl.Series) -> tuple[np.ndarray, np.ndarray, int]:
    """Per participant x quarter: export and import (Wh) summed over its connections; and how many
    (connection, quarter) pairs had no reading with both directions (counted as 0)."""
    from kwartier.services.settle import _matrices, _readings

    eans = [e for p in people for e in conns[p]]
    nq = starts.len()
    prod = np.zeros((len(people), nq), np.int64)
    cons = np.zeros((len(people), nq), np.int64)
    if not eans or nq == 0:
        return prod, cons, 0
    rows = _readings(conn, eans, start, stop).filter(pl.col("resolution") == "PT15M")
    imp, exp = _matrices(rows, eans, starts)
    complete = rows.filter(pl.col("import_wh").is_not_null() & pl.col("export_wh").is_not_null()).height
    owner = np.array([i for i, p in enumerate(people) for _ in conns[p]], dtype=np.int64)
    np.add.at(cons, owner, imp)
    np.add.at(prod, owner, exp)
    return prod, cons, len(eans) * nq - complete


def _spans(engine: Engine, start: datetime, stop: datetime, rulebook: Rulebook | None
           ) -> tuple[list[tuple[RuleSpanUsed, Rulebook]], bool]:
    """The rulebook per stretch of the period, and whether the governance service supplied them."""
    if rulebook is not None:
        return [(RuleSpanUsed(start, stop, 0, rulebook.digest()), rulebook)], False
    try:
        from kwartier.services.governance import rule_spans
    except ImportError:  # no governance in this installation: the default rules
        rb = default_rulebook()
        return [(RuleSpanUsed(start, stop, 0, rb.digest()), rb)], False
    return [(RuleSpanUsed(s.start, s.stop, s.version.version, s.version.digest), s.version.rulebook)
            for s in rule_spans(engine, start, stop)], True


def _members(engine: Engine, people: tuple[str, ...], starts: pl.Series) -> np.ndarray | None:
    """Who is a member in each quarter (bool, participants x quarters), or None when memberships are not kept."""
    try:
        from kwartier.services.governance import membership_mask, memberships
    except ImportError:
        return None
    with engine.connect() as conn:
        if not memberships(conn):  # nobody's membership recorded: everybody in the definition takes part
            return None
    return membership_mask(engine, list(people), starts)


def _sum_money(parts: list[ShareSettlement]) -> ShareSettlement:
    first = parts[0]
    if len(parts) == 1:
        return first
    funded = sorted({p.funded_by for p in parts})

    def total(name: str) -> np.ndarray:
        return np.sum([getattr(p, name) for p in parts], axis=0).astype(np.int64)

    return ShareSettlement(first.participants, total("bought_nano"), total("sold_nano"), total("reduction_nano"),
                           total("levy_nano"), sum(p.community_fund_nano for p in parts), "+".join(funded))


def _plan_prices(engine: Engine, defn, people: tuple[str, ...], conns: dict[str, list[str]],  # type: ignore[no-untyped-def]
                 first: date, end: date, start: datetime, stop: datetime, starts: pl.Series) -> MemberPrices:
    """S, F and the tariff per member and quarter from the plans of the contracts on the main connections."""
    from kwartier.services.prices import stored_prices

    market = stored_prices(engine, defn.community.zone, start - timedelta(hours=1), stop)
    local_days = starts.dt.convert_time_zone(defn.community.timezone).dt.date().to_numpy()
    shape = (len(people), starts.len())
    supply, feed_in = np.zeros(shape, np.int64), np.zeros(shape, np.int64)
    tariff = np.full(shape, -1, np.int64)
    tariffs: dict[Tariff, int] = {}
    by_plan: dict[str, SupplierPrices] = {}
    on: dict[str, list] = {}
    for c in defn.spec.contracts:
        on.setdefault(c.target, []).append(c)
    for i, p in enumerate(people):
        for c in on.get(conns[p][0], []) if conns[p] else []:
            a, b = max(first, c.valid_from), min(end, c.valid_to) if c.valid_to else end
            if a >= b:
                continue
            sha = defn.plan_texts[c.id].sha256
            if sha not in by_plan:
                by_plan[sha] = supplier_prices(defn.plans[c.id], market, start, stop, sha)
            sp = by_plan[sha]
            t = Tariff(c.supplier, sha, defn.plans[c.id].plan.vat_rate, sp.supply_vat, sp.feed_in_vat)
            cols = (local_days >= a) & (local_days < b)
            supply[i, cols] = sp.supply_ueur_per_kwh[cols]
            feed_in[i, cols] = sp.feed_in_ueur_per_kwh[cols]
            tariff[i, cols] = tariffs.setdefault(t, len(tariffs))
    return MemberPrices(supply, feed_in, tariff, tuple(tariffs))


def _require_contracts(prices: MemberPrices, alloc: Allocation, starts: pl.Series, conns: dict[str, list[str]]) -> None:
    """Refuse shared energy in a quarter without a contract: there is no supplier to settle it with."""
    bare = (prices.tariff < 0) & ((alloc.community_wh > 0) | (alloc.shared_out_wh > 0))
    if bare.any():
        i, q = (int(x[0]) for x in np.nonzero(bare))
        p = alloc.participants[i]
        raise PricingError(f"participant {p} shares energy in the quarter starting {starts[q]:%Y-%m-%d %H:%M}Z "
                           f"without a supply contract on its connection {(conns[p] or ['-'])[0]}")


def _rulebook_prices(parts: list[tuple[int, int, Rulebook, Allocation]], shape: tuple[int, int], problem: str
                     ) -> MemberPrices:
    """The rulebook's constant reference prices for every member: the fallback when the plans cannot price."""
    supply, feed_in = np.zeros(shape, np.int64), np.zeros(shape, np.int64)
    for a, b, rb, _ in parts:
        s, f = reference_prices(rb.price, b - a)
        supply[:, a:b], feed_in[:, a:b] = s, f
    return MemberPrices(supply, feed_in, np.zeros(shape, np.int64),
                        (Tariff("", "rulebook", Decimal(0), False, False),), problem)


def compute_sharing(engine: Engine, period: str, *, rulebook: Rulebook | None = None,
                    dynamic_keys: pl.DataFrame | None = None) -> SharingResult:
    """The sharing of the local month ``period`` (YYYY-MM); see the module text.

    ``rulebook`` overrides the rules in force for the whole month. ``dynamic_keys`` (columns
    ``interval_start`` (UTC), ``participant``, ``key`` (integer weight >= 0)) is needed by the
    ``dynamic`` rule; a (participant, quarter) without a key has weight 0.
    """
    from kwartier.community.definition import DefinitionError
    from kwartier.services.community import current_definition
    from kwartier.services.settle import SettleError, parse_period

    try:
        first, end = parse_period(period)
        defn = current_definition(engine)
    except (SettleError, DefinitionError) as exc:
        raise SharingServiceError(str(exc)) from None
    start, stop = local_period_bounds(first, end, defn.community.timezone)
    starts = interval_starts(start, stop)
    people, conns = _participants(defn)
    with engine.connect() as conn:
        prod, cons, missing = _energy(conn, people, conns, start, stop, starts)
    notes = [f"{missing} connection-quarter(s) without a reading count as 0 kWh (run kwartier settle first to "
             "estimate them)"] if missing else []
    spans, governed = _spans(engine, start, stop, rulebook)
    mask = _members(engine, people, starts) if governed else None
    keys = _key_matrix(dynamic_keys, people, starts) if dynamic_keys is not None else None
    epoch = starts.dt.epoch("us").to_numpy()
    community = np.zeros_like(cons)
    shared_out = np.zeros_like(prod)
    parts: list[tuple[int, int, Rulebook, Allocation]] = []
    for used, rb in spans:
        a, b = (int(np.searchsorted(epoch, int(t.timestamp() * 1_000_000))) for t in (used.start, used.stop))
        p, c = prod[:, a:b], cons[:, a:b]
        if mask is not None:  # a non-member's energy stays between it and its supplier
            p, c = p * mask[:, a:b], c * mask[:, a:b]
        try:
            part = share(people, p, c, rb, None if keys is None else keys[:, a:b])
        except SharingError as exc:
            raise SharingServiceError(f"{period} ({used.start:%Y-%m-%d %H:%M}Z on, rulebook version "
                                      f"{used.version}): {exc}") from None
        community[:, a:b], shared_out[:, a:b] = part.community_wh, part.shared_out_wh
        parts.append((a, b, rb, part))
    alloc = Allocation(people, prod, cons, community, shared_out)
    try:
        prices = _plan_prices(engine, defn, people, conns, first, end, start, stop, starts)
        _require_contracts(prices, alloc, starts, conns)
    except PricingError as exc:
        prices = _rulebook_prices(parts, prod.shape, str(exc))
        notes.append(f"priced at the rulebook's reference prices, not the plans' (so it cannot be posted): {exc}")
    base, supply_ref, feed_ref = (np.zeros(starts.len(), np.int64) for _ in range(3))
    money: list[ShareSettlement] = []
    for a, b, rb, part in parts:
        s, f = reference_prices(rb.price, b - a)
        supply_ref[a:b] = shared_reference(part.community_wh, prices.supply_ueur_per_kwh[:, a:b], s)
        feed_ref[a:b] = shared_reference(part.shared_out_wh, prices.feed_in_ueur_per_kwh[:, a:b], f)
        base[a:b] = community_price_ueur(rb.price, supply_ref[a:b], feed_ref[a:b])
        money.append(settle_shares(part, rb, supply_ref[a:b], feed_ref[a:b]))
    total = _sum_money(money)
    diff = supplier_differential(alloc, base, prices.supply_ueur_per_kwh, prices.feed_in_ueur_per_kwh,
                                 prices.tariff, len(prices.tariffs))
    saved = member_savings_nano(total, diff)
    k = replace(kpis(alloc, total, supply_ref, feed_ref), savings_nano=tuple(int(v) for v in saved),
                savings_gini=gini(saved))
    return SharingResult(period, starts, alloc, total, k, [u for u, _ in spans],
                         {p: v[0] for p, v in conns.items() if v}, prices, base, diff, defn.community.timezone, notes)


def _key_matrix(keys: pl.DataFrame, people: tuple[str, ...], starts: pl.Series) -> np.ndarray:
    """Dynamic keys as a participants x quarters matrix of integer weights."""
    need = {"interval_start", "participant", "key"}
    if not need <= set(keys.columns):
        raise SharingServiceError(f"dynamic keys need columns {', '.join(sorted(need))}; got {', '.join(keys.columns)}")
    unknown = sorted(set(keys["participant"].to_list()) - set(people))
    if unknown:
        raise SharingServiceError(f"dynamic keys name {', '.join(unknown[:5])}, who are not participants")
    if keys.height and int(keys["key"].min()) < 0:  # type: ignore[arg-type]
        raise SharingServiceError("dynamic keys must be >= 0")
    p_idx = pl.DataFrame({"participant": list(people), "m": np.arange(len(people))})
    q_idx = pl.DataFrame({"interval_start": starts, "q": np.arange(starts.len())})
    located = keys.with_columns(pl.col("interval_start").dt.convert_time_zone("UTC")).join(
        p_idx, on="participant").join(q_idx, on="interval_start")
    out = np.zeros((len(people), starts.len()), np.int64)
    out[located["m"].to_numpy(), located["q"].to_numpy()] = located["key"].cast(pl.Int64).to_numpy()
    return out


def read_dynamic_keys(path: str) -> pl.DataFrame:
    """A dynamic keys CSV: ``timestamp`` (ISO 8601 with offset or Z: the quarter's start), ``participant``, ``key``."""
    try:
        frame = pl.read_csv(path, schema_overrides={"participant": pl.String, "key": pl.Int64, "timestamp": pl.String})
        return frame.select(pl.col("timestamp").str.to_datetime(time_zone="UTC").alias("interval_start"),
                            "participant", "key")
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise SharingServiceError(f"{path}: cannot read dynamic keys (timestamp,participant,key): {exc}") from None


def allocation_csv(result: SharingResult, participant: str | None = None) -> str:
    """The allocation per member and quarter in the style of French collective self-consumption data.

    Columns (``;``-separated, energy in Wh): ``horodate`` (the quarter's start, local ISO 8601 with
    offset), ``participant``, ``consommation`` (import), ``autoconsommation`` (community share),
    ``complement`` (from the supplier), ``production`` (export), ``surplus`` (to the grid).
    """
    a = result.allocation
    rows = range(len(a.participants)) if participant is None else [_row(a, participant)]
    local = result.starts.dt.convert_time_zone(result.timezone).dt.strftime("%Y-%m-%dT%H:%M:%S%:z").to_list()
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=";", lineterminator="\n")
    w.writerow(["horodate", "participant", "consommation", "autoconsommation", "complement", "production",
                "surplus"])
    comp, surplus = a.complement_wh, a.surplus_wh
    for i in rows:
        pid = a.participants[i]
        for q, ts in enumerate(local):
            w.writerow([ts, pid, int(a.consumption_wh[i, q]), int(a.community_wh[i, q]), int(comp[i, q]),
                        int(a.production_wh[i, q]), int(surplus[i, q])])
    return buf.getvalue()


def _row(a: Allocation, participant: str) -> int:
    if participant not in a.participants:
        raise SharingServiceError(f"no participant {participant!r} in the community")
    return a.participants.index(participant)
