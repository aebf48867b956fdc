"""Tables of governance and members' data rights: rulebook versions, proposals, votes, memberships, consents, logs.

They live on :data:`kwartier.store.schema.metadata` (``schema.py`` imports this module at its end),
and migration ``0005`` creates exactly these tables. Rows here are append-only except a proposal's
outcome (``status``, ``decided_at``, ``tally``) and the pseudonymisation of erasure; everything a
vote or rule change decides is also recorded, without personal data, in the hash-chained journal
(``ledger_seq`` names that journal entry).
"""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Boolean, Column, ForeignKey, Index, Integer, String, Table, Text

from kwartier.store.schema import UtcDateTime, metadata

#: Each version of the community rulebook and the quarter from which it is in force.
rulebook_versions = Table(
    "rulebook_versions",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("effective_from", UtcDateTime, nullable=False),  # an interval start (quarter boundary), UTC
    Column("rulebook", JSON, nullable=False),  # Rulebook.to_json_data()
    Column("digest", String(64), nullable=False),  # Rulebook.digest()
    Column("proposal_id", Integer, nullable=True),  # null for the founding version
    Column("created_at", UtcDateTime, nullable=False),
    Column("ledger_seq", BigInteger, nullable=False),
)

#: A proposed change of the rulebook: a JSON merge patch, voted on until ``closes_at``.
proposals = Table(
    "proposals",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("proposer", String(40), nullable=False),  # participant id
    Column("title", Text, nullable=False),
    Column("change", JSON, nullable=False),  # merge patch over the rulebook's JSON data
    Column("base_version", Integer, nullable=False),
    Column("effective_from", UtcDateTime, nullable=False),
    Column("closes_at", UtcDateTime, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("status", String(12), nullable=False),  # open | accepted | rejected
    Column("decided_at", UtcDateTime, nullable=True),
    Column("tally", JSON, nullable=True),
    Column("ledger_seq", BigInteger, nullable=False),
)

#: One vote per member per proposal; a vote is final.
votes = Table(
    "votes",
    metadata,
    Column("proposal_id", Integer, ForeignKey("proposals.id"), primary_key=True),
    Column("voter", String(40), primary_key=True),  # participant id
    Column("choice", String(8), nullable=False),  # yes | no | abstain
    Column("cast_at", UtcDateTime, nullable=False),
    Column("ledger_seq", BigInteger, nullable=False),
)

#: Membership of the community (voting right, sharing): from ``joined_at`` until ``left_at`` (quarter boundaries).
memberships = Table(
    "memberships",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("participant", String(40), nullable=False),
    Column("joined_at", UtcDateTime, nullable=False),
    Column("left_at", UtcDateTime, nullable=True),
    Column("recorded_at", UtcDateTime, nullable=False),
    Column("ledger_seq", BigInteger, nullable=False),
    Index("ix_memberships_participant", "participant"),
)

#: Consent given or withdrawn, per member and purpose; the latest row per (participant, purpose) counts.
consents = Table(
    "consents",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("participant", String(40), nullable=False),
    Column("purpose", String(16), nullable=False),  # billing | steering | research | grid
    Column("granted", Boolean, nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("by", String(80), nullable=False),  # who recorded it (user name or "cli")
    Index("ix_consents_participant", "participant", "purpose"),
)

#: Who read whose data, what and when.
access_log = Table(
    "access_log",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("at", UtcDateTime, nullable=False),
    Column("actor", String(80), nullable=False),  # user name (or "cli")
    Column("role", String(12), nullable=False),  # participant | operator | grid | system
    Column("participant", String(40), nullable=True),  # whose data; null for aggregates
    Column("what", String(80), nullable=False),
    Column("purpose", String(16), nullable=True),
    Index("ix_access_log_participant", "participant", "at"),
)

#: Erasure requests carried out: who, by whom, when, and what was pseudonymised or retained.
erasures = Table(
    "erasures",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("participant", String(40), nullable=False),
    Column("pseudonym", String(40), nullable=False),
    Column("requested_by", String(80), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("summary", JSON, nullable=False),
)

TABLES = (rulebook_versions, proposals, votes, memberships, consents, access_log, erasures)
