"""``PaxosAdapter``: RelStorage's SQLite adapter on a node's replica, with writes proposed
to the cluster's log (DESIGN.md §4) and reads behind the chosen consistency barrier (§5).

Owns: assembling the components (components.py) around one ``NodeLink`` and the three
adapter-level algorithms RelStorage calls: ``lock_objects_and_detect_conflicts`` (vote),
``lock_database_and_move`` (finish) and ``lock_database_and_choose_next_tid`` (refused: the
applier chooses tids).
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
    HistoryPreservingDatabaseIterator,
)
from relstorage.adapters.sqlite.adapter import Sqlite3Adapter  # type: ignore[import-untyped]
from relstorage.adapters.sqlite.batch import Sqlite3RowBatcher  # type: ignore[import-untyped]
from relstorage.adapters.sqlite.scriptrunner import (  # type: ignore[import-untyped]
    Sqlite3ScriptRunner,
)
from relstorage.options import Options  # type: ignore[import-untyped]

from relstorage_paxos.adapter import drivers, link
from relstorage_paxos.adapter.components import (
    PaxosConnectionManager,
    PaxosHistoryFreePackUndo,
    PaxosHistoryPreservingPackUndo,
    PaxosLocker,
    PaxosObjectMover,
    PaxosOIDAllocator,
    PaxosPoller,
    PaxosSchemaInstaller,
    PaxosStats,
    PaxosTransactionControl,
)
from relstorage_paxos.adapter.settings import AdapterSettings
from relstorage_paxos.adapter.writes import Writer
from relstorage_paxos.errors import HistoryModeMismatch, NotReplicatedError, SettingsError
from relstorage_paxos.replica.schema import mode_name

logger = logging.getLogger(__name__)


class PaxosAdapter(Sqlite3Adapter):  # type: ignore[misc]
    driver_options = drivers
    WRITING_REQUIRES_EXCLUSIVE_LOCK = True
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
            settings.data_dir, embedded=settings.embedded
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
        writer = Writer(node, options.commit_lock_timeout, self.settings.lock_lease_s)
        if self.mover is None:
            self.mover = PaxosObjectMover(driver, options, writer)
        if self.locker is None:
            self.locker = PaxosLocker(options, driver, Sqlite3RowBatcher, writer)
        if not self.oidallocator:
            self.oidallocator = PaxosOIDAllocator(node, options.commit_lock_timeout)
        self.runner = Sqlite3ScriptRunner()
        self.poller = PaxosPoller(
            driver,
            keep_history=self.keep_history,
            runner=self.runner,
            revert_when_stale=options.revert_when_stale,
            barrier=self._barrier(),
        )
        self.txncontrol = PaxosTransactionControl(
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
        dbiter = (
            HistoryPreservingDatabaseIterator if self.keep_history else HistoryFreeDatabaseIterator
        )
        self.dbiter = dbiter(driver)

    def _barrier(self) -> Callable[[], object]:
        node = self.node_link
        consistency = self.settings.consistency
        if consistency == "linearizable":
            return node.read_barrier
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
        see writes.py)."""
        self.locker.writer.lock(cursor, read_current_oids.keys())
        if cursor.connection.paxos_restore is not None:
            return []  # a restore overwrites what is there, as RelStorage's own restore does
        return self._composed_lock_objects_and_detect_conflicts(cursor, read_current_oids)

    def lock_database_and_choose_next_tid(
        self, cursor: Any, username: bytes, description: bytes, extension: bytes
    ) -> int:
        raise NotReplicatedError(
            "undo and deleteObject choose their tid before vote; they are not replicated yet"
        )

    def lock_database_and_move(
        self,
        store_connection: Any,
        load_connection: Any,
        transaction_has_blobs: bool,
        ude: tuple[bytes, bytes, bytes],
        commit: bool = True,
        committing_tid_int: int | None = None,
        after_selecting_tid: Callable[[int], object] = lambda tid: None,
    ) -> tuple[int, str]:
        """tpc_finish: propose CommitTxn (RestoreTxn for a restore, with its own tid), wait
        for local apply, return the tid."""
        if not commit:
            # Voting-time moves (RELSTORAGE_LOCK_EARLY, shared blob dirs) would commit at
            # vote, which a later abort could not undo.
            raise NotReplicatedError("committing at vote (RELSTORAGE_LOCK_EARLY)")
        cursor = store_connection.cursor
        if committing_tid_int is None:
            tid = self.locker.writer.commit(cursor, *ude)
        else:
            tid = self.locker.writer.restore(cursor, committing_tid_int, *ude)
        after_selecting_tid(tid)
        self.txncontrol.commit_phase2(store_connection, "-", load_connection)
        self.poller.after_commit()
        return tid, "-"


def _check_options(node: link.NodeLink, options: Any) -> None:
    keep_history = bool(options.keep_history)
    if keep_history != node.settings.keep_history:
        raise HistoryModeMismatch(
            f"keep-history {str(keep_history).lower()}: node {node.node_id} at"
            f" {node.data_dir} is {mode_name(node.settings.keep_history)}; set keep-history"
            f" {str(node.settings.keep_history).lower()} (zodbconvert converts between modes)"
        )
    if options.blob_dir and options.shared_blob_dir:
        raise SettingsError(
            "shared-blob-dir true: a shared blob directory is not replicated; use"
            " shared-blob-dir false (blobs then travel in the log)"
        )
