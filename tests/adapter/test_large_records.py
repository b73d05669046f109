"""Records larger than ``batch-bytes-max`` commit; records over ``max-record-bytes`` are
refused with ``RecordTooLargeError`` naming the setting, at vote when the objects or blobs
alone are over it (ZODB then aborts cleanly), at finish otherwise, and never leave their
locks behind or stop the node. A one-node cluster in the test process, with small limits."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import transaction
import ZODB
from ZODB.blob import Blob
from ZODB.Connection import TransactionMetaData

from relstorage_paxos import config
from relstorage_paxos.adapter.link import acquire, release
from relstorage_paxos.errors import RecordTooLargeError
from relstorage_paxos.replica import CommitTxn, ObjectWrite, Record, encode_record
from relstorage_paxos.transport.sequencer import SequencerClient
from tests.adapter.support import Item, make_node, open_db

KIB = 1024
BATCH_BYTES = 64 * KIB
RECORD_BYTES = 1024 * KIB


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return make_node(
        tmp_path, keep_history=False, batch_bytes_max=BATCH_BYTES, max_record_bytes=RECORD_BYTES
    )


@pytest.fixture
def db(data_dir: Path, tmp_path: Path) -> Iterator[ZODB.DB]:
    # A lease far longer than the lock timeout: a later commit of the same object succeeds
    # only if the refused transaction's locks were released.
    database = open_db(
        data_dir,
        keep_history=False,
        relstorage=f"commit-lock-timeout 2\n    blob-dir {tmp_path / 'blobs'}",
        embedded="true",
        lock_lease="600",
    )
    yield database
    database.close()


def commit_value(db: ZODB.DB, value: object) -> None:
    with db.transaction() as conn:
        conn.root()["item"] = Item(value)  # type: ignore[arg-type]


def read_value(db: ZODB.DB) -> object:
    with db.transaction() as conn:
        return conn.root()["item"].value


def test_a_record_over_batch_bytes_max_commits(db: ZODB.DB) -> None:
    big = b"b" * (8 * BATCH_BYTES)
    commit_value(db, big)
    assert read_value(db) == big
    commit_value(db, 1)
    assert read_value(db) == 1


def test_an_object_over_max_record_bytes_fails_the_vote(
    db: ZODB.DB, caplog: pytest.LogCaptureFixture
) -> None:
    commit_value(db, 0)
    tm = transaction.TransactionManager()
    conn = db.open(tm)
    conn.root()["item"].value = b"x" * (RECORD_BYTES + 1)
    with pytest.raises(RecordTooLargeError, match=r"MiB\) is over max-record-bytes \(1048576"):
        tm.commit()
    tm.abort()
    conn.close()
    assert "second phase" not in caplog.text, "refused at finish, not at vote"
    commit_value(db, 2)
    assert read_value(db) == 2


def test_a_blob_over_max_record_bytes_fails_the_vote(
    db: ZODB.DB, caplog: pytest.LogCaptureFixture
) -> None:
    commit_value(db, 0)
    tm = transaction.TransactionManager()
    conn = db.open(tm)
    conn.root()["item"].value = 1
    conn.root()["blob"] = Blob(b"z" * (RECORD_BYTES + 1))
    with pytest.raises(RecordTooLargeError, match="max-record-bytes"):
        tm.commit()
    tm.abort()
    conn.close()
    assert "second phase" not in caplog.text, "refused at finish, not at vote"
    commit_value(db, 3)  # the item was locked at vote: the abort released it
    assert read_value(db) == 3
    with db.transaction() as c:
        c.root()["blob"] = Blob(b"z" * (RECORD_BYTES // 2))
    with db.transaction() as c, c.root()["blob"].open() as f:
        assert len(f.read()) == RECORD_BYTES // 2


def test_a_record_refused_at_finish_releases_its_locks(
    db: ZODB.DB, caplog: pytest.LogCaptureFixture
) -> None:
    """Objects just under the limit pass the vote; the CommitTxn around them is over it."""
    caplog.set_level(logging.WARNING)
    commit_value(db, 0)
    storage = db.storage.new_instance()
    try:
        storage.sync()
        oid = db.open().root()["item"]._p_oid
        _, serial = storage.load(oid)
        txn = TransactionMetaData()
        storage.tpc_begin(txn)
        storage.store(oid, serial, b"s" * (RECORD_BYTES - 8), "", txn)
        storage.tpc_vote(txn)
        with pytest.raises(RecordTooLargeError, match="max-record-bytes"):
            storage.tpc_finish(txn)
        storage.tpc_abort(txn)
    finally:
        storage.release()
    commit_value(db, 4)
    assert read_value(db) == 4
    assert "could not release" not in caplog.text


def test_the_node_refuses_a_record_over_its_limit_from_any_client(data_dir: Path) -> None:
    """A client that believes in a larger limit (another node.toml) is refused by the node
    itself, with the same error."""
    link = acquire(data_dir, embedded=True)
    try:
        settings = config.load(data_dir)
        client = SequencerClient(
            f"unix:{data_dir / config.SOCKET_FILE}",
            settings.cluster_id,
            max_record_bytes=4 * RECORD_BYTES,
            max_message_bytes=5 * RECORD_BYTES,
        )
        write = ObjectWrite(1, 0, b"x" * RECORD_BYTES)
        record = encode_record(Record(b"r", CommitTxn(b"t", 1, b"", b"", b"", (write,), ())))
        try:
            with pytest.raises(RecordTooLargeError, match="is over max-record-bytes"):
                client.propose(b"r", record, timeout_s=10)
            assert client.status().serving
        finally:
            client.close()
    finally:
        release(link)
