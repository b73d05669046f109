"""The RelStorage components the Paxos adapter replaces (one per ``IRelStorageAdapter``
attribute that must not write the replica or must speak to the node).

Owns: read-only connections to ``replica.sqlite3``; the locker (object locks are the log's,
taken by ``PaxosAdapter.lock_objects_and_detect_conflicts``; releasing them is an abort's
ReleaseTxn); OIDs served by the node; the poller's consistency barrier; a schema installer
that verifies what the node created and refuses to change it; undo and deleteObject staged
in the TEMP tables; pack as log records (pack.py); refusals for what is not replicated
(zap_all). Everything else is stock RelStorage SQLite, running its own SQL on the replica.
Must not import: ``core``, ``log``, ``runtime``.
Called by: RelStorage, on application threads.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Final

from relstorage.adapters.dbiter import (  # type: ignore[import-untyped]
    HistoryPreservingDatabaseIterator,
)
from relstorage.adapters.interfaces import IOIDAllocator  # type: ignore[import-untyped]
from relstorage.adapters.packundo import (  # type: ignore[import-untyped]
    HistoryFreePackUndo,
    HistoryPreservingPackUndo,
)
from relstorage.adapters.poller import Poller  # type: ignore[import-untyped]
from relstorage.adapters.sqlite.connmanager import (  # type: ignore[import-untyped]
    Sqlite3ConnectionManager,
)
from relstorage.adapters.sqlite.locker import Sqlite3Locker  # type: ignore[import-untyped]
from relstorage.adapters.sqlite.mover import Sqlite3ObjectMover  # type: ignore[import-untyped]
from relstorage.adapters.sqlite.schema import (  # type: ignore[import-untyped]
    Sqlite3SchemaInstaller,
)
from relstorage.adapters.sqlite.stats import Sqlite3Stats  # type: ignore[import-untyped]
from relstorage.adapters.sqlite.txncontrol import (  # type: ignore[import-untyped]
    Sqlite3TransactionControl,
)
from ZODB.POSException import UndoError
from ZODB.utils import u64
from zope.interface import implementer

from relstorage_paxos.adapter import dbapi
from relstorage_paxos.adapter.link import OIDS_PER_REQUEST, NodeLink
from relstorage_paxos.adapter.pack import PaxosPackMixin
from relstorage_paxos.adapter.writes import Writer
from relstorage_paxos.errors import NotReplicatedError, PaxosTransientError, ReadBarrierError
from relstorage_paxos.replica import Allocated, AllocateOids, Record

LEASE_APPLY_WAIT_S: Final = 0.2
"""How long a poll under a read lease waits for the node to apply the lease's floor before it
asks the node instead (the floor is normally being applied as the poll arrives)."""
LEASE_APPLY_POLL_S: Final = 0.0002

ZAP_REFUSED = (
    "zap_all would clear one replica only; a cluster's data is cleared by creating its"
    " nodes anew (relstorage-paxos init)"
)


class PaxosConnectionManager(Sqlite3ConnectionManager):  # type: ignore[misc]
    """Stock SQLite connection handling on ``replica.sqlite3``, whose connections our
    driver opens read-only (store connections write only their TEMP tables)."""

    def open_for_pre_pack(self) -> tuple[Any, Any]:
        raise NotReplicatedError(
            "a pre-pack connection would write one replica only; pack plans on a load"
            " connection and proposes its changes (adapter/pack.py)"
        )


class PaxosLocker(Sqlite3Locker):  # type: ignore[misc]
    """The stock SQLite locker minus its database-wide write lock: at vote the adapter has
    already taken replicated object locks; ending the transaction releases them."""

    def __init__(
        self, options: Any, driver: Any, batcher_factory: Any, link: NodeLink, lease_s: float
    ) -> None:
        super().__init__(options, driver, batcher_factory=batcher_factory)
        self.writer = Writer(link, self._current_commit_lock_timeout, lease_s)

    def _current_commit_lock_timeout(self) -> float:
        timeout_s: float = self.commit_lock_timeout
        return timeout_s

    def _lock_rows_being_modified(self, cursor: dbapi.Cursor) -> None:
        """Held already: the LockObjects record was granted before this is called."""

    def hold_commit_lock(
        self, cursor: dbapi.Cursor, ensure_current: Any = False, nowait: bool = False
    ) -> bool:
        """A restore (``ensure_current`` = its given tid) locks its objects at vote like
        any commit, and the applier checks its tid then. Holding the lock with nothing to
        ensure (False: pack) guards nothing here: a cluster's writers lock objects, not the
        database, so it is a no-op. Choosing a tid before vote under the lock (True) is what
        ``PaxosAdapter.lock_database_and_choose_next_tid`` does with the replicated database
        lock instead (HP undo and deleteObject), so nothing should get here with it."""
        if ensure_current is False or isinstance(ensure_current, tuple):
            return True
        raise NotReplicatedError(
            "choosing a tid before vote goes through lock_database_and_choose_next_tid"
        )

    def release_commit_lock(self, cursor: dbapi.Cursor) -> None:
        """Called at the end of every transaction, committed or aborted; after a commit
        there is nothing left to release."""
        self.writer.release(cursor.connection)


class PaxosTransactionControl(Sqlite3TransactionControl):  # type: ignore[misc]
    """Stock SQLite transaction control, plus the finish of a transaction prepared at vote
    (blobs in a shared blob directory: ``PaxosAdapter._prepare``)."""

    def __init__(self, writer: Writer, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._writer = writer

    def commit_phase2(self, store_connection: Any, txn: Any, load_connection: Any) -> None:
        """End a commit: ``PaxosAdapter.lock_database_and_move`` calls it once its record is
        applied, RelStorage's finish for a transaction prepared at vote (``txn`` is then the
        ``Prepared`` marker), whose CommitTxn this proposes under the tid chosen at vote. The
        blobs are in the shared directory already, so the record carries none."""
        if isinstance(txn, dbapi.Prepared):
            cursor = store_connection.cursor
            assert txn is cursor.connection.paxos_prepared, (txn, cursor.connection.paxos_prepared)
            tid = self._writer.commit(cursor, txn.user, txn.description, txn.extension)
            assert tid == txn.tid, (tid, txn.tid)
        super().commit_phase2(store_connection, txn, load_connection)

    def add_transaction(
        self,
        cursor: dbapi.Cursor,
        tid: int,
        username: bytes,
        description: bytes,
        extension: bytes,
        packed: bool = False,
    ) -> None:
        """Only a restore gets here (see PaxosLocker.hold_commit_lock): remember its tid for
        finish, where the applier writes the transaction row from the RestoreTxn record."""
        cursor.connection.paxos_restore = dbapi.Restoring(tid, packed, {})


class PaxosObjectMover(Sqlite3ObjectMover):  # type: ignore[misc]
    """The stock SQLite mover, except that restores go to the TEMP tables instead of the
    replica (finish sends them to the log in a RestoreTxn), and that a blob upload that takes
    the transaction over ``max-record-bytes`` fails the vote (``Writer.check_size``)."""

    def __init__(self, driver: Any, options: Any, writer: Writer) -> None:
        super().__init__(driver, options=options)
        self.writer = writer

    def restore(self, cursor: dbapi.Cursor, batcher: Any, oid: int, tid: int, data: Any) -> None:
        """``tid`` is the object's own (in a history-free copy, not the transaction's):
        Writer.restore finds it in the connection's ``paxos_restore``."""
        restoring = cursor.connection.paxos_restore
        assert restoring is not None, "restore() outside a tpc_begin with a tid"
        restoring.object_tids[oid] = tid
        # temp_store.prev_tid means nothing to a restore; a NULL state is "no object".
        cursor.execute(
            "INSERT OR REPLACE INTO temp_store (zoid, prev_tid, md5, state) VALUES (?, 0, NULL, ?)",
            (oid, None if data is None else self.driver.Binary(data)),
        )

    def upload_blob(self, cursor: dbapi.Cursor, oid: int, tid: int | None, filename: str) -> None:
        super().upload_blob(cursor, oid, None, filename)
        self.writer.check_size(cursor)

    def update_current(self, cursor: dbapi.Cursor, tid: int) -> None:
        """Undo calls it to move current pointers at once; the applier does that when the
        CommitTxn is applied, and ``verify_undoable`` reads staged states as current."""


