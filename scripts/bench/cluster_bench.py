#!/usr/bin/env python3
"""Throughput, latency and failover of a 3-node cluster of real node processes on 127.0.0.1.

    .venv/bin/python scripts/bench/cluster_bench.py [--seconds 10] [--kills 5]

Reports records/s with 1 and with 8 concurrent proposers (spread over the nodes), median and
p99 propose-to-applied latency, and the leader failover time (kill -9 of the leader until
the next record is applied through a surviving node), median over ``--kills``. The anchor
measured in the same run is a bare gRPC unary round trip to a node's Sequencer (Status), so
figures can be read as multiples of it on this noisy machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from relstorage_paxos.errors import PaxosError
from tests.integration.processes import ProcessCluster, noop_record, wait_for


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def load(cluster: ProcessCluster, proposers: int, seconds: float) -> tuple[float, list[float]]:
    latencies: list[float] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds
    nodes = list(cluster.nodes.values())

    def proposer(index: int) -> None:
        node = nodes[index % len(nodes)]
        n = 0
        while time.monotonic() < stop:
            request_id = f"bench-{proposers}-{index}-{n}".encode()
            started = time.perf_counter()
            node.client.propose(request_id, noop_record(request_id), timeout_s=10)
            with lock:
                latencies.append(time.perf_counter() - started)
            n += 1

    threads = [threading.Thread(target=proposer, args=(i,)) for i in range(proposers)]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(latencies) / (time.monotonic() - began), latencies


def grpc_anchor(cluster: ProcessCluster, calls: int = 2000) -> list[float]:
    client = cluster.nodes[1].client
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        client.status()
        samples.append(time.perf_counter() - started)
    return samples


def failover(cluster: ProcessCluster, kills: int) -> list[float]:
    times = []
    for k in range(kills):
        leader = cluster.wait_for_leader()
        survivor = next(n for n in cluster.running() if n is not leader)
        request_id = f"failover-{k}".encode()
        killed_at = time.monotonic()
        leader.kill()
        wait_for(
            "a write after the kill",
            lambda s=survivor, r=request_id: s.client.propose(r, noop_record(r), 1.0),
            60,
            poll_s=0.001,
        )
        times.append(time.monotonic() - killed_at)
        leader.start()
        wait_for("restarted node", lambda n=leader: n.status(), 30)
        cluster.wait_converged()
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--kills", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        cluster = ProcessCluster(Path(root), 3)
        cluster.start()
        try:
            anchor = grpc_anchor(cluster)
            print(f"anchor: gRPC Status round trip p50 {statistics.median(anchor) * 1e3:.3f} ms")
            for proposers in (1, 8):
                rate, lat = load(cluster, proposers, args.seconds)
                p50, p99 = statistics.median(lat), percentile(lat, 0.99)
                print(
                    f"{proposers} proposer(s): {rate:,.0f} records/s; propose-to-applied "
                    f"p50 {p50 * 1e3:.2f} ms ({p50 / statistics.median(anchor):.1f}x anchor), "
                    f"p99 {p99 * 1e3:.2f} ms"
                )
            times = failover(cluster, args.kills)
            print(
                f"leader failover over {len(times)} kills: "
                f"median {statistics.median(times):.3f} s, "
                f"max {max(times):.3f} s"
            )
        except PaxosError as exc:
            print(f"benchmark failed: {exc}\n{cluster.logs()}")
            return 1
        finally:
            cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
