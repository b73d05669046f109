"""The write side of DESIGN.md §4: vote, finish and abort as proposals.

Owns: the records a ZODB transaction proposes (LockObjects at vote, CommitTxn at finish,
ReleaseTxn at abort), their request ids, retries and deadlines, and the lock lease.

The contract with the applier (relstorage_paxos.replica):
- ``lock``: LockObjects for every OID in the store connection's ``temp_store`` (exclusive) and
  every readCurrent OID (shared). The node answers only once the request is granted and
  applied on this node; so every commit that touched those OIDs before is in the local
  replica and, while the locks are held, no other can be: the replica is authoritative for
  them, and RelStorage's stock conflict detection and resolution run against it.
- ``commit``: CommitTxn from ``temp_store``/``temp_blob_chunk`` and the transaction's
  user/description/extension; answered once applied on this node (read-your-writes), with
  the tid the applier assigned. The applier re-checks the locks and every ``prev_tid``; with
  the locks held since vote neither check can fail, because no one else could write those
  OIDs and vote checked (or resolved) every ``prev_tid`` against the authoritative replica.
  There are two ways to lose the locks: their lease (``lock-lease`` plus the commit lock
  timeout), which a live process renews (leases.py), and the leader's ExpireNodes when it
  has not heard from this process's node for a node timeout (a dead or cut-off node's locks
  must not block the others). Only then is the transaction refused at finish with a
  ConflictError rather than overwrite someone else's work.
- ``restore``: RestoreTxn, the same for a restored transaction (copyTransactionsFrom,
  zodbconvert): its own tid and each object's (a history-free copy batches objects from
  many source transactions), no ``prev_tid`` (the applier checks the locks, and that the
  tids follow every tid applied so far where readers could otherwise miss a change).
- ``lock_database``: LockObjects for the whole database, for the paths that must know their
  tid before vote (history-preserving undo and deleteObject, as RelStorage's
  ``lock_database_and_choose_next_tid``; and a transaction moving blobs into a shared blob
  directory at vote). Once it is granted and applied here nothing else can commit, so the
  tid chosen from the local replica's last tid stays the next one; the transaction's vote
  takes no object locks, and its CommitTxn carries that tid. A transaction that holds object
  locks already gives them up first (a txn has one lock request at most, so none holds
  while it waits), and must then check again what they protected.
- ``release``: ReleaseTxn, for an abort after a lock request (granted, waiting or unknown);
  a database lock holder's release burns the tid it chose, under which it may have written
  blob files that RelStorage removes only after the release.
- ``check_size``: a transaction whose objects and blobs alone are over the node's
  ``max-record-bytes`` is refused at vote (``RecordTooLargeError``), before its locks and
  after each blob upload, so that ZODB aborts it cleanly; the exact record is checked again
  at finish by the Sequencer client (nothing is proposed; the abort that follows releases
  the locks).

Request ids are ``txn_id`` + a suffix per record, so a retry after ``OutcomeUnknownError``
(a timeout or a leader change) is answered with the outcome already recorded, never applied
twice.

Must not import: ``core``, ``log``, ``runtime``.
Called by: the application thread running the ZODB transaction.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable
from typing import Final

from relstorage.adapters.interfaces import (  # type: ignore[import-untyped]
    UnableToLockRowsToModifyError,
    UnableToLockRowsToReadCurrentError,
)
from ZODB.POSException import ConflictError, StorageError

from relstorage_paxos.adapter import dbapi
from relstorage_paxos.adapter.leases import LeaseKeeper, now_us
from relstorage_paxos.adapter.link import NodeLink
from relstorage_paxos.errors import (
    NodeUnavailableError,
    OutcomeUnknownError,
    PaxosError,
    RecordTooLargeError,
)
from relstorage_paxos.replica import (
    BlobWrite,
    Committed,
    CommitTxn,
    Conflict,
    Granted,
    LockObjects,
    ObjectWrite,
    Record,
    RecordBody,
    RecordedOutcome,
    ReleaseTxn,
    RestoredObject,
    RestoreTxn,
)
from relstorage_paxos.replica.tids import next_tid

logger = logging.getLogger(__name__)

RELEASE_TIMEOUT_S: Final = 5.0
"""How long an abort tries to release its locks; past it the lease frees them."""

RETRY_PAUSE_S: Final = 0.05


def _as_bytes(value: bytes | str) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


class Writer:
    """Proposes one adapter's transactions to its node."""

    def __init__(
        self, link: NodeLink, commit_lock_timeout_s: Callable[[], float], lease_s: float
    ) -> None:
        self._link = link
        self._commit_lock_timeout_s = commit_lock_timeout_s
        self._lease_s = lease_s
        self._leases = LeaseKeeper(link, lambda: self._timeout_s + lease_s)

    @property
    def _timeout_s(self) -> float:
        """``commit-lock-timeout`` as it is now: RelStorage (and its tests, and operators)
        change ``locker.commit_lock_timeout`` after the adapter is made."""
        return self._commit_lock_timeout_s()

    def lock(self, cursor: dbapi.Cursor, read_current_oids: Iterable[int]) -> None:
        """Vote: lock what the transaction writes and read-current-checks; raise
        ``UnableToLockRowsToModifyError`` (a ConflictError) if not granted in time, and
        ``UnableToLockRowsToReadCurrentError`` (a ReadConflictError) at once if another txn
        holds one of the read-current OIDs for writing, as RelStorage on PostgreSQL does."""
        conn = cursor.connection
        if conn.paxos_database_tid is not None:
            return  # the database lock covers every object
        if conn.paxos_txn_id is not None:  # a path that ended without releasing
            self.release(conn)
        # End any transaction (a restore's TEMP writes leave one open): the checks after the
        # grant must read the replica as it is then, not an older snapshot.
        conn.return_to_repeatable_read()
        cursor.execute("SELECT zoid FROM temp_store ORDER BY zoid")
        write_oids = tuple(int(row[0]) for row in cursor.fetchall())
        read_oids = tuple(sorted(set(read_current_oids) - set(write_oids)))
        if not write_oids and not read_oids:
            return
        self.check_size(cursor)
        self._take_locks(
            cursor,
            write_oids,
            read_oids,
            f"object locks ({len(write_oids)} written, {len(read_oids)} read-current oids)",
        )

    def lock_database(self, cursor: dbapi.Cursor) -> int:
        """Take the database lock (once per transaction) and return the tid this
        transaction will commit under; raise ``UnableToLockRowsToModifyError`` if not
        granted within the commit lock timeout. Object locks the transaction holds are
        released first: what they protected may change before the grant."""
        conn = cursor.connection
        if conn.paxos_database_tid is not None:
            return conn.paxos_database_tid
        if conn.paxos_txn_id is not None:  # object locks, or a path that ended without releasing
            self._release_request(conn)
        self._take_locks(cursor, (), (), "the database lock")
        # A new read transaction, so the last tid read is the one as of the grant or later.
        conn.return_to_repeatable_read()
        cursor.execute("SELECT last_tid FROM paxos_meta")
        row = cursor.fetchone()
        assert row is not None
        tid = next_tid(int(row[0]), now_us())
        conn.paxos_database_tid = tid
        return tid

    def _take_locks(
        self,
        cursor: dbapi.Cursor,
        write_oids: tuple[int, ...],
        read_oids: tuple[int, ...],
        what: str,
    ) -> None:
        """Propose LockObjects (the database lock if no OIDs are named) and wait until it
        is granted and applied here."""
        conn = cursor.connection
        txn_id = os.urandom(16)
        lease_until_us = self._leases.lease_from_now()
        conn.paxos_txn_id = txn_id  # from here on, an abort must release
        conn.paxos_lease_until_us = lease_until_us
        database = not write_oids and not read_oids
        body = LockObjects(
            txn_id, self._link.node_id, write_oids, read_oids, lease_until_us, database
        )
        try:
            slot, outcome = self._propose(txn_id + b"/lock", body, self._timeout_s)
        except (OutcomeUnknownError, NodeUnavailableError) as exc:
            raise UnableToLockRowsToModifyError(
                f"{what} not granted within commit-lock-timeout {self._timeout_s} s: {exc}"
            ) from exc
        if isinstance(outcome, Conflict):
            raise UnableToLockRowsToReadCurrentError(f"{what} refused: {outcome.reason}")
        if not isinstance(outcome, Granted):
            raise UnableToLockRowsToModifyError(f"{what} refused: {outcome}")
        self._leases.hold(txn_id, lease_until_us)
        self._ensure_applied(cursor, slot)

    def check_size(self, cursor: dbapi.Cursor) -> None:
        """Raise ``RecordTooLargeError`` if the states and blobs the transaction has stored so
        far are over ``max-record-bytes`` already: its CommitTxn, which holds them and a
        little more, would be refused at finish."""
        cursor.execute("SELECT COALESCE(SUM(LENGTH(state)), 0) FROM temp_store")
        (state_bytes,) = cursor.fetchone()
        cursor.execute("SELECT COALESCE(SUM(LENGTH(chunk)), 0) FROM temp_blob_chunk")
        (blob_bytes,) = cursor.fetchone()
        size = int(state_bytes) + int(blob_bytes)
        limit = self._link.settings.max_record_bytes
        if size > limit:
            raise RecordTooLargeError.of("a transaction's objects and blobs", size, limit)

    def _ensure_applied(self, cursor: dbapi.Cursor, slot: int) -> None:
        """Make sure this process reads a replica that has applied ``slot`` (the node
        answers only after applying, so this is a check that costs one local read)."""
        cursor.execute("SELECT applied_slot FROM paxos_meta")
        row = cursor.fetchone()
        assert row is not None
        if int(row[0]) < slot:
            applied = self._link.client.wait_applied(slot, self._timeout_s)
            if applied < slot:
                raise UnableToLockRowsToModifyError(
                    f"node {self._link.node_id} has not applied slot {slot} (at {applied})"
                )

    def commit(
        self, cursor: dbapi.Cursor, user: bytes | str, description: bytes | str, extension: bytes
    ) -> int:
        """Finish: propose the transaction and return its tid once applied here."""
        conn = cursor.connection
        txn_id = conn.paxos_txn_id or os.urandom(16)
        cursor.execute("SELECT zoid, prev_tid, state FROM temp_store ORDER BY zoid")
        writes = tuple(
            ObjectWrite(int(oid), int(prev_tid), None if state is None else bytes(state))
            for oid, prev_tid, state in cursor.fetchall()
        )
        body = CommitTxn(
            txn_id=txn_id,
            timestamp_us=now_us(),
            user=_as_bytes(user),
            description=_as_bytes(description),
            extension=extension,
            writes=writes,
            blobs=self._temp_blobs(cursor),
            tid=conn.paxos_database_tid or 0,
        )
        return self._finish(conn, txn_id, body).tid

    @staticmethod
    def _temp_blobs(cursor: dbapi.Cursor) -> tuple[BlobWrite, ...]:
        cursor.execute("SELECT zoid, chunk FROM temp_blob_chunk ORDER BY zoid")
        return tuple(BlobWrite(int(oid), bytes(chunk or b"")) for oid, chunk in cursor.fetchall())

    def _finish(
        self, conn: dbapi.Connection, txn_id: bytes, body: CommitTxn | RestoreTxn
    ) -> Committed:
        """Propose the finishing record; it must not fail, so keep retrying (same request
        id) as long as the locks last."""
        patience_s = self._timeout_s + self._lease_s
        try:
            _, outcome = self._propose(txn_id + b"/commit", body, patience_s)
            if isinstance(outcome, Committed):
                self._leases.drop(txn_id)
        except (OutcomeUnknownError, NodeUnavailableError) as exc:
            # Release now rather than wait for the abort that follows: a release applied
            # first also makes the commit, should it arrive later, find no locks and write
            # nothing.
            self.release(conn)
            raise StorageError(
                f"commit of txn {txn_id.hex()} not confirmed by node {self._link.node_id}: "
                f"{exc}; it may still be applied"
            ) from exc
        if not isinstance(outcome, Committed):
            self.release(conn)
            if isinstance(outcome, Conflict):
                raise ConflictError(f"commit refused at finish: {outcome}")  # type: ignore[no-untyped-call]
            raise StorageError(f"commit of txn {txn_id.hex()} refused: {outcome}")
        conn.paxos_txn_id = None  # the record released the locks
        self._forget_transaction(conn)
        return outcome

    def restore(
        self,
        cursor: dbapi.Cursor,
        tid: int,
        user: bytes | str,
        description: bytes | str,
        extension: bytes,
    ) -> int:
        """Finish of a restore: propose RestoreTxn with its own ``tid``; return it once
        applied here. The states come from ``temp_store`` (PaxosObjectMover.restore)."""
        conn = cursor.connection
        assert conn.paxos_restore is not None and conn.paxos_restore[0] == tid, (
            conn.paxos_restore,
            tid,
        )
        packed, object_tids = conn.paxos_restore.packed, conn.paxos_restore.object_tids
        txn_id = conn.paxos_txn_id or os.urandom(16)
        cursor.execute("SELECT zoid, state FROM temp_store ORDER BY zoid")
        objects = tuple(
            RestoredObject(
                int(oid), object_tids.get(int(oid), tid), None if state is None else bytes(state)
            )
            for oid, state in cursor.fetchall()
        )
        body = RestoreTxn(
            txn_id=txn_id,
            tid=tid,
            user=_as_bytes(user),
            description=_as_bytes(description),
            extension=extension,
            packed=packed,
            objects=objects,
            blobs=self._temp_blobs(cursor),
        )
        outcome = self._finish(conn, txn_id, body)
        assert outcome.tid == tid, (outcome, tid)
        return tid

    def release(self, conn: dbapi.Connection) -> None:
        """Abort: drop the transaction's locks or its waiting request, if it made one."""
        self._release_request(conn)
        self._forget_transaction(conn)

    @staticmethod
    def _forget_transaction(conn: dbapi.Connection) -> None:
        conn.paxos_restore = None
        conn.paxos_database_tid = None
        conn.paxos_prepared = None
        conn.paxos_read_current = {}

    def _release_request(self, conn: dbapi.Connection) -> None:
        """Propose ReleaseTxn for the transaction's lock request, if it made one."""
        txn_id = conn.paxos_txn_id
        if txn_id is None:
            return
        conn.paxos_txn_id = None
        self._leases.drop(txn_id)
        release = ReleaseTxn(txn_id, conn.paxos_lease_until_us, conn.paxos_database_tid or 0)
        try:
            # Not retried while the node is unreachable: an abort must not hang for a dead
            # node, whose locks the leader releases through ExpireNodes anyway.
            propose_with_retries(
                self._link, txn_id + b"/release", release, RELEASE_TIMEOUT_S, unreachable=False
            )
        except NodeUnavailableError as exc:
            logger.warning(
                "could not release the locks of txn %s: node %d is unreachable (%s); the"
                " leader releases a silent node's locks, the lease those of a live one",
                txn_id.hex(),
                self._link.node_id,
                exc,
            )
        except PaxosError as exc:
            logger.warning(
                "could not release the locks of txn %s at node %d (%s); its lease frees them",
                txn_id.hex(),
                self._link.node_id,
                exc,
            )

    def _propose(
        self, request_id: bytes, body: RecordBody, timeout_s: float
    ) -> tuple[int, RecordedOutcome]:
        return propose_with_retries(self._link, request_id, body, timeout_s)


def propose_with_retries(
    link: NodeLink,
    request_id: bytes,
    body: RecordBody,
    timeout_s: float,
    *,
    unreachable: bool = True,
) -> tuple[int, RecordedOutcome]:
    """Propose until answered or ``timeout_s`` has passed, re-sending with the same request
    id after an unknown outcome or, if ``unreachable``, an unreachable node (the applier
    answers a repeated request id with the outcome it recorded, so nothing is applied
    twice)."""
    record = Record(request_id, body)
    deadline = time.monotonic() + timeout_s
    while True:
        remaining = deadline - time.monotonic()
        try:
            return link.propose(record, max(0.001, remaining))
        except (OutcomeUnknownError, NodeUnavailableError) as exc:
            if not unreachable and isinstance(exc, NodeUnavailableError):
                raise
            if deadline - time.monotonic() <= RETRY_PAUSE_S:
                raise
            logger.info("retrying %r at node %d: %s", request_id, link.node_id, exc)
            time.sleep(RETRY_PAUSE_S)
