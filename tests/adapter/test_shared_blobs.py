"""A blob directory shared by every application process (``shared-blob-dir true``, e.g. on
NFS), on three real node processes, with databases on node 1 and node 2 sharing one
directory: the blobs never enter the log; a transaction with blobs trades its object locks
for the replicated database lock at vote (RelStorage moves its files under the final tid
then), so commits from every node wait for it until finish, while transactions without blobs
keep their object locks only; what changed between the two locks fails the vote; an abort
removes the files, gives the lock back and burns the tid; and RELSTORAGE_LOCK_EARLY stays
refused."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import ZODB
from ZODB.blob import Blob
from ZODB.Connection import TransactionMetaData
from ZODB.POSException import ConflictError
from ZODB.utils import u64

from relstorage_paxos.errors import NotReplicatedError
from tests.adapter.support import Item, lock_requests, open_db, replica_rows
from tests.integration.processes import ProcessCluster, running_cluster, wait_for

JOIN_S = 30.0
"""The longest a thread that must finish may take."""

_uploads = itertools.count()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessCluster]:
    with running_cluster(tmp_path_factory.mktemp("shared"), 3) as running:
        yield running


@pytest.fixture(scope="module")
def blob_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("shared-blobs")


@pytest.fixture(scope="module")
def dbs(cluster: ProcessCluster, blob_dir: Path) -> Iterator[tuple[ZODB.DB, ZODB.DB]]:
    shared = f"blob-dir {blob_dir}\n    shared-blob-dir true"
    db1 = open_db(cluster.nodes[1].data_dir, keep_history=False, relstorage=shared)
    db2 = open_db(cluster.nodes[2].data_dir, keep_history=False, relstorage=shared)
    yield db1, db2
    db1.close()
    db2.close()


def _last_tid(cluster: ProcessCluster, node_id: int) -> int:
    ((last_tid,),) = replica_rows(
        cluster.nodes[node_id].data_dir, "SELECT last_tid FROM paxos_meta"
    )
    assert isinstance(last_tid, int)
    return last_tid


def _set(db: ZODB.DB, key: str, value: int) -> bytes:
    with db.transaction() as conn:
        if key in conn.root():
            conn.root()[key].value = value
        else:
            conn.root()[key] = Item(value)
        item = conn.root()[key]
    serial: bytes = item._p_serial
    return serial


def _new_blob(db: ZODB.DB, key: str, content: bytes) -> bytes:
    with db.transaction() as conn:
        conn.root()[key] = Blob(content)
        blob = conn.root()[key]
    oid: bytes = blob._p_oid
    return oid


def _read_blob(db: ZODB.DB, key: str) -> bytes:
    with db.transaction() as conn, conn.root()[key].open() as f:
        content: bytes = f.read()
        return content


def _oid(db: ZODB.DB, key: str) -> bytes:
    with db.transaction() as conn:
        oid: bytes = conn.root()[key]._p_oid
        return oid


def _serial(db: ZODB.DB, key: str) -> bytes:
    with db.transaction() as conn:
        obj = conn.root()[key]
        obj._p_activate()  # a ghost's _p_serial is the one it had before invalidation
        serial: bytes = obj._p_serial
        return serial


def _store_blob(storage: Any, oid: bytes, content: bytes, txn: TransactionMetaData) -> None:
    """A new revision of the blob object ``oid``, as ZODB's Connection stores it."""
    data, serial = storage.load(oid)
    upload = Path(storage.temporaryDirectory()) / f"upload-{next(_uploads)}"
    upload.write_bytes(content)
    storage.storeBlob(oid, serial, data, str(upload), "", txn)


def _store(storage: Any, oid: bytes, txn: TransactionMetaData) -> None:
    data, serial = storage.load(oid)
    storage.store(oid, serial, data, "", txn)


