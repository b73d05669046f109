"""The record codec: log-record and outcome dataclasses to and from ``records.proto`` bytes.

Owns: the only translation between ``relstorage_paxos.pb.records_pb2`` and the dataclasses
of ``records.py`` and ``outcomes.py``, and ``RECORD_VERSION``. A payload either decodes into
a valid ``Record`` or raises ``MalformedRecord``; nothing in between reaches the applier.

Must not import: apsw, anything with I/O.
Called by: proposers (to encode), the applier thread (to decode), the Sequencer service (to
pass outcomes along); pure functions.
"""

from __future__ import annotations

from typing import Final, assert_never

from google.protobuf.message import DecodeError

from relstorage_paxos.errors import MalformedRecord
from relstorage_paxos.pb import records_pb2 as pb
from relstorage_paxos.replica.outcomes import (
    Allocated,
    Committed,
    Conflict,
    Expired,
    Granted,
    NoopApplied,
    Packed,
    Queued,
    RecordedOutcome,
    Rejected,
    Released,
    Renewed,
    StaleWrite,
)
from relstorage_paxos.replica.records import (
    AllocateOids,
    BlobWrite,
    CommitTxn,
    ExpireLeases,
    ExpireNodes,
    LockObjects,
    Noop,
    ObjectWrite,
    PackObjects,
    PackTransactions,
    PrunedObject,
    Record,
    RecordBody,
    ReleaseTxn,
    RemovedObject,
    RenewLeases,
    RestoredObject,
    RestoreTxn,
)

RECORD_VERSION: Final = 3
"""The record format this code writes and applies; see records.proto on when to bump it.
2: RestoreTxn. 3: database locks, deletes (ObjectWrite without state), CommitTxn.tid,
ReleaseTxn.lease_until_us and .tid, RenewLeases, RestoredObject.tid, PackObjects,
PackTransactions."""


def encode_record(record: Record) -> bytes:
    """The payload to propose for ``record``."""
    message = pb.Record(version=RECORD_VERSION, request_id=record.request_id)
    body = record.body
    match body:
        case LockObjects():
            message.lock_objects.CopyFrom(
                pb.LockObjects(
                    txn_id=body.txn_id,
                    node_id=body.node_id,
                    write_oids=body.write_oids,
                    read_current_oids=body.read_current_oids,
                    lease_until_us=body.lease_until_us,
                    database=body.database,
                )
            )
        case CommitTxn():
            message.commit_txn.CopyFrom(
                pb.CommitTxn(
                    txn_id=body.txn_id,
                    timestamp_us=body.timestamp_us,
                    user=body.user,
                    description=body.description,
                    extension=body.extension,
                    writes=[
                        pb.ObjectWrite(oid=w.oid, prev_tid=w.prev_tid)
                        if w.state is None
                        else pb.ObjectWrite(oid=w.oid, prev_tid=w.prev_tid, state=w.state)
                        for w in body.writes
                    ],
                    blobs=[pb.BlobWrite(oid=b.oid, data=b.data) for b in body.blobs],
                    tid=body.tid,
                )
            )
        case RestoreTxn():
            message.restore_txn.CopyFrom(
                pb.RestoreTxn(
                    txn_id=body.txn_id,
                    tid=body.tid,
                    user=body.user,
                    description=body.description,
                    extension=body.extension,
                    packed=body.packed,
                    objects=[
                        pb.RestoredObject(oid=o.oid, tid=o.tid)
                        if o.state is None
                        else pb.RestoredObject(oid=o.oid, tid=o.tid, state=o.state)
                        for o in body.objects
                    ],
                    blobs=[pb.BlobWrite(oid=b.oid, data=b.data) for b in body.blobs],
                )
            )
        case ReleaseTxn():
            message.release_txn.txn_id = body.txn_id
            message.release_txn.lease_until_us = body.lease_until_us
            message.release_txn.tid = body.tid
        case RenewLeases():
            message.renew_leases.txn_ids.extend(body.txn_ids)
            message.renew_leases.lease_until_us = body.lease_until_us
        case ExpireLeases():
            message.expire_leases.now_us = body.now_us
        case ExpireNodes():
            message.expire_nodes.node_ids.extend(body.node_ids)
        case AllocateOids():
            message.allocate_oids.CopyFrom(
                pb.AllocateOids(node_id=body.node_id, count=body.count, min_oid=body.min_oid)
            )
        case Noop():
            message.noop.SetInParent()
        case PackObjects():
            message.pack_objects.CopyFrom(
                pb.PackObjects(
                    pack_tid=body.pack_tid,
                    snapshot_tid=body.snapshot_tid,
                    pruned=[pb.PrunedObject(oid=p.oid, keep_tid=p.keep_tid) for p in body.pruned],
                    removed=[pb.RemovedObject(oid=r.oid, tid=r.tid) for r in body.removed],
                )
            )
        case PackTransactions():
            message.pack_transactions.CopyFrom(
                pb.PackTransactions(first_tid=body.first_tid, last_tid=body.last_tid)
            )
        case _:
            assert_never(body)
    return message.SerializeToString(deterministic=True)


