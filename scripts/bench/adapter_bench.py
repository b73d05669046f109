#!/usr/bin/env python3
"""Uncached load latency and single-object commit latency: relstorage_paxos against stock
RelStorage+SQLite, measured in the same run (medians and tails; this machine is noisy).

    .venv/bin/python scripts/bench/adapter_bench.py [--objects N] [--loads N] [--commits N]

Loads: ``cache-local-mb 0``, every ``load(oid)`` one SQL statement on the replica (paxos) or
on ``main.sqlite3`` (stock), random oids, on a storage instance that has polled. Commits: one
small PersistentMapping changed and committed per transaction, through node 1 of a 3-node
cluster of real node processes (paxos) and on the stock file (anchor). Both history-free.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import transaction
import ZODB
import ZODB.config
from persistent.mapping import PersistentMapping

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.integration.processes import ProcessCluster

STOCK = """
%import relstorage
<zodb>
  <relstorage>
    keep-history false
    cache-local-mb 0
    <sqlite3>
      data-dir {path}
    </sqlite3>
  </relstorage>
</zodb>
"""

PAXOS = """
%import relstorage_paxos
<zodb>
  <relstorage>
    keep-history false
    cache-local-mb 0
    <paxos>
      data-dir {path}
      consistency session
    </paxos>
  </relstorage>
</zodb>
"""


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e6


def populate(db: ZODB.DB, objects: int) -> list[bytes]:
    conn = db.open()
    root = conn.root()
    oids = []
    for start in range(0, objects, 1000):
        batch = [PersistentMapping(data=b"x" * 300, n=i) for i in range(start, start + 1000)]
        root[f"batch{start}"] = batch
        transaction.commit()
        oids.extend(obj._p_oid for obj in batch)
    conn.close()
    return oids


def uncached_loads(db: ZODB.DB, oids: list[bytes], loads: int) -> list[float]:
    storage = db.storage.new_instance()
    storage.poll_invalidations()
    rng = random.Random(1)
    samples = []
    for _ in range(loads):
        oid = rng.choice(oids)
        started = time.perf_counter()
        storage.load(oid)
        samples.append(time.perf_counter() - started)
    storage.release()
    return samples


def commits(db: ZODB.DB, count: int) -> list[float]:
    tm = transaction.TransactionManager()
    conn = db.open(tm)
    tm.begin()
    conn.root()["counter"] = PersistentMapping(n=0)
    tm.commit()
    samples = []
    for _ in range(count):
        tm.begin()
        conn.root()["counter"]["n"] += 1
        started = time.perf_counter()
        tm.commit()
        samples.append(time.perf_counter() - started)
    conn.close()
    return samples


def line(name: str, samples: list[float], anchor: list[float] | None = None) -> str:
    text = (
        f"{name}: p50 {pct(samples, 0.5):.1f} us, p99 {pct(samples, 0.99):.1f} us, "
        f"p99.9 {pct(samples, 0.999):.1f} us"
    )
    if anchor:
        text += f" ({statistics.median(samples) / statistics.median(anchor):.2f}x stock p50)"
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--objects", type=int, default=10_000)
    parser.add_argument("--loads", type=int, default=20_000)
    parser.add_argument("--commits", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        stock = ZODB.config.databaseFromString(STOCK.format(path=Path(root) / "stock"))
        cluster = ProcessCluster(Path(root) / "cluster", 3)
        cluster.start()
        try:
            paxos = ZODB.config.databaseFromString(PAXOS.format(path=cluster.nodes[1].data_dir))
            stock_oids = populate(stock, args.objects)
            paxos_oids = populate(paxos, args.objects)
            stock_loads, paxos_loads = [], []
            for _ in range(3):  # interleaved rounds, so drift hits both alike
                stock_loads += uncached_loads(stock, stock_oids, args.loads // 3)
                paxos_loads += uncached_loads(paxos, paxos_oids, args.loads // 3)
            print(line("stock RelStorage+SQLite uncached load", stock_loads))
            print(line("relstorage_paxos uncached load", paxos_loads, stock_loads))
            stock_commits = commits(stock, args.commits)
            paxos_commits = commits(paxos, args.commits)
            print(line("stock RelStorage+SQLite 1-object commit", stock_commits))
            print(line("relstorage_paxos 1-object commit (3 nodes)", paxos_commits, stock_commits))
            paxos.close()
        finally:
            stock.close()
            cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
