"""The record codec and the tid rule."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from persistent.timestamp import TimeStamp  # type: ignore[import-untyped]

from relstorage_paxos.errors import MalformedRecord
from relstorage_paxos.pb import records_pb2 as pb
from relstorage_paxos.replica import (
    MAX_OID,
    RECORD_VERSION,
    Allocated,
    AllocateOids,
    BlobWrite,
    Committed,
    CommitTxn,
    Conflict,
    Expired,
    ExpireLeases,
    ExpireNodes,
    Granted,
    LockObjects,
    Noop,
    NoopApplied,
    ObjectWrite,
    Packed,
    PackObjects,
    PackTransactions,
    PrunedObject,
    Queued,
    Record,
    RecordedOutcome,
    Rejected,
    Released,
    ReleaseTxn,
    RemovedObject,
    Renewed,
    RenewLeases,
    StaleWrite,
    decode_outcome,
    decode_record,
    encode_outcome,
    encode_record,
    next_tid,
    tid_of,
)
from relstorage_paxos.replica.records import MAX_TIMESTAMP_US

from .helpers import T0_US

ids = st.binary(min_size=1, max_size=12)
oids = st.integers(0, MAX_OID)
int64 = st.integers(-(2**63), 2**63 - 1)
uint32 = st.integers(0, 2**32 - 1)


@st.composite
def commits(draw: st.DrawFn) -> CommitTxn:
    writes = draw(
        st.lists(
            st.builds(ObjectWrite, oids, oids, st.none() | st.binary()), unique_by=lambda w: w.oid
        )
    )
    blob_oids = draw(st.sets(st.sampled_from([w.oid for w in writes]))) if writes else set()
    return CommitTxn(
        txn_id=draw(ids),
        timestamp_us=draw(st.integers(0, MAX_TIMESTAMP_US)),
        user=draw(st.binary()),
        description=draw(st.binary()),
        extension=draw(st.binary()),
        writes=tuple(writes),
        blobs=tuple(BlobWrite(oid, draw(st.binary())) for oid in sorted(blob_oids)),
        tid=draw(st.sampled_from([0, 1]) | oids),
    )


@st.composite
def packs(draw: st.DrawFn) -> PackObjects:
    snapshot_tid = draw(st.integers(1, MAX_OID))
    pack_tid = draw(st.integers(1, snapshot_tid))
    tids = st.integers(1, pack_tid)
    oid_list = draw(st.lists(oids, unique=True))
    split = draw(st.integers(0, len(oid_list)))
    return PackObjects(
        pack_tid,
        snapshot_tid,
        tuple(PrunedObject(oid, draw(tids)) for oid in oid_list[:split]),
        tuple(RemovedObject(oid, draw(tids)) for oid in oid_list[split:]),
    )


bodies = st.one_of(
    st.builds(
        LockObjects,
        ids,
        uint32,
        st.lists(oids).map(tuple),
        st.lists(oids).map(tuple),
        int64,
    ),
    st.builds(LockObjects, ids, uint32, st.just(()), st.just(()), int64, st.just(True)),
    commits(),
    st.builds(ReleaseTxn, ids, int64, st.just(0) | oids),
    st.builds(RenewLeases, st.lists(ids, min_size=1).map(tuple), int64),
    st.builds(ExpireLeases, int64),
    st.builds(ExpireNodes, st.sets(uint32, min_size=1).map(lambda ids: tuple(sorted(ids)))),
    st.builds(AllocateOids, uint32, st.integers(1, 1 << 20), oids),
    st.just(Noop()),
    packs(),
    st.integers(1, MAX_OID).flatmap(
        lambda last: st.builds(PackTransactions, st.integers(1, last), st.just(last))
    ),
)

outcomes: st.SearchStrategy[RecordedOutcome] = st.one_of(
    st.just(Granted()),
    st.just(Queued()),
    st.builds(Committed, oids, st.lists(ids).map(tuple)),
    st.builds(Conflict, st.text(), st.lists(st.builds(StaleWrite, oids, oids, oids)).map(tuple)),
    st.builds(Released, st.lists(ids).map(tuple)),
    st.builds(Renewed, uint32),
    st.builds(Expired, uint32, st.lists(ids).map(tuple)),
    st.builds(Allocated, oids, uint32),
    st.builds(Rejected, st.text()),
    st.just(NoopApplied()),
    st.builds(Packed, oids, oids, oids, oids, oids),
)


@given(ids, bodies)
@settings(deadline=None)
def test_record_round_trips(request_id: bytes, body: object) -> None:
    record = Record(request_id, body)  # type: ignore[arg-type]
    assert decode_record(encode_record(record)) == record


@given(outcomes)
@settings(deadline=None)
def test_outcome_round_trips(outcome: RecordedOutcome) -> None:
    assert decode_outcome(encode_outcome(outcome)) == outcome


ENCODE_SAMPLES = """
from relstorage_paxos.replica import (
    CommitTxn, ExpireNodes, LockObjects, ObjectWrite, Record, encode_record, encode_outcome,
    Committed, Conflict,
)
records = [
    Record(b"r", LockObjects(b"t", 1, (3, 1, 2), (5,), 7)),
    Record(b"c", CommitTxn(b"t", 5, b"user", b"desc", b"ext", (ObjectWrite(3, 0, b"s"),))),
    Record(b"e", ExpireNodes((2, 3))),
]
outcomes = [Committed(0x03C5A1B2C3D4E5F6, (b"a", b"b")), Conflict("oid 3 changed")]
print("|".join([*(encode_record(r).hex() for r in records),
                *(encode_outcome(o).hex() for o in outcomes)]))
