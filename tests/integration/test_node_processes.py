"""Three ``relstorage-paxos serve`` processes on 127.0.0.1 with real gRPC: records proposed
through every node apply everywhere in one order; kill -9 of the leader and then of a
follower loses nothing acknowledged; garbage on every port leaves the nodes serving."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import apsw
import grpc
import pytest

from relstorage_paxos.errors import PaxosError, RequestRejectedError
from relstorage_paxos.pb import peer_pb2, sequencer_pb2, sequencer_pb2_grpc
from relstorage_paxos.replica import Replica
from relstorage_paxos.transport import codec
from relstorage_paxos.transport.channels import FETCH_SNAPSHOT_METHOD, STREAM_METHOD
from relstorage_paxos.transport.peer_client import frame_batch
from relstorage_paxos.transport.sequencer import SequencerClient
from tests.integration.processes import (
    CLI,
    NodeProcess,
    ProcessCluster,
    noop_record,
    running_cluster,
    wait_for,
)
from tests.transport.clusters import heartbeat

WRITE_RESUME_BOUND_S = 30.0
"""Liveness bound after a kill (not a performance figure: elections take well under 1 s)."""


def propose_until_acked(node: NodeProcess, request_id: bytes, deadline_s: float = 30.0) -> int:
    """Propose at ``node`` and retry with the same id until the outcome arrives."""
    return wait_for(
        f"{request_id!r} at node {node.node_id}",
        lambda: node.client.propose(request_id, noop_record(request_id), timeout_s=2.0)[0],
        deadline_s,
    )


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``relstorage-paxos *args``, its output captured; the exit code is the caller's to check."""
    return subprocess.run([*CLI, *args], capture_output=True, text=True, check=False, timeout=60)


def replica_states(cluster: ProcessCluster) -> dict[int, tuple[int, bytes]]:
    states = {}
    for node_id, node in cluster.nodes.items():
        with Replica.open(node.data_dir / "replica.sqlite3") as replica:
            states[node_id] = (replica.applied_slot, replica.running_hash)
    return states


def test_every_node_accepts_records_and_replicas_agree(tmp_path: Path) -> None:
    with running_cluster(tmp_path, 3) as cluster:
        slots: dict[bytes, int] = {}
        for round_ in range(10):
            for node in cluster.nodes.values():
                request_id = f"r{round_}-n{node.node_id}".encode()
                slots[request_id] = propose_until_acked(node, request_id)
        views = cluster.wait_converged()
        assert len({v.running_hash for v in views}) == 1
        assert views[0].applied_slot >= max(slots.values())
        status = run_cli("status", "--data-dir", str(cluster.nodes[1].data_dir))
        assert status.returncode == 0, status.stdout + status.stderr
        assert "replicas agree" in status.stdout, status.stdout
        check = run_cli("status", "--check", "--data-dir", str(cluster.nodes[1].data_dir))
        assert check.returncode == 0, check.stdout + check.stderr
        as_json = run_cli("status", "--json", "--data-dir", str(cluster.nodes[2].data_dir))
        assert as_json.returncode == 0, as_json.stderr
        rows = json.loads(as_json.stdout)
        for row in rows:  # the process and its disk, for the operator
            node = cluster.nodes[row["node_id"]]
            assert node.process is not None and row["pid"] == node.process.pid, row
            assert row["data_dir_bytes"] >= row["wal_bytes"] > 0, row
            assert row["disk_free_bytes"] > 0, row
        assert sorted(r["node_id"] for r in rows) == [1, 2, 3]
        assert sum(r["role"] == "leader" for r in rows) == 1
        assert len({(r["applied_slot"], r["running_hash"]) for r in rows}) == 1
        for node in cluster.nodes.values():
            mode = (node.data_dir / "sequencer.sock").stat().st_mode & 0o777
            assert mode == 0o600, oct(mode)
    states = replica_states(cluster)
    assert len(set(states.values())) == 1, states
    with Replica.open(cluster.nodes[3].data_dir / "replica.sqlite3") as replica:
        for request_id in slots:
            assert replica.outcome(request_id) is not None, request_id


