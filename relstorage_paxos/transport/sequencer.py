"""The Sequencer service (app ↔ node) over gRPC: the server side and the client side.

Owns: the translation between ``sequencer.proto`` and plain Python values, request checks
(cluster id, sizes), and the one mapping of gRPC status codes to ``relstorage_paxos.errors``.
Must not import: ``runtime`` or ``adapter`` (the node hands the server a ``SequencerBackend``).
Called by: gRPC's server threads (``SequencerService``); any application thread
(``SequencerClient``, which is thread-safe like a gRPC channel).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Final, NoReturn, Protocol, TypeVar

import grpc
from google.protobuf import message_factory
from google.protobuf.message import DecodeError
from google.protobuf.message import Message as PbMessage

from relstorage_paxos.errors import (
    NodeUnavailableError,
    OutcomeUnknownError,
    PaxosError,
    RecordTooLargeError,
    RequestRejectedError,
    WrongClusterError,
)
from relstorage_paxos.pb import peer_pb2, sequencer_pb2, sequencer_pb2_grpc

logger = logging.getLogger(__name__)

REQUEST_ID_BYTES_MAX: Final = 256
DEFAULT_TIMEOUT_S: Final = 30.0
MAX_TIMEOUT_S: Final = 600.0
GRACE_S: Final = 2.0
"""Client deadlines exceed the timeout the server is given by this much, so the server's
DEADLINE_EXCEEDED (outcome unknown) arrives before gRPC's own."""
ALLOCATE_OIDS_MAX: Final = 1 << 16
"""OIDs one AllocateOids call may ask for (applications ask for 100 at a time): a larger
count would have the node reserve a block of the cluster's OID space out of all
proportion, in one log record."""

T = TypeVar("T")

_ROLES: Final = {
    "follower": sequencer_pb2.ROLE_FOLLOWER,
    "pre-candidate": sequencer_pb2.ROLE_PRE_CANDIDATE,
    "candidate": sequencer_pb2.ROLE_CANDIDATE,
    "leader": sequencer_pb2.ROLE_LEADER,
}
_ROLE_NAMES: Final = {value: name for name, value in _ROLES.items()}


@dataclass(frozen=True, slots=True)
class PeerView:
    node_id: int
    address: str
    reachable: bool = False
    """This node heard from the peer recently (within a few election timeouts)."""
    last_heard_ms_ago: int | None = None


@dataclass(frozen=True, slots=True)
class StatusView:
    """One node's view of itself, as ``relstorage-paxos status`` shows it."""

    node_id: int
    cluster_id: str
    role: str
    leader_id: int | None
    ballot: str
    chosen_slot: int
    applied_slot: int
    truncated_slot: int
    last_tid: int
    running_hash: bytes
    serving: bool
    not_serving_reason: str
    uptime_s: float
    software_version: str
    peers: tuple[PeerView, ...] = ()
    pid: int = 0
    data_dir_bytes: int = 0
    wal_bytes: int = 0
    disk_free_bytes: int = 0

    def to_json(self) -> dict[str, object]:
        """The view as JSON-ready values (``status --json`` and the HTTP ``/status``)."""
        data = asdict(self)
        data["running_hash"] = self.running_hash.hex()
        return data


class SequencerBackend(Protocol):
    """What the node offers the Sequencer service (implemented by ``server.NodeServer``)."""

    cluster_id: str

    def propose(self, request_id: bytes, record: bytes) -> Future[tuple[int, bytes]]: ...

    def read_index(self) -> Future[int]: ...

    def wait_applied(self, slot: int, timeout_s: float) -> int: ...

    def allocate_oids(self, count: int, timeout_s: float) -> tuple[int, int]: ...

    def status(self) -> StatusView: ...


def _timeout(timeout_ms: int, context: grpc.ServicerContext) -> float:
    """The request's own timeout (or the default), cut to end before the caller's gRPC
    deadline, so that the caller reads why (our client gives a deadline ``GRACE_S`` longer
    than its timeout for that) instead of a bare DEADLINE_EXCEEDED."""
    timeout_s = min(MAX_TIMEOUT_S, timeout_ms / 1000) if timeout_ms else DEFAULT_TIMEOUT_S
    remaining = context.time_remaining()
    if remaining is None:
        return timeout_s
    return max(0.0, min(timeout_s, max(remaining - GRACE_S, remaining / 2)))


