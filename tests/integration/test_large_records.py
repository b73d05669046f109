"""A 16 MiB object and a 16 MiB blob committed through three real node processes over real
gRPC, while one node is down; it comes back, catches up from the log (one large entry per
catch-up reply) and ends with the same replica as the others (running hash), from which an
application on it reads both back."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import transaction
from ZODB.blob import Blob

from relstorage_paxos import config
from tests.adapter.support import Item, open_db
from tests.integration.processes import CLI, running_cluster, wait_for

MIB = 1 << 20
OBJECT = b"a 16 byte string" * MIB
"""check16MObject's object (RelStorage's reltestbase)."""
BLOB = bytes(range(256)) * (16 * MIB // 256)


@pytest.mark.filterwarnings("ignore:The <class 'tests.adapter.support.Item'>:UserWarning")
def test_a_16_mib_object_and_blob_commit_and_a_node_that_was_down_catches_up(
    tmp_path: Path,
) -> None:
    with running_cluster(tmp_path / "cluster", 3) as cluster:
        absent = cluster.nodes[3]
        absent.stop()
        cluster.wait_for_leader()
        writer = open_db(
            cluster.nodes[1].data_dir,
            keep_history=False,
            relstorage=f"blob-dir {tmp_path / 'writer-blobs'}",
        )
        try:
            with writer.transaction() as conn:
                conn.root()["big"] = Item(OBJECT)  # type: ignore[arg-type]
            with writer.transaction() as conn:
                conn.root()["blob"] = Blob(BLOB)
        finally:
            writer.close()
        # Node 2 learns the last slot from the leader's next message, which may come after
        # node 1 answered the commit.
        before = {v.node_id: v for v in cluster.wait_converged(timeout_s=30.0)}
        assert before[1].running_hash == before[2].running_hash

        absent.start()
        wait_for(f"node {absent.node_id}", absent.status, 30.0)
        views = cluster.wait_converged(timeout_s=120.0)
        assert len({(v.applied_slot, v.running_hash) for v in views}) == 1, views
        assert views[0].applied_slot >= before[1].applied_slot
        assert "installed a snapshot" not in absent.log_text(), "caught up from the log"

        reader = open_db(
            absent.data_dir,
            keep_history=False,
            relstorage=f"blob-dir {tmp_path / 'reader-blobs'}",
        )
        try:
            tm = transaction.TransactionManager()
            conn = reader.open(tm)
            assert conn.root()["big"].value == OBJECT
            with conn.root()["blob"].open() as f:
                assert f.read() == BLOB
            tm.abort()
            conn.close()
        finally:
            reader.close()


@pytest.mark.parametrize(
    ("record_bytes", "batch_bytes"), [(256 * MIB, 4 * MIB), (MIB, MIB)], ids=["large", "small"]
)
def test_init_sets_max_record_bytes(tmp_path: Path, record_bytes: int, batch_bytes: int) -> None:
    """A limit below the default batch-bytes-max lowers it too (a batch is at most a record)."""
    subprocess.run(
        [
            *CLI,
            *("init", "--data-dir", str(tmp_path), "--cluster-id", "c", "--node-id", "1"),
            *("--member", "1=127.0.0.1:7101", "--history-free"),
            *("--max-record-bytes", str(record_bytes)),
        ],
        check=True,
        capture_output=True,
    )
    settings = config.load(tmp_path)
    assert (settings.max_record_bytes, settings.batch_bytes_max) == (record_bytes, batch_bytes)
