"""A node killed while an application's transaction through it holds a hot object's lock
between vote and finish, on three real node processes: the leader releases that lock through
the log (ExpireNodes) once the node has been silent for ``node-timeout``, so another node's
application commits the object long before the lock's lease (30 s plus the commit lock
timeout) would have ended; and the killed node's transaction never commits afterwards, even
when its application tries to finish it once the node is back."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from ZODB.POSException import ConflictError

from tests.adapter.support import Item, open_db, replica_rows, vote_a_write
from tests.integration.processes import NodeProcess, ProcessCluster, running_cluster, wait_for

SURVIVOR_LOCK_TIMEOUT_S = 15
"""The surviving writer's commit lock timeout: a guard against a hang, half the lock lease
alone, so the test fails if only the lease released the lock."""


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ProcessCluster]:
    with running_cluster(tmp_path, 3) as running:
        yield running


def _pick(cluster: ProcessCluster, victim_role: str) -> tuple[NodeProcess, NodeProcess]:
    """(victim, survivor): the survivor is a follower that stays up."""
    leader = cluster.wait_for_leader()
    followers = [n for n in cluster.nodes.values() if n is not leader]
    if victim_role == "leader":
        return leader, followers[0]
    return followers[0], followers[1]


@pytest.mark.parametrize("victim_role", ["leader", "follower"])
def test_a_killed_nodes_lock_is_released_and_its_transaction_never_commits(
    cluster: ProcessCluster, victim_role: str, record_property: object
) -> None:
    victim, survivor = _pick(cluster, victim_role)
    survivor_db = open_db(
        survivor.data_dir,
        keep_history=False,
        relstorage=f"commit-lock-timeout {SURVIVOR_LOCK_TIMEOUT_S}",
    )
    victim_db = open_db(victim.data_dir, keep_history=False)
    try:
        with survivor_db.transaction() as conn:
            conn.root()["hot"] = Item(0)
        with victim_db.transaction() as conn:  # linearizable: it sees the commit
            oid = conn.root()["hot"]._p_oid
        # The victim's application votes: it holds the hot object's lock.
        storage, txn = vote_a_write(victim_db, oid, "never")

        victim.kill()
        killed_at = time.monotonic()
        with survivor_db.transaction() as conn:
            conn.root()["hot"].value = 2
        stall_s = time.monotonic() - killed_at
        print(f"{victim_role} killed: the hot object committed elsewhere {stall_s:.2f} s later")
        record_property("stall_s", round(stall_s, 3))  # type: ignore[operator]

        # It was ExpireNodes, applied on every live node, that let it through.
        for node in cluster.running():
            assert (
                replica_rows(
                    node.data_dir,
                    f"SELECT 1 FROM paxos_lock_request WHERE node_id = {victim.node_id}",
                )
                == []
            ), node.node_id
        logs = "".join(node.log_text() for node in cluster.running())
        assert f"ExpireNodes(node_ids=({victim.node_id},))" in logs

        victim.start()
        wait_for(f"node {victim.node_id} back", victim.status, 30.0)
        with pytest.raises(ConflictError, match="holds no exclusive lock"):
            storage.tpc_finish(txn)
        storage.tpc_abort(txn)
        storage.release()
        cluster.wait_converged()
        for db in (survivor_db, victim_db):
            with db.transaction() as conn:
                assert conn.root()["hot"].value == 2
    finally:
        survivor_db.close()
        victim_db.close()
