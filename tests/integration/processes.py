"""Real node processes on 127.0.0.1 for integration and fault tests.

``ProcessCluster`` runs ``relstorage-paxos init`` and ``serve`` as subprocesses, talks to
them through their Sequencer sockets, and stops only the processes it started, by PID.
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from relstorage_paxos.errors import PaxosError
from relstorage_paxos.replica import Noop, Record, encode_record
from relstorage_paxos.transport.sequencer import SequencerClient, StatusView

T = TypeVar("T")
CLI = [sys.executable, "-m", "relstorage_paxos.cli"]


PORTS_BASE = 20_000
"""Test ports come from below Linux's ephemeral range (32768-60999), so that neither a
port-0 bind nor an outgoing connection anywhere on the machine takes one between
``free_ports`` choosing it and a node binding it."""

PORTS_PER_WORKER = 3_000
"""Each pytest-xdist worker hands out ports from its own range, so two never collide."""

_next_port = itertools.count(os.getpid() % PORTS_PER_WORKER)


def free_ports(count: int) -> list[int]:
    """Ports free on 127.0.0.1 now, never handed out before in this process (each one
    bound once to check, and closed again)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    base = PORTS_BASE + (int(worker) if worker.isdigit() else 0) % 4 * PORTS_PER_WORKER
    ports: list[int] = []
    for _ in range(PORTS_PER_WORKER):
        port = base + next(_next_port) % PORTS_PER_WORKER
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
        if len(ports) == count:
            return ports
    raise RuntimeError(f"no {count} free ports from {base} on 127.0.0.1")


def wait_for(what: str, check: Callable[[], T | None], timeout_s: float, poll_s: float = 0.05) -> T:
    """Poll ``check`` until it returns something other than None or False."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
        except PaxosError as exc:
            last_error = exc
            value = None
        if value is not None and value is not False:
            return value
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what} ({last_error})")


@dataclass
class NodeProcess:
    node_id: int
    data_dir: Path
    address: str
    cluster_id: str
    process: subprocess.Popen[bytes] | None = None
    log_path: Path = field(init=False)
    _client: SequencerClient | None = None

    def __post_init__(self) -> None:
        self.log_path = self.data_dir.parent / f"node{self.node_id}.log"

    @property
    def client(self) -> SequencerClient:
        if self._client is None:
            self._client = SequencerClient(
                f"unix:{self.data_dir / 'sequencer.sock'}", self.cluster_id
            )
        return self._client

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None, self.node_id
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [*CLI, "serve", "--data-dir", str(self.data_dir), "--log-level", "INFO"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        log.close()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: nothing is flushed, nothing is closed."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        self._drop_client()

    def pause(self) -> None:
        """SIGSTOP: the process neither runs nor answers; its sockets stay open."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            raise AssertionError(f"node {self.node_id} ignored SIGTERM") from None
        finally:
            self._drop_client()

    def _drop_client(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def status(self) -> StatusView:
        return self.client.status(timeout_s=2.0)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class ProcessCluster:
    def __init__(
        self,
        root: Path,
        size: int,
        *,
        keep_history: bool = False,
        cluster_id: str = "test",
        http_status: bool = False,
    ) -> None:
        self.root = root
        self.cluster_id = cluster_id
        ports = free_ports(2 * size)
        self.http_addresses = {i + 1: f"127.0.0.1:{p}" for i, p in enumerate(ports[size:])}
        ports = ports[:size]
        members = {i + 1: f"127.0.0.1:{port}" for i, port in enumerate(ports)}
        self.nodes: dict[int, NodeProcess] = {}
        for node_id, address in members.items():
            data_dir = root / f"node{node_id}"
            args = [
                *CLI,
                "init",
                "--data-dir",
                str(data_dir),
                "--cluster-id",
                cluster_id,
                "--node-id",
                str(node_id),
                "--keep-history" if keep_history else "--history-free",
                "--tick",
                "0.02",
                "--election-timeout",
                "0.4",
                "--heartbeat-interval",
                "0.06",
            ]
            for other, other_address in members.items():
                args += ["--member", f"{other}={other_address}"]
            if http_status:
                args += ["--http-status", self.http_addresses[node_id]]
            subprocess.run(args, check=True, capture_output=True)
            self.nodes[node_id] = NodeProcess(node_id, data_dir, address, cluster_id)

    def start(self) -> None:
        """Start every node; return once there is a leader and every node answers."""
        for node in self.nodes.values():
            node.start()
        self.wait_for_leader()
        for node in self.nodes.values():
            wait_for(f"node {node.node_id}", node.status, 30.0)

    def stop(self) -> None:
        """SIGTERM every running node; each must exit 0 (a clean shutdown)."""
        codes = {n.node_id: n.stop() for n in self.nodes.values() if n.running}
        assert all(code == 0 for code in codes.values()), (codes, self.logs())

    def running(self) -> list[NodeProcess]:
        return [n for n in self.nodes.values() if n.running]

    def leader(self) -> NodeProcess | None:
        for node in self.running():
            try:
                if node.status().role == "leader":
                    return node
            except PaxosError:
                continue
        return None

    def wait_for_leader(self, timeout_s: float = 30.0) -> NodeProcess:
        return wait_for("a leader", self.leader, timeout_s)

    def wait_converged(self, timeout_s: float = 30.0) -> list[StatusView]:
        def check() -> list[StatusView] | None:
            views = [n.status() for n in self.running()]
            hashes = {(v.applied_slot, v.running_hash) for v in views}
            chosen = {v.chosen_slot for v in views}
            if len(hashes) == 1 and chosen == {views[0].applied_slot}:
                return views
            return None

        return wait_for("converged replicas", check, timeout_s)

    def logs(self) -> str:
        return "\n".join(
            f"--- node {n.node_id}\n{n.log_text()[-4000:]}" for n in self.nodes.values()
        )


def noop_record(request_id: bytes) -> bytes:
    return encode_record(Record(request_id, Noop()))


@contextmanager
def running_cluster(root: Path, size: int, **kwargs: object) -> Iterator[ProcessCluster]:
    cluster = ProcessCluster(root, size, **kwargs)  # type: ignore[arg-type]
    try:
        cluster.start()
        yield cluster
    except BaseException:
        print(cluster.logs())
        raise
    finally:
        cluster.stop()