"""


def test_encoding_is_the_same_in_every_process() -> None:
    """Apply is deterministic only if every node encodes alike: processes with different
    hash seeds (set and dict order) must produce the same bytes."""
    runs = {
        subprocess.run(
            [sys.executable, "-c", ENCODE_SAMPLES],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert len(runs) == 1, runs


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Record(b"", Noop()), "request_id is empty"),
        (lambda: LockObjects(b"", 1, (), (), 0), "txn_id is empty"),
        (lambda: LockObjects(b"t", 1, (MAX_OID + 1,), (), 0), "write_oids"),
        (lambda: LockObjects(b"t", 1, (), (-1,), 0), "read_current_oids"),
        (lambda: ObjectWrite(1, MAX_OID + 1, b""), "prev_tid"),
        (lambda: CommitTxn(b"t", -1, b"", b"", b"", ()), "timestamp_us"),
        (
            lambda: CommitTxn(b"t", 0, b"", b"", b"", (ObjectWrite(1, 0, b""),) * 2),
            "twice in writes",
        ),
        (
            lambda: CommitTxn(b"t", 0, b"", b"", b"", (), (BlobWrite(1, b""),)),
            "not in writes",
        ),
        (lambda: ReleaseTxn(b""), "txn_id is empty"),
        (lambda: ReleaseTxn(b"t", 0, MAX_OID + 1), "tid"),
        (lambda: ExpireNodes(()), "node_ids is empty"),
        (lambda: ExpireNodes((2, 1)), "distinct and in order"),
        (lambda: ExpireNodes((1, 1)), "distinct and in order"),
        (lambda: AllocateOids(1, 0), "count 0"),
        (lambda: AllocateOids(1, 1, MAX_OID + 1), "min_oid"),
    ],
)
def test_invalid_records_cannot_be_built(build: object, message: str) -> None:
    with pytest.raises(MalformedRecord, match=message):
        build()  # type: ignore[operator]


def test_decode_refuses_garbage_unknown_versions_and_empty_bodies() -> None:
    with pytest.raises(MalformedRecord, match="undecodable"):
        decode_record(b"\xff\xff\xff")
    future = pb.Record(version=RECORD_VERSION + 1, request_id=b"r")
    future.noop.SetInParent()
    with pytest.raises(MalformedRecord, match=f"version {RECORD_VERSION + 1}"):
        decode_record(future.SerializeToString())
    empty = pb.Record(version=RECORD_VERSION, request_id=b"r")
    with pytest.raises(MalformedRecord, match="no body"):
        decode_record(empty.SerializeToString())
    huge = pb.Record(version=RECORD_VERSION, request_id=b"r")
    huge.lock_objects.txn_id = b"t"
    huge.lock_objects.write_oids.append(2**64 - 1)
    with pytest.raises(MalformedRecord, match="write_oids"):
        decode_record(huge.SerializeToString())


def test_tid_of_is_zodbs_timestamp_of_that_instant() -> None:
    stamp = TimeStamp(2023, 11, 14, 22, 13, 20.5)
    assert tid_of(T0_US + 500_000) == int.from_bytes(stamp.raw(), "big")
    assert TimeStamp(tid_of(T0_US).to_bytes(8, "big")).timeTime() == pytest.approx(T0_US / 1e6)


def test_tid_of_fits_sqlite_up_to_the_largest_timestamp() -> None:
    assert 0 < tid_of(0) < tid_of(T0_US) < tid_of(MAX_TIMESTAMP_US) <= MAX_OID


def test_next_tid_is_max_of_successor_and_own_time() -> None:
    now = tid_of(T0_US)
    assert next_tid(0, T0_US) == now
    assert next_tid(now, T0_US) == now + 1
    assert next_tid(now + 100, T0_US) == now + 101
    assert next_tid(now, T0_US + 1_000_000) == tid_of(T0_US + 1_000_000)
