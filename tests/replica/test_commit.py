"""CommitTxn: lock and prev_tid checks, the tid rule, RelStorage's rows, idempotence."""

from __future__ import annotations

import hashlib

from relstorage_paxos.replica import (
    Committed,
    Conflict,
    Duplicate,
    Replica,
    StaleWrite,
    tid_of,
)

from .helpers import T0_US, apply, commit, current_tids, granted_locks, lock


def _commit_one(replica: Replica, txn: bytes, oid: int, prev_tid: int, state: bytes) -> int:
    outcomes = apply(
        replica,
        lock(b"l" + txn, txn, write=[oid]),
        commit(b"c" + txn, txn, [(oid, prev_tid, state)]),
    )
    committed = outcomes[1]
    assert isinstance(committed, Committed), committed
    return committed.tid


def test_commit_writes_relstorage_rows(replica: Replica) -> None:
    apply(replica, lock(b"l1", b"t1", write=[1, 2]))
    (committed,) = apply(
        replica,
        commit(
            b"c1",
            b"t1",
            [(1, 0, b"one"), (2, 0, b"two")],
            blobs=[(2, b"blob")],
            user=b"alice",
            description=b"first",
            extension=b"ext",
        ),
    )
    tid = tid_of(T0_US)
    assert committed == Committed(tid)
    assert replica.last_tid == tid
    dump = replica.logical_dump()
    if replica.keep_history:
        md5 = {1: hashlib.md5(b"one").hexdigest(), 2: hashlib.md5(b"two").hexdigest()}
        assert dump["object_state"] == [
            (1, tid, 0, md5[1], 3, b"one"),
            (2, tid, 0, md5[2], 3, b"two"),
        ]
        assert dump["current_object"] == [(1, tid), (2, tid)]
        assert dump["transaction"][-1] == (tid, 0, 0, b"alice", b"first", b"ext")
        assert dump["blob_chunk"] == [(2, tid, 0, b"blob")]
    else:
        assert dump["object_state"] == [(1, tid, 3, b"one"), (2, tid, 3, b"two")]
        assert dump["blob_chunk"] == [(2, 0, tid, b"blob")]
    assert granted_locks(replica) == {}


def test_history_preserving_keeps_revisions(replica: Replica) -> None:
    first = _commit_one(replica, b"t1", 1, 0, b"v1")
    second = _commit_one(replica, b"t2", 1, first, b"v2")
    assert current_tids(replica) == {1: second}
    states = [row[-1] for row in replica.logical_dump()["object_state"]]
    assert states == ([b"v1", b"v2"] if replica.keep_history else [b"v2"])


def test_stale_prev_tid_conflicts_and_writes_nothing(replica: Replica) -> None:
    first = _commit_one(replica, b"t1", 1, 0, b"v1")
    before = replica.logical_dump()
    apply(replica, lock(b"l2", b"t2", write=[1, 2]))
    (conflict,) = apply(replica, commit(b"c2", b"t2", [(1, first - 1, b"v2"), (2, 0, b"new")]))
    assert conflict == Conflict(
        "prev_tid is not the current tid", (StaleWrite(1, first - 1, first),)
    )
    after = replica.logical_dump()
    for table in ("object_state", "current_object", "transaction", "blob_chunk"):
        assert after.get(table) == before.get(table)
    assert replica.last_tid == first
    # The conflict leaves the locks to the txn's abort (ReleaseTxn).
    assert granted_locks(replica) == {b"t2": {1: True, 2: True}}


def test_prev_tid_of_a_missing_object_conflicts(replica: Replica) -> None:
    apply(replica, lock(b"l1", b"t1", write=[5]))
    (conflict,) = apply(replica, commit(b"c1", b"t1", [(5, 1234, b"x")]))
    assert conflict == Conflict("prev_tid is not the current tid", (StaleWrite(5, 1234, 0),))


def test_writes_need_exclusive_locks(replica: Replica) -> None:
    apply(replica, lock(b"l1", b"t1", write=[1], read=[2]))
    (conflict,) = apply(replica, commit(b"c1", b"t1", [(1, 0, b"a"), (2, 0, b"b"), (3, 0, b"c")]))
    assert isinstance(conflict, Conflict)
    assert conflict.reason.endswith("holds no exclusive lock on oids [2, 3]")
    assert current_tids(replica) == {}


def test_tids_increase_even_when_clocks_go_back(replica: Replica) -> None:
    first = _commit_one(replica, b"t1", 1, 0, b"a")
    assert first == tid_of(T0_US)
    # An earlier clock (another node's) still gets a later tid.
    apply(replica, lock(b"l2", b"t2", write=[2]))
    (second,) = apply(replica, commit(b"c2", b"t2", [(2, 0, b"b")], timestamp_us=T0_US - 10**9))
    assert second == Committed(first + 1)
    # A later clock gets its own time's tid.
    apply(replica, lock(b"l3", b"t3", write=[3]))
    (third,) = apply(replica, commit(b"c3", b"t3", [(3, 0, b"c")], timestamp_us=T0_US + 10**6))
    assert third == Committed(tid_of(T0_US + 10**6))
    assert replica.last_tid == tid_of(T0_US + 10**6)


def test_commits_in_one_slot_get_consecutive_tids(replica: Replica) -> None:
    apply(replica, lock(b"l1", b"t1", write=[1]), lock(b"l2", b"t2", write=[2]))
    outcomes = apply(
        replica, commit(b"c1", b"t1", [(1, 0, b"a")]), commit(b"c2", b"t2", [(2, 0, b"b")])
    )
    assert outcomes == [Committed(tid_of(T0_US)), Committed(tid_of(T0_US) + 1)]


def test_empty_commit_moves_last_tid(replica: Replica) -> None:
    (committed,) = apply(replica, commit(b"c1", b"t1"))
    assert committed == Committed(tid_of(T0_US))
    assert replica.last_tid == tid_of(T0_US)
    transactions = replica.logical_dump().get("transaction", [])
    assert [row[0] for row in transactions] == ([0, tid_of(T0_US)] if replica.keep_history else [])


def test_duplicate_commit_returns_the_recorded_tid(replica: Replica) -> None:
    tid = _commit_one(replica, b"t1", 1, 0, b"a")
    before = replica.logical_dump()
    again = commit(b"ct1", b"t1", [(1, 0, b"a")], timestamp_us=T0_US + 10**9)
    assert apply(replica, again) == [Duplicate(Committed(tid))]
    assert replica.outcome(b"ct1") == Committed(tid)
    assert replica.last_tid == tid
    after = replica.logical_dump()
    assert after["object_state"] == before["object_state"]


def test_read_current_only_commit_releases_shared_locks(replica: Replica) -> None:
    apply(replica, lock(b"l1", b"t1", read=[1]), lock(b"l2", b"t2", write=[1]))
    (committed,) = apply(replica, commit(b"c1", b"t1"))
    assert isinstance(committed, Committed)
    assert committed.granted_requests == (b"l2",)
