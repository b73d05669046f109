"""``relstorage-paxos``: create a node's data directory, run a node, stop it, show a cluster's
state.

The only module that prints; everything it shows an operator says what is wrong and what to
do about it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import signal
import sys
import textwrap
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from relstorage_paxos import config
from relstorage_paxos.config import NodeSettings
from relstorage_paxos.errors import PaxosError
from relstorage_paxos.transport.sequencer import SequencerClient, StatusView


def _member(text: str) -> tuple[int, str]:
    node_id, sep, address = text.partition("=")
    if not sep or not node_id.isdigit():
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected NODE_ID=HOST:PORT, e.g. 1=10.0.0.1:7101"
        )
    return int(node_id), address


def _example(text: str) -> str:
    return "example:\n  " + text.replace("\n", "\n  ")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="relstorage-paxos", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    init = sub.add_parser(
        "init",
        help="create a node's data directory",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_example(
            "relstorage-paxos init --data-dir /var/lib/zodb/node1 --cluster-id shop"
            " --node-id 1 --history-free \\\n"
            "    --member 1=10.0.0.1:7100 --member 2=10.0.0.2:7100 --member 3=10.0.0.3:7100"
        ),
    )
    init.add_argument("--data-dir", type=Path, required=True)
    init.add_argument("--cluster-id", required=True, help="the same on every node")
    init.add_argument("--node-id", type=int, required=True, help="this node's id among --member")
    init.add_argument(
        "--member",
        type=_member,
        action="append",
        required=True,
        metavar="ID=HOST:PORT",
        help="every member's peer address, this node's too (repeat)",
    )
    mode = init.add_mutually_exclusive_group(required=True)
    mode.add_argument("--keep-history", dest="keep_history", action="store_true")
    mode.add_argument("--history-free", dest="keep_history", action="store_false")
    init.add_argument("--listen", default="", help="bind address for peers (default: own member)")
    init.add_argument("--sequencer-tcp", default="", help="also serve apps on this TCP address")
    init.add_argument(
        "--http-status", default="", help="serve /status and /metrics on this address"
    )
    defaults = {f.name: f.default for f in dataclasses.fields(NodeSettings)}
    init.add_argument("--tick", type=float, default=defaults["tick_s"], metavar="SECONDS")
    init.add_argument(
        "--election-timeout",
        type=float,
        default=defaults["election_timeout_s"],
        metavar="SECONDS",
    )
    init.add_argument(
        "--heartbeat-interval",
        type=float,
        default=defaults["heartbeat_interval_s"],
        metavar="SECONDS",
    )
    init.add_argument(
        "--node-timeout",
        type=float,
        default=defaults["node_timeout_s"],
        metavar="SECONDS",
        help="release the object locks of a node the leader has not heard from for this long",
    )
    init.add_argument(
        "--read-lease",
        type=float,
        default=defaults["read_lease_s"],
        metavar="SECONDS",
        help="linearizable reads from the local replica for this long per grant (0: off)",
    )
    init.add_argument(
        "--max-record-bytes",
        type=int,
        default=defaults["max_record_bytes"],
        metavar="BYTES",
        help="the largest transaction (objects and blobs) a commit may hold; the same on"
        " every node (default: %(default)s, 64 MiB; at most 512 MiB; batch-bytes-max, 4 MiB,"
        " is lowered to it if it is smaller)",
    )

    serve = sub.add_parser(
        "serve",
        help="run a node until SIGTERM",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_example("relstorage-paxos serve --data-dir /var/lib/zodb/node1"),
    )
    serve.add_argument("--data-dir", type=Path, required=True)
    serve.add_argument("--log-level", default="INFO")

    stop = sub.add_parser(
        "stop",
        help="stop the node running on a data directory and wait until it has exited",
        description=textwrap.fill(
            "Send SIGTERM to the node serving --data-dir (the pid its lock file holds) and"
            " wait for it to exit. Exit 0 once it has; 1 if no node runs there or it is still"
            " running after --timeout.",
            88,
        ),
    )
    stop.formatter_class = argparse.RawDescriptionHelpFormatter
    stop.epilog = _example("relstorage-paxos stop --data-dir /var/lib/zodb/node1")
    stop.add_argument("--data-dir", type=Path, required=True)
    stop.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS")

    status = sub.add_parser(
        "status",
        help="show every node of the cluster",
        description=textwrap.fill(
            "Ask every member for its status. Exit 0 whenever the report was made (it says"
            " which nodes did not answer); with --check, exit 1 unless every node answered,"
            " serves, and the replicas at one slot have one hash.",
            88,
        ),
    )
    status.formatter_class = argparse.RawDescriptionHelpFormatter
    status.epilog = _example(
        "relstorage-paxos status --data-dir /var/lib/zodb/node1\n"
        "relstorage-paxos status --check --json --data-dir /var/lib/zodb/node1"
    )
    status.add_argument("--data-dir", type=Path, required=True, help="a local node's data dir")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument("--check", action="store_true", help="exit 1 unless the cluster is well")
    status.add_argument("--timeout", type=float, default=3.0, metavar="SECONDS")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "init":
            return _init(args)
        if args.command == "serve":
            return _serve(args)
        if args.command == "stop":
            return _stop(args)
        return _status(args)
    except PaxosError as exc:
        print(f"relstorage-paxos {args.command}: {exc}", file=sys.stderr)
        return 2


def _init(args: argparse.Namespace) -> int:
    from relstorage_paxos.server import init_data_dir

    members = dict(args.member)
    if len(members) != len(args.member):
        print("relstorage-paxos init: --member: a node id is given twice", file=sys.stderr)
        return 2
    settings = NodeSettings(
        cluster_id=args.cluster_id,
        node_id=args.node_id,
        keep_history=args.keep_history,
        members=members,
        listen=args.listen,
        sequencer_tcp=args.sequencer_tcp,
        http_status=args.http_status,
        tick_s=args.tick,
        election_timeout_s=args.election_timeout,
        heartbeat_interval_s=args.heartbeat_interval,
        node_timeout_s=args.node_timeout,
        read_lease_s=args.read_lease,
        batch_bytes_max=min(config.DEFAULT_BATCH_BYTES_MAX, args.max_record_bytes),
        max_record_bytes=args.max_record_bytes,
    )
    init_data_dir(args.data_dir, settings)
    print(f"initialized node {args.node_id} of cluster {args.cluster_id} in {args.data_dir}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    if not __debug__:
        print(
            "relstorage-paxos serve: refusing to run under python -O: "
            "assertions are part of the node's safety checks",
            file=sys.stderr,
        )
        return 2
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from relstorage_paxos.server import NodeServer

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    node = NodeServer(args.data_dir)
    node.start()
    print(f"node {node.settings.node_id} serving (socket {node.socket_path})", flush=True)
    while not stop.wait(0.5):
        if node.runtime.failure is not None:
            print(f"node stopped: {node.runtime.failure}", file=sys.stderr)
            node.stop()
            return 1
    print(f"node {node.settings.node_id} stopping", flush=True)
    node.stop()
    print(f"node {node.settings.node_id} stopped", flush=True)
    return 0


def _status(args: argparse.Namespace) -> int:
    settings = config.load(args.data_dir)
    views: list[StatusView | str] = []
    for node_id, address in sorted(settings.members.items()):
        target = (
            f"unix:{args.data_dir / config.SOCKET_FILE}" if node_id == settings.node_id else address
        )
        client = SequencerClient(target, settings.cluster_id)
        try:
            views.append(client.status(timeout_s=args.timeout))
        except PaxosError as exc:
            views.append(f"node {node_id} ({address}): unreachable: {exc}")
        finally:
            client.close()
    if args.json:
        print(json.dumps([_json(v) for v in views], indent=2))
    else:
        print(_table(views))
    return 1 if args.check and not _healthy(views) else 0


def _healthy(views: Sequence[StatusView | str]) -> bool:
    """Every node answered and serves, and the replicas at one slot have one hash."""
    reachable = [v for v in views if isinstance(v, StatusView)]
    if len(reachable) < len(views) or not all(v.serving for v in reachable):
        return False
    hashes: dict[int, set[bytes]] = {}
    for v in reachable:
        hashes.setdefault(v.applied_slot, set()).add(v.running_hash)
    return all(len(h) == 1 for h in hashes.values())


def _stop(args: argparse.Namespace) -> int:
    from relstorage_paxos.server import running_node_pid

    pid = running_node_pid(args.data_dir)
    if pid is None:
        print(f"relstorage-paxos stop: no node is running on {args.data_dir}", file=sys.stderr)
        return 1
    started = time.monotonic()
    os.kill(pid, signal.SIGTERM)
    # The node lets go of its lock before its interpreter has finished exiting.
    while running_node_pid(args.data_dir) is not None or not _exited(pid):
        if time.monotonic() - started > args.timeout:
            print(
                f"relstorage-paxos stop: the node (pid {pid}) is still running after"
                f" {args.timeout:g} s",
                file=sys.stderr,
            )
            return 1
        time.sleep(0.05)
    print(f"node on {args.data_dir} (pid {pid}) stopped in {time.monotonic() - started:.1f} s")
    return 0


def _exited(pid: int) -> bool:
    """The process is gone, or a zombie its parent has not reaped yet."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def _heard(view: StatusView) -> str:
    """Which peers this node hears from: ``2 3`` or ``2 3(silent 12s)``."""
    parts = []
    for peer in view.peers:
        if peer.reachable:
            parts.append(str(peer.node_id))
        elif peer.last_heard_ms_ago is None:
            parts.append(f"{peer.node_id}(never)")
        else:
            parts.append(f"{peer.node_id}(silent {peer.last_heard_ms_ago // 1000}s)")
    return " ".join(parts) or "-"


