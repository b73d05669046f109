"""Phase 2: the pipeline window, batching, forwarding to the leader, retransmission, and
what a retried request id does."""

from __future__ import annotations

from relstorage_paxos.core import (
    Accept,
    Accepted,
    Forward,
    Heartbeat,
    HeartbeatReply,
    Prepare,
    PreVote,
    PreVoteReply,
    Promise,
    Role,
)
from tests.core.support import elected
from tests.interaction.harness import Cluster, match


def accept_slots(c: Cluster) -> list[int]:
    return sorted({sv.slot for m in c.pending_of(Accept) for sv in m.entries})


def in_flight(c: Cluster) -> int:
    leader = c.node(1)
    return max(leader.log, default=0) - leader.commit


def test_pipeline_window_bounds_slots_in_phase_2() -> None:
    c = elected(pipeline_window_slots=3)
    for i in range(1, 8):
        c.propose(1, f"p{i}")
    assert accept_slots(c) == [1, 2, 3], "p4..p7 wait for the window"
    assert in_flight(c) == 3
    while c.pool:
        c.deliver_next()
        assert in_flight(c) <= 3, in_flight(c)
    assert c.applied(1) == ["[p1]", "[p2]", "[p3]", "[p4,p5,p6,p7]"], "queued ones batch"


def test_window_opens_as_slots_are_chosen() -> None:
    c = elected(pipeline_window_slots=2)
    for i in range(1, 4):
        c.propose(1, f"p{i}")
    assert accept_slots(c) == [1, 2]
    c.deliver(match(Accept, dst=2, slot=1))
    c.deliver(match(Accepted, src=2, slot=1))
    assert 3 in accept_slots(c), "slot 1 chosen: p3 enters slot 3"


def test_batching_packs_proposals_up_to_batch_bytes_max() -> None:
    c = elected(batch_bytes_max=42)
    # 5 bytes each, plus PROPOSAL_OVERHEAD_BYTES (16): two fit in 42
    c.propose_batch(1, [("b", b"1234"), ("c", b"1234"), ("d", b"1234")])
    assert accept_slots(c) == [1, 2]
    c.deliver()
    assert c.applied(1) == ["[b,c]", "[d]"]


def test_oversized_proposal_gets_a_slot_of_its_own() -> None:
    c = elected(batch_bytes_max=42)
    c.propose_batch(1, [("e", b"1"), ("big", b"x" * 50), ("f", b"1"), ("g", b"1")])
    c.deliver()
    assert c.applied(1) == ["[e]", "[big]", "[f,g]"]


def test_batches_form_while_the_window_is_full() -> None:
    c = elected(pipeline_window_slots=1)
    for r in "abcd":
        c.propose(1, r)
    assert accept_slots(c) == [1]
    c.deliver()
    assert c.applied(1) == ["[a]", "[b,c,d]"]


def test_follower_forwards_proposals_to_the_leader() -> None:
    c = elected()
    c.propose(3, "via3")
    assert [type(m) for m in c.pool] == [Forward]
    assert c.pool[0].dst == 1
    c.deliver()
    c.tick(1, 2)
    c.deliver()
    for i in (1, 2, 3):
        assert c.applied(i) == ["[via3]"], (i, c.applied(i))


def test_proposals_wait_for_a_leader_then_are_forwarded() -> None:
    c = Cluster(3, seed=1)
    c.propose(2, "early")
    assert not c.pool, "no leader known: the proposal waits at n2"
    c.tick_until_campaign(1)
    c.deliver()
    assert "2->1 Forward [early]" in c.trace
    assert c.applied(1) == ["[early]"]


def test_candidate_proposes_its_own_waiting_proposals_once_it_leads() -> None:
    c = Cluster(3, seed=1)
    c.tick_until_campaign(1)
    c.propose(1, "mine")
    assert all(isinstance(m, PreVote) for m in c.pool)
    c.deliver()
    assert c.applied(1) == ["[mine]"]


