#!/usr/bin/env python3
"""Messages per second over one ``PeerTransport`` stream, against one call per message.

    .venv/bin/python scripts/bench/peer_stream.py              # defaults below
    .venv/bin/python scripts/bench/peer_stream.py --flood 200000 --payload 1000

Node 1 (this process) sends Accepts carrying one proposal of ``--payload`` bytes to node 2 (a
child process, as in notes/perf-anchors.md §2a), three ways:

* flood: ``send`` one message at a time, as fast as the caller can; the transport batches
  whatever queues up while a write is in flight. Reports messages/s and the mean batch size.
* ping-pong: one message in flight; node 2 answers each on its own stream to node 1 (the
  shape of one Paxos round trip). Reports round trips/s and the median round trip.
* unary-equivalent: one ``Stream`` call per message (open, one batch of one envelope,
  half-close, wait for the ack): what a unary RPC per message costs with the same server.

Figures drift ±20-30 % between runs on the 2-vCPU VM; compare ratios within one run.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import queue
import statistics
import sys
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))

import grpc

from relstorage_paxos.core.ballot import Ballot
from relstorage_paxos.core.messages import (
    Accept,
    Heartbeat,
    HeartbeatReply,
    Message,
    Proposal,
    SlotValue,
)
from relstorage_paxos.pb import peer_pb2 as pb
from relstorage_paxos.transport import codec
from relstorage_paxos.transport.channels import STREAM_METHOD
from relstorage_paxos.transport.peer import PeerTransport
from relstorage_paxos.transport.peer_client import frame_batch

CLUSTER = "bench"
BALLOT = Ballot(1, 1)


def accept(slot: int, payload_bytes: int) -> Accept:
    proposal = Proposal(slot.to_bytes(16, "big"), b"p" * payload_bytes)
    return Accept(1, 2, BALLOT, (SlotValue(slot, (proposal,)),), slot)


def receiver(node1_port: int, conn: Connection) -> None:
    """Node 2: counts what arrives, answers Heartbeats, reports counts when asked."""
    count = 0
    lock = threading.Lock()
    t: PeerTransport

    def deliver(msg: Message) -> None:
        nonlocal count
        with lock:
            count += 1
        if isinstance(msg, Heartbeat):
            t.send([HeartbeatReply(2, 1, msg.ballot, True, msg.ballot, msg.read_seq)])

    t = PeerTransport(2, CLUSTER, "127.0.0.1:0", {1: f"127.0.0.1:{node1_port}"})
    t.start(deliver)
    conn.send(t.port)
    while (target := conn.recv()) is not None:
        while True:
            with lock:
                if count >= target:
                    break
            time.sleep(0.0005)
        conn.send(count)
    t.close()


def flood(
    node1: PeerTransport, conn: Connection, total: int, n: int, payload: int, label: str = "flood"
) -> None:
    before = node1.stats()[2]
    started = time.perf_counter()
    for slot in range(n):
        node1.send([accept(slot, payload)])
    sent_s = time.perf_counter() - started
    conn.send(total + n)
    if not conn.poll(60):
        raise SystemExit(f"node 2 did not receive everything; {node1.stats()[2]}")
    conn.recv()
    elapsed_s = time.perf_counter() - started
    after = node1.stats()[2]
    batches = after.sent_batches - before.sent_batches
    messages = after.sent_messages - before.sent_messages
    print(
        f"{label:<16} {n / elapsed_s:>9,.0f} msg/s  ({n} msgs in {elapsed_s:.2f} s; send() "
        f"returned after {sent_s:.2f} s; {batches} batches, mean {messages / batches:.0f} "
        f"msgs/batch; dropped {after.dropped_messages - before.dropped_messages})"
    )


def ping_pong(node1: PeerTransport, replies: queue.Queue[Message], n: int) -> None:
    rtts: list[float] = []
    started = time.perf_counter()
    for seq in range(n):
        t0 = time.perf_counter()
        node1.send([Heartbeat(1, 2, BALLOT, 0, seq)])
        reply = replies.get(timeout=5)
        assert isinstance(reply, HeartbeatReply) and reply.read_seq == seq, reply
        rtts.append(time.perf_counter() - t0)
    elapsed_s = time.perf_counter() - started
    rtts.sort()
    print(
        f"ping-pong        {n / elapsed_s:>9,.0f} round trips/s  (p50 "
        f"{statistics.median(rtts) * 1e6:.0f} µs, p99 {rtts[int(len(rtts) * 0.99)] * 1e6:.0f} µs)"
    )


def unary_equivalent(port: int, conn: Connection, total: int, n: int, payload: int) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.stream_unary(
            STREAM_METHOD,
            request_serializer=lambda b: b,
            response_deserializer=pb.StreamAck.FromString,
        )
        started = time.perf_counter()
        for slot in range(n):
            env = codec.encode(accept(slot, payload), CLUSTER).SerializeToString()
            call(iter([frame_batch([env])]), timeout=5)
        elapsed_s = time.perf_counter() - started
    conn.send(total + n)
    conn.recv()
    print(f"unary-equivalent {n / elapsed_s:>9,.0f} msg/s  ({n} calls in {elapsed_s:.2f} s)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--flood", type=int, default=100_000, help="messages in the flood")
    parser.add_argument("--rounds", type=int, default=3_000, help="ping-pong round trips")
    parser.add_argument("--calls", type=int, default=3_000, help="unary-equivalent calls")
    parser.add_argument("--payload", type=int, default=300, help="proposal bytes per Accept")
    args = parser.parse_args(argv)

    replies: queue.Queue[Message] = queue.Queue()
    # Queues large enough that the flood drops nothing: this measures the stream, not the
    # drop policy.
    node1 = PeerTransport(
        1,
        CLUSTER,
        "127.0.0.1:0",
        {2: "127.0.0.1:1"},
        queue_messages_max=10_000_000,
        queue_bytes_max=16 * 1024**3,
    )
    ctx = mp.get_context("spawn")
    conn, child_conn = ctx.Pipe()
    child = ctx.Process(target=receiver, args=(node1.port, child_conn), daemon=True)
    child.start()
    port2 = conn.recv()
    node1.set_peer_address(2, f"127.0.0.1:{port2}")
    node1.start(replies.put)
    try:
        print(f"Accept with one {args.payload}-byte proposal, node 2 in a child process")
        flood(node1, conn, 0, 2_000, args.payload, "(warm-up)")
        total = 2_000
        flood(node1, conn, total, args.flood, args.payload)
        total += args.flood
        ping_pong(node1, replies, args.rounds)
        total += args.rounds
        unary_equivalent(port2, conn, total, args.calls, args.payload)
    finally:
        node1.close()
        conn.send(None)
        child.join(5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
