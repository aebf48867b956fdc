"""Governance maths: quarter boundaries, rule changes as merge patches, tallies, and which rules are in force when.

Pure functions over plain values (no store, no clock): the services pass the versions, votes,
memberships and the time in. The rules of the game:

- A change is a JSON merge patch (RFC 7396: objects merge, ``null`` deletes a key, anything else
  replaces) over the rulebook's JSON data; the result must be a valid :class:`Rulebook`.
- A change takes effect at a quarter boundary (an interval start) at least ``notice_quarters``
  ahead of the proposal and not before voting closes; versions take effect in order (a change
  cannot slip in before a version that is already scheduled).
- Votes are ``yes``, ``no`` or ``abstain``; every vote counts for the quorum (votes cast / members
  eligible, at least ``quorum``), only yes and no count for the majority (yes / (yes + no) strictly
  above ``majority``). Eligible are the members at the moment the proposal was made.
- Before voting closes a proposal is decided early only when the remaining votes cannot change the
  outcome; at closing it is accepted or rejected.
- The version in force at an instant is the one with the latest ``effective_from`` at or before it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any, Literal

import numpy as np

from kwartier.community.rules import GovernanceSettings, Rulebook, RulebookError, rulebook_from_data

QUARTER = timedelta(minutes=15)
CHOICES = ("yes", "no", "abstain")
Choice = Literal["yes", "no", "abstain"]
Outcome = Literal["open", "accepted", "rejected"]


class GovernanceError(ValueError):
    """A proposal, vote or membership change that the rules do not allow; the message says why."""


# --- time -----------------------------------------------------------------------------------------


def is_quarter_boundary(ts: datetime) -> bool:
    """Whether ``ts`` (aware) is an interval start: a whole quarter-hour in UTC."""
    if ts.tzinfo is None:
        raise GovernanceError(f"naive timestamp {ts.isoformat()}: give it a zone")
    seconds = (ts - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1)
    return seconds % (QUARTER / timedelta(microseconds=1)) == 0


def next_quarter_boundary(ts: datetime) -> datetime:
    """The first interval start at or after ``ts`` (aware), in UTC."""
    if ts.tzinfo is None:
        raise GovernanceError(f"naive timestamp {ts.isoformat()}: give it a zone")
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    q = -((epoch - ts) // QUARTER)  # ceiling division
    return epoch + q * QUARTER


def require_boundary(ts: datetime, what: str) -> datetime:
    """``ts`` in UTC, or GovernanceError when it is not a quarter boundary."""
    if not is_quarter_boundary(ts):
        raise GovernanceError(f"{what} {ts.isoformat()} is not a quarter boundary (an interval start: "
                              f"hh:00, hh:15, hh:30 or hh:45); the next one is {next_quarter_boundary(ts).isoformat()}")
    return ts.astimezone(UTC)


# --- changes ----------------------------------------------------------------------------------------


def merge_patch(doc: Any, patch: Any) -> Any:
    """RFC 7396 JSON merge patch of ``doc`` by ``patch`` (a new value; neither argument is changed)."""
    if not isinstance(patch, dict):
        return patch
    out = dict(doc) if isinstance(doc, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def change_digest(change: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of a change's canonical JSON (sorted keys, no spaces)."""
    text = json.dumps(change, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def apply_change(base: Rulebook, change: Mapping[str, Any], where: str = "change") -> Rulebook:
    """The rulebook after ``change``; GovernanceError naming the field when the result is not a valid rulebook."""
    if not isinstance(change, Mapping) or not change:
        raise GovernanceError(f"{where}: a change is a non-empty JSON object (a merge patch over the rulebook)")
    try:
        return rulebook_from_data(merge_patch(base.to_json_data(), dict(change)), where)
    except RulebookError as exc:
        raise GovernanceError(str(exc)) from None


def check_schedule(effective_from: datetime, closes_at: datetime, now: datetime, settings: GovernanceSettings,
                   latest_effective_from: datetime | None) -> None:
    """Refuse a proposal whose timing breaks the rules (see the module docstring)."""
    require_boundary(effective_from, "effective_from")
    earliest = next_quarter_boundary(now) + settings.notice_quarters * QUARTER
    if effective_from < earliest:
        raise GovernanceError(f"effective_from {effective_from.isoformat()} is too early: the rulebook asks "
                              f"{settings.notice_quarters} quarters' notice, so {earliest.isoformat()} at the earliest")
    if not now < closes_at <= effective_from:
        raise GovernanceError(f"voting must close after now ({now.isoformat()}) and no later than the change takes "
                              f"effect ({effective_from.isoformat()}); closes_at is {closes_at.isoformat()}")
    if latest_effective_from is not None and effective_from <= latest_effective_from:
        raise GovernanceError(f"a version already takes effect at {latest_effective_from.isoformat()}; a change must "
                              "take effect after it")


# --- votes ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tally:
    """The votes on a proposal: members eligible, and yes, no and abstain votes cast."""

    eligible: int
    yes: int
    no: int
    abstain: int

    @property
    def cast(self) -> int:
        return self.yes + self.no + self.abstain

    def to_json(self) -> dict[str, int]:
        return {"eligible": self.eligible, "yes": self.yes, "no": self.no, "abstain": self.abstain}


def tally(votes: Mapping[str, str], eligible: Iterable[str]) -> Tally:
    """Count ``votes`` (voter -> choice) of eligible members; other voters' votes do not count."""
    who = set(eligible)
    counted = [c for v, c in votes.items() if v in who]
    return Tally(len(who), counted.count("yes"), counted.count("no"), counted.count("abstain"))


def _quorum_met(cast: int, eligible: int, quorum: Fraction) -> bool:
    return eligible > 0 and Fraction(cast, eligible) >= quorum


def _majority(yes: int, no: int, majority: Fraction) -> bool:
    return yes + no > 0 and Fraction(yes, yes + no) > majority


def outcome(t: Tally, settings: GovernanceSettings, closed: bool) -> Outcome:
    """Accepted, rejected, or (before closing, when the remaining votes could still change it) open."""
    quorum, majority = Fraction(str(settings.quorum)), Fraction(str(settings.majority))
    if closed:
        return "accepted" if _quorum_met(t.cast, t.eligible, quorum) and _majority(t.yes, t.no, majority) \
            else "rejected"
    remaining = t.eligible - t.cast
    if _quorum_met(t.cast, t.eligible, quorum) and _majority(t.yes, t.no + remaining, majority):
        return "accepted"  # even if every remaining member votes no
    all_yes = t.yes + remaining
    if not (_quorum_met(t.eligible, t.eligible, quorum) and _majority(all_yes, t.no, majority)):
        return "rejected"  # even if every remaining member votes yes
    return "open"


def check_choice(choice: str) -> Choice:
    if choice not in CHOICES:
        raise GovernanceError(f"vote {choice!r} is not one of {', '.join(CHOICES)}")
    return choice  # type: ignore[return-value]


# --- versions in force ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Version:
    """One recorded version of the rulebook and the interval start from which it is in force."""

    version: int
    effective_from: datetime
    rulebook: Rulebook
    digest: str
    proposal_id: int | None = None


@dataclass(frozen=True)
class RuleSpan:
    """A stretch ``[start, stop)`` of time under one rulebook version."""

    start: datetime
    stop: datetime
    version: Version


def in_order(versions: Sequence[Version]) -> list[Version]:
    """Versions by the time they take effect (then by number): the last one is the latest scheduled."""
    return sorted(versions, key=lambda v: (v.effective_from, v.version))


def version_at(versions: Sequence[Version], at: datetime) -> Version | None:
    """The version in force at ``at``: the latest ``effective_from`` at or before it (None before the first)."""
    found = None
    for v in in_order(versions):
        if v.effective_from <= at:
            found = v
    return found


def spans(versions: Sequence[Version], start: datetime, stop: datetime) -> list[RuleSpan]:
    """``[start, stop)`` cut where a new version takes effect; raises when no version is in force at ``start``."""
    first = version_at(versions, start)
    if first is None:
        raise GovernanceError(f"no rulebook version is in force at {start.isoformat()}")
    out: list[RuleSpan] = []
    current, cut = first, start
    for v in in_order(versions):
        if start < v.effective_from < stop and v is not current:
            out.append(RuleSpan(cut, v.effective_from, current))
            current, cut = v, v.effective_from
    out.append(RuleSpan(cut, stop, current))
    return [s for s in out if s.start < s.stop]


# --- membership --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Membership:
    """A participant's membership from ``joined_at`` until ``left_at`` (exclusive; None: still a member)."""

    participant: str
    joined_at: datetime
    left_at: datetime | None = None

    def covers(self, at: datetime) -> bool:
        return self.joined_at <= at and (self.left_at is None or at < self.left_at)


def members_at(memberships: Iterable[Membership], at: datetime) -> list[str]:
    """The participants who are members at ``at``, sorted."""
    return sorted({m.participant for m in memberships if m.covers(at)})


def membership_mask(memberships: Iterable[Membership], participants: Sequence[str], starts: np.ndarray) -> np.ndarray:
    """Bool matrix (participants x quarters): member during the quarter starting at ``starts[j]``.

    ``starts`` holds interval starts as numpy ``datetime64[us]`` in UTC (e.g. ``series.to_numpy()``).
    """
    index = {p: i for i, p in enumerate(participants)}
    out = np.zeros((len(participants), len(starts)), dtype=bool)
    as_us = starts.astype("datetime64[us]")
    for m in memberships:
        i = index.get(m.participant)
        if i is None:
            continue
        inside = as_us >= np.datetime64(m.joined_at.astimezone(UTC).replace(tzinfo=None), "us")
        if m.left_at is not None:
            inside &= as_us < np.datetime64(m.left_at.astimezone(UTC).replace(tzinfo=None), "us")
        out[i] |= inside
    return out
