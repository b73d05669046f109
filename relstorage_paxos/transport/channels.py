"""gRPC channel and server options of the peer transport, and the peer service's method paths.

Owns: every ``grpc.*`` option the ``PaxosPeer`` client and server set, with the reason for
each value. Must not import: ``runtime``, ``log``, ``replica``.
Called by: ``peer.py`` when it builds its server and channels; pure, any thread.

The keepalive and backoff values are the "tuned" ones of notes/fault-injection.md §2.2: with
them a healed partition carries traffic again within ~0.1-0.4 s, where gRPC's defaults took
1.3-14.5 s (reconnect backoff grows toward 120 s, and a dead TCP connection is noticed only by
the kernel's retransmission timeout).
"""

from __future__ import annotations

from typing import Final

from relstorage_paxos.pb import peer_pb2

MIB: Final = 1024 * 1024
DEFAULT_MAX_MESSAGE_BYTES: Final = 64 * MIB

_SERVICE = peer_pb2.DESCRIPTOR.services_by_name["PaxosPeer"]
STREAM_METHOD: Final = f"/{_SERVICE.full_name}/{_SERVICE.methods_by_name['Stream'].name}"
"""``/relstorage_paxos.peer.PaxosPeer/Stream``, taken from the descriptor so a renamed proto
cannot leave a stale string behind."""
FETCH_SNAPSHOT_METHOD: Final = (
    f"/{_SERVICE.full_name}/{_SERVICE.methods_by_name['FetchSnapshot'].name}"
)
SERVICE_NAME: Final = _SERVICE.full_name

GrpcOptions = list[tuple[str, int]]

_KEEPALIVE_TIME_MS: Final = 1000
"""A ping every second on an idle or silent connection: a blackholed peer (a DROP rule, a
pulled cable) is noticed in keepalive_time + keepalive_timeout ≈ 2 s, not in the kernel's
~15 min retransmission timeout."""
_KEEPALIVE_TIMEOUT_MS: Final = 1000


def client_options(max_message_bytes: int) -> GrpcOptions:
    """Options of a channel to one peer."""
    return [
        # gRPC's default reconnect backoff starts at 1 s and grows toward 120 s, so a peer
        # back after a long partition stayed unreachable for seconds to minutes. The minimum
        # is also the connect timeout of each attempt.
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 500),
        ("grpc.keepalive_time_ms", _KEEPALIVE_TIME_MS),
        ("grpc.keepalive_timeout_ms", _KEEPALIVE_TIMEOUT_MS),
        # Ping while no call is open too, and without a limit on pings between data frames:
        # a Paxos stream can be silent for a while (a follower with nothing to say).
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        # Our own connection for each channel: a channel never shares a subchannel with
        # another one to the same address (say, a snapshot download next to the stream), so
        # closing one cannot take the other's connection down.
        ("grpc.use_local_subchannel_pool", 1),
    ]


def server_options(max_message_bytes: int) -> GrpcOptions:
    """Options of a node's peer server."""
    return [
        # Accept the clients' 1 s pings. Without these the server answers them with GOAWAY
        # ENHANCE_YOUR_CALM "too_many_pings" and the clients throttle their keepalive
        # (fault-injection.md §2.2). (The C macro is ..._MIN_RECV_PING_INTERVAL_..., the
        # string is "min_ping_interval"; gRPC silently ignores option names it does not know.)
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 500),
        ("grpc.http2.max_ping_strikes", 0),
        # The server pings too, so that the stream of a peer that vanished (partitioned, not
        # closed) ends and frees its worker thread within ~2 s.
        ("grpc.keepalive_time_ms", _KEEPALIVE_TIME_MS),
        ("grpc.keepalive_timeout_ms", _KEEPALIVE_TIMEOUT_MS),
        # gRPC Python sets SO_REUSEPORT by default: a second node process could then bind the
        # same port next to a live (or stopped) one and the kernel would share connections
        # between them (fault-injection.md §3.1). Off, the second bind fails.
        ("grpc.so_reuseport", 0),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
    ]
