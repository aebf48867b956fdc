"""Shared energy into the ledger: per member and supplier the differential lines (the complement model),
the VAT that keeps each invoice's VAT at rate x base, and the solidarity lines; only differences are posted."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

import polars as pl
from sqlalchemy import Connection, Engine, exists, insert, select, update

from kwartier.community.pricing import (
    balanced_cents,
)
from kwartier.community.rules import Rulebook
from kwartier.money import NANO_PER_CENT, nano_to_cents, vat_cents
from kwartier.services.sharing import (
    KINDS,
    SETTLED_KINDS,
    LineKey,
    SharingResult,
    SharingServiceError,
    _kwh,
    compute_sharing,
)
from kwartier.settle import ledger
from kwartier.store import schema


@dataclass
class PostSummary:
    """What :func:`post_sharing` did."""

    period: str
    digest: str
    lines: int
    new_postings: int
    by_participant: dict[str, int]  # cents per participant over the period's sharing lines (VAT included)
    by_payee: dict[str, int] = field(default_factory=dict)  # cents per payee (what the participants owe it)

    def to_json(self) -> dict[str, object]:
        return {"period": self.period, "digest": self.digest, "lines": self.lines, "new_postings": self.new_postings,
                "by_participant_cents": self.by_participant, "by_payee_cents": self.by_payee}


def _community_party(defn) -> str:  # type: ignore[no-untyped-def]
    holders = [p.id for p in defn.spec.parties if "community" in p.roles]
    if len(holders) != 1:
        raise SharingServiceError(f"the solidarity fund goes through the community's account: the definition "
                                  f"needs exactly one party with role community (it has {len(holders)})")
    return holders[0]


def _tax_party(defn) -> str:  # type: ignore[no-untyped-def]
    holders = [p.id for p in defn.spec.parties if "tax" in p.roles]
    if len(holders) != 1:
        raise SharingServiceError(f"the VAT on shared energy goes to the party with role tax: the definition needs "
                                  f"exactly one (it has {len(holders)})")
    return holders[0]


def settled_vat_base(conn: Connection, period: str, upto_seq: int | None = None) -> dict[tuple[str, str], int]:
    """Cents per (participant, supplier) of the VAT-able lines the settlement posted for ``period``.

    ``upto_seq``: only journal entries up to that sequence number (to see the journal as a past run saw it).
    """
    j = schema.journal
    stmt = select(j.c.participant, j.c.debit, j.c.amount_nano, j.c.inputs).where(
        j.c.period == period, j.c.kind.in_(SETTLED_KINDS), ~j.c.component.like("vat:%"))
    if upto_seq is not None:
        stmt = stmt.where(j.c.seq <= upto_seq)
    out: dict[tuple[str, str], int] = {}
    for row in conn.execute(stmt):
        inputs = row.inputs or {}
        line = inputs if "vat" in inputs else (inputs.get("corrects") or {})  # a removed line: its last inputs
        if not line.get("vat") or not line.get("supplier"):
            continue
        sign = 1 if row.debit == f"participant:{row.participant}" else -1
        key = (row.participant, str(line["supplier"]))
        out[key] = out.get(key, 0) + sign * int(row.amount_nano) // NANO_PER_CENT
    return out


def _supplier_lines(result: SharingResult, common: dict[str, object]
                    ) -> dict[LineKey, tuple[str, int, dict[str, object]]]:
    """The differential lines per (participant, supplier), parts of one line under several plans added first."""
    d, tariffs = result.differential, result.prices.tariffs
    merged: dict[tuple[str, str, str], list] = {}
    for i, p in enumerate(result.allocation.participants):
        for k, t in enumerate(tariffs):
            for comp, nano, wh, vat in (("shared_supply", d.take_nano[i, k], d.take_wh[i, k], t.supply_vat),
                                        ("shared_feed_in", d.give_nano[i, k], d.give_wh[i, k], t.feed_in_vat)):
                if wh or nano:
                    line = merged.setdefault((p, t.supplier, comp), [0, 0, set(), set(), set()])
                    line[0] += int(nano)
                    line[1] += int(wh)
                    line[2].add(vat)
                    line[3].add(t.vat_rate)
                    line[4].add(t.plan)
    out: dict[LineKey, tuple[str, int, dict[str, object]]] = {}
    for (p, supplier, comp), (nano, wh, vats, rates, plans) in sorted(merged.items()):
        if len(vats) > 1 or len(rates) > 1:
            raise SharingServiceError(f"participant {p}: the plans of supplier {supplier} this month differ in VAT "
                                      f"on {comp}; one line cannot carry both")
        out[(p, result.connections.get(p), f"{comp}@{supplier}")] = (supplier, nano_to_cents(nano) * NANO_PER_CENT, {
            "supplier": supplier, "role": "community", "vat": vats.pop(), "vat_rate": str(rates.pop()),
            "quantity": _kwh(wh), "unit": "kWh", "plans": sorted(plans), **common})
    return out


def _vat_lines(conn: Connection, period: str, defn, lines: dict[LineKey, tuple[str, int, dict[str, object]]],  # type: ignore[no-untyped-def]
               upto_seq: int | None) -> dict[LineKey, tuple[str, int, dict[str, object]]]:
    """Per (participant, supplier): the VAT that makes the invoice's VAT the rate times its whole VAT-able base."""
    shared: dict[tuple[str, str], tuple[int, Decimal]] = {}
    for (p, _, _), (supplier, nano, inputs) in lines.items():
        if inputs["vat"]:
            cents, _ = shared.get((p, supplier), (0, Decimal(0)))
            shared[(p, supplier)] = (cents + nano // NANO_PER_CENT, Decimal(str(inputs["vat_rate"])))
    settled = settled_vat_base(conn, period, upto_seq) if shared else {}
    out: dict[LineKey, tuple[str, int, dict[str, object]]] = {}
    for (p, supplier), (b, rate) in sorted(shared.items()):
        a = settled.get((p, supplier), 0)
        top = vat_cents({rate: [a + b]})[rate] - vat_cents({rate: [a]})[rate]
        out[(p, None, f"vat:{supplier}:{rate}")] = (_tax_party(defn), top * NANO_PER_CENT, {
            "rate": str(rate), "supplier": supplier, "settled_base_cents": a, "shared_base_cents": b})
    return out


def _solidarity_lines(result: SharingResult, defn, common: dict[str, object]  # type: ignore[no-untyped-def]
                      ) -> dict[LineKey, tuple[str, int, dict[str, object]]]:
    """The solidarity lines through the community's account, balanced so that the account is off < 1 cent."""
    lines = result.money.solidarity_lines_nano()
    if not lines:
        return {}
    party = _community_party(defn)
    out: dict[LineKey, tuple[str, int, dict[str, object]]] = {}
    for (p, comp), c in balanced_cents(lines).items():
        qty, unit = _quantity(result, p, comp)
        out[(p, result.connections.get(p), f"{comp}@{party}")] = (party, c * NANO_PER_CENT, {
            "supplier": party, "role": "community", "vat": False, "quantity": qty, "unit": unit, **common})
    return out


def ledger_lines(conn: Connection, period: str, result: SharingResult, defn, *,  # type: ignore[no-untyped-def]
                 upto_seq: int | None = None) -> dict[LineKey, tuple[str, int, dict[str, object]]]:
    """What the journal must hold for the period's sharing: per line, the payee, signed nano-euros (whole cents;
    positive = the participant pays) and the inputs. The VAT lines depend on the settlement in the journal (up to
    ``upto_seq``). Raises SharingServiceError when the month was priced by the rulebook's constants."""
    if result.prices.problem:
        raise SharingServiceError(f"{period}: shared energy is posted at the plans' prices only; "
                                  f"{result.prices.problem}")
    common: dict[str, object] = {"rules": ",".join(f"v{r.version}:{r.digest[:16]}" for r in result.rules),
                                 "allocation": result.allocation.digest()}
    lines = _supplier_lines(result, common)
    return {**lines, **_vat_lines(conn, period, defn, lines, upto_seq), **_solidarity_lines(result, defn, common)}


def _quantity(result: SharingResult, participant: str, component: str) -> tuple[str, str]:
    i = result.allocation.participants.index(participant)
    if component == "solidarity_reduction":
        return _kwh(int(result.allocation.community_wh[i].sum())), "kWh"
    return "0", ""


def _posted_lines(conn: Connection, period: str) -> dict[LineKey, tuple[int, dict, str]]:
    """Signed nano-euros, last inputs and payee per line of this period's sharing entries in the journal."""
    j = schema.journal
    out: dict[LineKey, tuple[int, dict, str]] = {}
    for row in conn.execute(select(j.c.participant, j.c.connection, j.c.component, j.c.payee, j.c.debit,
                                   j.c.amount_nano, j.c.inputs)
                            .where(j.c.period == period, j.c.kind.in_(KINDS)).order_by(j.c.seq)):
        sign = 1 if row.debit == f"participant:{row.participant}" else -1
        key = (row.participant, row.connection, row.component)
        total = out.get(key, (0, {}, ""))[0]
        latest = {k: v for k, v in (row.inputs or {}).items() if k != "corrects"}
        out[key] = (total + sign * int(row.amount_nano), latest, row.payee)
    return out


def _is_settled(conn: Connection, period: str) -> bool:
    j = schema.journal
    return bool(conn.execute(select(exists().where(j.c.period == period, j.c.kind.in_(SETTLED_KINDS)))).scalar())


def post_sharing(engine: Engine, period: str, *, rulebook: Rulebook | None = None,
                 dynamic_keys: pl.DataFrame | None = None) -> PostSummary:
    """Compute the period's sharing and post what the journal does not hold yet (idempotent).

    The month must be settled first: the lines correct what the suppliers settled.
    """
    from kwartier.services.community import current_definition

    result = compute_sharing(engine, period, rulebook=rulebook, dynamic_keys=dynamic_keys)
    defn = current_definition(engine)
    with engine.begin() as conn:
        if not _is_settled(conn, period):
            raise SharingServiceError(f"{period} is not settled: run kwartier settle --period {period} first (the "
                                      "sharing lines correct what the suppliers settled)")
        wanted = ledger_lines(conn, period, result, defn)
        posted = _posted_lines(conn, period)
        postings = []
        for key in sorted(set(wanted) | set(posted), key=lambda k: (k[0], k[1] or "", k[2])):
            payee, amount, inputs = wanted.get(key, ("", 0, {}))
            old, old_inputs, old_payee = posted.get(key, (0, None, ""))
            if amount == old:
                continue
            kind = KINDS[0] if old_inputs is None else KINDS[1]
            if old_inputs is not None:
                inputs = {**(inputs or old_inputs), "corrects": old_inputs}
            participant, connection, comp = key
            postings.append(ledger.Posting(period, kind, participant, payee or old_payee, amount - old, connection,
                                           comp, inputs))
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
    by_payee: dict[str, int] = {}
    for (participant, _, _), (payee, nano, _) in wanted.items():
        by[participant] = by.get(participant, 0) + nano // NANO_PER_CENT
        by_payee[payee] = by_payee.get(payee, 0) + nano // NANO_PER_CENT
    return PostSummary(period, result.digest(), sum(1 for v in wanted.values() if v[1]), new, dict(sorted(by.items())),
                       dict(sorted(by_payee.items())))
