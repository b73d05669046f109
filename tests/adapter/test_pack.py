"""Pack through three real node processes (``relstorage-paxos serve``) on 127.0.0.1: node 1
packs while node 2 keeps committing, and, between the plan and its apply, node 2 links an
unreachable object back into the graph. Afterwards every replica holds the same rows at the
same slot; everything reachable loads on every node; old revisions (history-preserving) and
unreachable objects, with their blobs, are gone, except the object linked back and what it
refers to. And zodbpack on an embedded node; ``skip_prepack`` (zodbpack
``--use-prepack-state``) with no plan from an earlier ``prepack_only`` in the process says so."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apsw
import pytest
import transaction
import ZODB
from persistent.mapping import PersistentMapping
from relstorage import zodbpack
from ZODB.blob import Blob
from ZODB.POSException import POSKeyError
from ZODB.serialize import referencesf
from ZODB.utils import u64

from relstorage_paxos.errors import PackError
from relstorage_paxos.replica import LogicalDump, logical_dump
from tests.adapter.support import Item, make_node, open_db
from tests.integration.processes import ProcessCluster, running_cluster, wait_for

ITEMS = 300
REVISIONS = 3


@pytest.fixture
def cluster(tmp_path: Path, keep_history: bool) -> Iterator[ProcessCluster]:
    with running_cluster(tmp_path / "cluster", 3, keep_history=keep_history) as running:
        yield running


def _open(cluster: ProcessCluster, node_id: int, keep_history: bool, tmp: Path) -> ZODB.DB:
    blobs = tmp / f"blobs{node_id}"
    return open_db(
        cluster.nodes[node_id].data_dir,
        keep_history=keep_history,
        relstorage=f"blob-dir {blobs}\n    shared-blob-dir false",
    )


def _populate(db: ZODB.DB) -> dict[str, Any]:
    """Reachable items with several revisions; two unreachable groups: G -> H -> blob, and
    K -> blob. Returns their OIDs and the items' first tids."""
    with db.transaction() as conn:
        root = conn.root()
        root["data"] = PersistentMapping({i: Item(i) for i in range(ITEMS)})
        root["live"] = PersistentMapping()
        root["g"] = g = PersistentMapping()
        g["h"] = h = Item(-1)
        h.blob = Blob(b"garbage blob")
        root["k"] = k = Item(-2)
        k.blob = Blob(b"unreachable blob")
    with db.transaction() as conn:
        data = conn.root()["data"]
        first_tids = {data[i]._p_oid: data[i]._p_serial for i in range(ITEMS)}
    for revision in range(1, REVISIONS):
        with db.transaction() as conn:
            for item in conn.root()["data"].values():
                item.value += revision
    with db.transaction() as conn:
        root = conn.root()
        g, k = root["g"], root["k"]
        oids = {
            "g": g._p_oid,
            "h": g["h"]._p_oid,
            "h.blob": g["h"].blob._p_oid,
            "k": k._p_oid,
            "k.blob": k.blob._p_oid,
        }
        del root["g"], root["k"]
    return {"oids": oids, "first_tids": first_tids}


class _Writer(threading.Thread):
    """Commits through node 2 until stopped: new objects and new revisions of old ones."""

    def __init__(self, db: ZODB.DB) -> None:
        super().__init__(daemon=True)
        self.db = db
        self.stop = threading.Event()
        self.commits = 0
        self.failure: BaseException | None = None

    def run(self) -> None:
        tm = transaction.TransactionManager()
        conn = self.db.open(tm)
        try:
            while not self.stop.is_set():
                for attempt in tm.attempts(10):
                    with attempt:
                        live = conn.root()["live"]
                        live[self.commits % 20] = Item(self.commits)
                self.commits += 1
        except BaseException as exc:
            self.failure = exc
        finally:
            conn.close()


def _dumps(cluster: ProcessCluster) -> list[LogicalDump]:
    """Every replica's rows, read once all are at the same slot."""

    def same_slot() -> list[LogicalDump] | None:
        cluster.wait_converged()
        dumps = []
        for node in cluster.nodes.values():
            db = apsw.Connection(
                str(node.data_dir / "replica.sqlite3"), flags=apsw.SQLITE_OPEN_READONLY
            )
            try:
                dumps.append(logical_dump(db))
            finally:
                db.close()
        slots = {dump["paxos_meta"][0][3] for dump in dumps}
        return dumps if len(slots) == 1 else None

    return wait_for("replicas at one slot", same_slot, 30.0)


