"""The checkers have teeth: deliberately broken nodes must be caught within a seed budget,
each by the check it was built to violate (named in the failure), never only by an
assertion in the product.

Each variant breaks one rule the safety argument rests on. If the simulator stopped finding
one of them, its faults or checkers would have gone soft.
"""

from __future__ import annotations

import dataclasses
import hashlib

import pytest

from relstorage_paxos.core import (
    Ballot,
    Node,
    Persist,
    PersistentState,
    Promise,
    ReadState,
    Ready,
    Role,
    SlotValue,
)
from relstorage_paxos.core.messages import Heartbeat
from relstorage_paxos.core.node import _Leadership
from relstorage_paxos.log.store import MemoryLogStore
from tests.sim.checkers import SimulationFailure
from tests.sim.cluster import (
    HARSH,
    SMALL_MESSAGES,
    TICK_US,
    SimConfig,
    SimNode,
    Simulation,
    StateMachine,
)

SEED_BUDGET = 500


class ForgetsPromiseOnRestart(SimNode):
    """An acceptor whose promise is not part of what it reloads."""

    def durable_state(self) -> PersistentState:
        state = dataclasses.replace(super().durable_state(), promised=Ballot(0, 0))
        self.disk = MemoryLogStore(state)
        return state


class RepliesBeforePersisting(SimNode):
    """An acceptor that answers at once and fsyncs only now and then."""

    def persist(self, persist: Persist) -> None:
        if self.sim.rng.random() < 0.95:
            persist = dataclasses.replace(persist, must_sync=False)
        self.disk.persist(persist)


class _SkipsPhase1(Node):
    def _start_phase1(self) -> None:
        ballot = Ballot(max(self._max_round_seen, self.promised.round) + 1, self.id)
        self._set_promised(ballot)
        lead = _Leadership(ballot=ballot, from_slot=self.commit + 1)
        lead.next_slot = max([self.commit, *self.log]) + 1
        lead.phase1_end = self.commit
        lead.heard_from = set(self.members)
        self._lead = lead
        self.role = Role.LEADER
        self.leader = self.id


class LeaderSkipsPhase1(SimNode):
    node_class = _SkipsPhase1


class _TakesPromisePartsForWhole(Node):
    """What a node of peer protocol 1 would do with protocol 2's promise parts."""

    def on_promise(self, m: Promise) -> None:
        super().on_promise(dataclasses.replace(m, first_slot=0, last_slot=None))


class CandidateTakesPromisePartsForWhole(SimNode):
    node_class = _TakesPromisePartsForWhole


class _CorruptsProposals(Node):
    """A proposer that changes what it was asked to propose."""

    def propose(self, request_id: bytes, payload: bytes) -> None:
        super().propose(request_id, payload + b"!")


class ProposesWhatNobodyAsked(SimNode):
    node_class = _CorruptsProposals


class _ReadsWithoutARound(Node):
    """A ReadIndex answered from the node's own commit, without asking a quorum."""

    def read_index(self, request_id: bytes) -> None:
        self._out_reads.append(ReadState(request_id, self.commit))


class ReadsWithoutARound(SimNode):
    node_class = _ReadsWithoutARound


class _AnswersTheNextSlot(StateMachine):
    def apply(self, sv: SlotValue) -> list[bytes]:
        fresh = super().apply(sv)
        for request_id in fresh:
            self.first_slot[request_id] = sv.slot + 1
        return fresh


class AnswersWithTheWrongSlot(SimNode):
    """A runtime that tells the client a slot its request is not in."""

    def __init__(self, sim: Simulation, node_id: int) -> None:
        super().__init__(sim, node_id)
        self.sm = _AnswersTheNextSlot()


class _SaltedStateMachine(StateMachine):
    """An apply that depends on the applying node: the one rule of determinism broken."""

    def __init__(self, salt: int, base: StateMachine) -> None:
        super().__init__()
        self.salt = salt
        self.applied, self.hash, self.first_slot = base.applied, base.hash, base.first_slot

    def apply(self, sv: SlotValue) -> list[bytes]:
        fresh = super().apply(sv)
        self.hash = hashlib.blake2b(self.hash + bytes([self.salt]), digest_size=16).digest()
        return fresh


class ApplyDependsOnTheNode(SimNode):
    def __init__(self, sim: Simulation, node_id: int) -> None:
        super().__init__(sim, node_id)
        self.sm = _SaltedStateMachine(node_id, self.sm)

    def fetch_snapshot(self, ready: Ready) -> int:
        slot = super().fetch_snapshot(ready)
        self.sm = _SaltedStateMachine(self.id, self.sm)
        return slot