def test_kill_leader_then_follower_loses_nothing_acknowledged(tmp_path: Path) -> None:
    acked: dict[bytes, int] = {}
    stop = threading.Event()
    errors: list[BaseException] = []

    with running_cluster(tmp_path, 3) as cluster:

        def writer(index: int) -> None:
            n = 0
            while not stop.is_set():
                node = cluster.nodes[1 + (index + n) % 3]
                request_id = f"w{index}-{n}".encode()
                try:
                    if node.running:
                        slot, _ = node.client.propose(request_id, noop_record(request_id), 2.0)
                        acked[request_id] = slot
                except PaxosError:
                    pass  # unknown outcome or node down: the next id goes elsewhere
                except BaseException as exc:
                    errors.append(exc)
                    return
                n += 1

        threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        try:
            wait_for("some writes", lambda: len(acked) >= 30, 30)
            for victim_kind in ("leader", "follower"):
                leader = cluster.wait_for_leader()
                victim = (
                    leader
                    if victim_kind == "leader"
                    else next(n for n in cluster.running() if n is not leader)
                )
                before = len(acked)
                victim.kill()
                wait_for(
                    f"writes after killing the {victim_kind}",
                    lambda before=before: len(acked) > before + 10,
                    WRITE_RESUME_BOUND_S,
                )
                victim.start()
                wait_for(f"node {victim.node_id} back", lambda v=victim: v.status(), 30)
        finally:
            stop.set()
            for t in threads:
                t.join(30)
        assert not errors, errors
        cluster.wait_converged()
    states = replica_states(cluster)
    assert len(set(states.values())) == 1, states
    for node in cluster.nodes.values():
        with Replica.open(node.data_dir / "replica.sqlite3") as replica:
            lost = [rid for rid in acked if replica.outcome(rid) is None]
            assert not lost, (node.node_id, lost[:5], len(acked))


def test_stop_stops_the_node_and_waits_for_it(tmp_path: Path) -> None:
    with running_cluster(tmp_path, 1) as cluster:
        node = cluster.nodes[1]
        stop = run_cli("stop", "--data-dir", str(node.data_dir))
        assert stop.returncode == 0, stop.stdout + stop.stderr
        assert "stopped in" in stop.stdout, stop.stdout
        assert not node.running  # it had exited when stop returned
        assert "node 1 stopped" in node.log_text()
        again = run_cli("stop", "--data-dir", str(node.data_dir))
        assert again.returncode == 1 and "no node is running" in again.stderr, again.stderr


