"""Sharing local production: each quarter-hour, the members' export is allocated to the members' import by a rule.

Everything is a members x quarters matrix of integer Wh (rows in the order of ``participants``, which
callers keep sorted by id; columns are quarter-hours). ``production_wh`` is what each member fed in
(its ``export_wh``), ``consumption_wh`` what it took (its ``import_wh``).

Rules (see ``community/rules.py``):

- ``prorata`` (default): per quarter the shared energy is ``min(production, consumption)`` of the
  community, split in proportion to each member's consumption; nobody gets more than it took.
- ``static``: production split by fixed keys; each member's part is capped at its consumption and
  what it cannot take is surplus (not passed on to others, as with French static keys).
- ``priority``: groups in order; each group takes up to its consumption from what is left,
  prorata within the group; members in no group form a last group.
- ``dynamic``: like ``static`` with keys given per quarter (a members x quarters matrix of
  non-negative integer weights; a quarter whose weights are all 0 shares nothing).
- ``solidarity`` reserve: before the rule, ``reserved_share`` of each quarter's production (rounded
  down to a Wh) is offered to the energy-poor members, prorata to their consumption.

Integer rule (why sums are exact): a total ``T`` split over weights ``w`` gives each row
``floor(T * w_i / W)``; the Wh left over (fewer than the number of rows) go one each to the rows
with the largest remainders ``T * w_i mod W``, ties to the lower row (the smaller participant id).
So parts sum to ``T`` exactly and no part is more than one Wh above its exact share, hence never
above a consumption it is proportional to. The producers' side is the same rule: each quarter's
shared total is split over the producers in proportion to their production.

Per member, as in the French allocation data: production = community part (``shared_out_wh``) +
surplus (to the grid); consumption = community part (``community_wh``) + complement (from the supplier).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from decimal import Decimal

import numpy as np

from kwartier.community.rules import Rulebook

KEY_SCALE = 10**9  # a static key becomes an integer weight: its share of the keys x 10^9
CHUNK = 4096  # quarters allocated at a time


class SharingError(ValueError):
    """Inputs the sharing cannot work with (shapes, negative energy, missing dynamic keys, unknown members)."""


@dataclass(frozen=True, eq=False)
class Allocation:
    """The result of sharing: members x quarters matrices of Wh (int64), rows in ``participants`` order."""

    participants: tuple[str, ...]
    production_wh: np.ndarray
    consumption_wh: np.ndarray
    community_wh: np.ndarray  # each member's consumption covered by the community (<= consumption_wh)
    shared_out_wh: np.ndarray  # each member's production that went to the community (<= production_wh)

    @property
    def surplus_wh(self) -> np.ndarray:
        """Production not taken by the community: fed to the grid (Wh)."""
        return self.production_wh - self.shared_out_wh

    @property
    def complement_wh(self) -> np.ndarray:
        """Consumption not covered by the community: bought from the member's supplier (Wh)."""
        return self.consumption_wh - self.community_wh

    @property
    def shared_wh(self) -> np.ndarray:
        """Energy shared per quarter (Wh): equal on the producers' and the consumers' side."""
        return self.community_wh.sum(axis=0)

    def digest(self) -> str:
        """SHA-256 (hex) of the participants and the four matrices (shape, little-endian int64 bytes)."""
        h = hashlib.sha256()
        h.update("\n".join(self.participants).encode("utf-8"))
        for m in (self.production_wh, self.consumption_wh, self.community_wh, self.shared_out_wh):
            h.update(repr(m.shape).encode())
            h.update(np.ascontiguousarray(m, dtype="<i8").tobytes())
        return h.hexdigest()

    def member_totals(self) -> list[dict[str, int]]:
        """Per member (in ``participants`` order), Wh over all quarters: production, surplus, consumption,
        community and complement."""
        sums = {k: getattr(self, k + "_wh").sum(axis=1) for k in ("production", "consumption", "community",
                                                                   "shared_out")}
        sums["surplus"] = sums["production"] - sums["shared_out"]
        sums["complement"] = sums["consumption"] - sums["community"]
        return [{k: int(v[i]) for k, v in sums.items()} for i in range(len(self.participants))]


