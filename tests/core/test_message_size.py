"""Large values: a proposal over ``batch_bytes_max`` gets a slot of its own, one over
``record_bytes_max`` is refused, and no message carries more than ``message_bytes_max`` of
entries unless a single entry is larger (then it travels alone): Accept, Forward,
CatchUpReply, and the Promise, whose parts a candidate must all have before it counts it."""

from __future__ import annotations

import pytest

from relstorage_paxos.core import (
    Accept,
    Accepted,
    CatchUpReply,
    Forward,
    Heartbeat,
    HeartbeatReply,
    Promise,
    Proposal,
    ProposalTooLarge,
    Role,
)
from relstorage_paxos.core.messages import entry_size, split_by_size
from tests.core import support
from tests.interaction.harness import Cluster

BUDGET = 1000
"""message_bytes_max and batch_bytes_max of these tests."""
LARGE = b"x" * 600
"""A payload two of which do not fit in one slot, nor in one message."""


def elected(**options: int) -> Cluster:
    return support.elected(message_bytes_max=BUDGET, batch_bytes_max=BUDGET, **options)


def entries_size(m: Accept | CatchUpReply | Promise) -> int:
    return sum(entry_size(e.value) for e in m.entries)


def assert_within_budget(m: Accept | CatchUpReply | Promise) -> None:
    assert len(m.entries) == 1 or entries_size(m) <= BUDGET, (len(m.entries), entries_size(m))


def test_split_by_size_keeps_order_and_puts_an_oversized_item_alone() -> None:
    assert split_by_size([], len, 10) == []
    assert split_by_size(["aaaa", "bbbb", "cc", "d" * 30, "e"], len, 10) == [
        ["aaaa", "bbbb", "cc"],
        ["d" * 30],
        ["e"],
    ]


def test_an_oversized_proposal_gets_a_slot_and_a_message_of_its_own() -> None:
    c = elected()
    big = b"y" * (3 * BUDGET)
    c.propose_batch(1, [("a", b"1"), ("big", big), ("b", b"1"), ("c", b"1")])
    to_2 = c.pending_of(Accept, dst=2)
    assert [[sv.slot for sv in m.entries] for m in to_2] == [[1], [2], [3]]
    assert to_2[1].entries[0].value == (Proposal(b"big", big),)
    for m in c.pending_of(Accept):
        assert_within_budget(m)
    c.deliver()
    assert c.applied(1) == c.applied(2) == c.applied(3) == ["[a]", "[big]", "[b,c]"]


def test_new_slots_are_accepted_in_several_messages() -> None:
    c = elected()
    c.propose_batch(1, [(f"p{i}", LARGE) for i in range(1, 5)])
    to_3 = c.pending_of(Accept, dst=3)
    assert len(to_3) == 4, [len(m.entries) for m in to_3]
    for m in c.pending_of(Accept):
        assert_within_budget(m)
    c.deliver()
    assert c.applied(3) == ["[p1]", "[p2]", "[p3]", "[p4]"]


@pytest.mark.parametrize(
    ("payload", "expected"), [(b"1", [[1, 2, 3]]), (LARGE, [[1], [2], [3]])], ids=["small", "large"]
)
def test_unacknowledged_slots_are_resent_within_the_budget(
    payload: bytes, expected: list[list[int]]
) -> None:
    c = elected()
    for r in "abc":
        c.propose(1, r, payload)
    c.drop(type=Accept)
    c.tick(1, 2)
    c.deliver(type=(Heartbeat, HeartbeatReply))  # answered after the Accepts: they were lost
    resent = c.pending_of(Accept, dst=2)
    assert [[sv.slot for sv in m.entries] for m in resent] == expected


def test_an_acceptor_still_writing_a_large_value_gets_no_second_copy() -> None:
    """Only a reply to a heartbeat sent after the Accept shows that it was lost; replies to
    earlier ones, however many heartbeats pass, do not."""
    c = elected()
    c.tick(1, 2)
    c.propose(1, "big", LARGE * 10)
    for _ in range(5):
        c.tick(1, 2)
    first = c.pending_of(Heartbeat, dst=2)[0]
    c.deliver(lambda m: m is first)  # sent before the Accept
    c.deliver(type=HeartbeatReply)
    copies = [m for m in c.pending_of(Accept, dst=2) if m.entries]
    assert len(copies) == 1, len(copies)
    c.deliver()
    assert c.applied(2) == ["[big]"]
    sent = [line for line in c.trace if line.startswith("1->2 Accept") and "1=[big]" in line]
    assert len(sent) == 1, sent


def test_a_proposal_over_record_bytes_max_is_refused_and_nothing_else_is_harmed() -> None:
    c = elected(record_bytes_max=2 * BUDGET)
    with pytest.raises(ProposalTooLarge) as refused:
        c.propose(1, "huge", b"z" * (2 * BUDGET + 1))
    assert (refused.value.size, refused.value.limit) == (2 * BUDGET + 1, 2 * BUDGET)
    with pytest.raises(ProposalTooLarge):
        c.propose(3, "huge-at-a-follower", b"z" * (2 * BUDGET + 1))
    assert c.pool == [], "nothing queued, forwarded or accepted"
    c.propose(1, "at-the-limit", b"z" * (2 * BUDGET))
    c.propose(3, "small")
    c.deliver()
    c.tick(1, 2)
    c.deliver()
    assert c.applied(1) == c.applied(3) == ["[at-the-limit]", "[small]"]


