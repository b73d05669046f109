"""The log records of DESIGN.md §3 as frozen dataclasses, valid by construction.

Owns: what a well-formed record is. Every check that does not depend on the replica's state
runs in ``__post_init__`` and raises ``MalformedRecord``, so a proposer learns of a bad record
before proposing it, and the applier (which builds these from payload bytes in
``codec.decode_record``) turns a bad payload into the same ``Rejected`` outcome on every node.
Checks that need the replica (is the lock held, is ``prev_tid`` current) belong to the applier.

Must not import: generated protobuf (``codec.py`` is the translation point), apsw.
Called by: any thread; pure values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from relstorage_paxos.errors import MalformedRecord

MAX_OID: Final = 2**63 - 1
"""The largest OID or tid SQLite can store: RelStorage's SQLite schema uses signed INTEGER
columns (its driver says ``supports_64bit_unsigned_id = False``)."""

MAX_TIMESTAMP_US: Final = 64_060_588_800_000_000
"""4000-01-01T00:00:00Z. Far beyond any real clock, yet its tid stays below ``MAX_OID``
(ZODB's TimeStamp packs the minute since 1900 into the high 32 bits)."""

MAX_ALLOCATE_OIDS: Final = 1 << 20
"""The most OIDs one AllocateOids may reserve; a node refills blocks far smaller than this,
so a larger count is a bug in the proposer, not a need."""


def _check_id(name: str, value: bytes) -> None:
    if not value:
        raise MalformedRecord(f"{name} is empty")


def _check_oids(name: str, oids: tuple[int, ...]) -> None:
    for oid in oids:
        if not 0 <= oid <= MAX_OID:
            raise MalformedRecord(f"{name} holds {oid}, outside 0..{MAX_OID}")


@dataclass(frozen=True, slots=True)
class LockObjects:
    """tpc_vote: lock ``write_oids`` exclusively and ``read_current_oids`` shared, all or
    nothing. An OID in both lists is locked exclusively.

    ``database``: lock the whole database exclusively instead (no OIDs then). Paths that must
    know their tid before vote take it (history-preserving undo and deleteObject): while it
    is held no other transaction holds any lock, so no other commit can take a tid, and the
    holder may commit under a tid it chose (``CommitTxn.tid``)."""

    txn_id: bytes
    node_id: int
    write_oids: tuple[int, ...]
    read_current_oids: tuple[int, ...]
    lease_until_us: int
    database: bool = False

    def __post_init__(self) -> None:
        _check_id("txn_id", self.txn_id)
        _check_oids("write_oids", self.write_oids)
        _check_oids("read_current_oids", self.read_current_oids)
        if self.database and (self.write_oids or self.read_current_oids):
            raise MalformedRecord("a database lock names no oids")


@dataclass(frozen=True, slots=True)
class ObjectWrite:
    """``state`` None deletes the object: history-free removes its row, history-preserving
    writes a NULL state (RelStorage's "whiteout": loads raise POSKeyError, older states stay
    until a pack)."""

    oid: int
    prev_tid: int
    state: bytes | None

    def __post_init__(self) -> None:
        _check_oids("oid", (self.oid,))
        _check_oids("prev_tid", (self.prev_tid,))


@dataclass(frozen=True, slots=True)
class BlobWrite:
    """A blob's whole content (RelStorage's SQLite schema stores one chunk per blob)."""

    oid: int
    data: bytes


@dataclass(frozen=True, slots=True)
class CommitTxn:
    """tpc_finish: write ``writes`` (and ``blobs``) under a tid chosen at apply, or under
    ``tid`` if it is not 0: the txn then must hold the database lock (see LockObjects), and
    the tid must follow every tid applied."""

    txn_id: bytes
    timestamp_us: int
    user: bytes
    description: bytes
    extension: bytes
    writes: tuple[ObjectWrite, ...]
    blobs: tuple[BlobWrite, ...] = ()
    tid: int = 0

    def __post_init__(self) -> None:
        _check_id("txn_id", self.txn_id)
        _check_oids("tid", (self.tid,))
        if not 0 <= self.timestamp_us <= MAX_TIMESTAMP_US:
            raise MalformedRecord(f"timestamp_us {self.timestamp_us} outside 0..{MAX_TIMESTAMP_US}")
        write_oids = [write.oid for write in self.writes]
        if len(set(write_oids)) != len(write_oids):
            raise MalformedRecord("an oid appears twice in writes")
        blob_oids = [blob.oid for blob in self.blobs]
        if len(set(blob_oids)) != len(blob_oids):
            raise MalformedRecord("an oid appears twice in blobs")
        orphans = set(blob_oids) - set(write_oids)
        if orphans:
            raise MalformedRecord(f"blobs for oids not in writes: {sorted(orphans)}")


@dataclass(frozen=True, slots=True)
class RestoredObject:
    """An object's state as a restore copies it, under ``tid`` (``IStorageRestoreable.restore``
    gives each record its serial): ``state`` None records that the object does not exist as
    of this transaction (history-preserving "uncreation"; history-free deletes the row).

    A history-preserving restore copies one transaction, so every tid is the transaction's.
    A history-free one may not: RelStorage's history-free copier batches the current state
    of many objects, each under the tid of the source transaction that last wrote it."""

    oid: int
    tid: int
    state: bytes | None

    def __post_init__(self) -> None:
        _check_oids("oid", (self.oid,))
        if not 0 < self.tid <= MAX_OID:
            raise MalformedRecord(f"oid {self.oid}: tid {self.tid} outside 1..{MAX_OID}")


@dataclass(frozen=True, slots=True)
class RestoreTxn:
    """Restore (``copyTransactionsFrom``, zodbconvert): write ``objects`` under their tids,
    with no ``prev_tid`` check; ``tid`` is the restored transaction's (the first object's, for
    a history-free batch). Like CommitTxn, it needs the txn's exclusive locks on every OID it
    writes (so no running transaction's view of them changes under it). Pollers see changes
    by tid above the last they saw, so the applier refuses a tid that is not after every tid
    applied, except for a history-free object that does not exist yet: no reader can hold
    it (see ``Replica._refuse_restore``)."""

    txn_id: bytes
    tid: int
    user: bytes
    description: bytes
    extension: bytes
    packed: bool
    objects: tuple[RestoredObject, ...]
    blobs: tuple[BlobWrite, ...] = ()

    def __post_init__(self) -> None:
        _check_id("txn_id", self.txn_id)
        if not 0 < self.tid <= MAX_OID:
            raise MalformedRecord(f"tid {self.tid} outside 1..{MAX_OID}")
        oids = [o.oid for o in self.objects]
        if len(set(oids)) != len(oids):
            raise MalformedRecord("an oid appears twice in objects")
        blob_oids = [blob.oid for blob in self.blobs]
        if len(set(blob_oids)) != len(blob_oids):
            raise MalformedRecord("an oid appears twice in blobs")
        orphans = set(blob_oids) - set(oids)
        if orphans:
            raise MalformedRecord(f"blobs for oids not in objects: {sorted(orphans)}")


@dataclass(frozen=True, slots=True)
class ReleaseTxn:
    """tpc_abort: drop the txn's locks or its waiting lock request.

    ``lease_until_us``: the lease of the txn's lock request, if it made one. A request whose
    answer never came may still be chosen after this release; if none has been applied yet,
    the txn is remembered as released until then, and a late request is refused.

    ``tid``: 0, or the tid the txn chose under the database lock it holds. It may have
    written files under that tid (RelStorage moves blobs into a shared blob directory at
    vote, and removes them only after this release), so no later commit may take it: the
    applier moves ``last_tid`` up to it."""

    txn_id: bytes
    lease_until_us: int = 0
    tid: int = 0

    def __post_init__(self) -> None:
        _check_id("txn_id", self.txn_id)
        _check_oids("tid", (self.tid,))


@dataclass(frozen=True, slots=True)
class RenewLeases:
    """Move the lease of each txn's lock request (held or waiting) to ``lease_until_us``,
    never back: a live process renews the locks of its transactions that take longer than
    a lease between vote and finish, so only a dead one loses them."""

    txn_ids: tuple[bytes, ...]
    lease_until_us: int

    def __post_init__(self) -> None:
        if not self.txn_ids:
            raise MalformedRecord("txn_ids is empty")
        for txn_id in self.txn_ids:
            _check_id("txn_id", txn_id)


@dataclass(frozen=True, slots=True)
class ExpireLeases:
    """Drop every lock request whose ``lease_until_us`` is below ``now_us`` (its holder is
    presumed dead); ``now_us`` is the leader's clock, written here once."""

    now_us: int


@dataclass(frozen=True, slots=True)
class ExpireNodes:
    """Drop every lock request, held or waiting, made through one of ``node_ids``: the
    leader has not heard from them for a node timeout, so their processes are presumed dead
    or cut off, and their locks must not block the others for a whole lease. A transaction
    that loses its locks this way is refused at finish (its CommitTxn finds no lock)."""

    node_ids: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.node_ids:
            raise MalformedRecord("node_ids is empty")
        if list(self.node_ids) != sorted(set(self.node_ids)):
            raise MalformedRecord("node_ids are not distinct and in order")


@dataclass(frozen=True, slots=True)
class AllocateOids:
    """Reserve ``count`` OIDs for ``node_id``, all above ``min_oid`` (RelStorage's
    ``set_min_oid``, which restores need)."""

    node_id: int
    count: int
    min_oid: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_ALLOCATE_OIDS:
            raise MalformedRecord(f"count {self.count} outside 1..{MAX_ALLOCATE_OIDS}")
        _check_oids("min_oid", (self.min_oid,))


@dataclass(frozen=True, slots=True)
class Noop:
    """A new leader's first record: it changes only the slot and the running hash."""


def _check_tid(name: str, tid: int, ceiling: int = MAX_OID) -> None:
    if not 0 < tid <= ceiling:
        raise MalformedRecord(f"{name} {tid} outside 1..{ceiling}")


@dataclass(frozen=True, slots=True)
class PrunedObject:
    """History-preserving pack: remove the object's states older than ``keep_tid``, its
    newest state at or before the pack tid."""

    oid: int
    keep_tid: int


@dataclass(frozen=True, slots=True)
class RemovedObject:
    """Remove the whole object, whose current tid was ``tid`` when the pack was planned."""

    oid: int
    tid: int


@dataclass(frozen=True, slots=True)
class PackObjects:
    """One batch of a pack, planned on a snapshot of the proposer's replica whose last tid
    was ``snapshot_tid``; the applier re-validates every entry (see ``replica/packer.py``).
    ``removed`` must hold every removed object that another one of them references (the
    applier follows references only among them)."""

    pack_tid: int
    snapshot_tid: int
    pruned: tuple[PrunedObject, ...] = ()
    removed: tuple[RemovedObject, ...] = ()

    def __post_init__(self) -> None:
        _check_tid("snapshot_tid", self.snapshot_tid)
        _check_tid("pack_tid", self.pack_tid, self.snapshot_tid)
        pruned_oids = [p.oid for p in self.pruned]
        removed_oids = [r.oid for r in self.removed]
        _check_oids("pruned", tuple(pruned_oids))
        _check_oids("removed", tuple(removed_oids))
        if len(set(pruned_oids)) != len(pruned_oids):
            raise MalformedRecord("an oid appears twice in pruned")
        if len(set(removed_oids)) != len(removed_oids):
            raise MalformedRecord("an oid appears twice in removed")
        both = set(pruned_oids) & set(removed_oids)
        if both:
            raise MalformedRecord(f"oids both pruned and removed: {sorted(both)[:20]}")
        for pruned in self.pruned:
            _check_tid("keep_tid", pruned.keep_tid, self.pack_tid)
        for removed in self.removed:
            _check_tid("removed tid", removed.tid, self.pack_tid)


@dataclass(frozen=True, slots=True)
class PackTransactions:
    """History-preserving pack, last step: mark the unpacked transactions with
    ``first_tid <= tid <= last_tid`` packed and remove those left without object states."""

    first_tid: int
    last_tid: int

    def __post_init__(self) -> None:
        _check_tid("last_tid", self.last_tid)
        _check_tid("first_tid", self.first_tid, self.last_tid)


RecordBody = (
    LockObjects
    | CommitTxn
    | RestoreTxn
    | ReleaseTxn
    | RenewLeases
    | ExpireLeases
    | ExpireNodes
    | AllocateOids
    | Noop
    | PackObjects
    | PackTransactions
)


@dataclass(frozen=True, slots=True)
class Record:
    """One proposal's payload. ``request_id`` repeats the proposal's own, binding the payload
    to it (the applier rejects a mismatch)."""

    request_id: bytes
    body: RecordBody

    def __post_init__(self) -> None:
        _check_id("request_id", self.request_id)
