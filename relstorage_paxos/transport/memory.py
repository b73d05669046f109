"""The in-memory twin of ``PeerTransport``: several nodes in one process, no sockets.

Owns: ``MemoryNetwork``, the hub that routes messages between the ``MemoryTransport`` of each
node, and can cut links. Delivery is either synchronous (``send`` calls the destination's
``deliver`` before returning) or queued (messages wait until ``pump``), so a test decides
when messages arrive.
Must not import: grpc, generated code, ``runtime``.
Called by: tests and any thread; thread-safe. ``deliver`` runs on the thread that calls
``send`` (synchronous) or ``pump`` (queued), never while the network's lock is held, so it may
send in turn.

Same contract as ``PeerTransport`` (tests/transport/test_transport_contract.py): a message
reaches only its ``dst``, at most once; messages for a node that is not started, closed, or
behind a cut link are dropped and counted in ``MemoryNetwork.dropped``.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Sequence

from relstorage_paxos.core.messages import Message
from relstorage_paxos.transport.port import Deliver

logger = logging.getLogger(__name__)


class MemoryNetwork:
    """Connects the ``MemoryTransport`` of several nodes."""

    def __init__(self, *, queued: bool = False) -> None:
        self.queued = queued
        self._lock = threading.Lock()
        self._receivers: dict[int, Deliver] = {}
        self._cut: set[tuple[int, int]] = set()
        self._in_flight: deque[Message] = deque()
        self.delivered = 0
        self.dropped = 0

    def transport(self, node_id: int) -> MemoryTransport:
        """A new transport for ``node_id`` on this network."""
        return MemoryTransport(node_id, self)

    def set_link(self, src: int, dst: int, up: bool) -> None:
        """Let messages from ``src`` to ``dst`` through, or drop them (one direction only)."""
        with self._lock:
            if up:
                self._cut.discard((src, dst))
            else:
                self._cut.add((src, dst))

    def isolate(self, node_id: int, nodes: Sequence[int]) -> None:
        """Cut both directions between ``node_id`` and each of ``nodes``."""
        for other in nodes:
            self.set_link(node_id, other, False)
            self.set_link(other, node_id, False)

    def heal(self) -> None:
        """Bring every link up again."""
        with self._lock:
            self._cut.clear()

    @property
    def pending(self) -> int:
        """Messages waiting for ``pump`` (queued mode)."""
        with self._lock:
            return len(self._in_flight)

    def pump(self, max_messages: int | None = None) -> int:
        """Deliver queued messages in the order they were sent, including any sent by the
        receivers meanwhile, until none are left or ``max_messages`` were taken; how many
        were taken (delivered or dropped)."""
        taken = 0
        while max_messages is None or taken < max_messages:
            with self._lock:
                if not self._in_flight:
                    break
                msg = self._in_flight.popleft()
            taken += 1
            self._deliver(msg)
        return taken

    def _attach(self, node_id: int, deliver: Deliver) -> None:
        with self._lock:
            if node_id in self._receivers:
                raise RuntimeError(f"node {node_id} is already on this network")
            self._receivers[node_id] = deliver

    def _detach(self, node_id: int, deliver: Deliver | None) -> None:
        with self._lock:
            if deliver is not None and self._receivers.get(node_id) is deliver:
                del self._receivers[node_id]

    def _send(self, messages: Sequence[Message]) -> None:
        if self.queued:
            with self._lock:
                self._in_flight.extend(messages)
            return
        for msg in messages:
            self._deliver(msg)

    def _deliver(self, msg: Message) -> None:
        with self._lock:
            deliver = self._receivers.get(msg.dst)
            if deliver is None or (msg.src, msg.dst) in self._cut:
                self.dropped += 1
                return
            self.delivered += 1
        deliver(msg)


class MemoryTransport:
    """One node's ``Transport`` on a ``MemoryNetwork``."""

    def __init__(self, node_id: int, network: MemoryNetwork) -> None:
        self.node_id = node_id
        self._network = network
        self._deliver: Deliver | None = None
        self._closed = False

    def start(self, deliver: Deliver) -> None:
        if self._deliver is not None or self._closed:
            raise RuntimeError(f"node {self.node_id}: transport already started or closed")
        self._network._attach(self.node_id, deliver)
        self._deliver = deliver

    def send(self, messages: Sequence[Message]) -> None:
        if self._closed:
            return
        routed = []
        for msg in messages:
            assert msg.src == self.node_id, (msg.src, self.node_id)
            if msg.dst == self.node_id:
                logger.warning(
                    "node %d: dropped %s addressed to itself", self.node_id, type(msg).__name__
                )
                continue
            routed.append(msg)
        self._network._send(routed)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._network._detach(self.node_id, self._deliver)
