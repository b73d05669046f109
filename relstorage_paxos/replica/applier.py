"""The replica: chosen log slots applied, in order, to ``replica.sqlite3`` (DESIGN.md §2, §3).

Owns: the applier's apsw connection to the replica file, the apply of each record kind, the
running hash, its WAL checkpointer (``checkpointer.py``), snapshots. Apply is a pure
function of (replica state, slot, proposals): no clock, no randomness, no iteration order
that SQLite does not fix. Each ``apply_slot`` is one SQLite transaction that also advances
``applied_slot``, so after any crash the replica is exactly at some slot boundary and the
runtime replays the log from ``applied_slot + 1``.

Readers (app processes running stock RelStorage SQL) use their own connections; WAL mode
lets them read while the applier writes. The applier never checkpoints and never waits for
readers: a ``WalCheckpointer`` thread keeps the WAL under ``wal_size_limit_bytes``, and the
applier waits only, now and then, for one of its checkpoints (see its module doc).

Must not import: any clock or global randomness (tests/test_tidy.py), generated protobuf
(``codec.py`` is the translation point).
Called by: one thread, the runtime's applier; a ``Replica`` is not thread-safe (its
checkpointer runs on a thread of its own, sharing only the gate and a frame count).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Final, assert_never

import apsw

from relstorage_paxos.errors import MalformedRecord, ReplicaError, StaleSnapshot
from relstorage_paxos.replica import schema
from relstorage_paxos.replica.checkpointer import WalCheckpointer
from relstorage_paxos.replica.codec import decode_outcome, decode_record, encode_outcome
from relstorage_paxos.replica.dump import LogicalDump, logical_dump
from relstorage_paxos.replica.locks import Dropped, LockTable, ReadConflict
from relstorage_paxos.replica.outcomes import (
    Allocated,
    Committed,
    Conflict,
    Duplicate,
    Expired,
    Granted,
    NoopApplied,
    Outcome,
    Queued,
    RecordedOutcome,
    Rejected,
    Released,
    Renewed,
)
from relstorage_paxos.replica.packer import Packer
from relstorage_paxos.replica.records import (
    MAX_OID,
    AllocateOids,
    CommitTxn,
    ExpireLeases,
    ExpireNodes,
    LockObjects,
    Noop,
    PackObjects,
    PackTransactions,
    ReleaseTxn,
    RenewLeases,
    RestoreTxn,
)
from relstorage_paxos.replica.tids import next_tid
from relstorage_paxos.replica.writer import ObjectWriter

logger = logging.getLogger(__name__)

PAGE_SIZE_BYTES: Final = 4096
"""RelStorage's default for SQLite; a snapshot installs only into a file of the same size."""

WAL_FRAME_BYTES: Final = PAGE_SIZE_BYTES + 24
"""One page in the WAL plus its frame header (sqlite.org/fileformat.html §4.1)."""

Proposal = tuple[bytes, bytes]
"""(request_id, payload): one proposal of a slot's batch; payload is an encoded Record."""


