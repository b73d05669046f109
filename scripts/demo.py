#!/usr/bin/env python3
"""A bank on a live relstorage_paxos cluster: run it with ``./scripts/demo``.

    ./scripts/demo [--dir DIR] [--nodes 3] [--seconds 20] [--kill leader] [--keep]

Initializes an N-node cluster in DIR (default ``demo-cluster/`` at the repository root; a
directory that is not empty and was not made by this demo is refused; an earlier demo
directory is wiped, after stopping the nodes a ``--keep`` run left running), starts one
``relstorage-paxos serve`` per node on 127.0.0.1, and runs an application against every node
at once: one app process per node, connected through the ``<paxos>`` ZConfig section (the
node is a separate process), whose writer threads make random transfers between accounts of
an OOBTree inside ``transaction.manager.attempts()`` loops and whose reader thread sums every
balance in read transactions, checking each sum against the invariant total. Each writer
keeps a ledger of the transfers it applied (see TransferThread), so that none is applied
twice even when ``commit()`` raises after committing.

At 30% of the workload it kills -9 the leader (``--kill``) and restarts it a second or more
later. Failover: the app process of the killed node stays up and sticks to its own node; a
transaction already in vote or finish waits inside the adapter (which re-sends with the same
request id until the node answers again); any other error sends its thread back to its node:
it closes its ZODB.DB, waits until the node serves again, reopens the DB and retries the same
transfer. The workload runs past ``--seconds`` (up to RESUME_GRACE_S) until that app commits
again. At the end every replica must show the same applied slot and running hash
(``relstorage-paxos status --json``) and, read through each node, the same invariant total.

Exit status 0 only if every check passed. Stops only the processes it started, by PID.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import itertools
import json
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import transaction
import ZODB
import ZODB.config
from BTrees.Length import Length
from BTrees.OOBTree import OOBTree
from persistent.mapping import PersistentMapping
from relstorage.adapters.interfaces import UnableToAcquireLockError
from ZODB.POSException import ConflictError

from relstorage_paxos.config import NodeSettings
from relstorage_paxos.errors import PaxosError
from relstorage_paxos.transport.sequencer import SequencerClient, StatusView

logger = logging.getLogger("demo")
ROOT = Path(__file__).resolve().parent.parent
MARKER = ".relstorage-paxos-demo"
STATE_FILE = "demo.json"
CLUSTER_ID = "demo"
INITIAL_BALANCE = 1000
ATTEMPTS = 10
REPORT_INTERVAL_S = 0.5
"""How often an app process sends its counters to the demo."""
RESUME_GRACE_S = 30.0
"""How long the workload may run past --seconds for the restarted node's app to commit."""


def zconfig(data_dir: Path, consistency: str = "linearizable") -> str:
    return f"""%import relstorage_paxos
<zodb>
  <relstorage>
    keep-history false
    <paxos>
      data-dir {data_dir}
      consistency {consistency}
    </paxos>
  </relstorage>
</zodb>
"""


