"""An application across its node's outage, on three real node processes: while the
application's node is dead, or cut off from the others, ``DB.open()``, ``begin()`` and
``abort()`` neither raise nor hang, a transaction's first read raises ``ReadBarrierError``
(retryable) instead of serving a snapshot no barrier vouched for, ZODB's connection pool
does not leak, and the same ``DB`` works again once the node is back."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import transaction
import ZODB
from ZODB.Connection import TransactionMetaData
from ZODB.utils import z64

from relstorage_paxos.errors import NodeUnavailableError, ReadBarrierError
from tests.adapter.support import open_db
from tests.integration.processes import ProcessCluster, running_cluster, wait_for

ATTEMPTS = 12
"""Transactions tried during an outage: more than ZODB's default pool size (7)."""


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ProcessCluster]:
    with running_cluster(tmp_path, 3) as running:
        yield running


@pytest.fixture
def db(cluster: ProcessCluster) -> Iterator[ZODB.DB]:
    database = open_db(cluster.nodes[1].data_dir, keep_history=False, read_timeout="2")
    with database.transaction() as conn:
        conn.root()["value"] = 1
    yield database
    database.close()


def _read(db: ZODB.DB) -> int:
    with db.transaction() as conn:
        value: int = conn.root()["value"]
        return value


def _refused(db: ZODB.DB, reasons: list[str]) -> bool:
    try:
        _read(db)
    except ReadBarrierError as exc:
        reasons.append(str(exc))
        return True
    return False


def _assert_outage_is_contained(db: ZODB.DB) -> list[str]:
    """Wait for the node's read lease to lapse (reads are served while it runs), then try
    more transactions than the pool holds: each ends with ReadBarrierError, and none
    leaves a connection open."""
    reasons: list[str] = []
    wait_for("a read refused for want of a barrier", lambda: _refused(db, reasons), 20.0)
    for _ in range(ATTEMPTS):
        assert _refused(db, reasons)
        tm = transaction.TransactionManager()
        conn = db.open(tm)  # does not raise
        tm.begin()
        tm.abort()
        conn.close()
    assert len(db.pool.all) <= db.pool.size
    assert len(db.pool.available) == len(db.pool.all), "a connection leaked from the pool"
    return reasons


def test_the_applications_own_node_killed_and_restarted(
    cluster: ProcessCluster, db: ZODB.DB
) -> None:
    node = cluster.nodes[1]
    node.kill()
    reasons = _assert_outage_is_contained(db)
    assert "sequencer.sock" in reasons[-1] or "node at unix:" in reasons[-1], reasons[-1]
    node.start()
    wait_for("the same DB reading again", lambda: _read(db) == 1, 30.0)
    with db.transaction() as conn:
        conn.root()["value"] = 2
    assert _read(db) == 2


def test_the_applications_node_cut_off_from_the_others(
    cluster: ProcessCluster, db: ZODB.DB
) -> None:
    others = [cluster.nodes[2], cluster.nodes[3]]
    for other in others:
        other.pause()
    try:
        reasons = _assert_outage_is_contained(db)
        # The node knows it hears no leader: barriers fail at once, not after read-timeout.
        assert "known no leader" in reasons[-1], reasons[-1]
    finally:
        for other in others:
            other.resume()
    wait_for("the same DB reading again", lambda: _refused(db, []) is False, 30.0)
    with db.transaction() as conn:
        conn.root()["value"] = 3
    assert _read(db) == 3


def test_opening_waits_for_the_node_up_to_connect_timeout(cluster: ProcessCluster) -> None:
    """As ZEO's client waits for its server: an application started before its node (or
    while it restarts) opens once the node answers, and fails with a clear error naming
    the setting if it does not answer in time."""
    node = cluster.nodes[1]
    node.kill()
    with pytest.raises(NodeUnavailableError, match=r"connect-timeout 0\.5 s"):
        open_db(node.data_dir, keep_history=False, connect_timeout="0.5")
    starter = threading.Timer(0.5, node.start)
    starter.start()
    try:
        database = open_db(node.data_dir, keep_history=False, connect_timeout="60")
    finally:
        starter.join()
    try:
        with database.transaction() as conn:
            conn.root()["opened"] = True
    finally:
        database.close()


def test_an_abort_does_not_wait_for_a_dead_node(
    cluster: ProcessCluster, db: ZODB.DB, caplog: pytest.LogCaptureFixture
) -> None:
    """A vote took locks, then its node died: the abort's release is tried once and given
    up (the leader releases a dead node's locks through ExpireNodes), not retried for
    seconds while the application waits."""
    storage = db.storage.new_instance()
    try:
        state, serial = storage.load(z64)
        meta = TransactionMetaData()
        storage.tpc_begin(meta)
        storage.store(z64, serial, state, "", meta)
        storage.tpc_vote(meta)
        cluster.nodes[1].kill()
        with caplog.at_level(logging.INFO, logger="relstorage_paxos.adapter.writes"):
            storage.tpc_abort(meta)
    finally:
        storage.release()
    messages = [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if m.startswith("retrying") and "/release" in m], messages
    assert any("could not release" in m and "is unreachable" in m for m in messages), messages
