"""``PeerTransport``: the ``Transport`` port over gRPC, plus snapshot download.

Owns: a node's ``PaxosPeer`` server (``peer_server.py``) and its outbound links, one per peer
(``peer_client.py``: bounded queue, sender thread, long-lived ``Stream`` call); the channel
options (``channels.py``); snapshot fetching (``snapshot_transfer.py``). The only code that
knows node ids map to network addresses.
Must not import: ``runtime``, ``log``, ``replica``.
Called by: the runtime's loop thread (``send``), its owner (``start``, ``close``,
``set_peer_address``), a helper thread of the runtime (``fetch_snapshot``); ``deliver`` is
called from gRPC's server threads. All methods are thread-safe.

Not here (yet): TLS. ``cryptography`` is not installed in the project's environment, so there
is no way to test certificates generated at test time; the server listens in plaintext.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Final

import grpc

from relstorage_paxos.core.messages import Message
from relstorage_paxos.errors import SnapshotTransferError
from relstorage_paxos.pb import peer_pb2 as pb
from relstorage_paxos.transport import codec
from relstorage_paxos.transport.channels import (
    DEFAULT_MAX_MESSAGE_BYTES,
    FETCH_SNAPSHOT_METHOD,
    MIB,
    client_options,
    server_options,
)
from relstorage_paxos.transport.log_limit import LogLimiter, suppressed_note
from relstorage_paxos.transport.peer_client import LinkStats, OutboundQueue, PeerSender, framed_size
from relstorage_paxos.transport.peer_server import PeerService, SnapshotSource
from relstorage_paxos.transport.port import Deliver
from relstorage_paxos.transport.snapshot_transfer import CHUNK_BYTES, receive_snapshot

logger = logging.getLogger(__name__)

CLOSE_GRACE_S: Final = 0.25
"""How long ``close`` lets half-closed outbound streams end with an ack before cancelling
them (a peer that is down never acks)."""
_CHUNK_HEADROOM_BYTES: Final = 1024
"""Room for a chunk's other fields next to its data, inside max_message_bytes."""


