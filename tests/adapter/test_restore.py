"""Restores: ``copyTransactionsFrom`` and zodbconvert from a FileStorage (with a blob) into a
cluster keep every transaction's tid, user and description, and every object's state, blob
and tid (history-free too, where RelStorage's copier batches objects of many transactions,
in OID order, into one restore); zodbconvert --incremental continues a full copy; new OIDs
allocated afterwards never collide with the restored ones; and the restored transactions
are visible on every node."""

from __future__ import annotations

from pathlib import Path

import pytest
import transaction
import ZODB
from persistent.mapping import PersistentMapping
from relstorage import zodbconvert
from relstorage.storage import copy
from ZODB.blob import Blob
from ZODB.Connection import TransactionMetaData
from ZODB.FileStorage import FileStorage
from ZODB.utils import p64, u64

from tests.adapter.support import make_node, open_db, open_storage


def write_steps(path: Path, blobs: Path, steps: range) -> None:
    """One transaction per step: a new mapping (and, at step 1, a blob) and a change to
    ``map0``, so objects last written by different transactions end up in OID order."""
    db = ZODB.DB(FileStorage(str(path), blob_dir=str(blobs)))
    try:
        for step in steps:
            tm = transaction.TransactionManager()
            conn = db.open(tm)
            tm.get().note(f"step {step}")
            tm.get().setUser("converter")
            conn.root()[f"map{step}"] = PersistentMapping(step=step)
            if step == 1:
                conn.root()["blob"] = Blob(b"restored blob")
            if step >= 2:
                conn.root()["map0"]["step"] = "changed"
            tm.commit()
            conn.close()
    finally:
        db.close()


def make_source(tmp_path: Path) -> tuple[Path, Path, list[bytes]]:
    """A FileStorage with four transactions; returns its path, blob dir and tids."""
    path, blobs = tmp_path / "source.fs", tmp_path / "source-blobs"
    write_steps(path, blobs, range(3))
    source = FileStorage(str(path), read_only=True)
    try:
        tids = [txn.tid for txn in source.iterator()]
    finally:
        source.close()
    return path, blobs, tids


def current_records(path: Path, blobs: Path) -> dict[bytes, tuple[bytes, bytes, bytes | None]]:
    """{oid: (tid, state, blob content or None)} of every object now in the FileStorage."""
    source = FileStorage(str(path), blob_dir=str(blobs), read_only=True)
    try:
        records = {}
        for oid in source._index:
            state, tid = source.load(oid)
            records[oid] = (tid, state, blob_content(source, oid, tid))
        return records
    finally:
        source.close()


def blob_content(storage: object, oid: bytes, tid: bytes) -> bytes | None:
    try:
        filename = storage.loadBlob(oid, tid)  # type: ignore[attr-defined]
    except Exception:  # POSKeyError: not a blob (ZODB raises it for a blob-less record)
        return None
    with open(filename, "rb") as f:
        return f.read()


def check_objects(db: ZODB.DB, source: dict[bytes, tuple[bytes, bytes, bytes | None]]) -> None:
    """Every source object in the destination, with its state, blob and own tid."""
    storage = db.storage.new_instance()
    try:
        storage.sync()
        for oid, (tid, state, blob) in source.items():
            assert storage.load(oid) == (state, tid), u64(oid)
            assert blob_content(storage, oid, tid) == blob, u64(oid)
    finally:
        storage.release()


def check_destination(db: ZODB.DB, source_tids: list[bytes], keep_history: bool) -> None:
    with db.transaction() as conn:
        root = conn.root()
        assert root["map0"]["step"] == "changed"
        assert root["map2"]["step"] == 2
        with root["blob"].open() as f:
            assert f.read() == b"restored blob"
        restored_oids = {u64(root[k]._p_oid) for k in ("map0", "map1", "map2", "blob")}
    assert db.lastTransaction() == max(source_tids)
    if keep_history:
        copied = list(db.storage.iterator())
        assert [txn.tid for txn in copied] == source_tids
        assert [txn.description for txn in copied][-3:] == [b"step 0", b"step 1", b"step 2"]
    with db.transaction() as conn:
        conn.root()["after"] = PersistentMapping()
    with db.transaction() as conn:
        assert u64(conn.root()["after"]._p_oid) > max(restored_oids)


def _convert_config(
    tmp_path: Path, source: Path, source_blobs: Path, data_dir: Path, keep_history: bool
) -> Path:
    """A zodbconvert configuration from the FileStorage ``source`` into the node."""
    config = tmp_path / "convert.conf"
    config.write_text(f"""
%import relstorage_paxos
<filestorage source>
  path {source}
  blob-dir {source_blobs}
</filestorage>
<relstorage destination>
  keep-history {"true" if keep_history else "false"}
  blob-dir {tmp_path / "destination-blobs"}
  <paxos>
    data-dir {data_dir}
    embedded true
  </paxos>
</relstorage>
""")
    return config


