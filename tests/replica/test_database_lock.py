"""The database lock, commits under a tid their txn chose, and deletes (state None)."""

from __future__ import annotations

from relstorage_paxos.replica import Committed, Conflict, Granted, Queued, Rejected, Replica
from relstorage_paxos.replica.locks import DATABASE

from .helpers import apply, commit, current_tids, expire, granted_locks, lock, release


def _committed(outcome: object) -> int:
    assert isinstance(outcome, Committed), outcome
    return outcome.tid


def test_database_lock_waits_for_every_object_lock_and_blocks_later_ones(
    replica: Replica,
) -> None:
    outcomes = apply(
        replica,
        lock(b"r1", b"t1", read=[1]),
        lock(b"r2", b"db", database=True),
        lock(b"r3", b"t3", write=[7]),  # touches nothing t1 holds, yet waits behind db
    )
    assert outcomes == [Granted(), Queued(), Queued()]
    (released,) = apply(replica, release(b"x1", b"t1"))
    assert released.granted_requests == (b"r2",)  # type: ignore[union-attr]
    assert granted_locks(replica) == {b"db": {DATABASE: True}}
    (released,) = apply(replica, release(b"x2", b"db"))
    assert released.granted_requests == (b"r3",)  # type: ignore[union-attr]
    assert granted_locks(replica) == {b"t3": {7: True}}


def test_two_database_locks_exclude_each_other(replica: Replica) -> None:
    outcomes = apply(replica, lock(b"r1", b"d1", database=True), lock(b"r2", b"d2", database=True))
    assert outcomes == [Granted(), Queued()]


def test_a_database_lock_holder_writes_any_oid_under_its_own_tid(replica: Replica) -> None:
    first = _committed(
        apply(replica, lock(b"l1", b"t1", write=[1]), commit(b"c1", b"t1", [(1, 0, b"a")]))[1]
    )
    apply(replica, lock(b"l2", b"db", database=True))
    chosen = first + 1000
    outcome = apply(replica, commit(b"c2", b"db", [(1, first, b"b"), (2, 0, b"new")], tid=chosen))
    assert _committed(outcome[0]) == chosen
    assert replica.last_tid == chosen
    assert current_tids(replica) == {1: chosen, 2: chosen}
    assert granted_locks(replica) == {}  # the commit released the database lock


def test_a_chosen_tid_needs_the_database_lock(replica: Replica) -> None:
    apply(replica, lock(b"l1", b"t1", write=[1]))
    (refused,) = apply(replica, commit(b"c1", b"t1", [(1, 0, b"a")], tid=10**15))
    assert isinstance(refused, Conflict)
    assert "without the database lock" in refused.reason
    assert replica.last_tid == 0


def test_a_chosen_tid_must_follow_the_last_one(replica: Replica) -> None:
    first = _committed(
        apply(replica, lock(b"l1", b"t1", write=[1]), commit(b"c1", b"t1", [(1, 0, b"a")]))[1]
    )
    apply(replica, lock(b"l2", b"db", database=True))
    (refused,) = apply(replica, commit(b"c2", b"db", [(1, first, b"b")], tid=first))
    assert refused == Rejected(f"commit tid {first} is not after last tid {first}")
    assert current_tids(replica) == {1: first}


def test_deleting_an_object(replica: Replica) -> None:
    outcomes = apply(
        replica,
        lock(b"l1", b"t1", write=[1, 2]),
        commit(b"c1", b"t1", [(1, 0, b"a"), (2, 0, b"b")], blobs=[(1, b"blob")]),
    )
    first = _committed(outcomes[1])
    outcomes = apply(
        replica, lock(b"l2", b"t2", write=[1]), commit(b"c2", b"t2", [(1, first, None)])
    )
    second = _committed(outcomes[1])
    dump = replica.logical_dump()
    if replica.keep_history:
        # RelStorage's whiteout: the current state is NULL; the old state and blob stay.
        states = {(row[0], row[1]): row[-1] for row in dump["object_state"]}
        assert states[(1, second)] is None
        assert states[(1, first)] == b"a"
        assert current_tids(replica) == {1: second, 2: first}
        assert [row[:2] for row in dump["blob_chunk"]] == [(1, first)]
    else:
        assert current_tids(replica) == {2: first}
        assert dump["blob_chunk"] == []
    assert replica.last_tid == second


def test_deleting_a_changed_object_conflicts(replica: Replica) -> None:
    outcomes = apply(replica, lock(b"l1", b"t1", write=[1]), commit(b"c1", b"t1", [(1, 0, b"a")]))
    first = _committed(outcomes[1])
    (_, refused) = apply(
        replica, lock(b"l2", b"t2", write=[1]), commit(b"c2", b"t2", [(1, first - 1, None)])
    )
    assert isinstance(refused, Conflict)
    assert current_tids(replica) == {1: first}


def test_releasing_the_database_lock_burns_the_tid_its_holder_chose(replica: Replica) -> None:
    """The holder may have written files under its tid (a shared blob directory) that its
    abort removes only after the release: no later commit may take that tid."""
    first = _committed(
        apply(replica, lock(b"l1", b"t1", write=[1]), commit(b"c1", b"t1", [(1, 0, b"a")]))[1]
    )
    apply(replica, lock(b"l2", b"db", database=True))
    apply(replica, release(b"x2", b"db", tid=first + 1))
    assert replica.last_tid == first + 1
    outcomes = apply(
        replica, lock(b"l3", b"t3", write=[1]), commit(b"c3", b"t3", [(1, first, b"b")])
    )
    assert _committed(outcomes[1]) == first + 2
    assert current_tids(replica) == {1: first + 2}


def test_a_release_without_the_database_lock_burns_nothing(replica: Replica) -> None:
    """A holder whose lease expired may come back to release: by then another txn may hold
    the lock and have chosen that same tid, which must stay free for its commit."""
    apply(replica, lock(b"l1", b"old", database=True, lease_until_us=5))
    apply(replica, expire(b"e1", 6))
    apply(replica, lock(b"l2", b"new", database=True))
    chosen = 10**15
    apply(replica, release(b"x1", b"old", tid=chosen))
    assert replica.last_tid == 0
    (outcome,) = apply(replica, commit(b"c2", b"new", [(1, 0, b"a")], tid=chosen))
    assert _committed(outcome) == chosen
