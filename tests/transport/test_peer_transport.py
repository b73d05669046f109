"""``PeerTransport`` beyond the shared contract: what it refuses from the network (and how it
says so), batching and queue limits, and how fast a restarted peer carries traffic again.

Real gRPC on 127.0.0.1; every server binds port 0. Waits poll with a bounded deadline.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Iterator

import grpc
import pytest

from relstorage_paxos.core.messages import Forward, Heartbeat, Message, Proposal
from relstorage_paxos.pb import peer_pb2 as pb
from relstorage_paxos.transport import codec
from relstorage_paxos.transport.channels import STREAM_METHOD, client_options
from relstorage_paxos.transport.peer import PeerTransport
from relstorage_paxos.transport.peer_client import frame_batch, retry_delay
from tests.transport.clusters import CLUSTER_ID, GrpcCluster, heartbeat, wait_until

KIB = 1024


class Node:
    """Node 1 of cluster {1, 2, 3} (2 and 3 are not running), with what it received."""

    def __init__(self, **options: int) -> None:
        self.received: list[Message] = []
        self.rejected: list[str] = []
        self.transport = PeerTransport(
            1,
            CLUSTER_ID,
            "127.0.0.1:0",
            {2: "127.0.0.1:1", 3: "127.0.0.1:1"},
            on_rejected=self.rejected.append,
            **options,
        )
        self.transport.start(self.received.append)
        self.address = f"127.0.0.1:{self.transport.port}"

    def raw_stream(self, batches: list[bytes], timeout_s: float = 5.0) -> pb.StreamAck:
        """One Stream call carrying these bytes as its messages, as any client could send."""
        with grpc.insecure_channel(self.address) as channel:
            call = channel.stream_unary(
                STREAM_METHOD,
                request_serializer=lambda b: b,
                response_deserializer=pb.StreamAck.FromString,
            )
            ack: pb.StreamAck = call(iter(batches), timeout=timeout_s)
            return ack

    def still_delivers(self) -> None:
        """A good stream right after: the node is up and delivers."""
        before = len(self.received)
        ack = self.raw_stream([batch(heartbeat(2, 1, 42))])
        assert ack.envelopes_received == 1
        assert len(self.received) == before + 1
        assert self.received[-1] == heartbeat(2, 1, 42)


@pytest.fixture
def node() -> Iterator[Node]:
    n = Node()
    yield n
    n.transport.close()


def envelope(msg: Message, cluster_id: str = CLUSTER_ID) -> bytes:
    return codec.encode(msg, cluster_id).SerializeToString()


def batch(*msgs: Message) -> bytes:
    return frame_batch([envelope(m) for m in msgs])


def seq_of(msg: Message) -> int:
    assert isinstance(msg, Heartbeat), msg
    return msg.read_seq


def our_log_lines(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [
        r for r in caplog.records if r.name.startswith("relstorage_paxos") and r.levelno >= level
    ]


def _env_without_ballot() -> bytes:
    env = pb.Envelope(cluster_id=CLUSTER_ID, protocol_version=codec.PROTOCOL_VERSION)
    env.heartbeat.src, env.heartbeat.dst = 2, 1
    return env.SerializeToString()


def _env_of_version(version: int) -> bytes:
    env = codec.encode(heartbeat(2, 1, 0), CLUSTER_ID)
    env.protocol_version = version
    return env.SerializeToString()


BAD_BATCHES = {
    "wrong-cluster": (
        frame_batch([envelope(heartbeat(2, 1, 0), "other-cluster")]),
        grpc.StatusCode.FAILED_PRECONDITION,
        "WrongClusterError",
    ),
    "wrong-protocol-version": (
        frame_batch([_env_of_version(codec.PROTOCOL_VERSION + 1)]),
        grpc.StatusCode.FAILED_PRECONDITION,
        "ProtocolVersionError",
    ),
    "wrong-destination": (
        batch(heartbeat(2, 3, 0)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "WrongDestinationError",
    ),
    "unknown-node": (batch(heartbeat(9, 1, 0)), grpc.StatusCode.PERMISSION_DENIED, "UnknownNode"),
    "from-itself": (
        batch(heartbeat(1, 1, 0)),
        grpc.StatusCode.PERMISSION_DENIED,
        "this node itself",
    ),
    "slot-over-int64": (
        batch(heartbeat(2, 1, 2**63)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "is over 2**63 - 1",
    ),
    "garbage-bytes": (b"\xff\xfe garbage", grpc.StatusCode.INVALID_ARGUMENT, "unparseable"),
    "garbage-envelope": (
        frame_batch([b"\xff\xfe garbage"]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "unparseable",
    ),
    "unknown-batch-field": (b"\x12\x01x", grpc.StatusCode.INVALID_ARGUMENT, "unknown fields"),
    "ballot-missing": (
        frame_batch([_env_without_ballot()]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "without ballot",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_BATCHES))
def test_a_bad_batch_rejects_the_call_with_one_log_line(
    node: Node, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    bad, code, reason = BAD_BATCHES[case]
    caplog.set_level(logging.INFO)
    with pytest.raises(grpc.RpcError) as excinfo:
        node.raw_stream([batch(heartbeat(2, 1, 1)), bad, batch(heartbeat(2, 1, 2))])
    assert excinfo.value.code() == code, excinfo.value
    assert reason in excinfo.value.details()
    # The batch before the bad one was delivered; the bad one and everything after were not.
    assert node.received == [heartbeat(2, 1, 1)]
    # One warning (INFO lines, such as a sender reconnecting on a loaded machine, may come
    # and go).
    lines = our_log_lines(caplog, logging.WARNING)
    assert len(lines) == 1, [r.getMessage() for r in lines]
    assert "node 1" in lines[0].getMessage()
    assert reason in lines[0].getMessage()
    # Counted once, by the error's class (the status details name it).
    assert len(node.rejected) == 1, node.rejected
    assert f"{node.rejected[0]}: " in excinfo.value.details()
    node.still_delivers()


def test_a_repeated_rejection_is_logged_once(node: Node, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    for _ in range(5):
        with pytest.raises(grpc.RpcError):
            node.raw_stream([b"\xff\xfe garbage"])
    assert len(our_log_lines(caplog, logging.WARNING)) == 1


def test_an_oversized_batch_is_refused_by_grpc_and_the_node_stays_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    n = Node(max_message_bytes=64 * KIB)
    caplog.set_level(logging.INFO)
    try:
        with pytest.raises(grpc.RpcError) as excinfo:
            n.raw_stream([b"\x00" * (100 * KIB)])
        assert excinfo.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

        n.still_delivers()
        # At most one INFO line "stream broke off", and nothing louder. gRPC refuses the
        # oversized message itself; whether the handler ever saw the call (and logs that
        # line) depends on timing, so it may also be none.
        broke_off = [
            r for r in our_log_lines(caplog, logging.INFO) if "broke off" in r.getMessage()
        ]
        assert len(broke_off) <= 1, broke_off
        assert not our_log_lines(caplog, logging.WARNING)
    finally:
        n.transport.close()


def test_raw_tcp_garbage_does_not_disturb_the_server(node: Node) -> None:
    for garbage in (
        b"\x00\xff" * 5000,
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"PRI * HTTP/2.0\r\n",
    ):
        with (
            socket.create_connection(("127.0.0.1", node.transport.port), timeout=2) as s,
            contextlib.suppress(OSError),  # the server may hang up at any point: it should
        ):
            s.sendall(garbage)
            s.shutdown(socket.SHUT_WR)
            while s.recv(4096):
                pass
    node.still_delivers()


def test_an_envelope_of_an_unknown_type_is_dropped_alone(
    node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    # A newer peer's message type: right version and cluster, body in a field unknown here.
    unknown = (
        pb.Envelope(
            cluster_id=CLUSTER_ID, protocol_version=codec.PROTOCOL_VERSION
        ).SerializeToString()
        + b"\x9a\x06\x02\x08\x01"
    )  # field 99, 2 bytes long
    data = frame_batch([envelope(heartbeat(2, 1, 1)), unknown, envelope(heartbeat(2, 1, 2))])
    ack = node.raw_stream([data])
    assert ack.envelopes_received == 2
    assert node.received == [heartbeat(2, 1, 1), heartbeat(2, 1, 2)]
    assert len(our_log_lines(caplog, logging.WARNING)) == 1


def test_an_exception_in_deliver_is_logged_and_rejects_the_call(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[Message] = []

    def deliver(msg: Message) -> None:
        calls.append(msg)
        if len(calls) == 1:
            raise ValueError("runtime bug")

    t = PeerTransport(1, CLUSTER_ID, "127.0.0.1:0", {2: "127.0.0.1:1"})
    t.start(deliver)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{t.port}") as channel:
            call = channel.stream_unary(STREAM_METHOD, request_serializer=lambda b: b)
            with pytest.raises(grpc.RpcError) as excinfo:
                call(iter([batch(heartbeat(2, 1, 1))]), timeout=5)
            assert excinfo.value.code() == grpc.StatusCode.INTERNAL
            call(iter([batch(heartbeat(2, 1, 2))]), timeout=5)
    finally:
        t.close()
    assert [r.exc_info is not None for r in our_log_lines(caplog, logging.ERROR)] == [True]
    assert calls == [heartbeat(2, 1, 1), heartbeat(2, 1, 2)]


def test_a_full_queue_drops_the_oldest() -> None:
    cluster = GrpcCluster((1, 2), queue_messages_max=10)
    try:
        cluster.stop(2)
        sender = cluster.transport(1)
        sender.send([heartbeat(1, 2, seq) for seq in range(25)])
        stats = sender.stats()[2]
        # One batch may already sit in the call that waits for node 2.
        assert stats.queued + stats.sent_messages == 10, stats
        assert stats.dropped_messages == 15, stats
        cluster.start(2)

        def marker_arrived() -> bool:
            sender.send([heartbeat(1, 2, 1000)])
            return 1000 in [seq_of(m) for m in cluster.received[2]]

        wait_until(None, marker_arrived)
        got = [seq_of(m) for m in cluster.received[2] if seq_of(m) != 1000]
        # What survived is the newest, in order (a batch caught in the failing call is lost).
        assert got == sorted(got) and set(got) <= set(range(15, 25)), got
    finally:
        cluster.close()


def test_a_message_over_the_size_limit_is_dropped_at_send(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cluster = GrpcCluster((1, 2), max_message_bytes=64 * KIB)
    try:
        big = Forward(1, 2, (Proposal(b"r", b"x" * (64 * KIB)),))
        cluster.transport(1).send([big, heartbeat(1, 2, 1)])
        wait_until(None, lambda: len(cluster.received[2]) == 1)
        assert cluster.received[2] == [heartbeat(1, 2, 1)]
        assert any("over max_message_bytes" in r.getMessage() for r in caplog.records)
    finally:
        cluster.close()


def test_queued_messages_go_out_in_few_batches() -> None:
    cluster = GrpcCluster((1, 2))
    try:
        sender = cluster.transport(1)
        for seq in range(2000):
            sender.send([heartbeat(1, 2, seq)])
        wait_until(None, lambda: len(cluster.received[2]) == 2000)
        assert [seq_of(m) for m in cluster.received[2]] == list(range(2000))
        stats = sender.stats()[2]
        assert stats.sent_messages == 2000
        assert stats.sent_batches < 2000, stats  # messages queued behind a write share a batch
    finally:
        cluster.close()


def test_a_restarted_peer_carries_traffic_again() -> None:
    """How fast is the benchmarks' business; the short reconnect backoff that makes it fast
    is checked in ``test_peers_reconnect_with_a_short_backoff``."""
    cluster = GrpcCluster((1, 2))
    try:
        sender = cluster.transport(1)
        sender.send([heartbeat(1, 2, 0)])
        wait_until(None, lambda: len(cluster.received[2]) == 1)
        for attempt in range(3):
            cluster.stop(2)
            cluster.start(2)
            seq = 1000 * (attempt + 1)

            def arrived(seq: int = seq) -> bool:
                sender.send([heartbeat(1, 2, seq)])
                return any(seq_of(m) == seq for m in cluster.received[2])

            wait_until(None, arrived, timeout_s=10.0)
    finally:
        cluster.close()


def test_a_second_server_cannot_bind_a_used_port(node: Node) -> None:
    with pytest.raises(RuntimeError, match="cannot listen"):
        PeerTransport(1, CLUSTER_ID, node.address, {2: "127.0.0.1:1"})


def test_frame_batch_is_the_protobuf_encoding() -> None:
    envelopes = [
        codec.encode(heartbeat(1, 2, 1), CLUSTER_ID),
        codec.encode(Forward(1, 2, (Proposal(b"r", b"x" * 200),)), CLUSTER_ID),
        codec.encode(Forward(1, 2, (Proposal(b"r", b"y" * 70_000),)), CLUSTER_ID),
    ]
    expected = pb.EnvelopeBatch(envelopes=envelopes).SerializeToString()
    assert frame_batch([e.SerializeToString() for e in envelopes]) == expected
    assert frame_batch([]) == b""


def test_the_node_is_not_among_its_peers() -> None:
    with pytest.raises(ValueError):
        PeerTransport(1, CLUSTER_ID, "127.0.0.1:0", {1: "127.0.0.1:1"})


class StallingProxy:
    """A TCP relay to ``target_port`` that can stop moving bytes in both directions, new
    connections included, while keeping them (as a DROP rule does: TCP would retransmit), in
    the manner of notes/fault-injection.md §2.5."""

    def __init__(self, target_port: int) -> None:
        self._target_port = target_port
        self._flowing = threading.Event()
        self._flowing.set()
        self._closed = False
        self._sockets: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def stall(self) -> None:
        self._flowing.clear()

    def heal(self) -> None:
        self._flowing.set()

    def close(self) -> None:
        self._closed = True
        self._flowing.set()
        for s in [self._listener, *self._sockets]:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in accept or recv
            s.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
                upstream = socket.create_connection(("127.0.0.1", self._target_port))
            except OSError:
                return
            self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                self._flowing.wait()
                data = src.recv(65536)
                self._flowing.wait()
                if not data or self._closed:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


def test_a_healed_partition_carries_traffic_again_on_a_new_stream() -> None:
    cluster = GrpcCluster((1, 2))
    proxy = StallingProxy(cluster.ports[2])
    sender = cluster.transport(1)
    sender.set_peer_address(2, proxy.address)
    seq = 0

    def next_arrives() -> bool:
        nonlocal seq
        if seq and seq in [seq_of(m) for m in cluster.received[2]]:
            return True
        seq += 1
        sender.send([heartbeat(1, 2, seq)])
        return False

    try:
        wait_until(None, next_arrives)
        proxy.stall()
        # Long enough for keepalive (1 s + 1 s) to declare the connection dead, so that what
        # is measured is reconnecting, not a stalled connection resuming.
        stalled_until = time.monotonic() + 2.5
        while time.monotonic() < stalled_until:
            sender.send([heartbeat(1, 2, 10_000)])
            time.sleep(0.05)
        proxy.heal()
        seq = 20_000
        wait_until(None, next_arrives, timeout_s=10.0)
        # Keepalive ended the stalled stream and the sender opened another one.
        assert sender.stats()[2].streams_started >= 2, sender.stats()
    finally:
        cluster.close()
        proxy.close()


def test_close_leaves_no_threads_behind() -> None:
    cluster = GrpcCluster((71, 72))
    cluster.transport(71).send([heartbeat(71, 72, 1)])
    wait_until(None, lambda: len(cluster.received[72]) == 1)
    cluster.close()

    def ours() -> list[str]:
        return [
            t.name
            for t in threading.enumerate()
            if t.name.startswith("paxos-") and ("-71" in t.name or "-72" in t.name)
        ]

    try:
        wait_until(None, lambda: not ours(), timeout_s=3.0)
    except AssertionError:
        raise AssertionError(f"threads left: {ours()}") from None


def test_a_misconfigured_peer_is_refused_retried_and_logged_once_on_each_side(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Node 2 belongs to another cluster: it rejects node 1's stream, which node 1 reopens
    # with growing delays, each side logging it once.
    node2 = PeerTransport(2, "another-cluster", "127.0.0.1:0", {1: "127.0.0.1:1"})
    node2.start(lambda m: None)
    node1 = PeerTransport(1, CLUSTER_ID, "127.0.0.1:0", {2: f"127.0.0.1:{node2.port}"})
    caplog.set_level(logging.INFO)
    node1.start(lambda m: None)
    try:

        def retried() -> bool:
            node1.send([heartbeat(1, 2, 1)])
            return node1.stats()[2].streams_started >= 4

        wait_until(None, retried, timeout_s=10.0)
    finally:
        node1.close()
        node2.close()
    warnings = [r.getMessage() for r in our_log_lines(caplog, logging.WARNING)]
    assert len(warnings) == 2, warnings
    assert any("node 2: rejected stream" in w and "WrongClusterError" in w for w in warnings)
    assert any("node 1: stream to node 2" in w and "FAILED_PRECONDITION" in w for w in warnings)


def test_a_stream_refused_at_once_is_retried_after_growing_pauses() -> None:
    delays = [0.0]
    for _ in range(7):
        delays.append(retry_delay(delays[-1], healthy=False))
    assert delays == [0.0, 0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert retry_delay(1.0, healthy=True) == 0.0


def test_peers_reconnect_with_a_short_backoff() -> None:
    """gRPC's defaults (1 s growing toward 120 s, dead connections noticed by the kernel)
    would leave a restarted or healed peer without messages for seconds."""
    options = dict(client_options(1 << 20))
    assert options["grpc.max_reconnect_backoff_ms"] <= 1000, options
    assert options["grpc.keepalive_time_ms"] + options["grpc.keepalive_timeout_ms"] <= 3000