def decode_record(payload: bytes) -> Record:
    """The record in ``payload``; ``MalformedRecord`` if it is not one this code applies."""
    message = pb.Record()
    try:
        message.ParseFromString(payload)
    except DecodeError as exc:
        # Not the library's message: it varies with the protobuf version, and the reason is
        # recorded in every replica.
        raise MalformedRecord("undecodable record") from exc
    if message.version != RECORD_VERSION:
        raise MalformedRecord(
            f"record version {message.version}; this replica applies {RECORD_VERSION}"
        )
    return Record(request_id=message.request_id, body=_decode_body(message))


def _decode_body(message: pb.Record) -> RecordBody:
    kind = message.WhichOneof("body")
    if kind == "lock_objects":
        lock = message.lock_objects
        return LockObjects(
            txn_id=lock.txn_id,
            node_id=lock.node_id,
            write_oids=tuple(lock.write_oids),
            read_current_oids=tuple(lock.read_current_oids),
            lease_until_us=lock.lease_until_us,
            database=lock.database,
        )
    if kind == "commit_txn":
        commit = message.commit_txn
        return CommitTxn(
            txn_id=commit.txn_id,
            timestamp_us=commit.timestamp_us,
            user=commit.user,
            description=commit.description,
            extension=commit.extension,
            writes=tuple(
                ObjectWrite(w.oid, w.prev_tid, w.state if w.HasField("state") else None)
                for w in commit.writes
            ),
            blobs=tuple(BlobWrite(b.oid, b.data) for b in commit.blobs),
            tid=commit.tid,
        )
    if kind == "restore_txn":
        restore = message.restore_txn
        return RestoreTxn(
            txn_id=restore.txn_id,
            tid=restore.tid,
            user=restore.user,
            description=restore.description,
            extension=restore.extension,
            packed=restore.packed,
            objects=tuple(
                RestoredObject(o.oid, o.tid, o.state if o.HasField("state") else None)
                for o in restore.objects
            ),
            blobs=tuple(BlobWrite(b.oid, b.data) for b in restore.blobs),
        )
    if kind == "release_txn":
        release = message.release_txn
        return ReleaseTxn(
            txn_id=release.txn_id, lease_until_us=release.lease_until_us, tid=release.tid
        )
    if kind == "renew_leases":
        renew = message.renew_leases
        return RenewLeases(txn_ids=tuple(renew.txn_ids), lease_until_us=renew.lease_until_us)
    if kind == "expire_leases":
        return ExpireLeases(now_us=message.expire_leases.now_us)
    if kind == "expire_nodes":
        return ExpireNodes(node_ids=tuple(message.expire_nodes.node_ids))
    if kind == "allocate_oids":
        allocate = message.allocate_oids
        return AllocateOids(
            node_id=allocate.node_id, count=allocate.count, min_oid=allocate.min_oid
        )
    if kind == "noop":
        return Noop()
    if kind == "pack_objects":
        pack = message.pack_objects
        return PackObjects(
            pack_tid=pack.pack_tid,
            snapshot_tid=pack.snapshot_tid,
            pruned=tuple(PrunedObject(p.oid, p.keep_tid) for p in pack.pruned),
            removed=tuple(RemovedObject(r.oid, r.tid) for r in pack.removed),
        )
    if kind == "pack_transactions":
        txns = message.pack_transactions
        return PackTransactions(first_tid=txns.first_tid, last_tid=txns.last_tid)
    raise MalformedRecord("record has no body")


