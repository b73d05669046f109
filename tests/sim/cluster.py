"""A deterministic simulation of a Paxos cluster: real core nodes, virtual time, a seeded
faulty network, crashes that lose whatever was not fsynced, and clients that retry.

One ``random.Random(seed)`` drives everything, so a seed replays a whole run exactly
(``scripts/sim.py --seed S --nodes N``). Checkers (``checkers.py``) watch every apply, every
client acknowledgement and every read, and the run ends with a liveness phase: faults stop and
everything outstanding must finish within a bounded number of ticks.

Single-threaded; no clocks, sleeps or sockets.
"""

from __future__ import annotations

import hashlib
import heapq
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import DecodeError

from relstorage_paxos.core import (
    Message,
    Node,
    NodeOptions,
    Persist,
    PersistentState,
    Ready,
    SlotValue,
)
from relstorage_paxos.errors import PeerMessageError
from relstorage_paxos.log.store import MemoryLogStore
from relstorage_paxos.pb import peer_pb2 as pb
from relstorage_paxos.transport import codec
from tests.fuzz.mutations import mutate
from tests.sim.checkers import Checker, SimulationFailure

TICK_US = 10_000
"""Virtual microseconds per core tick."""

SIM_CLUSTER_ID = "sim"
"""The cluster id garbled copies are encoded and checked with."""

GARBLE_RATE = 0.05
"""``SimConfig(garble_rate=...)`` of the malformed-message runs (``scripts/sim.py --garble``)."""


@dataclass(frozen=True)
class SimConfig:
    seed: int
    nodes: int = 3
    fault_ticks: int = 400
    settle_ticks: int = 600
    clients: int = 3
    propose_every_us: int = 15_000
    read_every_us: int = 40_000
    client_timeout_ticks: int = 40
    drop_rate: float = 0.03
    dup_rate: float = 0.02
    delay_min_us: int = 200
    delay_max_us: int = 4_000
    slow_rate: float = 0.005
    """Share of messages held up for a long time (stuck TCP retransmissions), which makes
    old-ballot messages arrive long after the cluster moved on."""
    slow_delay_ticks: tuple[int, int] = (10, 150)
    crash_rate: float = 0.01
    """Chance per tick that the nemesis crashes a node (at most a minority is down)."""
    restart_after_ticks: tuple[int, int] = (5, 120)
    partition_rate: float = 0.01
    partition_ticks: tuple[int, int] = (5, 80)
    pause_rate: float = 0.005
    """Chance per tick that a node's process stops (SIGSTOP, a long GC pause): it neither
    ticks nor handles messages until it resumes, then works through its backlog."""
    pause_ticks: tuple[int, int] = (10, 100)
    compact_keep_slots: int = 20
    compact_every_slots: int = 40
    options: dict[str, int] = field(default_factory=dict)
    leases: bool = False
    """Read leases on (``LEASES`` joins ``options``): clients read through ``lease_read``
    when a node offers it, and every node's clock drifts and jumps (below)."""
    clock_drift_ppm: int = 900
    """With leases: each node's clock runs fast or slow by up to this much (the core
    assumes ``LEASES["clock_drift_ppm"]``)."""
    clock_jump_rate: float = 0.002
    """With leases: chance per tick that the nemesis jumps a node's clock forward."""
    clock_jump_ticks: tuple[int, int] = (1, 30)
    garble_rate: float = 0.0
    """Share of messages of which a copy garbled on the wire (its bytes mutated) also reaches
    the receiver, through the checks a node's peer port makes (``Network.deliver_garbled``):
    byzantine-free but malformed traffic. Each such message is first checked to pass those
    checks itself: the codec must never refuse honest traffic."""

    def reproducer(self) -> str:
        harsh = " --harsh" if self.crash_rate == HARSH["crash_rate"] else ""
        small = " --small-messages" if self.options == SMALL_MESSAGES else ""
        leases = " --leases" if self.leases else ""
        garble = " --garble" if self.garble_rate else ""
        return (
            f"scripts/sim.py --seed {self.seed} --nodes {self.nodes}{harsh}{small}{leases}{garble}"
        )

    def node_options(self) -> dict[str, int]:
        return {**LEASES, **self.options} if self.leases else dict(self.options)


