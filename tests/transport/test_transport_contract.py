"""The ``Transport`` contract (transport/port.py), run against every implementation: the
in-memory twin with synchronous and with queued delivery, and ``PeerTransport`` over real
gRPC on 127.0.0.1 (CONVENTIONS.md rule 8).

A message reaches only its ``dst`` and at most once; ``send`` never waits for the network;
a peer that was down receives again once it is back; ``close`` is idempotent.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from relstorage_paxos.core.messages import Heartbeat, Message
from tests.transport.clusters import (
    Cluster,
    GrpcCluster,
    MemoryCluster,
    every_message,
    heartbeat,
    wait_until,
)

NODES = (1, 2, 3)


@pytest.fixture(params=["memory-sync", "memory-queued", "grpc"])
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    c: Cluster
    if request.param == "grpc":
        c = GrpcCluster(NODES)
    else:
        c = MemoryCluster(NODES, queued=request.param == "memory-queued")
    try:
        yield c
    finally:
        c.close()
    for node_id, messages in c.received.items():
        assert all(m.dst == node_id for m in messages), (node_id, messages)


def seqs(messages: list[Message]) -> list[int]:
    return [m.read_seq for m in messages if isinstance(m, Heartbeat)]


def test_every_message_type_reaches_its_destination_in_order(cluster: Cluster) -> None:
    to_2, to_3 = every_message(1, 2), every_message(1, 3)
    interleaved = [m for pair in zip(to_2, to_3, strict=True) for m in pair]
    cluster.transport(1).send(interleaved)
    wait_until(cluster, lambda: len(cluster.received[2]) == len(cluster.received[3]) == 13)
    assert cluster.received[2] == to_2
    assert cluster.received[3] == to_3
    assert cluster.received[1] == []


def test_every_node_sends_to_every_other(cluster: Cluster) -> None:
    for src in NODES:
        cluster.transport(src).send([heartbeat(src, dst, src) for dst in NODES if dst != src])
    wait_until(cluster, lambda: all(len(cluster.received[n]) == 2 for n in NODES))
    for n in NODES:
        assert sorted(m.src for m in cluster.received[n]) == [s for s in NODES if s != n]


def test_send_never_blocks_while_a_peer_is_down(cluster: Cluster) -> None:
    cluster.stop(2)
    sent = threading.Event()

    def send_many() -> None:
        # More than a queue holds: a send that waited for room would wait for ever.
        for seq in range(2_000):
            cluster.transport(1).send([heartbeat(1, 2, seq) for _ in range(10)])
        sent.set()

    sender = threading.Thread(target=send_many, daemon=True)
    sender.start()
    sender.join(60)  # a guard against a hang, not a measurement
    assert sent.is_set(), "send blocked while its peer was down"
    cluster.transport(1).send([heartbeat(1, 3, 0)])
    wait_until(cluster, lambda: seqs(cluster.received[3]) == [0])


def test_a_restarted_peer_receives_again_and_nothing_is_duplicated(cluster: Cluster) -> None:
    sender = cluster.transport(1)
    sender.send([heartbeat(1, 2, 0)])
    wait_until(cluster, lambda: seqs(cluster.received[2]) == [0])
    cluster.stop(2)
    sender.send([heartbeat(1, 2, seq) for seq in range(1, 101)])
    sender.send([heartbeat(1, 3, seq) for seq in range(1, 101)])
    cluster.start(2)
    marker = 1000

    def marker_arrived() -> bool:
        nonlocal marker
        if marker in seqs(cluster.received[2]):
            return True
        marker += 1
        sender.send([heartbeat(1, 2, marker)])
        return False

    wait_until(cluster, marker_arrived)
    got = seqs(cluster.received[2])
    assert len(got) == len(set(got)), "a message was delivered twice"
    # Sent while node 2 was down: each delivered (late) or lost, in order if at all.
    late = [s for s in got if 1 <= s <= 100]
    assert late == sorted(late)
    assert seqs(cluster.received[3]) == list(range(1, 101))


def test_messages_for_unknown_nodes_or_itself_are_dropped(cluster: Cluster) -> None:
    t = cluster.transport(1)
    t.send([heartbeat(1, 99, 1), heartbeat(1, 1, 2), heartbeat(1, 2, 3)])
    wait_until(cluster, lambda: seqs(cluster.received[2]) == [3])
    assert cluster.received[1] == cluster.received[3] == []


def test_close_is_idempotent_and_send_after_close_is_dropped(cluster: Cluster) -> None:
    t = cluster.transport(1)
    t.close()
    t.close()
    t.send([heartbeat(1, 2, 1)])
    cluster.transport(3).send([heartbeat(3, 2, 2)])
    wait_until(cluster, lambda: seqs(cluster.received[2]) == [2])
    assert seqs(cluster.received[2]) == [2]


def test_a_closed_node_receives_nothing(cluster: Cluster) -> None:
    cluster.stop(2)
    cluster.transport(1).send([heartbeat(1, 2, 1), heartbeat(1, 3, 2)])
    wait_until(cluster, lambda: seqs(cluster.received[3]) == [2])
    assert cluster.received[2] == []


def test_start_twice_is_refused(cluster: Cluster) -> None:
    with pytest.raises(RuntimeError):
        cluster.transport(1).start(lambda m: None)
