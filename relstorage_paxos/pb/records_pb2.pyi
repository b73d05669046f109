from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Record(_message.Message):
    __slots__ = ("version", "request_id", "lock_objects", "commit_txn", "release_txn", "expire_leases", "allocate_oids", "noop", "restore_txn", "renew_leases", "expire_nodes", "pack_objects", "pack_transactions")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    LOCK_OBJECTS_FIELD_NUMBER: _ClassVar[int]
    COMMIT_TXN_FIELD_NUMBER: _ClassVar[int]
    RELEASE_TXN_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_LEASES_FIELD_NUMBER: _ClassVar[int]
    ALLOCATE_OIDS_FIELD_NUMBER: _ClassVar[int]
    NOOP_FIELD_NUMBER: _ClassVar[int]
    RESTORE_TXN_FIELD_NUMBER: _ClassVar[int]
    RENEW_LEASES_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_NODES_FIELD_NUMBER: _ClassVar[int]
    PACK_OBJECTS_FIELD_NUMBER: _ClassVar[int]
    PACK_TRANSACTIONS_FIELD_NUMBER: _ClassVar[int]
    version: int
    request_id: bytes
    lock_objects: LockObjects
    commit_txn: CommitTxn
    release_txn: ReleaseTxn
    expire_leases: ExpireLeases
    allocate_oids: AllocateOids
    noop: Noop
    restore_txn: RestoreTxn
    renew_leases: RenewLeases
    expire_nodes: ExpireNodes
    pack_objects: PackObjects
    pack_transactions: PackTransactions
    def __init__(self, version: _Optional[int] = ..., request_id: _Optional[bytes] = ..., lock_objects: _Optional[_Union[LockObjects, _Mapping]] = ..., commit_txn: _Optional[_Union[CommitTxn, _Mapping]] = ..., release_txn: _Optional[_Union[ReleaseTxn, _Mapping]] = ..., expire_leases: _Optional[_Union[ExpireLeases, _Mapping]] = ..., allocate_oids: _Optional[_Union[AllocateOids, _Mapping]] = ..., noop: _Optional[_Union[Noop, _Mapping]] = ..., restore_txn: _Optional[_Union[RestoreTxn, _Mapping]] = ..., renew_leases: _Optional[_Union[RenewLeases, _Mapping]] = ..., expire_nodes: _Optional[_Union[ExpireNodes, _Mapping]] = ..., pack_objects: _Optional[_Union[PackObjects, _Mapping]] = ..., pack_transactions: _Optional[_Union[PackTransactions, _Mapping]] = ...) -> None: ...

class LockObjects(_message.Message):
    __slots__ = ("txn_id", "node_id", "write_oids", "read_current_oids", "lease_until_us", "database")
    TXN_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    WRITE_OIDS_FIELD_NUMBER: _ClassVar[int]
    READ_CURRENT_OIDS_FIELD_NUMBER: _ClassVar[int]
    LEASE_UNTIL_US_FIELD_NUMBER: _ClassVar[int]
    DATABASE_FIELD_NUMBER: _ClassVar[int]
    txn_id: bytes
    node_id: int
    write_oids: _containers.RepeatedScalarFieldContainer[int]
    read_current_oids: _containers.RepeatedScalarFieldContainer[int]
    lease_until_us: int
    database: bool
    def __init__(self, txn_id: _Optional[bytes] = ..., node_id: _Optional[int] = ..., write_oids: _Optional[_Iterable[int]] = ..., read_current_oids: _Optional[_Iterable[int]] = ..., lease_until_us: _Optional[int] = ..., database: _Optional[bool] = ...) -> None: ...

class ObjectWrite(_message.Message):
    __slots__ = ("oid", "prev_tid", "state")
    OID_FIELD_NUMBER: _ClassVar[int]
    PREV_TID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    oid: int
    prev_tid: int
    state: bytes
    def __init__(self, oid: _Optional[int] = ..., prev_tid: _Optional[int] = ..., state: _Optional[bytes] = ...) -> None: ...

