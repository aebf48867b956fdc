"""Sharing rules with hand-checked numbers, the remainder rule, the rulebook's digest, and property tests."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kwartier.community.rules import (
    Rulebook,
    RulebookError,
    default_rulebook,
    load_rulebook,
    rulebook_from_data,
)
from kwartier.community.sharing import SharingError, check_allocation, share, split_largest_remainder

ABC = ("a", "b", "c")


def rules(**sharing: object) -> Rulebook:
    return rulebook_from_data({"sharing": sharing})


def col(*values: int) -> np.ndarray:
    """One quarter: a members x 1 matrix."""
    return np.array(values, dtype=np.int64)[:, None]


def test_prorata_covers_everyone_when_production_is_plenty():
    a = share(ABC, col(1000, 0, 0), col(0, 300, 600), default_rulebook())
    assert a.community_wh[:, 0].tolist() == [0, 300, 600]
    assert a.shared_out_wh[:, 0].tolist() == [900, 0, 0]
    assert a.surplus_wh[:, 0].tolist() == [100, 0, 0] and a.complement_wh[:, 0].tolist() == [0, 0, 0]


def test_prorata_splits_scarce_production_by_consumption():
    a = share(ABC, col(1000, 0, 0), col(0, 1500, 500), default_rulebook())
    assert a.community_wh[:, 0].tolist() == [0, 750, 250]
    assert a.complement_wh[:, 0].tolist() == [0, 750, 250]


def test_the_leftover_wh_goes_to_the_largest_remainder_then_the_lower_id():
    # 10 Wh over three equal consumers: 3 each and 1 left; equal remainders, so the first id gets it.
    a = share(("a", "b", "c", "d"), col(10, 0, 0, 0), col(0, 5, 5, 5), default_rulebook())
    assert a.community_wh[:, 0].tolist() == [0, 4, 3, 3]
    # 10 Wh over 1:2 -> 3.33 and 6.67: the larger remainder (b's .67) gets the spare Wh.
    assert split_largest_remainder(np.array([10]), np.array([[1], [2]])).ravel().tolist() == [3, 7]


def test_static_keys_are_capped_and_the_rest_is_surplus():
    a = share(ABC, col(1000, 0, 0), col(0, 200, 900), rules(rule="static", keys={"b": "1", "c": "1"}))
    assert a.community_wh[:, 0].tolist() == [0, 200, 500]
    assert a.surplus_wh[:, 0].tolist() == [300, 0, 0]


def test_priority_groups_are_served_in_order():
    a = share(ABC, col(1000, 0, 0), col(0, 800, 700), rules(rule="priority", groups=[["c"]]))
    assert a.community_wh[:, 0].tolist() == [0, 300, 700]


def test_dynamic_keys_change_per_quarter():
    prod = np.array([[600, 600], [0, 0], [0, 0]])
    cons = np.array([[0, 0], [1000, 1000], [1000, 1000]])
    keys = np.array([[0, 0], [1, 0], [0, 1]])
    a = share(ABC, prod, cons, rules(rule="dynamic"), keys)
    assert a.community_wh.tolist() == [[0, 0], [600, 0], [0, 600]]
    with pytest.raises(SharingError, match="dynamic"):
        share(ABC, prod, cons, rules(rule="dynamic"))


def test_the_solidarity_reserve_comes_first():
    rb = rulebook_from_data({"solidarity": {"members": ["c"], "reserved_share": "0.5"}})
    a = share(ABC, col(1000, 0, 0), col(0, 1000, 1000), rb)
    # 500 Wh reserved for c; the other 500 prorata to what is still wanted (b 1000, c 500): 333.3 / 166.7.
    assert a.community_wh[:, 0].tolist() == [0, 333, 667]


def test_bad_inputs_are_refused_with_a_reason():
    with pytest.raises(SharingError, match="negative"):
        share(ABC, col(-1, 0, 0), col(0, 0, 0), default_rulebook())
    with pytest.raises(SharingError, match="sorted"):
        share(("b", "a", "c"), col(1, 0, 0), col(0, 0, 0), default_rulebook())
    with pytest.raises(SharingError, match="not members"):
        share(ABC, col(1, 0, 0), col(0, 1, 0), rules(rule="static", keys={"zz": "1"}))


def test_the_rulebook_digest_ignores_order_and_decimal_spelling(tmp_path):
    one = rulebook_from_data({"price": {"rule": "uniform", "uniform_eur_per_kwh": "0.10"},
                              "sharing": {"rule": "static", "keys": {"b": "1", "a": "2"}}})
    two = rulebook_from_data({"sharing": {"keys": {"a": "2.0", "b": "1"}, "rule": "static"},
                              "price": {"uniform_eur_per_kwh": "0.1", "rule": "uniform"}})
    assert one.digest() == two.digest() and one.digest() != default_rulebook().digest()
    assert rulebook_from_data(one.to_json_data()) == one
    (tmp_path / "r.toml").write_text('[price]\nrule = "uniform"\nuniform_eur_per_kwh = 0.1\n')
    assert load_rulebook(tmp_path / "r.toml").price.uniform_eur_per_kwh == Decimal("0.1")
    with pytest.raises(RulebookError, match=r"r\.toml, field 'price.rul': unknown field"):
        (tmp_path / "r.toml").write_text('[price]\nrul = "uniform"\n')
        load_rulebook(tmp_path / "r.toml")
    with pytest.raises(RulebookError, match="needs uniform_eur_per_kwh"):
        rulebook_from_data({"price": {"rule": "uniform"}})


# --- properties --------------------------------------------------------------------------------------

RULES = [default_rulebook(), rules(rule="static", keys={"m0": "3", "m2": "1", "m3": "0.5"}),
         rules(rule="priority", groups=[["m3"], ["m1", "m0"]]), rules(rule="dynamic"),
         rulebook_from_data({"solidarity": {"members": ["m1"], "reserved_share": "0.3"}})]


@st.composite
def community(draw):  # type: ignore[no-untyped-def]
    m = draw(st.integers(4, 7))
    q = draw(st.integers(1, 12))
    energy = st.integers(0, 5000)
    prod = np.array(draw(st.lists(st.lists(energy, min_size=q, max_size=q), min_size=m, max_size=m)))
    cons = np.array(draw(st.lists(st.lists(energy, min_size=q, max_size=q), min_size=m, max_size=m)))
    sparse = np.array(draw(st.lists(st.booleans(), min_size=m, max_size=m)))
    prod[sparse] = 0  # not everybody produces
    keys = np.array(draw(st.lists(st.lists(st.integers(0, 9), min_size=q, max_size=q), min_size=m, max_size=m)))
    return tuple(f"m{i}" for i in range(m)), prod, cons, keys, draw(st.sampled_from(range(len(RULES))))


@settings(max_examples=80, deadline=None)
@given(community())
def test_allocations_never_exceed_production_or_consumption_and_conserve_energy(case):
    members, prod, cons, keys, r = case
    a = share(members, prod, cons, RULES[r], keys)
    assert check_allocation(a) == []
    assert (a.community_wh <= cons).all() and (a.shared_out_wh <= prod).all()
    assert (a.community_wh.sum(axis=0) <= prod.sum(axis=0)).all()
    assert (a.community_wh.sum(axis=0) == a.shared_out_wh.sum(axis=0)).all()
    assert ((a.community_wh + a.complement_wh) == cons).all() and ((a.shared_out_wh + a.surplus_wh) == prod).all()
    if r == 0:  # prorata shares as much as can be shared
        assert (a.shared_wh == np.minimum(prod.sum(axis=0), cons.sum(axis=0))).all()


@settings(max_examples=40, deadline=None)
@given(community())
def test_the_same_inputs_always_give_the_same_digest(case):
    members, prod, cons, keys, r = case
    first = share(members, prod, cons, RULES[r], keys)
    again = share(members, prod.copy(), cons.copy(), RULES[r].model_copy(), keys.copy())
    assert first.digest() == again.digest()
    if prod.sum() and cons.sum():  # and different inputs a different one
        changed = cons.copy()
        changed[0, 0] += 1
        assert share(members, prod, changed, RULES[r], keys).digest() != first.digest()


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 10**6), min_size=1, max_size=20), st.integers(0, 10**7))
def test_largest_remainder_sums_exactly_and_stays_within_one_wh(weights, total):
    w = np.array(weights)[:, None]
    parts = split_largest_remainder(np.array([total]), w).ravel()
    if w.sum() == 0:
        assert parts.tolist() == [0] * len(weights)
        return
    assert int(parts.sum()) == total
    exact = [total * x / w.sum() for x in weights]
    assert all(p >= 0 and abs(p - e) < 1 for p, e in zip(parts.tolist(), exact, strict=True))