@implementer(IOIDAllocator)
class PaxosOIDAllocator:
    """OIDs from blocks the node reserves in the log (AllocateOids), shared by every
    adapter of the process through the link. RelStorage's ``OIDs`` pops from the end of the
    lists we return, so they run from the largest OID down. ``reset_oid`` is refused: OIDs
    handed out by a cluster are never handed out again."""

    def __init__(self, link: NodeLink, timeout_s: float) -> None:
        self._link = link
        self._timeout_s = timeout_s
        self._floor = 0
        """The highest ``set_min_oid`` so far: the node may still hold a block it reserved
        before, partly at or below it, which this process must then not hand out."""
        self._reserved: list[int] = []
        """OIDs reserved by ``set_min_oid``'s own record, handed out first."""

    def new_instance(self) -> PaxosOIDAllocator:
        return self

    def close(self) -> None:
        """Nothing to close: the link is the adapter's."""

    release = close

    def new_oids_no_cursor(self) -> list[int]:
        return self.new_oids()

    def new_oids(self, cursor: dbapi.Cursor | None = None) -> list[int]:
        if self._reserved:
            oids, self._reserved = self._reserved, []
            return oids
        while True:  # a block below the floor runs out; the next one is above it
            oids = [oid for oid in self._link.new_oids() if oid > self._floor]
            if oids:
                return oids

    def set_min_oid(self, cursor: dbapi.Cursor, oid_int: int) -> None:
        """No later allocation may return ``oid_int`` or below. OIDs the cluster handed out
        are below its ``next_oid`` already, so only OIDs from elsewhere (restores) cost a
        record: AllocateOids with ``min_oid`` moves ``next_oid`` past them."""
        self._floor = max(self._floor, oid_int)
        cursor.execute("SELECT next_oid FROM paxos_meta")
        row = cursor.fetchone()
        assert row is not None
        if oid_int < int(row[0]):
            return
        request_id = b"min-oid-" + oid_int.to_bytes(8, "big") + self._link.node_id.to_bytes(4)
        record = Record(
            request_id, AllocateOids(self._link.node_id, OIDS_PER_REQUEST, min_oid=oid_int)
        )
        _, outcome = self._link.propose(record, self._timeout_s)
        assert isinstance(outcome, Allocated), outcome
        self._reserved = list(range(outcome.start + outcome.count - 1, outcome.start - 1, -1))

    def reset_oid(self, cursor: dbapi.Cursor | None = None) -> None:
        raise NotReplicatedError(ZAP_REFUSED)


