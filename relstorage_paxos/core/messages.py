"""The values and messages the Paxos core consumes and produces.

Frozen dataclasses only: the core never sees protobuf (``transport/codec.py`` translates at the
edge). Every message names its sender ``src`` and receiver ``dst`` by node id; the transport
adds the cluster id.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, TypeVar

from relstorage_paxos.core.ballot import ZERO_BALLOT, Ballot

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Proposal:
    """One client request. ``request_id`` is unique per request and survives retries, so the
    state machine can apply a request once even if a retry gets it chosen twice."""

    request_id: bytes
    payload: bytes


Value = tuple[Proposal, ...]
"""The value of one slot: a batch of proposals; the empty batch is a no-op."""

NOOP: Value = ()

PROPOSAL_OVERHEAD_BYTES: Final = 16
"""What one proposal costs on the wire beyond its request id and payload: the tags and
length prefixes of peer.proto's ``Proposal`` inside its parent (15 bytes at most for request
ids under 16 KiB and payloads under 32 GiB), rounded up."""

ENTRY_OVERHEAD_BYTES: Final = 48
"""What one log entry (``SlotValue`` or ``LogEntry``) costs on the wire beyond its proposals:
slot, ballot, chosen flag, tags and length prefixes (43 bytes at most), rounded up."""


class ProposalTooLarge(ValueError):
    """``Node.propose`` was handed a payload over ``NodeOptions.record_bytes_max``: it is
    refused before anything is queued, and the node goes on as if it had not been called.
    (The core imports nothing with effects, so the runtime maps this to the ZODB-rooted
    ``errors.RecordTooLargeError``.)"""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"a proposal of {size} bytes is over the limit of {limit} bytes")
        self.size = size
        self.limit = limit


def proposal_size(proposal: Proposal) -> int:
    """Bytes ``proposal`` takes on the wire, at most."""
    return len(proposal.request_id) + len(proposal.payload) + PROPOSAL_OVERHEAD_BYTES


def value_size(value: Value) -> int:
    """Bytes the proposals of ``value`` take on the wire, at most (what batching counts)."""
    return sum(proposal_size(p) for p in value)


def entry_size(value: Value) -> int:
    """Bytes one log entry holding ``value`` takes on the wire, at most (what the splitting
    of entries into messages counts)."""
    return value_size(value) + ENTRY_OVERHEAD_BYTES


def split_by_size(items: Sequence[T], size: Callable[[T], int], budget: int) -> list[list[T]]:
    """``items`` cut, in order, into runs whose sizes add up to at most ``budget`` bytes; an
    item larger than ``budget`` forms a run of its own. No items, no runs."""
    runs: list[list[T]] = []
    run: list[T] = []
    run_bytes = 0
    for item in items:
        item_bytes = size(item)
        if run and run_bytes + item_bytes > budget:
            runs.append(run)
            run, run_bytes = [], 0
        run.append(item)
        run_bytes += item_bytes
    if run:
        runs.append(run)
    return runs


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
    below ``commit``; slots up to ``commit`` are chosen and must be caught up, not re-proposed.

    A promise too large for one message travels in parts: each part reports every such entry
    in slots ``first_slot`` through ``last_slot`` (``None``: to the end of the log), and the
    parts cover the prepare's ``from_slot`` on without gaps. The defaults make one part that
    covers everything. A candidate counts a promise once its parts cover every slot; each
    part is true of its range when it was sent, so parts of two answers to the same prepare
    (a duplicated one) may be combined, taking the highest ``commit``.

    ``prior`` is the ballot the acceptor had promised before this prepare's (read leases:
    a new leader learns from them which earlier leader's grants may still run)."""

    src: int
    dst: int
    ballot: Ballot
    ok: bool
    promised: Ballot
    entries: tuple[LogEntry, ...]
    commit: int
    first_slot: int = 0
    last_slot: int | None = None
    prior: Ballot = ZERO_BALLOT


@dataclass(frozen=True, slots=True)
class Accept:
    """Phase 2a for several slots at once; ``commit`` tells the acceptor how far the leader
    knows the log to be chosen (learning piggybacks on phase 2), ``finished`` how far every
    read-lease holder has it too (see ``Node.finished``)."""

    src: int
    dst: int
    ballot: Ballot
    entries: tuple[SlotValue, ...]
    commit: int
    finished: int = 0


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
    """Leader liveness and learning of ``commit``. ``read_seq`` numbers the leader's heartbeat
    rounds in its ballot (the first is 1), and the reply echoes it: a reply to round ``n``
    confirms ReadIndex rounds up to ``n`` (Raft thesis §6.4), and, since the transport
    delivers one node's messages to another in order, shows which Accepts sent before round
    ``n`` were lost (a reordering network only makes the leader resend one needlessly).

    ``lease_seq``, when not 0, grants the receiver a read lease that started when it sent
    its reply to round ``lease_seq`` (core/lease.py); ``finished`` is as in ``Accept``;
    ``sent_us`` is the leader's clock when it sent the round and ``lease_reply_us`` when the
    reply to round ``lease_seq`` arrived (holders check their clock against them)."""

    src: int
    dst: int
    ballot: Ballot
    commit: int
    read_seq: int
    finished: int = 0
    lease_seq: int = 0
    sent_us: int = 0
    lease_reply_us: int = 0


@dataclass(frozen=True, slots=True)
class HeartbeatReply:
    """``commit``: the sender's, which a read-lease holder counts as acknowledged."""

    src: int
    dst: int
    ballot: Ballot
    ok: bool
    promised: Ballot
    read_seq: int
    commit: int = 0


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
