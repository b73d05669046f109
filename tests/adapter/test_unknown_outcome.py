"""``tpc_finish`` when its node dies after the vote and stays down past the transaction's
patience (commit lock timeout plus lock lease), on a real one-node cluster: finish ends with
an error that says the outcome is not confirmed, instead of hanging; once the node is back,
the transaction's fate is one of the two the error allows (here: not committed, since the
commit never reached the node), and the object can be committed again."""

from __future__ import annotations

from pathlib import Path

import pytest
from ZODB.POSException import StorageError

from tests.adapter.support import Item, open_db, vote_a_write
from tests.integration.processes import running_cluster, wait_for


def test_finish_on_a_dead_node_says_the_outcome_is_not_confirmed(tmp_path: Path) -> None:
    with running_cluster(tmp_path, 1) as cluster:
        node = cluster.nodes[1]
        db = open_db(
            node.data_dir,
            keep_history=False,
            relstorage="commit-lock-timeout 1",
            lock_lease="1",
            connect_timeout="1",
        )
        try:
            with db.transaction() as conn:
                conn.root()["x"] = Item(0)
            with db.transaction() as conn:
                oid = conn.root()["x"]._p_oid
            storage, txn = vote_a_write(db, oid, "never")
            node.kill()
            with pytest.raises(
                StorageError, match=r"not confirmed by node 1.*may still be applied"
            ):
                storage.tpc_finish(txn)
            storage.tpc_abort(txn)
            storage.release()
            node.start()
            wait_for("node 1 back", node.status, 30.0)

            def committed_again() -> bool:
                with db.transaction() as conn:
                    assert conn.root()["x"].value == 0  # the unconfirmed commit never landed
                    conn.root()["x"].value = 1
                return True

            wait_for("a commit of the object after the restart", committed_again, 60.0)
            with db.transaction() as conn:
                assert conn.root()["x"].value == 1
        finally:
            db.close()