def test_a_pack_on_one_node_while_another_commits_packs_every_replica(
    cluster: ProcessCluster, keep_history: bool, tmp_path: Path
) -> None:
    db1 = _open(cluster, 1, keep_history, tmp_path)
    db2 = _open(cluster, 2, keep_history, tmp_path)
    writer = _Writer(db2)
    try:
        populated = _populate(db1)
        oids = populated["oids"]
        relinked: list[int] = []

        def link_g_back(**_: object) -> None:
            """Runs on node 1 after the plan's snapshot was taken: G is unreachable in the
            plan, and reachable again by the time its record is applied."""
            with db2.transaction() as conn:
                conn.root()["back"] = conn.get(oids["g"])
            relinked.append(1)

        db1.storage._adapter.packundo.on_filling_object_refs_added = link_g_back
        writer.start()
        wait_for("the writer's first commit", lambda: writer.commits > 0, 30.0)
        db1.pack()
        assert relinked == [1]
        writer.stop.set()
        writer.join(30)
        assert writer.failure is None, writer.failure
        dumps = _dumps(cluster)
    finally:
        writer.stop.set()
        db1.close()
        db2.close()

    assert dumps[0] == dumps[1] == dumps[2]
    states = dumps[0]["object_state"]
    state_oids = {row[0] for row in states}
    blob_oids = {row[0] for row in dumps[0]["blob_chunk"]}
    assert not {u64(oids["k"]), u64(oids["k.blob"])} & state_oids  # unreachable: gone
    assert u64(oids["k.blob"]) not in blob_oids
    linked_back = {u64(oids["g"]), u64(oids["h"]), u64(oids["h.blob"])}
    assert linked_back <= state_oids  # linked back after the plan: kept, with its blob
    assert u64(oids["h.blob"]) in blob_oids
    if keep_history:
        old = {(u64(oid), u64(tid)) for oid, tid in populated["first_tids"].items()}
        assert not old & {(row[0], row[1]) for row in states}  # old revisions: gone
        per_item = {oid: 0 for oid, _ in old}
        for row in states:
            if row[0] in per_item:
                per_item[row[0]] += 1
        assert set(per_item.values()) == {1}

    for node_id in (1, 2, 3):
        db = _open(cluster, node_id, keep_history, tmp_path)
        try:
            storage = db.storage
            with pytest.raises(POSKeyError):
                storage.load(oids["k"])
            if keep_history:
                oid, tid = next(iter(populated["first_tids"].items()))
                with pytest.raises(POSKeyError):
                    storage.loadSerial(oid, tid)
            with db.transaction() as conn:
                root = conn.root()
                assert sorted(root) == ["back", "data", "live"]
                values = sorted(item.value for item in root["data"].values())
                assert values == [i + sum(range(REVISIONS)) for i in range(ITEMS)]
                assert len(root["live"]) == min(20, writer.commits)
                with root["back"]["h"].blob.open() as f:
                    assert f.read() == b"garbage blob"
        finally:
            db.close()


def test_zodbpack_packs_and_skip_prepack_without_a_plan_is_refused(
    tmp_path: Path, keep_history: bool
) -> None:
    data_dir = make_node(tmp_path, keep_history=keep_history)
    db = open_db(data_dir, keep_history=keep_history, embedded="true")
    try:
        with db.transaction() as conn:
            conn.root()["gone"] = gone = Item(1)
            conn.root()["kept"] = Item(2)
        with db.transaction() as conn:
            del conn.root()["gone"]
        oid = gone._p_oid
        # zodbpack --use-prepack-state: the plan of a prepack_only pack lives in the
        # process that made it; a new one has none.
        with pytest.raises(PackError, match="skip_prepack: no pre-pack plan"):
            db.storage.pack(None, referencesf, skip_prepack=True)
    finally:
        db.close()
    config = tmp_path / "zodbpack.conf"
    config.write_text(
        f"""
%import relstorage_paxos
<relstorage>
  keep-history {"true" if keep_history else "false"}
  <paxos>
    data-dir {data_dir}
    embedded true
  </paxos>
</relstorage>
"""
    )
    zodbpack.main(["zodbpack", "--days", "-1", str(config)])
    db = open_db(data_dir, keep_history=keep_history, embedded="true")
    try:
        with pytest.raises(POSKeyError):
            db.storage.load(oid)
        with db.transaction() as conn:
            assert conn.root()["kept"].value == 2
    finally:
        db.close()
