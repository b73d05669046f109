"""Seeded simulation runs of real core nodes: the default suite's share of the seed space.

Each run checks agreement, validity, durability, linearizable reads and liveness (see
checkers.py); a failure names its reproducer: ``scripts/sim.py --seed S --nodes N``.
"""

from __future__ import annotations

from collections import Counter

import pytest

from tests.sim.cluster import (
    GARBLE_RATE,
    HARSH,
    SMALL_MESSAGES,
    TICK_US,
    SimConfig,
    Simulation,
)

SEEDS_PER_CHUNK = 50
CHUNKS = {(3, False): 24, (5, False): 16, (1, False): 1, (3, True): 4, (5, True): 2}
"""(nodes, harsh) -> chunks: 1,200 and 800 seeds for 3- and 5-node clusters, 50 for one
node, and 300 more under the harsh nemesis."""


@pytest.mark.parametrize(
    ("nodes", "harsh", "chunk"),
    [(nodes, harsh, chunk) for (nodes, harsh), chunks in CHUNKS.items() for chunk in range(chunks)],
)
def test_seeds(nodes: int, harsh: bool, chunk: int) -> None:
    acked = 0
    extra = HARSH if harsh else {}
    for seed in range(chunk * SEEDS_PER_CHUNK, (chunk + 1) * SEEDS_PER_CHUNK):
        sim = Simulation(SimConfig(seed=seed, nodes=nodes, **extra)).run()
        acked += len(sim.checker.acked)
        assert sim.checker.reads_checked > 0, seed
    # A run that acknowledges nothing would make every check above vacuous.
    assert acked > 100 * SEEDS_PER_CHUNK, acked


LEASE_CHUNKS = {(3, False): 6, (5, False): 4, (3, True): 2, (5, True): 2}


@pytest.mark.parametrize(
    ("nodes", "harsh", "chunk"),
    [(n, harsh, chunk) for (n, harsh), chunks in LEASE_CHUNKS.items() for chunk in range(chunks)],
)
def test_seeds_with_read_leases(nodes: int, harsh: bool, chunk: int) -> None:
    """Read leases under drifting and jumping clocks: most reads are served from a lease,
    and every one of them must still see every commit acknowledged before it began."""
    acked = lease_reads = 0
    extra = HARSH if harsh else {}
    for seed in range(chunk * SEEDS_PER_CHUNK, (chunk + 1) * SEEDS_PER_CHUNK):
        sim = Simulation(SimConfig(seed=seed, nodes=nodes, leases=True, **extra)).run()
        acked += len(sim.checker.acked)
        lease_reads += sim.stats["lease_reads"]
        assert sim.checker.reads_checked > 0, seed
    assert acked > 100 * SEEDS_PER_CHUNK, acked
    assert lease_reads > 100 * SEEDS_PER_CHUNK, lease_reads


def test_seeds_with_leases_that_outlast_an_election() -> None:
    """Leases longer than an election timeout: a new leader honours its predecessor's."""
    for seed in range(SEEDS_PER_CHUNK):
        options = {"read_lease_us": 80 * TICK_US}
        Simulation(SimConfig(seed=seed, nodes=5, leases=True, options=options, **HARSH)).run()


@pytest.mark.parametrize(("nodes", "harsh"), [(3, False), (5, False), (3, True)])
def test_seeds_with_small_messages(nodes: int, harsh: bool) -> None:
    """Messages cut into parts (large records do that in a real cluster): promises in parts
    whose loss, duplication or reordering must not let a candidate lead on half a promise."""
    acked = 0
    extra = HARSH if harsh else {}
    for seed in range(SEEDS_PER_CHUNK):
        config = SimConfig(seed=seed, nodes=nodes, options=dict(SMALL_MESSAGES), **extra)
        acked += len(Simulation(config).run().checker.acked)
    assert acked > 100 * SEEDS_PER_CHUNK, acked


def test_same_seed_same_run() -> None:
    a = Simulation(SimConfig(seed=7)).run()
    b = Simulation(SimConfig(seed=7)).run()
    assert (a.now_us, a.events, a.network.delivered) == (b.now_us, b.events, b.network.delivered)
    assert a.nodes[1].sm.hash == b.nodes[1].sm.hash


def test_faults_really_happen() -> None:
    """The nemesis crashes nodes, cuts links, forces snapshots and leader changes."""
    sims = [Simulation(SimConfig(seed=seed)).run() for seed in range(10)]
    rounds = [max(n.node.promised.round for n in sim.nodes.values()) for sim in sims]
    assert max(rounds) >= 3, rounds
    truncated = [min(n.node.truncated for n in sim.nodes.values()) for sim in sims]
    assert min(truncated) > 0, truncated
    totals = sum((sim.stats for sim in sims), start=sims[0].stats.__class__())
    assert totals["crashes"] >= 10 and totals["partitions"] >= 10, totals
    assert totals["snapshots"] >= 1, totals


@pytest.mark.slow
@pytest.mark.parametrize("nodes", [3, 5])
def test_soak(nodes: int) -> None:
    """Outside the default run (``./scripts/test -m slow``): 5,000 more seeds per size."""
    for seed in range(100_000, 105_000):
        Simulation(SimConfig(seed=seed, nodes=nodes)).run()


@pytest.mark.parametrize(("nodes", "leases"), [(3, False), (5, False), (3, True)])
def test_seeds_with_garbled_messages(nodes: int, leases: bool) -> None:
    """Byzantine-free but malformed: garbled copies of real protocol traffic reach the
    receivers through the peer port's checks, and every invariant still holds. An exception
    other than the codec's own refusal (a ``struct.error``, a ``KeyError``) fails the run;
    copies that decode to another valid message are withheld (forgeries, see
    ``Network.garbled``)."""
    fates: Counter[str] = Counter()
    for seed in range(40):
        config = SimConfig(seed=seed, nodes=nodes, leases=leases, garble_rate=GARBLE_RATE)
        fates += Simulation(config).run().network.garbled
    # The checks had something to refuse, and nearly everything garbled is refused.
    assert fates["refused"] > 1000, fates
    assert fates["withheld"] < fates["refused"] / 10, fates
