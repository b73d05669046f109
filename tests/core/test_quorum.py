"""Quorum arithmetic: majorities, and the fact every safety argument rests on — any two
majorities of the same membership intersect."""

from __future__ import annotations

from itertools import chain, combinations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relstorage_paxos.core.quorum import cannot_reach_majority, has_majority, majority


def subsets(members: frozenset[int]) -> list[frozenset[int]]:
    items = sorted(members)
    return [
        frozenset(c)
        for c in chain.from_iterable(combinations(items, k) for k in range(len(items) + 1))
    ]


@pytest.mark.parametrize(("members", "size"), [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (7, 4)])
def test_majority(members: int, size: int) -> None:
    assert majority(members) == size


def test_three_members() -> None:
    members = frozenset({1, 2, 3})
    assert not has_majority({1}, members)
    assert has_majority({1, 3}, members)
    assert has_majority([2, 2, 3], members)
    assert not has_majority([2, 2], members), "duplicate votes count once"
    assert not has_majority({1, 7, 8}, members), "non-members do not vote"
    assert not cannot_reach_majority({1}, members)
    assert cannot_reach_majority({1, 2}, members)


def test_five_members() -> None:
    members = frozenset({1, 2, 3, 4, 5})
    assert not has_majority({1, 2}, members)
    assert has_majority({1, 4, 5}, members)
    assert not cannot_reach_majority({1, 2}, members)
    assert cannot_reach_majority({1, 2, 3}, members)
    assert not cannot_reach_majority({1, 2, 6, 7}, members), "non-members do not count"


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5])
def test_every_two_majorities_intersect_exhaustively(size: int) -> None:
    members = frozenset(range(1, size + 1))
    quorums = [s for s in subsets(members) if has_majority(s, members)]
    assert quorums
    for a in quorums:
        for b in quorums:
            assert a & b, (sorted(a), sorted(b))


member_sets = st.frozensets(st.integers(min_value=1, max_value=12), min_size=1, max_size=9)


@given(member_sets, st.data())
def test_every_two_majorities_intersect(members: frozenset[int], data: st.DataObject) -> None:
    pool = sorted(members | {13, 14})  # non-members in votes must not help
    a = data.draw(st.frozensets(st.sampled_from(pool)))
    b = data.draw(st.frozensets(st.sampled_from(pool)))
    if has_majority(a, members) and has_majority(b, members):
        assert a & b & members, (sorted(a), sorted(b), sorted(members))


@given(member_sets, st.data())
def test_cannot_reach_majority_means_the_rest_is_no_majority(
    members: frozenset[int], data: st.DataObject
) -> None:
    rejections = data.draw(st.frozensets(st.sampled_from(sorted(members | {13}))))
    rest = members - rejections
    assert cannot_reach_majority(rejections, members) == (not has_majority(rest, members))
