"""A node rebuilt from its PersistentState and its state machine's applied slot keeps every
promise and accepted value, and applies each chosen slot exactly once."""

from __future__ import annotations

import pytest

from relstorage_paxos.core import (
    Accept,
    Accepted,
    PersistentState,
    Prepare,
    PreVote,
    Promise,
    Role,
    SlotValue,
)
from tests.core.support import ballot, cycle, entry, make_node, sent, step, value
from tests.interaction.harness import Cluster, match


def test_keeps_its_promise() -> None:
    node = make_node(state=PersistentState(promised=ballot("3.1")))
    assert node.promised == ballot("3.1")
    (reply,) = sent(step(node, Prepare(3, 2, ballot("2.3"), 1)), Promise)
    assert not reply.ok and reply.promised == ballot("3.1")
    (acc,) = sent(step(node, Accept(3, 2, ballot("2.3"), (SlotValue(1, value("x")),), 0)), Accepted)
    assert not acc.ok
    assert 1 not in node.log


def test_reports_its_accepted_values_to_the_next_leader() -> None:
    state = PersistentState(ballot("2.1"), (entry(1, "1.1", "a"), entry(2, "2.1", "b")), 0)
    node = make_node(state=state)
    (reply,) = sent(step(node, Prepare(3, 2, ballot("3.3"), 1)), Promise)
    assert reply.ok
    assert reply.entries == (entry(1, "1.1", "a"), entry(2, "2.1", "b"))


def test_restarts_as_a_follower_and_campaigns_above_its_promise() -> None:
    node = make_node(node_id=1, state=PersistentState(promised=ballot("4.1")))
    assert node.role is Role.FOLLOWER and node.leader is None
    while node.role is Role.FOLLOWER:
        node.tick()
    ready = cycle(node)
    pre_votes = sent(ready, PreVote)
    assert pre_votes and all(m.ballot > ballot("4.1") for m in pre_votes)


def test_applied_argument_skips_what_the_state_machine_has() -> None:
    chosen = tuple(entry(s, "1.1", f"v{s}", chosen=True) for s in (1, 2, 3))
    state = PersistentState(ballot("1.1"), chosen, 0)
    ready = cycle(make_node(state=state, applied=2))
    assert ready.chosen == (SlotValue(3, value("v3")),)
    assert cycle(make_node(state=state, applied=3)).chosen == ()
    fresh = make_node(state=state, applied=0)
    assert [sv.slot for sv in cycle(fresh).chosen] == [1, 2, 3]
    assert fresh.commit == 3 and fresh.applied == 3


def test_commit_stops_at_the_first_slot_not_known_chosen() -> None:
    entries = (
        entry(1, "1.1", "a", chosen=True),
        entry(2, "1.1", "b"),
        entry(3, "1.1", "c", chosen=True),
    )
    node = make_node(state=PersistentState(ballot("1.1"), entries, 0))
    assert node.commit == 1
    assert [sv.slot for sv in cycle(node).chosen] == [1]


def test_applied_below_the_truncation_point_is_refused() -> None:
    with pytest.raises(AssertionError):
        make_node(state=PersistentState(truncated=5), applied=3)


def test_entries_at_or_below_the_truncation_point_are_ignored() -> None:
    entries = (entry(5, "1.1", "old", chosen=True), entry(6, "1.1", "f", chosen=True))
    node = make_node(state=PersistentState(ballot("1.1"), entries, 5), applied=5)
    assert sorted(node.log) == [6]
    assert cycle(node).chosen == (SlotValue(6, value("f")),)


def test_crashed_acceptor_keeps_promise_and_accepted_value_in_the_cluster() -> None:
    c = Cluster(3, seed=1)
    c.tick_until_campaign(1)
    c.deliver()
    c.propose(1, "a")
    c.deliver(match(Accept, dst=2))
    c.drop()
    c.crash(2)
    c.restart(2)
    assert c.node(2).promised == ballot("1.1")
    assert c.node(2).log[1] == entry(1, "1.1", "a")
    assert c.applied(2) == []
    c.tick(1, 2)  # resends the unacknowledged accept; slot 1 is chosen
    c.deliver()
    assert c.applied(1) == ["[a]"]
    c.tick(1, 2)  # the heartbeat carries commit=1
    c.deliver()
    assert c.applied(2) == ["[a]"]
    c.crash(2)
    c.restart(2)
    assert c.node(2).applied == 1
    c.tick(1, 2)
    c.deliver()
    assert c.applied(2) == ["[a]"], "nothing applied twice after a restart"


def test_restarted_leader_does_not_resume_leading() -> None:
    c = Cluster(3, seed=1)
    c.tick_until_campaign(1)
    c.deliver()
    c.crash(1)
    c.restart(1)
    assert c.leaders() == []
    assert c.node(1).promised == ballot("1.1")
    c.tick_until_campaign(1)
    c.deliver()
    assert c.leaders() == [], "n2 and n3 heard n1 lately: stickiness refuses the pre-vote"
    c.tick(2, 10)
    c.tick_until_campaign(1)
    c.deliver()
    assert c.leaders() == [1]
    assert c.node(1).promised > ballot("1.1")
