"""RestoreTxn: the given tids, no prev_tid check, locks required, tids in order (except,
history-free, for objects that do not exist yet), RelStorage's restore rows (HP transaction
row, uncreation, blobs), codec round trip, idempotence."""

from __future__ import annotations

import pytest

from relstorage_paxos.errors import MalformedRecord
from relstorage_paxos.replica import (
    BlobWrite,
    Committed,
    Conflict,
    Duplicate,
    Record,
    Rejected,
    Replica,
    RestoredObject,
    RestoreTxn,
    decode_record,
    encode_record,
)
from relstorage_paxos.replica.records import MAX_OID

from .helpers import apply, current_tids, granted_locks, lock, open_readonly, proposal

TID = 0x03F0_0000_0000_0001


def restore(
    request_id: bytes,
    txn_id: bytes,
    tid: int,
    objects: list[tuple[int, bytes | None]],
    blobs: list[tuple[int, bytes]] | None = None,
    packed: bool = False,
    tids: dict[int, int] | None = None,
) -> tuple[bytes, bytes]:
    """Every object under ``tid`` unless ``tids`` gives it another."""
    own = tids or {}
    return proposal(
        request_id,
        RestoreTxn(
            txn_id,
            tid,
            b"user",
            b"restored",
            b"ext",
            packed,
            tuple(RestoredObject(oid, own.get(oid, tid), state) for oid, state in objects),
            tuple(BlobWrite(oid, data) for oid, data in blobs or []),
        ),
    )


def test_a_restore_under_the_largest_tid_is_rejected(replica: Replica) -> None:
    apply(replica, lock(b"l1", b"t1", write=[1]))
    tid = MAX_OID if replica.keep_history else TID
    tids = {} if replica.keep_history else {1: MAX_OID}
    (outcome,) = apply(replica, restore(b"r1", b"t1", tid, [(1, b"one")], tids=tids))
    assert isinstance(outcome, Rejected), outcome
    assert "leaves no tid" in outcome.reason
    assert replica.last_tid < MAX_OID


def test_restore_writes_under_the_given_tid_and_releases(replica: Replica) -> None:
    apply(replica, lock(b"l1", b"t1", write=[1, 2]))
    (outcome,) = apply(
        replica, restore(b"r1", b"t1", TID, [(1, b"one"), (2, b"two")], blobs=[(2, b"blob")])
    )
    assert outcome == Committed(TID)
    assert replica.last_tid == TID
    assert current_tids(replica) == {1: TID, 2: TID}
    assert granted_locks(replica) == {}
    db = open_readonly(replica.path)
    try:
        blobs = db.execute("SELECT zoid, tid, chunk FROM blob_chunk").fetchall()
        assert blobs == [(2, TID, b"blob")]
        if replica.keep_history:
            rows = db.execute('SELECT packed, description FROM "transaction" WHERE tid = ?', (TID,))
            assert rows.fetchall() == [(0, b"restored")]
    finally:
        db.close()
    (again,) = apply(replica, restore(b"r1", b"t1", TID, [(1, b"one"), (2, b"two")]))
    assert again == Duplicate(Committed(TID))


def test_restore_of_no_state_removes_or_uncreates(replica: Replica) -> None:
    apply(replica, lock(b"l1", b"t1", write=[1]))
    apply(replica, restore(b"r1", b"t1", TID, [(1, b"one")]))
    apply(replica, lock(b"l2", b"t2", write=[1]))
    (outcome,) = apply(replica, restore(b"r2", b"t2", TID + 1, [(1, None)]))
    assert outcome == Committed(TID + 1)
    states = {(row[0], row[1]) for row in replica.logical_dump()["object_state"]}
    if replica.keep_history:
        assert states == {(1, TID), (1, TID + 1)}
    else:
        assert states == set()


