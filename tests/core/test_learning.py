"""Learning: commit announced at once and piggybacked on Accept and Heartbeat, catch-up,
snapshots."""

from __future__ import annotations

import pytest

from relstorage_paxos.core import (
    ZERO_BALLOT,
    Accept,
    Accepted,
    CatchUpReply,
    CatchUpRequest,
    Heartbeat,
    PersistentState,
    PreVoteReply,
    Promise,
    Role,
    SlotValue,
    SnapshotRequest,
)
from tests.core.support import (
    ballot,
    campaign,
    cycle,
    elected,
    entry,
    make_node,
    role,
    sent,
    step,
    value,
)
from tests.interaction.harness import Cluster, match


def test_follower_learns_commit_from_the_announcement_or_the_next_accept() -> None:
    c = elected()
    c.propose(1, "a")
    c.deliver(slot=1)
    assert c.applied(1) == ["[a]"] and c.applied(2) == [] and c.applied(3) == []
    announcements = c.pending_of(Accept)
    assert [(m.dst, m.entries, m.commit) for m in announcements] == [(2, (), 1), (3, (), 1)]
    c.deliver(match(Accept, dst=2))
    assert c.applied(2) == ["[a]"], "slot 1 learned from the leader's commit announcement"
    c.drop(match(Accept, dst=3))
    c.propose(1, "b")
    (_, accept) = c.pending_of(Accept)
    assert accept.dst == 3 and accept.commit == 1
    c.deliver(match(Accept, dst=3))
    assert c.applied(3) == ["[a]"], "announcement lost: commit piggybacked on phase 2"


def test_leader_announces_its_commit_at_once_and_gets_no_reply() -> None:
    leader = make_node(node_id=1)
    pre_ballot = campaign(leader)
    step(leader, PreVoteReply(2, 1, pre_ballot, True, ZERO_BALLOT))
    b = leader.promised
    step(leader, Promise(2, 1, b, True, b, (), 0))
    assert role(leader) is Role.LEADER
    leader.propose(b"a", b"")
    assert [m.entries for m in sent(cycle(leader), Accept)] == [(SlotValue(1, value("a")),)] * 2
    leader.step(Accepted(2, 1, b, True, b, (1,)))
    ready = cycle(leader)
    assert ready.chosen == (SlotValue(1, value("a")),)
    assert ready.messages == (Accept(1, 2, b, (), 1, 1), Accept(1, 3, b, (), 1, 1)), ready.messages
    assert cycle(leader).is_empty(), "announced once"

    follower = make_node(node_id=2)
    step(follower, Accept(1, 2, b, (SlotValue(1, value("a")),), 0))
    ready = step(follower, Accept(1, 2, b, (), 1))
    assert ready.chosen == (SlotValue(1, value("a")),)
    assert ready.messages == (), "an Accept without entries gets no Accepted"


def test_follower_learns_commit_from_a_heartbeat() -> None:
    node = make_node()
    step(node, Accept(1, 2, ballot("1.1"), (SlotValue(1, value("a")),), 0))
    ready = step(node, Heartbeat(1, 2, ballot("1.1"), commit=1, read_seq=0))
    assert ready.chosen == (SlotValue(1, value("a")),)
    assert node.applied == 1 and node.commit == 1


def test_commit_does_not_vouch_for_a_value_from_another_ballot() -> None:
    """n2 holds a@1.1 in slot 1; the leader of 2.3 says slot 1 is chosen. The chosen value
    may differ from a (a was maybe never chosen), so n2 asks rather than guess."""
    node = make_node()
    step(node, Accept(1, 2, ballot("1.1"), (SlotValue(1, value("a")),), 0))
    ready = step(node, Heartbeat(3, 2, ballot("2.3"), commit=1, read_seq=0))
    assert ready.chosen == ()
    assert sent(ready, CatchUpRequest) == [CatchUpRequest(2, 3, 1)]
    ready = step(node, CatchUpReply(3, 2, (SlotValue(1, value("b")),), 1, 0))
    assert ready.chosen == (SlotValue(1, value("b")),)
    assert node.log[1].chosen and node.log[1].value == value("b")


