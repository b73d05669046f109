"""The RelStorage components the Paxos adapter replaces (one per ``IRelStorageAdapter``
attribute that must not write the replica or must speak to the node).

Owns: read-only connections to ``replica.sqlite3``; the locker (object locks are the log's,
taken by ``PaxosAdapter.lock_objects_and_detect_conflicts``; releasing them is an abort's
ReleaseTxn); OIDs served by the node; the poller's consistency barrier; a schema installer
that verifies what the node created and refuses to change it; refusals for what is not
replicated yet (pack, undo, deleteObject, zap_all). Everything else is stock RelStorage
SQLite, running its own SQL on the replica.
Must not import: ``core``, ``log``, ``runtime``.
Called by: RelStorage, on application threads.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

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

from relstorage_paxos.adapter import dbapi
from relstorage_paxos.adapter.link import OIDS_PER_REQUEST, NodeLink
from relstorage_paxos.adapter.writes import Writer
from relstorage_paxos.errors import NotReplicatedError, PaxosTransientError
from relstorage_paxos.replica import Allocated, AllocateOids, Record

logger = logging.getLogger(__name__)

ZAP_REFUSED = (
    "zap_all would clear one replica only; a cluster's data is cleared by creating its"
    " nodes anew (relstorage-paxos init)"
)


class PaxosConnectionManager(Sqlite3ConnectionManager):  # type: ignore[misc]
    """Stock SQLite connection handling on ``replica.sqlite3``, whose connections our
    driver opens read-only (store connections write only their TEMP tables)."""

    def open_for_pre_pack(self) -> tuple[Any, Any]:
        raise NotReplicatedError("pack is not replicated yet: it would change one replica only")


class PaxosLocker(Sqlite3Locker):  # type: ignore[misc]
    """The stock SQLite locker minus its database-wide write lock: at vote the adapter has
    already taken replicated object locks; ending the transaction releases them."""

    def __init__(self, options: Any, driver: Any, batcher_factory: Any, writer: Writer) -> None:
        super().__init__(options, driver, batcher_factory=batcher_factory)
        self.writer = writer

    def _lock_rows_being_modified(self, cursor: dbapi.Cursor) -> None:
        """Held already: the LockObjects record was granted before this is called."""

    def hold_commit_lock(
        self, cursor: dbapi.Cursor, ensure_current: Any = False, nowait: bool = False
    ) -> bool:
        """Only a restore (``ensure_current`` = its given tid) gets here: it locks its
        objects at vote like any commit, and the applier checks its tid then. The other
        callers choose a tid before vote under the stock database-wide lock, which the log
        has no record for yet (HP undo and deleteObject, pack)."""
        if isinstance(ensure_current, tuple):
            return True
        raise NotReplicatedError(
            "operations that choose their tid before vote (undo, deleteObject, pack)"
            " are not replicated yet"
        )

    def release_commit_lock(self, cursor: dbapi.Cursor) -> None:
        """Called at the end of every transaction, committed or aborted; after a commit
        there is nothing left to release."""
        self.writer.release(cursor.connection)


class PaxosTransactionControl(Sqlite3TransactionControl):  # type: ignore[misc]
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
        cursor.connection.paxos_restore = (tid, packed)


class PaxosObjectMover(Sqlite3ObjectMover):  # type: ignore[misc]
    """The stock SQLite mover, except that restores go to the TEMP tables instead of the
    replica (finish sends them to the log in a RestoreTxn), and that a blob upload that takes
    the transaction over ``max-record-bytes`` fails the vote (``Writer.check_size``)."""

    def __init__(self, driver: Any, options: Any, writer: Writer) -> None:
        super().__init__(driver, options=options)
        self.writer = writer

    def restore(self, cursor: dbapi.Cursor, batcher: Any, oid: int, tid: int, data: Any) -> None:
        # temp_store.prev_tid means nothing to a restore; a NULL state is "no object".
        cursor.execute(
            "INSERT OR REPLACE INTO temp_store (zoid, prev_tid, md5, state) VALUES (?, 0, NULL, ?)",
            (oid, None if data is None else self.driver.Binary(data)),
        )

    def upload_blob(self, cursor: dbapi.Cursor, oid: int, tid: int | None, filename: str) -> None:
        super().upload_blob(cursor, oid, None, filename)
        self.writer.check_size(cursor)


class PaxosOIDAllocator:
    """OIDs from blocks the node reserves in the log (AllocateOids), shared by every
    adapter of the process through the link. RelStorage's ``OIDs`` pops from the end of the
    lists we return, so they run from the largest OID down."""

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
    promised."""

    def __init__(
        self,
        driver: Any,
        keep_history: bool,
        runner: Any,
        revert_when_stale: bool,
        barrier: Callable[[], object],
    ) -> None:
        super().__init__(
            driver,
            keep_history=keep_history,
            runner=runner,
            revert_when_stale=revert_when_stale,
            transactions_may_go_backwards=False,
        )
        self._barrier = barrier
        self._after_commit = False

    def after_commit(self) -> None:
        """The next poll follows our own commit: ZODB runs it from ``afterCompletion``,
        inside ``transaction.commit()``. A failing barrier must not raise there: commit()
        would then report a transient error for a transaction that is committed, and
        ``transaction.manager.attempts()`` would run it a second time. That poll goes
        without the barrier (it already sees our own commit, applied locally); the next
        ``begin()`` polls again, with it."""
        self._after_commit = True

    def _wait_for_barrier(self) -> None:
        after_commit, self._after_commit = self._after_commit, False
        try:
            self._barrier()
        except PaxosTransientError as exc:
            if not after_commit:
                raise
            logger.warning("read barrier after a commit skipped (%s); the next begin() waits", exc)

    def get_current_tid(self, cursor: dbapi.Cursor) -> int:
        self._wait_for_barrier()
        tid: int = super().get_current_tid(cursor)
        return tid

    def poll_invalidations(
        self, conn: dbapi.Connection, cursor: dbapi.Cursor, prev_polled_tid: int | None
    ) -> Any:
        if prev_polled_tid is None:
            return None, self.get_current_tid(cursor)
        self._wait_for_barrier()
        return super().poll_invalidations(conn, cursor, prev_polled_tid)


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


class PaxosHistoryFreePackUndo(HistoryFreePackUndo):  # type: ignore[misc]
    def deleteObject(self, cursor: dbapi.Cursor, oid: bytes, oldserial: bytes) -> None:
        raise NotReplicatedError("deleteObject is not replicated yet")


class PaxosHistoryPreservingPackUndo(HistoryPreservingPackUndo):  # type: ignore[misc]
    def deleteObject(self, cursor: dbapi.Cursor, oid: bytes, oldserial: bytes) -> None:
        raise NotReplicatedError("deleteObject is not replicated yet")