HARSH: dict[str, float] = {
    "crash_rate": 0.03,
    "pause_rate": 0.02,
    "slow_rate": 0.02,
    "partition_rate": 0.02,
}
"""A nemesis three times as busy (``SimConfig(seed, **HARSH)``), for the broken-variant runs
and a share of the default seeds."""

LEASES: dict[str, int] = {
    "read_lease_us": 6 * TICK_US,
    "clock_drift_ppm": 1000,
    "lease_margin_us": 1000,
    "tick_us": TICK_US,
}
"""Read-lease options of ``SimConfig(leases=True)``: a lease of 6 ticks, renewed by every
heartbeat (2 ticks), against an election timeout of 10."""

SMALL_MESSAGES: dict[str, int] = {"message_bytes_max": 150, "batch_bytes_max": 64}
"""Core options under which the clients' small proposals fill messages
(``SimConfig(seed, options=SMALL_MESSAGES)``): nearly every Accept, catch-up reply, Forward
and promise is cut into several messages, as large records cut them in a real cluster."""


class StateMachine:
    """The simulated replica: applies each request id once, keeps a running hash. Its state
    survives crashes, as the replica's applied slot does (same SQLite transaction)."""

    def __init__(self) -> None:
        self.applied = 0
        self.hash = b""
        self.first_slot: dict[bytes, int] = {}

    def apply(self, sv: SlotValue) -> list[bytes]:
        assert sv.slot == self.applied + 1, (sv.slot, self.applied)
        h = hashlib.blake2b(self.hash, digest_size=16)
        h.update(sv.slot.to_bytes(8, "big"))
        fresh = []
        for p in sv.value:
            h.update(p.request_id)
            h.update(p.payload)
            if p.request_id not in self.first_slot:
                self.first_slot[p.request_id] = sv.slot
                fresh.append(p.request_id)
        self.hash = h.digest()
        self.applied = sv.slot
        return fresh

    def copy(self) -> StateMachine:
        other = StateMachine()
        other.applied = self.applied
        other.hash = self.hash
        other.first_slot = dict(self.first_slot)
        return other