def test_the_leader_drops_forwarded_proposals_over_its_record_bytes_max() -> None:
    """Only a peer configured with a larger limit sends these."""
    c = elected(record_bytes_max=BUDGET)
    oversized = Proposal(b"over", b"z" * (BUDGET + 1))
    c.step(Forward(3, 1, (oversized, Proposal(b"fits", b"z"))))
    c.deliver()
    assert c.applied(1) == ["[fits]"]


def test_pending_proposals_are_forwarded_in_several_messages() -> None:
    c = Cluster(3, seed=1, message_bytes_max=BUDGET, batch_bytes_max=BUDGET)
    c.propose_batch(3, [("f1", LARGE), ("f2", LARGE), ("f3", b"1")])
    assert c.pool == [], "no leader known yet: queued"
    c.tick_until_campaign(1)
    c.deliver()
    forwards = [line for line in c.trace if "3->1 Forward" in line]
    assert forwards == ["3->1 Forward [f1]", "3->1 Forward [f2,f3]"], forwards
    c.tick(1, 2)
    c.deliver()
    assert c.applied(3) == ["[f1]", "[f2,f3]"]


def test_catch_up_of_several_large_entries_splits_into_several_replies() -> None:
    c = elected()
    c.partition({1, 2}, {3})
    for i in range(1, 5):
        c.propose(1, f"c{i}", LARGE)
    c.deliver()
    c.heal()
    c.tick(1, 2)
    c.deliver()
    replies = [line for line in c.trace if "1->3 CatchUpReply" in line]
    assert replies == [
        f"1->3 CatchUpReply commit=4 snapshot_slot=0 entries=[{s}=[c{s}]]" for s in range(1, 5)
    ], replies
    assert c.applied(3) == ["[c1]", "[c2]", "[c3]", "[c4]"]


def test_catch_up_packs_small_entries_up_to_the_budget() -> None:
    c = elected()
    c.partition({1, 2}, {3})
    for i in range(1, 9):
        c.propose(1, f"s{i}", b"x" * 100)  # 166 bytes an entry: six fit in 1000
    c.deliver()
    c.heal()
    c.tick(1, 2)
    c.deliver()
    replies = [line for line in c.trace if "1->3 CatchUpReply" in line]
    assert len(replies) == 2, replies
    assert replies[1].endswith("entries=[7=[s7], 8=[s8]]"), replies


def chosen_on_one_follower_only(c: Cluster) -> None:
    """n1 gets p1..p3 chosen with n3 alone (n2 never sees them), then dies before it tells
    anyone: the values live on in n3's log only, unmarked."""
    c.partition({1, 3}, {2})
    c.propose_batch(1, [(f"p{i}", LARGE) for i in range(1, 4)])
    c.deliver(type=Accept, dst=3)
    c.deliver(type=Accepted, src=3)
    assert c.node(1).commit == 3
    c.crash(1)
    c.pool.clear()
    c.heal()
    c.tick(3, 10)  # n3 stops waiting for n1 (and campaigns: its PreVotes are lost)
    c.drop()


def test_a_promise_in_parts_counts_only_once_every_part_arrived() -> None:
    c = elected()
    chosen_on_one_follower_only(c)
    c.tick_until_campaign(2)
    c.deliver(lambda m: not isinstance(m, Promise))
    parts = c.pending_of(Promise, src=3, dst=2)
    assert [(p.first_slot, p.last_slot, len(p.entries)) for p in parts] == [
        (1, 1, 1),
        (2, 2, 1),
        (3, None, 1),
    ]
    for part in [parts[2], parts[0], parts[2]]:  # out of order, and one twice
        c.deliver(lambda m, part=part: m is part)
        assert c.node(2).role is Role.CANDIDATE, "a promise with a part missing counted"
    c.deliver(lambda m: m is parts[1])
    assert c.node(2).role is Role.LEADER
    c.deliver()
    c.tick(2, 2)
    c.deliver()
    assert c.applied(2) == c.applied(3) == ["[p1]", "[p2]", "[p3]"]


def test_promise_parts_are_traced_with_their_slots() -> None:
    c = elected()
    chosen_on_one_follower_only(c)
    c.tick_until_campaign(2)
    while c.pending(lambda m: not isinstance(m, Promise)):
        c.deliver(lambda m: not isinstance(m, Promise))
    parts = c.pending_of(Promise, src=3, dst=2)
    assert len(parts) == 3, parts
    for m in parts:
        assert_within_budget(m)
    c.deliver()
    promises = [line for line in c.trace if line.startswith("3->2 Promise")]
    assert [line.rsplit(" ", 1)[-1] for line in promises] == [
        "part=1..1",
        "part=2..2",
        "part=3..",
    ], promises
    assert c.applied(2) == ["[p1]", "[p2]", "[p3]"]
