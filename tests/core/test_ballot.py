"""Ballots are totally ordered, round first, then node id (Paxos Made Simple §2.2)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from relstorage_paxos.core import ZERO_BALLOT, Ballot

rounds = st.integers(min_value=0, max_value=50)
node_ids = st.integers(min_value=1, max_value=9)
ballots = st.builds(Ballot, rounds, node_ids)


def test_round_first_then_node_id() -> None:
    assert Ballot(1, 9) < Ballot(2, 1)
    assert Ballot(2, 1) < Ballot(2, 3)
    assert Ballot(2, 3) == Ballot(2, 3)
    assert ZERO_BALLOT < Ballot(0, 1) < Ballot(1, 1)
    assert str(Ballot(2, 3)) == "2.3"


@given(ballots, ballots)
def test_total_order(a: Ballot, b: Ballot) -> None:
    assert [a < b, a == b, a > b].count(True) == 1, (a, b)
    assert (a < b) == ((a.round, a.node_id) < (b.round, b.node_id))


@given(ballots, ballots, ballots)
def test_transitive(a: Ballot, b: Ballot, c: Ballot) -> None:
    x, y, z = sorted([a, b, c])
    assert x <= y <= z and x <= z