@dataclass(frozen=True, slots=True)
class ReplicaOptions:
    wal_size_limit_bytes: int = 64 * 1024 * 1024
    """The bound on ``replica.sqlite3-wal``: the checkpointer copies the WAL every eighth of
    it written and starts it over (truncated to zero) from half of it; a WAL that restarts
    by itself is cut back to it too (``journal_size_limit``). Only a read transaction that
    outlasts ``checkpoint_busy_timeout_ms`` at every try lets the WAL grow past it."""
    checkpoint_busy_timeout_ms: int = 20
    """How long a forced checkpoint waits for readers to leave the WAL; the applier, waiting
    for the checkpoint, waits up to twice as long, once every half ``wal_size_limit_bytes``
    written."""
    busy_timeout_ms: int = 10_000
    """How long the applier waits for a write lock someone else holds: only a misbehaving
    writer, since the applier is the replica's only writer."""

    @property
    def wal_limit_frames(self) -> int:
        return max(8, self.wal_size_limit_bytes // WAL_FRAME_BYTES)


_NODE_LOCAL_ERRORS: Final = (
    apsw.IOError,
    apsw.FullError,
    apsw.CorruptError,
    apsw.BusyError,
    apsw.LockedError,
    apsw.NoMemError,
    apsw.CantOpenError,
    apsw.InterruptError,
    apsw.ReadOnlyError,
    apsw.PermissionsError,
    apsw.NotADBError,
    apsw.ProtocolError,
    MemoryError,
)
"""Failures of this node's disk, memory or file, not of the record: they stop the node (the
slot is applied again after a restart) instead of becoming an outcome another node, which
applied the record fine, would not have recorded."""


@dataclass(slots=True)
class _SlotState:
    """The ``paxos_meta`` fields a slot's records change, before the slot commits."""

    last_tid: int
    next_oid: int


def _connect(path: str, options: ReplicaOptions) -> apsw.Connection:
    db = apsw.Connection(path)
    db.set_busy_timeout(options.busy_timeout_ms)
    # Effective only while the file is empty; RelStorage's driver applies it first too.
    db.execute(f"PRAGMA page_size = {PAGE_SIZE_BYTES}").fetchall()
    (mode,) = db.execute("PRAGMA journal_mode = WAL").fetchall()
    assert mode == ("wal",), (path, mode)
    # NORMAL is safe against a crash of the process and may lose the last commits on power
    # loss or an OS crash. That is enough here: the durable truth is the Paxos log, fsynced
    # by a quorum before a slot is chosen, and applied_slot is written in the same SQLite
    # transaction as the rows, so a replica that lost its tail is at an earlier slot boundary
    # and replays from there. FULL would add an fsync per slot for nothing.
    db.execute("PRAGMA synchronous = NORMAL").fetchall()
    # As RelStorage's connections do: the HP tables reference "transaction", and lock OIDs
    # cascade with their request.
    db.execute("PRAGMA foreign_keys = ON").fetchall()
    db.execute(f"PRAGMA journal_size_limit = {options.wal_size_limit_bytes}").fetchall()
    return db


class Replica:
    """One node's replica. Create or open it with ``Replica.open``."""

    def __init__(
        self, db: apsw.Connection, path: str, meta: schema.Meta, options: ReplicaOptions
    ) -> None:
        self._db = db
        self._path = path
        self._meta = meta
        self._options = options
        self._closed = False
        self._locks = LockTable(db)
        self._writer = ObjectWriter(db, meta.keep_history)
        self._packer = Packer(db, meta.keep_history)
        self._gate = threading.Lock()
        """Held around each slot's write transaction, and by the checkpointer around a
        checkpoint that needs the writer to pause."""
        self._checkpointer = WalCheckpointer(
            path,
            limit_frames=options.wal_limit_frames,
            busy_timeout_ms=options.checkpoint_busy_timeout_ms,
            gate=self._gate,
        )
        # Replaces SQLite's auto-checkpoint, which would checkpoint in the applier's COMMIT.
        db.set_wal_hook(self._on_wal_commit)

    # -- opening --------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        keep_history: bool | None = None,
        options: ReplicaOptions | None = None,
    ) -> Replica:
        """Open the replica at ``path``, creating it if the file is missing or empty.

        ``keep_history`` chooses the mode of a new replica and must then be given; for an
        existing one it may be None (take the replica's mode) or must match it, else
        ``HistoryModeMismatch``. ``ReplicaFormatError`` if the file is something else.
        """
        options = options or ReplicaOptions()
        target = os.fspath(path)
        db = _connect(target, options)
        try:
            meta = cls._load_or_create(db, target, keep_history)
            replica = cls(db, target, meta, options)
        except BaseException:
            db.close()
            raise
        logger.info(
            "replica %s opened, %s, at slot %d (last tid %d)",
            target,
            schema.mode_name(meta.keep_history),
            meta.applied_slot,
            meta.last_tid,
        )
        return replica

    @staticmethod
    def damage(path: str | os.PathLike[str]) -> str | None:
        """What SQLite's quick check finds wrong with the replica file at ``path`` (its first
        complaint), or ``None`` when it passes or there is no file. Run before ``open`` by
        a starting node: a damaged replica would serve wrong answers with a right hash."""
        target = os.fspath(path)
        if not os.path.exists(target) or os.path.getsize(target) == 0:
            return None
        try:
            db = apsw.Connection(target, flags=apsw.SQLITE_OPEN_READWRITE)
        except apsw.Error as exc:
            return f"{type(exc).__name__}: {exc}"
        try:
            rows = db.execute("PRAGMA quick_check(1)").fetchall()
        except apsw.Error as exc:
            return f"{type(exc).__name__}: {exc}"
        finally:
            db.close()
        return None if rows == [("ok",)] else str(rows[0][0])

    @staticmethod
    def _load_or_create(db: apsw.Connection, path: str, keep_history: bool | None) -> schema.Meta:
        db.execute("BEGIN IMMEDIATE")
        try:
            if schema.table_names(db):
                meta = schema.read_meta(db, path)
                schema.check_mode(meta, keep_history, path)
            elif keep_history is None:
                raise ReplicaError(f"{path} holds no replica yet; creating one needs keep_history")
            else:
                meta = schema.install(db, keep_history)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return meta

    @classmethod
    def install_snapshot(
        cls,
        snapshot_path: str | os.PathLike[str],
        path: str | os.PathLike[str],
        keep_history: bool | None = None,
        options: ReplicaOptions | None = None,
    ) -> Replica:
        """Replace the replica at ``path`` (closed, or missing) with the snapshot's content,
        using SQLite's backup API, and open it; the snapshot's applied slot comes with it.

        Readers of ``path`` may stay open: they see the new content at their next read
        transaction. The content is durable on return (``sync``), as the runtime moves the
        log's truncation point to the snapshot's slot next. ``StaleSnapshot`` if the snapshot
        is behind the replica it replaces, ``HistoryModeMismatch`` if its mode is not the
        replica's or ``keep_history``.
        """
        options = options or ReplicaOptions()
        source_path = os.fspath(snapshot_path)
        target = os.fspath(path)
        source = apsw.Connection(source_path, flags=apsw.SQLITE_OPEN_READONLY)
        try:
            snapshot_meta = schema.read_meta(source, source_path)
            schema.check_mode(snapshot_meta, keep_history, source_path)
            dest = _connect(target, options)
            try:
                if schema.table_names(dest):
                    current = schema.read_meta(dest, target)
                    schema.check_mode(current, snapshot_meta.keep_history, target)
                    if snapshot_meta.applied_slot < current.applied_slot:
                        raise StaleSnapshot(
                            f"snapshot {source_path} is at slot {snapshot_meta.applied_slot},"
                            f" behind {target} at slot {current.applied_slot}"
                        )
                with dest.backup("main", source, "main") as backup:
                    backup.step(-1)
                    assert backup.done, source_path
            finally:
                dest.close()
        finally:
            source.close()
        logger.info(
            "replica %s installed from snapshot %s at slot %d",
            target,
            source_path,
            snapshot_meta.applied_slot,
        )
        replica = cls.open(target, keep_history, options)
        replica.sync()
        return replica

    # -- state ----------------------------------------------------------------------------

    @property
    def path(self) -> str:
        return self._path

    @property
    def keep_history(self) -> bool:
        return self._meta.keep_history

    @property
    def applied_slot(self) -> int:
        """The last slot applied; 0 for a new replica (slots start at 1)."""
        return self._meta.applied_slot

    @property
    def last_tid(self) -> int:
        """The tid of the last commit applied (or the later tid an aborted transaction
        chose under the database lock, burnt by its ReleaseTxn); 0 before the first. Kept in
        ``paxos_meta`` rather than read as ``max(tid)``, which HF empty commits and packs do
        not move up. The next commit's tid is after it."""
        return self._meta.last_tid

    @property
    def running_hash(self) -> bytes:
        """sha256 chain over every slot applied: ``h_slot = sha256(h_(slot-1) || slot as 8
        bytes big-endian || for each proposal: len(request_id) as 4 bytes, request_id,
        len(payload) as 8 bytes, payload)``, from 32 zero bytes. Equal slots and different
        hashes mean diverged inputs (DESIGN.md §6)."""
        return self._meta.running_hash

    @property
    def next_oid(self) -> int:
        """The first OID no node has been given yet."""
        return self._meta.next_oid

    def outcome(self, request_id: bytes) -> RecordedOutcome | None:
        """The recorded outcome of ``request_id``, as it stands now; None if never applied."""
        row = self._db.execute(
            "SELECT outcome FROM paxos_outcome WHERE request_id = ?", (request_id,)
        ).fetchone()
        if row is None:
            return None
        (data,) = row
        assert isinstance(data, bytes), data
        return decode_outcome(data)

    def logical_dump(self) -> LogicalDump:
        return logical_dump(self._db)

    # -- applying -------------------------------------------------------------------------

    def apply_slot(self, slot: int, proposals: Iterable[Proposal]) -> list[Outcome]:
        """Apply the chosen value of ``slot`` (an empty batch is a no-op slot); return one
        outcome per proposal, in order. ``slot`` must be ``applied_slot + 1``.

        One SQLite transaction: the rows, the outcomes, the new applied slot and running hash
        commit together or not at all (an exception leaves the replica at the previous slot).
        """
        assert not self._closed, self._path
        assert slot == self._meta.applied_slot + 1, (slot, self._meta.applied_slot)
        self._check_checkpointer()
        self._checkpointer.wait_if_over_limit()
        hasher = hashlib.sha256(self._meta.running_hash)
        hasher.update(slot.to_bytes(8, "big"))
        state = _SlotState(last_tid=self._meta.last_tid, next_oid=self._meta.next_oid)
        outcomes: list[Outcome] = []
        with self._gate:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for request_id, payload in proposals:
                    hasher.update(len(request_id).to_bytes(4, "big"))
                    hasher.update(request_id)
                    hasher.update(len(payload).to_bytes(8, "big"))
                    hasher.update(payload)
                    outcomes.append(self._apply_proposal(slot, request_id, payload, state))
                meta = replace(
                    self._meta,
                    applied_slot=slot,
                    last_tid=state.last_tid,
                    running_hash=hasher.digest(),
                    next_oid=state.next_oid,
                )
                schema.write_meta(self._db, meta)
                self._db.execute("COMMIT")
            except BaseException:
                if not self._db.get_autocommit():
                    self._db.execute("ROLLBACK")
                raise
        self._meta = meta
        return outcomes

    def _apply_proposal(
        self, slot: int, request_id: bytes, payload: bytes, state: _SlotState
    ) -> Outcome:
        if not request_id:
            # Nothing to record it under; the Sequencer refuses these before proposing.
            return Rejected("empty request id")
        recorded = self.outcome(request_id)
        if recorded is not None:
            return Duplicate(recorded)
        outcome = self._apply_guarded(slot, request_id, payload, state)
        self._db.execute(
            "INSERT INTO paxos_outcome (request_id, slot, outcome) VALUES (?, ?, ?)",
            (request_id, slot, encode_outcome(outcome)),
        )
        return outcome

    def _apply_guarded(
        self, slot: int, request_id: bytes, payload: bytes, state: _SlotState
    ) -> RecordedOutcome:
        """``_apply_payload`` inside a SAVEPOINT: a record the applier cannot apply (legal
        protobuf, impossible values) becomes ``Rejected`` with the error, on every node
        alike (the same record meets the same replica state everywhere), and leaves no
        trace; before, it raised at the same slot on every node, on every restart."""
        last_tid, next_oid = state.last_tid, state.next_oid
        self._db.execute("SAVEPOINT proposal")
        try:
            outcome = self._apply_payload(slot, request_id, payload, state)
        except _NODE_LOCAL_ERRORS:
            raise
        except Exception as exc:
            self._db.execute("ROLLBACK TO proposal")
            self._writer.clear()
            state.last_tid, state.next_oid = last_tid, next_oid
            reason = f"cannot apply the record: {type(exc).__name__}: {exc}"
            logger.error(
                "replica %s: slot %d, request %r: %s", self._path, slot, request_id, reason
            )
            outcome = Rejected(reason)
        self._db.execute("RELEASE proposal")
        return outcome

    def _apply_payload(
        self, slot: int, request_id: bytes, payload: bytes, state: _SlotState
    ) -> RecordedOutcome:
        try:
            record = decode_record(payload)
        except MalformedRecord as exc:
            return Rejected(str(exc))
        if record.request_id != request_id:
            return Rejected(
                f"record names request {record.request_id.hex()}, proposed as {request_id.hex()}"
            )
        body = record.body
        match body:
            case LockObjects():
                return self._lock_objects(request_id, body)
            case CommitTxn():
                return self._commit_txn(slot, body, state)
            case RestoreTxn():
                return self._restore_txn(slot, body, state)
            case ReleaseTxn():
                return self._release_txn(slot, body, state)
            case RenewLeases():
                return Renewed(self._locks.renew(body.txn_ids, body.lease_until_us))
            case ExpireLeases():
                return self._expire_leases(slot, body)
            case ExpireNodes():
                return self._expire_nodes(slot, body)
            case AllocateOids():
                return self._allocate_oids(slot, body, state)
            case Noop():
                return NoopApplied()
            case PackObjects():
                return self._packer.pack_objects(body)
            case PackTransactions():
                return self._packer.pack_transactions(body, state.last_tid)
            case _:
                assert_never(body)

    def _lock_objects(self, request_id: bytes, lock: LockObjects) -> RecordedOutcome:
        if self._locks.was_released(lock.txn_id):
            # Its proposer gave up waiting and aborted; granting it now would hold the
            # locks for nobody until the lease ends.
            return Rejected(f"txn {lock.txn_id.hex()} was released before this request")
        if self._locks.has_request(lock.txn_id):
            # A second request while holding or waiting would be hold-and-wait.
            return Rejected(f"txn {lock.txn_id.hex()} already holds or awaits locks")
        exclusive_by_oid = dict.fromkeys(lock.read_current_oids, False)
        exclusive_by_oid.update(dict.fromkeys(lock.write_oids, True))
        granted = self._locks.request(
            lock.txn_id,
            request_id,
            lock.node_id,
            lock.lease_until_us,
            exclusive_by_oid,
            database=lock.database,
        )
        if isinstance(granted, ReadConflict):
            return _read_conflict(granted)
        return Granted() if granted else Queued()

    def _commit_txn(self, slot: int, commit: CommitTxn, state: _SlotState) -> RecordedOutcome:
        refused = self._check_locks(commit.txn_id, (w.oid for w in commit.writes))
        if refused is not None:
            return refused
        if commit.tid:
            if not self._locks.holds_database(commit.txn_id):
                return Conflict(
                    f"txn {commit.txn_id.hex()} chose its tid without the database lock"
                )
            if commit.tid <= state.last_tid:
                # Cannot happen while the database lock is held: nothing else commits.
                return Rejected(f"commit tid {commit.tid} is not after last tid {state.last_tid}")
            if commit.tid >= MAX_OID:
                return Rejected(f"commit tid {commit.tid} leaves no tid for the commits after it")
        stale = self._writer.stage(commit)
        if stale:
            self._writer.clear()
            return Conflict("prev_tid is not the current tid", tuple(stale))
        tid = commit.tid or next_tid(state.last_tid, commit.timestamp_us)
        assert state.last_tid < tid <= MAX_OID, (state.last_tid, tid)
        self._writer.write(commit, tid)
        self._writer.clear()
        state.last_tid = tid
        return Committed(tid, self._release(slot, commit.txn_id, "committed"))

    def _restore_txn(self, slot: int, restore: RestoreTxn, state: _SlotState) -> RecordedOutcome:
        refused = self._check_locks(restore.txn_id, (o.oid for o in restore.objects))
        if refused is not None:
            return refused
        refusal = self._refuse_restore(restore, state.last_tid)
        if refusal is not None:
            return Rejected(refusal)
        self._writer.restore(restore)
        state.last_tid = max(state.last_tid, restore.tid, *(o.tid for o in restore.objects))
        return Committed(restore.tid, self._release(slot, restore.txn_id, "committed"))

    def _check_locks(self, txn_id: bytes, oids: Iterable[int]) -> Conflict | None:
        """A Conflict if the txn does not hold all of ``oids`` exclusively: its locks expired
        (or it never took them), so someone else may have written them since vote."""
        unlocked = self._locks.unlocked(txn_id, oids)
        if not unlocked:
            return None
        return Conflict(f"txn {txn_id.hex()} holds no exclusive lock on oids {unlocked[:20]}")

    def _release_txn(self, slot: int, release: ReleaseTxn, state: _SlotState) -> RecordedOutcome:
        if not self._locks.has_request(release.txn_id) and release.lease_until_us:
            self._locks.remember_released(release.txn_id, release.lease_until_us)
        if 0 < release.tid < MAX_OID and self._locks.holds_database(release.txn_id):
            # Burn the tid the txn chose: files written under it (a shared blob directory)
            # are removed only after this release, so a later commit must not take it. A
            # txn that lost the lock (its lease expired) burns nothing: another may hold
            # the lock now and have chosen that very tid. Nor does the largest tid, which
            # would leave none for the commits after it.
            state.last_tid = max(state.last_tid, release.tid)
        return Released(self._release(slot, release.txn_id, "released"))

    def _refuse_restore(self, restore: RestoreTxn, last_tid: int) -> str | None:
        """Why ``restore`` may not be applied after ``last_tid``, or None.

        Pollers read changes by tid > the last tid they saw: a change under an earlier tid
        would never reach a reader that holds the object. A history-preserving restore is one
        source transaction, copied in tid order, so its tid must be after ``last_tid``. A
        history-free one is RelStorage's copier walking the current objects in OID order,
        each under its own tid, so tids go back from one batch to the next; an object that
        does not exist yet is no reader's, so only existing objects need a later tid.
        The largest tid is refused: it would leave none for the commits after it.
        """
        highest = max(restore.tid, *(o.tid for o in restore.objects))
        if highest >= MAX_OID:
            return f"restore tid {highest} leaves no tid for the commits after it"
        if self._meta.keep_history:
            others = sorted(o.oid for o in restore.objects if o.tid != restore.tid)
            if others:
                return (
                    f"oids {others[:20]} not restored under their transaction's tid {restore.tid}"
                )
            if restore.tid <= last_tid:
                return f"restore tid {restore.tid} is not after last tid {last_tid}"
            return None
        early = self._writer.existing_oids(o.oid for o in restore.objects if o.tid <= last_tid)
        if early:
            return f"restore of existing oids {early[:20]} under tids not after last tid {last_tid}"
        return None

    def _release(self, slot: int, txn_id: bytes, why: str) -> tuple[bytes, ...]:
        """Drop the txn's lock request; grant what that unblocks; return the granted ids."""
        dropped = self._locks.drop(txn_id)
        if dropped is None:
            return ()
        if not dropped.was_granted:
            self._rewrite_outcome(dropped.request_id, slot, Rejected(f"txn {why} while waiting"))
        return self._grant_waiting(slot)

    def _expire_leases(self, slot: int, expire: ExpireLeases) -> RecordedOutcome:
        return self._expired(slot, self._locks.drop_expired(expire.now_us), "lease expired")

    def _expire_nodes(self, slot: int, expire: ExpireNodes) -> RecordedOutcome:
        nodes = ", ".join(map(str, expire.node_ids))
        return self._expired(
            slot, self._locks.drop_nodes(expire.node_ids), f"node {nodes} stopped answering"
        )

    def _expired(self, slot: int, dropped: list[Dropped], why: str) -> RecordedOutcome:
        for request in dropped:
            if not request.was_granted:
                self._rewrite_outcome(request.request_id, slot, Rejected(f"{why} while waiting"))
        granted = self._grant_waiting(slot) if dropped else ()
        return Expired(len(dropped), granted)

    def _grant_waiting(self, slot: int) -> tuple[bytes, ...]:
        grants = self._locks.grant_waiting()
        for request_id in grants.granted:
            self._rewrite_outcome(request_id, slot, Granted())
        for conflict in grants.read_conflicts:
            self._rewrite_outcome(conflict.request_id, slot, _read_conflict(conflict))
        return grants.granted

    def _rewrite_outcome(self, request_id: bytes, slot: int, outcome: RecordedOutcome) -> None:
        self._db.execute(
            "UPDATE paxos_outcome SET slot = ?, outcome = ? WHERE request_id = ?",
            (slot, encode_outcome(outcome), request_id),
        )
        assert self._db.changes() == 1, request_id

    def _allocate_oids(
        self, slot: int, allocate: AllocateOids, state: _SlotState
    ) -> RecordedOutcome:
        start = max(state.next_oid, allocate.min_oid + 1)
        end = start + allocate.count
        if end > MAX_OID:  # next_oid must stay storable, so MAX_OID itself is never given
            return Rejected(f"no {allocate.count} OIDs left above {start - 1}")
        state.next_oid = end
        self._db.execute(
            "INSERT INTO paxos_oid_block (node_id, start_oid, count, slot) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (node_id) DO UPDATE SET start_oid = excluded.start_oid,"
            " count = excluded.count, slot = excluded.slot",
            (allocate.node_id, start, allocate.count, slot),
        )
        return Allocated(start, allocate.count)

    # -- WAL ------------------------------------------------------------------------------

    def _on_wal_commit(self, db: apsw.Connection, name: str, frames: int) -> int:
        """SQLite's WAL hook: ``frames`` is the WAL's length after this commit, which is
        shorter than before when the WAL started over."""
        self._checkpointer.committed(frames)
        return apsw.SQLITE_OK

    def _check_checkpointer(self) -> None:
        """A failed checkpoint (an I/O error, a failed fsync) stops the node, as a failed
        write of the applier's own would: it is never only logged (CONVENTIONS.md rule 5)."""
        failure = self._checkpointer.failure
        if failure is not None:
            raise ReplicaError(f"{self._path}: WAL checkpoint failed: {failure}") from failure

    # -- snapshots and closing ------------------------------------------------------------

    def sync(self) -> None:
        """Make every slot applied so far survive a power cut, not only a process crash,
        whatever readers do, without waiting for any of them.

        The runtime calls it before truncating the Paxos log past ``applied_slot`` (from then
        on the replica is the only copy of those slots), and ``install_snapshot`` before it
        returns. A checkpoint does not do it: with ``synchronous=NORMAL`` SQLite syncs the WAL
        only before a checkpoint copies frames, and the database file only after a complete
        one (sqlite.org/pragma.html#pragma_synchronous), so one that a reader keeps from
        copying anything syncs nothing.

        One fsync of the WAL file does it. Each COMMIT wrote its frames, commit frame last,
        into the WAL before returning; once they are on disk, the recovery that runs when the
        database is next opened replays every frame up to the last commit frame whose
        checksums hold (sqlite.org/wal.html "Recovery", sqlite.org/fileformat.html §4.3).
        Commits older than the WAL's last restart are no longer in it, but the WAL restarts
        only after a complete checkpoint (sqlite.org/wal.html), which synced them into the
        database file first; pages a later checkpoint copied without a sync are still in the
        WAL, which recovery reads before the database file. The database file itself is
        neither fsynced nor even opened here: closing a second descriptor of it would drop
        this process's POSIX locks on it (sqlite.org/howtocorrupt.html §2.2), while the WAL
        carries none (its locks live in the ``-shm`` file).
        """
        assert not self._closed, self._path
        fd = os.open(f"{self._path}-wal", os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def snapshot_to(self, path: str | os.PathLike[str]) -> int:
        """Copy the replica into a new file at ``path`` with SQLite's backup API and return
        the slot it holds. The copy is a plain (rollback-journal) SQLite file, complete by
        itself; ``Replica.open`` or ``Replica.install_snapshot`` take it as it is."""
        assert not self._closed, self._path
        return _backup_to_file(self._db, os.fspath(path))

    @staticmethod
    def snapshot_file(replica_path: str | os.PathLike[str], path: str | os.PathLike[str]) -> int:
        """``snapshot_to`` through a read-only connection of its own, for any thread while
        the applier goes on: the backup copies one read transaction's consistent view."""
        source = apsw.Connection(os.fspath(replica_path), flags=apsw.SQLITE_OPEN_READONLY)
        try:
            return _backup_to_file(source, os.fspath(path))
        finally:
            source.close()

    def close(self) -> None:
        """The checkpointer first: the applier's connection is then the node's last one, and
        closing it checkpoints the WAL into the database (sqlite.org/wal.html)."""
        if not self._closed:
            self._closed = True
            self._checkpointer.close()
            self._db.close()

    def __enter__(self) -> Replica:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _read_conflict(conflict: ReadConflict) -> Conflict:
    return Conflict(
        f"readCurrent oids {list(conflict.oids[:20])} are locked for writing by another txn"
    )


def _backup_to_file(source: apsw.Connection, target: str) -> int:
    if os.path.exists(target):
        raise FileExistsError(target)
    dest = apsw.Connection(target)
    try:
        with dest.backup("main", source, "main") as backup:
            backup.step(-1)
            assert backup.done, target
        dest.execute("PRAGMA journal_mode = DELETE").fetchall()
        slot = schema.read_meta(dest, target).applied_slot
    finally:
        dest.close()
    logger.info("replica snapshot %s at slot %d", target, slot)
    return slot