class PeerTransport:
    """A node's end of the peer network (see the module docstring and ``port.Transport``).

    The constructor binds ``listen`` (a gRPC address such as ``127.0.0.1:7101``; port 0 picks
    a free port, reported by ``port``) but serves only from ``start``. ``peers`` maps every
    other member's node id to its address; these ids and this node's are the only senders
    accepted. Messages for a peer wait in its queue (at most ``queue_messages_max`` envelopes
    and ``queue_bytes_max`` bytes, oldest dropped first) and go out in batches of up to
    ``batch_bytes_max``. No message over ``max_message_bytes`` is sent or accepted.
    """

    def __init__(
        self,
        node_id: int,
        cluster_id: str,
        listen: str,
        peers: Mapping[int, str],
        *,
        snapshot_source: SnapshotSource | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        queue_messages_max: int = 10_000,
        queue_bytes_max: int | None = None,
        batch_bytes_max: int = MIB,
        snapshot_chunk_bytes: int | None = None,
        on_rejected: Callable[[str], None] = lambda reason: None,
    ) -> None:
        """``on_rejected(reason)`` is called, on a gRPC worker thread, for each inbound stream
        refused for a bad message, with the error's class name (the node counts them)."""
        if node_id in peers:
            raise ValueError(f"node {node_id} is listed among its own peers")
        if snapshot_chunk_bytes is None:
            snapshot_chunk_bytes = min(CHUNK_BYTES, max_message_bytes - _CHUNK_HEADROOM_BYTES)
        if not 0 < snapshot_chunk_bytes <= max_message_bytes - _CHUNK_HEADROOM_BYTES:
            raise ValueError(f"snapshot_chunk_bytes {snapshot_chunk_bytes} does not fit")
        self.node_id = node_id
        self.cluster_id = cluster_id
        self._peers = dict(peers)
        self._known_nodes = frozenset(peers) | {node_id}
        self._snapshot_source = snapshot_source
        self._max_message_bytes = max_message_bytes
        self._batch_bytes_max = min(batch_bytes_max, max_message_bytes)
        self._snapshot_chunk_bytes = snapshot_chunk_bytes
        self._limiter = LogLimiter()
        self._on_rejected = on_rejected
        self._lock = threading.Lock()
        self._started = False
        self._closed = False
        self._service: PeerService | None = None
        self._queues = {
            peer_id: OutboundQueue(queue_messages_max, queue_bytes_max or max_message_bytes)
            for peer_id in self._peers
        }
        self._senders: dict[int, PeerSender] = {}
        # Each open Stream call holds a worker for its lifetime: one per peer, plus one per
        # peer for a stream that is still being torn down when its replacement arrives, plus
        # room for snapshot downloads. Beyond that, calls are refused (RESOURCE_EXHAUSTED)
        # rather than queued behind streams that never end.
        workers = 3 * len(self._peers) + 4
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix=f"paxos-peer-{node_id}")
        self._server = grpc.server(
            self._executor,
            options=server_options(max_message_bytes),
            maximum_concurrent_rpcs=workers,
        )
        try:
            self._port = self._server.add_insecure_port(listen)
        except RuntimeError as e:
            self._executor.shutdown(wait=False)
            raise RuntimeError(f"node {node_id} cannot listen on {listen!r}: {e}") from e

    @property
    def port(self) -> int:
        """The TCP port the server is bound to."""
        return self._port

    @property
    def received_messages(self) -> int:
        """Messages delivered so far."""
        return 0 if self._service is None else self._service.received_messages

    def add_service(self, register: Callable[[grpc.Server], None]) -> None:
        """Serve another gRPC service on the peer port (before ``start``): the node serves
        a status-only Sequencer there, so that ``relstorage-paxos status`` on any node can
        show every member."""
        with self._lock:
            if self._started:
                raise RuntimeError(f"node {self.node_id}: add_service after start")
            register(self._server)

    def start(self, deliver: Deliver) -> None:
        with self._lock:
            if self._started or self._closed:
                raise RuntimeError(f"node {self.node_id}: transport already started or closed")
            self._started = True
            self._service = PeerService(
                node_id=self.node_id,
                cluster_id=self.cluster_id,
                known_nodes=self._known_nodes,
                deliver=deliver,
                snapshot_source=self._snapshot_source,
                snapshot_chunk_bytes=self._snapshot_chunk_bytes,
                limiter=self._limiter,
                on_rejected=self._on_rejected,
            )
            self._server.add_generic_rpc_handlers((self._service.generic_handler(),))
            self._server.start()
            for peer_id in self._peers:
                self._start_sender(peer_id)
        logger.info(
            "node %d: peer transport listening on port %d, peers %s",
            self.node_id,
            self._port,
            self._peers,
        )

    def send(self, messages: Sequence[Message]) -> None:
        """Queue each message for its ``dst`` (see ``port.Transport.send``). Encoding happens
        here, on the caller's thread, so a message the wire cannot carry fails loudly where it
        was made; a message over ``max_message_bytes`` is dropped with a log line."""
        by_dst: dict[int, list[bytes]] = {}
        for msg in messages:
            assert msg.src == self.node_id, (msg.src, self.node_id)
            if msg.dst not in self._queues:
                self._log_drop("no-route", f"no peer {msg.dst}", msg)
                continue
            data = codec.encode(msg, self.cluster_id).SerializeToString()
            if framed_size(len(data)) > self._max_message_bytes:
                self._log_drop("oversized", f"{len(data)} bytes, over max_message_bytes", msg)
                continue
            by_dst.setdefault(msg.dst, []).append(data)
        if self._closed:
            return
        for dst, envelopes in by_dst.items():
            self._queues[dst].put(envelopes)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            senders = list(self._senders.values())
            self._senders.clear()
        deadline_s = time.monotonic() + CLOSE_GRACE_S
        for sender in senders:
            sender.begin_close()
        for queue in self._queues.values():
            queue.clear()
        if self._service is not None:
            self._service.stop()
        # No grace for inbound calls: peers' streams never end by themselves, so a grace
        # period would always run out; what they had in flight is lost, as Paxos allows.
        server_stopped = self._server.stop(None)
        for sender in senders:
            sender.finish_close(deadline_s)
        server_stopped.wait()
        self._executor.shutdown(wait=False)
        logger.info("node %d: peer transport closed", self.node_id)

    def set_peer_address(self, peer_id: int, address: str) -> None:
        """Send to member ``peer_id`` at ``address`` from now on (a peer that moved, or one
        whose port is known only after it bound port 0). Queued messages are kept; a batch in
        flight on the old stream may be lost."""
        with self._lock:
            if peer_id not in self._peers:
                raise ValueError(f"node {peer_id} is not a peer of node {self.node_id}")
            self._peers[peer_id] = address
            old = self._senders.pop(peer_id, None)
            if old is not None:
                old.begin_close()
                old.finish_close(time.monotonic())
            if self._started and not self._closed:
                self._start_sender(peer_id)

    def stats(self) -> dict[int, LinkStats]:
        """Counters of each outbound link, by peer id."""
        return {peer_id: q.snapshot_stats() for peer_id, q in self._queues.items()}

    def fetch_snapshot(self, peer_id: int, min_slot: int, dest: Path, timeout_s: float) -> int:
        """Download ``peer_id``'s snapshot covering at least ``min_slot`` to ``dest``; the slot
        it covers. Raises ``SnapshotTransferError`` (and leaves ``dest`` as it was, with no
        partial file) if the peer has none, the call fails or takes over ``timeout_s``, or any
        check fails (``snapshot_transfer.receive_snapshot``)."""
        address = self._peers.get(peer_id)
        if address is None:
            raise ValueError(f"node {peer_id} is not a peer of node {self.node_id}")
        started_s = time.monotonic()
        channel = grpc.insecure_channel(address, options=client_options(self._max_message_bytes))
        try:
            fetch = channel.unary_stream(
                FETCH_SNAPSHOT_METHOD,
                request_serializer=pb.SnapshotRequest.SerializeToString,
                response_deserializer=pb.SnapshotChunk.FromString,
            )
            request = pb.SnapshotRequest(
                cluster_id=self.cluster_id, requester_id=self.node_id, min_slot=min_slot
            )
            chunks = fetch(request, timeout=timeout_s)
            try:
                slot = receive_snapshot(chunks, min_slot, dest)
            except grpc.RpcError as e:
                code = e.code().name if isinstance(e, grpc.Call) else "?"
                details = e.details() if isinstance(e, grpc.Call) else str(e)
                raise SnapshotTransferError(
                    f"snapshot from node {peer_id} at {address}: {code} {details}"
                ) from e
            finally:
                chunks.cancel()
        finally:
            channel.close()
        logger.info(
            "node %d: installed snapshot of slot %d from node %d in %s (%d bytes, %.2f s)",
            self.node_id,
            slot,
            peer_id,
            dest,
            dest.stat().st_size,
            time.monotonic() - started_s,
        )
        return slot

    def _start_sender(self, peer_id: int) -> None:
        address = self._peers[peer_id]
        sender = PeerSender(
            node_id=self.node_id,
            peer_id=peer_id,
            address=address,
            channel=grpc.insecure_channel(address, options=client_options(self._max_message_bytes)),
            queue=self._queues[peer_id],
            batch_bytes_max=self._batch_bytes_max,
            limiter=self._limiter,
        )
        self._senders[peer_id] = sender
        sender.start()

    def _log_drop(self, kind: str, reason: str, msg: Message) -> None:
        suppressed = self._limiter.allow(("send-drop", kind, msg.dst))
        if suppressed is not None:
            logger.warning(
                "node %d: dropped %s for node %d: %s%s",
                self.node_id,
                type(msg).__name__,
                msg.dst,
                reason,
                suppressed_note(suppressed),
            )