def test_a_catch_up_reply_from_a_peer_not_asked_is_ignored() -> None:
    """n2 asked the leader, n3; values "from" n1 (forged, or an answer to an earlier
    request) are not believed chosen, nor is a snapshot it offers."""
    node = make_node()
    ready = step(node, Heartbeat(3, 2, ballot("2.3"), commit=1, read_seq=0))
    assert sent(ready, CatchUpRequest) == [CatchUpRequest(2, 3, 1)]
    ready = step(node, CatchUpReply(1, 2, (SlotValue(1, value("forged")),), 1, 0))
    assert ready.chosen == () and ready.snapshot_request is None
    ready = step(node, CatchUpReply(1, 2, (), 9, 9))
    assert ready.snapshot_request is None and node.commit == 0
    ready = step(node, CatchUpReply(3, 2, (SlotValue(1, value("b")),), 1, 0))
    assert ready.chosen == (SlotValue(1, value("b")),)


def test_another_value_for_a_chosen_slot_is_ignored_not_asserted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No honest node reports it (agreement), so such a message is forged or corrupt: the
    node logs it and goes on, instead of stopping at an assertion."""
    node = make_node()
    step(node, Heartbeat(3, 2, ballot("2.3"), commit=2, read_seq=0))
    ready = step(node, CatchUpReply(3, 2, (SlotValue(1, value("b")),), 2, 0))
    assert ready.chosen == (SlotValue(1, value("b")),)
    forged = (SlotValue(1, value("forged")), SlotValue(2, value("c")))
    ready = step(node, CatchUpReply(3, 2, forged, 2, 0))
    assert ready.chosen == (SlotValue(2, value("c")),)
    assert node.log[1].value == value("b")
    assert "other than the one chosen there" in caplog.text


def test_catch_up_request_is_retried_until_answered() -> None:
    node = make_node(heartbeat_interval_ticks=2)
    ready = step(node, Heartbeat(1, 2, ballot("1.1"), commit=3, read_seq=0))
    assert sent(ready, CatchUpRequest) == [CatchUpRequest(2, 1, 1)]
    node.tick()
    assert sent(cycle(node), CatchUpRequest) == [], "one request per heartbeat interval"
    node.tick()
    assert sent(cycle(node), CatchUpRequest) == [CatchUpRequest(2, 1, 1)]
    entries = tuple(SlotValue(s, value(f"v{s}")) for s in (1, 2, 3))
    step(node, CatchUpReply(1, 2, entries, 3, 0))
    assert node.applied == 3
    node.tick()
    node.tick()
    assert sent(cycle(node), CatchUpRequest) == [], "target reached: no more requests"


def test_catch_up_in_chunks_of_catchup_slots_max() -> None:
    c = elected(catchup_slots_max=2)
    c.partition({1, 2}, {3})
    for r in "abcde":
        c.propose(1, r)
    c.deliver()
    c.heal()
    c.tick(1, 2)
    c.deliver()
    replies = [line for line in c.trace if "CatchUpReply" in line]
    assert replies == [
        "1->3 CatchUpReply commit=5 snapshot_slot=0 entries=[1=[a], 2=[b]]",
        "1->3 CatchUpReply commit=5 snapshot_slot=0 entries=[3=[c], 4=[d]]",
        "1->3 CatchUpReply commit=5 snapshot_slot=0 entries=[5=[e]]",
    ], replies
    assert c.applied(3) == ["[a]", "[b]", "[c]", "[d]", "[e]"]


def test_catch_up_reply_names_the_snapshot_when_the_peer_compacted() -> None:
    c = elected()
    c.partition({1, 2}, {3})
    for r in "abcd":
        c.propose(1, r)
    c.deliver()
    c.compact(1, 3)
    c.heal()
    c.tick(1, 2)
    c.deliver()
    assert "1->3 CatchUpReply commit=4 snapshot_slot=4 entries=[]" in c.trace
    assert c.snapshot_requests[3] == SnapshotRequest(peer=1, min_slot=4)
    assert c.applied(3) == []
    assert c.install_snapshot(3) == 4
    assert c.node(3).applied == 4 and c.node(3).commit == 4 and c.node(3).truncated == 4
    assert c.disks[3].truncated == 4 and c.disks[3].entries == {}
    c.propose(1, "e")
    c.deliver()
    c.tick(1, 2)
    c.deliver()
    assert c.applied(3) == ["[a]", "[b]", "[c]", "[d]", "[e]"]


def test_applied_slots_with_lost_chosen_marks_are_served_by_snapshot() -> None:
    """After a crash lost the (unsynced) chosen marks, slots up to ``applied`` are chosen but
    cannot be served from the log."""
    state = PersistentState(ballot("1.1"), (entry(1, "1.1", "a"), entry(2, "1.1", "b")), 0)
    node = make_node(node_id=1, state=state, applied=2)
    ready = step(node, CatchUpRequest(3, 1, 1))
    assert sent(ready, CatchUpReply) == [CatchUpReply(1, 3, (), 2, 2)]


def test_restore_snapshot_truncates_and_moves_applied() -> None:
    node = make_node()
    step(node, Accept(1, 2, ballot("1.1"), (SlotValue(1, value("a")), SlotValue(7, value("g"))), 0))
    node.restore_snapshot(5)
    ready = cycle(node)
    assert ready.persist.truncated == 5
    assert ready.chosen == (), "the snapshot holds slots 1-5; nothing to apply"
    assert node.applied == 5 and node.commit == 5
    assert sorted(node.log) == [7]
    node.restore_snapshot(3)
    assert cycle(node).is_empty(), "an older snapshot changes nothing"
    ready = step(node, Accept(1, 2, ballot("1.1"), (SlotValue(6, value("f")),), 7))
    assert ready.chosen == (SlotValue(6, value("f")), SlotValue(7, value("g")))


def test_compact_only_below_applied() -> None:
    node = make_node()
    with pytest.raises(AssertionError):
        node.compact(1)


# ---------------------------------------------------------------------- core bug


def stale_leader_learns_from_catch_up() -> Cluster:
    """5 nodes. n4 leads in 2.4 with {2,4,5} and gets w accepted in slot 2 by n5 only (not
    chosen). Then n3 leads in 3.3 with {1,2,3} and chooses v in slot 2. n4, still believing it
    leads, learns slot 2 = v by catch-up from n2, so its commit covers slot 2."""
    c = elected(5)
    c.propose(1, "a")
    c.drop(lambda m: m.dst in (4, 5))
    c.deliver(lambda m: m.dst != 4)  # n5 learns slot 1 from the commit announcement
    c.tick(1, 2)
    c.drop(match(dst=4))  # n4 hears nothing of slot 1: announcement and heartbeat are lost
    c.deliver()
    c.partition({2, 4, 5}, {1, 3})
    c.tick(2, 10)
    c.tick(5, 10)
    c.tick_until_campaign(4)
    c.deliver(lambda m: not isinstance(m, CatchUpRequest))  # n4's catch-up request is lost
    c.drop()
    assert c.leaders() == [1, 4] and c.node(4).commit == 0
    c.propose(4, "w")
    c.deliver(match(Accept, dst=5))
    c.drop()
    c.partition({1, 2, 3}, {4, 5})
    c.tick(2, 10)
    c.tick(1, 2)
    c.deliver()
    c.tick_until_campaign(3)
    c.deliver()
    c.tick_until_campaign(3)
    c.deliver()
    assert c.leaders() == [3, 4]
    c.propose(3, "v")
    c.deliver()  # n1 and n2 learn v from n3's commit announcement
    c.heal()
    c.tick(4, 2)  # n4 retries its catch-up request; only that exchange gets through
    c.drop(lambda m: not isinstance(m, CatchUpRequest))
    c.deliver(type=(CatchUpRequest, CatchUpReply))
    c.partition({1, 2, 3}, {4, 5})
    return c  # what n4 sent on learning slot 2 (a leader's commit announcement) is pending


def test_stale_leader_scenario_preconditions() -> None:
    c = stale_leader_learns_from_catch_up()
    assert c.leaders() == [3]
    for i in (1, 2, 3, 4):
        assert c.applied(i) == ["[a]", "[v]"], (i, c.applied(i))
    # n4 led 2.4 and proposed w in slot 2; catch-up told it v was chosen there, which proves
    # a higher ballot took over, so it stopped leading before vouching for slot 2.
    assert c.node(4).role is Role.FOLLOWER and c.node(4).promised == ballot("2.4")
    assert c.node(4).commit == 2
    assert c.pending() == [], "n4 announced no commit: it no longer leads"
    assert c.node(5).log[2] == entry(2, "2.4", "w")
    assert c.applied(5) == ["[a]"]


def test_follower_never_learns_a_value_that_was_not_chosen() -> None:
    """node.py's third safety fact assumes every slot up to the leader's commit holds the
    value the leader proposed in its ballot; a leader that learns by catch-up that another
    value won one of its slots must stop leading, or _learn_commit would mark n5's stale
    w@2.4 chosen: n5 would apply w, the rest v."""
    c = stale_leader_learns_from_catch_up()
    c.deliver()  # a leader would have announced at once: Accept 4->5 ballot=2.4 commit=2
    c.tick(4, 2)  # and sent Heartbeat 4->5 ballot=2.4 commit=2 now
    c.deliver()
    # n5 is still cut off from the majority: it may lag, but never apply anything else.
    assert c.applied(2)[: len(c.applied(5))] == c.applied(5), (c.applied(5), c.applied(2))
    assert "[w]" not in c.applied(5)
