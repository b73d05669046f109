#!/usr/bin/env python3
"""The replica's WAL under application readers: ``--slots`` one-object commits applied as
fast as the applier goes, while ``--readers`` threads each run read transactions back to
back on their own read-only connection (BEGIN, a count, a few loads, COMMIT), as RelStorage's
load connections do per ZODB transaction, so that with two of them one is nearly always open.

    .venv/bin/python scripts/bench/replica_wal_bench.py [--slots N] [--readers N]
        [--limit-mib N] [--dir PATH]

Prints the largest and the last size of ``replica.sqlite3-wal``, the apply time per slot
(p50, p99, max: a forced checkpoint's pause shows in the max), the read transactions run,
and the warnings the replica logged.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import apsw

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from relstorage_paxos.replica import Committed, Replica, ReplicaOptions
from tests.replica.helpers import apply, commit, lock


class _Counter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


def _read_loop(path: str, stop: threading.Event, counts: list[int], index: int) -> None:
    db = apsw.Connection(path, flags=apsw.SQLITE_OPEN_READONLY)
    try:
        while not stop.is_set():
            db.execute("BEGIN")
            (row,) = db.execute("SELECT COUNT(*) FROM object_state").fetchall()
            count = int(row[0] or 0)
            for oid in range(max(1, count - 3), count + 1):
                db.execute("SELECT state FROM object_state WHERE zoid = ?", (oid,)).fetchall()
            db.execute("COMMIT")
            counts[index] += 1
    finally:
        db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slots", type=int, default=20_000)
    parser.add_argument("--readers", type=int, default=2)
    parser.add_argument("--limit-mib", type=int, default=64)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    warnings = _Counter()
    logging.getLogger("relstorage_paxos.replica").addHandler(warnings)
    options = ReplicaOptions(wal_size_limit_bytes=args.limit_mib << 20)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        replica = Replica.open(Path(tmp) / "replica.sqlite3", keep_history=False, options=options)
        wal = f"{replica.path}-wal"
        stop = threading.Event()
        counts = [0] * args.readers
        readers = [
            threading.Thread(target=_read_loop, args=(replica.path, stop, counts, i))
            for i in range(args.readers)
        ]
        for reader in readers:
            reader.start()
        apply_s: list[float] = []
        largest = 0
        started = time.perf_counter()
        for n in range(1, args.slots + 1):
            txn = b"t%d" % n
            begun = time.perf_counter()
            outcomes = apply(
                replica,
                lock(b"l" + txn, txn, write=[n]),
                commit(b"c" + txn, txn, [(n, 0, n.to_bytes(8, "big") * 64)]),
            )
            apply_s.append(time.perf_counter() - begun)
            assert isinstance(outcomes[1], Committed), outcomes
            largest = max(largest, os.path.getsize(wal))
        elapsed = time.perf_counter() - started
        stop.set()
        for reader in readers:
            reader.join()
        last = os.path.getsize(wal)
        replica.close()
    ordered = sorted(apply_s)
    print(
        f"{args.slots} slots in {elapsed:.1f} s with {args.readers} reader threads"
        f" ({sum(counts)} read transactions); limit {args.limit_mib} MiB"
    )
    print(f"WAL: largest {largest / 2**20:.1f} MiB, last {last / 2**20:.1f} MiB")
    print(
        f"apply per slot: p50 {1000 * statistics.median(ordered):.3f} ms,"
        f" p99 {1000 * ordered[int(0.99 * len(ordered))]:.3f} ms,"
        f" max {1000 * ordered[-1]:.1f} ms"
    )
    print(f"warnings logged: {warnings.count}")


if __name__ == "__main__":
    main()
