"""A month's community sharing from stored readings, its KPIs, and its settlement in the ledger.

:func:`compute_sharing` reads the community definition in force, the month's current readings of
every participant's connections (summed per participant; metering points are behind a connection,
so already in its readings; a missing reading counts as 0 and is noted) and the rules in force.
When the governance service knows of rulebook versions, each span of the month is shared under the
version in force for it, and only members during a quarter share in that quarter; otherwise the
given (or the default) rulebook is used for the whole month and every participant is a member.

:func:`post_sharing` posts the result through the community's account (the one party with role
``community``): a member pays it for the community kWh it took (``community_share``), is paid for
the kWh it gave (``community_sale``), and the solidarity lines (``solidarity_reduction``,
``solidarity_levy``). Lines are cents, rounded once each so that they add up to the rounded total
(see ``pricing.balanced_cents``). Postings are the difference with what the journal already holds
for those lines, of kind ``share`` (first time) or ``share_correction``: a second run with the
same inputs posts nothing. The lines name the community party as ``supplier`` and role ``community``,
so the bill run puts them on an invoice from the community to the member.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

import numpy as np
import polars as pl
from sqlalchemy import Connection, Engine, insert, select, update

from kwartier.community.kpis import Kpis, kpis
from kwartier.community.pricing import ShareSettlement, balanced_cents, reference_prices, settle_shares
from kwartier.community.rules import Rulebook, default_rulebook
from kwartier.community.sharing import Allocation, SharingError, share
from kwartier.money import NANO_PER_CENT
from kwartier.settle import ledger
from kwartier.store import schema
from kwartier.timegrid import interval_starts, local_period_bounds

KINDS = ("share", "share_correction")  # the journal kind column holds 16 characters


class SharingServiceError(ValueError):
    """A period whose sharing cannot be computed or posted (no definition, no community party, bad keys)."""


@dataclass(frozen=True)
class RuleSpanUsed:
    """A stretch ``[start, stop)`` of the period shared under one rulebook (its version and digest)."""

    start: datetime
    stop: datetime
    version: int
    digest: str


@dataclass
class SharingResult:
    """A period's sharing: the allocation, what members pay and receive, the KPIs and the rules used."""

    period: str
    starts: pl.Series
    allocation: Allocation
    money: ShareSettlement
    kpis: Kpis
    rules: list[RuleSpanUsed]
    connections: dict[str, str]  # participant -> the connection EAN its community lines are posted on
    timezone: str = "Europe/Amsterdam"  # the community's: local days and the CSV's local times
    notes: list[str] = field(default_factory=list)

    def digest(self) -> str:
        """SHA-256 of the allocation, the money per member and the rules used: the same inputs, the same digest."""
        doc = {"allocation": self.allocation.digest(), "rules": [r.digest for r in self.rules],
               "money": {f"{p}|{c}": v for (p, c), v in sorted(self.money.lines_nano().items())}}
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
    money: list[ShareSettlement] = []
    supply_all, feed_all = np.zeros(starts.len(), np.int64), np.zeros(starts.len(), np.int64)
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
        supply, feed_in = reference_prices(rb.price, b - a)
        supply_all[a:b], feed_all[a:b] = supply, feed_in
        money.append(settle_shares(part, rb, supply, feed_in))
    alloc = Allocation(people, prod, cons, community, shared_out)
    total = _sum_money(money)
    return SharingResult(period, starts, alloc, total, kpis(alloc, total, supply_all, feed_all),
                         [u for u, _ in spans], {p: v[0] for p, v in conns.items() if v}, defn.community.timezone,
                         notes)


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


@dataclass
class PostSummary:
    """What :func:`post_sharing` did."""

    period: str
    digest: str
    lines: int
    new_postings: int
    by_participant: dict[str, int]  # cents per participant over the period's sharing lines

    def to_json(self) -> dict[str, object]:
        return {"period": self.period, "digest": self.digest, "lines": self.lines, "new_postings": self.new_postings,
                "by_participant_cents": self.by_participant}