class BlobWrite(_message.Message):
    __slots__ = ("oid", "data")
    OID_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    oid: int
    data: bytes
    def __init__(self, oid: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class CommitTxn(_message.Message):
    __slots__ = ("txn_id", "timestamp_us", "user", "description", "extension", "writes", "blobs", "tid")
    TXN_ID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_US_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    EXTENSION_FIELD_NUMBER: _ClassVar[int]
    WRITES_FIELD_NUMBER: _ClassVar[int]
    BLOBS_FIELD_NUMBER: _ClassVar[int]
    TID_FIELD_NUMBER: _ClassVar[int]
    txn_id: bytes
    timestamp_us: int
    user: bytes
    description: bytes
    extension: bytes
    writes: _containers.RepeatedCompositeFieldContainer[ObjectWrite]
    blobs: _containers.RepeatedCompositeFieldContainer[BlobWrite]
    tid: int
    def __init__(self, txn_id: _Optional[bytes] = ..., timestamp_us: _Optional[int] = ..., user: _Optional[bytes] = ..., description: _Optional[bytes] = ..., extension: _Optional[bytes] = ..., writes: _Optional[_Iterable[_Union[ObjectWrite, _Mapping]]] = ..., blobs: _Optional[_Iterable[_Union[BlobWrite, _Mapping]]] = ..., tid: _Optional[int] = ...) -> None: ...

class RestoredObject(_message.Message):
    __slots__ = ("oid", "state", "tid")
    OID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    TID_FIELD_NUMBER: _ClassVar[int]
    oid: int
    state: bytes
    tid: int
    def __init__(self, oid: _Optional[int] = ..., state: _Optional[bytes] = ..., tid: _Optional[int] = ...) -> None: ...

class RestoreTxn(_message.Message):
    __slots__ = ("txn_id", "tid", "user", "description", "extension", "packed", "objects", "blobs")
    TXN_ID_FIELD_NUMBER: _ClassVar[int]
    TID_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    EXTENSION_FIELD_NUMBER: _ClassVar[int]
    PACKED_FIELD_NUMBER: _ClassVar[int]
    OBJECTS_FIELD_NUMBER: _ClassVar[int]
    BLOBS_FIELD_NUMBER: _ClassVar[int]
    txn_id: bytes
    tid: int
    user: bytes
    description: bytes
    extension: bytes
    packed: bool
    objects: _containers.RepeatedCompositeFieldContainer[RestoredObject]
    blobs: _containers.RepeatedCompositeFieldContainer[BlobWrite]
    def __init__(self, txn_id: _Optional[bytes] = ..., tid: _Optional[int] = ..., user: _Optional[bytes] = ..., description: _Optional[bytes] = ..., extension: _Optional[bytes] = ..., packed: _Optional[bool] = ..., objects: _Optional[_Iterable[_Union[RestoredObject, _Mapping]]] = ..., blobs: _Optional[_Iterable[_Union[BlobWrite, _Mapping]]] = ...) -> None: ...

class ReleaseTxn(_message.Message):
    __slots__ = ("txn_id", "lease_until_us", "tid")
    TXN_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_UNTIL_US_FIELD_NUMBER: _ClassVar[int]
    TID_FIELD_NUMBER: _ClassVar[int]
    txn_id: bytes
    lease_until_us: int
    tid: int
    def __init__(self, txn_id: _Optional[bytes] = ..., lease_until_us: _Optional[int] = ..., tid: _Optional[int] = ...) -> None: ...

class RenewLeases(_message.Message):
    __slots__ = ("txn_ids", "lease_until_us")
    TXN_IDS_FIELD_NUMBER: _ClassVar[int]
    LEASE_UNTIL_US_FIELD_NUMBER: _ClassVar[int]
    txn_ids: _containers.RepeatedScalarFieldContainer[bytes]
    lease_until_us: int
    def __init__(self, txn_ids: _Optional[_Iterable[bytes]] = ..., lease_until_us: _Optional[int] = ...) -> None: ...

class ExpireLeases(_message.Message):
    __slots__ = ("now_us",)
    NOW_US_FIELD_NUMBER: _ClassVar[int]
    now_us: int
    def __init__(self, now_us: _Optional[int] = ...) -> None: ...

class ExpireNodes(_message.Message):
    __slots__ = ("node_ids",)
    NODE_IDS_FIELD_NUMBER: _ClassVar[int]
    node_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, node_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class AllocateOids(_message.Message):
    __slots__ = ("node_id", "count", "min_oid")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    MIN_OID_FIELD_NUMBER: _ClassVar[int]
    node_id: int
    count: int
    min_oid: int
    def __init__(self, node_id: _Optional[int] = ..., count: _Optional[int] = ..., min_oid: _Optional[int] = ...) -> None: ...

class Noop(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PrunedObject(_message.Message):
    __slots__ = ("oid", "keep_tid")
    OID_FIELD_NUMBER: _ClassVar[int]
    KEEP_TID_FIELD_NUMBER: _ClassVar[int]
    oid: int
    keep_tid: int
    def __init__(self, oid: _Optional[int] = ..., keep_tid: _Optional[int] = ...) -> None: ...

class RemovedObject(_message.Message):
    __slots__ = ("oid", "tid")
    OID_FIELD_NUMBER: _ClassVar[int]
    TID_FIELD_NUMBER: _ClassVar[int]
    oid: int
    tid: int
    def __init__(self, oid: _Optional[int] = ..., tid: _Optional[int] = ...) -> None: ...

class PackObjects(_message.Message):
    __slots__ = ("pack_tid", "snapshot_tid", "pruned", "removed")
    PACK_TID_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_TID_FIELD_NUMBER: _ClassVar[int]
    PRUNED_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    pack_tid: int
    snapshot_tid: int
    pruned: _containers.RepeatedCompositeFieldContainer[PrunedObject]
    removed: _containers.RepeatedCompositeFieldContainer[RemovedObject]
    def __init__(self, pack_tid: _Optional[int] = ..., snapshot_tid: _Optional[int] = ..., pruned: _Optional[_Iterable[_Union[PrunedObject, _Mapping]]] = ..., removed: _Optional[_Iterable[_Union[RemovedObject, _Mapping]]] = ...) -> None: ...

class PackTransactions(_message.Message):
    __slots__ = ("first_tid", "last_tid")
    FIRST_TID_FIELD_NUMBER: _ClassVar[int]
    LAST_TID_FIELD_NUMBER: _ClassVar[int]
    first_tid: int
    last_tid: int
    def __init__(self, first_tid: _Optional[int] = ..., last_tid: _Optional[int] = ...) -> None: ...

class Outcome(_message.Message):
    __slots__ = ("granted", "queued", "committed", "conflict", "released", "expired", "allocated", "rejected", "noop_applied", "renewed", "packed")
    GRANTED_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_FIELD_NUMBER: _ClassVar[int]
    CONFLICT_FIELD_NUMBER: _ClassVar[int]
    RELEASED_FIELD_NUMBER: _ClassVar[int]
    EXPIRED_FIELD_NUMBER: _ClassVar[int]
    ALLOCATED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    NOOP_APPLIED_FIELD_NUMBER: _ClassVar[int]
    RENEWED_FIELD_NUMBER: _ClassVar[int]
    PACKED_FIELD_NUMBER: _ClassVar[int]
    granted: Granted
    queued: Queued
    committed: Committed
    conflict: Conflict
    released: Released
    expired: Expired
    allocated: Allocated
    rejected: Rejected
    noop_applied: NoopApplied
    renewed: Renewed
    packed: Packed
    def __init__(self, granted: _Optional[_Union[Granted, _Mapping]] = ..., queued: _Optional[_Union[Queued, _Mapping]] = ..., committed: _Optional[_Union[Committed, _Mapping]] = ..., conflict: _Optional[_Union[Conflict, _Mapping]] = ..., released: _Optional[_Union[Released, _Mapping]] = ..., expired: _Optional[_Union[Expired, _Mapping]] = ..., allocated: _Optional[_Union[Allocated, _Mapping]] = ..., rejected: _Optional[_Union[Rejected, _Mapping]] = ..., noop_applied: _Optional[_Union[NoopApplied, _Mapping]] = ..., renewed: _Optional[_Union[Renewed, _Mapping]] = ..., packed: _Optional[_Union[Packed, _Mapping]] = ...) -> None: ...

class Granted(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Queued(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Committed(_message.Message):
    __slots__ = ("tid", "granted_requests")
    TID_FIELD_NUMBER: _ClassVar[int]
    GRANTED_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    tid: int
    granted_requests: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, tid: _Optional[int] = ..., granted_requests: _Optional[_Iterable[bytes]] = ...) -> None: ...

class StaleWrite(_message.Message):
    __slots__ = ("oid", "prev_tid", "current_tid")
    OID_FIELD_NUMBER: _ClassVar[int]
    PREV_TID_FIELD_NUMBER: _ClassVar[int]
    CURRENT_TID_FIELD_NUMBER: _ClassVar[int]
    oid: int
    prev_tid: int
    current_tid: int
    def __init__(self, oid: _Optional[int] = ..., prev_tid: _Optional[int] = ..., current_tid: _Optional[int] = ...) -> None: ...

class Conflict(_message.Message):
    __slots__ = ("reason", "stale_writes")
    REASON_FIELD_NUMBER: _ClassVar[int]
    STALE_WRITES_FIELD_NUMBER: _ClassVar[int]
    reason: str
    stale_writes: _containers.RepeatedCompositeFieldContainer[StaleWrite]
    def __init__(self, reason: _Optional[str] = ..., stale_writes: _Optional[_Iterable[_Union[StaleWrite, _Mapping]]] = ...) -> None: ...

class Released(_message.Message):
    __slots__ = ("granted_requests",)
    GRANTED_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    granted_requests: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, granted_requests: _Optional[_Iterable[bytes]] = ...) -> None: ...

class Renewed(_message.Message):
    __slots__ = ("count",)
    COUNT_FIELD_NUMBER: _ClassVar[int]
    count: int
    def __init__(self, count: _Optional[int] = ...) -> None: ...

class Expired(_message.Message):
    __slots__ = ("count", "granted_requests")
    COUNT_FIELD_NUMBER: _ClassVar[int]
    GRANTED_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    count: int
    granted_requests: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, count: _Optional[int] = ..., granted_requests: _Optional[_Iterable[bytes]] = ...) -> None: ...

class Allocated(_message.Message):
    __slots__ = ("start", "count")
    START_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    start: int
    count: int
    def __init__(self, start: _Optional[int] = ..., count: _Optional[int] = ...) -> None: ...

class Rejected(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class NoopApplied(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Packed(_message.Message):
    __slots__ = ("states_removed", "objects_removed", "objects_kept", "transactions_packed", "transactions_removed")
    STATES_REMOVED_FIELD_NUMBER: _ClassVar[int]
    OBJECTS_REMOVED_FIELD_NUMBER: _ClassVar[int]
    OBJECTS_KEPT_FIELD_NUMBER: _ClassVar[int]
    TRANSACTIONS_PACKED_FIELD_NUMBER: _ClassVar[int]
    TRANSACTIONS_REMOVED_FIELD_NUMBER: _ClassVar[int]
    states_removed: int
    objects_removed: int
    objects_kept: int
    transactions_packed: int
    transactions_removed: int
    def __init__(self, states_removed: _Optional[int] = ..., objects_removed: _Optional[int] = ..., objects_kept: _Optional[int] = ..., transactions_packed: _Optional[int] = ..., transactions_removed: _Optional[int] = ...) -> None: ...