def open_db(data_dir: Path) -> ZODB.DB:
    return ZODB.config.databaseFromString(zconfig(data_dir))


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ms(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{percentile(values, 0.5) * 1000:.1f}/{percentile(values, 0.99) * 1000:.1f} ms"


# ===================================================================== app process (worker)


class WorkerStats:
    """Counters of one app process, sent to the demo every REPORT_INTERVAL_S."""

    def __init__(self, node_id: int) -> None:
        self.node_id = node_id
        self.lock = threading.Lock()
        self.counts = {
            "commits": 0,
            "reads": 0,
            "conflicts": 0,  # ConflictError reached attempts() and was retried
            "lock_timeouts": 0,  # object locks not granted in time, retried
            "unavailable": 0,  # other transient errors (node unreachable, outcome unknown)
            "reconnects": 0,
            "ghosts": 0,  # a commit raised, yet it had been applied (found by the ledger)
            "pending": 0,  # transfers a writer had not seen acknowledged when it stopped
            "violations": 0,
            "ledger_errors": 0,
        }
        self.commits: list[tuple[float, float]] = []  # (monotonic end, seconds)
        self.reads: list[tuple[float, float]] = []
        self.problems: list[str] = []
        self.errors: list[str] = []

    def add(self, key: str, n: int = 1) -> None:
        with self.lock:
            self.counts[key] += n

    def retried(self, error: BaseException) -> None:
        if isinstance(error, UnableToAcquireLockError):
            self.add("lock_timeouts")
        elif isinstance(error, ConflictError):
            self.add("conflicts")
        else:
            self.add("unavailable")

    def committed(self, end: float, seconds: float) -> None:
        with self.lock:
            self.counts["commits"] += 1
            self.commits.append((end, seconds))

    def read(self, end: float, seconds: float, total: int, count: int, expected: int) -> None:
        with self.lock:
            self.counts["reads"] += 1
            self.reads.append((end, seconds))
            if total != expected:
                self.counts["violations"] += 1
                if len(self.problems) < 5:
                    self.problems.append(
                        f"node {self.node_id}: a read transaction summed {total} over {count}"
                        f" accounts, expected {expected}"
                    )

    def problem(self, text: str) -> None:
        with self.lock:
            self.counts["ledger_errors"] += 1
            if len(self.problems) < 5:
                self.problems.append(f"node {self.node_id}: {text}")

    def error(self, where: str, exc: BaseException) -> None:
        with self.lock:
            self.errors.append(f"{where}: {type(exc).__name__}: {exc}"[:300])

    def drain(self) -> dict[str, Any]:
        with self.lock:
            report: dict[str, Any] = {
                "node": self.node_id,
                **self.counts,
                "commit_samples": self.commits,
                "read_samples": self.reads,
                "problems": self.problems,
                "errors": self.errors,
            }
            self.commits, self.reads, self.problems, self.errors = [], [], [], []
        return report


class CountingTransactionManager(transaction.TransactionManager):  # type: ignore[misc]
    """Counts, by kind, the errors that ``attempts()`` retries."""

    def __init__(self, stats: WorkerStats) -> None:
        super().__init__()
        self._stats = stats

    def _retryable(self, error_type: type[BaseException], error: BaseException) -> bool:
        retry = bool(super()._retryable(error_type, error))
        if retry:
            self._stats.retried(error)
            if not isinstance(error, ConflictError):
                logger.warning("retrying after %s: %s", error_type.__name__, error)
        return retry


class AppThread(threading.Thread):
    """One application thread with its own ZODB.DB on its node; ``step`` is one
    transaction. Any error that escapes it sends the thread back to its node: close the
    DB, wait until the node serves, reopen (see the module docstring)."""

    def __init__(
        self, name: str, data_dir: Path, stats: WorkerStats, stop: threading.Event
    ) -> None:
        super().__init__(name=name, daemon=True)
        self.data_dir = data_dir
        self.stats = stats
        self.stop = stop
        self.tm = CountingTransactionManager(stats)
        self.db: ZODB.DB | None = None
        self.conn: Any = None
        self.ready = threading.Event()
        self.health = SequencerClient(f"unix:{data_dir / 'sequencer.sock'}", CLUSTER_ID)

    def run(self) -> None:
        self.connect()
        self.ready.set()
        while not self.stop.is_set():
            try:
                self.step()
            except Exception as exc:
                self.stats.error(self.name, exc)
                logger.warning("%s: reconnecting after", self.name, exc_info=True)
                self.disconnect()
                self.connect()
                self.stats.add("reconnects")
        self.disconnect()
        self.health.close()

    def step(self) -> None:
        raise NotImplementedError

    def connect(self) -> None:
        while not self.stop.is_set():
            if self.node_serving():
                try:
                    self.db = open_db(self.data_dir)
                    self.conn = self.db.open(self.tm)
                    return
                except Exception as exc:
                    self.stats.error(f"{self.name} (opening the database)", exc)
                    self.disconnect()
            self.stop.wait(0.2)

    def node_serving(self) -> bool:
        try:
            view = self.health.status(timeout_s=1.0)
        except PaxosError:
            return False
        return view.serving and view.leader_id is not None

    def disconnect(self) -> None:
        for close in (self.tm.abort, getattr(self.conn, "close", None), self.db_close):
            if close is not None:
                with suppress(Exception):
                    close()
        self.conn = None
        self.db = None

    def db_close(self) -> None:
        if self.db is not None:
            self.db.close()


class TransferThread(AppThread):
    """Transfers between random accounts, each exactly once: the writer numbers its
    transfers and keeps the number of the last one applied in its own ledger (a Length only
    it writes, so never a conflict), updated in the transfer's transaction. An attempt that
    finds its number already in the ledger knows that an earlier attempt, or the attempt
    before a reconnect, committed even though ``commit()`` raised: it counts a ghost and
    applies nothing. The same transfer is retried until acknowledged."""

    def __init__(self, *args: Any, ledger: str, accounts: int, seed: int) -> None:
        super().__init__(*args)
        self.ledger = ledger
        self.accounts = accounts
        self.rng = random.Random(seed)
        self.done = 0  # the last transfer number acknowledged (ledgers start at 0)
        self.pending: tuple[int, int, int, int, float] | None = None

    def step(self) -> None:
        if self.pending is None:
            a, b = self.rng.sample(range(self.accounts), 2)
            self.pending = (self.done + 1, a, b, self.rng.randint(1, 100), time.monotonic())
        number, a, b, amount, started = self.pending
        ghost = False
        for attempt in self.tm.attempts(ATTEMPTS):
            with attempt:
                root = self.conn.root()
                ledger = root["ledgers"][self.ledger]
                applied = ledger()
                ghost = applied == number
                if not ghost:
                    if applied != number - 1:
                        self.stats.problem(
                            f"{self.name}: ledger at {applied} before transfer {number}"
                        )
                    balances = root["accounts"]
                    moved = min(amount, balances[a])
                    balances[a] -= moved
                    balances[b] += moved
                    ledger.change(1)
        end = time.monotonic()
        self.done, self.pending = number, None
        if ghost:
            self.stats.add("ghosts")
        self.stats.committed(end, end - started)

    def disconnect(self) -> None:
        super().disconnect()
        if self.stop.is_set():
            self.stats.add("pending", int(self.pending is not None))
            self.pending = None


class ReadThread(AppThread):
    def __init__(self, *args: Any, accounts: int) -> None:
        super().__init__(*args)
        self.expected = accounts * INITIAL_BALANCE

    def step(self) -> None:
        started = time.monotonic()
        self.tm.begin()
        balances = self.conn.root()["accounts"]
        total = sum(balances.values())
        count = len(balances)
        self.tm.abort()
        end = time.monotonic()
        self.stats.read(end, end - started, total, count, self.expected)


def worker_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="demo.py _worker")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--node-id", type=int, required=True)
    parser.add_argument("--writers", type=int, required=True)
    parser.add_argument("--accounts", type=int, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    stats = WorkerStats(args.node_id)
    stop = threading.Event()

    def wait_for_stop() -> None:  # "stop" or EOF on stdin (the demo went away)
        for line in sys.stdin:
            if line.strip() == "stop":
                break
        stop.set()

    threading.Thread(target=wait_for_stop, daemon=True).start()
    common = (args.data_dir, stats, stop)
    threads: list[AppThread] = [
        TransferThread(
            f"writer-{args.node_id}.{i}",
            *common,
            ledger=f"n{args.node_id}w{i}",
            accounts=args.accounts,
            seed=args.node_id * 1000 + i,
        )
        for i in range(args.writers)
    ]
    threads.append(ReadThread(f"reader-{args.node_id}", *common, accounts=args.accounts))
    for t in threads:
        t.start()
    for t in threads:
        while not (t.ready.wait(0.1) or stop.is_set()):
            pass
    print(json.dumps({**stats.drain(), "ready": True}), flush=True)
    while not stop.wait(REPORT_INTERVAL_S):
        print(json.dumps(stats.drain()), flush=True)
    deadline = time.monotonic() + 60
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    final = stats.drain()
    final["final"] = True
    final["stuck"] = [t.name for t in threads if t.is_alive()]
    print(json.dumps(final), flush=True)
    return 0


# ============================================================================ the demo


class DemoFailure(Exception):
    pass


def free_ports(count: int) -> list[int]:
    sockets = []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def cli() -> str:
    return str(Path(sys.executable).parent / "relstorage-paxos")


def timing_flags() -> list[str]:
    """The node's default timings, given explicitly: ``relstorage-paxos init`` takes its
    defaults from ``NodeSettings`` class attributes, which ``slots=True`` turns into member
    descriptors, so an ``init`` without these flags fails."""
    defaults = {f.name: f.default for f in dataclasses.fields(NodeSettings)}
    return [
        "--tick",
        str(defaults["tick_s"]),
        "--election-timeout",
        str(defaults["election_timeout_s"]),
        "--heartbeat-interval",
        str(defaults["heartbeat_interval_s"]),
    ]


def pid_runs(pid: int, needle: str) -> bool:
    """``pid`` is alive and its command line mentions ``needle`` (a data directory)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return False
    return needle.encode() in cmdline


def wait_pid_gone(pid: int, needle: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not pid_runs(pid, needle):
            return True
        time.sleep(0.1)
    return False


def prepare_dir(path: Path) -> None:
    """Make ``path`` an empty demo directory; refuse anything not made by this demo."""
    if path.exists() and not path.is_dir():
        raise DemoFailure(f"{path} exists and is not a directory; choose another --dir")
    if path.is_dir() and any(path.iterdir()):
        if not (path / MARKER).is_file():
            raise DemoFailure(
                f"{path} is not empty and was not made by this demo (no {MARKER} in it);"
                " refusing to touch it: choose another --dir"
            )
        stop_previous(path)
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / MARKER).write_text("made by scripts/demo; the next run wipes this directory\n")


def stop_previous(path: Path) -> None:
    """Stop the nodes a previous ``--keep`` run left running in ``path`` (their PIDs are in
    its state file; a PID is signalled only if it still runs a node of that directory)."""
    with suppress(OSError, ValueError):
        state = json.loads((path / STATE_FILE).read_text())
        for pid, data_dir in state.get("nodes", {}).values():
            if pid_runs(pid, data_dir):
                print(f"stopping node pid {pid} left running by a previous demo in {path}")
                os.kill(pid, signal.SIGTERM)
                if not wait_pid_gone(pid, data_dir, 20):
                    os.kill(pid, signal.SIGKILL)
                    wait_pid_gone(pid, data_dir, 10)


@dataclass
class Node:
    node_id: int
    data_dir: Path
    address: str
    process: subprocess.Popen[bytes] | None = None
    client: SequencerClient | None = None
    exit_codes: list[int] = field(default_factory=list)

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / f"node{self.node_id}.log"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, env: dict[str, str]) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [cli(), "serve", "--data-dir", str(self.data_dir)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,  # Ctrl-C reaches the demo only; it stops the nodes
            )
        self.client = SequencerClient(f"unix:{self.data_dir / 'sequencer.sock'}", CLUSTER_ID)

    def status(self, timeout_s: float = 0.5) -> StatusView | None:
        if self.client is None or not self.running:
            return None
        try:
            return self.client.status(timeout_s=timeout_s)
        except PaxosError:
            return None

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        self.exit_codes.append(self.process.returncode)
        self._close_client()

    def terminate(self) -> bool:
        """SIGTERM if running; whether it was."""
        if self.process is None or self.process.poll() is not None:
            self._close_client()
            return False
        self.process.send_signal(signal.SIGTERM)
        return True

    def wait_stopped(self, deadline: float) -> int:
        """Wait for a terminated node until ``deadline``, then SIGABRT (PYTHONFAULTHANDLER:
        every thread's stack goes to the node's log), then SIGKILL; the exit code."""
        assert self.process is not None
        try:
            code = self.process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGABRT)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
            code = self.process.wait(10)
        self._close_client()
        self.exit_codes.append(code)
        return code

    def _close_client(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None


@dataclass
class App:
    """One app process and what it reported."""

    node_id: int
    process: subprocess.Popen[str]
    log_path: Path
    latest: dict[str, Any] = field(default_factory=dict)
    final: dict[str, Any] | None = None
    ready: bool = False
    reader: threading.Thread | None = None


class Demo:
    def __init__(self, args: argparse.Namespace, root: Path) -> None:
        self.args = args
        self.root = root
        self.env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "TMPDIR": str(root / "tmp"),
            "PYTHONFAULTHANDLER": "1",
        }
        self.nodes: dict[int, Node] = {}
        self.apps: dict[int, App] = {}
        self.lock = threading.Lock()
        self.commit_samples: list[tuple[float, float, int]] = []  # (end, seconds, node)
        self.read_samples: list[tuple[float, float, int]] = []
        self.problems: list[str] = []
        self.errors: list[str] = []
        self.failures: list[str] = []
        self.events: dict[str, float] = {}
        self.victim: Node | None = None
        self.victim_role = ""
        self.new_leader: int | None = None
        self.catch_up_target = 0
        self.total = args.accounts * INITIAL_BALANCE
        self.t0 = time.monotonic()

    # -------------------------------------------------------------------------- helpers

    def say(self, text: str) -> None:
        print(text, flush=True)

    def event(self, name: str, text: str, at: float | None = None) -> None:
        at = time.monotonic() if at is None else at
        self.events[name] = at
        self.say(f"  >> {at - self.t0:5.1f}s  {text}")

    def statuses(self) -> dict[int, StatusView | None]:
        return {n.node_id: n.status() for n in self.nodes.values()}

    def wait(self, what: str, check: Callable[[], bool], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not check():
            if time.monotonic() > deadline:
                raise DemoFailure(f"timed out after {timeout_s:.0f} s waiting for {what}")
            time.sleep(0.05)

    def save_state(self) -> None:
        state = {
            "nodes": {
                str(n.node_id): [n.process.pid, str(n.data_dir)]
                for n in self.nodes.values()
                if n.process is not None and n.running
            }
        }
        (self.root / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")

    # ---------------------------------------------------------------------------- steps

    def init_cluster(self) -> None:
        (self.root / "tmp").mkdir(exist_ok=True)
        ports = free_ports(self.args.nodes)
        members = {i + 1: f"127.0.0.1:{p}" for i, p in enumerate(ports)}
        inits = []
        for node_id, address in members.items():
            data_dir = self.root / f"node{node_id}"
            self.nodes[node_id] = Node(node_id, data_dir, address)
            argv = [cli(), "init", "--data-dir", str(data_dir), "--cluster-id", CLUSTER_ID]
            argv += ["--node-id", str(node_id), "--history-free", *timing_flags()]
            for other, other_address in members.items():
                argv += ["--member", f"{other}={other_address}"]
            inits.append(
                subprocess.Popen(
                    argv, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
                )
            )
        for node_id, proc in zip(members, inits, strict=True):
            out, _ = proc.communicate(timeout=60)
            if proc.returncode != 0:
                raise DemoFailure(f"relstorage-paxos init of node {node_id} failed: {out!r}")
        self.say(
            f"initialized {len(members)} nodes of cluster {CLUSTER_ID!r} in {self.root}"
            f" (peers on {', '.join(members.values())})"
        )

    def start_nodes(self) -> None:
        for node in self.nodes.values():
            node.start(self.env)
        self.save_state()
        started = time.monotonic()

        def ready() -> bool:
            for node in self.nodes.values():
                if not node.running:
                    raise DemoFailure(f"node {node.node_id} exited at start-up")
            views = self.statuses().values()
            return all(v is not None and v.leader_id is not None for v in views)

        self.wait("every node to serve and know a leader", ready, 60)
        leader = next(v.leader_id for v in self.statuses().values() if v is not None)
        pids = ", ".join(f"node {n.node_id} pid {n.process.pid}" for n in self.nodes.values())  # type: ignore[union-attr]
        self.say(
            f"{len(self.nodes)} nodes serving after {time.monotonic() - started:.1f} s,"
            f" leader node {leader} ({pids})"
        )

    def create_bank(self) -> None:
        db = open_db(self.nodes[1].data_dir)
        try:
            with db.transaction() as conn:
                root = conn.root()
                root["accounts"] = OOBTree({i: INITIAL_BALANCE for i in range(self.args.accounts)})
                root["ledgers"] = PersistentMapping(
                    {f"n{n}w{w}": Length() for n in self.nodes for w in range(self.args.writers)}
                )
        finally:
            db.close()
        self.say(
            f"bank created through node 1: {self.args.accounts} accounts x {INITIAL_BALANCE}"
            f" = {self.total} in an OOBTree"
        )

    def start_apps(self) -> None:
        for node in self.nodes.values():
            log_path = self.root / f"app{node.node_id}.log"
            with log_path.open("a") as log:
                process = subprocess.Popen(
                    [
                        sys.executable,
                        str(Path(__file__).resolve()),
                        "_worker",
                        "--data-dir",
                        str(node.data_dir),
                        "--node-id",
                        str(node.node_id),
                        "--writers",
                        str(self.args.writers),
                        "--accounts",
                        str(self.args.accounts),
                    ],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=log,
                    text=True,
                    env=self.env,
                    start_new_session=True,
                )
            app = App(node.node_id, process, log_path)
            assert process.stdout is not None
            app.reader = threading.Thread(
                target=self._read_app, args=(app, process.stdout), daemon=True
            )
            app.reader.start()
            self.apps[node.node_id] = app

        def ready() -> bool:
            for app in self.apps.values():
                if app.process.poll() is not None:
                    raise DemoFailure(f"app of node {app.node_id} exited; see {app.log_path}")
            return all(app.ready for app in self.apps.values())

        self.wait("the app processes to connect", ready, 60)
        self.say(
            f"app processes started, one per node through its <paxos> section"
            f" (consistency linearizable): {self.args.writers} transfer threads + 1 reader"
            " thread each"
        )

    def _read_app(self, app: App, stream: TextIO) -> None:
        for line in stream:
            try:
                report = json.loads(line)
            except ValueError:
                continue
            with self.lock:
                node = app.node_id
                self.commit_samples += [(e, s, node) for e, s in report.pop("commit_samples")]
                self.read_samples += [(e, s, node) for e, s in report.pop("read_samples")]
                self.problems += report.pop("problems")
                self.errors += [f"app {node}: {e}" for e in report.pop("errors")]
                app.latest = report
                app.ready = app.ready or bool(report.get("ready"))
                if report.get("final"):
                    app.final = report

    def totals(self) -> dict[str, int]:
        keys = (
            "commits",
            "reads",
            "conflicts",
            "lock_timeouts",
            "unavailable",
            "reconnects",
            "ghosts",
            "pending",
            "violations",
            "ledger_errors",
        )
        with self.lock:
            return {k: sum(a.latest.get(k, 0) for a in self.apps.values()) for k in keys}

    def run_workload(self) -> None:
        seconds = self.args.seconds
        kill_at = seconds * 0.3
        restart_at = kill_at + min(3.0, max(1.0, seconds * 0.15))
        self.t0 = start = time.monotonic()
        self.say(
            f"\nworkload: {seconds:.0f} s; kill -9 of the {self.args.kill} at"
            f" t={kill_at:.1f}s, restart at t={restart_at:.1f}s"
            if self.args.kill != "none"
            else f"\nworkload: {seconds:.0f} s, no kill"
        )
        if self.args.kill != "none":
            self.say(
                "failover: the killed node's app stays up and sticks to its node; its threads"
                " wait in the adapter, or reconnect once the node serves again"
            )
        self.say(
            "     t   commits/s  reads/s  read txn p50/p99     conflicts  other retries"
            "  reconnects  applied slot per node"
        )
        next_report = start + 1.0
        last_report = start
        ends = start + seconds
        waiting_said = False
        while True:
            now = time.monotonic()
            for app in self.apps.values():
                if app.process.poll() is not None:
                    raise DemoFailure(
                        f"app process of node {app.node_id} exited; see {app.log_path}"
                    )
            if self.args.kill != "none":
                self.drive_fault(now - start, kill_at, restart_at)
            if now >= next_report:
                self.live_line(now, last_report)
                last_report, next_report = now, next_report + 1.0
            if now >= ends:
                if self.recovered() or now >= ends + RESUME_GRACE_S:
                    break
                if not waiting_said:
                    self.say("  .. workload time is up; waiting for the restarted node's app")
                    waiting_said = True
            time.sleep(0.05)
        self.events["workload_end"] = time.monotonic()

    def recovered(self) -> bool:
        """The killed node serves again, has caught up, and its app commits again."""
        if self.args.kill == "none":
            return True
        return all(e in self.events for e in ("serving", "caught_up", "resumed"))

    def first_commit_after(self, node_id: int, since: float) -> float | None:
        with self.lock:
            ends = [e for e, _, n in self.commit_samples if e > since and n == node_id]
        return min(ends, default=None)

    def drive_fault(self, t: float, kill_at: float, restart_at: float) -> None:
        if self.victim is None and t >= kill_at:
            views = self.statuses()
            leader = next((v.leader_id for v in views.values() if v and v.leader_id), None)
            if self.args.kill == "leader" and leader is not None:
                self.victim = self.nodes[leader]
                self.victim_role = "leader"
            else:
                self.victim = next(n for n in self.nodes.values() if n.node_id != leader)
                self.victim_role = "follower"
            assert self.victim.process is not None
            pid = self.victim.process.pid
            self.victim.kill()
            self.event(
                "kill", f"kill -9 node {self.victim.node_id} ({self.victim_role}, pid {pid})"
            )
            return
        victim = self.victim
        if victim is None:
            return
        if self.new_leader is None and self.victim_role == "leader":
            for node_id, v in self.statuses().items():
                if node_id != victim.node_id and v is not None and v.leader_id is not None:
                    if v.leader_id != victim.node_id:
                        self.new_leader = v.leader_id
                        self.event(
                            "new_leader", f"node {node_id} sees a new leader: node {v.leader_id}"
                        )
                    break
        if "restart" not in self.events:
            if t >= restart_at:
                victim.start(self.env)
                self.save_state()
                assert victim.process is not None
                self.event("restart", f"restarted node {victim.node_id} (pid {victim.process.pid})")
            return
        if "serving" not in self.events:
            view = victim.status()
            if view is not None:
                others = [v for v in self.statuses().values() if v and v.node_id != victim.node_id]
                self.catch_up_target = max((v.chosen_slot for v in others), default=0)
                self.event(
                    "serving",
                    f"node {victim.node_id} serving again at slot {view.applied_slot};"
                    f" the others have chosen {self.catch_up_target}",
                )
        if "serving" in self.events and "caught_up" not in self.events:
            view = victim.status()
            if view is not None and view.applied_slot >= self.catch_up_target:
                self.event(
                    "caught_up", f"node {victim.node_id} caught up (slot {view.applied_slot})"
                )
        if "resumed" not in self.events:
            first = self.first_commit_after(victim.node_id, self.events["restart"])
            if first is not None:
                self.event("resumed", f"app on node {victim.node_id} commits again", at=first)

    def live_line(self, now: float, since: float) -> None:
        totals = self.totals()
        with self.lock:
            commits = sum(1 for e, _, _ in self.commit_samples if since < e <= now)
            reads = [s for e, s, _ in self.read_samples if since < e <= now]
        window = now - since
        slots = []
        for node_id, view in self.statuses().items():
            slots.append(f"n{node_id} {'down' if view is None else view.applied_slot}")
        retries = totals["lock_timeouts"] + totals["unavailable"]
        self.say(
            f"{now - self.t0:6.1f}s  {commits / window:9.0f}  {len(reads) / window:7.0f}"
            f"  {ms(reads):>18}  {totals['conflicts']:9d}  {retries:13d}"
            f"  {totals['reconnects']:10d}  {'  '.join(slots)}"
        )

    def stop_apps(self, timeout_s: float = 75, strict: bool = True) -> None:
        """Ask every app process to stop (each thread ends its transaction first)."""
        for app in self.apps.values():
            if app.process.poll() is None and app.process.stdin is not None:
                with suppress(OSError, ValueError):  # ValueError: stdin already closed
                    app.process.stdin.write("stop\n")
                    app.process.stdin.close()
        deadline = time.monotonic() + timeout_s
        for app in self.apps.values():
            try:
                app.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                app.process.kill()
                app.process.wait(10)
                if strict:
                    self.failures.append(f"app process of node {app.node_id} did not stop")
            if app.reader is not None:
                app.reader.join(10)

    def check_apps(self) -> None:
        for app in self.apps.values():
            if app.final is None:
                self.failures.append(f"app process of node {app.node_id} sent no final report")
            elif app.final["stuck"]:
                self.failures.append(f"app {app.node_id}: threads stuck: {app.final['stuck']}")
        totals = self.totals()
        if totals["violations"] or totals["ledger_errors"]:
            self.failures.append(
                f"{totals['violations']} read transactions saw a wrong total,"
                f" {totals['ledger_errors']} transfers found their ledger out of step:"
                f" {'; '.join(self.problems)}"
            )
        if totals["ghosts"]:
            self.failures.append(
                f"{totals['ghosts']} commit() calls raised although their transaction had"
                " committed (transaction.manager.attempts() would have applied them twice)"
            )
        if totals["commits"] == 0:
            self.failures.append("no transfer committed")
        if totals["reads"] == 0:
            self.failures.append("no read transaction finished")
        if self.args.kill != "none":
            if "kill" not in self.events:
                self.failures.append("the node was never killed")
            elif not self.recovered():
                missing = [e for e in ("serving", "caught_up", "resumed") if e not in self.events]
                self.failures.append(
                    f"node {self.victim.node_id if self.victim else '?'} did not recover within"
                    f" {RESUME_GRACE_S:.0f} s after the workload: never {', '.join(missing)}"
                )
        for app in self.apps.values():
            if app.node_id in self.nodes and not any(
                n == app.node_id for _, _, n in self.commit_samples
            ):
                self.failures.append(f"the app on node {app.node_id} committed nothing")

    def converge(self) -> list[dict[str, Any]]:
        """Wait until every replica has applied every chosen slot, then ask
        ``relstorage-paxos status --json`` for the final view."""

        def converged() -> bool:
            views = list(self.statuses().values())
            if any(v is None for v in views):
                return False
            top = {v.chosen_slot for v in views if v}
            return len({(v.applied_slot, v.running_hash) for v in views if v}) == 1 and top == {
                views[0].applied_slot  # type: ignore[union-attr]
            }

        started = time.monotonic()
        try:
            self.wait("the replicas to converge", converged, 30)
        except DemoFailure as exc:
            self.failures.append(str(exc))
        self.converge_s = time.monotonic() - started
        out = subprocess.run(
            [cli(), "status", "--json", "--data-dir", str(self.nodes[1].data_dir)],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        try:
            views: list[dict[str, Any]] = json.loads(out.stdout)
        except ValueError:
            self.failures.append(f"relstorage-paxos status --json: {out.stdout}{out.stderr}")
            return []
        errors = [v["error"] for v in views if "error" in v]
        good = [v for v in views if "error" not in v]
        self.failures += [f"status: {e}" for e in errors]
        if len(good) != len(self.nodes):
            self.failures.append(f"status --json showed {len(good)} of {len(self.nodes)} nodes")
        if len({(v["applied_slot"], v["running_hash"]) for v in good}) != 1:
            self.failures.append(
                "replicas differ: "
                + ", ".join(
                    f"node {v['node_id']} slot {v['applied_slot']} hash {v['running_hash'][:16]}"
                    for v in good
                )
            )
        return good

    def check_invariant(self) -> dict[int, str]:
        """Read the bank through every node: total, account count, transfer ledgers."""
        totals = self.totals()
        acked, pending = totals["commits"], totals["pending"]
        results: dict[int, str] = {}
        for node in self.nodes.values():
            try:
                db = open_db(node.data_dir)
                try:
                    with db.transaction() as conn:
                        root = conn.root()
                        balances = root["accounts"]
                        total = sum(balances.values())
                        count = len(balances)
                        negative = sum(1 for v in balances.values() if v < 0)
                        counted = sum(ledger() for ledger in root["ledgers"].values())
                finally:
                    db.close()
            except Exception as exc:
                self.failures.append(f"reading through node {node.node_id}: {exc!r}")
                results[node.node_id] = "UNREADABLE"
                continue
            ok = total == self.total and count == self.args.accounts and not negative
            counters_ok = acked <= counted <= acked + pending
            results[node.node_id] = (
                f"{total} {'OK' if ok else 'WRONG'} (ledgers: {counted} transfers applied,"
                f" {'OK' if counters_ok else 'WRONG'})"
            )
            if not ok:
                self.failures.append(
                    f"node {node.node_id}: total {total} over {count} accounts ({negative}"
                    f" negative), expected {self.total} over {self.args.accounts}"
                )
            if not counters_ok:
                self.failures.append(
                    f"node {node.node_id}: the ledgers count {counted} transfers applied; the"
                    f" apps saw {acked} acknowledged and {pending} unanswered when stopped"
                )
        return results

    def stop_nodes(self) -> None:
        """SIGTERM to every running node at once; each must exit 0 within 20 s."""
        running = [n for n in self.nodes.values() if n.terminate()]
        deadline = time.monotonic() + 20
        for node in running:
            code = node.wait_stopped(deadline)
            if code != 0:
                self.failures.append(
                    f"node {node.node_id} exited {code} on SIGTERM (see {node.log_path})"
                )
        with suppress(OSError):
            (self.root / STATE_FILE).unlink()

    # ------------------------------------------------------------------------ the report

    def report(self, views: list[dict[str, Any]], invariant: dict[int, str]) -> None:
        totals = self.totals()
        start, end = self.t0, self.events.get("workload_end", time.monotonic())
        duration = end - start
        with self.lock:
            commits = sorted(self.commit_samples)
            reads = [s for _, s, _ in self.read_samples]
        commit_s = [s for _, s, _ in commits]
        say = self.say
        say("\n=== final report ===")
        say(
            f"workload:   {duration:.1f} s, {len(self.nodes)} nodes, {len(self.apps)} app"
            f" processes x ({self.args.writers} transfer + 1 reader threads),"
            f" {self.args.accounts} accounts"
        )
        say(
            f"transfers:  {totals['commits']} committed ({totals['commits'] / duration:.0f}/s),"
            f" {totals['pending']} unanswered at stop; transfer (first attempt to"
            f" acknowledged) p50/p99 {ms(commit_s)}"
        )
        say(
            f"reads:      {totals['reads']} read transactions ({totals['reads'] / duration:.0f}/s),"
            f" {totals['violations']} saw a wrong total; whole read txn (begin with"
            f" ReadIndex barrier, sum of every balance, abort) p50/p99 {ms(reads)}"
        )
        say(
            f"exactly-once: {totals['ghosts']} commit() calls raised after their transaction"
            " had committed (found in the writer's ledger on retry, so not applied twice)"
        )
        say(
            f"retries:    {totals['conflicts']} ConflictError, {totals['lock_timeouts']} lock"
            f" timeouts, {totals['unavailable']} node-unavailable/unknown-outcome retried by"
            f" attempts(); {totals['reconnects']} reconnects to a node"
        )
        if self.victim is not None and "kill" in self.events:
            kill = self.events["kill"]

            def after(name: str, origin: float = kill) -> str:
                return f"{self.events[name] - origin:.2f} s" if name in self.events else "never"

            first_commit = next((e for e, _, _ in commits if e > kill), None)
            gaps = [b[0] - a[0] for a, b in itertools.pairwise(commits)]
            say(
                f"kill -9:    node {self.victim.node_id} ({self.victim_role}) at"
                f" t={kill - start:.1f}s; first commit anywhere after"
                f" {'never' if first_commit is None else f'{first_commit - kill:.2f} s'}"
                + (
                    f", new leader node {self.new_leader} after {after('new_leader')}"
                    if self.victim_role == "leader"
                    else ""
                )
                + f"; longest commit gap {max(gaps, default=0.0):.2f} s"
            )
            restart = self.events.get("restart", kill)
            say(
                f"restart:    after {after('restart')} down; serving {after('serving', restart)}"
                f" after restart, caught up after {after('caught_up', restart)},"
                f" its app committing again after {after('resumed', restart)}"
            )
        say(f"replicas:   converged {self.converge_s:.1f} s after the workload stopped")
        for v in views:
            say(
                f"  node {v['node_id']}: applied slot {v['applied_slot']}, last tid"
                f" {v['last_tid']:016x}, running hash {v['running_hash'][:16]}"
            )
        hashes = {(v["applied_slot"], v["running_hash"]) for v in views}
        if len(views) == len(self.nodes) and len(hashes) == 1:
            say("replicas:   identical (same applied slot, same running hash on every node)")
        else:
            say("replicas:   DIFFER")
        for node_id, text in invariant.items():
            say(f"invariant:  node {node_id}: total {text}")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/demo", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--dir", type=Path, default=ROOT / "demo-cluster")
    parser.add_argument("--nodes", type=int, default=3, choices=range(3, 10), metavar="N")
    parser.add_argument("--seconds", type=float, default=20.0, help="workload duration")
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--writers", type=int, default=3, help="transfer threads per app")
    parser.add_argument("--kill", choices=("leader", "follower", "none"), default="leader")
    parser.add_argument(
        "--keep", action="store_true", help="leave the cluster running after a passing run"
    )
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.accounts < 2 or args.writers < 1:
        parser.error("--seconds must be positive, --accounts >= 2, --writers >= 1")
    return args


def keep_message(demo: Demo) -> None:
    node = next(iter(demo.nodes.values()))
    pids = " ".join(str(n.process.pid) for n in demo.nodes.values() if n.process and n.running)
    demo.say("\nthe cluster keeps running (--keep); connect an application to any node with:\n")
    demo.say(zconfig(node.data_dir).rstrip())
    demo.say(
        f"\n(any node's data-dir works: {', '.join(str(n.data_dir) for n in demo.nodes.values())})"
    )
    demo.say(f"status: {cli()} status --data-dir {node.data_dir}")
    demo.say(f"stop:   kill {pids}    (SIGTERM; running the demo again also stops them)")


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def main(argv: list[str]) -> int:
    if argv[:1] == ["_worker"]:
        return worker_main(argv[1:])
    args = parse_args(argv)
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)
    root = args.dir.expanduser().resolve()
    try:
        prepare_dir(root)
    except DemoFailure as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 2
    os.environ["TMPDIR"] = str(root / "tmp")  # SQLite's temporary files stay in the demo dir
    os.environ["PYTHONDONTWRITEBYTECODE"] = "1"
    demo = Demo(args, root)
    keep = False
    crashed = False
    with terminate_as_interrupt():
        try:
            demo.init_cluster()
            demo.start_nodes()
            demo.create_bank()
            demo.start_apps()
            demo.run_workload()
            demo.stop_apps()
            demo.check_apps()
            views = demo.converge()
            invariant = demo.check_invariant()
            keep = args.keep and not demo.failures
            if not keep:
                demo.stop_nodes()
            demo.report(views, invariant)
        except KeyboardInterrupt:
            crashed = True
            print("\ninterrupted: stopping the app processes and the nodes", file=sys.stderr)
            demo.failures.append("interrupted")
        except Exception as exc:
            crashed = True
            traceback.print_exc()
            demo.failures.append(f"{type(exc).__name__}: {exc}")
        finally:
            # No second interrupt may leave nodes behind; this takes at most about 30 s.
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                signal.signal(sig, signal.SIG_IGN)
            if crashed or not keep:
                demo.stop_apps(timeout_s=5, strict=False)
                demo.stop_nodes()
    if demo.errors:
        print(f"app errors (each followed by a reconnect): {len(demo.errors)}; first ones:")
        for line in demo.errors[:5]:
            print(f"  {line}")
    if demo.failures:
        print("\nRESULT: FAIL")
        for failure in demo.failures:
            print(f"  - {failure}")
        print(f"node logs: {root}/node*.log; app logs: {root}/app*.log")
        return 1
    print("\nRESULT: PASS (replicas identical, invariant held in every read and on every node)")
    print(f"logs: {root}/node*.log, {root}/app*.log")
    if keep:
        keep_message(demo)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
