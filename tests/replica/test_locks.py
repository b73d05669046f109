"""LockObjects, ReleaseTxn, ExpireLeases and ExpireNodes: all-or-nothing grants, FIFO
waiting, read conflicts that fail fast."""

from __future__ import annotations

from relstorage_paxos.replica import (
    Committed,
    Conflict,
    Duplicate,
    Expired,
    Granted,
    Queued,
    Rejected,
    Released,
    Renewed,
    Replica,
)
from relstorage_paxos.replica.locks import earliest_lease_until_us, nodes_with_requests

from .helpers import (
    apply,
    commit,
    expire,
    expire_nodes,
    granted_locks,
    lock,
    open_readonly,
    release,
    renew,
)


def test_free_oids_are_granted_exclusive_and_shared(replica: Replica) -> None:
    assert apply(replica, lock(b"r1", b"t1", write=[1, 2], read=[3, 2])) == [Granted()]
    assert granted_locks(replica) == {b"t1": {1: True, 2: True, 3: False}}


def test_shared_locks_share(replica: Replica) -> None:
    outcomes = apply(replica, lock(b"r1", b"t1", read=[1]), lock(b"r2", b"t2", read=[1]))
    assert outcomes == [Granted(), Granted()]


def test_a_writer_waits_for_a_reader_and_a_reader_fails_at_once_on_a_writer(
    replica: Replica,
) -> None:
    outcomes = apply(
        replica,
        lock(b"r1", b"t1", read=[1]),
        lock(b"r2", b"t2", write=[1]),
        lock(b"r3", b"t3", write=[2]),
        lock(b"r4", b"t4", read=[2], write=[3]),
    )
    assert outcomes[:3] == [Granted(), Queued(), Granted()]
    assert outcomes[3] == Conflict("readCurrent oids [2] are locked for writing by another txn")
    # The failed request is gone: it holds nothing, waits for nothing, and may not commit.
    assert granted_locks(replica) == {b"t1": {1: False}, b"t3": {2: True}}
    (refused,) = apply(replica, commit(b"c4", b"t4", [(3, 0, b"x")]))
    assert isinstance(refused, Conflict)
    assert apply(replica, lock(b"r5", b"t5", write=[3])) == [Granted()]


def test_a_waiting_reader_fails_when_a_writer_ahead_of_it_is_granted(replica: Replica) -> None:
    apply(replica, lock(b"r1", b"t1", read=[1]))
    queued = apply(replica, lock(b"r2", b"t2", write=[1]), lock(b"r3", b"t3", read=[1, 2]))
    assert queued == [Queued(), Queued()]
    assert apply(replica, release(b"x1", b"t1")) == [Released((b"r2",))]
    assert replica.outcome(b"r3") == Conflict(
        "readCurrent oids [1] are locked for writing by another txn"
    )
    assert granted_locks(replica) == {b"t2": {1: True}}


def test_the_database_lock_is_waited_for_not_a_read_conflict(replica: Replica) -> None:
    apply(replica, lock(b"r1", b"t1", database=True))
    assert apply(replica, lock(b"r2", b"t2", read=[1])) == [Queued()]
    assert apply(replica, release(b"x1", b"t1")) == [Released((b"r2",))]


def test_all_or_nothing(replica: Replica) -> None:
    apply(replica, lock(b"r1", b"t1", write=[2]))
    assert apply(replica, lock(b"r2", b"t2", write=[1, 2, 3])) == [Queued()]
    # t2 waits holding nothing: its commit is refused and oid 1 stays free of it.
    assert granted_locks(replica) == {b"t1": {2: True}}
    (refused,) = apply(replica, commit(b"c2", b"t2", [(1, 0, b"x")]))
    assert isinstance(refused, Conflict)
    assert "no exclusive lock on oids [1]" in refused.reason


