"""The adapter against three real node processes (``relstorage-paxos serve``) on 127.0.0.1:
databases on node 1 and node 2 commit through their own node; a commit finished on one is
seen by the next transaction on the other (linearizable); concurrent increments of one
BTrees.Length, and inserts into one BTree bucket, from both nodes merge by conflict
resolution; a plain object written from both gets one ConflictError, and the retry
succeeds."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import transaction
import ZODB
from BTrees.Length import Length
from BTrees.OOBTree import OOBTree

from relstorage_paxos.errors import ReadBarrierError
from tests.adapter.support import assert_conflict_then_retry, open_db
from tests.integration.processes import ProcessCluster, running_cluster, wait_for


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessCluster]:
    with running_cluster(tmp_path_factory.mktemp("cluster"), 3) as running:
        yield running


@pytest.fixture(scope="module")
def dbs(cluster: ProcessCluster) -> Iterator[tuple[ZODB.DB, ZODB.DB]]:
    db1 = open_db(cluster.nodes[1].data_dir, keep_history=False)
    db2 = open_db(cluster.nodes[2].data_dir, keep_history=False)
    yield db1, db2
    db1.close()
    db2.close()


def test_a_commit_on_one_node_is_seen_by_the_next_transaction_on_another(
    dbs: tuple[ZODB.DB, ZODB.DB],
) -> None:
    db1, db2 = dbs
    tm1, tm2 = transaction.TransactionManager(), transaction.TransactionManager()
    c1, c2 = db1.open(tm1), db2.open(tm2)
    for value in range(10):
        c1.root()["counter"] = value
        tm1.commit()
        tm2.begin()
        assert c2.root()["counter"] == value
        tm2.abort()
        # and back the other way
        c2.root()["echo"] = value
        tm2.commit()
        tm1.begin()
        assert c1.root()["echo"] == value
    c1.close()
    c2.close()


def test_concurrent_length_increments_from_two_nodes_merge(
    dbs: tuple[ZODB.DB, ZODB.DB],
) -> None:
    db1, db2 = dbs
    with db1.transaction() as conn:
        conn.root()["length"] = Length()
    rounds = 10
    failures: list[BaseException] = []

    def bump(database: ZODB.DB) -> None:
        tm = transaction.TransactionManager()
        conn = database.open(tm)
        try:
            for _ in range(rounds):
                for attempt in tm.attempts(20):
                    with attempt:
                        conn.root()["length"].change(1)
        except BaseException as exc:
            failures.append(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=bump, args=(d,)) for d in (db1, db2, db1, db2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures
    for database in (db1, db2):
        with database.transaction() as conn:
            assert conn.root()["length"]() == 4 * rounds


def test_inserts_into_one_btree_bucket_from_two_nodes_merge(
    dbs: tuple[ZODB.DB, ZODB.DB],
) -> None:
    """Both transactions read the bucket before either commits, so the second one's vote
    meets a conflict that only the bucket's conflict resolution can settle: its commit()
    must succeed at once, with both insertions kept."""
    db1, db2 = dbs
    with db1.transaction() as conn:
        conn.root()["tree"] = OOBTree({"base": 0})
    tm1, tm2 = transaction.TransactionManager(), transaction.TransactionManager()
    c1, c2 = db1.open(tm1), db2.open(tm2)
    try:
        tree1, tree2 = c1.root()["tree"], c2.root()["tree"]
        assert tree1["base"] == tree2["base"] == 0  # both have read the bucket
        read_serial = tree2._p_serial  # a one-bucket tree keeps the bucket in its own state
        tree1["from node 1"] = 1
        tm1.commit()
        assert tree1._p_serial != read_serial  # so node 2 now writes over a stale state
        tree2["from node 2"] = 2
        tm2.commit()  # a ConflictError here would mean the conflict was not resolved
    finally:
        c1.close()
        c2.close()
    for database in (db1, db2):
        with database.transaction() as conn:
            tree = conn.root()["tree"]
            assert dict(tree.items()) == {"base": 0, "from node 1": 1, "from node 2": 2}
            assert tree._firstbucket._next is None  # one bucket all along


def test_a_plain_object_written_from_two_nodes_conflicts_once(dbs: tuple[ZODB.DB, ZODB.DB]) -> None:
    assert_conflict_then_retry(*dbs)


def test_every_replica_converges(cluster: ProcessCluster, dbs: tuple[ZODB.DB, ZODB.DB]) -> None:
    db1, _ = dbs
    with db1.transaction() as conn:
        conn.root()["last"] = "converged"
    views = cluster.wait_converged()
    assert len({v.last_tid for v in views}) == 1
    db3 = open_db(Path(cluster.nodes[3].data_dir), keep_history=False, consistency="session")
    try:
        with db3.transaction() as conn:
            assert conn.root()["last"] == "converged"
    finally:
        db3.close()


def test_local_reads_are_refused_once_the_node_lags_beyond_max_lag(tmp_path: Path) -> None:
    with running_cluster(tmp_path, 3) as cluster:
        data_dir = cluster.nodes[1].data_dir
        db = open_db(data_dir, keep_history=False, consistency="local", max_lag="0.5")
        tm = transaction.TransactionManager()
        conn = db.open(tm)
        try:
            conn.root()["before"] = 1
            tm.commit()
            cluster.nodes[2].stop()
            cluster.nodes[3].stop()
            # Node 1 loses its leader (or, leading, its quorum) within an election timeout;
            # half a second later it refuses local reads instead of serving stale data.
            wait_for(
                "node 1 without a leader",
                lambda: cluster.nodes[1].status().leader_id is None,
                10.0,
            )
            refusals: list[ReadBarrierError] = []

            def refused() -> bool:
                tm.begin()  # a refusal is postponed to the transaction's first read
                try:
                    conn.root()["before"]
                except ReadBarrierError as exc:
                    refusals.append(exc)
                    return True
                finally:
                    tm.abort()
                return False  # still within max-lag of the last moment in sync

            wait_for("a refused local read", refused, 10.0)
            assert "max-lag 0.5 s" in str(refusals[0])
        finally:
            conn.close()
            db.close()
