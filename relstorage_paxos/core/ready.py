"""What one round of the core hands to the runtime, and what a node restarts from.

The runtime's loop is: ``ready = node.ready()``; persist ``ready.persist`` (fsync if
``must_sync``); only then send ``ready.messages``; apply ``ready.chosen`` in order; answer
``ready.read_states``; fetch a snapshot if asked; ``node.advance(ready)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from relstorage_paxos.core.ballot import ZERO_BALLOT, Ballot
from relstorage_paxos.core.messages import LogEntry, Message, SlotValue


@dataclass(frozen=True, slots=True)
class Persist:
    """Changes to durable acceptor state since the last Ready.

    ``must_sync`` is true when a message in the same Ready depends on them (a promise or an
    accepted value): they must be on disk before any of those messages leaves the node. Chosen
    marks alone need no fsync: a lost mark is learned again from peers.
    """

    promised: Ballot | None = None
    entries: tuple[LogEntry, ...] = ()
    truncated: int | None = None
    must_sync: bool = False

    def is_empty(self) -> bool:
        return self.promised is None and not self.entries and self.truncated is None


@dataclass(frozen=True, slots=True)
class ReadState:
    """A ReadIndex answer: the read ``request_id`` is linearizable once this node has applied
    every slot up to ``slot``."""

    request_id: bytes
    slot: int


@dataclass(frozen=True, slots=True)
class SnapshotRequest:
    """Slots up to at least ``min_slot`` are gone from ``peer``'s log: install its snapshot,
    then call ``Node.restore_snapshot``."""

    peer: int
    min_slot: int


@dataclass(frozen=True, slots=True)
class Ready:
    persist: Persist
    messages: tuple[Message, ...]
    chosen: tuple[SlotValue, ...]
    read_states: tuple[ReadState, ...]
    snapshot_request: SnapshotRequest | None

    def is_empty(self) -> bool:
        return (
            self.persist.is_empty()
            and not self.messages
            and not self.chosen
            and not self.read_states
            and self.snapshot_request is None
        )


@dataclass(frozen=True, slots=True)
class PersistentState:
    """Everything durable a node restarts from (the log store loads it)."""

    promised: Ballot = ZERO_BALLOT
    entries: tuple[LogEntry, ...] = field(default=())
    truncated: int = 0
