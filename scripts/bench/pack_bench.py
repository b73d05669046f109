#!/usr/bin/env python3
"""Pack of a history-preserving database of ~10k objects: end-to-end time through node 1 of
a 3-node cluster (planning and proposing apart), and the longest single slot apply on any
node while it runs; stock RelStorage+SQLite packing the same data is the anchor.

    .venv/bin/python scripts/bench/pack_bench.py [--objects N] [--revisions N] [--garbage F]
        [--nodes 1|3]

The nodes run in this process (so every apply can be timed); they share its GIL with the
packing client and each other, which makes the apply times an upper bound of what separate
node processes see (``--nodes 1`` shows the apply with the least contention). Data:
``--objects`` items in an OOBTree, each written ``--revisions`` times (1000 items per
transaction), then a fraction ``--garbage`` of them unlinked.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ZODB
import ZODB.config
from BTrees.OOBTree import OOBTree

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from relstorage_paxos.adapter import pack as paxos_pack
from relstorage_paxos.replica import PackObjects, PackTransactions, Replica, decode_record
from tests.adapter.support import Item, open_db
from tests.conformance.paxos_support import InProcessCluster

STOCK = """
%import relstorage
<zodb>
  <relstorage>
    keep-history true
    <sqlite3>
      data-dir {path}
    </sqlite3>
  </relstorage>
</zodb>
"""


def populate(db: ZODB.DB, objects: int, revisions: int, garbage: float) -> None:
    with db.transaction() as conn:
        conn.root()["tree"] = OOBTree()
    for revision in range(revisions):
        for start in range(0, objects, 1000):
            with db.transaction() as conn:
                tree = conn.root()["tree"]
                for i in range(start, min(objects, start + 1000)):
                    if revision == 0:
                        tree[i] = Item(0)
                    else:
                        tree[i].value = revision
    with db.transaction() as conn:
        tree = conn.root()["tree"]
        for i in range(0, objects, max(1, round(1 / garbage))):
            del tree[i]


class ApplyTimer:
    """Times every ``Replica.apply_slot`` in this process, with the record kinds."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float, str]] = []
        """(start, seconds, record kinds) per slot; WAL checkpoints run on a thread of their
        own, so a slot's time includes only a wait for one, now and then."""
        self._original = Replica.apply_slot

    def __enter__(self) -> ApplyTimer:
        apply_slot = self._original
        samples = self.samples

        def timed(replica: Replica, slot: int, proposals: Any) -> Any:
            proposals = list(proposals)
            started = time.perf_counter()
            try:
                return apply_slot(replica, slot, proposals)
            finally:
                seconds = time.perf_counter() - started
                kinds = [describe(payload) for _, payload in proposals]
                samples.append((started, seconds, ",".join(kinds)))

        Replica.apply_slot = timed  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        Replica.apply_slot = self._original  # type: ignore[method-assign]


def describe(payload: bytes) -> str:
    """A record's kind, and its size for pack records."""
    body = decode_record(payload).body
    if isinstance(body, PackObjects):
        return f"PackObjects({len(body.pruned)} pruned, {len(body.removed)} removed)"
    if isinstance(body, PackTransactions):
        return "PackTransactions"
    return type(body).__name__


def timed(owner: Any, name: str, into: dict[str, float]) -> Callable[[], None]:
    """Wrap ``owner.name`` to add its run time to ``into[name]``; returns the undo."""
    original = getattr(owner, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            into[name] = into.get(name, 0.0) + time.perf_counter() - started

    setattr(owner, name, wrapper)
    return lambda: setattr(owner, name, original)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--objects", type=int, default=10_000)
    parser.add_argument("--revisions", type=int, default=3)
    parser.add_argument("--garbage", type=float, default=0.1)
    parser.add_argument("--nodes", type=int, choices=(1, 3), default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(dir="/tmp") as root:
        stock = ZODB.config.databaseFromString(STOCK.format(path=Path(root) / "stock"))
        populate(stock, args.objects, args.revisions, args.garbage)
        started = time.perf_counter()
        stock.pack()
        stock_s = time.perf_counter() - started
        stock.close()

        cluster = InProcessCluster(
            Path(root) / "c", args.nodes, keep_history=True, cluster_id="bench"
        )
        try:
            db = open_db(cluster.data_dirs[1], keep_history=True)
            populate(db, args.objects, args.revisions, args.garbage)
            phases: dict[str, float] = {}
            undo = [
                timed(paxos_pack.PaxosPackMixin, "pre_pack", phases),
                timed(paxos_pack.PackProposer, "run", phases),
            ]
            with ApplyTimer() as applies:
                started = time.perf_counter()
                db.pack()
                ended = time.perf_counter()
            for step in undo:
                step()
            db.close()
        finally:
            cluster.stop()
    during = [s for s in applies.samples if started <= s[0] <= ended]
    pack_slots = [s for s in during if "Pack" in s[2]]
    longest = max(during, key=lambda s: s[1])
    print(
        f"data: {args.objects} objects x {args.revisions} revisions, "
        f"{args.garbage:.0%} unlinked; history-preserving"
    )
    print(f"stock RelStorage+SQLite pack: {stock_s:.2f} s")
    print(
        f"relstorage_paxos pack, {args.nodes} in-process nodes: {ended - started:.2f} s end to end"
        f" (plan {phases.get('pre_pack', 0):.2f} s, propose and apply"
        f" {phases.get('run', 0):.2f} s)"
    )
    print(
        f"slots applied during the pack: {len(during)} on {args.nodes} nodes,"
        f" {len(pack_slots)} with pack records; longest apply {longest[1] * 1000:.1f} ms"
        f" ({longest[2]})"
    )
    ordered = sorted(pack_slots, key=lambda s: s[1])
    median = ordered[len(ordered) // 2]
    print(f"median pack-record apply: {median[1] * 1000:.1f} ms")
    for sample in ordered[-3:]:
        print(f"  {sample[1] * 1000:.1f} ms: {sample[2]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