def test_zodbconvert_from_filestorage(tmp_path: Path, keep_history: bool) -> None:
    source, source_blobs, tids = make_source(tmp_path)
    data_dir = make_node(tmp_path, keep_history=keep_history)
    config = _convert_config(tmp_path, source, source_blobs, data_dir, keep_history)
    zodbconvert.main(["zodbconvert", str(config)])
    db = open_db(
        data_dir,
        keep_history=keep_history,
        relstorage=f"blob-dir {tmp_path / 'reader-blobs'}",
        embedded="true",
    )
    try:
        check_objects(db, current_records(source, source_blobs))
        check_destination(db, tids, keep_history)
    finally:
        db.close()


@pytest.mark.parametrize("batch_per_object", [False, True], ids=["one-batch", "batch-per-object"])
def test_history_free_copy_keeps_every_objects_tid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, batch_per_object: bool
) -> None:
    """RelStorage's history-free copier restores the current objects in OID order, each
    under the tid that last wrote it, committing a batch at every major progress log:
    objects after the root have older tids than the batch before them."""
    if batch_per_object:
        monkeypatch.setattr(copy._ProgressLogger, "_should_major_log", lambda *args: True)
    source, source_blobs, tids = make_source(tmp_path)
    data_dir = make_node(tmp_path, keep_history=False)
    blob_dir = f"blob-dir {tmp_path / 'destination-blobs'}"
    destination = open_storage(data_dir, keep_history=False, relstorage=blob_dir, embedded="true")
    src = FileStorage(str(source), blob_dir=str(source_blobs), read_only=True)
    try:
        destination.copyTransactionsFrom(src)
    finally:
        src.close()
        destination.close()
    db = open_db(data_dir, keep_history=False, relstorage=blob_dir, embedded="true")
    try:
        check_objects(db, current_records(source, source_blobs))
        check_destination(db, tids, keep_history=False)
    finally:
        db.close()


def test_zodbconvert_incremental_after_a_full_copy(tmp_path: Path, keep_history: bool) -> None:
    """The full copy leaves the destination at the source's last tid, so --incremental
    resumes right after it; the objects written since, new ones included, arrive with their
    tids."""
    source, source_blobs, _ = make_source(tmp_path)
    data_dir = make_node(tmp_path, keep_history=keep_history)
    config = _convert_config(tmp_path, source, source_blobs, data_dir, keep_history)
    zodbconvert.main(["zodbconvert", str(config)])
    write_steps(source, source_blobs, range(3, 6))
    zodbconvert.main(["zodbconvert", "--incremental", str(config)])
    db = open_db(
        data_dir,
        keep_history=keep_history,
        relstorage=f"blob-dir {tmp_path / 'reader-blobs'}",
        embedded="true",
    )
    try:
        check_objects(db, current_records(source, source_blobs))
        with db.transaction() as conn:
            assert conn.root()["map5"]["step"] == 5
    finally:
        db.close()


def test_objects_stored_in_a_transaction_begun_with_a_tid_take_that_tid(
    tmp_path: Path, keep_history: bool
) -> None:
    """``tpc_begin(txn, tid)`` then ``store()`` (ZODB's testLoadBeforeConsecutiveTids): the
    stored objects carry no tid of their own, unlike ``restore()``d ones."""
    storage = open_storage(
        make_node(tmp_path, keep_history=keep_history), embedded="true", keep_history=keep_history
    )
    try:
        oid = storage.new_oid()
        serial = None
        for tid in (1, 2):
            txn = TransactionMetaData()
            storage.tpc_begin(txn, p64(tid))
            storage.store(oid, serial, b"state %d" % tid, "", txn)
            storage.tpc_vote(txn)
            serial = storage.tpc_finish(txn)
            assert serial == p64(tid)
        assert storage.load(oid) == (b"state 2", p64(2))
    finally:
        storage.close()


def test_copy_transactions_refuses_tids_that_go_back(tmp_path: Path) -> None:
    source, source_blobs, _ = make_source(tmp_path)
    data_dir = make_node(tmp_path, keep_history=False)
    db = open_db(
        data_dir,
        keep_history=False,
        relstorage=f"blob-dir {tmp_path / 'blobs'}",
        embedded="true",
    )
    try:
        with db.transaction() as conn:  # a commit now: later than every source tid
            conn.root()["first"] = 1
        src = FileStorage(str(source), blob_dir=str(source_blobs), read_only=True)
        try:
            with pytest.raises(Exception, match="not after last tid"):
                db.storage.copyTransactionsFrom(src)
        finally:
            src.close()
        with db.transaction() as conn:
            conn.root()["second"] = 2  # the refused restore left no locks behind
    finally:
        db.close()
