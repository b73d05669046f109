"""A tiny deterministic in-memory cluster for hand-written interaction scripts (etcd-io/raft's
``interaction`` tests).

Owns: N core ``Node``s, an in-memory disk and an applied-values list per node, and an explicit
message pool. Nothing happens unless the script says so: messages produced by a node wait in
the pool until ``deliver`` or ``drop`` takes them, in FIFO order; time passes only through
``tick``. Every delivered or dropped message, every applied slot, read state and snapshot
request, and every script input becomes one human-readable line of ``Cluster.trace``, which
the scenarios compare against golden files.

Each node is driven like the real runtime (CONVENTIONS.md rule 1): after every input,
``ready()`` → persist to the disk → send into the pool → apply chosen → ``advance()``, until
the node has nothing more to say. The disk is always durable (every persist survives a
crash); the simulator in ``tests/sim`` covers lost unsynced writes.

Imports only ``core``. Single-threaded; no clock, sleeps or global randomness.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from relstorage_paxos.core import (
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
    Node,
    NodeOptions,
    Persist,
    PersistentState,
    Prepare,
    PreVote,
    PreVoteReply,
    Promise,
    ReadIndexReply,
    ReadIndexRequest,
    Ready,
    Role,
    SlotValue,
    SnapshotRequest,
    Value,
)
from relstorage_paxos.core.ballot import ZERO_BALLOT, Ballot

Filter = Callable[[Message], bool]

STEP_LIMIT = 10_000
"""Deliveries per ``deliver`` call before the harness assumes a message storm."""


# ---------------------------------------------------------------------- formatting


def fmt_value(value: Value) -> str:
    """``noop`` for the empty batch, else the request ids: ``[a,b]``."""
    if value == NOOP:
        return "noop"
    return "[" + ",".join(p.request_id.decode() for p in value) + "]"


def fmt_slot_values(svs: Iterable[SlotValue]) -> str:
    return "[" + ", ".join(f"{sv.slot}={fmt_value(sv.value)}" for sv in svs) + "]"


def fmt_entries(entries: Iterable[LogEntry]) -> str:
    """``slot=value@ballot``, with ``*`` after entries the acceptor knows are chosen."""
    parts = (f"{e.slot}={fmt_value(e.value)}@{e.ballot}{'*' if e.chosen else ''}" for e in entries)
    return "[" + ", ".join(parts) + "]"


def fmt_part(m: Promise) -> str:
    """`` part=3..5`` (``3..`` for the last) for one part of a promise; nothing for a whole."""
    if m.first_slot == 0 and m.last_slot is None:
        return ""
    return f" part={m.first_slot}..{'' if m.last_slot is None else m.last_slot}"


def _ok(ok: bool) -> str:
    return "ok" if ok else "REJECT"


def fmt_message(m: Message) -> str:
    """One line per message, e.g. ``1->2 Prepare ballot=1.1 from_slot=1``."""
    head = f"{m.src}->{m.dst} {type(m).__name__}"
    match m:
        case PreVote():
            body = f"ballot={m.ballot}"
        case PreVoteReply():
            body = f"{_ok(m.ok)} ballot={m.ballot} promised={m.promised}"
        case Prepare():
            body = f"ballot={m.ballot} from_slot={m.from_slot}"
        case Promise():
            body = (
                f"{_ok(m.ok)} ballot={m.ballot} promised={m.promised} commit={m.commit} "
                f"entries={fmt_entries(m.entries)}{fmt_part(m)}"
            )
        case Accept():
            body = f"ballot={m.ballot} commit={m.commit} entries={fmt_slot_values(m.entries)}"
        case Accepted():
            slots = ",".join(str(s) for s in m.slots)
            body = f"{_ok(m.ok)} ballot={m.ballot} promised={m.promised} slots=[{slots}]"
        case Heartbeat():
            body = f"ballot={m.ballot} commit={m.commit} read_seq={m.read_seq}"
        case HeartbeatReply():
            body = f"{_ok(m.ok)} ballot={m.ballot} promised={m.promised} read_seq={m.read_seq}"
        case Forward():
            body = fmt_value(m.proposals)
        case ReadIndexRequest():
            body = "[" + ",".join(r.decode() for r in m.request_ids) + "]"
        case ReadIndexReply():
            ids = ",".join(r.decode() for r in m.request_ids)
            body = f"[{ids}] slot={m.slot}"
        case CatchUpRequest():
            body = f"from_slot={m.from_slot}"
        case CatchUpReply():
            body = (
                f"commit={m.commit} snapshot_slot={m.snapshot_slot} "
                f"entries={fmt_slot_values(m.entries)}"
            )
    return f"{head} {body}"


# ---------------------------------------------------------------------- filters

Kinds = type[Message] | tuple[type[Message], ...]
M = TypeVar("M")


def match(
    type: Kinds | None = None,
    src: int | None = None,
    dst: int | None = None,
    slot: int | None = None,
) -> Filter:
    """A message predicate; ``slot`` matches Accept entries and Accepted slots."""

    def predicate(m: Message) -> bool:
        if type is not None and not isinstance(m, type):
            return False
        if src is not None and m.src != src:
            return False
        if dst is not None and m.dst != dst:
            return False
        if slot is not None:
            if isinstance(m, Accept):
                return any(sv.slot == slot for sv in m.entries)
            if isinstance(m, Accepted):
                return slot in m.slots
            return False
        return True

    return predicate


# ---------------------------------------------------------------------- node parts


@dataclass
class Disk:
    """Durable acceptor state: applies each ``Persist`` (promise, upsert, truncation)."""

    promised: Ballot = ZERO_BALLOT
    entries: dict[int, LogEntry] = field(default_factory=dict)
    truncated: int = 0

    def persist(self, p: Persist) -> None:
        if p.promised is not None:
            assert p.promised >= self.promised, (p.promised, self.promised)
            self.promised = p.promised
        for e in p.entries:
            self.entries[e.slot] = e
        if p.truncated is not None:
            assert p.truncated >= self.truncated, (p.truncated, self.truncated)
            self.truncated = p.truncated
            self.entries = {s: e for s, e in self.entries.items() if s > p.truncated}

    def state(self) -> PersistentState:
        return PersistentState(
            self.promised, tuple(self.entries[s] for s in sorted(self.entries)), self.truncated
        )


@dataclass
class StateMachine:
    """The replica: the chosen values applied so far, in slot order. Survives crashes (the
    real replica advances its applied slot in the same transaction as the data)."""

    values: list[SlotValue] = field(default_factory=list)
    applied: int = 0

    def apply(self, sv: SlotValue) -> None:
        assert sv.slot == self.applied + 1, (sv.slot, self.applied)
        self.values.append(sv)
        self.applied = sv.slot

    def request_ids(self) -> list[str]:
        return [p.request_id.decode() for sv in self.values for p in sv.value]

    def fresh_request_ids(self) -> list[str]:
        """Request ids in the order a deduplicating state machine applies them (each once)."""
        return list(dict.fromkeys(self.request_ids()))


# ---------------------------------------------------------------------- the cluster


class Cluster:
    """N nodes, members ``1..N``; see the module docstring."""

    def __init__(self, size: int = 3, seed: int = 0, **options: int) -> None:
        self.size = size
        self.seed = seed
        self.option_overrides = options
        self.members = frozenset(range(1, size + 1))
        self.disks = {i: Disk() for i in self.members}
        self.sms = {i: StateMachine() for i in self.members}
        self.incarnations = dict.fromkeys(self.members, 0)
        self.pool: list[Message] = []
        self.trace: list[str] = []
        self.cut: set[tuple[int, int]] = set()
        self.read_states: dict[int, dict[bytes, int]] = {i: {} for i in self.members}
        self.snapshot_requests: dict[int, SnapshotRequest] = {}
        self.nodes: dict[int, Node | None] = {i: self._make_node(i) for i in self.members}

    # -------------------------------------------------------------- plumbing

    def options(self, node_id: int) -> NodeOptions:
        return NodeOptions(node_id=node_id, members=self.members, **self.option_overrides)

    def _make_node(self, node_id: int) -> Node:
        rng = random.Random(self.seed * 1_000 + node_id * 10 + self.incarnations[node_id])
        return Node(
            self.options(node_id), rng, self.disks[node_id].state(), self.sms[node_id].applied
        )

    def node(self, node_id: int) -> Node:
        node = self.nodes[node_id]
        assert node is not None, f"n{node_id} is down"
        return node

    def note(self, text: str) -> None:
        """A comment line in the trace."""
        self.trace.append(f"# {text}")

    def _input(self, node_id: int, line: str, fn: Callable[[Node], None]) -> None:
        node = self.node(node_id)
        before = node.role
        if line:
            self.trace.append(f"> {line}")
        fn(node)
        self._drain(node_id)
        self._trace_role(node_id, before)

    def _trace_role(self, node_id: int, before: Role) -> None:
        node = self.nodes[node_id]
        if node is None or node.role is before:
            return
        self.trace.append(f"n{node_id} is {node.role.value} (promised {node.promised})")

    def _drain(self, node_id: int) -> None:
        """The runtime loop: ready → persist → send → apply → advance, until quiet."""
        node = self.node(node_id)
        while node.has_ready():
            ready = node.ready()
            self.disks[node_id].persist(ready.persist)
            self._check_durable(node_id, ready)
            self.pool.extend(ready.messages)
            for sv in ready.chosen:
                self.sms[node_id].apply(sv)
                self.trace.append(f"n{node_id} applies slot {sv.slot} {fmt_value(sv.value)}")
            for rs in ready.read_states:
                self.read_states[node_id][rs.request_id] = rs.slot
                self.trace.append(f"n{node_id} read {rs.request_id.decode()} at slot {rs.slot}")
            if ready.snapshot_request is not None:
                request = ready.snapshot_request
                self.snapshot_requests[node_id] = request
                self.trace.append(
                    f"n{node_id} snapshot_request peer={request.peer} min_slot={request.min_slot}"
                )
            node.advance(ready)

    def _check_durable(self, node_id: int, ready: Ready) -> None:
        """Persist before send: what an outgoing promise or acceptance reveals is on disk,
        and a Ready that writes a promise or an accepted value asks for an fsync."""
        disk = self.disks[node_id]
        p = ready.persist
        if p.promised is not None or any(not e.chosen for e in p.entries):
            assert p.must_sync, (node_id, p)
        for m in ready.messages:
            if isinstance(m, Promise) and m.ok:
                assert disk.promised >= m.ballot, (node_id, disk.promised, m)
            if isinstance(m, Accepted) and m.ok:
                assert disk.promised >= m.ballot, (node_id, disk.promised, m)
                for slot in m.slots:
                    e = disk.entries.get(slot)
                    assert slot <= disk.truncated or (
                        e is not None and (e.chosen or e.ballot == m.ballot)
                    ), (node_id, slot, e, m)

    # -------------------------------------------------------------- script inputs

    def tick(self, node_id: int, n: int = 1) -> None:
        def run(node: Node) -> None:
            for _ in range(n):
                node.tick()
                self._drain(node_id)

        self._input(node_id, f"tick n{node_id}" + (f" x{n}" if n > 1 else ""), run)

    def tick_until_campaign(self, node_id: int, limit: int = 1_000) -> int:
        """Tick ``node_id`` until it starts an election (sends pre-votes, or gets straight to
        phase 1 when it is alone); returns the ticks it took."""
        node = self.node(node_id)
        before = node.role
        ticks = 0
        campaigned = False
        while not campaigned:
            assert ticks < limit, f"n{node_id} never campaigned in {limit} ticks"
            sent = len(self.pool)
            promised = node.promised
            node.tick()
            self._drain(node_id)
            ticks += 1
            campaigned = node.promised != promised or any(
                isinstance(m, PreVote) for m in self.pool[sent:]
            )
        self.trace.append(f"> tick n{node_id} x{ticks} (until it campaigns)")
        self._trace_role(node_id, before)
        return ticks

    def propose(self, node_id: int, request_id: str, payload: bytes = b"") -> None:
        self._input(
            node_id,
            f"propose n{node_id} {request_id}",
            lambda node: node.propose(request_id.encode(), payload),
        )

    def propose_batch(self, node_id: int, proposals: Iterable[tuple[str, bytes]]) -> None:
        """Several proposals handed to the node before its next ``ready()`` (a runtime drains
        its inbox before asking for output), so the leader may pack them into one slot."""
        batch = list(proposals)

        def run(node: Node) -> None:
            for request_id, payload in batch:
                node.propose(request_id.encode(), payload)

        ids = ",".join(f"{r}({len(p)}B)" for r, p in batch)
        self._input(node_id, f"propose n{node_id} {ids}", run)

    def read_index(self, node_id: int, request_id: str) -> None:
        self._input(
            node_id,
            f"read_index n{node_id} {request_id}",
            lambda node: node.read_index(request_id.encode()),
        )

    def compact(self, node_id: int, upto_slot: int) -> None:
        self._input(node_id, f"compact n{node_id} upto {upto_slot}", lambda n: n.compact(upto_slot))

    def install_snapshot(self, node_id: int) -> int:
        """Serve the node's pending snapshot request: copy the peer's state machine, then
        ``restore_snapshot``. Returns the slot the snapshot covers."""
        request = self.snapshot_requests.pop(node_id)
        source = self.sms[request.peer]
        assert source.applied >= request.min_slot, (source.applied, request.min_slot)
        self.sms[node_id] = StateMachine(list(source.values), source.applied)
        slot = source.applied
        self._input(
            node_id,
            f"install snapshot on n{node_id} from n{request.peer} at slot {slot}",
            lambda node: node.restore_snapshot(slot),
        )
        return slot

    def step(self, m: Message) -> None:
        """Hand ``m`` to its receiver now (bypassing the pool), traced like a delivery."""
        self._input(m.dst, "", lambda node: node.step(m))

    # -------------------------------------------------------------- the network

    def pending(self, filter: Filter | None = None) -> list[Message]:
        return [m for m in self.pool if filter is None or filter(m)]

    def pending_of(self, kind: type[M], src: int | None = None, dst: int | None = None) -> list[M]:
        """Pending messages of one type (typed, for assertions on their fields)."""
        return [
            m
            for m in self.pool
            if isinstance(m, kind) and src in (None, m.src) and dst in (None, m.dst)
        ]

    def deliver(
        self,
        filter: Filter | None = None,
        *,
        type: Kinds | None = None,
        src: int | None = None,
        dst: int | None = None,
        slot: int | None = None,
    ) -> int:
        """Deliver pending messages matching ``filter`` and the keyword criteria (see
        ``match``) in FIFO order, including ones their delivery produces, until none match.
        Messages to a crashed node or across a partition are dropped instead. Returns the
        number delivered."""
        criteria = match(type, src, dst, slot)

        def predicate(m: Message) -> bool:
            return criteria(m) and (filter is None or filter(m))

        delivered = 0
        while (i := next((i for i, m in enumerate(self.pool) if predicate(m)), None)) is not None:
            assert delivered < STEP_LIMIT, "message storm"
            m = self.pool.pop(i)
            if (m.src, m.dst) in self.cut:
                self.trace.append(f"drop {fmt_message(m)} (partitioned)")
            elif self.nodes[m.dst] is None:
                self.trace.append(f"drop {fmt_message(m)} (n{m.dst} down)")
            else:
                self.trace.append(fmt_message(m))
                self.step(m)
                delivered += 1
        return delivered

    def deliver_next(self) -> None:
        """Deliver the oldest pending message alone (not what it produces)."""
        first = self.pool[0]
        self.deliver(lambda m: m is first)

    def drop(
        self,
        filter: Filter | None = None,
        *,
        type: Kinds | None = None,
        src: int | None = None,
        dst: int | None = None,
        slot: int | None = None,
    ) -> int:
        """Lose every pending message matching ``filter`` and the keyword criteria."""
        criteria = match(type, src, dst, slot)

        def predicate(m: Message) -> bool:
            return criteria(m) and (filter is None or filter(m))

        dropped = [m for m in self.pool if predicate(m)]
        self.pool = [m for m in self.pool if not predicate(m)]
        for m in dropped:
            self.trace.append(f"drop {fmt_message(m)}")
        return len(dropped)

    def partition(self, *groups: Iterable[int]) -> None:
        """Cut every link between different groups; a node in no group is alone."""
        side = {n: i for i, group in enumerate(groups) for n in group}
        alone = {n: len(groups) + n for n in self.members if n not in side}
        side.update(alone)
        self.cut = {(a, b) for a in self.members for b in self.members if side[a] != side[b]}
        text = " | ".join(",".join(f"n{n}" for n in sorted(g)) for g in groups)
        self.trace.append(f"> partition {text}")

    def heal(self) -> None:
        self.cut = set()
        self.trace.append("> heal")

    def crash(self, node_id: int) -> None:
        """The process dies: volatile state is lost; disk and state machine survive."""
        self.node(node_id)
        self.nodes[node_id] = None
        self.snapshot_requests.pop(node_id, None)
        self.trace.append(f"> crash n{node_id}")

    def restart(self, node_id: int) -> None:
        """Rebuild the node from its disk and its state machine's applied slot."""
        assert self.nodes[node_id] is None, f"n{node_id} is up"
        self.incarnations[node_id] += 1
        self.trace.append(f"> restart n{node_id} (applied {self.sms[node_id].applied})")
        self.nodes[node_id] = self._make_node(node_id)
        self._drain(node_id)

    # -------------------------------------------------------------- observations

    def leaders(self) -> list[int]:
        return sorted(i for i, n in self.nodes.items() if n is not None and n.role is Role.LEADER)

    def applied(self, node_id: int) -> list[str]:
        """The applied values of a node, formatted: ``['[a]', 'noop', ...]``."""
        return [fmt_value(sv.value) for sv in self.sms[node_id].values]

    def show_log(self, node_id: int) -> None:
        """A trace line with the node's acceptor state."""
        node = self.node(node_id)
        entries = fmt_entries(node.log[s] for s in sorted(node.log))
        self.trace.append(
            f"n{node_id} log promised={node.promised} truncated={node.truncated} "
            f"commit={node.commit} {entries}"
        )

    def text(self) -> str:
        return "\n".join(self.trace) + "\n"
