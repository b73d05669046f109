"""zodbconvert out of a 3-node cluster of real node processes, with blobs: into a FileStorage
and into stock RelStorage+SQLite, in both history modes; every transaction (tid, user,
description, extension) and every record (oid, tid, state, blob) of the destination is
compared with the source's, which is read through another node than the one the data was
committed through. And a round trip FileStorage -> cluster -> FileStorage keeps every tid.

zodbconvert runs in this process (``relstorage.zodbconvert.main``, the script's entry point,
as test_restore.py runs it into a cluster), reading from its node over the node's socket."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import transaction
import ZODB
from persistent.mapping import PersistentMapping
from relstorage import zodbconvert
from ZODB.blob import Blob
from ZODB.FileStorage import FileStorage
from ZODB.POSException import POSKeyError

from tests.adapter.support import open_db, open_storage, relstorage_section
from tests.integration.processes import ProcessCluster, running_cluster

Record = tuple[bytes, bytes, bytes | None, bytes | None]
"""(oid, tid, state, blob content or None)."""
Txn = tuple[bytes, bytes, bytes, dict[str, Any], list[Record]]
"""(tid, user, description, extension, records in OID order)."""


@dataclass
class Source:
    cluster: ProcessCluster
    keep_history: bool
    root: Path

    def section(self, name: str, blob_dir: Path, node_id: int) -> str:
        return relstorage_section(
            self.cluster.nodes[node_id].data_dir,
            keep_history=self.keep_history,
            relstorage=f"blob-dir {blob_dir}",
            name=name,
        )


def commit(db: ZODB.DB, user: str, description: str, change: Any) -> None:
    tm = transaction.TransactionManager()
    conn = db.open(tm)
    txn = tm.get()
    txn.setUser(user)
    txn.note(description)
    txn.setExtendedInfo("change", description)
    change(conn.root())
    tm.commit()
    conn.close()


def write_history(db: ZODB.DB) -> None:
    """New objects, changes, a blob written twice, and objects last changed by different
    transactions (so a history-free copy batches objects of several tids)."""

    def rewrite_blob(root: Any) -> None:
        with root["blob"].open("w") as f:
            f.write(b"second blob")

    commit(db, "alice", "maps", lambda r: r.update(a=PersistentMapping(x=1), b=PersistentMapping()))
    commit(db, "bob", "blob", lambda r: r.update(blob=Blob(b"first blob")))
    commit(db, "alice", "change a", lambda r: r["a"].update(x=2))
    commit(db, "carol", "rewrite blob", rewrite_blob)
    commit(db, "bob", "change b", lambda r: r["b"].update(y=3, nested=PersistentMapping()))


@pytest.fixture(scope="module", params=[False, True], ids=["history-free", "history-preserving"])
def source(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Source]:
    """A 3-node cluster holding ``write_history``, committed through node 1."""
    keep_history = bool(request.param)
    root = tmp_path_factory.mktemp("hp" if keep_history else "hf")
    with running_cluster(root, 3, keep_history=keep_history) as cluster:
        db = open_db(
            cluster.nodes[1].data_dir,
            keep_history=keep_history,
            relstorage=f"blob-dir {root / 'writer-blobs'}",
        )
        try:
            write_history(db)
        finally:
            db.close()
        yield Source(cluster, keep_history, root)


def blob_content(storage: Any, oid: bytes, tid: bytes) -> bytes | None:
    try:
        filename = storage.loadBlob(oid, tid)
    except POSKeyError:  # not a blob record
        return None
    with open(filename, "rb") as f:
        return f.read()


def transactions(storage: Any) -> list[Txn]:
    """Everything the storage's iterator shows, blobs included."""
    txns = []
    for txn in storage.iterator():
        records = sorted(
            (r.oid, r.tid, r.data, blob_content(storage, r.oid, r.tid) if r.data else None)
            for r in txn
        )
        txns.append((txn.tid, txn.user, txn.description, dict(txn.extension), records))
    return txns


