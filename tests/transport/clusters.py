"""Small clusters of transports for the transport tests: the same driving interface over
``MemoryTransport`` (synchronous or queued delivery) and over ``PeerTransport`` (real gRPC on
127.0.0.1, ports picked by binding port 0), so that one contract test runs against each."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent import futures
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

import grpc

from relstorage_paxos.core.ballot import Ballot
from relstorage_paxos.core.messages import (
    Accept,
    Accepted,
    CatchUpReply,
    CatchUpRequest,
    Forward,
    Heartbeat,
    HeartbeatReply,
    LogEntry,
    Message,
    Prepare,
    PreVote,
    PreVoteReply,
    Promise,
    Proposal,
    ReadIndexReply,
    ReadIndexRequest,
    SlotValue,
)
from relstorage_paxos.transport.memory import MemoryNetwork, MemoryTransport
from relstorage_paxos.transport.peer import PeerTransport
from relstorage_paxos.transport.port import Transport
from relstorage_paxos.transport.sequencer import (
    SequencerBackend,
    SequencerClient,
    SequencerService,
    add_to_server,
)

CLUSTER_ID = "cluster-test"
POLL_S = 0.005


def every_message(src: int, dst: int) -> list[Message]:
    """One message of each of the 13 core message types, from ``src`` to ``dst``."""
    b = Ballot(3, src)
    p = Proposal(b"req-%d" % src, b"payload")
    return [
        PreVote(src, dst, b),
        PreVoteReply(src, dst, b, True, b),
        Prepare(src, dst, b, 7),
        Promise(src, dst, b, True, b, (LogEntry(8, b, (p,), False),), 6),
        Accept(src, dst, b, (SlotValue(9, (p,)), SlotValue(10, ())), 8),
        Accepted(src, dst, b, True, b, (9, 10)),
        Heartbeat(src, dst, b, 10, 4),
        HeartbeatReply(src, dst, b, True, b, 4),
        Forward(src, dst, (p,)),
        ReadIndexRequest(src, dst, (b"r1", b"r2")),
        ReadIndexReply(src, dst, (b"r1",), 10),
        CatchUpRequest(src, dst, 11),
        CatchUpReply(src, dst, (SlotValue(11, (p,)),), 11, 0),
    ]


def heartbeat(src: int, dst: int, seq: int) -> Heartbeat:
    """A small message told apart from others by ``seq`` (its ``read_seq``)."""
    return Heartbeat(src, dst, Ballot(1, src), 0, seq)


class Cluster(Protocol):
    node_ids: tuple[int, ...]
    received: dict[int, list[Message]]
    """Every message delivered to each node id, across restarts, in delivery order."""

    def transport(self, node_id: int) -> Transport: ...

    def start(self, node_id: int) -> None: ...

    def stop(self, node_id: int) -> None: ...

    def settle(self) -> None:
        """Let messages that are on their way arrive (pumps a queued network)."""

    def close(self) -> None: ...


class _Recorder:
    def __init__(self, node_ids: Iterable[int]) -> None:
        self.lock = threading.Lock()
        self.received: dict[int, list[Message]] = {n: [] for n in node_ids}

    def deliver_to(self, node_id: int) -> Callable[[Message], None]:
        def deliver(msg: Message) -> None:
            with self.lock:
                self.received[node_id].append(msg)

        return deliver


class MemoryCluster:
    def __init__(self, node_ids: tuple[int, ...], *, queued: bool) -> None:
        self.node_ids = node_ids
        self.network = MemoryNetwork(queued=queued)
        self._recorder = _Recorder(node_ids)
        self.received = self._recorder.received
        self._transports: dict[int, MemoryTransport] = {}
        for n in node_ids:
            self.start(n)

    def transport(self, node_id: int) -> Transport:
        return self._transports[node_id]

    def start(self, node_id: int) -> None:
        t = self.network.transport(node_id)
        t.start(self._recorder.deliver_to(node_id))
        self._transports[node_id] = t

    def stop(self, node_id: int) -> None:
        self._transports[node_id].close()

    def settle(self) -> None:
        self.network.pump()

    def close(self) -> None:
        for t in self._transports.values():
            t.close()


class GrpcCluster:
    def __init__(self, node_ids: tuple[int, ...], **options: int) -> None:
        self.node_ids = node_ids
        self._options = options
        self._recorder = _Recorder(node_ids)
        self.received = self._recorder.received
        self._transports: dict[int, PeerTransport] = {}
        self.ports: dict[int, int] = {}
        for n in node_ids:
            # Every peer's port is known only once it has bound port 0: placeholders first.
            peers = {p: "127.0.0.1:1" for p in node_ids if p != n}
            self._transports[n] = PeerTransport(n, CLUSTER_ID, "127.0.0.1:0", peers, **options)
            self.ports[n] = self._transports[n].port
        for n, t in self._transports.items():
            for p in node_ids:
                if p != n:
                    t.set_peer_address(p, self.address(p))
            t.start(self._recorder.deliver_to(n))

    def address(self, node_id: int) -> str:
        return f"127.0.0.1:{self.ports[node_id]}"

    def peers_of(self, node_id: int) -> dict[int, str]:
        return {p: self.address(p) for p in self.node_ids if p != node_id}

    def transport(self, node_id: int) -> PeerTransport:
        return self._transports[node_id]

    def start(self, node_id: int) -> None:
        """A new process for ``node_id``, on the port its predecessor had."""
        t = PeerTransport(
            node_id, CLUSTER_ID, self.address(node_id), self.peers_of(node_id), **self._options
        )
        t.start(self._recorder.deliver_to(node_id))
        self._transports[node_id] = t

    def stop(self, node_id: int) -> None:
        self._transports[node_id].close()

    def settle(self) -> None:
        pass

    def close(self) -> None:
        for t in self._transports.values():
            t.close()


def wait_until(
    cluster: Cluster | None, predicate: Callable[[], bool], timeout_s: float = 3.0
) -> float:
    """Poll until ``predicate()``; the seconds it took. Fails the test after ``timeout_s``."""
    started = time.monotonic()
    while True:
        if cluster is not None:
            cluster.settle()
        if predicate():
            return time.monotonic() - started
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"condition not met within {timeout_s} s")
        time.sleep(POLL_S)


@contextmanager
def sequencer_for(
    backend: SequencerBackend,
    socket: Path,
    on_rejected: Callable[[str], None] = lambda reason: None,
) -> Iterator[SequencerClient]:
    """A real Sequencer service in front of ``backend`` on the Unix socket ``socket``, and a
    real client of it; both stopped on exit."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    add_to_server(
        server, SequencerService(backend, record_bytes_max=1 << 20, on_rejected=on_rejected)
    )
    target = f"unix:{socket}"
    server.add_insecure_port(target)
    server.start()
    client = SequencerClient(target, backend.cluster_id)
    try:
        yield client
    finally:
        client.close()
        server.stop(None).wait()