def test_a_damaged_replica_is_set_aside_and_rebuilt(tmp_path: Path) -> None:
    with running_cluster(tmp_path, 3) as cluster:
        acked = [b"before-%d" % i for i in range(20)]
        for request_id in acked:
            propose_until_acked(cluster.nodes[1], request_id)
        cluster.wait_converged()
        damaged = cluster.nodes[3]
        assert damaged.stop() == 0
        path = damaged.data_dir / "replica.sqlite3"
        with path.open("r+b") as f:  # a page of garbage in the middle of the file
            f.seek(path.stat().st_size // 2 // 4096 * 4096)
            f.write(b"\xff" * 4096)
        assert Replica.damage(path) is not None
        damaged.start()
        wait_for(f"node {damaged.node_id} back", damaged.status, 30)
        acked.append(b"after")
        propose_until_acked(damaged, b"after")
        cluster.wait_converged()
        assert "is damaged" in damaged.log_text() and "set aside as" in damaged.log_text()
        assert [p.name for p in damaged.data_dir.glob("replica.sqlite3.damaged-*")], list(
            damaged.data_dir.iterdir()
        )  # kept for forensics
        assert Replica.damage(path) is None
    for node in cluster.nodes.values():
        with Replica.open(node.data_dir / "replica.sqlite3") as replica:
            assert all(replica.outcome(rid) is not None for rid in acked), node.node_id


def test_status_reports_a_diverged_replica(tmp_path: Path) -> None:
    with running_cluster(tmp_path, 3) as cluster:
        propose_until_acked(cluster.nodes[1], b"before")
        cluster.wait_converged()
        damaged = cluster.nodes[3]
        assert damaged.stop() == 0
        replica = apsw.Connection(str(damaged.data_dir / "replica.sqlite3"))
        try:
            replica.execute("UPDATE paxos_meta SET running_hash = zeroblob(32)")
        finally:
            replica.close()
        damaged.start()
        propose_until_acked(cluster.nodes[1], b"after")

        def same_slot() -> bool:
            views = [n.status() for n in cluster.nodes.values()]
            return len({(v.applied_slot, v.chosen_slot) for v in views}) == 1

        wait_for("every node at the same slot", same_slot, 30)
        status = run_cli("status", "--data-dir", str(cluster.nodes[1].data_dir))
        assert "REPLICAS DIVERGED" in status.stdout, status.stdout
        assert status.returncode == 0, status.stdout
        check = run_cli("status", "--check", "--data-dir", str(cluster.nodes[1].data_dir))
        assert check.returncode == 1, check.stdout


def test_the_peer_port_serves_status_only_and_snapshots_only_to_members(
    tmp_path: Path,
) -> None:
    with running_cluster(tmp_path, 1) as cluster:
        node = cluster.nodes[1]
        with grpc.insecure_channel(node.address) as channel:
            stub = sequencer_pb2_grpc.SequencerStub(channel)
            for call, request in (
                (stub.Propose, sequencer_pb2.ProposeRequest(cluster_id="test", request_id=b"r")),
                (stub.AllocateOids, sequencer_pb2.AllocateOidsRequest(cluster_id="test", count=1)),
                (stub.ReadIndex, sequencer_pb2.ReadIndexRequest(cluster_id="test")),
            ):
                with pytest.raises(grpc.RpcError) as refused:
                    call(request, timeout=5)
                assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
                assert "only Status" in (refused.value.details() or "")
            assert stub.Status(sequencer_pb2.StatusRequest(), timeout=5).node_id == 1
            fetch = channel.unary_stream(
                FETCH_SNAPSHOT_METHOD,
                request_serializer=peer_pb2.SnapshotRequest.SerializeToString,
                response_deserializer=peer_pb2.SnapshotChunk.FromString,
            )
            for request, code in (
                (
                    peer_pb2.SnapshotRequest(cluster_id="other", requester_id=1, min_slot=1),
                    grpc.StatusCode.FAILED_PRECONDITION,
                ),
                (
                    peer_pb2.SnapshotRequest(cluster_id="test", requester_id=9, min_slot=1),
                    grpc.StatusCode.PERMISSION_DENIED,
                ),
            ):
                with pytest.raises(grpc.RpcError) as refused:
                    list(fetch(request, timeout=5))
                assert refused.value.code() == code, refused.value


def test_garbage_on_every_port_leaves_nodes_serving(tmp_path: Path) -> None:
    with running_cluster(tmp_path, 3) as cluster:
        target = cluster.nodes[2]
        host, port = target.address.rsplit(":", 1)
        for payload in (b"\x00" * 64, b"GET / HTTP/1.1\r\n\r\n", bytes(range(256)) * 8):
            with socket.create_connection((host, int(port)), timeout=2) as s:
                s.sendall(payload)
        sock = f"unix:{target.data_dir / 'sequencer.sock'}"
        with grpc.insecure_channel(sock) as channel:
            for method in ("Propose", "Status", "AllocateOids", "NoSuchMethod"):
                call = channel.unary_unary(
                    f"/relstorage_paxos.sequencer.Sequencer/{method}",
                    request_serializer=lambda b: b,
                    response_deserializer=lambda b: b,
                )
                try:
                    call(b"\xff\xfe garbage \x00", timeout=5)
                except grpc.RpcError as exc:
                    assert exc.code() in (
                        grpc.StatusCode.INVALID_ARGUMENT,
                        grpc.StatusCode.FAILED_PRECONDITION,
                        grpc.StatusCode.UNIMPLEMENTED,
                    ), (method, exc.code())
        with grpc.insecure_channel(target.address) as channel:
            stream = channel.stream_unary(
                "/relstorage_paxos.peer.PaxosPeer/Stream",
                request_serializer=lambda b: b,
                response_deserializer=lambda b: b,
            )
            # Refused (INVALID_ARGUMENT, or the connection reset while the client still
            # sends): either way the node must go on serving, as checked below.
            with contextlib.suppress(grpc.RpcError):
                stream(iter([b"\x01\x02garbage", b"\xff" * 100]), timeout=5)
        # Wrong cluster on the Sequencer: refused by name.
        other = SequencerClient(sock, "another-cluster")
        try:
            other.status()
            raise AssertionError("a client of another cluster was served")
        except PaxosError as exc:
            assert "another-cluster" in str(exc)
        finally:
            other.close()
        assert target.running
        assert propose_until_acked(target, b"after-garbage") > 0
        cluster.wait_converged()


def test_serve_refuses_python_optimize(tmp_path: Path) -> None:
    cluster = ProcessCluster(tmp_path, 1)
    result = subprocess.run(
        [
            sys.executable,
            "-O",
            "-m",
            "relstorage_paxos.cli",
            "serve",
            "--data-dir",
            str(cluster.nodes[1].data_dir),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "python -O" in result.stderr


def test_http_status_and_metrics(tmp_path: Path) -> None:
    with running_cluster(tmp_path, 1, http_status=True) as cluster:
        node = cluster.nodes[1]
        propose_until_acked(node, b"one")
        base = f"http://{cluster.http_addresses[1]}"
        with urllib.request.urlopen(f"{base}/status", timeout=5) as reply:
            status = json.load(reply)
        assert status["role"] == "leader" and status["applied_slot"] >= 1, status
        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as reply:
            metrics = reply.read().decode()
        assert 'relstorage_paxos_is_leader{node="1"} 1.0' in metrics
        assert "relstorage_paxos_apply_seconds_bucket" in metrics
        assert "relstorage_paxos_rejected_messages_total{" not in metrics
        # A stream from another cluster and a malformed proposal are counted by reason.
        other_cluster = codec.encode(heartbeat(2, 1, 0), "another-cluster").SerializeToString()
        with grpc.insecure_channel(node.address) as channel:
            stream = channel.stream_unary(STREAM_METHOD, request_serializer=lambda b: b)
            with pytest.raises(grpc.RpcError, match="WrongClusterError"):
                stream(iter([frame_batch([other_cluster])]), timeout=5)
        client = SequencerClient(f"unix:{node.data_dir / 'sequencer.sock'}", node.cluster_id)
        try:
            with pytest.raises(RequestRejectedError, match="malformed record"):
                client.propose(b"malformed", b"\xff\xfe", timeout_s=5)
        finally:
            client.close()
        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as reply:
            metrics = reply.read().decode()
        assert (
            'relstorage_paxos_rejected_messages_total{node="1",reason="WrongClusterError"} 1.0'
            in metrics
        )
        assert (
            'relstorage_paxos_rejected_requests_total{node="1",reason="INVALID_ARGUMENT"} 1.0'
            in metrics
        )


def test_a_node_cut_off_from_the_majority_says_so(tmp_path: Path) -> None:
    with running_cluster(tmp_path, 3) as cluster:
        lonely = cluster.nodes[1]
        for node in (cluster.nodes[2], cluster.nodes[3]):
            node.kill()
        wait_for(
            "the cut-off warning",
            lambda: "hears from no majority" in lonely.log_text(),
            30,
            poll_s=0.2,
        )
        assert "relstorage-paxos status" in lonely.log_text()
        status = run_cli("status", "--data-dir", str(lonely.data_dir))
        assert status.returncode == 0, status.stdout  # a report was made
        check = run_cli("status", "--check", "--json", "--data-dir", str(lonely.data_dir))
        assert check.returncode == 1, check.stdout  # the cluster is not well
        assert len(json.loads(check.stdout)) == 3, check.stdout
        assert "only 1 of 3 nodes answered" in status.stdout, status.stdout
        assert " 2(" in status.stdout and " 3(" in status.stdout, status.stdout  # not heard
        assert "unreachable" in status.stdout, status.stdout


def test_operator_errors_say_what_to_do(tmp_path: Path) -> None:
    cluster = ProcessCluster(tmp_path, 2)
    node = cluster.nodes[1]
    # No node running: the missing socket is named, with the command that starts the node.
    try:
        node.client.status()
        raise AssertionError("status of a stopped node answered")
    except PaxosError as exc:
        assert "relstorage-paxos serve --data-dir" in str(exc), exc
    # A data dir whose log belongs to another node is refused, with what to do.
    (node.data_dir / "paxos.sqlite3").unlink()
    (cluster.nodes[2].data_dir / "paxos.sqlite3").rename(node.data_dir / "paxos.sqlite3")
    result = run_cli("serve", "--data-dir", str(node.data_dir))
    assert result.returncode == 2, result.stderr
    assert "made for another node" in result.stderr, result.stderr


def test_second_serve_on_one_data_dir_is_refused(tmp_path: Path) -> None:
    with running_cluster(tmp_path, 1) as cluster:
        node = cluster.nodes[1]
        result = run_cli("serve", "--data-dir", str(node.data_dir))
        assert result.returncode == 2, result.stderr
        assert "in use by a running node" in result.stderr, result.stderr
        assert node.running


def test_a_node_back_after_compaction_installs_a_snapshot_over_grpc(tmp_path: Path) -> None:
    cluster = ProcessCluster(tmp_path, 3)
    for node in cluster.nodes.values():  # compact early, so node 3 must take a snapshot
        settings = node.data_dir / "node.toml"
        text = settings.read_text().replace(
            "compact-every-slots = 10000", "compact-every-slots = 20"
        )
        settings.write_text(text.replace("compact-keep-slots = 2000", "compact-keep-slots = 5"))
    cluster.start()
    try:
        for round_ in range(2):  # a second install over the first one
            cluster.nodes[3].stop()
            for i in range(60):
                propose_until_acked(cluster.nodes[1 + i % 2], f"r{round_}-{i}".encode())
            # Restart the others too: the messages their transports queued for node 3 while
            # it was down would otherwise bring it up to date without a snapshot.
            for other in (cluster.nodes[1], cluster.nodes[2]):
                other.stop()
                other.start()
            cluster.wait_for_leader()
            cluster.nodes[3].start()
            views = cluster.wait_converged()
            assert len({v.running_hash for v in views}) == 1
            installs = cluster.nodes[3].log_text().count("installed a snapshot")
            assert installs == round_ + 1, cluster.nodes[3].log_text()
    except BaseException:
        print(cluster.logs())
        raise
    finally:
        cluster.stop()
