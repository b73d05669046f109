#!/usr/bin/env python3
"""Latency and memory of committing one 16 MiB object: relstorage_paxos through the leader's
and through a follower's node of a 3-node cluster of real node processes, against stock
RelStorage+SQLite, in the same run.

    .venv/bin/python scripts/bench/large_commit_bench.py [--rounds N] [--mib M] [--blob]

Each round rewrites the same object with fresh bytes (history-free, ``cache-local-mb 0``),
the three taking turns so that drift hits all alike. Latency is the wall time of
``transaction.commit()``. Memory is each process's peak resident set during the commit over
its resident set just before it (Linux: ``VmHWM`` after resetting it through
``/proc/PID/clear_refs``): the application process for both, and every node process for
paxos. Medians over the rounds. ``--blob`` commits a blob of that size instead.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import transaction
import ZODB
import ZODB.config
from ZODB.blob import Blob

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.adapter.support import Item
from tests.integration.processes import ProcessCluster, wait_for

STOCK = """
%import relstorage
<zodb>
  large-record-size 1GB
  <relstorage>
    keep-history false
    cache-local-mb 0
    blob-dir {path}/blobs
    <sqlite3>
      data-dir {path}
    </sqlite3>
  </relstorage>
</zodb>
"""

PAXOS = """
%import relstorage_paxos
<zodb>
  large-record-size 1GB
  <relstorage>
    keep-history false
    cache-local-mb 0
    blob-dir {blobs}
    <paxos>
      data-dir {path}
    </paxos>
  </relstorage>
</zodb>
"""

MIB = 1 << 20


def _status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


class PeakRss:
    """Peak resident set over the one just before, for a set of processes (Linux only)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.before: dict[str, int] = {}

    def __enter__(self) -> PeakRss:
        for name, pid in self.pids.items():
            Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
            self.before[name] = _status_kib(pid, "VmRSS")
        return self

    def __exit__(self, *exc: object) -> None:
        self.growth_mib = {
            name: (_status_kib(pid, "VmHWM") - self.before[name]) / 1024
            for name, pid in self.pids.items()
        }


def commit_once(
    db: ZODB.DB, payload: bytes, blob: bool, pids: dict[str, int]
) -> tuple[float, dict[str, float]]:
    tm = transaction.TransactionManager()
    conn = db.open(tm)
    tm.begin()
    if blob:
        conn.root()["big"] = Blob(payload)
    else:
        conn.root()["big"] = Item(payload)  # type: ignore[arg-type]
    with PeakRss(pids) as peak:
        started = time.perf_counter()
        tm.commit()
        elapsed = time.perf_counter() - started
    conn.close()
    return elapsed, peak.growth_mib


def summary(name: str, latencies: list[float], memory: list[dict[str, float]]) -> str:
    parts = [f"{name}: commit p50 {statistics.median(latencies) * 1000:.0f} ms"]
    parts.append(f"(min {min(latencies) * 1000:.0f}, max {max(latencies) * 1000:.0f})")
    for who in memory[0]:
        parts.append(f"{who} +{statistics.median(m[who] for m in memory):.0f} MiB peak")
    return ", ".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--mib", type=int, default=16)
    parser.add_argument("--blob", action="store_true")
    args = parser.parse_args()
    size = args.mib * MIB
    me = os.getpid()
    with tempfile.TemporaryDirectory() as root:
        stock = ZODB.config.databaseFromString(STOCK.format(path=Path(root) / "stock"))
        cluster = ProcessCluster(Path(root) / "cluster", 3)
        cluster.start()
        try:
            for node in cluster.nodes.values():
                wait_for(f"node {node.node_id}", node.status, 30.0)
            leader = cluster.wait_for_leader()
            follower = next(n for n in cluster.nodes.values() if n is not leader)
            pids = {"app": me}
            for node in cluster.nodes.values():
                assert node.process is not None
                role = "leader" if node is leader else "follower"
                pids[f"node {node.node_id} ({role})"] = node.process.pid
            dbs = {
                "stock RelStorage+SQLite": (stock, {"app": me}),
                f"paxos via the leader (node {leader.node_id})": (
                    open_paxos(leader.data_dir, Path(root) / "blobs-l"),
                    pids,
                ),
                f"paxos via a follower (node {follower.node_id})": (
                    open_paxos(follower.data_dir, Path(root) / "blobs-f"),
                    pids,
                ),
            }
            runs: dict[str, list[tuple[float, dict[str, float]]]] = {name: [] for name in dbs}
            for i in range(args.rounds + 1):  # the first round of each warms up
                payload = bytes([i % 256]) * size
                for name, (db, watched) in dbs.items():
                    run = commit_once(db, payload, args.blob, watched)
                    if i:
                        runs[name].append(run)
            what = f"{args.mib} MiB {'blob' if args.blob else 'object'}, 3 nodes"
            print(f"{what}, {args.rounds} rounds, medians:")
            stock_p50 = statistics.median(r[0] for r in runs["stock RelStorage+SQLite"])
            for name, samples in runs.items():
                line = summary(name, [r[0] for r in samples], [r[1] for r in samples])
                ratio = statistics.median(r[0] for r in samples) / stock_p50
                print(f"  {line} ({ratio:.1f}x stock)")
            for db, _ in dbs.values():
                if db is not stock:
                    db.close()
        finally:
            stock.close()
            cluster.stop()
    return 0


def open_paxos(data_dir: Path, blobs: Path) -> ZODB.DB:
    return ZODB.config.databaseFromString(PAXOS.format(path=data_dir, blobs=blobs))


if __name__ == "__main__":
    sys.exit(main())