def encode_outcome(outcome: RecordedOutcome) -> bytes:
    """Bytes for ``outcome``: what the replica stores and ``ProposeReply.outcome`` carries."""
    message = pb.Outcome()
    match outcome:
        case Granted():
            message.granted.SetInParent()
        case Queued():
            message.queued.SetInParent()
        case Committed():
            message.committed.tid = outcome.tid
            message.committed.granted_requests.extend(outcome.granted_requests)
        case Conflict():
            message.conflict.reason = outcome.reason
            message.conflict.stale_writes.extend(
                pb.StaleWrite(oid=s.oid, prev_tid=s.prev_tid, current_tid=s.current_tid)
                for s in outcome.stale_writes
            )
        case Released():
            message.released.granted_requests.extend(outcome.granted_requests)
        case Expired():
            message.expired.count = outcome.count
            message.expired.granted_requests.extend(outcome.granted_requests)
        case Renewed():
            message.renewed.count = outcome.count
        case Allocated():
            message.allocated.start = outcome.start
            message.allocated.count = outcome.count
        case Rejected():
            message.rejected.reason = outcome.reason
        case NoopApplied():
            message.noop_applied.SetInParent()
        case Packed():
            message.packed.CopyFrom(
                pb.Packed(
                    states_removed=outcome.states_removed,
                    objects_removed=outcome.objects_removed,
                    objects_kept=outcome.objects_kept,
                    transactions_packed=outcome.transactions_packed,
                    transactions_removed=outcome.transactions_removed,
                )
            )
        case _:
            assert_never(outcome)
    return message.SerializeToString(deterministic=True)


def decode_outcome(data: bytes) -> RecordedOutcome:
    """The outcome ``encode_outcome`` wrote; ``MalformedRecord`` for anything else."""
    message = pb.Outcome()
    try:
        message.ParseFromString(data)
    except DecodeError as exc:
        raise MalformedRecord("undecodable outcome") from exc
    kind = message.WhichOneof("kind")
    if kind == "granted":
        return Granted()
    if kind == "queued":
        return Queued()
    if kind == "committed":
        return Committed(message.committed.tid, tuple(message.committed.granted_requests))
    if kind == "conflict":
        stale = tuple(
            StaleWrite(s.oid, s.prev_tid, s.current_tid) for s in message.conflict.stale_writes
        )
        return Conflict(message.conflict.reason, stale)
    if kind == "released":
        return Released(tuple(message.released.granted_requests))
    if kind == "expired":
        return Expired(message.expired.count, tuple(message.expired.granted_requests))
    if kind == "renewed":
        return Renewed(message.renewed.count)
    if kind == "allocated":
        return Allocated(message.allocated.start, message.allocated.count)
    if kind == "rejected":
        return Rejected(message.rejected.reason)
    if kind == "noop_applied":
        return NoopApplied()
    if kind == "packed":
        packed = message.packed
        return Packed(
            packed.states_removed,
            packed.objects_removed,
            packed.objects_kept,
            packed.transactions_packed,
            packed.transactions_removed,
        )
    raise MalformedRecord("outcome has no kind")
