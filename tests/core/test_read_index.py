"""ReadIndex: a read is linearizable at the leader's commit once a majority answered a
heartbeat sent after the read arrived (Raft thesis §6.4, adapted to Multi-Paxos). Every
heartbeat round of a leader has its number (``read_seq``); its first is round 1."""

from __future__ import annotations

from relstorage_paxos.core import (
    Accept,
    Accepted,
    CatchUpReply,
    CatchUpRequest,
    Heartbeat,
    HeartbeatReply,
    Prepare,
    PreVote,
    PreVoteReply,
    Promise,
    ReadIndexRequest,
    Role,
)
from tests.core.support import elected_with_one_slot
from tests.interaction.harness import Cluster, match


def read_seqs(c: Cluster) -> list[int]:
    return [m.read_seq for m in c.pending_of(Heartbeat)]


def test_leader_answers_only_after_a_heartbeat_majority() -> None:
    c = elected_with_one_slot()
    c.read_index(1, "r1")
    assert c.read_states[1] == {}, "not before the leader is confirmed"
    assert read_seqs(c) == [2, 2], "a round of its own"
    c.deliver(match(Heartbeat, dst=2))
    assert c.read_states[1] == {}, "n2 has not answered yet"
    c.deliver(match(HeartbeatReply, src=2))
    assert c.read_states[1] == {b"r1": 1}
    assert "n1 read r1 at slot 1" in c.trace


def test_replies_to_an_earlier_heartbeat_do_not_confirm_a_read() -> None:
    c = elected_with_one_slot()
    c.tick(1, 2)
    assert read_seqs(c) == [2, 2]
    c.read_index(1, "r1")
    early = c.pending_of(Heartbeat, dst=2)[0]
    assert early.read_seq == 2, early
    c.deliver(lambda m: m is early)  # sent before the read arrived
    c.deliver(match(HeartbeatReply, src=2))
    assert c.read_states[1] == {}
    c.deliver()
    assert c.read_states[1] == {b"r1": 1}


def test_follower_read_is_forwarded_and_answered() -> None:
    c = elected_with_one_slot()
    c.read_index(2, "r2")
    assert [type(m) for m in c.pool] == [ReadIndexRequest]
    c.deliver()
    assert "1->2 ReadIndexReply [r2] slot=1" in c.trace
    assert c.read_states[2] == {b"r2": 1}
    assert c.read_states[1] == {}


def test_reads_wait_until_the_new_leaders_phase_one_slots_are_chosen() -> None:
    """n1 gets b accepted by n2 only and crashes. n3's phase 1 learns that slot 1 is chosen
    (n2's commit) and adopts b in slot 2. Until n3 has caught up slot 1 and got slot 2
    chosen, its commit may miss a choice, so no read round starts."""
    c = Cluster(3, seed=1)
    c.tick_until_campaign(1)
    c.deliver()
    c.propose(1, "a")
    c.deliver(slot=1)
    c.drop(match(Accept, dst=3))  # the commit announcement: n3 never learns slot 1 chosen
    c.deliver()
    assert c.node(1).commit == 1 and c.node(3).commit == 0
    c.propose(1, "b")
    c.deliver(match(Accept, dst=2))
    c.drop()
    c.crash(1)
    c.tick(2, 10)
    c.tick_until_campaign(3)
    c.deliver(type=(PreVote, PreVoteReply, Prepare, Promise))
    assert c.leaders() == [3]
    assert c.node(3).commit < 2
    c.read_index(3, "r3")
    c.deliver(type=Heartbeat)
    c.deliver(type=HeartbeatReply)
    assert c.read_states[3] == {}
    assert read_seqs(c) == [], "no read round before slot 2 is chosen"
    c.deliver(match(Accept, dst=2))
    c.deliver(match(Accepted, src=2))
    assert c.node(3).commit == 0, "slot 2 is chosen, slot 1 not caught up yet"
    assert read_seqs(c) == []
    c.deliver(type=(CatchUpRequest, CatchUpReply))
    assert c.node(3).commit == 2
    assert read_seqs(c) == [2, 2], "the read round starts once phase-1 slots are chosen"
    c.deliver()
    assert c.read_states[3] == {b"r3": 2}


def test_concurrent_reads_share_one_round() -> None:
    c = elected_with_one_slot()
    start = len(c.trace)
    c.read_index(1, "r1")
    c.read_index(1, "r2")
    c.read_index(2, "r3")
    c.read_index(3, "r4")
    c.deliver()
    assert c.read_states[1] == {b"r1": 1, b"r2": 1}
    assert c.read_states[2] == {b"r3": 1} and c.read_states[3] == {b"r4": 1}
    sent = [line for line in c.trace[start:] if "Heartbeat ballot" in line]
    assert sent == [
        "1->2 Heartbeat ballot=1.1 commit=1 read_seq=2",
        "1->3 Heartbeat ballot=1.1 commit=1 read_seq=2",
        "1->2 Heartbeat ballot=1.1 commit=1 read_seq=3",
        "1->3 Heartbeat ballot=1.1 commit=1 read_seq=3",
    ], "r1 has round 2; r2, r3 and r4, arriving during it, share round 3"


def test_read_at_the_commit_when_the_round_started() -> None:
    c = elected_with_one_slot()
    c.read_index(1, "r1")
    c.propose(1, "b")
    c.deliver()
    assert c.node(1).commit == 2
    assert c.read_states[1] == {b"r1": 1}


def test_cut_off_leader_never_answers_and_the_read_moves_to_the_next_leader() -> None:
    c = elected_with_one_slot()
    c.partition({1}, {2, 3})
    c.read_index(1, "r")
    for _ in range(30):
        c.tick(1)
        c.deliver()
    assert c.node(1).role is Role.FOLLOWER
    assert c.read_states[1] == {}
    c.tick(2, 10)
    c.tick_until_campaign(3)
    c.deliver()
    assert c.leaders() == [3]
    c.heal()
    c.tick(3, 2)
    c.deliver()
    assert "1->3 ReadIndexRequest [r]" in c.trace
    assert c.read_states[1] == {b"r": 1}