class SequencerService(sequencer_pb2_grpc.SequencerServicer):
    """The server half. ``status_only`` serves just ``Status`` (for the peer port, where
    other nodes' operators may ask, but no one may propose). A record over
    ``record_bytes_max`` (the node's ``max-record-bytes``) is refused with OUT_OF_RANGE, which
    the client reads as ``RecordTooLargeError``. ``on_rejected(reason)`` counts each request
    refused as invalid, by the status name it is answered with."""

    def __init__(
        self,
        backend: SequencerBackend,
        *,
        record_bytes_max: int,
        status_only: bool = False,
        on_rejected: Callable[[str], None] = lambda reason: None,
    ) -> None:
        self._backend = backend
        self._record_bytes_max = record_bytes_max
        self._status_only = status_only
        self._on_rejected = on_rejected

    def parsing(
        self, name: str, request_type: type[PbMessage]
    ) -> Callable[[bytes, grpc.ServicerContext], PbMessage]:
        """The handler of method ``name``, which parses its request itself."""
        method = getattr(self, name)

        def handle(data: bytes, context: grpc.ServicerContext) -> PbMessage:
            try:
                request = request_type.FromString(data)
            except DecodeError as exc:
                self._reject(
                    context,
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"unparseable {request_type.__name__} ({len(data)} bytes): {exc}",
                )
            reply: PbMessage = method(request, context)
            return reply

        return handle

    def _reject(
        self, context: grpc.ServicerContext, code: grpc.StatusCode, details: str
    ) -> NoReturn:
        self._on_rejected(code.name)
        _abort(context, code, details)

    def _check(self, cluster_id: str, context: grpc.ServicerContext, write: bool) -> None:
        if write and self._status_only:
            self._reject(context, grpc.StatusCode.PERMISSION_DENIED, "only Status is served here")
        if cluster_id != self._backend.cluster_id:
            self._reject(
                context,
                grpc.StatusCode.FAILED_PRECONDITION,
                f"this node belongs to cluster {self._backend.cluster_id!r}, "
                f"not {cluster_id!r}: check the address the client was given",
            )

    def _wait(
        self, future: Future[T], timeout_s: float, context: grpc.ServicerContext, late: str
    ) -> T:
        try:
            return future.result(timeout=timeout_s)
        except FutureTimeout:
            _abort(context, grpc.StatusCode.DEADLINE_EXCEEDED, late)
        except OutcomeUnknownError as exc:
            _abort(context, grpc.StatusCode.DEADLINE_EXCEEDED, str(exc))
        except RecordTooLargeError as exc:
            self._reject(context, grpc.StatusCode.OUT_OF_RANGE, str(exc))
        except RequestRejectedError as exc:
            self._reject(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except PaxosError as exc:
            _abort(context, grpc.StatusCode.UNAVAILABLE, str(exc))

    def Propose(
        self, request: sequencer_pb2.ProposeRequest, context: grpc.ServicerContext
    ) -> sequencer_pb2.ProposeReply:
        self._check(request.cluster_id, context, write=True)
        if not 0 < len(request.request_id) <= REQUEST_ID_BYTES_MAX:
            self._reject(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"request_id must be 1-{REQUEST_ID_BYTES_MAX} bytes",
            )
        if len(request.record) > self._record_bytes_max:
            refused = RecordTooLargeError.of(
                "a record", len(request.record), self._record_bytes_max
            )
            self._reject(context, grpc.StatusCode.OUT_OF_RANGE, str(refused))
        try:
            future = self._backend.propose(request.request_id, request.record)
        except RequestRejectedError as exc:
            self._reject(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        slot, outcome = self._wait(
            future,
            _timeout(request.timeout_ms, context),
            context,
            "outcome unknown: the record may still be applied; retry with the same request_id",
        )
        return sequencer_pb2.ProposeReply(slot=slot, outcome=outcome)

    def ReadIndex(
        self, request: sequencer_pb2.ReadIndexRequest, context: grpc.ServicerContext
    ) -> sequencer_pb2.ReadIndexReply:
        self._check(request.cluster_id, context, write=True)
        slot = self._wait(
            self._backend.read_index(),
            _timeout(0, context),
            context,
            "no read barrier in time: this node hears no leader with a quorum",
        )
        return sequencer_pb2.ReadIndexReply(slot=slot)

    def WaitApplied(
        self, request: sequencer_pb2.WaitAppliedRequest, context: grpc.ServicerContext
    ) -> sequencer_pb2.WaitAppliedReply:
        self._check(request.cluster_id, context, write=True)
        applied = self._backend.wait_applied(request.slot, _timeout(request.timeout_ms, context))
        return sequencer_pb2.WaitAppliedReply(applied_slot=applied)

    def AllocateOids(
        self, request: sequencer_pb2.AllocateOidsRequest, context: grpc.ServicerContext
    ) -> sequencer_pb2.AllocateOidsReply:
        self._check(request.cluster_id, context, write=True)
        if not 0 < request.count <= ALLOCATE_OIDS_MAX:
            self._reject(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"count must be 1-{ALLOCATE_OIDS_MAX}, not {request.count}",
            )
        try:
            start, count = self._backend.allocate_oids(request.count, _timeout(0, context))
        except OutcomeUnknownError as exc:
            _abort(context, grpc.StatusCode.UNAVAILABLE, str(exc))
        return sequencer_pb2.AllocateOidsReply(start=start, count=count)

    def Status(
        self, request: sequencer_pb2.StatusRequest, context: grpc.ServicerContext
    ) -> sequencer_pb2.StatusReply:
        if request.cluster_id:
            self._check(request.cluster_id, context, write=False)
        view = self._backend.status()
        round_, _, node = view.ballot.partition(".")
        reply = sequencer_pb2.StatusReply(
            node_id=view.node_id,
            cluster_id=view.cluster_id,
            role=_ROLES.get(view.role, sequencer_pb2.ROLE_UNSPECIFIED),
            ballot=peer_pb2.Ballot(round=int(round_), node_id=int(node)),
            chosen_slot=view.chosen_slot,
            applied_slot=view.applied_slot,
            truncated_slot=view.truncated_slot,
            last_tid=view.last_tid,
            running_hash=view.running_hash,
            serving=view.serving,
            not_serving_reason=view.not_serving_reason,
            uptime_s=view.uptime_s,
            software_version=view.software_version,
            pid=view.pid,
            data_dir_bytes=view.data_dir_bytes,
            wal_bytes=view.wal_bytes,
            disk_free_bytes=view.disk_free_bytes,
        )
        if view.leader_id is not None:
            reply.leader_id = view.leader_id
        for peer in view.peers:
            status = reply.peers.add(
                node_id=peer.node_id, address=peer.address, reachable=peer.reachable
            )
            if peer.last_heard_ms_ago is not None:
                status.last_heard_ms_ago = peer.last_heard_ms_ago
        return reply


def _abort(context: grpc.ServicerContext, code: grpc.StatusCode, details: str) -> NoReturn:
    context.abort(code, details)
    raise AssertionError("context.abort returned")  # grpc raises; keeps the type checker right


def add_to_server(server: grpc.Server, service: SequencerService) -> None:
    """Serve ``service``'s methods, registered without a request deserializer (as the peer
    service's are): bytes that do not parse are answered INVALID_ARGUMENT by the service,
    not INTERNAL by gRPC with a traceback in the node's log."""
    descriptor = sequencer_pb2.DESCRIPTOR.services_by_name["Sequencer"]
    handlers: dict[str, grpc.RpcMethodHandler[bytes, PbMessage]] = {
        method.name: grpc.unary_unary_rpc_method_handler(
            service.parsing(method.name, message_factory.GetMessageClass(method.input_type)),
            response_serializer=message_factory.GetMessageClass(
                method.output_type
            ).SerializeToString,
        )
        for method in descriptor.methods
    }
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(descriptor.full_name, handlers),)
    )


