"""``PaxosAdapter``: RelStorage's SQLite adapter on a node's replica, with writes proposed
to the cluster's log (DESIGN.md §4) and reads behind the chosen consistency barrier (§5).

Owns: assembling the components (components.py) around one ``NodeLink`` and the three
adapter-level algorithms RelStorage calls: ``lock_objects_and_detect_conflicts`` (vote),
``lock_database_and_move`` (finish) and ``lock_database_and_choose_next_tid`` (the
replicated database lock, for history-preserving undo and deleteObject).
Must not import: ``core``, ``log``, ``runtime``.
Called by: RelStorage on application threads; one adapter instance per RelStorage instance
(``new_instance``), all sharing the link, locker, mover, connection manager and OIDs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from relstorage.adapters.dbiter import (  # type: ignore[import-untyped]
    HistoryFreeDatabaseIterator,
)
from relstorage.adapters.sqlite.adapter import Sqlite3Adapter  # type: ignore[import-untyped]
from relstorage.adapters.sqlite.batch import Sqlite3RowBatcher  # type: ignore[import-untyped]
from relstorage.adapters.sqlite.scriptrunner import (  # type: ignore[import-untyped]
    Sqlite3ScriptRunner,
)
from relstorage.options import Options  # type: ignore[import-untyped]
from relstorage.storage.interfaces import VoteReadConflictError  # type: ignore[import-untyped]
from ZODB.POSException import ConflictError
from ZODB.utils import p64

from relstorage_paxos.adapter import dbapi, drivers, link
from relstorage_paxos.adapter.components import (
    PaxosConnectionManager,
    PaxosHistoryFreePackUndo,
    PaxosHistoryPreservingDatabaseIterator,
    PaxosHistoryPreservingPackUndo,
    PaxosLocker,
    PaxosObjectMover,
    PaxosOIDAllocator,
    PaxosPoller,
    PaxosSchemaInstaller,
    PaxosStats,
    PaxosTransactionControl,
)
from relstorage_paxos.adapter.pack import PackProposer
from relstorage_paxos.adapter.settings import AdapterSettings
from relstorage_paxos.errors import HistoryModeMismatch, NotReplicatedError
from relstorage_paxos.replica.schema import mode_name

logger = logging.getLogger(__name__)


class PaxosAdapter(Sqlite3Adapter):  # type: ignore[misc]
    driver_options = drivers
    # Writers lock the objects they write, not the database (stock SQLite's adapter says
    # True): RelStorage runs its concurrent-writer tests only when this is False.
    WRITING_REQUIRES_EXCLUSIVE_LOCK = False
    # RelStorage's tests: tids come from the cluster's records, not this process's
    # time.time() (which ZODB's tests fake), so pack to a commit's tid, not to a time.
    RS_TEST_TXN_PACK_NEEDS_SLEEP = True
    # Set by Sqlite3Adapter.__init__ (shared ones passed in) or built by _create.
    connmanager: Any
    mover: Any
    locker: Any
    oidallocator: Any

    def __init__(
        self,
        settings: AdapterSettings,
        options: Any = None,
        *,
        oidallocator: Any = None,
        locker: Any = None,
        mover: Any = None,
        connmanager: Any = None,
    ) -> None:
        options = options if options is not None else Options()
        self.settings = settings
        self._link: link.NodeLink | None = link.acquire(
            settings.data_dir,
            embedded=settings.embedded,
            connect_timeout_s=settings.connect_timeout_s,
        )
        try:
            _check_options(self._link, options)
            super().__init__(
                str(settings.data_dir),
                {},
                options=options,
                oidallocator=oidallocator,
                locker=locker,
                mover=mover,
                connmanager=connmanager,
            )
        except BaseException:
            link.release(self._link)
            self._link = None
            raise

    @property
    def node_link(self) -> link.NodeLink:
        assert self._link is not None, "adapter closed"
        return self._link

    def _create(self) -> None:
        driver = self.driver
        options = self.options
        node = self.node_link
        if self.connmanager is None:
            self.connmanager = PaxosConnectionManager(
                driver, pragmas={}, path=str(node.replica_path), options=options
            )
        if self.locker is None:
            self.locker = PaxosLocker(
                options, driver, Sqlite3RowBatcher, node, self.settings.lock_lease_s
            )
        if self.mover is None:
            self.mover = PaxosObjectMover(driver, options, self.locker.writer)
        if not self.oidallocator:
            self.oidallocator = PaxosOIDAllocator(node, options.commit_lock_timeout)
        self.runner = Sqlite3ScriptRunner()
        barrier = self._barrier()
        self.poller = PaxosPoller(
            driver,
            keep_history=self.keep_history,
            runner=self.runner,
            revert_when_stale=options.revert_when_stale,
            barrier=barrier,
            lease_floor=node.lease_floor if self.settings.consistency == "linearizable" else None,
        )
        self.txncontrol = PaxosTransactionControl(
            self.locker.writer,
            connmanager=self.connmanager,
            poller=self.poller,
            keep_history=self.keep_history,
            Binary=driver.Binary,
        )
        self.schema = PaxosSchemaInstaller(
            node.settings.cluster_id,
            driver=driver,
            oid_allocator=self.oidallocator,
            connmanager=self.connmanager,
            runner=self.runner,
            keep_history=self.keep_history,
        )
        self.stats = PaxosStats(self.connmanager, self.keep_history)
        packundo = PaxosHistoryPreservingPackUndo if self.keep_history else PaxosHistoryFreePackUndo
        self.packundo = packundo(
            driver,
            connmanager=self.connmanager,
            runner=self.runner,
            locker=self.locker,
            options=options,
        )
        self.packundo.pack_proposer = PackProposer(node, options.commit_lock_timeout, barrier)
        if self.keep_history:
            self.dbiter = PaxosHistoryPreservingDatabaseIterator(driver, self.poller.fence)
        else:
            self.dbiter = HistoryFreeDatabaseIterator(driver)

    def _barrier(self) -> Callable[[], object]:
        node = self.node_link
        consistency = self.settings.consistency
        if consistency == "linearizable":
            read_timeout_s = self.settings.read_timeout_s
            return lambda: node.read_barrier(read_timeout_s)
        if consistency == "local":
            max_lag_s = self.settings.max_lag_s
            return lambda: node.check_lag(max_lag_s)
        assert consistency == "session", consistency
        return lambda: None

    def new_instance(self) -> PaxosAdapter:
        return type(self)(
            self.settings,
            options=self.options,
            oidallocator=self.oidallocator.new_instance(),
            locker=self.locker,
            mover=self.mover,
            connmanager=self.connmanager,
        )

    def release(self) -> None:
        super().release()
        self._drop_link()

    def close(self) -> None:
        super().close()
        self._drop_link()

    def _drop_link(self) -> None:
        if self._link is not None:
            node, self._link = self._link, None
            link.release(node)

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} at 0x{id(self):x} {self.settings.data_dir}"
            f" keep_history={self.keep_history} consistency={self.settings.consistency}>"
        )

    # -- the algorithms RelStorage's TPC states call --------------------------------------

    def lock_objects_and_detect_conflicts(
        self, cursor: Any, read_current_oids: Mapping[int, int]
    ) -> Any:
        """tpc_vote: replicated locks first, then RelStorage's own readCurrent check and
        conflict detection against the local replica (authoritative for the locked OIDs:
        see writes.py). A readCurrent OID already newer here fails before any lock."""
        self._fail_fast_on_moved_read_current(cursor, read_current_oids)
        self.locker.writer.lock(cursor, read_current_oids.keys())
        cursor.connection.paxos_read_current = dict(read_current_oids)
        if cursor.connection.paxos_restore is not None:
            return []  # a restore overwrites what is there, as RelStorage's own restore does
        return self._composed_lock_objects_and_detect_conflicts(cursor, read_current_oids)

    def _fail_fast_on_moved_read_current(
        self, cursor: Any, read_current_oids: Mapping[int, int]
    ) -> None:
        """Raise ``VoteReadConflictError``, as RelStorage's check after its share locks
        does, if the local replica already holds a newer tid for a readCurrent OID: tids
        only go forward, so the lock wait could only end in that same conflict, or in a
        lock timeout behind a transaction that holds the object (ZODB's readCurrent
        contract: a read conflict, at once). An older or missing tid here proves nothing
        (a lagging replica), so it waits for the locks and the stock check."""
        if not read_current_oids:
            return
        cursor.connection.return_to_repeatable_read()  # read the replica as it is now
        current = self.mover.current_object_tids(cursor, read_current_oids.keys())
        for oid_int, expect_tid_int in sorted(read_current_oids.items()):
            actual_tid_int = current.get(oid_int, 0)
            if actual_tid_int > expect_tid_int:
                raise VoteReadConflictError(
                    oid=p64(oid_int),
                    serials=(p64(actual_tid_int), p64(expect_tid_int)),
                )

    def lock_database_and_choose_next_tid(
        self, cursor: Any, username: bytes, description: bytes, extension: bytes
    ) -> int:
        """History-preserving undo and deleteObject: the replicated database lock, and the
        tid the transaction will commit under (see ``Writer.lock_database``)."""
        tid: int = self.locker.writer.lock_database(cursor)
        return tid

    def lock_database_and_move(
        self,
        store_connection: Any,
        load_connection: Any,
        transaction_has_blobs: bool,
        ude: tuple[bytes, bytes, bytes],
        commit: bool = True,
        committing_tid_int: int | None = None,
        after_selecting_tid: Callable[[int], object] = lambda tid: None,
    ) -> tuple[int, str | dbapi.Prepared]:
        """tpc_finish: propose CommitTxn (RestoreTxn for a restore, with its own tid; with
        the tid chosen under the database lock, if the transaction took it), wait for local
        apply, return the tid.

        ``commit`` false is tpc_vote of a transaction whose blobs go into a shared blob
        directory (see ``_prepare``); RelStorage's other voting-time commit,
        ``RELSTORAGE_LOCK_EARLY``, would commit at vote, which a later abort could not undo."""
        if not commit:
            if not (self.options.shared_blob_dir and transaction_has_blobs):
                raise NotReplicatedError(
                    "committing at vote (RELSTORAGE_LOCK_EARLY): a commit in the log cannot"
                    " be taken back by a later abort; unset RELSTORAGE_LOCK_EARLY"
                )
            return self._prepare(store_connection, ude, after_selecting_tid)
        cursor = store_connection.cursor
        if cursor.connection.paxos_restore is not None:
            tid = self.locker.writer.restore(cursor, committing_tid_int, *ude)
        else:
            assert committing_tid_int == cursor.connection.paxos_database_tid, committing_tid_int
            tid = self.locker.writer.commit(cursor, *ude)
        after_selecting_tid(tid)
        self.txncontrol.commit_phase2(store_connection, "-", load_connection)
        return tid, "-"

    def _prepare(
        self,
        store_connection: Any,
        ude: tuple[bytes, bytes, bytes],
        after_selecting_tid: Callable[[int], object],
    ) -> tuple[int, dbapi.Prepared]:
        """tpc_vote with blobs and a shared blob directory: RelStorage moves the blob files
        into the shared directory under the final tid now (``after_selecting_tid``), and
        finish proposes the commit (``PaxosTransactionControl.commit_phase2``).

        A tid is final only under the database lock (no other commit can take a tid while it
        is held), so the transaction trades the object locks it voted with for it. Between
        the release and the grant other commits may change what those locks protected:
        RelStorage's checks run again under the database lock, and anything changed since
        the vote's conflict resolution is a ConflictError (or ReadConflictError) here, at
        vote, where it may still fail. From the grant to finish nothing else commits, so
        finish cannot meet a conflict."""
        cursor = store_connection.cursor
        conn = cursor.connection
        if conn.paxos_database_tid is None:
            tid = self.locker.writer.lock_database(cursor)
            conflicts = self._composed_lock_objects_and_detect_conflicts(
                cursor, conn.paxos_read_current
            )
            if conflicts:
                oid_int, committed_tid_int, voted_tid_int, _ = conflicts[0]
                raise ConflictError(  # type: ignore[no-untyped-call]
                    oid=p64(oid_int),
                    serials=(p64(committed_tid_int), p64(voted_tid_int)),
                )
        else:  # held since undo() or deleteObject() (voting with RELSTORAGE_LOCK_EARLY)
            tid = conn.paxos_database_tid
        prepared = conn.paxos_prepared = dbapi.Prepared(tid, *ude)
        after_selecting_tid(tid)
        return tid, prepared


def _check_options(node: link.NodeLink, options: Any) -> None:
    keep_history = bool(options.keep_history)
    if keep_history != node.settings.keep_history:
        raise HistoryModeMismatch(
            f"keep-history {str(keep_history).lower()}: node {node.node_id} at"
            f" {node.data_dir} is {mode_name(node.settings.keep_history)}; set keep-history"
            f" {str(node.settings.keep_history).lower()} (zodbconvert converts between modes)"
        )