def test_waiting_requests_are_granted_in_fifo_order(replica: Replica) -> None:
    apply(replica, lock(b"r1", b"t1", read=[1]))
    queued = apply(
        replica,
        lock(b"r2", b"t2", write=[1]),
        lock(b"r3", b"t3", write=[1, 2]),
        lock(b"r4", b"t4", write=[2]),
    )
    assert queued == [Queued()] * 3
    # t1 goes: t2 first; t3 keeps waiting behind it, and t4 behind t3 (oid 2).
    assert apply(replica, release(b"x1", b"t1")) == [Released((b"r2",))]
    assert replica.outcome(b"r2") == Granted()
    assert replica.outcome(b"r3") == Queued()
    assert replica.outcome(b"r4") == Queued()
    assert apply(replica, release(b"x2", b"t2")) == [Released((b"r3",))]
    assert apply(replica, release(b"x3", b"t3")) == [Released((b"r4",))]
    assert granted_locks(replica) == {b"t4": {2: True}}


def test_a_later_request_does_not_overtake_an_earlier_conflicting_one(replica: Replica) -> None:
    apply(replica, lock(b"r1", b"t1", read=[1]))
    # t2 waits for an exclusive lock; t3's shared lock would be compatible with t1's but not
    # with t2's request ahead of it, so readers cannot starve the writer.
    outcomes = apply(replica, lock(b"r2", b"t2", write=[1]), lock(b"r3", b"t3", read=[1]))
    assert outcomes == [Queued(), Queued()]
    # A request on other oids passes them both.
    assert apply(replica, lock(b"r4", b"t4", write=[9])) == [Granted()]
    assert apply(replica, release(b"x1", b"t1")) == [Released((b"r2",))]


def test_commit_releases_and_grants(replica: Replica) -> None:
    apply(replica, lock(b"r1", b"t1", write=[1]), lock(b"r2", b"t2", write=[1]))
    (committed,) = apply(replica, commit(b"c1", b"t1", [(1, 0, b"one")]))
    assert isinstance(committed, Committed)
    assert committed.granted_requests == (b"r2",)
    assert granted_locks(replica) == {b"t2": {1: True}}


def test_releasing_a_waiting_request_drops_it_and_may_unblock_others(replica: Replica) -> None:
    apply(replica, lock(b"r1", b"t1", read=[1]))
    apply(replica, lock(b"r2", b"t2", write=[1]), lock(b"r3", b"t3", read=[1]))
    # t2 gives up waiting: t3 was only behind t2's request, so it is granted now.
    assert apply(replica, release(b"x2", b"t2")) == [Released((b"r3",))]
    assert replica.outcome(b"r2") == Rejected("txn released while waiting")
    assert granted_locks(replica) == {b"t1": {1: False}, b"t3": {1: False}}


def test_release_without_locks_is_harmless(replica: Replica) -> None:
    assert apply(replica, release(b"x1", b"nobody")) == [Released()]


def _earliest(replica: Replica) -> int | None:
    db = open_readonly(replica.path)
    try:
        return earliest_lease_until_us(db)
    finally:
        db.close()


def test_a_lock_request_applied_after_its_release_is_refused_until_its_lease_ends(
    replica: Replica,
) -> None:
    # The proposer timed out waiting for r1's answer and aborted: its release came first.
    assert apply(replica, release(b"x1", b"t1", lease_until_us=100)) == [Released()]
    (late,) = apply(replica, lock(b"r1", b"t1", write=[1], lease_until_us=100))
    assert late == Rejected(f"txn {b't1'.hex()} was released before this request")
    assert granted_locks(replica) == {}
    assert apply(replica, lock(b"r2", b"t2", write=[1])) == [Granted()]
    # The memory of the release goes with its lease.
    assert _earliest(replica) == 100
    apply(replica, release(b"x2", b"t2"), expire(b"e1", 101))
    assert _earliest(replica) is None


def test_a_release_after_the_request_leaves_no_memory(replica: Replica) -> None:
    apply(replica, lock(b"r1", b"t1", write=[1], lease_until_us=100))
    apply(replica, release(b"x1", b"t1", lease_until_us=100))
    assert _earliest(replica) is None


