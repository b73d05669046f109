"""One Multi-Paxos node as a pure state machine: proposer, acceptor and learner in one.

Owns: ballots, promises and accepted values per slot, leader election (pre-vote, leader
stickiness, check-quorum), phase 1 over all open slots, pipelined and batched phase 2 (Accepts
resent when a heartbeat reply shows them lost), no-op gap filling, learning and catch-up,
ReadIndex, log truncation, and the size of messages: none carries more than
``message_bytes_max`` of log entries unless one entry alone is larger (promises in parts).
Must not import: anything with I/O, clocks, threads or global randomness (tests/test_tidy.py).
Called by: one thread at a time (the runtime's loop, or the simulator); not thread-safe.

Inputs are ``step(message)``, ``tick()``, ``propose(...)``, ``read_index(...)``,
``compact(...)`` and ``restore_snapshot(...)``; all output is collected into the next
``ready()`` and acknowledged with ``advance(ready)``.

Safety rests on three facts, each asserted where it is used:
- an acceptor never accepts below its promise, and persists promise and accepted value before
  any message that reveals them leaves (the runtime's persist-before-send);
- a leader proposes in a slot only after phase 1 over a majority, re-proposing the value with
  the highest ballot reported for that slot (Paxos Made Simple §2.2, P2c), and never in a slot
  that a member reported chosen up to its ``commit``;
- a leader proposes at most one value per slot per ballot, so an acceptor holding an accepted
  value in the leader's ballot may learn it chosen from the leader's ``commit``.

A retried proposal may be chosen twice (a leader change can lose track of the first copy); the
state machine applies each request id once (DESIGN.md §3, idempotence), so the core need not
deduplicate. It drops only the retries it can tell are on their way already (``_holds``):
with large records, each copy is a slot as large on every node.
"""

from __future__ import annotations

import enum
import logging
import random
from collections import deque
from dataclasses import dataclass, field

from relstorage_paxos.core.ballot import ZERO_BALLOT, Ballot
from relstorage_paxos.core.lease import LeaseTimes
from relstorage_paxos.core.messages import (
    NOOP,
    Accept,
    Accepted,
    CatchUpReply,
    CatchUpRequest,
    Forward,
    Heartbeat,
    HeartbeatReply,
    LogEntry,
    Message,
    Prepare,
    PreVote,
    PreVoteReply,
    Promise,
    Proposal,
    ProposalTooLarge,
    ReadIndexReply,
    ReadIndexRequest,
    SlotValue,
    Value,
    entry_size,
    proposal_size,
    split_by_size,
)
from relstorage_paxos.core.options import NodeOptions
from relstorage_paxos.core.quorum import cannot_reach_majority, has_majority
from relstorage_paxos.core.ready import (
    Persist,
    PersistentState,
    ReadState,
    Ready,
    SnapshotRequest,
)

logger = logging.getLogger(__name__)

REPLY_TIMES_KEPT = 64
"""Heartbeat replies a follower remembers the send time of, for a grant to date its lease
from; a grant comes one round later, so only while the leader grants none do they pile up."""


