"""The adapter against a one-node cluster run inside the test process (``embedded true``):
commits, loads and polls in both history modes, conflict resolution, ConflictError and
retry, readCurrent, OIDs, blobs, abort after vote, and locks of a killed process expiring
with their lease."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import transaction
import ZODB
from BTrees.Length import Length
from persistent.mapping import PersistentMapping
from ZODB.blob import Blob
from ZODB.Connection import TransactionMetaData
from ZODB.POSException import ConflictError, ReadConflictError

from relstorage_paxos.adapter.link import acquire, release
from relstorage_paxos.errors import NodeUnavailableError, ReadBarrierError
from relstorage_paxos.replica import LockObjects, Record
from tests.adapter.support import Item, assert_conflict_then_retry, open_db


@pytest.fixture
def db(data_dir: Path, keep_history: bool) -> Iterator[ZODB.DB]:
    database = open_db(data_dir, keep_history=keep_history, embedded="true")
    yield database
    database.close()


@pytest.fixture
def other_db(data_dir: Path, keep_history: bool, db: ZODB.DB) -> Iterator[ZODB.DB]:
    """A second database on the same node, as a second application process would be."""
    database = open_db(data_dir, keep_history=keep_history, embedded="true")
    yield database
    database.close()


def test_commit_load_and_poll(db: ZODB.DB, other_db: ZODB.DB) -> None:
    tm1, tm2 = transaction.TransactionManager(), transaction.TransactionManager()
    c1, c2 = db.open(tm1), other_db.open(tm2)
    c1.root()["item"] = Item(1)
    tm1.commit()
    tm2.begin()
    assert c2.root()["item"].value == 1
    c1.root()["item"].value = 2
    tm1.commit()
    assert c2.root()["item"].value == 1, "the snapshot of a running transaction must not move"
    tm2.abort()
    tm2.begin()
    assert c2.root()["item"].value == 2, "the next transaction polls the new commit"
    last = db.lastTransaction()
    assert last == other_db.lastTransaction()
    assert c2.root()._p_serial == c1.root()._p_serial
    c1.close()
    c2.close()


def test_new_oids_are_unique_across_databases(db: ZODB.DB, other_db: ZODB.DB) -> None:
    oids = {db.storage.new_oid() for _ in range(250)} | {
        other_db.storage.new_oid() for _ in range(250)
    }
    assert len(oids) == 500


def test_concurrent_length_increments_are_merged(db: ZODB.DB, other_db: ZODB.DB) -> None:
    with db.transaction() as conn:
        conn.root()["length"] = Length()
    rounds = 15

    def bump(database: ZODB.DB) -> None:
        tm = transaction.TransactionManager()
        conn = database.open(tm)
        for _ in range(rounds):
            for attempt in tm.attempts(10):
                with attempt:
                    conn.root()["length"].change(1)
        conn.close()

    threads = [threading.Thread(target=bump, args=(d,)) for d in (db, other_db, db)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with other_db.transaction() as conn:
        assert conn.root()["length"]() == 3 * rounds


def test_write_write_conflict_then_retry(db: ZODB.DB, other_db: ZODB.DB) -> None:
    assert_conflict_then_retry(db, other_db)


def test_read_current_conflict(db: ZODB.DB, other_db: ZODB.DB) -> None:
    with db.transaction() as conn:
        conn.root()["a"] = Item(0)
        conn.root()["b"] = Item(0)
    tm1, tm2 = transaction.TransactionManager(), transaction.TransactionManager()
    c1, c2 = db.open(tm1), other_db.open(tm2)
    a = c2.root()["a"]
    c2.root()["b"].value = a.value + 1  # loads a: a ghost has no serial to check
    c2.readCurrent(a)
    c1.root()["a"].value = 5
    tm1.commit()
    with pytest.raises(ReadConflictError):
        tm2.commit()
    tm2.abort()
    c1.close()
    c2.close()


def test_abort_after_vote_releases_the_locks(data_dir: Path, keep_history: bool) -> None:
    # A lease far longer than the lock timeout: the second commit succeeds only if the
    # abort released the locks.
    database = open_db(
        data_dir,
        keep_history=keep_history,
        relstorage="commit-lock-timeout 2",
        embedded="true",
        lock_lease="600",
    )
    try:
        with database.transaction() as conn:
            conn.root()["item"] = Item(0)
        storage = database.storage.new_instance()
        storage.sync()
        oid = database.open().root()["item"]._p_oid
        data, serial = storage.load(oid)
        txn = TransactionMetaData()
        storage.tpc_begin(txn)
        storage.store(oid, serial, data, "", txn)
        storage.tpc_vote(txn)
        storage.tpc_abort(txn)
        storage.release()
        with database.transaction() as conn:
            conn.root()["item"].value = 7
        with database.transaction() as conn:
            assert conn.root()["item"].value == 7
    finally:
        database.close()


def test_blobs_round_trip(data_dir: Path, keep_history: bool, tmp_path: Path) -> None:
    writer = open_db(
        data_dir,
        keep_history=keep_history,
        relstorage=f"blob-dir {tmp_path / 'writer-blobs'}",
        embedded="true",
    )
    # Another blob cache: the reader must fetch the blob from the replica's blob_chunk.
    reader = open_db(
        data_dir,
        keep_history=keep_history,
        relstorage=f"blob-dir {tmp_path / 'reader-blobs'}",
        embedded="true",
    )
    try:
        with writer.transaction() as conn:
            conn.root()["blob"] = Blob(b"hello paxos")
        with reader.transaction() as conn, conn.root()["blob"].open() as f:
            assert f.read() == b"hello paxos"
    finally:
        reader.close()
        writer.close()


@pytest.mark.parametrize("consistency", ["session", "local"])
def test_other_consistency_levels_read_and_write(
    data_dir: Path, keep_history: bool, consistency: str
) -> None:
    database = open_db(
        data_dir, keep_history=keep_history, embedded="true", consistency=consistency
    )
    try:
        with database.transaction() as conn:
            conn.root()["map"] = PersistentMapping(level=consistency)
        with database.transaction() as conn:
            assert conn.root()["map"]["level"] == consistency
    finally:
        database.close()


def test_history_is_readable(db: ZODB.DB, keep_history: bool) -> None:
    for value in range(3):
        with db.transaction() as conn:
            conn.root()["v"] = value
    oid = b"\0" * 8
    history = db.storage.history(oid, size=10)
    assert len(history) == (4 if keep_history else 1)
    if keep_history:
        assert len(db.undoLog(0, 10)) >= 3


KILLED_WRITER = """
import os, sys, ZODB.config
from ZODB.Connection import TransactionMetaData
db = ZODB.config.databaseFromString(sys.stdin.read())
storage = db.storage
oid = b"\\0" * 8
data, serial = storage.load(oid)
txn = TransactionMetaData()
storage.tpc_begin(txn)
storage.store(oid, serial, data, "", txn)
storage.tpc_vote(txn)
print("voted", flush=True)
os._exit(9)
"""


def test_locks_of_a_killed_process_expire_with_their_lease(
    data_dir: Path, keep_history: bool, db: ZODB.DB
) -> None:
    with db.transaction() as conn:
        conn.root()["x"] = 0
    from tests.adapter.support import replica_rows, zconfig

    child_config = zconfig(
        data_dir, keep_history=keep_history, relstorage="commit-lock-timeout 1", lock_lease="3"
    )
    child = subprocess.run(
        [sys.executable, "-c", KILLED_WRITER],
        input=child_config,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert child.returncode == 9 and "voted" in child.stdout, child.stderr
    # The dead process's lock on the root is held (granted, in the replica) ...
    held = replica_rows(
        data_dir, "SELECT count(*) FROM paxos_lock_oid WHERE zoid = 0 AND exclusive"
    )
    assert held == [(1,)], held
    # ... until its lease (commit-lock-timeout 1 + lock-lease 3) ends; then this commit,
    # which waits for it, gets the lock.
    with db.transaction() as conn:
        conn.root()["x"] = 1
    assert replica_rows(data_dir, "SELECT count(*) FROM paxos_lock_request") == [(0,)]
    with db.transaction() as conn:
        assert conn.root()["x"] == 1


def test_a_live_transaction_keeps_its_locks_past_its_lease(
    data_dir: Path, keep_history: bool
) -> None:
    database = open_db(
        data_dir,
        keep_history=keep_history,
        relstorage="commit-lock-timeout 1",
        lock_lease="1",
        embedded="true",
    )
    try:
        with database.transaction() as conn:
            conn.root()["x"] = 0
        storage = database.storage
        txn = TransactionMetaData()
        storage.tpc_begin(txn)
        root_state, root_tid = storage.load(b"\0" * 8)
        storage.store(b"\0" * 8, root_tid, root_state, "", txn)
        storage.tpc_vote(txn)
        # Three leases (commit-lock-timeout 1 + lock-lease 1) go by between vote and finish;
        # the leader expires leases every second. Without renewal, finish is refused.
        time.sleep(6.0)
        storage.tpc_finish(txn)
    finally:
        database.close()


def test_a_lock_held_past_the_timeout_fails_the_vote(data_dir: Path, keep_history: bool) -> None:
    database = open_db(
        data_dir, keep_history=keep_history, relstorage="commit-lock-timeout 1", embedded="true"
    )
    try:
        with database.transaction() as conn:
            conn.root()["x"] = 0
        node = acquire(data_dir, embedded=True)
        try:
            far_future_us = time.time_ns() // 1000 + 600_000_000
            holder = LockObjects(b"someone-else", 1, (0,), (), far_future_us)
            node.propose(Record(b"someone-else/lock", holder), 10)
            tm = transaction.TransactionManager()
            conn = database.open(tm)
            conn.root()["x"] = 1
            with pytest.raises(ConflictError, match="not granted"):
                tm.commit()
            tm.abort()
            conn.close()
        finally:
            release(node)
    finally:
        database.close()


def test_a_failing_read_barrier_is_postponed_to_the_next_read(
    db: ZODB.DB, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ZODB is not prepared for its polls to raise: not the one inside ``commit()`` after
    tpc_finish (the transaction is committed, and ``attempts()`` would run it twice), nor
    ``begin()``, ``abort()`` or ``DB.open()`` (which would leak the connection from its
    pool). A failing barrier raises at the transaction's next read instead, cached objects
    included, and the next poll tries again."""
    tm = transaction.TransactionManager(explicit=False)
    conn = db.open(tm)
    conn.root()["value"] = 1
    tm.commit()
    link = conn._storage._adapter.node_link  # shared by every storage instance of the db
    barriers = []

    def cut_off(timeout_s: float) -> int:
        barriers.append(timeout_s)
        raise NodeUnavailableError("test: the node lost its quorum")

    monkeypatch.setattr(link, "read_barrier", cut_off)
    monkeypatch.setattr(link._board, "floor", lambda: None)  # a node cut off has no lease
    conn.root()["value"] = 2
    tm.commit()  # committed; the poll that follows fails, silently
    assert barriers == [30.0]  # the <paxos> section's read-timeout
    tm.begin()
    with pytest.raises(ReadBarrierError, match="lost its quorum"):
        conn.root()["value"]  # the root was cached: the cache was reset
    tm.abort()
    conn.close()
    for _ in range(2 * db.pool.size):
        with pytest.raises(ReadBarrierError), db.transaction() as other:
            other.root()["value"]
    assert len(db.pool.all) <= db.pool.size
    assert len(db.pool.available) == len(db.pool.all)  # none left open
    monkeypatch.undo()
    with db.transaction() as conn:
        assert conn.root()["value"] == 2