def test_restore_needs_the_locks_and_a_later_tid(replica: Replica) -> None:
    (unlocked,) = apply(replica, restore(b"r1", b"t1", TID, [(1, b"one")]))
    assert isinstance(unlocked, Conflict), unlocked
    apply(replica, lock(b"l1", b"t1", write=[1]))
    apply(replica, restore(b"r2", b"t1", TID, [(1, b"one")]))
    apply(replica, lock(b"l2", b"t2", write=[1]))
    (early,) = apply(replica, restore(b"r3", b"t2", TID, [(1, b"again")]))
    assert isinstance(early, Rejected) and "not after" in early.reason, early
    assert granted_locks(replica) == {b"t2": {1: True}}, "a refused restore keeps its locks"


@pytest.mark.parametrize("keep_history", [False], ids=["history-free"])
def test_history_free_batch_keeps_each_objects_tid(replica: Replica) -> None:
    """RelStorage's history-free copier: current objects in OID order, each under the tid
    that last wrote it, in batches whose tids go back; new objects may, existing may not."""
    apply(replica, lock(b"l1", b"t1", write=[0, 2]))
    (first,) = apply(
        replica,
        restore(
            b"r1", b"t1", TID + 9, [(0, b"root"), (2, b"two")], blobs=[(2, b"b")], tids={2: TID + 3}
        ),
    )
    assert first == Committed(TID + 9)
    assert current_tids(replica) == {0: TID + 9, 2: TID + 3}
    assert replica.last_tid == TID + 9
    apply(replica, lock(b"l2", b"t2", write=[1, 3]))
    (second,) = apply(
        replica, restore(b"r2", b"t2", TID + 1, [(1, b"one"), (3, b"three")], tids={3: TID + 12})
    )
    assert second == Committed(TID + 1)
    assert current_tids(replica) == {0: TID + 9, 1: TID + 1, 2: TID + 3, 3: TID + 12}
    assert replica.last_tid == TID + 12, "the largest tid restored"
    db = open_readonly(replica.path)
    try:
        assert db.execute("SELECT zoid, tid, chunk FROM blob_chunk").fetchall() == [
            (2, TID + 3, b"b")
        ]
    finally:
        db.close()
    apply(replica, lock(b"l3", b"t3", write=[2, 4]))
    (existing,) = apply(replica, restore(b"r3", b"t3", TID + 5, [(2, b"old"), (4, b"new")]))
    assert isinstance(existing, Rejected) and "existing oids [2]" in existing.reason, existing
    assert current_tids(replica)[2] == TID + 3


@pytest.mark.parametrize("keep_history", [True], ids=["history-preserving"])
def test_history_preserving_restore_is_one_transaction(replica: Replica) -> None:
    apply(replica, lock(b"l1", b"t1", write=[1, 2]))
    (outcome,) = apply(
        replica, restore(b"r1", b"t1", TID, [(1, b"one"), (2, b"two")], tids={2: TID - 1})
    )
    assert isinstance(outcome, Rejected) and "oids [2]" in outcome.reason, outcome
    assert current_tids(replica) == {}


def test_restore_codec_round_trip_and_checks() -> None:
    body = RestoreTxn(
        b"t",
        TID,
        b"u",
        b"d",
        b"e",
        True,
        (RestoredObject(1, TID, None), RestoredObject(2, TID - 7, b"")),
    )
    assert decode_record(encode_record(Record(b"r", body))) == Record(b"r", body)
    with pytest.raises(MalformedRecord):
        RestoreTxn(b"t", 0, b"", b"", b"", False, ())
    with pytest.raises(MalformedRecord):
        RestoreTxn(b"t", TID, b"", b"", b"", False, (RestoredObject(1, TID, b"a"),) * 2)
    with pytest.raises(MalformedRecord):
        RestoredObject(1, 0, b"a")
    with pytest.raises(MalformedRecord):
        RestoreTxn(b"t", TID, b"", b"", b"", False, (), (BlobWrite(1, b"x"),))
