"""The acceptor's two rules (Paxos Made Simple §2.2) and persist-before-send.

Node 2 of {1, 2, 3} is stepped by hand; every reply must leave in a Ready whose ``persist``
already holds the state the reply reveals, with ``must_sync`` set.
"""

from __future__ import annotations

from relstorage_paxos.core import (
    Accept,
    Accepted,
    CatchUpReply,
    Heartbeat,
    PersistentState,
    Prepare,
    Promise,
    SlotValue,
)
from tests.core.support import ballot, cycle, entry, make_node, sent, step, value


def accept(at: str, *slots: tuple[int, str], commit: int = 0, src: int | None = None) -> Accept:
    b = ballot(at)
    entries = tuple(SlotValue(slot, value(r)) for slot, r in slots)
    return Accept(src if src is not None else b.node_id, 2, b, entries, commit)


def prepare(at: str, from_slot: int = 1) -> Prepare:
    b = ballot(at)
    return Prepare(b.node_id, 2, b, from_slot)


# ---------------------------------------------------------------------- promise rule


def test_promise_is_persisted_and_synced_in_the_same_ready() -> None:
    node = make_node()
    ready = step(node, prepare("1.1"))
    (promise,) = sent(ready, Promise)
    assert promise.ok and promise.ballot == ballot("1.1") and promise.promised == ballot("1.1")
    assert ready.persist.promised == ballot("1.1")
    assert ready.persist.must_sync
    assert node.promised == ballot("1.1")


def test_rejects_a_lower_ballot_without_writing() -> None:
    node = make_node()
    step(node, prepare("2.1"))
    ready = step(node, prepare("1.3"))
    (reply,) = sent(ready, Promise)
    assert not reply.ok
    assert reply.promised == ballot("2.1"), "the refusal names the promise, to speed recovery"
    assert reply.entries == ()
    assert ready.persist.is_empty() and not ready.persist.must_sync
    assert node.promised == ballot("2.1")


def test_re_promises_an_equal_ballot() -> None:
    """A retransmitted Prepare gets the same answer: the promise stands and is already
    durable, so nothing new is written."""
    node = make_node()
    step(node, prepare("2.1"), accept("2.1", (1, "a")))
    ready = step(node, prepare("2.1"))
    (reply,) = sent(ready, Promise)
    assert reply.ok and reply.promised == ballot("2.1")
    assert reply.entries == (entry(1, "2.1", "a"),)
    assert ready.persist.promised is None


def test_higher_ballot_raises_the_promise_and_reports_accepted_values() -> None:
    node = make_node()
    step(node, prepare("1.1"), accept("1.1", (1, "a"), (2, "b")))
    ready = step(node, prepare("2.3", from_slot=2))
    (reply,) = sent(ready, Promise)
    assert reply.ok and reply.dst == 3 and reply.promised == ballot("2.3")
    assert reply.entries == (entry(2, "1.1", "b"),), "only slots from from_slot on"
    assert ready.persist.promised == ballot("2.3") and ready.persist.must_sync


def test_promise_leaves_out_slots_known_chosen() -> None:
    """Slots up to the acceptor's commit are reported through ``commit``, not re-proposed."""
    node = make_node()
    step(node, accept("1.1", (1, "a"), (2, "b")))
    step(node, Heartbeat(1, 2, ballot("1.1"), commit=1, read_seq=0))
    assert node.commit == 1
    (reply,) = sent(step(node, prepare("2.3")), Promise)
    assert reply.commit == 1
    assert reply.entries == (entry(2, "1.1", "b"),)


# ---------------------------------------------------------------------- accept rule


def test_accepts_at_the_promise_and_persists_before_replying() -> None:
    node = make_node()
    step(node, prepare("1.1"))
    ready = step(node, accept("1.1", (1, "a"), (2, "b")))
    (reply,) = sent(ready, Accepted)
    assert reply.ok and reply.slots == (1, 2)
    assert ready.persist.entries == (entry(1, "1.1", "a"), entry(2, "1.1", "b"))
    assert ready.persist.must_sync


