"""The receiving half of the peer transport: the ``PaxosPeer`` service's handlers.

Owns: what a node accepts from the network. ``Stream`` decodes every envelope of every batch
with the codec (protocol version, cluster, known sender, well-formedness), checks that it is
addressed to this node, and hands it to ``deliver``. ``FetchSnapshot`` streams the file a
``SnapshotSource`` names.
Must not import: ``runtime``, ``log``, ``replica``.
Called by: gRPC's server worker threads, one per open call; a ``Stream`` call holds its
worker for as long as the peer keeps the stream open.

Rejection is per call: one bad envelope ends the whole stream with a status that says why
(the sender logs it and reopens the stream), and is logged here once, rate-limited. Nothing
of the bad batch is delivered; earlier batches were. The one exception is an envelope whose
body is of a type this node does not know (a newer peer's new message type, which codec.py's
versioning lets older nodes drop): that envelope alone is dropped. Requests are registered
without a deserializer, so that unparseable bytes are answered by us with INVALID_ARGUMENT
and one log line, not by gRPC with INTERNAL and a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final, NoReturn

import grpc
from google.protobuf.message import DecodeError
from google.protobuf.unknown_fields import UnknownFieldSet

from relstorage_paxos.core.messages import Message
from relstorage_paxos.errors import (
    MalformedMessageError,
    PeerMessageError,
    ProtocolVersionError,
    SnapshotTransferError,
    UnknownNodeError,
    WrongClusterError,
    WrongDestinationError,
)
from relstorage_paxos.pb import peer_pb2 as pb
from relstorage_paxos.transport import codec
from relstorage_paxos.transport.channels import SERVICE_NAME
from relstorage_paxos.transport.log_limit import LogLimiter, suppressed_note
from relstorage_paxos.transport.port import Deliver
from relstorage_paxos.transport.snapshot_transfer import CHUNK_BYTES, snapshot_chunks

logger = logging.getLogger(__name__)

SnapshotSource = Callable[[int], tuple[Path, int] | None]
"""``source(min_slot) -> (path, slot)``: a snapshot file covering every slot up to ``slot``
(≥ ``min_slot``), or ``None`` when this node has none that covers ``min_slot``. The file must
not change while it is being sent (a change is detected by the receiver, not prevented)."""

STATUS_OF: Final[dict[type[PeerMessageError], grpc.StatusCode]] = {
    WrongClusterError: grpc.StatusCode.FAILED_PRECONDITION,
    ProtocolVersionError: grpc.StatusCode.FAILED_PRECONDITION,
    WrongDestinationError: grpc.StatusCode.FAILED_PRECONDITION,
    UnknownNodeError: grpc.StatusCode.PERMISSION_DENIED,
    MalformedMessageError: grpc.StatusCode.INVALID_ARGUMENT,
}
"""The status a ``Stream`` call is rejected with, by the reason (the one place it is decided)."""


class PeerService:
    """The ``PaxosPeer`` handlers of one node."""

    def __init__(
        self,
        *,
        node_id: int,
        cluster_id: str,
        known_nodes: frozenset[int],
        deliver: Deliver,
        snapshot_source: SnapshotSource | None,
        snapshot_chunk_bytes: int = CHUNK_BYTES,
        limiter: LogLimiter,
        on_rejected: Callable[[str], None],
    ) -> None:
        """``on_rejected(reason)`` counts each refused stream, by the error's class name."""
        assert node_id in known_nodes, (node_id, known_nodes)
        self._node_id = node_id
        self._cluster_id = cluster_id
        self._known_nodes = known_nodes
        self._deliver = deliver
        self._snapshot_source = snapshot_source
        self._snapshot_chunk_bytes = snapshot_chunk_bytes
        self._limiter = limiter
        self._on_rejected = on_rejected
        self._stopped = False
        self.received_messages = 0
        """Messages delivered (read without a lock: a statistic, not a contract)."""

    def stop(self) -> None:
        """Deliver nothing more, even from a batch being delivered right now (one ``deliver``
        call already running may still finish after this returns)."""
        self._stopped = True

    def generic_handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            SERVICE_NAME,
            {
                "Stream": grpc.stream_unary_rpc_method_handler(
                    self.stream, response_serializer=pb.StreamAck.SerializeToString
                ),
                "FetchSnapshot": grpc.unary_stream_rpc_method_handler(
                    self.fetch_snapshot, response_serializer=pb.SnapshotChunk.SerializeToString
                ),
            },
        )

    # Stream

    def stream(self, batches: Iterator[bytes], context: grpc.ServicerContext) -> pb.StreamAck:
        """Deliver every message of every batch until the sender half-closes the stream."""
        ack = pb.StreamAck()
        peer = context.peer()  # empty once the call is cancelled
        try:
            for data in batches:
                messages = self._decode_batch(data, peer)
                for msg in messages:
                    if self._stopped:
                        return ack
                    self._deliver(msg)
                ack.batches_received += 1
                ack.envelopes_received += len(messages)
                self.received_messages += len(messages)
        except PeerMessageError as e:
            self._log_rejection(e, peer)
            rejection = (
                STATUS_OF.get(type(e), grpc.StatusCode.INVALID_ARGUMENT),
                f"node {self._node_id} rejects the stream: {type(e).__name__}: {e}",
            )
        except grpc.RpcError:
            # Cancelled by the sender (its node stopped), the connection died, or a batch was
            # over max_receive_message_length (gRPC answered RESOURCE_EXHAUSTED itself). gRPC
            # tells the handler no more than that.
            self._log_broken_stream(peer, ack)
            return ack
        except Exception:
            logger.exception(
                "node %d: error handling a stream from %s; rejecting it",
                self._node_id,
                peer,
            )
            rejection = (grpc.StatusCode.INTERNAL, f"node {self._node_id}: internal error")
        else:
            logger.debug(
                "node %d: stream from %s closed after %d batches, %d messages",
                self._node_id,
                peer,
                ack.batches_received,
                ack.envelopes_received,
            )
            return ack
        # Outside the try: abort() raises, and must reach gRPC rather than our handlers.
        _abort(context, *rejection)

    def _decode_batch(self, data: bytes, peer: str) -> list[Message]:
        """The messages of one serialized ``EnvelopeBatch``, all of them valid for this node,
        or ``PeerMessageError`` for the first that is not."""
        try:
            batch = pb.EnvelopeBatch.FromString(data)
        except DecodeError as e:
            raise MalformedMessageError(f"unparseable batch ({len(data)} bytes): {e}") from e
        if len(UnknownFieldSet(batch)):
            raise MalformedMessageError(f"batch ({len(data)} bytes) with unknown fields")
        messages: list[Message] = []
        for env in batch.envelopes:
            try:
                msg = codec.decode(env, self._cluster_id, self._known_nodes)
            except MalformedMessageError:
                if env.WhichOneof("body") is None and len(UnknownFieldSet(env)):
                    self._log_unknown_body(env, peer)
                    continue
                raise
            if msg.src == self._node_id:
                raise UnknownNodeError(
                    f"{type(msg).__name__} claims to come from node {msg.src}, this node itself"
                )
            if msg.dst != self._node_id:
                raise WrongDestinationError(
                    f"{type(msg).__name__} from node {msg.src} for node {msg.dst} reached node "
                    f"{self._node_id} (does node {msg.src} have the right peer addresses?)"
                )
            messages.append(msg)
        return messages

    def _log_rejection(self, error: PeerMessageError, peer: str) -> None:
        self._on_rejected(type(error).__name__)
        suppressed = self._limiter.allow(("rejected", type(error), _host(peer)))
        if suppressed is not None:
            logger.warning(
                "node %d: rejected stream from %s: %s: %s%s",
                self._node_id,
                peer,
                type(error).__name__,
                error,
                suppressed_note(suppressed),
            )

    def _log_broken_stream(self, peer: str, ack: pb.StreamAck) -> None:
        suppressed = self._limiter.allow(("broken", _host(peer)))
        if suppressed is not None:
            logger.info(
                "node %d: stream from %s broke off after %d batches (sender cancelled or gone, "
                "or a batch over the size limit)%s",
                self._node_id,
                peer,
                ack.batches_received,
                suppressed_note(suppressed),
            )

    def _log_unknown_body(self, env: pb.Envelope, peer: str) -> None:
        suppressed = self._limiter.allow(("unknown-body", _host(peer)))
        if suppressed is not None:
            logger.warning(
                "node %d: dropped an envelope of a message type unknown here from %s "
                "(a newer peer?)%s",
                self._node_id,
                peer,
                suppressed_note(suppressed),
            )

    # FetchSnapshot

    def fetch_snapshot(
        self, request_bytes: bytes, context: grpc.ServicerContext
    ) -> Iterator[pb.SnapshotChunk]:
        """Stream the snapshot that covers the requested slot, or fail the call with the
        reason: INVALID_ARGUMENT, FAILED_PRECONDITION (other cluster, or no snapshot covering
        the slot), PERMISSION_DENIED (unknown node), UNIMPLEMENTED (no snapshot source),
        ABORTED (the file changed while being sent), INTERNAL."""
        rejection: tuple[grpc.StatusCode, str]
        try:
            request = self._check_snapshot_request(request_bytes)
            path, slot = self._snapshot_for(request)
            logger.info(
                "node %d: sending snapshot of slot %d (%s) to node %d",
                self._node_id,
                slot,
                path,
                request.requester_id,
            )
            yield from snapshot_chunks(path, slot, self._snapshot_chunk_bytes)
            return
        except _SnapshotRefused as e:
            rejection = (e.code, str(e))
        except SnapshotTransferError as e:
            rejection = (grpc.StatusCode.ABORTED, str(e))
        except Exception:
            logger.exception(
                "node %d: error sending a snapshot to %s", self._node_id, context.peer()
            )
            rejection = (grpc.StatusCode.INTERNAL, f"node {self._node_id}: internal error")
        if rejection[0] is not grpc.StatusCode.INTERNAL:
            logger.warning(
                "node %d: snapshot request from %s refused: %s %s",
                self._node_id,
                context.peer(),
                rejection[0].name,
                rejection[1],
            )
        _abort(context, *rejection)

    def _check_snapshot_request(self, request_bytes: bytes) -> pb.SnapshotRequest:
        try:
            request = pb.SnapshotRequest.FromString(request_bytes)
        except DecodeError as e:
            raise _SnapshotRefused(grpc.StatusCode.INVALID_ARGUMENT, f"bad request: {e}") from e
        if request.cluster_id != self._cluster_id:
            raise _SnapshotRefused(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"request for cluster {request.cluster_id!r}, this is {self._cluster_id!r}",
            )
        if request.requester_id not in self._known_nodes:
            raise _SnapshotRefused(
                grpc.StatusCode.PERMISSION_DENIED,
                f"node {request.requester_id} is not a member",
            )
        return request

    def _snapshot_for(self, request: pb.SnapshotRequest) -> tuple[Path, int]:
        if self._snapshot_source is None:
            raise _SnapshotRefused(
                grpc.StatusCode.UNIMPLEMENTED, f"node {self._node_id} serves no snapshots"
            )
        found = self._snapshot_source(request.min_slot)
        if found is None or found[1] < request.min_slot:
            have = "none" if found is None else f"slot {found[1]}"
            raise _SnapshotRefused(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"node {self._node_id} has no snapshot covering slot {request.min_slot} "
                f"(has {have})",
            )
        return found


class _SnapshotRefused(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code


def _abort(context: grpc.ServicerContext, code: grpc.StatusCode, details: str) -> NoReturn:
    context.abort(code, details)


def _host(peer: str) -> str:
    """``ipv4:127.0.0.1:54321`` → ``ipv4:127.0.0.1``: the rate-limit key must not change with
    each reconnect's ephemeral port."""
    return peer.rpartition(":")[0] or peer
