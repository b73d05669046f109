"""Poison records: legal protobuf with values the applier cannot apply. Each becomes a
``Rejected`` outcome, the same on every replica, leaves no other trace, and the log moves
on; before, each raised at its slot on every node, and again on every restart."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from relstorage_paxos.replica import Committed, Proposal, Rejected, Released, Replica
from relstorage_paxos.replica.records import MAX_OID

from .helpers import T0_US, apply, commit, lock, release


def _two_replicas(keep_history: bool) -> tuple[Replica, Replica]:
    root = Path(tempfile.mkdtemp())
    return (
        Replica.open(root / "a.sqlite3", keep_history=keep_history),
        Replica.open(root / "b.sqlite3", keep_history=keep_history),
    )


def _apply_both(replicas: tuple[Replica, Replica], *proposals: Proposal) -> list[object]:
    first, second = (apply(replica, *proposals) for replica in replicas)
    assert first == second
    return first


def _assert_identical(replicas: tuple[Replica, Replica]) -> None:
    a, b = replicas
    assert a.running_hash == b.running_hash
    assert a.logical_dump() == b.logical_dump()


def test_a_history_free_delete_with_a_blob_of_the_same_oid_is_rejected() -> None:
    replicas = _two_replicas(keep_history=False)
    try:
        _apply_both(replicas, lock(b"l1", b"t1", write=[1]))
        (created,) = _apply_both(replicas, commit(b"c1", b"t1", [(1, 0, b"one")]))
        assert isinstance(created, Committed)
        _apply_both(replicas, lock(b"l2", b"t2", write=[1]))
        before = replicas[0].logical_dump()
        (poison,) = _apply_both(
            replicas, commit(b"c2", b"t2", [(1, created.tid, None)], blobs=[(1, b"blob")])
        )
        assert isinstance(poison, Rejected), poison
        assert "ConstraintError" in poison.reason
        after = replicas[0].logical_dump()
        assert {k: v for k, v in after.items() if k not in ("paxos_outcome", "paxos_meta")} == {
            k: v for k, v in before.items() if k not in ("paxos_outcome", "paxos_meta")
        }
        # The transaction still holds its lock: its abort releases it, and the log goes on.
        (written,) = _apply_both(replicas, commit(b"c3", b"t2", [(1, created.tid, b"two")]))
        assert isinstance(written, Committed), written
        _assert_identical(replicas)
    finally:
        for replica in replicas:
            replica.close()


def test_a_commit_under_the_database_lock_with_the_largest_tid_is_rejected() -> None:
    replicas = _two_replicas(keep_history=True)
    try:
        _apply_both(replicas, lock(b"l1", b"t1", database=True))
        (poison,) = _apply_both(replicas, commit(b"c1", b"t1", [(1, 0, b"x")], tid=MAX_OID))
        assert isinstance(poison, Rejected), poison
        assert "leaves no tid" in poison.reason
        (ok,) = _apply_both(replicas, commit(b"c2", b"t1", [(1, 0, b"x")], tid=MAX_OID - 1))
        assert isinstance(ok, Committed), ok
        _assert_identical(replicas)
    finally:
        for replica in replicas:
            replica.close()


def test_a_release_does_not_burn_the_largest_tid() -> None:
    replicas = _two_replicas(keep_history=True)
    try:
        _apply_both(replicas, lock(b"l1", b"t1", database=True))
        (released,) = _apply_both(replicas, release(b"r1", b"t1", tid=MAX_OID))
        assert isinstance(released, Released), released
        assert replicas[0].last_tid < MAX_OID
        _apply_both(replicas, lock(b"l2", b"t2", write=[1]))
        (ok,) = _apply_both(replicas, commit(b"c2", b"t2", [(1, 0, b"x")]))
        assert isinstance(ok, Committed), ok
        _assert_identical(replicas)
    finally:
        for replica in replicas:
            replica.close()


oids = st.integers(0, 6)
writes = st.lists(
    st.tuples(oids, st.sampled_from([0, 1, 2**62]), st.one_of(st.none(), st.binary(max_size=8))),
    max_size=4,
    unique_by=lambda w: w[0],
)


@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(
    keep_history=st.booleans(),
    steps=st.lists(st.tuples(writes, st.booleans(), st.booleans()), min_size=1, max_size=6),
)
def test_nonsensical_commits_apply_alike_and_never_raise(
    keep_history: bool, steps: list[tuple[list[tuple[int, int, bytes | None]], bool, bool]]
) -> None:
    """Random commits (deletes, wrong prev_tids, a blob on every written oid, some under the
    database lock): whatever each outcome is, both replicas record the same, and a valid
    commit follows."""
    replicas = _two_replicas(keep_history)
    try:
        for i, (object_writes, with_blobs, database) in enumerate(steps):
            txn = f"t{i}".encode()
            written = [oid for oid, _, _ in object_writes]
            held = (
                lock(b"l" + txn, txn, database=True)
                if database
                else lock(b"l" + txn, txn, write=written)
            )
            _apply_both(replicas, held)
            _apply_both(
                replicas,
                commit(
                    b"c" + txn,
                    txn,
                    object_writes,
                    timestamp_us=T0_US + i,
                    blobs=[(oid, b"blob") for oid in written] if with_blobs else [],
                    tid=(replicas[0].last_tid + 1) if database else 0,
                ),
            )
            _apply_both(replicas, release(b"r" + txn, txn))
        _apply_both(replicas, lock(b"l-final", b"final", write=[100]))
        (last,) = _apply_both(replicas, commit(b"c-final", b"final", [(100, 0, b"ok")]))
        assert isinstance(last, Committed), last
        _assert_identical(replicas)
    finally:
        for replica in replicas:
            replica.close()
