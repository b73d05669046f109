"""The checkers have teeth: deliberately broken nodes must be caught within a seed budget.

Each variant breaks one rule the safety argument rests on. If the simulator stopped finding
one of them, its faults or checkers would have gone soft.
"""

from __future__ import annotations

import dataclasses

import pytest

from relstorage_paxos.core import Ballot, Node, Persist, PersistentState, Promise, Role
from relstorage_paxos.core.messages import Heartbeat
from relstorage_paxos.core.node import _Leadership
from relstorage_paxos.log.store import MemoryLogStore
from tests.sim.checkers import SimulationFailure
from tests.sim.cluster import HARSH, SMALL_MESSAGES, TICK_US, SimConfig, SimNode, Simulation

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


@pytest.mark.parametrize(
    ("variant", "nodes", "options"),
    [
        (ForgetsPromiseOnRestart, 3, {}),
        (RepliesBeforePersisting, 3, {}),
        (LeaderSkipsPhase1, 3, {}),
        (LeaderSkipsPhase1, 5, {}),
        (CandidateTakesPromisePartsForWhole, 3, SMALL_MESSAGES),
    ],
)
def test_broken_variant_is_caught(
    variant: type[SimNode], nodes: int, options: dict[str, int]
) -> None:
    for seed in range(SEED_BUDGET):
        try:
            config = SimConfig(seed=seed, nodes=nodes, options=dict(options), **HARSH)
            Simulation(config, node_factory=variant).run()
        except SimulationFailure as failure:
            print(f"{variant.__name__} ({nodes} nodes) caught at seed {seed}: {failure}")
            return
    pytest.fail(f"{variant.__name__} survived {SEED_BUDGET} seeds")


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
    for seed in range(SEED_BUDGET):
        try:
            config = SimConfig(seed=seed, nodes=nodes, leases=True, options=options, **HARSH)
            Simulation(config, node_factory=variant).run()
        except SimulationFailure as failure:
            print(f"{variant.__name__} ({nodes} nodes) caught at seed {seed}: {failure}")
            return
    pytest.fail(f"{variant.__name__} survived {SEED_BUDGET} seeds")