def convert(tmp_path: Path, source_section: str, destination_section: str) -> None:
    config = tmp_path / "convert.conf"
    config.write_text(f"%import relstorage_paxos\n{source_section}\n{destination_section}\n")
    zodbconvert.main(["zodbconvert", str(config)])


def source_transactions(source: Source, tmp_path: Path) -> list[Txn]:
    """The cluster's transactions as node 3 shows them."""
    storage = open_storage(
        source.cluster.nodes[3].data_dir,
        keep_history=source.keep_history,
        relstorage=f"blob-dir {tmp_path / 'compare-blobs'}",
    )
    try:
        return transactions(storage)
    finally:
        storage.close()


def assert_same(expected: list[Txn], actual: list[Txn], keep_history: bool) -> None:
    assert actual == expected
    # History-free: the current objects' four tids (root, a, blob, b and its child).
    assert len(expected) == (6 if keep_history else 4), expected
    blobs = {record[3] for txn in expected for record in txn[4]}
    assert b"second blob" in blobs, "the current blob was copied"
    assert (b"first blob" in blobs) == keep_history, "history-free keeps current states only"
    if keep_history:
        users = [txn[1] for txn in expected]
        assert users[-5:] == [b"/ alice", b"/ bob", b"/ alice", b"/ carol", b"/ bob"], users
        assert expected[-1][3] == {"change": "change b"}


def test_into_a_filestorage(source: Source, tmp_path: Path) -> None:
    path, blobs = tmp_path / "copy.fs", tmp_path / "copy-blobs"
    destination = f"<filestorage destination>\n  path {path}\n  blob-dir {blobs}\n</filestorage>"
    convert(tmp_path, source.section("source", tmp_path / "source-blobs", 2), destination)
    copy = FileStorage(str(path), blob_dir=str(blobs), read_only=True)
    try:
        copied = transactions(copy)
    finally:
        copy.close()
    assert_same(source_transactions(source, tmp_path), copied, source.keep_history)


def test_into_stock_relstorage_sqlite(source: Source, tmp_path: Path) -> None:
    data_dir, blobs = tmp_path / "sqlite", tmp_path / "sqlite-blobs"
    data_dir.mkdir()
    stock = f"""
  <relstorage destination>
    keep-history {"true" if source.keep_history else "false"}
    blob-dir {blobs}
    <sqlite3>
      data-dir {data_dir}
    </sqlite3>
  </relstorage>"""
    convert(tmp_path, source.section("source", tmp_path / "source-blobs", 2), stock)
    copy = ZODB.config.storageFromString(f"%import relstorage\n{stock.replace(' destination', '')}")
    try:
        copied = transactions(copy)
    finally:
        copy.close()
    assert_same(source_transactions(source, tmp_path), copied, source.keep_history)


def test_round_trip_through_a_cluster_keeps_every_tid(tmp_path: Path) -> None:
    """FileStorage -> 3-node cluster (into node 1) -> FileStorage (out of node 2)."""
    original, original_blobs = tmp_path / "original.fs", tmp_path / "original-blobs"
    db = ZODB.DB(FileStorage(str(original), blob_dir=str(original_blobs)))
    try:
        write_history(db)
    finally:
        db.close()
    with running_cluster(tmp_path / "c", 3, keep_history=True) as cluster:
        through = Source(cluster, True, tmp_path)
        fs_section = "<filestorage {}>\n  path {}\n  blob-dir {}\n</filestorage>"
        convert(
            tmp_path,
            fs_section.format("source", original, original_blobs),
            through.section("destination", tmp_path / "in-blobs", 1),
        )
        back, back_blobs = tmp_path / "back.fs", tmp_path / "back-blobs"
        convert(
            tmp_path,
            through.section("source", tmp_path / "out-blobs", 2),
            fs_section.format("destination", back, back_blobs),
        )
    storages = [
        FileStorage(str(path), blob_dir=str(blobs), read_only=True)
        for path, blobs in ((original, original_blobs), (back, back_blobs))
    ]
    try:
        before, after = (transactions(s) for s in storages)
    finally:
        for storage in storages:
            storage.close()
    assert len(before) == 6, "the root's creation and write_history's five"
    assert_same(before, after, keep_history=True)