class SnapshotWithoutOutcomes(SimNode):
    """A snapshot that leaves out which slot each request was applied at (the replica's
    outcome table): a retried request is applied again, and answered at its new slot."""

    def fetch_snapshot(self, ready: Ready) -> int:
        slot = super().fetch_snapshot(ready)
        if slot:
            self.sm.first_slot = {}
        return slot


class InstallsASnapshotAheadOfItsData(SimNode):
    """A snapshot labelled with a slot far beyond the state it holds."""

    def fetch_snapshot(self, ready: Ready) -> int:
        request = ready.snapshot_request
        if request is None:
            return 0
        peer = self.sim.nodes[request.peer]
        if not peer.up or peer.sm.applied <= self.sm.applied:
            return 0
        label = peer.sm.applied + 10_000
        self.sim.checker.on_snapshot(self.id, peer.id, label, peer.sm.hash)
        return 0


SNAPSHOTS = {"compact_keep_slots": 2, "compact_every_slots": 5}
"""Compaction that keeps almost no log, so that lagging nodes install snapshots often."""


def caught_by(
    check: str, variant: type[SimNode], nodes: int, budget: int = SEED_BUDGET, **config: object
) -> None:
    """Some seed within ``budget`` makes ``check`` (the prefix of the failure message) fire;
    failures of other checks on the way are allowed, an assertion alone is not."""
    others: list[str] = []
    for seed in range(budget):
        try:
            Simulation(
                SimConfig(seed=seed, nodes=nodes, **{**HARSH, **config}),  # type: ignore[arg-type]
                node_factory=variant,
            ).run()
        except SimulationFailure as failure:
            if str(failure).startswith(check):
                print(f"{variant.__name__} ({nodes} nodes) caught at seed {seed}: {failure}")
                return
            others.append(f"seed {seed}: {str(failure)[:200]}")
    pytest.fail(
        f"{variant.__name__}: {check!r} never fired in {budget} seeds; other failures: {others[:5]}"
    )


@pytest.mark.parametrize(
    ("check", "variant", "nodes", "config"),
    [
        ("agreement", ForgetsPromiseOnRestart, 3, {}),
        ("agreement", RepliesBeforePersisting, 3, {}),
        ("agreement", CandidateTakesPromisePartsForWhole, 3, {"options": SMALL_MESSAGES}),
        ("validity", ProposesWhatNobodyAsked, 3, {}),
        ("durability: b'", AnswersWithTheWrongSlot, 3, {}),
        ("durability at the end", SnapshotWithoutOutcomes, 3, SNAPSHOTS),
        ("snapshot", InstallsASnapshotAheadOfItsData, 3, SNAPSHOTS),
        ("linearizable read", ReadsWithoutARound, 3, {}),
        ("convergence", ApplyDependsOnTheNode, 3, {}),
        ("not live", LeaderSkipsPhase1, 3, {}),
        ("not live", LeaderSkipsPhase1, 5, {}),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else str(v),
)
def test_broken_variant_is_caught_by_its_check(
    check: str, variant: type[SimNode], nodes: int, config: dict[str, object]
) -> None:
    caught_by(check, variant, nodes, **config)


# -- read leases: each variant breaks one step of the argument in core/lease.py ------------


class _LeaseFromGrantArrival(Node):
    """A holder that dates its lease from the grant's arrival, not from its own reply: a
    grant delayed in the network then outlives what the leader honours."""

    def _take_grant(self, m: Heartbeat) -> None:
        if m.lease_seq and m.lease_seq in self._reply_sent_us:
            self._reply_sent_us[m.lease_seq] = self._now_us
        super()._take_grant(m)


class LeaseFromGrantArrival(SimNode):
    node_class = _LeaseFromGrantArrival


class _IgnoresEarlierLeases(Node):
    """A new leader that honours only the leases it granted itself."""

    def _holders(self, lead: _Leadership) -> list[int]:
        lead.won_us, lead.won_tick = -(10**12), -(10**9)
        return super()._holders(lead)


class NewLeaderIgnoresEarlierLeases(SimNode):
    node_class = _IgnoresEarlierLeases


LONG_LEASE = {"read_lease_us": 80 * TICK_US}
"""Leases that outlast an election (80 ticks against an election timeout of 10), so that a
new leader meets leases its predecessor granted."""


@pytest.mark.parametrize(
    ("variant", "nodes", "options"),
    [
        (LeaseFromGrantArrival, 3, {}),
        (NewLeaderIgnoresEarlierLeases, 5, LONG_LEASE),
    ],
)
def test_broken_lease_variant_is_caught(
    variant: type[SimNode], nodes: int, options: dict[str, int]
) -> None:
    caught_by("linearizable read", variant, nodes, leases=True, options=options)