def _json(view: StatusView | str) -> dict[str, object]:
    return {"error": view} if isinstance(view, str) else view.to_json()


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f}M"


def _table(views: Sequence[StatusView | str]) -> str:
    reachable = [v for v in views if isinstance(v, StatusView)]
    top = max((v.chosen_slot for v in reachable), default=0)
    header = (
        "node",
        "role",
        "leader",
        "ballot",
        "chosen",
        "applied",
        "lag",
        "last tid",
        "replica hash",
        "uptime",
        "pid",
        "data (wal)",
        "disk free",
        "hears",
    )
    rows = [header]
    errors = []
    for v in views:
        if isinstance(v, str):
            errors.append(v)
            continue
        rows.append(
            (
                str(v.node_id),
                v.role if v.serving else f"{v.role} (NOT SERVING: {v.not_serving_reason})",
                "-" if v.leader_id is None else str(v.leader_id),
                v.ballot,
                str(v.chosen_slot),
                str(v.applied_slot),
                str(top - v.applied_slot),
                f"{v.last_tid:016x}",
                v.running_hash.hex()[:16],
                f"{v.uptime_s:.0f}s",
                str(v.pid),
                f"{_mib(v.data_dir_bytes)} ({_mib(v.wal_bytes)})",
                _mib(v.disk_free_bytes),
                _heard(v),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows
    ]
    hashes = {(v.applied_slot, v.running_hash) for v in reachable}
    slots = {v.applied_slot for v in reachable}
    if len(reachable) < len(views):
        lines.append(f"only {len(reachable)} of {len(views)} nodes answered:")
    elif len(slots) == 1 and len(hashes) == 1:
        lines.append("replicas agree: same applied slot, same running hash")
    elif len(slots) == 1:
        lines.append(
            "REPLICAS DIVERGED: same applied slot, different running hashes; stop the node "
            "that differs from the majority and rebuild its data directory from a snapshot"
        )
    lines.extend(errors)
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
