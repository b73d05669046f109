"""History-preserving undo and deleteObject on three real node processes: both take the
replicated database lock and commit under the tid they chose with it, so an undo on one node
is seen by the next transaction on another, a commit from another node waits for the lock
instead of slipping a tid in between, and an abort gives the lock back."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import transaction
import ZODB
from ZODB.Connection import TransactionMetaData
from ZODB.POSException import POSKeyError, UndoError
from ZODB.utils import p64, u64

from tests.adapter.support import Item, lock_requests, open_db
from tests.integration.processes import ProcessCluster, running_cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessCluster]:
    with running_cluster(tmp_path_factory.mktemp("hp"), 3, keep_history=True) as running:
        yield running


@pytest.fixture(scope="module")
def dbs(cluster: ProcessCluster) -> Iterator[tuple[ZODB.DB, ZODB.DB]]:
    db1 = open_db(cluster.nodes[1].data_dir, keep_history=True)
    db2 = open_db(cluster.nodes[2].data_dir, keep_history=True)
    yield db1, db2
    db1.close()
    db2.close()


def _set(db: ZODB.DB, key: str, value: int) -> None:
    with db.transaction() as conn:
        if key in conn.root():
            conn.root()[key].value = value
        else:
            conn.root()[key] = Item(value)


def _get(db: ZODB.DB, key: str) -> int:
    with db.transaction() as conn:
        value: int = conn.root()[key].value
        return value


def _last_undoable_id(db: ZODB.DB) -> bytes:
    txn_id: bytes = db.undoLog(0, 1)[0]["id"]
    return txn_id


def test_an_undo_on_one_node_is_seen_on_another(dbs: tuple[ZODB.DB, ZODB.DB]) -> None:
    db1, db2 = dbs
    _set(db1, "undone", 1)
    _set(db2, "undone", 2)
    db1.undo(_last_undoable_id(db1))
    transaction.commit()
    assert _get(db2, "undone") == 1
    assert _get(db1, "undone") == 1
    # The undo is itself undoable (a redo).
    db2.undo(_last_undoable_id(db2))
    transaction.commit()
    assert _get(db1, "undone") == 2


def test_undoing_a_change_that_was_overwritten_is_refused(dbs: tuple[ZODB.DB, ZODB.DB]) -> None:
    db1, db2 = dbs
    _set(db1, "overwritten", 1)
    _set(db1, "overwritten", 2)
    older = db1.undoLog(0, 2)[1]["id"]
    db2.undo(older)
    with pytest.raises(UndoError):
        transaction.commit()
    transaction.abort()
    assert _get(db1, "overwritten") == 2


def test_an_undo_checked_on_a_stale_snapshot_is_refused_under_the_lock(
    cluster: ProcessCluster, dbs: tuple[ZODB.DB, ZODB.DB]
) -> None:
    """RelStorage checks an undo before it takes the database lock, on whatever the replica
    showed then: the store connection's snapshot is pinned before the overwriting commit,
    as a lagging replica would show it, and the check under the lock must refuse."""
    db1, db2 = dbs
    _set(db1, "stale", 1)
    older = _last_undoable_id(db1)
    storage = db2.storage.new_instance()
    txn = TransactionMetaData()
    try:
        storage.tpc_begin(txn)
        cursor = storage._tpc_phase.shared_state.store_connection.cursor
        cursor.execute("BEGIN")
        cursor.execute("SELECT COUNT(*) FROM current_object").fetchall()  # pins the snapshot
        _set(db1, "stale", 2)
        cluster.wait_converged()
        with pytest.raises(UndoError):
            storage.undo(older, txn)
        storage.tpc_abort(txn)
    finally:
        storage.release()
    assert _get(db2, "stale") == 2
    assert lock_requests(cluster.nodes[2].data_dir) == []


def test_a_commit_waits_for_an_undo_holding_the_database_lock(
    dbs: tuple[ZODB.DB, ZODB.DB],
) -> None:
    db1, db2 = dbs
    _set(db1, "held", 1)
    _set(db1, "other", 1)
    storage = db1.storage
    txn = TransactionMetaData()
    storage.tpc_begin(txn)
    storage.undo(_last_undoable_id(db1), txn)  # takes the database lock
    finished = threading.Event()

    def commit_elsewhere() -> None:
        _set(db2, "held", 5)  # a different object from the one undone, on another node
        finished.set()

    writer = threading.Thread(target=commit_elsewhere)
    writer.start()
    try:
        # The lock is replicated: node 2's commit cannot get its object locks meanwhile.
        assert not finished.wait(1.0)
        storage.tpc_vote(txn)
        undo_tid = storage.tpc_finish(txn)
    finally:
        writer.join(30.0)
    assert finished.is_set()
    with db2.transaction() as conn:
        assert conn.root()["held"].value == 5
        # tids stay in commit order: the waiting commit follows the undo.
        assert u64(conn.root()["held"]._p_serial) > u64(undo_tid)


def test_an_aborted_undo_gives_the_database_lock_back(
    cluster: ProcessCluster, dbs: tuple[ZODB.DB, ZODB.DB]
) -> None:
    db1, db2 = dbs
    _set(db1, "aborted", 1)
    storage = db1.storage
    txn = TransactionMetaData()
    storage.tpc_begin(txn)
    storage.undo(_last_undoable_id(db1), txn)
    assert lock_requests(cluster.nodes[1].data_dir) == [(True, True)]  # granted, database
    storage.tpc_abort(txn)
    # The abort's release is applied on node 1 before tpc_abort returns.
    assert lock_requests(cluster.nodes[1].data_dir) == []
    _set(db2, "aborted", 2)
    assert _get(db1, "aborted") == 2


def test_delete_object_on_one_node_is_seen_on_another(
    cluster: ProcessCluster, dbs: tuple[ZODB.DB, ZODB.DB]
) -> None:
    db1, db2 = dbs
    _set(db1, "doomed", 1)
    with db1.transaction() as conn:
        doomed = conn.root()["doomed"]
        oid, serial = doomed._p_oid, doomed._p_serial
        del conn.root()["doomed"]
    storage = db1.storage
    txn = TransactionMetaData()
    storage.tpc_begin(txn)
    storage.deleteObject(oid, serial, txn)
    storage.tpc_vote(txn)
    storage.tpc_finish(txn)
    with pytest.raises(POSKeyError):
        db2.storage.load(oid)
    # History keeps the state it had, as RelStorage's own deleteObject does.
    assert db2.storage.loadSerial(oid, serial)
    views = cluster.wait_converged()
    assert len({v.running_hash for v in views}) == 1
    assert p64(views[0].last_tid) >= serial
