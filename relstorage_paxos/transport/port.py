"""The port between the runtime and whatever carries Paxos messages between nodes.

Owns: the ``Transport`` protocol, implemented by ``PeerTransport`` (gRPC, ``peer.py``) and by
``MemoryTransport`` (one process, ``memory.py``); ``tests/transport/test_transport_contract.py``
runs one contract against both (CONVENTIONS.md rule 8, after hashicorp/raft's transports).
Must not import: grpc, generated code, ``runtime``.
Called by: the runtime's loop thread (``send``), its owner (``start``, ``close``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from relstorage_paxos.core.messages import Message

Deliver = Callable[[Message], None]
"""Hands one received message to the node. Called from the transport's threads, one message
at a time, in the order each sender sent them (except around a reconnect, when a batch of the
old stream may still be delivered next to the new one's); it must be quick and thread-safe
(the runtime only puts the message in its inbox)."""


class Transport(Protocol):
    """Best-effort, unordered-across-senders delivery of core messages to their ``dst``.

    Paxos tolerates lost, late and reordered messages (it retransmits on ticks), so a
    transport may drop messages, but it never delivers a message to a node other than its
    ``dst``, never delivers one twice, and never blocks its caller on the network.
    """

    def start(self, deliver: Deliver) -> None:
        """Begin receiving: from now on every valid message addressed to this node is passed
        to ``deliver``. Called once."""

    def send(self, messages: Sequence[Message]) -> None:
        """Queue ``messages`` for their destinations and return at once. Messages for the same
        destination go out together, in order. Messages for an unknown node (or this one) are
        dropped; messages for a node that is down wait in a bounded queue, oldest dropped
        first, and may be lost."""

    def close(self) -> None:
        """Stop sending and receiving and release threads, sockets and ports; messages still
        queued are dropped. Idempotent; ``send`` after ``close`` drops silently."""
