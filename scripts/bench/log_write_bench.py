#!/usr/bin/env python3
"""The cost of one durable log write: ``SqliteLogStore.persist`` of a one-entry
``must_sync`` Persist (a 300-byte value), against a bare apsw WAL commit with
``synchronous=FULL`` (one 300-byte row inserted) as the anchor, in the same run.

    .venv/bin/python scripts/bench/log_write_bench.py [--writes N] [--rounds R] [--dir PATH]

Three series, interleaved in ``--rounds`` rounds so that the disk's mood swings hit all of
them alike: ``anchor`` (the bare commit), ``persist`` (every write must_sync, the leader's and
an acceptor's Accept path) and ``accept+mark`` (a must_sync accept, then the chosen mark
without sync, as a follower writes each slot; the time of the pair). Prints p50/p99 in
milliseconds and each p50 as a multiple of the anchor's. ``--dir`` picks the file system
(default: a temporary directory).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import apsw

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from relstorage_paxos.core.ballot import Ballot
from relstorage_paxos.core.messages import LogEntry, Proposal
from relstorage_paxos.core.ready import Persist
from relstorage_paxos.log.sqlite_store import SqliteLogStore

VALUE_BYTES = 300


def _anchor(directory: Path) -> Callable[[int], None]:
    db = apsw.Connection(str(directory / "anchor.sqlite3"))
    db.execute("PRAGMA journal_mode = WAL").fetchall()
    db.execute("PRAGMA synchronous = FULL")
    db.execute("CREATE TABLE t (slot INTEGER PRIMARY KEY, value BLOB NOT NULL)")
    payload = b"v" * VALUE_BYTES

    def write(slot: int) -> None:
        db.execute("INSERT INTO t VALUES (?, ?)", (slot, payload))

    return write


def _entry(slot: int, *, chosen: bool) -> LogEntry:
    value = (Proposal(request_id=b"r%d" % slot, payload=b"p" * VALUE_BYTES),)
    return LogEntry(slot=slot, ballot=Ballot(1, 1), value=value, chosen=chosen)


def _store(directory: Path, name: str) -> SqliteLogStore:
    return SqliteLogStore(directory / name, cluster_id="bench", node_id=1, create=True)


def _persist(directory: Path) -> Callable[[int], None]:
    store = _store(directory, "persist.sqlite3")

    def write(slot: int) -> None:
        store.persist(Persist(entries=(_entry(slot, chosen=False),), must_sync=True))

    return write


def _accept_and_mark(directory: Path) -> Callable[[int], None]:
    store = _store(directory, "pair.sqlite3")

    def write(slot: int) -> None:
        store.persist(Persist(entries=(_entry(slot, chosen=False),), must_sync=True))
        store.persist(Persist(entries=(_entry(slot, chosen=True),)))

    return write


def _time(write: Callable[[int], None], first_slot: int, count: int, into: list[float]) -> None:
    for slot in range(first_slot, first_slot + count):
        started = time.perf_counter()
        write(slot)
        into.append(time.perf_counter() - started)


def _quantile_ms(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writes", type=int, default=3000, help="writes per series")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        directory = Path(tmp)
        series = {
            "anchor": _anchor(directory),
            "persist": _persist(directory),
            "accept+mark": _accept_and_mark(directory),
        }
        samples: dict[str, list[float]] = {name: [] for name in series}
        per_round = max(1, args.writes // args.rounds)
        for round_ in range(args.rounds):
            for name, write in series.items():
                _time(write, 1 + round_ * per_round, per_round, samples[name])
    anchor_p50 = statistics.median(samples["anchor"])
    print(f"{per_round * args.rounds} writes per series, {VALUE_BYTES}-byte values")
    for name, values in samples.items():
        p50 = statistics.median(values)
        print(
            f"{name:12s} p50 {1000 * p50:.3f} ms  p99 {_quantile_ms(values, 0.99):.3f} ms"
            f"  p50 / anchor p50 = {p50 / anchor_p50:.2f}"
        )


if __name__ == "__main__":
    main()
