"""The deterministic state machine: chosen log records applied to ``replica.sqlite3``.

A replica is RelStorage's SQLite schema (history-free or history-preserving, fixed at
creation) plus ``paxos_*`` tables for the replicated state around it: applied slot, last tid,
running hash, object locks and their queue, outcomes by request id, OID blocks. The runtime's
applier thread feeds it chosen slots with ``Replica.apply_slot``; proposers build payloads
with ``encode_record``. See ``applier.py`` for the contract, DESIGN.md §3 for the records.

Must not import: ``core``, ``log``, ``transport``, ``runtime`` or ``adapter`` (DESIGN.md §2).
"""

from relstorage_paxos.replica.applier import Proposal, Replica, ReplicaOptions
from relstorage_paxos.replica.codec import (
    RECORD_VERSION,
    decode_outcome,
    decode_record,
    encode_outcome,
    encode_record,
)
from relstorage_paxos.replica.dump import LogicalDump, logical_dump
from relstorage_paxos.replica.locks import earliest_lease_until_us, nodes_with_requests
from relstorage_paxos.replica.outcomes import (
    Allocated,
    Committed,
    Conflict,
    Duplicate,
    Expired,
    Granted,
    NoopApplied,
    Outcome,
    Packed,
    Queued,
    RecordedOutcome,
    Rejected,
    Released,
    Renewed,
    StaleWrite,
)
from relstorage_paxos.replica.records import (
    MAX_OID,
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
from relstorage_paxos.replica.tids import next_tid, tid_of

__all__ = [
    "MAX_OID",
    "RECORD_VERSION",
    "AllocateOids",
    "Allocated",
    "BlobWrite",
    "CommitTxn",
    "Committed",
    "Conflict",
    "Duplicate",
    "ExpireLeases",
    "ExpireNodes",
    "Expired",
    "Granted",
    "LockObjects",
    "LogicalDump",
    "Noop",
    "NoopApplied",
    "ObjectWrite",
    "Outcome",
    "PackObjects",
    "PackTransactions",
    "Packed",
    "Proposal",
    "PrunedObject",
    "Queued",
    "Record",
    "RecordBody",
    "RecordedOutcome",
    "Rejected",
    "ReleaseTxn",
    "Released",
    "RemovedObject",
    "RenewLeases",
    "Renewed",
    "Replica",
    "ReplicaOptions",
    "RestoreTxn",
    "RestoredObject",
    "StaleWrite",
    "decode_outcome",
    "decode_record",
    "earliest_lease_until_us",
    "encode_outcome",
    "encode_record",
    "logical_dump",
    "next_tid",
    "nodes_with_requests",
    "tid_of",
]
