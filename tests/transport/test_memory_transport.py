"""``MemoryNetwork`` beyond the shared contract: queued delivery happens only when pumped, in
send order, and cut links drop messages in one direction only."""

from __future__ import annotations

import pytest

from relstorage_paxos.core.messages import Message
from relstorage_paxos.transport.memory import MemoryNetwork
from tests.transport.clusters import heartbeat


def make(queued: bool) -> tuple[MemoryNetwork, dict[int, list[Message]]]:
    """Nodes 1 and 2 receiving; node 3 (not started) can still send."""
    network = MemoryNetwork(queued=queued)
    received: dict[int, list[Message]] = {1: [], 2: []}
    for n in (1, 2):
        network.transport(n).start(received[n].append)
    return network, received


def test_queued_messages_wait_for_pump_and_keep_their_order() -> None:
    network, received = make(queued=True)
    network.transport(3).send([heartbeat(3, 1, 1), heartbeat(3, 2, 2), heartbeat(3, 1, 3)])
    assert received[1] == [] and network.pending == 3
    assert network.pump(max_messages=1) == 1
    assert received[1] == [heartbeat(3, 1, 1)]
    assert network.pump() == 2
    assert received[1] == [heartbeat(3, 1, 1), heartbeat(3, 1, 3)]
    assert received[2] == [heartbeat(3, 2, 2)]


def test_a_receiver_may_send_from_deliver() -> None:
    network = MemoryNetwork()
    received: list[Message] = []
    t1, t2 = network.transport(1), network.transport(2)
    t1.start(received.append)
    t2.start(lambda m: t2.send([heartbeat(2, 1, 99)]))
    t1.send([heartbeat(1, 2, 1)])
    assert received == [heartbeat(2, 1, 99)]


def test_a_cut_link_drops_one_direction_until_healed() -> None:
    network, received = make(queued=False)
    network.set_link(3, 1, False)
    sender = network.transport(3)
    sender.send([heartbeat(3, 1, 1), heartbeat(3, 2, 2)])
    assert received[1] == [] and received[2] == [heartbeat(3, 2, 2)]
    assert network.dropped == 1
    network.heal()
    sender.send([heartbeat(3, 1, 3)])
    assert received[1] == [heartbeat(3, 1, 3)]


def test_a_message_in_flight_over_a_link_cut_meanwhile_is_dropped() -> None:
    network, received = make(queued=True)
    network.transport(3).send([heartbeat(3, 2, 1)])
    network.isolate(2, [3])
    network.pump()
    assert received[2] == [] and network.dropped == 1


def test_a_node_id_is_attached_once() -> None:
    network, _ = make(queued=False)
    with pytest.raises(RuntimeError):
        network.transport(1).start(lambda m: None)