def test_rejects_an_accept_below_the_promise() -> None:
    node = make_node()
    step(node, prepare("2.3"))
    ready = step(node, accept("1.1", (1, "a")))
    (reply,) = sent(ready, Accepted)
    assert not reply.ok and reply.promised == ballot("2.3") and reply.slots == ()
    assert ready.persist.is_empty()
    assert 1 not in node.log


def test_accept_above_the_promise_raises_it_in_the_same_ready() -> None:
    node = make_node()
    step(node, prepare("1.1"))
    ready = step(node, accept("3.3", (1, "c")))
    (reply,) = sent(ready, Accepted)
    assert reply.ok and reply.promised == ballot("3.3")
    assert ready.persist.promised == ballot("3.3")
    assert ready.persist.entries == (entry(1, "3.3", "c"),)
    assert ready.persist.must_sync
    assert node.promised == ballot("3.3") and node.leader == 3
    assert not sent(step(node, prepare("2.1")), Promise)[0].ok


def test_a_higher_ballot_overwrites_an_accepted_value() -> None:
    node = make_node()
    step(node, accept("1.1", (1, "a")))
    step(node, accept("2.3", (1, "b")))
    assert node.log[1] == entry(1, "2.3", "b")


def test_chosen_entries_are_never_overwritten() -> None:
    node = make_node()
    step(node, accept("1.1", (1, "a")))
    step(node, Heartbeat(1, 2, ballot("1.1"), commit=1, read_seq=0))
    assert node.log[1] == entry(1, "1.1", "a", chosen=True)
    ready = step(node, accept("2.3", (1, "a"), (2, "b")))
    assert node.log[1] == entry(1, "1.1", "a", chosen=True)
    assert [e.slot for e in ready.persist.entries] == [2]
    (reply,) = sent(ready, Accepted)
    assert reply.ok and reply.slots == (1, 2)


def test_chosen_marks_need_no_sync() -> None:
    """A lost chosen mark is learned again from peers (ready.py, ``Persist``)."""
    node = make_node()
    step(node, accept("1.1", (1, "a")))
    ready = step(node, Heartbeat(1, 2, ballot("1.1"), commit=1, read_seq=0))
    assert ready.persist.entries == (entry(1, "1.1", "a", chosen=True),)
    assert not ready.persist.must_sync


def test_nothing_below_the_truncation_point_is_written() -> None:
    node = make_node(state=PersistentState(ballot("1.1"), (), truncated=3), applied=3)
    ready = step(node, accept("1.1", (3, "old"), (4, "d")))
    assert [e.slot for e in ready.persist.entries] == [4]
    assert 3 not in node.log
    assert cycle(node).is_empty()


def test_an_accept_from_a_lower_ballot_for_a_slot_learned_by_catch_up_is_ignored() -> None:
    """Simulator seed 104789 (5 nodes, soak): a leader of ballot 3.3 chose "x" in slot 1;
    node 2 promised only 2.1 and learned slot 1 by catch-up, which does not raise its
    promise; then the Accept of the stale leader 2.1, for another value in slot 1, arrived.
    It must be neither stored nor acknowledged (nor crash the node)."""
    node = make_node()
    step(node, prepare("2.1"))
    step(node, Heartbeat(3, 2, ballot("3.3"), commit=1, read_seq=0))  # asks 3 to catch up
    assert node.promised == ballot("2.1")
    step(node, CatchUpReply(3, 2, (SlotValue(1, value("x")),), 1, 0))
    assert node.log[1].chosen and node.log[1].value == value("x")
    ready = step(node, accept("2.1", (1, "y"), (2, "z")))
    (reply,) = sent(ready, Accepted)
    assert reply.ok and reply.slots == (2,)
    assert node.log[1].value == value("x")
    assert node.log[2].value == value("z")
