"""Builders of proposals and readers of replica state shared by the replica tests."""

from __future__ import annotations

import io
import pickle
from collections.abc import Iterable

import apsw
from persistent.mapping import PersistentMapping
from ZODB.utils import p64

from relstorage_paxos.replica import (
    AllocateOids,
    BlobWrite,
    CommitTxn,
    ExpireLeases,
    ExpireNodes,
    LockObjects,
    Noop,
    ObjectWrite,
    Outcome,
    PackObjects,
    PackTransactions,
    Proposal,
    PrunedObject,
    Record,
    RecordBody,
    ReleaseTxn,
    RemovedObject,
    RenewLeases,
    Replica,
    encode_record,
)
from relstorage_paxos.replica.locks import DATABASE

T0_US = 1_700_000_000_000_000
"""2023-11-14T22:13:20Z: a realistic commit time."""

LEASE_US = 10**18
"""A lease no ExpireLeases in these tests reaches unless it means to."""


def proposal(request_id: bytes, body: RecordBody) -> Proposal:
    return (request_id, encode_record(Record(request_id, body)))


def apply(replica: Replica, *proposals: Proposal) -> list[Outcome]:
    """Apply the proposals as the next slot."""
    return replica.apply_slot(replica.applied_slot + 1, proposals)


def lock(
    request_id: bytes,
    txn_id: bytes,
    write: Iterable[int] = (),
    read: Iterable[int] = (),
    lease_until_us: int = LEASE_US,
    node_id: int = 1,
    database: bool = False,
) -> Proposal:
    return proposal(
        request_id,
        LockObjects(txn_id, node_id, tuple(write), tuple(read), lease_until_us, database),
    )


def commit(
    request_id: bytes,
    txn_id: bytes,
    writes: Iterable[tuple[int, int, bytes | None]] = (),
    timestamp_us: int = T0_US,
    blobs: Iterable[tuple[int, bytes]] = (),
    user: bytes = b"user",
    description: bytes = b"description",
    extension: bytes = b"extension",
    tid: int = 0,
) -> Proposal:
    """``writes`` are (oid, prev_tid, state; None deletes); ``blobs`` are (oid, data)."""
    return proposal(
        request_id,
        CommitTxn(
            txn_id,
            timestamp_us,
            user,
            description,
            extension,
            tuple(ObjectWrite(oid, prev_tid, state) for oid, prev_tid, state in writes),
            tuple(BlobWrite(oid, data) for oid, data in blobs),
            tid,
        ),
    )


def release(request_id: bytes, txn_id: bytes, lease_until_us: int = 0, tid: int = 0) -> Proposal:
    return proposal(request_id, ReleaseTxn(txn_id, lease_until_us, tid))


def renew(request_id: bytes, txn_ids: Iterable[bytes], lease_until_us: int) -> Proposal:
    return proposal(request_id, RenewLeases(tuple(txn_ids), lease_until_us))


def expire(request_id: bytes, now_us: int) -> Proposal:
    return proposal(request_id, ExpireLeases(now_us))


def expire_nodes(request_id: bytes, *node_ids: int) -> Proposal:
    return proposal(request_id, ExpireNodes(node_ids))


def allocate(request_id: bytes, node_id: int, count: int, min_oid: int = 0) -> Proposal:
    return proposal(request_id, AllocateOids(node_id, count, min_oid))


def noop(request_id: bytes) -> Proposal:
    return proposal(request_id, Noop())


def pack_objects(
    request_id: bytes,
    pack_tid: int,
    snapshot_tid: int,
    pruned: Iterable[tuple[int, int]] = (),
    removed: Iterable[tuple[int, int]] = (),
) -> Proposal:
    """``pruned`` are (oid, keep_tid); ``removed`` are (oid, planned current tid)."""
    return proposal(
        request_id,
        PackObjects(
            pack_tid,
            snapshot_tid,
            tuple(PrunedObject(oid, tid) for oid, tid in pruned),
            tuple(RemovedObject(oid, tid) for oid, tid in removed),
        ),
    )


def pack_transactions(request_id: bytes, first_tid: int, last_tid: int) -> Proposal:
    return proposal(request_id, PackTransactions(first_tid, last_tid))


class _Ref:
    def __init__(self, oid: int) -> None:
        self.oid = oid


def pickled(*refs: int, value: int = 0) -> bytes:
    """A ZODB object state (a PersistentMapping's, as ZODB pickles it) that refers to the
    objects ``refs``; ``value`` makes states of one object differ."""
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, 3)
    pickler.persistent_id = lambda obj: (  # type: ignore[method-assign]
        (p64(obj.oid), None) if isinstance(obj, _Ref) else None
    )
    pickler.dump((PersistentMapping, None))
    pickler.dump({"data": {"refs": [_Ref(oid) for oid in refs], "value": value}})
    return buffer.getvalue()


def current_tids(replica: Replica) -> dict[int, int]:
    """{oid: current tid}, read the way RelStorage's poller reads them."""
    dump = replica.logical_dump()
    table = "current_object" if replica.keep_history else "object_state"
    return {int(row[0]): int(row[1]) for row in dump[table]}  # type: ignore[arg-type]


def granted_locks(replica: Replica) -> dict[bytes, dict[int, bool]]:
    """{txn_id: {oid: exclusive}} of the granted lock requests; a database lock shows as
    ``{DATABASE: True}`` (the shared hold every object request has on it is left out)."""
    dump = replica.logical_dump()
    granted = {bytes(row[0]) for row in dump["paxos_lock_request"] if row[5]}  # type: ignore[arg-type]
    held: dict[bytes, dict[int, bool]] = {txn: {} for txn in granted}
    for txn_id, oid, exclusive in dump["paxos_lock_oid"]:
        if int(oid) == DATABASE and not exclusive:  # type: ignore[call-overload]
            continue
        if txn_id in granted:
            held[bytes(txn_id)][int(oid)] = bool(exclusive)  # type: ignore[arg-type]
    return held


def open_readonly(path: str) -> apsw.Connection:
    return apsw.Connection(path, flags=apsw.SQLITE_OPEN_READONLY)
