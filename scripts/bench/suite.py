#!/usr/bin/env python3
"""One command that measures relstorage_paxos side by side with its anchors, in one run.

    .venv/bin/python scripts/bench/suite.py [--quick] [--out DIR] [--only a,b,...]

Systems: a 3-node cluster of real ``relstorage-paxos serve`` processes (clients on the
leader's node and on a follower's node), the embedded 1-node mode, and the anchors stock
RelStorage+SQLite, FileStorage and ZEO (``runzeo`` on 127.0.0.1, FileStorage behind it); all
history-free. Workloads a-i (see ``benchsuite/workloads.py``): 1-object commit latency,
throughput with 1/4/8 writers (disjoint and 10 % overlapping objects), a bank, zodbshootout-
style add/update/warm/cold/hot, uncached loads under writes, a read-only transaction, a WSGI
request, leader failover, and the write stall when a read-lease holder dies. Every workload
interleaves its systems within each round and reports medians over rounds.

Writes ``results.json``, ``results.md`` (a table per workload, ratios against the anchors of
the same run) and PNG plots to ``--out`` (default ``./bench-results/<timestamp>/``), and
prints the Markdown. ``--quick`` makes every workload tiny (the smoke test). Every process
and temporary directory it makes is removed at the end, on failure and on Ctrl-C too.
``--with-postgres`` adds stock RelStorage+PostgreSQL as a fourth anchor; etcd is not included.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parents[1])]

from benchsuite import report, workloads  # noqa: E402
from benchsuite.systems import Lab  # noqa: E402
from benchsuite.workers import Pool  # noqa: E402

WORKLOADS = {
    "a": "a_commit_latency",
    "b": "b_throughput",
    "c": "c_bank",
    "d": "d_shootout",
    "e": "e_uncached_load",
    "f": "f_read_only_txn",
    "g": "g_wsgi_request",
    "h": "h_failover",
    "i": "i_lease_holder_death",
    "j": "j_lock_holder_death",
}
LEFT_OUT = (
    "etcd; PostgreSQL unless --with-postgres (perf-anchors.md has figures of both from an "
    "earlier run on this machine kind); FileStorage and the embedded node in e (no second "
    "process can open them)."
)


def run(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    sizes = workloads.Sizes.quick() if args.quick else workloads.Sizes.full()
    chosen = [WORKLOADS[k] for k in args.only.split(",")] if args.only else list(WORKLOADS.values())
    started = time.monotonic()
    results: dict[str, Any] = {
        "meta": {
            "started": datetime.datetime.now().isoformat(timespec="seconds"),
            "machine": f"{platform.node()} ({os.cpu_count()} CPUs, "
            f"Python {platform.python_version()})",
            "mode": "quick" if args.quick else "full",
            "rounds": sizes.rounds,
            "sizes": sizes.__dict__,
            "left_out": LEFT_OUT,
        },
        "workloads": {},
    }
    pool = Pool(max(sizes.writers))
    try:
        with Lab(with_postgres=args.with_postgres) as lab:
            results["meta"]["lab"] = lab.describe()
            systems = lab.systems()
            steps = {
                "a_commit_latency": lambda: workloads.commit_latency(systems, sizes),
                "b_throughput": lambda: workloads.throughput(systems, pool, sizes),
                "c_bank": lambda: workloads.bank(systems, pool, sizes),
                "d_shootout": lambda: workloads.shootout(systems, sizes),
                "e_uncached_load": lambda: workloads.uncached_loads(
                    systems, pool, sizes, str(lab.root)
                ),
                "f_read_only_txn": lambda: workloads.read_only(systems, sizes),
                "g_wsgi_request": lambda: workloads.wsgi(systems, sizes),
                "h_failover": lambda: workloads.failover(lab.cluster, sizes),
                "i_lease_holder_death": lambda: workloads.lease_holder_death(lab.cluster, sizes),
                "j_lock_holder_death": lambda: workloads.lock_holder_death(lab.cluster, sizes),
            }
            for key in chosen:
                began = time.monotonic()
                print(f"[suite] {key} ...", file=sys.stderr, flush=True)
                results["workloads"][key] = steps[key]()
                print(
                    f"[suite] {key} done in {time.monotonic() - began:.1f} s",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        pool.close()
    results["meta"]["duration_s"] = time.monotonic() - started
    return results


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--out", type=Path, help="output directory")
    parser.add_argument("--only", help="comma-separated workload letters, e.g. a,f")
    parser.add_argument(
        "--with-postgres",
        action="store_true",
        help="add stock RelStorage+PostgreSQL as an anchor (apt-get installs postgresql and "
        "pip installs psycopg2-binary if missing; a cluster of its own on 127.0.0.1)",
    )
    parser.add_argument(
        "--report-only",
        type=Path,
        metavar="DIR",
        help="measure nothing: write results.md and the PNGs again from DIR/results.json",
    )
    args = parser.parse_args()
    if args.report_only:
        results = json.loads((args.report_only / "results.json").read_text())
        (args.report_only / "results.md").write_text(report.markdown(results))
        report.plots(results, args.report_only)
        print(report.markdown(results))
        return 0
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.out or Path("bench-results") / stamp
    out.mkdir(parents=True, exist_ok=True)
    # The embedded node and the databases log warnings in this process (a WAL that an idle
    # connection's read transaction keeps from being checkpointed, pool sizes): to a file.
    logging.basicConfig(
        level=logging.WARNING,
        filename=str(out / "suite.log"),
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    results = run(args, out)
    report.write_json(out / "results.json", results)
    text = report.markdown(results)
    (out / "results.md").write_text(text)
    pngs = report.plots(results, out)
    print(text)
    print(f"[suite] wrote {out / 'results.json'}, {out / 'results.md'} and {len(pngs)} PNGs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