def _community_party(defn) -> str:  # type: ignore[no-untyped-def]
    holders = [p.id for p in defn.spec.parties if "community" in p.roles]
    if len(holders) != 1:
        raise SharingServiceError(f"community sharing is settled through the community's account: the definition "
                                  f"needs exactly one party with role community (it has {len(holders)})")
    return holders[0]


def _quantity(result: SharingResult, participant: str, component: str) -> tuple[str, str]:
    i = result.allocation.participants.index(participant)
    if component in ("community_share", "solidarity_reduction"):
        return _kwh(int(result.allocation.community_wh[i].sum())), "kWh"
    if component == "community_sale":
        return _kwh(-int(result.allocation.shared_out_wh[i].sum())), "kWh"
    return "0", ""


def _posted_lines(conn: Connection, period: str) -> dict[tuple[str, str], tuple[int, dict]]:
    """Signed nano-euros per (participant, component@payee) of this period's sharing entries in the journal."""
    j = schema.journal
    out: dict[tuple[str, str], tuple[int, dict]] = {}
    for row in conn.execute(select(j.c.participant, j.c.component, j.c.debit, j.c.amount_nano, j.c.inputs)
                            .where(j.c.period == period, j.c.kind.in_(KINDS)).order_by(j.c.seq)):
        sign = 1 if row.debit == f"participant:{row.participant}" else -1
        total, _ = out.get((row.participant, row.component), (0, {}))
        latest = {k: v for k, v in (row.inputs or {}).items() if k != "corrects"}
        out[(row.participant, row.component)] = (total + sign * int(row.amount_nano), latest)
    return out


def post_sharing(engine: Engine, period: str, *, rulebook: Rulebook | None = None,
                 dynamic_keys: pl.DataFrame | None = None) -> PostSummary:
    """Compute the period's sharing and post what the journal does not hold yet (idempotent)."""
    from kwartier.services.community import current_definition

    result = compute_sharing(engine, period, rulebook=rulebook, dynamic_keys=dynamic_keys)
    party = _community_party(current_definition(engine))
    cents = balanced_cents(result.money.lines_nano())
    rules = ",".join(f"v{r.version}:{r.digest[:16]}" for r in result.rules)
    wanted: dict[tuple[str, str], tuple[int, dict]] = {}
    for (participant, comp), c in cents.items():
        qty, unit = _quantity(result, participant, comp)
        wanted[(participant, f"{comp}@{party}")] = (c * NANO_PER_CENT, {
            "supplier": party, "role": "community", "vat": False, "quantity": qty, "unit": unit,
            "rules": rules, "allocation": result.allocation.digest()})
    with engine.begin() as conn:
        posted = _posted_lines(conn, period)
        postings = []
        for key in sorted(set(wanted) | set(posted)):
            amount, inputs = wanted.get(key, (0, {}))
            old, old_inputs = posted.get(key, (0, None))
            if amount == old:
                continue
            kind = KINDS[0] if old_inputs is None else KINDS[1]
            if old_inputs is not None:
                inputs = {**(inputs or old_inputs), "corrects": old_inputs}
            participant, comp = key
            postings.append(ledger.Posting(period, kind, participant, party, amount - old,
                                           result.connections.get(participant), comp, inputs))
        new = 0
        if postings:
            inserted = conn.execute(insert(schema.settle_runs).values(
                period=period, started_at=datetime.now(UTC), summary={})).inserted_primary_key
            assert inserted is not None
            run_id = int(inserted[0])
            new = ledger.append(conn, postings, run_id)
            n, head = ledger.head(conn)
            conn.execute(update(schema.settle_runs).where(schema.settle_runs.c.id == run_id).values(
                summary={"kind": "sharing", "digest": result.digest(), "new_postings": new,
                         "journal": {"entries": n, "head": head}}))
    by: dict[str, int] = {}
    for (participant, _), c in cents.items():
        by[participant] = by.get(participant, 0) + c
    return PostSummary(period, result.digest(), len(cents), new, dict(sorted(by.items())))


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