def split_largest_remainder(total_wh: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Split ``total_wh`` (per quarter, >= 0) over the rows in proportion to ``weights`` (rows x quarters, >= 0).

    Integer parts summing exactly to the total in every quarter whose weights are not all 0 (such a
    quarter gets 0 everywhere); leftover Wh go to the largest remainders, ties to the lower row.
    """
    total = np.asarray(total_wh, dtype=np.int64)
    w = np.asarray(weights, dtype=np.int64)
    if w.ndim != 2 or total.shape != (w.shape[1],):
        raise SharingError(f"weights of shape {w.shape} do not fit totals of shape {total.shape}")
    wsum = w.sum(axis=0)
    active = wsum > 0
    safe = np.where(active, wsum, 1)
    t = np.where(active, total, 0)
    if t.size and w.size and int(t.max()) * max(int(w.max()), 1) >= 2**62:
        raise SharingError("weights too large: Wh x weight must stay below 2^62 (scale the keys down)")
    part, rem = np.divmod(t[None, :] * w, safe)
    leftover = t - part.sum(axis=0)
    cols = np.nonzero(leftover > 0)[0]
    if cols.size:
        rows = w.shape[0]
        rem = rem[:, cols]
        if int(safe.max()) < 2**62 // max(rows, 1):  # one unique key per row: remainder, then the lower row
            order = np.argsort(-(rem * rows + (rows - 1 - np.arange(rows))[:, None]), axis=0)
        else:
            order = np.argsort(-rem, axis=0, kind="stable")  # stable: the lower row wins a tie
        rank = np.empty_like(order)
        np.put_along_axis(rank, order, np.broadcast_to(np.arange(rows)[:, None], order.shape), axis=0)
        part[:, cols] += rank < leftover[cols][None, :]
    return part


def _prorata(available_wh: np.ndarray, demand_wh: np.ndarray) -> np.ndarray:
    """Up to ``available_wh`` per quarter split prorata to ``demand_wh``; never above a member's demand."""
    shared = np.minimum(available_wh, demand_wh.sum(axis=0))
    return split_largest_remainder(shared, demand_wh)


def _keyed(available_wh: np.ndarray, demand_wh: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``available_wh`` split by ``weights``, each part capped at the member's demand (the rest is surplus)."""
    return np.minimum(split_largest_remainder(available_wh, weights), demand_wh)


def static_weights(participants: tuple[str, ...], keys: dict[str, Decimal]) -> np.ndarray:
    """Integer weights per member: each key's share of the sum of keys x 10^9, rounded down; no key: 0."""
    unknown = sorted(set(keys) - set(participants))
    if unknown:
        raise SharingError(f"sharing keys name {', '.join(unknown)}, who are not members of the community")
    total = sum(keys.values(), Decimal(0))
    return np.array([int(keys.get(p, Decimal(0)) * KEY_SCALE / total) for p in participants], dtype=np.int64)


def priority_rows(participants: tuple[str, ...], groups: list[list[str]]) -> list[np.ndarray]:
    """Row indices per priority group, in order; members in no group form a last group."""
    index = {p: i for i, p in enumerate(participants)}
    unknown = sorted({p for g in groups for p in g} - set(index))
    if unknown:
        raise SharingError(f"priority groups name {', '.join(unknown)}, who are not members of the community")
    rows = [np.array(sorted(index[p] for p in g), dtype=np.int64) for g in groups if g]
    grouped = {p for g in groups for p in g}
    rest = [i for p, i in index.items() if p not in grouped]
    return rows + ([np.array(sorted(rest), dtype=np.int64)] if rest else [])


def _check(participants: tuple[str, ...], production_wh: np.ndarray, consumption_wh: np.ndarray) -> None:
    shape = (len(participants), production_wh.shape[-1] if production_wh.ndim == 2 else -1)
    for name, m in (("production_wh", production_wh), ("consumption_wh", consumption_wh)):
        if m.ndim != 2 or m.shape != shape:
            raise SharingError(f"{name} has shape {m.shape}; expected members x quarters {shape}")
        if m.size and m.min() < 0:
            i, q = np.unravel_index(int(np.argmin(m)), m.shape)
            raise SharingError(f"{name} of {participants[i]} is negative ({int(m[i, q])} Wh) in quarter {q}; "
                               "energy is never negative (import and export are separate)")
    if list(participants) != sorted(set(participants)):
        raise SharingError("participants must be distinct and sorted by id (the tie rule depends on it)")


def share(participants: tuple[str, ...] | list[str], production_wh: np.ndarray, consumption_wh: np.ndarray,
          rules: Rulebook, dynamic_keys: np.ndarray | None = None) -> Allocation:
    """Allocate each quarter's production of the members to their consumption by ``rules``.

    ``participants`` sorted by id; ``production_wh`` and ``consumption_wh`` members x quarters (Wh, >= 0);
    ``dynamic_keys`` (members x quarters, integer weights >= 0) only for the ``dynamic`` rule.
    """
    members = tuple(participants)
    prod = np.asarray(production_wh, dtype=np.int64)
    cons = np.asarray(consumption_wh, dtype=np.int64)
    _check(members, prod, cons)
    keys = None
    if rules.sharing.rule == "dynamic":
        if dynamic_keys is None:
            raise SharingError("sharing rule 'dynamic' needs keys per quarter (members x quarters weights)")
        keys = np.asarray(dynamic_keys)
        if keys.shape != prod.shape or (keys.size and keys.min() < 0):
            raise SharingError(f"dynamic keys must be members x quarters {prod.shape} of weights >= 0; "
                               f"got shape {keys.shape}")
        keys = keys.astype(np.int64)
    taken = np.zeros_like(cons)
    shared_out = np.zeros_like(prod)
    for a in range(0, prod.shape[1], CHUNK):  # quarters are independent: bound the memory of the temporaries
        b = min(a + CHUNK, prod.shape[1])
        taken[:, a:b] = _allocate(members, prod[:, a:b], cons[:, a:b], rules, None if keys is None else keys[:, a:b])
        shared_out[:, a:b] = split_largest_remainder(taken[:, a:b].sum(axis=0), prod[:, a:b])
    return Allocation(members, prod, cons, taken, shared_out)


def _allocate(members: tuple[str, ...], prod: np.ndarray, cons: np.ndarray, rules: Rulebook,
              keys: np.ndarray | None) -> np.ndarray:
    """The community share of each member (members x quarters Wh) under the solidarity reserve and the rule."""
    available = prod.sum(axis=0)
    taken = np.zeros_like(cons)
    demand = cons
    poor = [i for i, p in enumerate(members) if p in set(rules.solidarity.members)]
    if poor and rules.solidarity.reserved_share > 0:
        reserve = (available * int(rules.solidarity.reserved_share * KEY_SCALE)) // KEY_SCALE
        taken[poor] = _prorata(reserve, cons[poor])
        available = available - taken[poor].sum(axis=0)
        demand = cons - taken
    rule = rules.sharing
    if rule.rule == "prorata":
        taken += _prorata(available, demand)
    elif rule.rule == "static":
        w = static_weights(members, rule.keys)
        taken += _keyed(available, demand, np.repeat(w[:, None], prod.shape[1], axis=1))
    elif rule.rule == "dynamic":
        assert keys is not None
        taken += _keyed(available, demand, keys)
    else:  # priority
        for rows in priority_rows(members, rule.groups):
            got = _prorata(available, demand[rows])
            taken[rows] += got
            available = available - got.sum(axis=0)
    return taken


def check_allocation(a: Allocation) -> list[str]:
    """The laws every allocation obeys; returns what is broken (empty: all hold)."""
    problems = []
    if (a.community_wh < 0).any() or (a.community_wh > a.consumption_wh).any():
        problems.append("a member's community share is negative or above its consumption")
    if (a.shared_out_wh < 0).any() or (a.shared_out_wh > a.production_wh).any():
        problems.append("a member's shared production is negative or above its production")
    if (a.community_wh.sum(axis=0) != a.shared_out_wh.sum(axis=0)).any():
        problems.append("energy taken from the community differs from energy given to it in some quarter")
    if (a.shared_wh > a.production_wh.sum(axis=0)).any():
        problems.append("more shared than produced in some quarter")
    return problems
