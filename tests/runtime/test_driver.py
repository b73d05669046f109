"""The runtime with real stores: three ``NodeRuntime`` threads, each with its SQLite log and
replica, joined by the in-memory transport (the seam the simulator owns; the gRPC transport
has its own tests, and tests/integration runs whole node processes)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from relstorage_paxos.core import NodeOptions
from relstorage_paxos.errors import (
    NodeUnavailableError,
    OutcomeUnknownError,
    RecordTooLargeError,
    ReplicaBehindLogError,
    SnapshotTransferError,
)
from relstorage_paxos.lease_board import LeaseBoardWriter
from relstorage_paxos.log.sqlite_store import SqliteLogStore
from relstorage_paxos.replica import (
    Committed,
    CommitTxn,
    Conflict,
    Granted,
    LockObjects,
    Noop,
    NoopApplied,
    ObjectWrite,
    Record,
    Released,
    ReleaseTxn,
    Replica,
    encode_record,
)
from relstorage_paxos.runtime.clock import SystemClock
from relstorage_paxos.runtime.driver import Applied, NodeRuntime, RuntimeOptions
from relstorage_paxos.transport.memory import MemoryNetwork

TIMEOUT_S = 20.0


class Cluster:
    def __init__(
        self, root: Path, size: int, options: RuntimeOptions, record_bytes_max: int = 64 << 20
    ) -> None:
        self.root = root
        self.size = size
        self.options = options
        self.record_bytes_max = record_bytes_max
        self.network = MemoryNetwork()
        self.nodes: dict[int, NodeRuntime] = {}
        self.logs: dict[int, SqliteLogStore] = {}
        for node_id in range(1, size + 1):
            (root / f"n{node_id}").mkdir()
            SqliteLogStore(
                self.log_path(node_id), cluster_id="t", node_id=node_id, create=True
            ).close()
            self.start(node_id)

    def log_path(self, node_id: int) -> Path:
        return self.root / f"n{node_id}" / "paxos.sqlite3"

    def replica_path(self, node_id: int) -> Path:
        return self.root / f"n{node_id}" / "replica.sqlite3"

    def start(self, node_id: int, *, lease_board: bool = False) -> NodeRuntime:
        log = SqliteLogStore(self.log_path(node_id), cluster_id="t", node_id=node_id)
        self.logs[node_id] = log
        runtime = NodeRuntime(
            NodeOptions(
                node_id=node_id,
                members=frozenset(range(1, self.size + 1)),
                election_timeout_ticks=10,
                heartbeat_interval_ticks=2,
                record_bytes_max=self.record_bytes_max,
            ),
            self.options,
            log,
            Replica.open(self.replica_path(node_id), keep_history=False),
            self.network.transport(node_id),
            SystemClock(),
            snapshot_dir=self.root / f"n{node_id}",
            fetch_snapshot=self.fetch_snapshot,
            seed=node_id,
            lease_board=LeaseBoardWriter(self.root / f"n{node_id}") if lease_board else None,
        )
        runtime.start()
        self.nodes[node_id] = runtime
        return runtime

    def fetch_snapshot(self, peer: int, min_slot: int, dest: Path) -> int:
        dest.unlink(missing_ok=True)
        return Replica.snapshot_file(self.replica_path(peer), dest)

    def stop(self, node_id: int) -> None:
        runtime = self.nodes.pop(node_id)
        runtime.stop()
        runtime.replica.close()
        self.logs.pop(node_id).close()

    def stop_all(self) -> None:
        for node_id in list(self.nodes):
            self.stop(node_id)

    def propose(self, node_id: int, request_id: bytes, body: object) -> Applied:
        record = encode_record(Record(request_id, body))  # type: ignore[arg-type]
        return self.nodes[node_id].propose(request_id, record).result(TIMEOUT_S)

    def converged(self) -> set[tuple[int, bytes]]:
        for runtime in self.nodes.values():
            runtime.read_index().result(TIMEOUT_S)
        top = max(r.status.commit_slot for r in self.nodes.values())
        for runtime in self.nodes.values():
            runtime.wait_applied(top, TIMEOUT_S)
        return {(r.status.applied_slot, r.status.running_hash) for r in self.nodes.values()}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, 3, RuntimeOptions(tick_s=0.01, retry_ticks=20))
    yield c
    c.stop_all()


def test_records_through_every_node_apply_everywhere_in_one_order(cluster: Cluster) -> None:
    results: list[Applied] = []
    lock = threading.Lock()

    def client(node_id: int) -> None:
        for i in range(15):
            applied = cluster.propose(node_id, f"n{node_id}-{i}".encode(), Noop())
            with lock:
                results.append(applied)

    threads = [threading.Thread(target=client, args=(n,)) for n in (1, 2, 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 45
    states = cluster.converged()
    assert len(states) == 1, states
    ((applied, _),) = states
    assert applied >= max(r.slot for r in results)


def test_commit_through_locks_and_duplicate_request(cluster: Cluster) -> None:
    lock = LockObjects(b"t1", 2, (7,), (), lease_until_us=2**40)
    assert cluster.propose(2, b"lock-1", lock).outcome == Granted()
    commit = CommitTxn(
        b"t1", 1_700_000_000_000_000, b"u", b"d", b"", (ObjectWrite(7, 0, b"s"),), ()
    )
    first = cluster.propose(2, b"commit-1", commit)
    assert isinstance(first.outcome, Committed)
    # A retry (same request id, at another node) returns the recorded outcome.
    again = cluster.propose(3, b"commit-1", commit)
    assert again.outcome == first.outcome
    # A stale prev_tid is a conflict, decided by the replicated state alone.
    assert (
        cluster.propose(1, b"lock-2", LockObjects(b"t2", 1, (7,), (), 2**40)).outcome == Granted()
    )
    stale = CommitTxn(b"t2", 1_700_000_000_000_001, b"", b"", b"", (ObjectWrite(7, 0, b"x"),), ())
    assert isinstance(cluster.propose(1, b"commit-2", stale).outcome, Conflict)
    assert isinstance(cluster.propose(1, b"release-2", ReleaseTxn(b"t2")).outcome, Released)
    assert len(cluster.converged()) == 1


def test_queued_lock_request_answers_when_granted(cluster: Cluster) -> None:
    assert cluster.propose(1, b"a", LockObjects(b"ta", 1, (9,), (), 2**40)).outcome == Granted()
    record = encode_record(Record(b"b", LockObjects(b"tb", 2, (9,), (), 2**40)))
    waiting = cluster.nodes[2].propose(b"b", record)
    cluster.converged()
    assert not waiting.done()  # queued behind ta: no answer yet
    assert isinstance(cluster.propose(1, b"rel-a", ReleaseTxn(b"ta")).outcome, Released)
    assert waiting.result(TIMEOUT_S).outcome == Granted()


def test_restart_keeps_everything_and_catches_up(cluster: Cluster) -> None:
    for i in range(10):
        cluster.propose(1, f"a{i}".encode(), Noop())
    cluster.stop(3)
    for i in range(10):
        cluster.propose(1, f"b{i}".encode(), Noop())
    cluster.start(3)
    assert len(cluster.converged()) == 1
    assert cluster.propose(3, b"after", Noop()).slot > 20


def test_lagging_node_installs_a_snapshot(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="relstorage_paxos.runtime.driver")
    c = Cluster(
        tmp_path, 3, RuntimeOptions(tick_s=0.01, compact_every_slots=20, compact_keep_slots=5)
    )
    try:
        c.stop(3)
        for i in range(60):
            c.propose(1 + i % 2, f"x{i}".encode(), Noop())
        c.start(3)
        states = c.converged()
        assert len(states) == 1, states
        assert c.nodes[3].status.truncated_slot > 0
        assert "node 3 installed a snapshot" in caplog.text
    finally:
        c.stop_all()


def test_a_failed_snapshot_fetch_is_retried(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="relstorage_paxos.runtime.driver")
    c = Cluster(
        tmp_path, 3, RuntimeOptions(tick_s=0.01, compact_every_slots=20, compact_keep_slots=5)
    )
    fetches: list[int] = []
    working_fetch = c.fetch_snapshot

    def fails_once(peer: int, min_slot: int, dest: Path) -> int:
        fetches.append(peer)
        if len(fetches) == 1:
            raise SnapshotTransferError(f"snapshot from node {peer}: UNAVAILABLE (planted)")
        return working_fetch(peer, min_slot, dest)

    c.fetch_snapshot = fails_once  # type: ignore[method-assign]
    try:
        c.stop(3)
        for i in range(60):
            c.propose(1 + i % 2, f"x{i}".encode(), Noop())
        c.start(3)
        assert len(c.converged()) == 1
        assert len(fetches) >= 2, fetches
        assert "UNAVAILABLE (planted)" in caplog.text
        assert "node 3 installed a snapshot" in caplog.text
    finally:
        c.stop_all()


def _replica_lost_behind_the_log(tmp_path: Path) -> Cluster:
    """A 3-node cluster whose node 3 compacted its log and then lost its replica file."""
    c = Cluster(
        tmp_path, 3, RuntimeOptions(tick_s=0.01, compact_every_slots=20, compact_keep_slots=5)
    )
    for i in range(60):
        c.propose(1 + i % 2, f"x{i}".encode(), Noop())
    c.converged()
    assert c.nodes[3].status.truncated_slot > 0
    c.stop(3)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{c.replica_path(3)}{suffix}").unlink(missing_ok=True)
    return c


def test_a_replica_behind_the_log_is_rebuilt_from_a_peers_snapshot(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    c = _replica_lost_behind_the_log(tmp_path)
    try:
        c.start(3)
        assert "is behind the log's truncation point" in caplog.text
        assert "replacing it by node 1's snapshot" in caplog.text
        assert len(c.converged()) == 1
        assert c.propose(3, b"after", Noop()).slot > 60
    finally:
        c.stop_all()


def test_a_replica_behind_the_log_without_a_peers_snapshot_is_a_clear_error(
    tmp_path: Path,
) -> None:
    c = _replica_lost_behind_the_log(tmp_path)

    def no_snapshot(peer: int, min_slot: int, dest: Path) -> int:
        raise SnapshotTransferError(f"snapshot from node {peer}: UNAVAILABLE")

    c.fetch_snapshot = no_snapshot  # type: ignore[method-assign]
    try:
        with pytest.raises(ReplicaBehindLogError, match=r"no peer sent a snapshot.*node 2"):
            c.start(3)
    finally:
        c.logs.pop(3).close()
        c.stop_all()


def test_a_failing_log_store_stops_the_loop_with_its_cause_and_the_others_go_on(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    cluster.stop(2)
    cluster.start(2, lease_board=True)  # as a served node has one
    cluster.propose(1, b"before", Noop())
    cluster.logs[2].close()  # every persist of node 2 fails from now on
    for i in range(5):
        cluster.propose(1 + 2 * (i % 2), f"while-{i}".encode(), Noop())
    failed = cluster.nodes[2]
    deadline = time.monotonic() + TIMEOUT_S
    while failed.failure is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert failed.failure is not None, "node 2 kept running without its log"
    assert "node 2 stops" in caplog.text
    # Answered at once, with the cause: nobody in the node's process waits out a timeout.
    with pytest.raises(NodeUnavailableError, match="node 2 stopped: LogStoreError"):
        failed.read_index().result(TIMEOUT_S)
    with pytest.raises(NodeUnavailableError, match="node 2 stopped: LogStoreError"):
        failed.propose(b"to-a-dead-loop", encode_record(Record(b"x", Noop()))).result(TIMEOUT_S)
    runtime = cluster.nodes.pop(2)
    runtime.stop()  # after the loop's own shut-down, as `serve` does
    runtime.replica.close()
    cluster.logs.pop(2)
    assert cluster.propose(3, b"after", Noop()).slot > 1


def test_stop_answers_every_waiter(tmp_path: Path) -> None:
    """A proposal that cannot complete (no quorum) is answered at stop, as unknown: the
    caller retries with the same id; nothing stays blocked on a stopped node."""
    c = Cluster(tmp_path, 3, RuntimeOptions(tick_s=0.01))
    try:
        c.stop(2)
        c.stop(3)
        record = encode_record(Record(b"stuck", Noop()))
        stuck = c.nodes[1].propose(b"stuck", record)
        read = c.nodes[1].read_index()
        assert not stuck.done()
        c.stop(1)
        with pytest.raises(OutcomeUnknownError):
            stuck.result(TIMEOUT_S)
        with pytest.raises(NodeUnavailableError):
            read.result(TIMEOUT_S)
    finally:
        c.stop_all()


def test_a_record_over_the_limit_is_refused_and_nothing_else_is_harmed(tmp_path: Path) -> None:
    c = Cluster(tmp_path, 3, RuntimeOptions(tick_s=0.01), record_bytes_max=4096)
    try:
        node = c.nodes[1]
        small = [
            node.propose(f"ok{i}".encode(), encode_record(Record(f"ok{i}".encode(), Noop())))
            for i in range(5)
        ]
        write = ObjectWrite(7, 0, b"x" * 4096)
        big = encode_record(Record(b"big", CommitTxn(b"t", 1, b"", b"", b"", (write,), ())))
        refused = node.propose(b"big", big)
        with pytest.raises(RecordTooLargeError, match=f"of {len(big)} bytes .* max-record-bytes"):
            refused.result(TIMEOUT_S)
        assert all(isinstance(f.result(TIMEOUT_S).outcome, NoopApplied) for f in small)
        assert node.failure is None
        assert c.propose(1, b"after", Noop()).slot > max(f.result().slot for f in small)
        assert len(c.converged()) == 1
    finally:
        c.stop_all()


@pytest.mark.parametrize(("every_bytes", "compacted"), [(300_000, True), (1 << 30, False)])
def test_large_records_compact_the_log_long_before_compact_every_slots(
    tmp_path: Path, every_bytes: int, compacted: bool
) -> None:
    """The core holds its whole log in memory: slots holding many bytes are compacted away
    by size, keeping the newest ``compact_keep_bytes`` of them."""
    options = RuntimeOptions(
        tick_s=0.01, compact_every_bytes=every_bytes, compact_keep_bytes=150_000
    )
    c = Cluster(tmp_path, 3, options)
    try:
        for i in range(6):
            write = ObjectWrite(i + 1, 0, bytes([i]) * 100_000)
            c.propose(1, f"big{i}".encode(), CommitTxn(b"t", 1, b"", b"", b"", (write,), ()))
        assert len(c.converged()) == 1
        status = c.nodes[1].status
        assert status.applied_slot == 6
        if compacted:
            assert status.truncated_slot >= 4, status  # one 100 kB slot is all 150 kB keep
        else:
            assert status.truncated_slot == 0, status
    finally:
        c.stop_all()