class PaxosPoller(Poller):  # type: ignore[misc]
    """RelStorage's poller behind the consistency barrier of DESIGN.md §5: ZODB polls at
    the start of every transaction, on a load connection whose snapshot is fixed by the
    poll's first SELECT, so waiting here makes the whole transaction see what the barrier
    promised.

    Under ``linearizable``, while the node holds a read lease, the barrier costs no call:
    the poll reads the lease board, then checks that its own snapshot (taken after that)
    has applied the board's floor, waiting a little for the node's applier if not; only
    without a lease does it make a ReadIndex round through the node.

    A barrier that fails raises ``ReadBarrierError``, which RelStorage postpones from the
    poll to the transaction's next read (see the error); this poll's connection refuses
    every statement until the next poll, so nothing reads the unfenced snapshot either."""

    def __init__(
        self,
        driver: Any,
        keep_history: bool,
        runner: Any,
        revert_when_stale: bool,
        barrier: Callable[[], object],
        lease_floor: Callable[[], int | None] | None = None,
    ) -> None:
        super().__init__(
            driver,
            keep_history=keep_history,
            runner=runner,
            revert_when_stale=revert_when_stale,
            transactions_may_go_backwards=False,
        )
        self._barrier = barrier
        self._lease_floor = lease_floor

    def fence(self, cursor: dbapi.Cursor) -> None:
        """Make ``cursor``'s next reads see what the consistency level promises a
        transaction starting now; raise ``ReadBarrierError`` if it cannot."""
        connection = cursor.connection
        connection.unfenced = None
        if self._lease_floor is not None and self._snapshot_under_lease(cursor):
            return
        try:
            self._barrier()
        except PaxosTransientError as exc:
            reason = f"no consistency barrier for this transaction: {exc}"
            error = ReadBarrierError(reason)  # type: ignore[no-untyped-call]
            connection.unfenced = error
            raise error from exc

    def _snapshot_under_lease(self, cursor: dbapi.Cursor) -> bool:
        """Fix the load connection's snapshot where the node's lease says every finished
        commit is: True once the snapshot has applied the lease's floor. False (with no
        snapshot taken yet) when there is no lease, or the applier does not reach the floor
        within ``LEASE_APPLY_WAIT_S``: the caller then makes a ReadIndex round."""
        assert self._lease_floor is not None
        deadline = time.monotonic() + LEASE_APPLY_WAIT_S
        while (floor := self._lease_floor()) is not None:
            cursor.execute("SELECT applied_slot FROM paxos_meta")
            row = cursor.fetchone()
            assert row is not None
            if int(row[0]) >= floor:
                return True
            # That snapshot is older than the floor: the next SELECT must take a new one.
            cursor.connection.rollback()
            cursor.execute("BEGIN DEFERRED TRANSACTION")
            if time.monotonic() >= deadline:
                break
            time.sleep(LEASE_APPLY_POLL_S)
        return False

    def get_current_tid(self, cursor: dbapi.Cursor) -> int:
        self.fence(cursor)
        tid: int = super().get_current_tid(cursor)
        return tid

    def poll_invalidations(
        self, conn: dbapi.Connection, cursor: dbapi.Cursor, prev_polled_tid: int | None
    ) -> Any:
        if prev_polled_tid is None:
            return None, self.get_current_tid(cursor)
        self.fence(cursor)
        return super().poll_invalidations(conn, cursor, prev_polled_tid)


