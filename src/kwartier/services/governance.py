"""The governed rulebook in the store: founding, proposals, votes, decisions, memberships, and the rules in force.

Every rulebook version, proposal, vote and membership change is written to its table and, in the
same transaction, as a ``record`` entry in the hash-chained journal (ids and digests only, never
personal data), so ``kwartier ledger verify`` proves none was changed afterwards. Decisions are
made lazily but deterministically: a proposal whose voting has closed is decided on the votes cast
before ``closes_at`` whenever the store is next asked (votes after closing are refused), so the
outcome never depends on when it is looked at.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl
from sqlalchemy import Connection, Engine, func, insert, select, update

from kwartier.community import governance as g
from kwartier.community.rules import Rulebook, default_rulebook, rulebook_from_data
from kwartier.settle import ledger
from kwartier.store import schema_governance as sg

SUBJECT = "governance"
DEFAULT_VOTING = timedelta(days=7)
FOUNDING = datetime(2000, 1, 1, tzinfo=UTC)  # the founding rulebook is in force from here unless told otherwise


def _now(now: datetime | None) -> datetime:
    return (now or datetime.now(UTC)).astimezone(UTC)


def _record(conn: Connection, participant: str, what: str, inputs: dict[str, Any], subject: str = SUBJECT) -> int:
    return ledger.append_records(conn, [ledger.Record(participant, subject, what, inputs)])[0]


# --- reading ------------------------------------------------------------------------------------------


def versions(conn: Connection) -> list[g.Version]:
    """Every recorded rulebook version, oldest first."""
    t = sg.rulebook_versions
    return [g.Version(r.version, r.effective_from, rulebook_from_data(r.rulebook, f"rulebook version {r.version}"),
                      r.digest, r.proposal_id)
            for r in conn.execute(select(t).order_by(t.c.version))]


def memberships(conn: Connection) -> list[g.Membership]:
    t = sg.memberships
    return [g.Membership(r.participant, r.joined_at, r.left_at)
            for r in conn.execute(select(t).order_by(t.c.id))]


def version_in_force(engine: Engine, at: datetime, *, now: datetime | None = None) -> g.Version:
    """The rulebook version in force at ``at`` (after deciding proposals whose voting has closed)."""
    decide_due(engine, now=now)
    with engine.connect() as conn:
        found = g.version_at(versions(conn), at)
    if found is None:
        rb = default_rulebook()
        return g.Version(0, FOUNDING, rb, rb.digest())  # nothing founded yet: the default, unrecorded
    return found


def rules_in_force(engine: Engine, at: datetime, *, now: datetime | None = None) -> Rulebook:
    """The rulebook in force at ``at`` (the default rulebook when none was founded)."""
    return version_in_force(engine, at, now=now).rulebook


def rule_spans(engine: Engine, start: datetime, stop: datetime, *, now: datetime | None = None) -> list[g.RuleSpan]:
    """``[start, stop)`` cut where a new version takes effect: settle each span under its own rules."""
    decide_due(engine, now=now)
    with engine.connect() as conn:
        found = versions(conn)
    if not found or g.version_at(found, start) is None:
        rb = default_rulebook()
        found = [g.Version(0, FOUNDING if not found else min(start, FOUNDING), rb, rb.digest()), *found]
    return g.spans(found, start, stop)


def members_at(engine: Engine, at: datetime) -> list[str]:
    with engine.connect() as conn:
        return g.members_at(memberships(conn), at)


def membership_mask(engine: Engine, participants: list[str], starts: pl.Series) -> np.ndarray:
    """Bool matrix (participants x quarters): who is a member during each quarter of ``starts`` (UTC)."""
    with engine.connect() as conn:
        found = memberships(conn)
    return g.membership_mask(found, participants, starts.dt.replace_time_zone(None).to_numpy())


# --- founding and membership --------------------------------------------------------------------------


def found(engine: Engine, rulebook: Rulebook | None = None, *, effective_from: datetime = FOUNDING,
          founder: str = "community", now: datetime | None = None) -> g.Version:
    """Record the first rulebook version and, from the community definition, the founding members.

    A participant is a member from the local midnight of its earliest contract start (or from
    ``effective_from`` when it has none). Raises GovernanceError when a rulebook was founded already.
    """
    from kwartier.services.community import current_definition

    rb = rulebook or default_rulebook()
    start = g.require_boundary(effective_from, "effective_from")
    defn = current_definition(engine)
    tz = ZoneInfo(defn.community.timezone)
    joined: dict[str, datetime] = {p.id: start for p in defn.spec.participants}
    first: dict[str, datetime] = {}
    for c in defn.spec.contracts:
        who = defn.participant_of(c.target).id
        at = datetime.combine(c.valid_from, time(), tz).astimezone(UTC)
        first[who] = min(first.get(who, at), at)
    joined.update(first)
    at_now = _now(now)
    with engine.begin() as conn:
        if conn.execute(select(func.count()).select_from(sg.rulebook_versions)).scalar_one():
            raise g.GovernanceError("the rulebook was founded already; change it with a proposal")
        people = sorted(joined.items())
        seqs = ledger.append_records(conn, [
            ledger.Record(founder, SUBJECT, "rulebook:v1", {"version": 1, "digest": rb.digest(),
                                                            "effective_from": start.isoformat()}),
            *(ledger.Record(who, "membership", "join", {"joined_at": at.isoformat()}) for who, at in people)])
        conn.execute(insert(sg.rulebook_versions).values(
            version=1, effective_from=start, rulebook=rb.to_json_data(), digest=rb.digest(), proposal_id=None,
            created_at=at_now, ledger_seq=seqs[0]))
        if people:
            conn.execute(insert(sg.memberships), [
                {"participant": who, "joined_at": at, "left_at": None, "recorded_at": at_now, "ledger_seq": seq}
                for (who, at), seq in zip(people, seqs[1:], strict=True)])
    return g.Version(1, start, rb, rb.digest())


def _insert_membership(conn: Connection, participant: str, at: datetime, now: datetime) -> None:
    seq = _record(conn, participant, "join", {"joined_at": at.isoformat()}, subject="membership")
    conn.execute(insert(sg.memberships).values(participant=participant, joined_at=at, left_at=None,
                                               recorded_at=now, ledger_seq=seq))


def _open_membership(conn: Connection, participant: str) -> Any:
    t = sg.memberships
    return conn.execute(select(t).where(t.c.participant == participant, t.c.left_at.is_(None))).first()


def join(engine: Engine, participant: str, at: datetime, *, now: datetime | None = None) -> None:
    """``participant`` becomes a member from the interval starting at ``at`` (a future quarter boundary)."""
    from kwartier.services.community import current_definition

    at = g.require_boundary(at, "joined_at")
    if participant not in {p.id for p in current_definition(engine).spec.participants}:
        raise g.GovernanceError(f"{participant} is not a participant of the community definition; load it first "
                                "(kwartier community load FILE)")
    if at < _now(now):
        raise g.GovernanceError(f"joined_at {at.isoformat()} is in the past; joining takes effect at a coming "
                                f"quarter, the next is {g.next_quarter_boundary(_now(now)).isoformat()}")
    with engine.begin() as conn:
        if _open_membership(conn, participant) is not None:
            raise g.GovernanceError(f"participant {participant} is a member already")
        _insert_membership(conn, participant, at, _now(now))


def leave(engine: Engine, participant: str, at: datetime, *, now: datetime | None = None) -> None:
    """``participant`` stops being a member at the interval start ``at`` (a future quarter boundary)."""
    at = g.require_boundary(at, "left_at")
    if at < _now(now):
        raise g.GovernanceError(f"left_at {at.isoformat()} is in the past; leaving takes effect at a coming quarter")
    t = sg.memberships
    with engine.begin() as conn:
        row = _open_membership(conn, participant)
        if row is None:
            raise g.GovernanceError(f"participant {participant} is not a member")
        if at <= row.joined_at:
            raise g.GovernanceError(f"left_at {at.isoformat()} is not after joined_at {row.joined_at.isoformat()}")
        seq = _record(conn, participant, "leave", {"left_at": at.isoformat(), "membership": row.id},
                      subject="membership")
        conn.execute(update(t).where(t.c.id == row.id).values(left_at=at, ledger_seq=seq))


# --- proposals and votes ------------------------------------------------------------------------------


def propose(engine: Engine, proposer: str, title: str, change: Mapping[str, Any], effective_from: datetime,
            closes_at: datetime | None = None, *, now: datetime | None = None) -> int:
    """Record a proposal to change the rulebook from ``effective_from``; return its id.

    Refused (GovernanceError) when the proposer is not a member, the change does not give a valid
    rulebook, or the timing breaks the rulebook's notice (see :func:`kwartier.community.governance.check_schedule`).
    """
    at_now = _now(now)
    decide_due(engine, now=at_now)
    effective_from = g.require_boundary(effective_from, "effective_from")
    closes = (closes_at or min(at_now + DEFAULT_VOTING, effective_from)).astimezone(UTC)
    with engine.begin() as conn:
        known = versions(conn)
        if not known:
            raise g.GovernanceError("no rulebook was founded yet: run kwartier governance found first")
        if proposer not in g.members_at(memberships(conn), at_now):
            raise g.GovernanceError(f"{proposer} is not a member now and cannot make a proposal")
        latest = g.in_order(known)[-1]
        settings = g.version_at(known, at_now) or latest
        g.check_schedule(effective_from, closes, at_now, settings.rulebook.governance, latest.effective_from)
        g.apply_change(latest.rulebook, change, f"proposal {title!r}")
        pid = int(conn.execute(insert(sg.proposals).values(
            proposer=proposer, title=title, change=dict(change), base_version=latest.version,
            effective_from=effective_from, closes_at=closes, created_at=at_now, status="open", ledger_seq=0,
        ).returning(sg.proposals.c.id)).scalar_one())
        seq = _record(conn, proposer, f"proposal:{pid}", {
            "proposal": pid, "change": g.change_digest(change), "base_version": latest.version,
            "effective_from": effective_from.isoformat(), "closes_at": closes.isoformat()})
        conn.execute(update(sg.proposals).where(sg.proposals.c.id == pid).values(ledger_seq=seq))
    return pid


def _votes(conn: Connection, pid: int) -> dict[str, str]:
    v = sg.votes
    return {r.voter: r.choice for r in conn.execute(select(v.c.voter, v.c.choice).where(v.c.proposal_id == pid))}


def _proposal(conn: Connection, pid: int) -> Any:
    row = conn.execute(select(sg.proposals).where(sg.proposals.c.id == pid)).first()
    if row is None:
        raise g.GovernanceError(f"no proposal {pid}")
    return row


def vote(engine: Engine, proposal_id: int, voter: str, choice: str, *, now: datetime | None = None) -> str:
    """Cast ``voter``'s final vote on a proposal; return the proposal's status afterwards."""
    at_now = _now(now)
    choice = g.check_choice(choice)
    decide_due(engine, now=at_now)
    with engine.begin() as conn:
        p = _proposal(conn, proposal_id)
        if p.status != "open" or at_now >= p.closes_at:
            raise g.GovernanceError(f"proposal {proposal_id} is {p.status if p.status != 'open' else 'closed'}: "
                                    f"voting closed at {p.closes_at.isoformat()}")
        if voter not in g.members_at(memberships(conn), p.created_at):
            raise g.GovernanceError(f"{voter} was not a member when proposal {proposal_id} was made and cannot vote")
        if voter in _votes(conn, proposal_id):
            raise g.GovernanceError(f"{voter} has voted on proposal {proposal_id} already; a vote is final")
        seq = _record(conn, voter, f"vote:{proposal_id}", {"proposal": proposal_id, "choice": choice})
        conn.execute(insert(sg.votes).values(proposal_id=proposal_id, voter=voter, choice=choice, cast_at=at_now,
                                             ledger_seq=seq))
        return _decide(conn, p, at_now, closed=False)


def decide_due(engine: Engine, *, now: datetime | None = None) -> list[tuple[int, str]]:
    """Decide every open proposal whose voting has closed; return (id, status) of those decided."""
    at_now = _now(now)
    p = sg.proposals
    with engine.begin() as conn:
        due = conn.execute(select(p).where(p.c.status == "open", p.c.closes_at <= at_now).order_by(p.c.closes_at,
                                                                                                   p.c.id)).all()
        return [(row.id, _decide(conn, row, at_now, closed=True)) for row in due]


def _decide(conn: Connection, p: Any, now: datetime, closed: bool) -> str:
    """Tally a proposal; when decided, store the outcome (and for an accepted one, the new version)."""
    known = versions(conn)
    settings = (g.version_at(known, p.created_at) or known[0]).rulebook.governance
    t = g.tally(_votes(conn, p.id), g.members_at(memberships(conn), p.created_at))
    status = g.outcome(t, settings, closed)
    if status == "open":
        return status
    latest = g.in_order(known)[-1]
    reason = None
    if status == "accepted" and p.effective_from <= latest.effective_from:
        status, reason = "rejected", f"version {latest.version} takes effect at or after this change's start"
    decided_at = min(now, p.closes_at)
    result: dict[str, Any] = {**t.to_json(), **({"reason": reason} if reason else {})}
    if status == "accepted":
        rb = g.apply_change(latest.rulebook, p.change, f"proposal {p.id}")
        number = latest.version + 1
        result["version"] = number
        seq = _record(conn, "community", f"rulebook:v{number}", {
            "version": number, "digest": rb.digest(), "effective_from": p.effective_from.isoformat(),
            "proposal": p.id, "tally": t.to_json()})
        conn.execute(insert(sg.rulebook_versions).values(
            version=number, effective_from=p.effective_from, rulebook=rb.to_json_data(), digest=rb.digest(),
            proposal_id=p.id, created_at=decided_at, ledger_seq=seq))
    else:
        _record(conn, "community", f"decision:{p.id}", {"proposal": p.id, "status": status, **result})
    conn.execute(update(sg.proposals).where(sg.proposals.c.id == p.id).values(
        status=status, decided_at=decided_at, tally=result))
    return status


# --- showing ----------------------------------------------------------------------------------------


def show(engine: Engine, *, now: datetime | None = None) -> dict[str, Any]:
    """The rulebook in force now, every version, and every proposal with its votes (JSON-ready)."""
    at_now = _now(now)
    current = version_in_force(engine, at_now, now=at_now)
    with engine.connect() as conn:
        found = versions(conn)
        rows = conn.execute(select(sg.proposals).order_by(sg.proposals.c.id)).all()
        proposals = []
        for p in rows:
            cast = _votes(conn, p.id)
            t = p.tally or g.tally(cast, g.members_at(memberships(conn), p.created_at)).to_json()
            proposals.append({"id": p.id, "title": p.title, "proposer": p.proposer, "change": p.change,
                              "effective_from": p.effective_from.isoformat(), "closes_at": p.closes_at.isoformat(),
                              "status": p.status, "tally": t, "votes": dict(sorted(cast.items()))})
    return {
        "in_force": {"version": current.version, "digest": current.digest,
                     "effective_from": current.effective_from.isoformat(), "rulebook": current.rulebook.to_json_data()},
        "versions": [{"version": v.version, "effective_from": v.effective_from.isoformat(), "digest": v.digest,
                      "proposal": v.proposal_id} for v in found],
        "proposals": proposals,
    }


def verify_records(engine: Engine) -> list[str]:
    """What in the governance tables no longer matches its journal record (empty: all match).

    The tables are convenient copies; the journal (whose chain ``ledger verify`` checks) is the
    evidence. A rulebook whose content no longer gives its digest, or a vote or proposal that differs
    from what was recorded, is reported here.
    """
    from kwartier.store import schema

    j = schema.journal
    problems: list[str] = []
    with engine.connect() as conn:
        recorded = {int(r.seq): r.inputs for r in conn.execute(select(j.c.seq, j.c.inputs)
                                                               .where(j.c.kind == ledger.RECORD_KIND))}
        for v in conn.execute(select(sg.rulebook_versions).order_by(sg.rulebook_versions.c.version)):
            actual = rulebook_from_data(v.rulebook, f"rulebook version {v.version}").digest()
            rec = recorded.get(int(v.ledger_seq), {})
            if not actual == v.digest == rec.get("digest"):
                problems.append(f"rulebook version {v.version}: its content has digest {actual[:12]}, the table says "
                                f"{v.digest[:12]}, the journal entry {v.ledger_seq} says {str(rec.get('digest'))[:12]}")
        for p in conn.execute(select(sg.proposals).order_by(sg.proposals.c.id)):
            if recorded.get(int(p.ledger_seq), {}).get("change") != g.change_digest(p.change):
                problems.append(f"proposal {p.id}: its change differs from the one recorded in journal entry "
                                f"{p.ledger_seq}")
        for v in conn.execute(select(sg.votes).order_by(sg.votes.c.proposal_id, sg.votes.c.voter)):
            rec = recorded.get(int(v.ledger_seq), {})
            if (rec.get("proposal"), rec.get("choice")) != (v.proposal_id, v.choice):
                problems.append(f"vote of {v.voter} on proposal {v.proposal_id}: {v.choice!r} in the table, "
                                f"{rec.get('choice')!r} in journal entry {v.ledger_seq}")
    return problems