# ---------------------------------------------------------------------------- client side


def error_from_rpc(exc: grpc.RpcError, target: str) -> PaxosError:
    """The one mapping from a failed Sequencer call to the error an application sees."""
    code = exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN
    details = (exc.details() if isinstance(exc, grpc.Call) else None) or str(exc)
    where = f"node at {target}: {details}"
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return OutcomeUnknownError(where)
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED):
        socket_path = Path(target.removeprefix("unix:"))
        if target.startswith("unix:") and not socket_path.exists():
            return NodeUnavailableError(
                f"no node serves {socket_path.parent}: its socket {socket_path.name} is missing."
                f" Start the node (`relstorage-paxos serve --data-dir {socket_path.parent}`),"
                " or set `embedded true` in the <paxos> section to run it in this process"
            )
        return NodeUnavailableError(where)
    if code == grpc.StatusCode.FAILED_PRECONDITION:
        return WrongClusterError(where)
    if code == grpc.StatusCode.OUT_OF_RANGE:
        return RecordTooLargeError(where)
    return RequestRejectedError(f"{where} ({code.name})")


class SequencerClient:
    """A connection to one node's Sequencer (``unix:/path/sequencer.sock`` or host:port).

    ``max_record_bytes`` is the node's ``max-record-bytes``: a larger record is refused here,
    before it is sent (gRPC would refuse to send one over ``max_message_bytes`` with an error
    that reads as an unreachable node). ``max_message_bytes`` must leave room for a record's
    envelope (``NodeSettings.max_message_bytes``)."""

    def __init__(
        self,
        target: str,
        cluster_id: str,
        *,
        max_record_bytes: int = 64 << 20,
        max_message_bytes: int = 65 << 20,
    ):
        assert max_message_bytes > max_record_bytes, (max_message_bytes, max_record_bytes)
        self.target = target
        self.cluster_id = cluster_id
        self.max_record_bytes = max_record_bytes
        self._channel = grpc.insecure_channel(
            target,
            options=[
                ("grpc.max_send_message_length", max_message_bytes),
                ("grpc.max_receive_message_length", max_message_bytes),
                ("grpc.initial_reconnect_backoff_ms", 100),
                ("grpc.max_reconnect_backoff_ms", 1000),
            ],
        )
        self._stub = sequencer_pb2_grpc.SequencerStub(self._channel)  # type: ignore[no-untyped-call]

    def close(self) -> None:
        self._channel.close()

    def _call(self, method: Callable[..., T], request: object, timeout_s: float) -> T:
        try:
            return method(request, timeout=timeout_s + GRACE_S)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, self.target) from None

    def propose(self, request_id: bytes, record: bytes, timeout_s: float) -> tuple[int, bytes]:
        """Propose one record; (slot, encoded outcome) once it is applied at this node.
        ``OutcomeUnknownError`` when time ran out: retry with the same ``request_id``;
        ``RecordTooLargeError`` for a record over ``max_record_bytes``."""
        if len(record) > self.max_record_bytes:
            raise RecordTooLargeError.of("a record", len(record), self.max_record_bytes)
        request = sequencer_pb2.ProposeRequest(
            cluster_id=self.cluster_id,
            request_id=request_id,
            record=record,
            timeout_ms=max(1, int(timeout_s * 1000)),
        )
        reply = self._call(self._stub.Propose, request, timeout_s)
        return reply.slot, reply.outcome

    def read_index(self, timeout_s: float = DEFAULT_TIMEOUT_S) -> int:
        request = sequencer_pb2.ReadIndexRequest(cluster_id=self.cluster_id)
        return int(self._call(self._stub.ReadIndex, request, timeout_s).slot)

    def wait_applied(self, slot: int, timeout_s: float) -> int:
        request = sequencer_pb2.WaitAppliedRequest(
            cluster_id=self.cluster_id, slot=slot, timeout_ms=max(1, int(timeout_s * 1000))
        )
        return int(self._call(self._stub.WaitApplied, request, timeout_s).applied_slot)

    def allocate_oids(self, count: int, timeout_s: float = DEFAULT_TIMEOUT_S) -> tuple[int, int]:
        request = sequencer_pb2.AllocateOidsRequest(cluster_id=self.cluster_id, count=count)
        reply = self._call(self._stub.AllocateOids, request, timeout_s)
        return reply.start, reply.count

    def status(self, timeout_s: float = 5.0) -> StatusView:
        request = sequencer_pb2.StatusRequest(cluster_id=self.cluster_id)
        r = self._call(self._stub.Status, request, timeout_s)
        return StatusView(
            node_id=r.node_id,
            cluster_id=r.cluster_id,
            role=_ROLE_NAMES.get(r.role, "unknown"),
            leader_id=r.leader_id if r.HasField("leader_id") else None,
            ballot=f"{r.ballot.round}.{r.ballot.node_id}",
            chosen_slot=r.chosen_slot,
            applied_slot=r.applied_slot,
            truncated_slot=r.truncated_slot,
            last_tid=r.last_tid,
            running_hash=r.running_hash,
            serving=r.serving,
            not_serving_reason=r.not_serving_reason,
            uptime_s=r.uptime_s,
            software_version=r.software_version,
            peers=tuple(
                PeerView(
                    p.node_id,
                    p.address,
                    p.reachable,
                    p.last_heard_ms_ago if p.HasField("last_heard_ms_ago") else None,
                )
                for p in r.peers
            ),
            pid=r.pid,
            data_dir_bytes=r.data_dir_bytes,
            wal_bytes=r.wal_bytes,
            disk_free_bytes=r.disk_free_bytes,
        )
