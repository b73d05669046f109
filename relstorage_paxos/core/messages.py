"""The values and messages the Paxos core consumes and produces.

Frozen dataclasses only: the core never sees protobuf (``transport/codec.py`` translates at the
edge). Every message names its sender ``src`` and receiver ``dst`` by node id; the transport
adds the cluster id.
"""

from __future__ import annotations

from dataclasses import dataclass

from relstorage_paxos.core.ballot import Ballot


@dataclass(frozen=True, slots=True)
class Proposal:
    """One client request. ``request_id`` is unique per request and survives retries, so the
    state machine can apply a request once even if a retry gets it chosen twice."""

    request_id: bytes
    payload: bytes


Value = tuple[Proposal, ...]
"""The value of one slot: a batch of proposals; the empty batch is a no-op."""

NOOP: Value = ()


def value_size(value: Value) -> int:
    return sum(len(p.request_id) + len(p.payload) for p in value)


@dataclass(frozen=True, slots=True)
class LogEntry:
    """An acceptor's record of one slot: the value it accepted in ``ballot``, or, once
    ``chosen``, the value it knows was chosen (then ``ballot`` is informational)."""

    slot: int
    ballot: Ballot
    value: Value
    chosen: bool


@dataclass(frozen=True, slots=True)
class SlotValue:
    slot: int
    value: Value


@dataclass(frozen=True, slots=True)
class PreVote:
    """Would you promise ``ballot``? Nobody persists anything for it; acceptors that hear from a
    live leader say no, so a node that was cut off cannot disrupt a healthy cluster."""

    src: int
    dst: int
    ballot: Ballot


@dataclass(frozen=True, slots=True)
class PreVoteReply:
    src: int
    dst: int
    ballot: Ballot
    ok: bool
    promised: Ballot


@dataclass(frozen=True, slots=True)
class Prepare:
    """Phase 1a for every slot from ``from_slot`` on (Multi-Paxos runs phase 1 once per
    leadership, over all open slots)."""

    src: int
    dst: int
    ballot: Ballot
    from_slot: int


@dataclass(frozen=True, slots=True)
class Promise:
    """Phase 1b. ``entries`` holds every entry from the prepare's ``from_slot`` on that is not
    below ``commit``; slots up to ``commit`` are chosen and must be caught up, not re-proposed."""

    src: int
    dst: int
    ballot: Ballot
    ok: bool
    promised: Ballot
    entries: tuple[LogEntry, ...]
    commit: int


@dataclass(frozen=True, slots=True)
class Accept:
    """Phase 2a for several slots at once; ``commit`` tells the acceptor how far the leader
    knows the log to be chosen (learning piggybacks on phase 2)."""

    src: int
    dst: int
    ballot: Ballot
    entries: tuple[SlotValue, ...]
    commit: int


@dataclass(frozen=True, slots=True)
class Accepted:
    src: int
    dst: int
    ballot: Ballot
    ok: bool
    promised: Ballot
    slots: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Leader liveness, learning of ``commit``, and the ReadIndex confirmation round
    ``read_seq``."""

    src: int
    dst: int
    ballot: Ballot
    commit: int
    read_seq: int


@dataclass(frozen=True, slots=True)
class HeartbeatReply:
    src: int
    dst: int
    ballot: Ballot
    ok: bool
    promised: Ballot
    read_seq: int


@dataclass(frozen=True, slots=True)
class Forward:
    """Proposals a follower hands to the leader."""

    src: int
    dst: int
    proposals: tuple[Proposal, ...]


@dataclass(frozen=True, slots=True)
class ReadIndexRequest:
    src: int
    dst: int
    request_ids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class ReadIndexReply:
    src: int
    dst: int
    request_ids: tuple[bytes, ...]
    slot: int


@dataclass(frozen=True, slots=True)
class CatchUpRequest:
    src: int
    dst: int
    from_slot: int


@dataclass(frozen=True, slots=True)
class CatchUpReply:
    """Chosen values from the request's ``from_slot`` on, contiguous. When the sender cannot
    serve that slot from its log (truncated), ``snapshot_slot`` names the slot its snapshot
    covers, and the requester must install a snapshot instead."""

    src: int
    dst: int
    entries: tuple[SlotValue, ...]
    commit: int
    snapshot_slot: int


Message = (
    PreVote
    | PreVoteReply
    | Prepare
    | Promise
    | Accept
    | Accepted
    | Heartbeat
    | HeartbeatReply
    | Forward
    | ReadIndexRequest
    | ReadIndexReply
    | CatchUpRequest
    | CatchUpReply
)