def _files_of(storage: Any, oid: bytes) -> set[str]:
    """The files in the shared directory's folder for ``oid``: its committed blobs, named
    after their tids, and any temporary file of a transaction storing one (not the hidden
    lock files ZODB keeps there)."""
    path = Path(storage.blobhelper.fshelper.getPathForOID(oid))
    if not path.exists():
        return set()
    return {p.name for p in path.iterdir() if not p.name.startswith(".")}


def _in_thread(work: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    """Run ``work`` in a thread; the list gets its result, or the exception it raised."""
    results: list[object] = []

    def run() -> None:
        try:
            results.append(work())
        except Exception as exc:
            results.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, results


def test_a_blob_committed_through_one_node_is_read_through_another(
    cluster: ProcessCluster, dbs: tuple[ZODB.DB, ZODB.DB]
) -> None:
    db1, db2 = dbs
    oid = _new_blob(db1, "shared", b"written through node 1")
    assert _read_blob(db2, "shared") == b"written through node 1"
    with db2.transaction() as conn, conn.root()["shared"].open("w") as f:
        f.write(b"and through node 2")
    assert _read_blob(db1, "shared") == b"and through node 2"
    assert len(_files_of(db1.storage, oid)) == 2  # one file per revision, in the shared dir
    # The blobs stayed out of the log: no replica holds their content.
    cluster.wait_converged()
    for node_id in cluster.nodes:
        assert replica_rows(cluster.nodes[node_id].data_dir, "SELECT COUNT(*) FROM blob_chunk") == [
            (0,)
        ]


def test_a_commit_on_another_node_waits_for_a_blob_transaction_between_vote_and_finish(
    cluster: ProcessCluster, dbs: tuple[ZODB.DB, ZODB.DB]
) -> None:
    db1, db2 = dbs
    oid = _new_blob(db1, "held", b"before")
    _set(db2, "elsewhere", 1)
    storage = db1.storage
    txn = TransactionMetaData()
    storage.tpc_begin(txn)
    _store_blob(storage, oid, b"after", txn)
    storage.tpc_vote(txn)
    # The vote holds the database lock, not object locks.
    assert lock_requests(cluster.nodes[1].data_dir) == [(True, True)]
    writer, results = _in_thread(lambda: _set(db2, "elsewhere", 2))
    try:
        # A different object, through node 2: its lock request waits behind the lock.
        wait_for(
            "a waiting request",
            lambda: lock_requests(cluster.nodes[1].data_dir)[1:] == [(False, False)],
            30.0,
        )
        assert not results, results
        blob_tid = storage.tpc_finish(txn)
    finally:
        writer.join(JOIN_S)
    assert not writer.is_alive()
    (serial,) = results
    assert isinstance(serial, bytes), serial
    assert u64(serial) > u64(blob_tid)  # tids stay in commit order
    assert _read_blob(db2, "held") == b"after"


def test_a_transaction_without_blobs_takes_no_database_lock(
    cluster: ProcessCluster, dbs: tuple[ZODB.DB, ZODB.DB]
) -> None:
    db1, db2 = dbs
    _set(db1, "plain", 1)
    _set(db2, "other", 1)
    storage = db1.storage
    txn = TransactionMetaData()
    storage.tpc_begin(txn)
    _store(storage, _oid(db1, "plain"), txn)
    storage.tpc_vote(txn)
    try:
        assert lock_requests(cluster.nodes[1].data_dir) == [(True, False)]
        # Commits of other objects go on, from any node, while it is between vote and finish.
        writer, results = _in_thread(lambda: _set(db2, "other", 2))
        writer.join(JOIN_S)
        assert not writer.is_alive()
        assert isinstance(results[0], bytes), results
    finally:
        storage.tpc_finish(txn)


def test_an_aborted_blob_transaction_leaves_nothing_behind_and_gives_the_lock_back(
    cluster: ProcessCluster, dbs: tuple[ZODB.DB, ZODB.DB]
) -> None:
    db1, db2 = dbs
    oid = _new_blob(db1, "aborted", b"kept")
    storage = db1.storage
    committed = _files_of(storage, oid)
    txn = TransactionMetaData()
    storage.tpc_begin(txn)
    _store_blob(storage, oid, b"dropped", txn)
    storage.tpc_vote(txn)
    (moved,) = _files_of(storage, oid) - committed  # moved under the tid chosen at vote
    aborted_tid = int(moved.removesuffix(".blob"), 16)
    assert lock_requests(cluster.nodes[1].data_dir) == [(True, True)]
    storage.tpc_abort(txn)
    # The abort's release is applied on node 1 before tpc_abort returns.
    assert lock_requests(cluster.nodes[1].data_dir) == []
    assert _files_of(storage, oid) == committed
    # The tid is burnt: the next commit, from any node, comes after it.
    assert _last_tid(cluster, 1) == aborted_tid
    with db2.transaction() as conn, conn.root()["aborted"].open("w") as f:
        f.write(b"next")
    assert u64(_serial(db2, "aborted")) > aborted_tid
    assert _read_blob(db1, "aborted") == b"next"


def test_a_change_between_the_object_locks_and_the_database_lock_fails_the_vote(
    cluster: ProcessCluster, dbs: tuple[ZODB.DB, ZODB.DB]
) -> None:
    """Transaction B writes item X and blob Y. A blob transaction holding the database lock
    makes B's object locks wait, and a commit of X from node 2 waits behind B's; so when B
    trades its object locks for the database lock, that commit takes X first. B's vote must
    then fail with a ConflictError instead of voting a stale X (which only finish would
    find, where failing is too late)."""
    db1, db2 = dbs
    _set(db1, "x", 1)
    x = _oid(db1, "x")
    y = _new_blob(db1, "y", b"y before")
    z = _new_blob(db1, "z", b"z before")
    holder = db1.storage
    held = TransactionMetaData()
    holder.tpc_begin(held)
    _store_blob(holder, z, b"z after", held)
    holder.tpc_vote(held)
    b_storage = db1.storage.new_instance()
    b_txn = TransactionMetaData()

    def transaction_b() -> str:
        b_storage.tpc_begin(b_txn)
        _store(b_storage, x, b_txn)
        _store_blob(b_storage, y, b"y from b", b_txn)
        try:
            b_storage.tpc_vote(b_txn)
        except ConflictError:
            b_storage.tpc_abort(b_txn)
            return "vote failed"
        b_storage.tpc_finish(b_txn)
        return "committed"

    b_thread, b_results = _in_thread(transaction_b)
    try:
        wait_for("B waiting", lambda: len(lock_requests(cluster.nodes[1].data_dir)) == 2, 30.0)
        c_thread, c_results = _in_thread(lambda: _set(db2, "x", 99))
        wait_for("C waiting", lambda: len(lock_requests(cluster.nodes[1].data_dir)) == 3, 30.0)
        holder.tpc_finish(held)
        b_thread.join(JOIN_S)
        c_thread.join(JOIN_S)
    finally:
        b_storage.release()
    assert not b_thread.is_alive() and not c_thread.is_alive()
    assert b_results == ["vote failed"]
    assert isinstance(c_results[0], bytes), c_results
    assert _read_blob(db2, "y") == b"y before"
    assert _read_blob(db2, "z") == b"z after"
    with db1.transaction() as conn:
        assert conn.root()["x"].value == 99
    wait_for("no lock left", lambda: lock_requests(cluster.nodes[1].data_dir) == [], 30.0)


def test_lock_early_is_still_refused(
    cluster: ProcessCluster, dbs: tuple[ZODB.DB, ZODB.DB], monkeypatch: pytest.MonkeyPatch
) -> None:
    db1, _ = dbs
    _set(db1, "early", 1)
    monkeypatch.setattr("relstorage.storage.tpc.vote.LOCK_EARLY", True)
    with pytest.raises(NotReplicatedError, match="RELSTORAGE_LOCK_EARLY"):
        _set(db1, "early", 2)
    assert lock_requests(cluster.nodes[1].data_dir) == []
    monkeypatch.undo()
    _set(db1, "early", 3)
    with db1.transaction() as conn:
        assert conn.root()["early"].value == 3
