"""Vote against held locks, on a one-node cluster run in the test process: the lock wait
follows ``commit_lock_timeout`` as the locker has it now (RelStorage, its tests and
operators change it after the adapter is made), and a readCurrent OID that the replica
already holds in a newer revision fails at once with a read conflict instead of waiting for
the locks, as stock RelStorage's check does."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import transaction
import ZODB
from relstorage.adapters.interfaces import (
    UnableToLockRowsToModifyError,
    UnableToLockRowsToReadCurrentError,
)
from relstorage.storage.interfaces import VoteReadConflictError
from ZODB.Connection import TransactionMetaData
from ZODB.utils import u64

from relstorage_paxos.adapter.link import NodeLink, acquire, release
from relstorage_paxos.replica import Granted, LockObjects, Record, ReleaseTxn
from tests.adapter.support import Item, open_db

HOLDER = b"someone-else"


@pytest.fixture
def db(data_dir: Path, keep_history: bool) -> Iterator[ZODB.DB]:
    """Its configured commit-lock-timeout is long: a test that waited for it would fail
    its own expectations, not hang."""
    database = open_db(
        data_dir, keep_history=keep_history, relstorage="commit-lock-timeout 5", embedded="true"
    )
    with database.transaction() as conn:
        conn.root()["a"] = Item(0)
        conn.root()["b"] = Item(0)
    yield database
    database.close()


@pytest.fixture
def node(data_dir: Path, db: ZODB.DB) -> Iterator[NodeLink]:
    link = acquire(data_dir, embedded=True)
    yield link
    release(link)


def hold_lock(node: NodeLink, oid: bytes) -> None:
    """Lock ``oid`` for another transaction, as a process that voted and went quiet."""
    far_future_us = time.time_ns() // 1000 + 600_000_000
    body = LockObjects(HOLDER, node.node_id, (int.from_bytes(oid, "big"),), (), far_future_us)
    _, outcome = node.propose(Record(HOLDER + b"/lock", body), 10)
    assert isinstance(outcome, Granted), outcome


def let_go(node: NodeLink) -> None:
    node.propose(Record(HOLDER + b"/release", ReleaseTxn(HOLDER)), 10)


def oids(db: ZODB.DB) -> tuple[bytes, bytes]:
    with db.transaction() as conn:
        return conn.root()["a"]._p_oid, conn.root()["b"]._p_oid


def test_the_lock_wait_follows_a_timeout_changed_after_the_adapter_was_made(
    db: ZODB.DB, node: NodeLink
) -> None:
    _, b_oid = oids(db)
    hold_lock(node, b_oid)
    db.storage._adapter.locker.commit_lock_timeout = 0.3  # shared by every instance
    tm = transaction.TransactionManager()
    conn = db.open(tm)
    conn.root()["b"].value = 1
    with pytest.raises(UnableToLockRowsToModifyError, match=r"commit-lock-timeout 0\.3 s"):
        tm.commit()
    tm.abort()
    conn.close()
    let_go(node)
    with db.transaction() as conn:  # the refused request left nothing behind
        conn.root()["b"].value = 2


def test_a_read_current_oid_newer_here_fails_without_waiting_for_locks(
    db: ZODB.DB, data_dir: Path, keep_history: bool, node: NodeLink
) -> None:
    a_oid, b_oid = oids(db)
    other = open_db(data_dir, keep_history=keep_history, embedded="true")  # its own cache
    storage = other.storage.new_instance()
    try:
        old_a_tid = storage.load(a_oid)[1]
        b_state, b_tid = storage.load(b_oid)
        txn = TransactionMetaData()
        storage.tpc_begin(txn)
        with db.transaction() as conn:  # a moves on
            conn.root()["a"].value = 1
        hold_lock(node, b_oid)  # and b is locked: waiting for it could only time out
        storage.checkCurrentSerialInTransaction(a_oid, old_a_tid, txn)
        storage.store(b_oid, b_tid, b_state, "", txn)
        with pytest.raises(VoteReadConflictError) as info:
            storage.tpc_vote(txn)
        assert info.value.oid == a_oid
        storage.tpc_abort(txn)
    finally:
        storage.release()
        other.close()
    let_go(node)


def test_a_read_current_oid_locked_for_writing_fails_at_once_with_a_read_conflict(
    db: ZODB.DB, data_dir: Path, keep_history: bool, node: NodeLink
) -> None:
    """As RelStorage on PostgreSQL (shared locks with NOWAIT): the holder is about to write
    the object, so waiting could only end in a failed read-current check. A wait would end
    in UnableToLockRowsToModifyError after the commit lock timeout instead."""
    a_oid, b_oid = oids(db)
    db.storage._adapter.locker.commit_lock_timeout = 0.3
    hold_lock(node, a_oid)
    storage = db.storage.new_instance()
    try:
        a_tid = storage.load(a_oid)[1]
        b_state, b_tid = storage.load(b_oid)
        txn = TransactionMetaData()
        storage.tpc_begin(txn)
        storage.checkCurrentSerialInTransaction(a_oid, a_tid, txn)
        storage.store(b_oid, b_tid, b_state, "", txn)
        with pytest.raises(
            UnableToLockRowsToReadCurrentError, match=f"readCurrent oids \\[{u64(a_oid)}\\]"
        ):
            storage.tpc_vote(txn)
        storage.tpc_abort(txn)
        # It left no request behind: b is free for the next writer.
        txn = TransactionMetaData()
        storage.tpc_begin(txn)
        storage.store(b_oid, b_tid, b_state, "", txn)
        storage.tpc_vote(txn)
        storage.tpc_finish(txn)
    finally:
        storage.release()
    let_go(node)