class PaxosHistoryPreservingDatabaseIterator(HistoryPreservingDatabaseIterator):  # type: ignore[misc]
    """``undoLog`` reads the transaction log on a connection of its own, which no poll
    fenced: behind the poller's barrier, the undo log offered after a commit finished on
    another node lists it (and an undo picks the transaction the user saw)."""

    def __init__(self, driver: Any, fence: Callable[[dbapi.Cursor], None]) -> None:
        super().__init__(driver)
        self._fence = fence

    def iter_transactions(self, cursor: dbapi.Cursor) -> Any:
        self._fence(cursor)
        return super().iter_transactions(cursor)


class PaxosSchemaInstaller(Sqlite3SchemaInstaller):  # type: ignore[misc]
    """The node creates the schema (``relstorage-paxos init``); applications only check it."""

    def __init__(self, cluster_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._cluster_id = cluster_id

    def get_database_name(self, cursor: dbapi.Cursor) -> str:
        """The cache prefix: one per cluster, whichever node a process reads."""
        return f"paxos-{self._cluster_id}"

    def prepare(self) -> None:
        self.verify()

    def zap_all(self, reset_oid: bool = True, slow: bool = False) -> None:
        raise NotReplicatedError(ZAP_REFUSED)

    def drop_all(self) -> None:
        raise NotReplicatedError(ZAP_REFUSED)


class PaxosStats(Sqlite3Stats):  # type: ignore[misc]
    def large_database_change(self) -> None:
        """The stock ANALYZE would write the replica; the node's applier owns it."""


class PaxosHistoryFreePackUndo(PaxosPackMixin, HistoryFreePackUndo):  # type: ignore[misc]
    def deleteObject(self, cursor: dbapi.Cursor, oid: bytes, oldserial: bytes) -> int:
        """Stage the delete in ``temp_store`` (a row without a state) instead of deleting
        from the replica: vote locks the OID like any write and checks ``oldserial`` is
        still current, and finish's CommitTxn deletes it on every replica. Returns the
        rows it will delete, as RelStorage's does: 0 if already staged or not current."""
        oid_int, tid_int = u64(oid), u64(oldserial)
        cursor.execute(
            "SELECT 1 FROM object_state WHERE zoid = ? AND tid = ?"
            " AND NOT EXISTS (SELECT 1 FROM temp_store WHERE zoid = ? AND state IS NULL)",
            (oid_int, tid_int, oid_int),
        )
        if cursor.fetchone() is None:
            return 0
        cursor.execute(
            "INSERT OR REPLACE INTO temp_store (zoid, prev_tid, md5, state)"
            " VALUES (?, ?, NULL, NULL)",
            (oid_int, tid_int),
        )
        return 1


class PaxosHistoryPreservingPackUndo(PaxosPackMixin, HistoryPreservingPackUndo):  # type: ignore[misc]
    """Undo staged in ``temp_store`` instead of written to the replica. The transaction
    holds the database lock from ``undo()`` on (RelStorage takes its commit lock there too),
    so the states read here stay current until finish's CommitTxn writes them, under the
    tid chosen with the lock. deleteObject needs nothing here: RelStorage stages its
    "whiteout" (a NULL state) itself."""

    def verify_undoable(self, cursor: dbapi.Cursor, undo_tid: int) -> None:
        """RelStorage's rules, with "current" meaning what this transaction has staged, if
        anything (an earlier undo of the same transaction), else the replica's current
        state: every object of ``undo_tid`` must still have the state it had there (so
        only the latest change of each object can be undone, as RelStorage does), and
        the root's creation cannot be undone."""
        self._is_packed_tx_query.execute(cursor, {"undo_tid": undo_tid})
        if not cursor.fetchall():
            raise UndoError("Transaction not found or packed")  # type: ignore[no-untyped-call]
        cursor.execute(_MODIFIED_LATER, (undo_tid,))
        if cursor.fetchall():
            raise UndoError("Some data were modified by a later transaction")  # type: ignore[no-untyped-call]
        self._is_root_creation_tx_query.execute(cursor, {"undo_tid": undo_tid})
        if cursor.fetchall():
            raise UndoError("Can't undo the creation of the root object")  # type: ignore[no-untyped-call]

    def undo(self, cursor: dbapi.Cursor, undo_tid: int, self_tid: int) -> list[tuple[int, int]]:
        """Stage, for every object ``undo_tid`` wrote, the state it had before (none if that
        transaction created it) and that state's blob; return ``(oid, tid the state comes
        from)`` pairs as RelStorage's does. ``prev_tid`` is the replica's current tid,
        which the database lock keeps current.

        RelStorage calls ``verify_undoable`` before it takes the lock, on a replica that
        may not have applied a commit acknowledged elsewhere yet; the lock's grant is
        applied here now, so the rules are checked again on what is current."""
        self.verify_undoable(cursor, undo_tid)
        cursor.execute(_UNDONE_STATES, (undo_tid,))
        rows = cursor.fetchall()
        for oid, before_tid, md5, state, current_tid in rows:
            cursor.execute(
                "INSERT OR REPLACE INTO temp_store (zoid, prev_tid, md5, state)"
                " VALUES (?, ?, ?, ?)",
                (oid, current_tid, md5, state),
            )
            cursor.execute("DELETE FROM temp_blob_chunk WHERE zoid = ?", (oid,))
            cursor.execute(
                "INSERT INTO temp_blob_chunk (zoid, chunk_num, chunk)"
                " SELECT zoid, chunk_num, chunk FROM blob_chunk WHERE zoid = ? AND tid = ?",
                (oid, before_tid),
            )
        return [(int(oid), int(before_tid)) for oid, before_tid, *_ in rows]


_MODIFIED_LATER: Final = """
    SELECT undone.zoid
    FROM object_state AS undone
    LEFT JOIN temp_store ON temp_store.zoid = undone.zoid
    LEFT JOIN current_object ON current_object.zoid = undone.zoid
    LEFT JOIN object_state AS cur
        ON cur.zoid = undone.zoid AND cur.tid = current_object.tid
    WHERE undone.tid = ?
        AND CASE WHEN temp_store.zoid IS NULL THEN cur.state ELSE temp_store.state END
            IS NOT undone.state
    ORDER BY undone.zoid
"""

_UNDONE_STATES: Final = """
    SELECT undone.zoid, undone.prev_tid, before.md5, before.state, current_object.tid
    FROM object_state AS undone
    JOIN current_object ON current_object.zoid = undone.zoid
    LEFT JOIN object_state AS before
        ON before.zoid = undone.zoid AND before.tid = undone.prev_tid
    WHERE undone.tid = ?
    ORDER BY undone.zoid
"""
