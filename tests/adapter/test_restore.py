"""Restores: ``copyTransactionsFrom`` and zodbconvert from a FileStorage (with a blob) into a
cluster keep every transaction's tid, user and description, states and blob; new OIDs
allocated afterwards never collide with the restored ones; and the restored transactions
are visible on every node."""

from __future__ import annotations

from pathlib import Path

import pytest
import transaction
import ZODB
from persistent.mapping import PersistentMapping
from relstorage import zodbconvert
from ZODB.blob import Blob
from ZODB.FileStorage import FileStorage
from ZODB.utils import u64

from tests.adapter.support import make_node, open_db


def make_source(tmp_path: Path) -> tuple[Path, Path, list[bytes]]:
    """A FileStorage with four transactions; returns its path, blob dir and tids."""
    path, blobs = tmp_path / "source.fs", tmp_path / "source-blobs"
    db = ZODB.DB(FileStorage(str(path), blob_dir=str(blobs)))
    try:
        for step in range(3):
            tm = transaction.TransactionManager()
            conn = db.open(tm)
            tm.get().note(f"step {step}")
            tm.get().setUser("converter")
            conn.root()[f"map{step}"] = PersistentMapping(step=step)
            if step == 1:
                conn.root()["blob"] = Blob(b"restored blob")
            if step == 2:
                conn.root()["map0"]["step"] = "changed"
            tm.commit()
            conn.close()
    finally:
        db.close()
    source = FileStorage(str(path), read_only=True)
    try:
        tids = [txn.tid for txn in source.iterator()]
    finally:
        source.close()
    return path, blobs, tids


@pytest.fixture(params=[False, True], ids=["history-free", "history-preserving"])
def keep_history(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


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


def test_zodbconvert_from_filestorage(tmp_path: Path, keep_history: bool) -> None:
    source, source_blobs, tids = make_source(tmp_path)
    data_dir = make_node(tmp_path, keep_history=keep_history)
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
    zodbconvert.main(["zodbconvert", str(config)])
    db = open_db(
        data_dir,
        keep_history=keep_history,
        relstorage=f"blob-dir {tmp_path / 'reader-blobs'}",
        embedded="true",
    )
    try:
        check_destination(db, tids, keep_history)
    finally:
        db.close()


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
