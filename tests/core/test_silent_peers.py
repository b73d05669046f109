"""``Node.silent_peers``: which peers a leader has not heard from for a node timeout (the
runtime releases their transactions' object locks through the log)."""

from __future__ import annotations

from relstorage_paxos.core import Role
from tests.core.support import elected
from tests.interaction.harness import Cluster

T = 10
"""The default election_timeout_ticks and node_timeout_ticks."""


def run(c: Cluster, ticks: int, *nodes: int) -> None:
    """``ticks`` rounds of one tick on each of ``nodes`` and delivery."""
    for _ in range(ticks):
        for node_id in nodes:
            c.tick(node_id)
        c.deliver()


def test_a_leader_hearing_everyone_reports_nobody() -> None:
    c = elected()
    run(c, 5 * T, 1, 2, 3)
    assert c.node(1).silent_peers() == frozenset()


def test_a_crashed_follower_is_silent_after_the_node_timeout_and_not_before() -> None:
    c = elected()
    run(c, 2, 1, 2, 3)
    c.crash(3)
    silent_at = None
    for tick in range(1, 3 * T):
        run(c, 1, 1, 2)
        if c.node(1).silent_peers():
            silent_at = tick
            break
    assert c.node(1).silent_peers() == frozenset({3})
    # Heard last within the heartbeat interval before the crash.
    assert silent_at is not None and T - 2 <= silent_at <= T, silent_at
    c.restart(3)
    run(c, 3, 1, 2, 3)
    assert c.node(1).silent_peers() == frozenset()


def test_only_a_leader_reports() -> None:
    c = elected()
    c.crash(3)
    run(c, 3 * T, 1, 2)
    assert c.node(1).silent_peers() == {3}
    assert c.node(2).silent_peers() == frozenset()


def test_a_peer_whose_messages_are_lost_one_way_is_silent() -> None:
    """n3 hears the leader (it stays a follower), but nothing of its reaches it."""
    c = elected()
    c.cut = {(3, 1)}
    run(c, 2 * T, 1, 2, 3)
    assert c.node(3).role is Role.FOLLOWER and c.node(3).leader == 1
    assert c.node(1).silent_peers() == {3}


def test_a_new_leader_reports_the_dead_old_leader_half_a_timeout_after_winning() -> None:
    c = elected()
    run(c, 2, 1, 2, 3)
    c.crash(1)
    won_at = None
    for tick in range(1, 10 * T):
        run(c, 1, 2, 3)
        if c.leaders():
            won_at = tick
            break
    assert won_at is not None
    (new,) = c.leaders()
    other = ({2, 3} - {new}).pop()
    ticks = 0
    while not c.node(new).silent_peers():
        assert ticks < T, "the old leader never reported"
        run(c, 1, 2, 3)
        ticks += 1
    assert c.node(new).silent_peers() == {1}, "the live follower is heard"
    assert ticks == T // 2, ticks
    assert other not in c.node(new).silent_peers()


def test_a_new_leader_gives_a_follower_it_never_heard_a_full_timeout() -> None:
    """Followers do not talk to each other: a new leader starts every peer's clock at its
    win, so a live follower has a whole node timeout to answer it."""
    c = elected(5)
    run(c, 2, 1, 2, 3, 4, 5)
    c.crash(1)
    c.crash(5)
    while not c.leaders():
        run(c, 1, 2, 3, 4)
    (new,) = c.leaders()
    run(c, T // 2 + 1, 2, 3, 4)
    assert c.node(new).silent_peers() == {1}
    run(c, T // 2, 2, 3, 4)
    assert c.node(new).silent_peers() == {1, 5}