class Role(enum.Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


@dataclass(slots=True)
class _ReadRound:
    """Reads waiting for a majority to confirm this leader after they arrived."""

    seq: int
    slot: int
    reads: list[tuple[bytes, int]]
    acks: set[int]


@dataclass(slots=True)
class _Leadership:
    """Volatile state of a leader (or candidate) for one ballot."""

    ballot: Ballot
    from_slot: int
    promises: dict[int, tuple[Promise, ...]] = field(default_factory=dict)
    """Complete promises: every part of each, by acceptor."""
    promise_parts: dict[int, list[Promise]] = field(default_factory=dict)
    """Parts of promises still incomplete, by acceptor."""
    rejections: set[int] = field(default_factory=set)
    next_slot: int = 0
    phase1_end: int = 0
    acks: dict[int, set[int]] = field(default_factory=dict)
    """Slots in phase 2, and who accepted each."""
    sent_seq: dict[int, dict[int, int]] = field(default_factory=dict)
    """Slots in phase 2: by peer, ``read_seq`` when the Accept last went to it."""
    heard_from: set[int] = field(default_factory=set)
    read_seq: int = 0
    """The number of the last heartbeat round (see ``Heartbeat``)."""
    commit_sent: int = 0
    finished_sent: int = 0
    read_rounds: list[_ReadRound] = field(default_factory=list)
    reads_waiting: list[tuple[bytes, int]] = field(default_factory=list)
    # Read leases (see ``Node.finished``); times are our clock's, in µs.
    won_us: int = 0
    won_tick: int = 0
    fenced: frozenset[int] = frozenset()
    heartbeat_sent_us: dict[int, int] = field(default_factory=dict)
    """By ``read_seq``: when that heartbeat round went out (kept while it may matter)."""
    heard_us: dict[int, int] = field(default_factory=dict)
    """By peer: when the latest heartbeat round it answered went out."""
    holder_until_us: dict[int, int] = field(default_factory=dict)
    holder_tick: dict[int, int] = field(default_factory=dict)
    """By peer: until when (and from which of our ticks) we honour its read lease."""
    lease_seq: dict[int, int] = field(default_factory=dict)
    """By peer: the latest reply of its that we honour, granted in our next heartbeat."""
    lease_reply_us: dict[int, int] = field(default_factory=dict)
    """By peer: when that reply arrived."""
    peer_commit: dict[int, int] = field(default_factory=dict)
    finish_acks: dict[int, set[int]] = field(default_factory=dict)
    """Slots chosen or in phase 2 above ``finished``: the peers that acknowledged them."""
    answered_tick: dict[int, int] = field(default_factory=dict)
    """By peer: our tick when its latest message arrived, from our win on (``silent_peers``)."""


@dataclass(slots=True)
class _HeldLease:
    """A read lease this node holds: linearizable local reads until ``until_us`` by our
    clock, while we have promised no ballot above ``ballot``, at or above ``floor``."""

    ballot: Ballot
    until_us: int
    floor: int


class Node:
    """A Multi-Paxos node. See the module docstring for the contract."""

    def __init__(
        self,
        options: NodeOptions,
        rng: random.Random,
        state: PersistentState | None = None,
        applied: int = 0,
    ) -> None:
        state = state or PersistentState()
        assert applied >= state.truncated, (applied, state.truncated)
        self.options = options
        self.id = options.node_id
        self.members = options.members
        self.peers = tuple(sorted(options.members - {self.id}))
        self._rng = rng

        # Durable acceptor state (mirrors what the log store holds).
        self.promised: Ballot = state.promised
        self.truncated: int = state.truncated
        self.log: dict[int, LogEntry] = {}
        self._logged: dict[bytes, int] = {}
        """A slot of ``log`` holding each request id (see ``_holds``)."""
        for entry in state.entries:
            if entry.slot > state.truncated:
                self._put(entry)

        # Learner state. Slots up to ``applied`` are in the state machine; a chosen mark lost
        # in a crash does not matter for them (they are chosen, and never served from here
        # unless marked: see on_catch_up_request).
        self.applied: int = applied
        self.commit: int = applied

        # Volatile proposer/election state.
        self.role = Role.FOLLOWER
        self.leader: int | None = None
        self._max_round_seen = self.promised.round
        self._ticks_since_leader = options.election_timeout_ticks
        self._election_elapsed = 0
        self._election_timeout = self._random_timeout()
        self._heartbeat_elapsed = 0
        self._check_quorum_elapsed = 0
        self._catch_up_elapsed = 0
        self._catch_up_peer: int | None = None
        self._catch_up_target = 0
        self._lead: _Leadership | None = None
        self._pre_votes: set[int] = set()
        self._pre_rejections: set[int] = set()
        self._pre_ballot = ZERO_BALLOT

        self._queue: deque[Proposal] = deque()
        self._queued: set[bytes] = set()
        """The request ids in ``_queue``."""
        self._leader_ballot = ZERO_BALLOT
        """The ballot ``leader`` last spoke in."""
        self._followed: int | None = None
        """The last other node we heard from as leader."""
        self._local_reads: set[bytes] = set()

        # Read leases (off when ``read_lease_us`` is 0).
        self._lease_times = (
            LeaseTimes(
                options.read_lease_us,
                options.clock_drift_ppm,
                options.lease_margin_us,
                options.tick_us,
            )
            if options.read_lease_us
            else None
        )
        self._now_us = 0
        self._ticks = 0
        self._quiet_ticks = options.election_timeout_ticks if self._lease_times else 0
        """After a (re)start we may have answered a leader's heartbeat just before: promise
        nobody for as long as we would have refused to then (the leader's lease counts on it)."""
        self.finished: int = self.commit if self._lease_times is None else 0
        self._held: _HeldLease | None = None
        self._prior = self.promised
        """The ballot promised before the current one (this incarnation's first: the durable
        promise, at least as high as any before it)."""
        self._reply_ballot = ZERO_BALLOT
        self._reply_sent_us: dict[int, int] = {}
        """By ``read_seq``, in ``_reply_ballot``: when we answered that heartbeat."""
        self._clock_offset: tuple[int, int, int, Ballot] | None = None
        """(low, high, our time, ballot): what we know of the current leader's clock minus
        ours (``_clock_agrees``)."""
        self._clock_fault_until_us = 0
        self._acked_ballot = ZERO_BALLOT
        self._acked_max = 0
        """The highest slot we acknowledged an Accept for in ``_acked_ballot``."""

        # Output accumulated for the next Ready.
        self._out_messages: list[Message] = []
        self._out_promised = False
        self._out_entries: dict[int, LogEntry] = {}
        self._out_truncated = False
        self._out_sync = False
        self._out_reads: list[ReadState] = []
        self._out_snapshot: SnapshotRequest | None = None
        self._ready_pending = False
        self._advance_commit()

    # ------------------------------------------------------------------ inputs

    def tick(self) -> None:
        """One unit of logical time (the runtime calls it every ``tick`` seconds)."""
        self._ticks += 1
        self._quiet_ticks = max(0, self._quiet_ticks - 1)
        if self.role is Role.LEADER:
            self._tick_leader()
            self._advance_finished()
        else:
            self._tick_follower()

    def set_time(self, now_us: int) -> None:
        """The runtime's monotonic clock, in µs, before each batch of inputs: read leases
        are measured with it (ticks alone could run late). A clock that goes back breaks the
        lease assumptions: we then give up every lease we hold and honour every one we
        granted for a full term again."""
        if now_us < self._now_us:
            logger.warning("node %d: clock went back %d us", self.id, self._now_us - now_us)
            self._held = None
            if self._lead is not None:
                self._lead.won_us, self._lead.won_tick = now_us, self._ticks
                self._lead.fenced = frozenset(self.peers)
                self._lead.heard_us.clear()
        self._now_us = now_us

    def lease_read(self) -> tuple[int, int] | None:
        """``(floor, until_us)`` while this node may serve linearizable reads locally: a
        read that starts before ``until_us`` (our clock) and sees every slot up to ``floor``
        applied sees every commit finished anywhere before it began. ``None``: use
        ``read_index``. Check again after any wait: the floor rises and the lease ends."""
        if self._lease_times is None:
            return None
        if self.role is Role.LEADER:
            lead = self._lead
            assert lead is not None
            until_us = self._leader_lease_until()
            if self.commit < lead.phase1_end or until_us <= self._now_us:
                return None
            return self.commit, until_us
        held = self._held
        if held is None or held.ballot != self.promised or held.until_us <= self._now_us:
            return None
        acked = self._acked_max if self._acked_ballot == held.ballot else 0
        return max(held.floor, acked, self.commit), held.until_us

    def silent_peers(self) -> frozenset[int]:
        """While leading: the peers not heard from for ``node_timeout_ticks``, presumed dead
        or cut off (the runtime releases the object locks of their transactions). A peer
        that answers while it is still silent to us in fact (a one-way cut) is not in it:
        only what reaches us counts."""
        lead = self._lead
        if self.role is not Role.LEADER or lead is None:
            return frozenset()
        timeout = self.options.node_timeout_ticks
        return frozenset(
            peer for peer in self.peers if self._ticks - lead.answered_tick[peer] >= timeout
        )

    def propose(self, request_id: bytes, payload: bytes) -> None:
        """Ask for a value to be chosen. The proposer learns the outcome when a chosen slot
        holding ``request_id`` reaches ``Ready.chosen``; retry with the same id after a
        timeout. A payload over ``record_bytes_max`` raises ``ProposalTooLarge`` and changes
        nothing."""
        if len(payload) > self.options.record_bytes_max:
            raise ProposalTooLarge(len(payload), self.options.record_bytes_max)
        self._accept_proposals((Proposal(request_id, payload),))

    def read_index(self, request_id: bytes) -> None:
        """Ask for a linearizable read barrier; answered as a ``ReadState`` in a later Ready
        (retry with the same id after a timeout)."""
        self._local_reads.add(request_id)
        if self.role is Role.LEADER:
            assert self._lead is not None
            self._lead.reads_waiting.append((request_id, self.id))
            self._start_read_round()
        elif self.leader is not None:
            self._send(ReadIndexRequest(self.id, self.leader, (request_id,)))

    def step(self, m: Message) -> None:
        """Handle one message addressed to this node."""
        assert m.dst == self.id, (m.dst, self.id)
        assert m.src in self.members and m.src != self.id, (m.src, sorted(self.members))
        if self.role is Role.LEADER and self._lead is not None:
            self._lead.answered_tick[m.src] = self._ticks
        match m:
            case PreVote():
                self.on_pre_vote(m)
            case PreVoteReply():
                self.on_pre_vote_reply(m)
            case Prepare():
                self.on_prepare(m)
            case Promise():
                self.on_promise(m)
            case Accept():
                self.on_accept(m)
            case Accepted():
                self.on_accepted(m)
            case Heartbeat():
                self.on_heartbeat(m)
            case HeartbeatReply():
                self.on_heartbeat_reply(m)
            case Forward():
                self.on_forward(m)
            case ReadIndexRequest():
                self.on_read_index_request(m)
            case ReadIndexReply():
                self.on_read_index_reply(m)
            case CatchUpRequest():
                self.on_catch_up_request(m)
            case CatchUpReply():
                self.on_catch_up_reply(m)

    def compact(self, upto_slot: int) -> None:
        """Forget log slots up to ``upto_slot``: a durable snapshot of the state machine covers
        them. Peers that need them are told to fetch a snapshot. Call between ``advance`` and
        the next ``ready``."""
        assert not self._ready_pending, "compact() between ready() and advance()"
        assert upto_slot <= self.applied, (upto_slot, self.applied)
        if upto_slot <= self.truncated:
            return
        self._truncate(upto_slot)

    def restore_snapshot(self, slot: int) -> None:
        """The runtime installed a state-machine snapshot covering every slot up to ``slot``.
        Call between ``advance`` and the next ``ready``."""
        assert not self._ready_pending, "restore_snapshot() between ready() and advance()"
        if slot <= self.applied:
            return
        if self._lead is not None:
            # Our own proposals up to ``slot`` may have lost to a higher ballot, and the
            # snapshot cannot tell: stop leading rather than vouch for them in our commit.
            self._become_follower()
        self.applied = slot
        self.commit = max(self.commit, slot)
        self._truncate(slot)
        self._advance_commit()

    # ------------------------------------------------------------------ output

    @property
    def known_chosen(self) -> int:
        """The highest slot this node knows to be chosen somewhere: its commit, or further
        while it catches up (for progress reports; not used by the protocol)."""
        return max(self.commit, self._catch_up_target)

    def has_ready(self) -> bool:
        return bool(
            self._out_messages
            or self._out_promised
            or self._out_entries
            or self._out_truncated
            or self._out_reads
            or self._out_snapshot is not None
            or self.commit > self.applied
            or (self.role is Role.LEADER and self._queue and self._window_open())
            or self._finished_unannounced()
        )

    def _finished_unannounced(self) -> bool:
        lead = self._lead
        return self.role is Role.LEADER and lead is not None and self.finished > lead.finished_sent

    def ready(self) -> Ready:
        """Everything produced since the last ``advance``. Persist, then send, then apply."""
        assert not self._ready_pending, "ready() called twice without advance()"
        self._flush_proposals()
        self._announce_commit()
        persist = Persist(
            promised=self.promised if self._out_promised else None,
            entries=tuple(self._out_entries[s] for s in sorted(self._out_entries)),
            truncated=self.truncated if self._out_truncated else None,
            must_sync=self._out_sync,
        )
        chosen = tuple(
            SlotValue(s, self.log[s].value) for s in range(self.applied + 1, self.commit + 1)
        )
        ready = Ready(
            persist=persist,
            messages=tuple(self._out_messages),
            chosen=chosen,
            read_states=tuple(self._out_reads),
            snapshot_request=self._out_snapshot,
        )
        self._out_messages = []
        self._out_promised = False
        self._out_entries = {}
        self._out_truncated = False
        self._out_sync = False
        self._out_reads = []
        self._out_snapshot = None
        self._ready_pending = True
        return ready

    def advance(self, ready: Ready) -> None:
        """The runtime has persisted, sent and applied ``ready``."""
        assert self._ready_pending, "advance() without ready()"
        self._ready_pending = False
        if ready.chosen:
            assert ready.chosen[0].slot == self.applied + 1, (ready.chosen[0].slot, self.applied)
            self.applied = ready.chosen[-1].slot

    # ------------------------------------------------------------------ election

    def _random_timeout(self) -> int:
        base = self.options.election_timeout_ticks
        return base + self._rng.randrange(base)

    def _leader_alive(self) -> bool:
        """Leader stickiness: true while this node hears from a live leader."""
        if self.role is Role.LEADER:
            return True
        return (
            self.leader is not None
            and self._ticks_since_leader < self.options.election_timeout_ticks
        )

    def _tick_follower(self) -> None:
        self._ticks_since_leader += 1
        self._election_elapsed += 1
        self._catch_up_elapsed += 1
        if self._catch_up_peer is not None and self._catch_up_elapsed >= (
            self.options.heartbeat_interval_ticks
        ):
            self._request_catch_up(self._catch_up_peer, self._catch_up_target)
        if self._election_elapsed >= self._election_timeout:
            self._start_pre_vote()

    def _start_pre_vote(self) -> None:
        """Ask whether a majority would promise a higher ballot before raising anybody's
        promise (Raft's pre-vote, Ongaro §9.6): a node cut off from the cluster thus never
        forces a healthy leader out when it returns."""
        self._election_elapsed = 0
        self._election_timeout = self._random_timeout()
        self.leader = None
        self._step_down_state()
        self.role = Role.PRE_CANDIDATE
        self._pre_ballot = Ballot(max(self._max_round_seen, self.promised.round) + 1, self.id)
        self._pre_votes = {self.id}
        self._pre_rejections = set()
        for peer in self.peers:
            self._send(PreVote(self.id, peer, self._pre_ballot))
        self._maybe_win_pre_vote()

    def on_pre_vote(self, m: PreVote) -> None:
        self._see_ballot(m.ballot)
        ok = m.ballot > self.promised and not self._leader_alive() and not self._quiet_ticks
        self._send(PreVoteReply(self.id, m.src, m.ballot, ok, self.promised))

    def on_pre_vote_reply(self, m: PreVoteReply) -> None:
        self._see_ballot(m.promised)
        if self.role is not Role.PRE_CANDIDATE or m.ballot != self._pre_ballot:
            return
        if m.ok:
            self._pre_votes.add(m.src)
            self._maybe_win_pre_vote()
        else:
            self._pre_rejections.add(m.src)
            if cannot_reach_majority(self._pre_rejections, self.members):
                self._become_follower()

    def _maybe_win_pre_vote(self) -> None:
        if has_majority(self._pre_votes, self.members):
            self._start_phase1()

    def _start_phase1(self) -> None:
        """Phase 1a once for this leadership, over every slot from the first not known to be
        chosen (Multi-Paxos)."""
        ballot = Ballot(max(self._max_round_seen, self.promised.round) + 1, self.id)
        self._prior = self.promised
        self._set_promised(ballot)
        self.role = Role.CANDIDATE
        self._election_elapsed = 0
        lead = _Leadership(ballot=ballot, from_slot=self.commit + 1)
        self._lead = lead
        lead.promises[self.id] = self._promise_parts(self.id, ballot, lead.from_slot)
        for peer in self.peers:
            self._send(Prepare(self.id, peer, ballot, lead.from_slot))
        self._maybe_win_phase1()

    def on_prepare(self, m: Prepare) -> None:
        if reason := self._ignore_prepare(m):
            logger.debug("node %d rejects prepare %s: %s", self.id, m.ballot, reason)
            self._send(Promise(self.id, m.src, m.ballot, False, self.promised, (), self.commit))
            return
        if m.ballot > self.promised:
            self._prior = self.promised
            self._set_promised(m.ballot)
            if self.role is not Role.FOLLOWER:
                self._become_follower()
            self.leader = None
        for part in self._promise_parts(m.src, m.ballot, m.from_slot):
            self._send(part)

    def _ignore_prepare(self, m: Prepare) -> str | None:
        self._see_ballot(m.ballot)
        if m.ballot < self.promised:
            return f"promised {self.promised}"
        if self._lease_times is not None and m.ballot > self.promised:
            # The leader's lease (lease.py) counts on a majority refusing any other leader
            # for an election timeout after hearing from it: pre-vote alone does not, since
            # a candidate's Prepare may reach us after we heard from a live leader again.
            if self._leader_alive() and m.src != self.leader:
                return f"node {self.leader} leads"
            if self._quiet_ticks:
                return "restarted within an election timeout"
        return None

    def _promise_parts(self, dst: int, ballot: Ballot, from_slot: int) -> tuple[Promise, ...]:
        """Our promise, in as many parts as ``message_bytes_max`` needs (see ``Promise``)."""
        # Slots up to our commit are chosen: the leader catches them up instead of proposing.
        # Every entry above is reported, accepted or chosen, so the leader sees every value
        # that may have been chosen there (the promise quorum meets every accept quorum).
        entries = [self.log[s] for s in sorted(self.log) if s >= from_slot and s > self.commit]
        runs = split_by_size(entries, lambda e: entry_size(e.value), self.options.message_bytes_max)
        prior = self._prior
        if len(runs) <= 1:
            return (
                Promise(
                    self.id,
                    dst,
                    ballot,
                    True,
                    self.promised,
                    tuple(entries),
                    self.commit,
                    prior=prior,
                ),
            )
        firsts = [from_slot, *(run[-1].slot + 1 for run in runs[:-1])]
        lasts: list[int | None] = [*(run[-1].slot for run in runs[:-1]), None]
        return tuple(
            Promise(
                self.id, dst, ballot, True, self.promised, tuple(run), self.commit, f, last, prior
            )
            for run, f, last in zip(runs, firsts, lasts, strict=True)
        )

    def on_promise(self, m: Promise) -> None:
        self._see_ballot(m.promised)
        lead = self._lead
        if self.role is not Role.CANDIDATE or lead is None or m.ballot != lead.ballot:
            return
        if m.ok:
            if m.src in lead.promises:
                return  # complete already: a duplicate part
            parts = lead.promise_parts.setdefault(m.src, [])
            parts.append(m)
            if _covers(parts, lead.from_slot):
                lead.promises[m.src] = tuple(lead.promise_parts.pop(m.src))
                self._maybe_win_phase1()
            return
        if m.promised > lead.ballot:
            self._become_follower()
            return
        lead.rejections.add(m.src)
        if cannot_reach_majority(lead.rejections, self.members):
            self._become_follower()

    def _maybe_win_phase1(self) -> None:
        lead = self._lead
        assert lead is not None
        if not has_majority(lead.promises, self.members):
            return
        self.role = Role.LEADER
        self.leader = self.id
        lead.won_us, lead.won_tick = self._now_us, self._ticks
        lead.answered_tick = dict.fromkeys(self.peers, self._ticks)
        if self._followed in self.peers and self._followed not in lead.promises:
            # It has been silent for an election timeout already: half a node timeout more
            # (heartbeats from us reach it meanwhile, if it lives) is enough.
            lead.answered_tick[self._followed] -= self.options.node_timeout_ticks // 2
        self._check_quorum_elapsed = 0
        self._heartbeat_elapsed = 0
        self._catch_up_peer = None
        lead.heard_from = set(lead.promises)
        # Our own commit may have moved on during phase 1 (catch-up, snapshot install).
        parts = [part for promise in lead.promises.values() for part in promise]
        lead.fenced = self._fenced(parts)
        known_commit = max(self.commit, *(p.commit for p in parts))
        best_commit_peer = max(parts, key=lambda p: (p.commit, -p.src)).src
        chosen: dict[int, Value] = {}
        highest: dict[int, LogEntry] = {}
        for part in parts:
            for entry in part.entries:
                if entry.chosen:
                    chosen[entry.slot] = entry.value
                else:
                    best = highest.get(entry.slot)
                    if best is None or entry.ballot > best.ballot:
                        highest[entry.slot] = entry
        top = max([known_commit, lead.from_slot - 1, *chosen, *highest])
        for slot in range(max(lead.from_slot, self.commit + 1), top + 1):
            if slot in chosen:
                self._learn_chosen(slot, chosen[slot], lead.ballot)
            elif slot <= known_commit:
                continue  # chosen elsewhere; caught up below, never re-proposed
            else:
                adopted = highest.get(slot)  # P2c: the highest-ballot value, else a no-op
                self._propose_in_slot(slot, adopted.value if adopted is not None else NOOP)
        lead.next_slot = top + 1
        lead.phase1_end = top
        logger.debug(
            "node %d leads with ballot %s from slot %d to %d",
            self.id,
            lead.ballot,
            lead.from_slot,
            top,
        )
        self._advance_commit()
        if known_commit > self.commit:
            self._request_catch_up(best_commit_peer, known_commit)
        self._send_accepts_all(lead)
        self._broadcast_heartbeat()
        self._start_read_round()

    def _become_follower(self) -> None:
        """Leave candidacy or leadership; keep every unslotted proposal for the next leader."""
        self._step_down_state()
        self.role = Role.FOLLOWER
        self._election_elapsed = 0
        self._election_timeout = self._random_timeout()

    def _step_down_state(self) -> None:
        # Unanswered local reads stay in _local_reads and go to the next leader we hear of.
        self._lead = None
        if self.leader == self.id:
            self.leader = None

    def _see_ballot(self, ballot: Ballot) -> None:
        self._max_round_seen = max(self._max_round_seen, ballot.round)

    def _heard_from_leader(self, leader: int, ballot: Ballot) -> None:
        """A message in ``ballot``, at least our promise, came from ``leader``."""
        if self.role is not Role.FOLLOWER and leader != self.id:
            self._become_follower()
        first_contact = self.leader != leader
        self.leader = leader
        if leader != self.id:
            self._followed = leader
        self._leader_ballot = ballot
        self._ticks_since_leader = 0
        self._election_elapsed = 0
        if first_contact:
            self._forward_pending()

    # ------------------------------------------------------------------ phase 2

    def on_forward(self, m: Forward) -> None:
        limit = self.options.record_bytes_max
        fitting = tuple(p for p in m.proposals if len(p.payload) <= limit)
        if len(fitting) < len(m.proposals):
            # Only a peer with a larger record_bytes_max sends these (a misconfiguration):
            # taking them could make slots that this node's peers cannot receive.
            logger.debug(
                "node %d drops %d proposals over %d bytes from node %d",
                self.id,
                len(m.proposals) - len(fitting),
                limit,
                m.src,
            )
        self._accept_proposals(fitting)

    def _accept_proposals(self, proposals: tuple[Proposal, ...]) -> None:
        """Queue ``proposals`` (as leader, or knowing none), or forward them to the leader;
        drop the retries of requests on their way already (``_holds``)."""
        fresh = tuple(p for p in proposals if not self._holds(p.request_id))
        if self.role is not Role.LEADER and self.leader is not None:
            self._send_forwards(self.leader, fresh)
            return
        for proposal in fresh:
            self._queue.append(proposal)
            self._queued.add(proposal.request_id)
        while len(self._queue) > self.options.pending_proposals_max:
            self._dequeue()

    def _holds(self, request_id: bytes) -> bool:
        """Whether ``request_id`` is on its way to be chosen already: queued here, or in our
        log chosen, or accepted in the ballot of the current leader (ours, when we lead),
        which resends it until it is chosen. Should that leader go, the next one has
        another ballot, and the runtime's next retry of the request passes.

        The runtime retries every proposal it has not seen applied for a while; a large
        record can take longer than that, and each copy would cost another slot as large,
        written and sent by every node."""
        if request_id in self._queued:
            return True
        slot = self._logged.get(request_id)
        if slot is None:
            return False
        entry = self.log[slot]
        if entry.chosen:
            return True
        if self.role is Role.LEADER:
            assert self._lead is not None
            return entry.ballot == self._lead.ballot
        return self.leader is not None and entry.ballot == self._leader_ballot

    def _dequeue(self) -> Proposal:
        proposal = self._queue.popleft()
        self._queued.discard(proposal.request_id)
        return proposal

    def _send_forwards(self, leader: int, proposals: tuple[Proposal, ...]) -> None:
        for run in split_by_size(proposals, proposal_size, self.options.message_bytes_max):
            self._send(Forward(self.id, leader, tuple(run)))

    def _forward_pending(self) -> None:
        if self.leader is None or self.leader == self.id:
            return
        if self._queue:
            self._send_forwards(self.leader, tuple(self._queue))
            self._queue.clear()
            self._queued.clear()
        if self._local_reads:
            self._send(ReadIndexRequest(self.id, self.leader, tuple(sorted(self._local_reads))))

    def _window_open(self) -> bool:
        lead = self._lead
        assert lead is not None
        return lead.next_slot - 1 - self.commit < self.options.pipeline_window_slots

    def _flush_proposals(self) -> None:
        """Pack queued proposals into new slots, as many as the window allows (batching)."""
        if self.role is not Role.LEADER or not self._queue:
            return
        lead = self._lead
        assert lead is not None
        new: list[SlotValue] = []
        while self._queue and self._window_open():
            batch = [self._dequeue()]
            size = proposal_size(batch[0])
            while self._queue and size + proposal_size(self._queue[0]) <= (
                self.options.batch_bytes_max
            ):
                size += proposal_size(self._queue[0])
                batch.append(self._dequeue())
            slot = lead.next_slot
            lead.next_slot += 1
            self._propose_in_slot(slot, tuple(batch))
            new.append(SlotValue(slot, tuple(batch)))
        self._advance_commit()
        if new:
            for peer in self.peers:
                self._send_accepts(lead, peer, new)
            lead.commit_sent = self.commit
            lead.finished_sent = self.finished

    def _send_accepts(self, lead: _Leadership, peer: int, entries: list[SlotValue]) -> None:
        """Accept ``entries`` in as many messages as ``message_bytes_max`` needs."""
        runs = split_by_size(
            entries, lambda sv: entry_size(sv.value), self.options.message_bytes_max
        )
        for run in runs:
            self._send(Accept(self.id, peer, lead.ballot, tuple(run), self.commit, self.finished))
        for sv in entries:
            lead.sent_seq[sv.slot][peer] = lead.read_seq

    def _announce_commit(self) -> None:
        """Tell followers at once when our commit moved, so a proposal made at a follower
        is applied there one message after the leader learns it is chosen, not at the next
        heartbeat. An Accept without entries carries it and gets no reply."""
        lead = self._lead
        if self.role is not Role.LEADER or lead is None:
            return
        if self.commit <= lead.commit_sent and self.finished <= lead.finished_sent:
            return
        for peer in self.peers:
            self._send(Accept(self.id, peer, lead.ballot, (), self.commit, self.finished))
        lead.commit_sent = self.commit
        lead.finished_sent = self.finished

    def _propose_in_slot(self, slot: int, value: Value) -> None:
        """Accept ``value`` locally in our ballot (the leader is also an acceptor)."""
        lead = self._lead
        assert lead is not None
        assert self.promised == lead.ballot, (self.promised, lead.ballot)
        existing = self.log.get(slot)
        assert existing is None or not existing.chosen or existing.value == value, slot
        assert existing is None or existing.ballot <= lead.ballot, (existing, lead.ballot)
        self._store(LogEntry(slot, lead.ballot, value, False), sync=True)
        lead.acks[slot] = {self.id}
        lead.sent_seq[slot] = {}
        self._check_chosen(slot)

    def _send_accepts_all(self, lead: _Leadership) -> None:
        """Send every slot in phase 2 to every peer that has not acknowledged it."""
        for peer in self.peers:
            entries = [
                SlotValue(s, self.log[s].value)
                for s in sorted(lead.acks)
                if peer not in lead.acks[s]
            ]
            self._send_accepts(lead, peer, entries)

    def _resend_accepts(self, lead: _Leadership, peer: int, read_seq: int) -> None:
        """``peer`` answered heartbeat ``read_seq``: resend the slots it has not acknowledged
        though their Accept went before that heartbeat. Messages between two nodes arrive in
        order (the transport's stream; a reconnect may lose some), so the Accept or its
        Accepted was lost. Slots sent since wait for the next reply: resending on a timer
        instead would send a large value again and again while its acceptor still writes
        it."""
        entries = [
            SlotValue(s, self.log[s].value)
            for s in sorted(lead.acks)
            if peer not in lead.acks[s] and lead.sent_seq[s].get(peer, 0) < read_seq
        ]
        self._send_accepts(lead, peer, entries)

    def on_accept(self, m: Accept) -> None:
        if reason := self._ignore_accept(m):
            logger.debug("node %d rejects accept %s: %s", self.id, m.ballot, reason)
            self._send(Accepted(self.id, m.src, m.ballot, False, self.promised, ()))
            return
        if m.ballot > self.promised:
            self._set_promised(m.ballot)
        self._heard_from_leader(m.src, m.ballot)
        acked: list[int] = []
        for sv in m.entries:
            existing = self.log.get(sv.slot)
            if sv.slot <= self.truncated or (existing is not None and existing.chosen):
                # Chosen already. Another value can only come from a leader of a lower ballot
                # than the one that chose this one, whose Accept arrives after we learned the
                # outcome by catch-up (which does not raise our promise): neither store nor
                # acknowledge it. (That leader cannot get a majority anyway: the quorum that
                # chose the value promised a higher ballot.)
                if existing is None or existing.value == sv.value:
                    acked.append(sv.slot)
                continue
            acked.append(sv.slot)
            if existing is not None and existing.ballot == m.ballot and existing.value == sv.value:
                continue  # a resend: durable already (accepted values are stored with sync)
            self._store(LogEntry(sv.slot, m.ballot, sv.value, False), sync=True)
        if acked:
            if self._acked_ballot != m.ballot:
                self._acked_ballot, self._acked_max = m.ballot, 0
            self._acked_max = max(self._acked_max, *acked)
        if m.entries:  # an Accept without entries only announces the leader's commit
            self._send(Accepted(self.id, m.src, m.ballot, True, self.promised, tuple(acked)))
        self._learn_commit(m.src, m.ballot, m.commit)
        self._learn_finished(m.finished)

    def _ignore_accept(self, m: Accept) -> str | None:
        self._see_ballot(m.ballot)
        if m.ballot < self.promised:
            return f"promised {self.promised}"
        return None

    def on_accepted(self, m: Accepted) -> None:
        self._see_ballot(m.promised)
        lead = self._lead
        if lead is None or m.ballot != lead.ballot:
            return
        if not m.ok:
            if m.promised > lead.ballot:
                self._become_follower()
            return
        if self.role is not Role.LEADER:
            return
        lead.heard_from.add(m.src)
        for slot in m.slots:
            acks = lead.acks.get(slot)
            if acks is not None:
                acks.add(m.src)
                self._check_chosen(slot)
            if self._lease_times is not None and slot > self.finished:
                lead.finish_acks.setdefault(slot, set()).add(m.src)
        self._advance_commit()

    def _check_chosen(self, slot: int) -> None:
        lead = self._lead
        assert lead is not None
        if has_majority(lead.acks[slot], self.members):
            self._learn_chosen(slot, self.log[slot].value, lead.ballot)

    # ------------------------------------------------------------------ learning

    def _learn_chosen(self, slot: int, value: Value, ballot: Ballot) -> None:
        if slot <= self.truncated:
            return
        existing = self.log.get(slot)
        if existing is not None and existing.chosen:
            if existing.value != value:
                # Agreement says no honest node reports another value for a chosen slot: the
                # message that carried it is forged or corrupt. Logged and ignored rather than
                # asserted, so that bytes from the network cannot stop the node.
                logger.error(
                    "node %d ignores a value for slot %d other than the one chosen there "
                    "(a forged or corrupt message?)",
                    self.id,
                    slot,
                )
            return
        lead = self._lead
        if (
            lead is not None
            and existing is not None
            and existing.ballot == lead.ballot
            and existing.value != value
        ):
            # Another value was chosen where we proposed in our ballot: a higher ballot has
            # taken over. Leading on would let followers holding our value in this slot
            # learn it chosen from our commit (the third fact in the module docstring).
            self._become_follower()
        self._store(LogEntry(slot, ballot, value, True), sync=False)
        if self._lead is not None:
            self._lead.acks.pop(slot, None)
            self._lead.sent_seq.pop(slot, None)

    def _advance_commit(self) -> None:
        while (entry := self.log.get(self.commit + 1)) is not None and entry.chosen:
            self.commit += 1
        if self._catch_up_peer is not None and self.commit >= self._catch_up_target:
            self._catch_up_peer = None
        self._advance_finished()
        self._answer_reads()

    def _learn_commit(self, leader: int, ballot: Ballot, leader_commit: int) -> None:
        """Slots up to ``leader_commit`` are chosen; those we accepted in the leader's own
        ballot hold the chosen value (one value per slot per ballot). Fetch the rest.

        Only a window past our commit is scanned: a follower far behind learns by catch-up."""
        scan_to = min(leader_commit, self.commit + 2 * self.options.pipeline_window_slots)
        for slot in range(self.commit + 1, scan_to + 1):
            entry = self.log.get(slot)
            if entry is not None and not entry.chosen and entry.ballot == ballot:
                self._learn_chosen(slot, entry.value, ballot)
        self._advance_commit()
        if leader_commit > self.commit:
            self._request_catch_up(leader, leader_commit)

    def _request_catch_up(self, peer: int, target: int) -> None:
        """Ask ``peer`` for chosen slots after our commit; at most one request in flight per
        heartbeat interval, retried from ``tick`` until ``target`` is reached."""
        if self._catch_up_peer is None:
            self._catch_up_target = target
        else:
            self._catch_up_target = max(self._catch_up_target, target)
        if (
            self._catch_up_peer == peer
            and self._catch_up_elapsed < self.options.heartbeat_interval_ticks
        ):
            return
        self._catch_up_peer = peer
        self._catch_up_elapsed = 0
        self._send(CatchUpRequest(self.id, peer, self.commit + 1))

    def on_catch_up_request(self, m: CatchUpRequest) -> None:
        """Reply with the chosen slots from ``from_slot`` on, up to ``catchup_slots_max`` of
        them and ``message_bytes_max`` (always one, however large); the requester asks again
        for the rest as soon as a reply moves its commit."""
        entries: list[SlotValue] = []
        size = 0
        slot = m.from_slot
        while slot <= self.commit and len(entries) < self.options.catchup_slots_max:
            entry = self.log.get(slot)
            if entry is None or not entry.chosen:
                break
            size += entry_size(entry.value)
            if entries and size > self.options.message_bytes_max:
                break
            entries.append(SlotValue(slot, entry.value))
            slot += 1
        snapshot_slot = 0
        if not entries and m.from_slot <= self.commit:
            # Truncated, or applied with its chosen mark lost in a crash: our snapshot has it.
            snapshot_slot = self.applied
        self._send(CatchUpReply(self.id, m.src, tuple(entries), self.commit, snapshot_slot))

    def on_catch_up_reply(self, m: CatchUpReply) -> None:
        if m.src != self._catch_up_peer:
            # Values we did not ask this peer for (a late answer to an earlier request, whose
            # slots we learn anyway, or a forgery): believed, they would be chosen unchecked.
            logger.debug("node %d ignores a catch-up reply from %d", self.id, m.src)
            return
        for sv in m.entries:
            self._learn_chosen(sv.slot, sv.value, ZERO_BALLOT)
        before = self.commit
        self._advance_commit()
        if m.snapshot_slot > self.commit:
            self._out_snapshot = SnapshotRequest(m.src, m.snapshot_slot)
            self._catch_up_peer = None
            return
        if m.commit > self.commit and self.commit > before:
            self._catch_up_elapsed = self.options.heartbeat_interval_ticks
            self._request_catch_up(m.src, m.commit)

    # ------------------------------------------------------------------ leader duties

    def _tick_leader(self) -> None:
        lead = self._lead
        assert lead is not None
        self._heartbeat_elapsed += 1
        self._check_quorum_elapsed += 1
        self._catch_up_elapsed += 1
        if self._catch_up_peer is not None and self._catch_up_elapsed >= (
            self.options.heartbeat_interval_ticks
        ):
            self._request_catch_up(self._catch_up_peer, self._catch_up_target)
        if self._check_quorum_elapsed >= self.options.election_timeout_ticks:
            self._check_quorum_elapsed = 0
            if not has_majority(lead.heard_from | {self.id}, self.members):
                logger.debug("node %d steps down: no majority heard in %s", self.id, lead.ballot)
                self._become_follower()
                return
            lead.heard_from = set()
        if self._heartbeat_elapsed >= self.options.heartbeat_interval_ticks:
            self._heartbeat_elapsed = 0
            self._broadcast_heartbeat()

    def _broadcast_heartbeat(self) -> None:
        lead = self._lead
        assert lead is not None
        self._send_heartbeats(lead)
        lead.commit_sent = self.commit
        lead.finished_sent = self.finished

    def _send_heartbeats(self, lead: _Leadership) -> None:
        """One heartbeat round: each renews the read lease of a peer whose reply we
        registered, if we may grant one now (``_may_grant``)."""
        lead.read_seq += 1
        if self._lease_times is not None:  # pruned as replies register holders
            lead.heartbeat_sent_us[lead.read_seq] = self._now_us
        grant = self._may_grant()
        for peer in self.peers:
            lease_seq = lead.lease_seq.get(peer, 0) if grant else 0
            self._send(
                Heartbeat(
                    self.id,
                    peer,
                    lead.ballot,
                    self.commit,
                    lead.read_seq,
                    self.finished,
                    lease_seq,
                    self._now_us,
                    lead.lease_reply_us.get(peer, 0) if lease_seq else 0,
                )
            )

    def on_heartbeat(self, m: Heartbeat) -> None:
        self._see_ballot(m.ballot)
        if m.ballot < self.promised:
            self._send(HeartbeatReply(self.id, m.src, m.ballot, False, self.promised, m.read_seq))
            return
        self._heard_from_leader(m.src, m.ballot)
        if self._lease_times is not None:
            if self._clock_agrees(m):
                self._take_grant(m)
            if self._reply_ballot != m.ballot:
                self._reply_ballot, self._reply_sent_us = m.ballot, {}
            # Our lease, if this reply is granted, starts now: before the reply leaves.
            self._reply_sent_us[m.read_seq] = self._now_us
            if len(self._reply_sent_us) > REPLY_TIMES_KEPT:  # no grant for a while
                del self._reply_sent_us[min(self._reply_sent_us)]
        self._send(
            HeartbeatReply(self.id, m.src, m.ballot, True, self.promised, m.read_seq, self.commit)
        )
        self._learn_commit(m.src, m.ballot, m.commit)
        self._learn_finished(m.finished)

    def _clock_agrees(self, m: Heartbeat) -> bool:
        """Whether our clock still agrees with the leader's, NTP-style: our reply to round
        ``m.lease_seq`` left at our ``h1`` and arrived at its ``m.lease_reply_us``; ``m`` left
        at its ``m.sent_us`` and arrived at our now. So (its clock - ours) lay between
        ``sent_us - now`` and ``lease_reply_us - h1``, whatever the delays, queues and pauses
        were; such intervals, widened by the drift bound since, must overlap. When they do
        not, our clock or the leader's is outside the assumptions: give up our lease and take
        no grant for a lease term."""
        times = self._lease_times
        assert times is not None
        h1 = self._reply_sent_us.get(m.lease_seq) if m.lease_seq else None
        if h1 is None or m.ballot != self._reply_ballot or not m.lease_reply_us:
            return self._now_us >= self._clock_fault_until_us
        low, high = m.sent_us - self._now_us, m.lease_reply_us - h1
        known = self._clock_offset
        if known is not None and known[3] == m.ballot:
            known_low, known_high, at_us, _ = known
            widen_us = 2 * times.drift_ppm * (self._now_us - at_us) // 1_000_000
            widen_us += times.margin_us
            if low > known_high + widen_us or high < known_low - widen_us:
                logger.warning(
                    "node %d: clock disagrees with leader %d's (offset in [%d, %d] us, was"
                    " [%d, %d]); no read lease for %d us",
                    self.id,
                    m.src,
                    low,
                    high,
                    known_low,
                    known_high,
                    times.duration_us,
                )
                self._held = None
                self._clock_fault_until_us = self._now_us + times.duration_us
            else:
                low, high = max(low, known_low - widen_us), min(high, known_high + widen_us)
        self._clock_offset = (low, high, self._now_us, m.ballot)
        return self._now_us >= self._clock_fault_until_us

    def _take_grant(self, m: Heartbeat) -> None:
        """``m`` grants us a lease from our reply to round ``m.lease_seq`` on: it lasts
        ``read_lease_us`` from when we sent that reply, and covers what the leader knew
        chosen when it granted (everything finished before it began to count on us)."""
        times = self._lease_times
        assert times is not None
        if not m.lease_seq or m.ballot != self._reply_ballot:
            return
        sent_us = self._reply_sent_us.get(m.lease_seq)
        if sent_us is None:
            return
        until_us = sent_us + times.duration_us
        held = self._held
        if held is None or held.ballot != m.ballot:
            self._held = _HeldLease(m.ballot, until_us, m.commit)
        else:
            held.until_us = max(held.until_us, until_us)
            held.floor = max(held.floor, m.commit)
        for seq in [seq for seq in self._reply_sent_us if seq <= m.lease_seq]:
            del self._reply_sent_us[seq]

    def _learn_finished(self, finished: int) -> None:
        if self._lease_times is not None:
            self.finished = max(self.finished, finished)

    def on_heartbeat_reply(self, m: HeartbeatReply) -> None:
        self._see_ballot(m.promised)
        lead = self._lead
        if lead is None or m.ballot != lead.ballot:
            return
        if not m.ok:
            if m.promised > lead.ballot:
                self._become_follower()
            return
        if self.role is not Role.LEADER:
            return
        lead.heard_from.add(m.src)
        for rnd in lead.read_rounds:
            if rnd.seq <= m.read_seq:
                rnd.acks.add(m.src)
        if self._lease_times is not None:
            self._register_holder(lead, m)
        self._resend_accepts(lead, m.src, m.read_seq)
        self._answer_reads()
        self._advance_finished()

    # ------------------------------------------------------------------ read leases

    def _register_holder(self, lead: _Leadership, m: HeartbeatReply) -> None:
        """From now on, a commit is finished only once ``m.src`` has it too, for as long as
        the lease this reply may earn it can last (``LeaseTimes.grantor_us``, and as many
        ticks); our next heartbeat grants it."""
        times = self._lease_times
        assert times is not None
        peer = m.src
        lead.holder_until_us[peer] = max(
            lead.holder_until_us.get(peer, 0), self._now_us + times.grantor_us
        )
        lead.holder_tick[peer] = self._ticks
        if m.read_seq > lead.lease_seq.get(peer, 0):
            lead.lease_seq[peer] = m.read_seq
            lead.lease_reply_us[peer] = self._now_us
        lead.peer_commit[peer] = max(lead.peer_commit.get(peer, 0), m.commit)
        sent_us = lead.heartbeat_sent_us.get(m.read_seq)
        if sent_us is not None:
            lead.heard_us[peer] = max(lead.heard_us.get(peer, 0), sent_us)
        horizon_us = self._now_us - times.leader_lease_us(self.options.election_timeout_ticks)
        for seq in [seq for seq, at in lead.heartbeat_sent_us.items() if at < horizon_us]:
            del lead.heartbeat_sent_us[seq]

    def _leader_lease_until(self) -> int:
        """Until when (our clock) no other node can be leader: a majority, counting us,
        answered heartbeats sent since ``until - leader_lease_us``, and each of them refuses
        other leaders for an election timeout after hearing from us (``_ignore_prepare``)."""
        times = self._lease_times
        lead = self._lead
        assert times is not None and lead is not None
        heard = sorted(lead.heard_us.values(), reverse=True)
        needed = len(self.members) // 2  # peers, besides us
        if needed == 0:
            return self._now_us + times.leader_lease_us(self.options.election_timeout_ticks)
        if len(heard) < needed:
            return 0
        return heard[needed - 1] + times.leader_lease_us(self.options.election_timeout_ticks)

    def _fenced(self, parts: list[Promise]) -> frozenset[int]:
        """The peers whose read lease from an earlier leader may still run: not those who
        promised us (a holder gives its lease up when it promises a higher ballot), nor the
        proposer of the highest ballot they had promised before. Any leader that granted
        leases won phase 1 with a majority, one of which promised us after it, so its
        ballot is at most that highest one; and that proposer had promised its own ballot,
        above any other leader's that could have granted it a lease. (Its own reads as
        leader ended with its leader's lease, before we could win.)"""
        prior = max((part.prior for part in parts), default=ZERO_BALLOT)
        promised = {part.src for part in parts}
        return frozenset(self.peers) - promised - {prior.node_id}

    def _may_grant(self) -> bool:
        """Grant read leases only while we are sure to lead (so that a leader elected after
        us knows how long to honour them: ``_holders``) and know every earlier commit."""
        lead = self._lead
        if self._lease_times is None or lead is None or self.role is not Role.LEADER:
            return False
        return self.commit >= lead.phase1_end and self._leader_lease_until() > self._now_us

    def _holders(self, lead: _Leadership) -> list[int]:
        """The peers whose read lease we may still have to honour now: those we registered,
        and for a full lease term after we won, those whose lease from an earlier leader may
        still run (``_fenced``; that leader granted while sure to lead, so before we won)."""
        times = self._lease_times
        assert times is not None

        def running(since_us: int, since_tick: int) -> bool:
            return (
                self._now_us < since_us + times.grantor_us
                or self._ticks - since_tick < times.grantor_ticks
            )

        fence = lead.fenced if running(lead.won_us, lead.won_tick) else frozenset()
        return [
            peer
            for peer in self.peers
            if peer in fence
            or (
                peer in lead.holder_tick
                and (
                    self._now_us < lead.holder_until_us[peer]
                    or self._ticks - lead.holder_tick[peer] < times.grantor_ticks
                )
            )
        ]

    def _advance_finished(self) -> None:
        """A leader's ``finished``: the slots, in order, that are chosen and acknowledged
        by every peer whose read lease may run (an Accepted for the slot, or a commit at or
        past it). A commit is reported finished, to its client, only up to here: so a lease
        holder that serves a read without the network has every finished commit."""
        if self._lease_times is None:
            self.finished = self.commit
            return
        lead = self._lead
        if self.role is not Role.LEADER or lead is None:
            return
        holders = self._holders(lead)
        finished = self.finished
        if holders:
            covered = min(lead.peer_commit.get(peer, 0) for peer in holders)
            finished = max(finished, min(self.commit, covered))
        else:
            finished = self.commit
        while finished < self.commit:
            acks = lead.finish_acks.get(finished + 1, set())
            if not all(
                peer in acks or lead.peer_commit.get(peer, 0) > finished for peer in holders
            ):
                break
            finished += 1
        for slot in [slot for slot in lead.finish_acks if slot <= finished]:
            del lead.finish_acks[slot]
        self.finished = finished

    # ------------------------------------------------------------------ ReadIndex

    def on_read_index_request(self, m: ReadIndexRequest) -> None:
        if self.role is not Role.LEADER:
            return  # the requester retries once it knows the leader
        assert self._lead is not None
        self._lead.reads_waiting.extend((r, m.src) for r in m.request_ids)
        self._start_read_round()

    def on_read_index_reply(self, m: ReadIndexReply) -> None:
        for request_id in m.request_ids:
            if request_id in self._local_reads:
                self._local_reads.discard(request_id)
                self._out_reads.append(ReadState(request_id, m.slot))

    def _start_read_round(self) -> None:
        """Confirm leadership with one heartbeat round for every read waiting now.

        A read is linearizable at our ``commit`` once a majority answered a heartbeat sent
        after the read arrived: no other leader can have chosen anything meanwhile, since its
        phase 1 majority would have met ours and refused us. Before our own phase-1 slots are
        chosen our ``commit`` may miss older choices, so reads wait for that too.

        Reads arriving while a round is in flight wait for it to end and then share the next
        one, so concurrent reads cost one round between them."""
        lead = self._lead
        if self.role is not Role.LEADER or lead is None or not lead.reads_waiting:
            return
        if self.commit < lead.phase1_end or lead.read_rounds:
            return
        lead.read_rounds.append(
            _ReadRound(lead.read_seq + 1, self.commit, lead.reads_waiting, {self.id})
        )
        lead.reads_waiting = []
        self._send_heartbeats(lead)
        self._answer_reads()

    def _answer_reads(self) -> None:
        lead = self._lead
        if self.role is not Role.LEADER or lead is None:
            return
        while lead.read_rounds and has_majority(lead.read_rounds[0].acks, self.members):
            rnd = lead.read_rounds.pop(0)
            remote: dict[int, list[bytes]] = {}
            for request_id, origin in rnd.reads:
                if origin == self.id:
                    if request_id in self._local_reads:
                        self._local_reads.discard(request_id)
                        self._out_reads.append(ReadState(request_id, rnd.slot))
                else:
                    remote.setdefault(origin, []).append(request_id)
            for origin, request_ids in sorted(remote.items()):
                self._send(ReadIndexReply(self.id, origin, tuple(request_ids), rnd.slot))
        self._start_read_round()

    # ------------------------------------------------------------------ durable state

    def _set_promised(self, ballot: Ballot) -> None:
        assert ballot >= self.promised, (ballot, self.promised)
        self._see_ballot(ballot)
        self.promised = ballot
        self._out_promised = True
        self._out_sync = True

    def _store(self, entry: LogEntry, sync: bool) -> None:
        assert entry.slot > self.truncated, (entry.slot, self.truncated)
        self._put(entry)
        self._out_entries[entry.slot] = entry
        self._out_sync = self._out_sync or sync

    def _truncate(self, upto_slot: int) -> None:
        for slot in [s for s in self.log if s <= upto_slot]:
            self._forget(slot)
            self._out_entries.pop(slot, None)
        self.truncated = upto_slot
        self._out_truncated = True

    def _put(self, entry: LogEntry) -> None:
        """``entry`` into ``log``, keeping ``_logged`` in step."""
        old = self.log.get(entry.slot)
        if old is not None and old.value is not entry.value:
            self._forget(entry.slot)
        self.log[entry.slot] = entry
        for proposal in entry.value:
            self._logged[proposal.request_id] = entry.slot

    def _forget(self, slot: int) -> None:
        for proposal in self.log.pop(slot).value:
            if self._logged.get(proposal.request_id) == slot:
                del self._logged[proposal.request_id]

    def _send(self, m: Message) -> None:
        self._out_messages.append(m)


def _covers(parts: list[Promise], from_slot: int) -> bool:
    """Whether the ranges of ``parts`` cover every slot from ``from_slot`` on."""
    next_slot = from_slot
    for part in sorted(parts, key=lambda p: p.first_slot):
        if part.first_slot > next_slot:
            return False
        if part.last_slot is None:
            return True
        next_slot = max(next_slot, part.last_slot + 1)
    return False