def test_renewed_leases_outlive_their_first_lease_and_never_go_back(replica: Replica) -> None:
    apply(
        replica,
        lock(b"r1", b"t1", write=[1], lease_until_us=100),
        lock(b"r2", b"t2", write=[1], lease_until_us=100),
        lock(b"r3", b"t3", write=[2], lease_until_us=500),
    )
    assert apply(replica, renew(b"n1", [b"t1", b"t2", b"t3", b"gone"], 300)) == [Renewed(2)]
    assert apply(replica, expire(b"e1", 200)) == [Expired(0)]
    assert apply(replica, expire(b"e2", 301)) == [Expired(2)]  # t3 kept its later lease
    assert granted_locks(replica) == {b"t3": {2: True}}


def test_expired_leases_release_held_and_waiting_requests(replica: Replica) -> None:
    apply(
        replica,
        lock(b"r1", b"t1", write=[1], lease_until_us=100),
        lock(b"r2", b"t2", write=[1], lease_until_us=100),
        lock(b"r3", b"t3", write=[1], lease_until_us=300),
    )
    # A lease that ends exactly at now is still alive.
    assert apply(replica, expire(b"e1", 100)) == [Expired(0)]
    assert apply(replica, expire(b"e2", 101)) == [Expired(2, (b"r3",))]
    assert replica.outcome(b"r2") == Rejected("lease expired while waiting")
    assert granted_locks(replica) == {b"t3": {1: True}}


def test_expired_nodes_lose_their_held_and_waiting_requests(replica: Replica) -> None:
    apply(
        replica,
        lock(b"r1", b"t1", write=[1], node_id=1),
        lock(b"r2", b"t2", write=[1, 2], node_id=2),
        lock(b"r3", b"t3", write=[2], node_id=3),
        lock(b"r4", b"t4", write=[1], node_id=3),
        lock(b"r5", b"t5", write=[5], node_id=2),
    )
    db = open_readonly(replica.path)
    try:
        assert nodes_with_requests(db) == {1, 2, 3}
        assert apply(replica, expire_nodes(b"e1", 1, 2)) == [Expired(3, (b"r3", b"r4"))]
        assert replica.outcome(b"r2") == Rejected("node 1, 2 stopped answering while waiting")
        assert granted_locks(replica) == {b"t3": {2: True}, b"t4": {1: True}}
        assert nodes_with_requests(db) == {3}
    finally:
        db.close()
    # The dead node's transaction can never commit afterwards.
    (refused,) = apply(replica, commit(b"c1", b"t1", [(1, 0, b"x")]))
    assert isinstance(refused, Conflict)
    # A node that comes back locks again as before.
    assert apply(replica, lock(b"r6", b"t6", write=[6], node_id=1)) == [Granted()]
    assert apply(replica, expire_nodes(b"e2", 2)) == [Expired(0)]


def test_a_txn_cannot_request_twice(replica: Replica) -> None:
    apply(replica, lock(b"r1", b"t1", write=[1]))
    (second,) = apply(replica, lock(b"r2", b"t1", write=[2]))
    assert isinstance(second, Rejected)
    assert "already holds or awaits" in second.reason
    assert granted_locks(replica) == {b"t1": {1: True}}


def test_duplicate_lock_request_returns_the_outcome_as_it_stands(replica: Replica) -> None:
    apply(replica, lock(b"r1", b"t1", write=[1]))
    apply(replica, lock(b"r2", b"t2", write=[1]))
    assert apply(replica, lock(b"r2", b"t2", write=[1])) == [Duplicate(Queued())]
    apply(replica, release(b"x1", b"t1"))
    assert apply(replica, lock(b"r2", b"t2", write=[1])) == [Duplicate(Granted())]
    assert granted_locks(replica) == {b"t2": {1: True}}
