#!/usr/bin/env python3
"""Run the deterministic cluster simulator over many seeds, or replay one.

    scripts/sim.py --seeds 10000 --nodes 3          # seeds 0..9999
    scripts/sim.py --seed 1234 --nodes 5            # replay one run (a failure prints this)

Exits non-zero on the first failing seed, printing its reproducer.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.sim.checkers import SimulationFailure
from tests.sim.cluster import GARBLE_RATE, HARSH, SMALL_MESSAGES, SimConfig, Simulation


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--seed", type=int, help="replay this one seed")
    parser.add_argument("--seeds", type=int, default=100, help="run seeds FIRST..FIRST+N-1")
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--fault-ticks", type=int, default=SimConfig.fault_ticks)
    parser.add_argument("--harsh", action="store_true", help="a three times busier nemesis")
    parser.add_argument(
        "--small-messages", action="store_true", help="cut nearly every message into parts"
    )
    parser.add_argument(
        "--leases", action="store_true", help="read leases, with drifting and jumping clocks"
    )
    parser.add_argument(
        "--garble", action="store_true", help="garbled copies of messages reach the receivers"
    )
    args = parser.parse_args(argv)
    seeds = [args.seed] if args.seed is not None else range(args.first, args.first + args.seeds)
    events = deliveries = 0
    started = time.perf_counter()
    for seed in seeds:
        extra = HARSH if args.harsh else {}
        sim = Simulation(
            SimConfig(
                seed=seed,
                nodes=args.nodes,
                fault_ticks=args.fault_ticks,
                options=dict(SMALL_MESSAGES) if args.small_messages else {},
                leases=args.leases,
                garble_rate=GARBLE_RATE if args.garble else 0.0,
                **extra,
            )
        )
        try:
            sim.run()
        except SimulationFailure as failure:
            print(f"seed {seed} FAILED: {failure}")
            return 1
        events += sim.events
        deliveries += sim.network.delivered
    elapsed = time.perf_counter() - started
    print(
        f"{len(seeds)} seeds x {args.nodes} nodes passed: {events} events, {deliveries} deliveries "
        f"in {elapsed:.1f}s ({deliveries / elapsed:,.0f} deliveries/s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