class SimNode:
    """A node's process: the core, its disk and its replica, driven like the real runtime:
    persist, then send, then apply, then advance."""

    node_class: type[Node] = Node

    def __init__(self, sim: Simulation, node_id: int) -> None:
        self.sim = sim
        self.id = node_id
        self.disk = MemoryLogStore()
        self.sm = StateMachine()
        self.up = False
        self.paused = False
        self.backlog: list[Callable[[], None]] = []
        self.node: Node
        self.waiting_reads: dict[bytes, int] = {}
        self.lease_reads: dict[bytes, int] = {}
        """Reads served from a read lease: request id -> when the client started it."""
        self.unfinished: dict[bytes, int] = {}
        """Requests applied here whose slot is not yet finished (``Node.finished``)."""
        cfg = sim.config
        drift = sim.rng.randint(-cfg.clock_drift_ppm, cfg.clock_drift_ppm) if cfg.leases else 0
        self.clock_rate = 1 + drift / 1_000_000
        self.clock_jumped_us = 0
        self.start()

    def clock_us(self) -> int:
        """This node's monotonic clock: its own rate, and the forward jumps it suffered."""
        return int(self.sim.now_us * self.clock_rate) + self.clock_jumped_us

    def call(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` against the core now, or after the pause if the process is stopped."""
        if not self.up:
            return
        if self.paused:
            self.backlog.append(fn)
            return
        self.node.set_time(self.clock_us())
        fn()
        self.drain()

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False
        backlog, self.backlog = self.backlog, []
        for fn in backlog:
            self.call(fn)

    def options(self) -> NodeOptions:
        return NodeOptions(
            node_id=self.id,
            members=frozenset(range(1, self.sim.config.nodes + 1)),
            **self.sim.config.node_options(),
        )

    def durable_state(self) -> PersistentState:
        return self.disk.load()

    def start(self) -> None:
        rng = random.Random(self.sim.rng.getrandbits(64))
        self.node = self.node_class(self.options(), rng, self.durable_state(), self.sm.applied)
        self.node.set_time(self.clock_us())
        self.up = True
        self.paused = False
        self.backlog = []
        self.waiting_reads = {}
        self.lease_reads = {}
        self.unfinished = {}
        self.drain()

    def crash(self) -> None:
        self.up = False
        self.disk.crash()

    def persist(self, persist: Persist) -> None:
        self.disk.persist(persist)

    def drain(self) -> None:
        while self.up and self.node.has_ready():
            ready = self.node.ready()
            self.persist(ready.persist)
            self.send_all(ready)
            self.apply_all(ready)
            snapshot_slot = self.fetch_snapshot(ready)
            self.node.advance(ready)
            if snapshot_slot:
                self.node.restore_snapshot(snapshot_slot)
            self.maybe_compact()
        if self.up:
            self.finish_requests()

    def send_all(self, ready: Ready) -> None:
        for m in ready.messages:
            self.sim.network.send(m)

    def apply_all(self, ready: Ready) -> None:
        for sv in ready.chosen:
            self.sim.checker.on_chosen(self.id, sv)
            for request_id in self.sm.apply(sv):
                self.sim.on_applied(self, request_id)
        for rs in ready.read_states:
            self.waiting_reads[rs.request_id] = rs.slot
        self.finish_reads()

    def finish_reads(self) -> None:
        for request_id, slot in list(self.waiting_reads.items()):
            if self.sm.applied >= slot:
                del self.waiting_reads[request_id]
                self.sim.on_read_done(self, request_id, slot)

    def finish_requests(self) -> None:
        """Answer what may be answered now: proposals whose slot is finished, and lease
        reads whose floor is applied while the lease still holds (checked at this moment,
        after any wait); a read whose lease lapsed falls back to ReadIndex."""
        finished = min(self.node.finished, self.sm.applied)
        for request_id, slot in list(self.unfinished.items()):
            if slot <= finished:
                del self.unfinished[request_id]
                self.sim.on_finished(self, request_id)
        for request_id in list(self.lease_reads):
            lease = self.node.lease_read()
            if lease is None:
                del self.lease_reads[request_id]
                self.node.read_index(request_id)
            elif self.sm.applied >= lease[0]:
                del self.lease_reads[request_id]
                self.sim.on_read_done(self, request_id, lease[0])

    def start_read(self, request_id: bytes) -> None:
        if self.node.lease_read() is not None:
            self.lease_reads[request_id] = self.sim.now_us
            self.sim.stats["lease_reads"] += 1
        else:
            self.node.read_index(request_id)

    def fetch_snapshot(self, ready: Ready) -> int:
        request = ready.snapshot_request
        if request is None:
            return 0
        peer = self.sim.nodes[request.peer]
        if not peer.up or peer.sm.applied < request.min_slot or peer.sm.applied <= self.sm.applied:
            return 0
        self.sm = peer.sm.copy()
        self.sim.stats["snapshots"] += 1
        self.sim.checker.on_snapshot(self.id, peer.id, self.sm.applied, self.sm.hash)
        self.finish_reads()
        return self.sm.applied

    def maybe_compact(self) -> None:
        cfg = self.sim.config
        if self.node.applied - self.node.truncated >= cfg.compact_every_slots:
            self.node.compact(self.node.applied - cfg.compact_keep_slots)
            self.drain_later()

    def drain_later(self) -> None:
        self.sim.schedule(0, self.drain)


class Network:
    """Seeded delivery: drops, duplicates, random delays (hence reordering), per-link cuts
    for partitions (one-way cuts are links cut in one direction only), and garbled copies."""

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.cut: set[tuple[int, int]] = set()
        self.faulty = True
        self.sent = 0
        self.delivered = 0
        self.garbled: Counter[str] = Counter()
        """Garbled copies by fate: ``refused`` by the checks, ``delivered`` (they decoded to
        the message itself: a duplicate), ``withheld`` (they decoded to another message that
        passes every check: a forgery only authentication could refuse)."""
        self.members = frozenset(range(1, sim.config.nodes + 1))

    def send(self, m: Message) -> None:
        sim, cfg = self.sim, self.sim.config
        self.sent += 1
        if (m.src, m.dst) in self.cut:
            return
        if self.faulty and sim.rng.random() < cfg.drop_rate:
            return
        copies = 2 if self.faulty and sim.rng.random() < cfg.dup_rate else 1
        for _ in range(copies):
            if self.faulty and sim.rng.random() < cfg.slow_rate:
                delay = sim.rng.randint(*cfg.slow_delay_ticks) * TICK_US
            else:
                delay = sim.rng.randint(cfg.delay_min_us, cfg.delay_max_us)
            sim.schedule(delay, self.deliver, m)
        # Only with garbling on: an extra draw would change every other run's schedule.
        if cfg.garble_rate and self.faulty and sim.rng.random() < cfg.garble_rate:
            envelope = codec.encode(m, SIM_CLUSTER_ID)
            try:  # the honest message itself must pass every check a peer port makes
                honest = codec.decode(envelope, SIM_CLUSTER_ID, self.members)
            except PeerMessageError as exc:
                sim.checker.fail(f"codec: an honest {m!r} is refused: {exc}")
            if honest != m:
                sim.checker.fail(f"codec: {m!r} decodes as {honest!r}")
            wire = envelope.SerializeToString()
            delay = sim.rng.randint(cfg.delay_min_us, cfg.delay_max_us)
            sim.schedule(delay, self.deliver_garbled, m, mutate(wire, sim.rng))

    def deliver_garbled(self, m: Message, data: bytes) -> None:
        """What a node's peer port makes of ``data``, a garbled envelope of ``m``."""
        try:
            decoded = codec.decode(pb.Envelope.FromString(data), SIM_CLUSTER_ID, self.members)
        except (DecodeError, PeerMessageError):
            self.garbled["refused"] += 1
            return
        if decoded.dst != m.dst or decoded.src == m.dst:
            self.garbled["refused"] += 1
        elif decoded == m:
            self.garbled["delivered"] += 1
            self.deliver(m)
        else:
            self.garbled["withheld"] += 1

    def deliver(self, m: Message) -> None:
        target = self.sim.nodes[m.dst]
        if not target.up or (m.src, m.dst) in self.cut:
            return
        self.delivered += 1
        target.call(lambda: target.node.step(m))


@dataclass
class ClientRequest:
    request_id: bytes
    payload: bytes
    started_us: int
    deadline_us: int
    node: int


class Simulation:
    """One seeded run. ``run()`` raises ``SimulationFailure`` (with the reproducer) on any
    violated invariant."""

    def __init__(
        self,
        config: SimConfig,
        node_factory: Callable[[Simulation, int], SimNode] = SimNode,
    ) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.now_us = 0
        self._queue: list[tuple[int, int, Callable[..., None], tuple[Any, ...]]] = []
        self._seq = 0
        self.events = 0
        self.checker = Checker(config)
        self.stats: Counter[str] = Counter()
        self.network = Network(self)
        self.nodes: dict[int, SimNode] = {}
        for node_id in range(1, config.nodes + 1):
            self.nodes[node_id] = node_factory(self, node_id)
        self.faults_on = True
        self.proposals: dict[bytes, ClientRequest] = {}
        self.reads: dict[bytes, ClientRequest] = {}
        self.counter = 0
        for node_id in self.nodes:
            self.schedule(self.rng.randrange(TICK_US), self.tick, node_id)
        for client in range(config.clients):
            self.schedule(self.rng.randrange(config.propose_every_us), self.client_propose, client)
            self.schedule(self.rng.randrange(config.read_every_us), self.client_read, client)
        self.schedule(TICK_US, self.nemesis)

    # -------------------------------------------------------------- event loop

    def schedule(self, delay_us: int, fn: Callable[..., None], *args: Any) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (self.now_us + delay_us, self._seq, fn, args))

    def run(self) -> Simulation:
        cfg = self.config
        fault_end = cfg.fault_ticks * TICK_US
        try:
            self._run_until(fault_end)
            self.stop_faults()
            settle_end = fault_end + cfg.settle_ticks * TICK_US
            while self.now_us < settle_end and not self.settled():
                self._run_until(min(settle_end, self.now_us + TICK_US))
            if not self.settled():
                self.checker.fail(
                    f"not live: {self.outstanding()} after {cfg.settle_ticks} quiet ticks"
                )
            self.checker.check_final(self)
        except SimulationFailure:
            raise
        except AssertionError as exc:
            self.checker.fail(f"assertion in core or runtime at t={self.now_us}us: {exc!r}")
        return self

    def _run_until(self, end_us: int) -> None:
        while self._queue and self._queue[0][0] <= end_us:
            when, _, fn, args = heapq.heappop(self._queue)
            self.now_us = when
            self.events += 1
            fn(*args)
        self.now_us = max(self.now_us, end_us)

    def tick(self, node_id: int) -> None:
        """A node's ticks follow its own clock's rate, as the runtime's do."""
        node = self.nodes[node_id]
        if node.up and not node.paused:
            node.call(node.node.tick)
        self.schedule(int(TICK_US / node.clock_rate), self.tick, node_id)

    # -------------------------------------------------------------- nemesis

    def nemesis(self) -> None:
        if not self.faults_on:
            return
        cfg, rng = self.config, self.rng
        down = [n for n in self.nodes.values() if not n.up]
        if rng.random() < cfg.crash_rate and len(down) < (cfg.nodes - 1) // 2 + (cfg.nodes == 1):
            victim = rng.choice([n for n in self.nodes.values() if n.up])
            victim.crash()
            self.stats["crashes"] += 1
            self.schedule(rng.randint(*cfg.restart_after_ticks) * TICK_US, self.restart, victim.id)
        running = [n for n in self.nodes.values() if n.up and not n.paused]
        if rng.random() < cfg.pause_rate and running:
            sleeper = rng.choice(running)
            sleeper.pause()
            self.stats["pauses"] += 1
            self.schedule(rng.randint(*cfg.pause_ticks) * TICK_US, sleeper.resume)
        if cfg.leases and rng.random() < cfg.clock_jump_rate:
            jumper = rng.choice(list(self.nodes.values()))
            jumper.clock_jumped_us += rng.randint(*cfg.clock_jump_ticks) * TICK_US
            self.stats["clock_jumps"] += 1
        if rng.random() < cfg.partition_rate and not self.network.cut and cfg.nodes > 1:
            self.network.cut = self.random_cut()
            self.stats["partitions"] += 1
            self.schedule(rng.randint(*cfg.partition_ticks) * TICK_US, self.heal)
        self.schedule(TICK_US, self.nemesis)

    def random_cut(self) -> set[tuple[int, int]]:
        ids = sorted(self.nodes)
        rng = self.rng
        if rng.random() < 0.3:  # one-way: a random set of directed links
            links = [(a, b) for a in ids for b in ids if a != b]
            return set(rng.sample(links, rng.randint(1, len(links) // 2)))
        side = set(rng.sample(ids, rng.randint(1, len(ids) - 1)))
        return {(a, b) for a in ids for b in ids if (a in side) != (b in side)}

    def heal(self) -> None:
        self.network.cut = set()

    def restart(self, node_id: int) -> None:
        node = self.nodes[node_id]
        if not node.up:
            node.start()

    def stop_faults(self) -> None:
        self.faults_on = False
        self.network.faulty = False
        self.heal()
        for node in self.nodes.values():
            if not node.up:
                node.start()
            elif node.paused:
                node.resume()

    # -------------------------------------------------------------- clients

    def _next_id(self, kind: str) -> bytes:
        self.counter += 1
        return f"{kind}{self.counter}".encode()

    def up_node(self) -> SimNode:
        return self.rng.choice(
            [n for n in self.nodes.values() if n.up] or list(self.nodes.values())
        )

    def client_propose(self, client: int) -> None:
        if self.faults_on:
            request_id = self._next_id("p")
            payload = self.rng.randbytes(self.rng.randint(0, 24))
            self.checker.on_proposed(request_id, payload)
            self._send_proposal(request_id, payload, self.now_us)
            delay = self.rng.randint(1, 2 * self.config.propose_every_us)
            self.schedule(delay, self.client_propose, client)

    def _send_proposal(self, request_id: bytes, payload: bytes, started_us: int) -> None:
        node = self.up_node()
        deadline = self.now_us + self.config.client_timeout_ticks * TICK_US
        self.proposals[request_id] = ClientRequest(
            request_id, payload, started_us, deadline, node.id
        )
        if request_id in node.sm.first_slot:
            node.call(lambda: self.on_applied(node, request_id))
        else:
            node.call(lambda: node.node.propose(request_id, payload))
        self.schedule(deadline - self.now_us, self.client_timeout, request_id, deadline)

    def client_timeout(self, request_id: bytes, deadline: int) -> None:
        req = self.proposals.get(request_id)
        if req is not None and req.deadline_us == deadline:
            self._send_proposal(request_id, req.payload, req.started_us)

    def on_applied(self, node: SimNode, request_id: bytes) -> None:
        """Applied on ``node``: acknowledged once its slot is finished there (the runtime
        answers a proposal only then)."""
        req = self.proposals.get(request_id)
        if req is not None and req.node == node.id:
            node.unfinished[request_id] = node.sm.first_slot[request_id]

    def on_finished(self, node: SimNode, request_id: bytes) -> None:
        req = self.proposals.get(request_id)
        if req is not None and req.node == node.id:
            del self.proposals[request_id]
            self.checker.on_acked(request_id, node.sm.first_slot[request_id], self.now_us)

    def client_read(self, client: int) -> None:
        if self.faults_on:
            self._send_read(self._next_id("r"), self.now_us)
            self.schedule(
                self.rng.randint(1, 2 * self.config.read_every_us), self.client_read, client
            )

    def _send_read(self, request_id: bytes, started_us: int) -> None:
        node = self.up_node()
        deadline = self.now_us + self.config.client_timeout_ticks * TICK_US
        self.reads[request_id] = ClientRequest(request_id, b"", started_us, deadline, node.id)
        node.call(lambda: node.start_read(request_id))
        self.schedule(deadline - self.now_us, self.read_timeout, request_id, deadline)

    def read_timeout(self, request_id: bytes, deadline: int) -> None:
        req = self.reads.get(request_id)
        if req is not None and req.deadline_us == deadline:
            self._send_read(request_id, req.started_us)

    def on_read_done(self, node: SimNode, request_id: bytes, slot: int) -> None:
        req = self.reads.get(request_id)
        if req is not None and req.node == node.id:
            del self.reads[request_id]
            self.checker.on_read(request_id, req.started_us, slot, node.sm.applied)

    # -------------------------------------------------------------- liveness

    def settled(self) -> bool:
        if self.proposals or self.reads:
            return False
        # Slots, not hashes: replicas at one slot with different hashes have settled, and
        # the convergence check (check_final) names that, rather than "not live".
        applied = {n.sm.applied for n in self.nodes.values()}
        commits = {n.node.commit for n in self.nodes.values()}
        return len(applied) == 1 and len(commits) == 1

    def outstanding(self) -> str:
        state = ", ".join(
            f"n{n.id}:{n.node.role.value} applied={n.sm.applied} commit={n.node.commit}"
            for n in self.nodes.values()
        )
        return f"{len(self.proposals)} proposals, {len(self.reads)} reads open; {state}"