def test_unacknowledged_accepts_are_resent_once_a_later_heartbeat_is_answered() -> None:
    c = elected()
    c.propose(1, "a")
    c.drop(match(Accept, dst=3))
    c.deliver(match(Accept, dst=2))
    c.deliver(match(Accepted))
    assert c.applied(1) == ["[a]"], "chosen by n1 and n2"
    announcements = c.pending_of(Accept)
    assert [(m.dst, m.entries, m.commit) for m in announcements] == [(2, (), 1), (3, (), 1)]
    c.tick(1, 2)
    c.deliver(type=(Heartbeat, HeartbeatReply))
    assert c.pending_of(Accept) == announcements, "chosen slots are not resent"
    c.propose(1, "b")
    c.drop(match(Accept))  # b's Accepts and both announcements: n3 learns a by catch-up
    c.tick(1, 2)
    assert c.pending_of(Accept) == [], "no resend on a timer"
    c.deliver(type=(Heartbeat, HeartbeatReply))
    resent = c.pending_of(Accept)
    assert [(m.dst, [sv.slot for sv in m.entries]) for m in resent] == [
        (2, [2]),
        (3, [2]),
    ], "the replies to a heartbeat sent after b's Accepts show they were lost"
    c.deliver()
    c.tick(1, 2)
    c.deliver()
    assert c.applied(3) == ["[a]", "[b]"]


def test_retried_request_may_be_chosen_twice_and_the_state_machine_dedups() -> None:
    """n1 gets r accepted by n2 only, then crashes. The client times out and retries r at n3,
    which is campaigning: n3's phase 1 adopts n2's r in slot 1 and its queued
    retry in slot 2. The core drops only retries of requests it holds itself (node.py
    docstring); the state machine applies each request id once (DESIGN.md §3)."""
    c = elected()
    c.propose(1, "r")
    c.deliver(match(Accept, dst=2))
    c.drop()
    c.crash(1)
    c.tick(2, 10)
    c.tick_until_campaign(3)
    assert c.node(3).role is Role.PRE_CANDIDATE
    c.propose(3, "r")  # the client's retry
    c.deliver()
    assert c.leaders() == [3]
    c.tick(3, 2)
    c.deliver()
    assert c.applied(2) == ["[r]", "[r]"]
    assert c.applied(3) == ["[r]", "[r]"]
    assert c.sms[3].fresh_request_ids() == ["r"]


def test_a_retry_of_a_request_the_leader_holds_gets_no_second_slot() -> None:
    """The runtime re-proposes what is not applied after a while; a large record still
    being replicated must not be replicated twice."""
    c = elected(pipeline_window_slots=1)
    c.propose(1, "a")
    c.propose(1, "b")  # queued: the window is full
    c.propose(1, "a")  # a retry while a is in phase 2
    c.propose(1, "b")  # a retry while b is queued
    c.propose(3, "a")  # a retry at a follower, forwarded
    c.deliver()
    c.tick(1, 2)
    c.deliver()
    assert c.applied(1) == c.applied(3) == ["[a]", "[b]"]
    c.propose(1, "a")  # chosen already: the state machine answers it
    c.deliver()
    assert c.applied(1) == ["[a]", "[b]"]


def test_a_follower_forwards_no_retry_of_a_request_it_accepted_from_the_leader() -> None:
    c = elected()
    c.propose(3, "f")
    c.deliver(type=Forward)
    c.deliver(match(Accept, dst=3))  # n3 holds f, accepted in the leader's ballot
    c.propose(3, "f")
    assert c.pending_of(Forward) == [], "on its way: the leader resends it until chosen"
    c.deliver()
    c.tick(1, 2)
    c.deliver()
    assert c.applied(3) == ["[f]"]


def test_a_retry_passes_once_the_leader_that_held_it_is_gone() -> None:
    c = elected()
    c.propose(3, "g")
    c.deliver(type=Forward)
    c.deliver(match(Accept, dst=3))
    c.drop()  # n2 never sees g; n1 never hears back
    c.crash(1)
    c.tick(3, 10)
    c.drop()
    c.tick_until_campaign(2)
    c.deliver(type=(PreVote, PreVoteReply, Prepare, Promise))
    assert c.leaders() == [2]
    c.deliver(type=Heartbeat, dst=3)  # n3 hears of a leader in another ballot
    c.propose(3, "g")
    assert [m.dst for m in c.pending_of(Forward)] == [2], "g's ballot is gone with n1"
    c.deliver()
    c.tick(2, 2)
    c.deliver()
    assert c.sms[3].fresh_request_ids() == ["g"]
