"""The systems under test and the servers behind them.

``Lab`` owns one temporary directory holding every data directory, a 3-node cluster of real
``relstorage-paxos serve`` processes (``tests/integration/processes.py``), a one-node data
directory for ``embedded true``, a stock RelStorage+SQLite data directory, a FileStorage and
a ``runzeo`` server (FileStorage behind it) on 127.0.0.1. It stops every process it started
by PID, and removes the directory, whatever happens (Ctrl-C included).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.adapter.support import make_node
from tests.integration.processes import NodeProcess, ProcessCluster, free_ports, wait_for

ANCHORS = ("rs-sqlite", "filestorage", "zeo", "postgres")
"""The single-server anchors every paxos figure is divided by (when they ran it)."""

LABELS = {
    "paxos-leader": "paxos, client on the leader's node",
    "paxos-follower": "paxos, client on a follower's node",
    "paxos-3node": "paxos, clients spread over the 3 nodes",
    "embedded": "paxos 1-node, embedded true",
    "rs-sqlite": "stock RelStorage+SQLite",
    "filestorage": "FileStorage",
    "zeo": "ZEO (FileStorage behind runzeo)",
    "postgres": "stock RelStorage+PostgreSQL (only with --with-postgres)",
}


@dataclass(frozen=True)
class System:
    """One storage as applications open it: ``sites`` are where clients attach (a data
    directory per node for paxos; one entry otherwise)."""

    name: str
    kind: str  # paxos | embedded | rs-sqlite | filestorage | zeo
    sites: tuple[str, ...]
    multi_process: bool
    """Several processes may open it at once (FileStorage and an embedded node: no)."""

    def zconfig(
        self,
        site: int = 0,
        *,
        cache_mb: int | None = None,
        consistency: str = "linearizable",
        commit_lock_timeout_s: int | None = None,
    ) -> str:
        where = self.sites[site % len(self.sites)]
        relstorage = "keep-history false\n"
        if cache_mb is not None:
            relstorage += f"cache-local-mb {cache_mb}\n"
        if commit_lock_timeout_s is not None:
            relstorage += f"commit-lock-timeout {commit_lock_timeout_s}\n"
        if self.kind in ("paxos", "embedded"):
            embedded = "true" if self.kind == "embedded" else "false"
            return (
                "%import relstorage_paxos\n<zodb>\n<relstorage>\n"
                f"{relstorage}<paxos>\ndata-dir {where}\nconsistency {consistency}\n"
                f"embedded {embedded}\n</paxos>\n</relstorage>\n</zodb>\n"
            )
        if self.kind == "rs-sqlite":
            return (
                "%import relstorage\n<zodb>\n<relstorage>\n"
                f"{relstorage}<sqlite3>\ndata-dir {where}\n</sqlite3>\n</relstorage>\n</zodb>\n"
            )
        if self.kind == "postgres":
            return (
                "%import relstorage\n<zodb>\n<relstorage>\n"
                f"{relstorage}<postgresql>\ndsn {where}\n</postgresql>\n</relstorage>\n</zodb>\n"
            )
        if self.kind == "filestorage":
            return f"<zodb>\n<filestorage>\npath {where}\n</filestorage>\n</zodb>\n"
        assert self.kind == "zeo", self.kind
        cache = "" if cache_mb is None else f"cache-size {cache_mb}MB\n"
        return f"<zodb>\n<zeoclient>\nserver {where}\n{cache}wait true\n</zeoclient>\n</zodb>\n"


class Lab:
    """Every server and data directory of one suite run (a context manager)."""

    def __init__(self, *, with_postgres: bool = False) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="relstorage-paxos-bench-"))
        self.with_postgres = with_postgres
        self.postgres: subprocess.Popen[bytes] | None = None
        self.postgres_dir: Path | None = None
        self.postgres_dsn = ""
        self.cluster: ProcessCluster | None = None
        self.zeo: subprocess.Popen[bytes] | None = None
        self.zeo_address = ""
        self.embedded_dir: Path | None = None
        self.leader: NodeProcess | None = None
        self.follower: NodeProcess | None = None

    def __enter__(self) -> Lab:
        previous = signal.getsignal(signal.SIGTERM)
        self._previous_sigterm = previous
        signal.signal(signal.SIGTERM, _raise_interrupt)
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start(self) -> None:
        (self.root / "fs").mkdir()
        self.start_zeo()
        if self.with_postgres:
            self.start_postgres()
        self.embedded_dir = make_node(self.root, keep_history=False, name="embedded")
        self.cluster = ProcessCluster(self.root / "cluster", 3, cluster_id="bench")
        self.cluster.start()
        for node in self.cluster.nodes.values():
            wait_for(f"node {node.node_id}", node.status, 60.0)
        self.leader = self.cluster.wait_for_leader()
        self.follower = next(n for n in self.cluster.nodes.values() if n is not self.leader)

    def start_zeo(self) -> None:
        (port,) = free_ports(1)
        self.zeo_address = f"127.0.0.1:{port}"
        (self.root / "zeo").mkdir()
        runzeo = Path(sys.executable).parent / "runzeo"
        log = (self.root / "zeo.log").open("ab")
        self.zeo = subprocess.Popen(
            [str(runzeo), "-a", self.zeo_address, "-f", str(self.root / "zeo" / "Data.fs")],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

        def answers() -> bool:
            assert self.zeo is not None and self.zeo.poll() is None, "runzeo exited"
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                return True
            return False

        wait_for("runzeo", answers, 30.0)

    def start_postgres(self) -> None:
        """apt-get install postgresql if needed; initdb a cluster of our own (trust, as the
        postgres user) and run it on 127.0.0.1 with fsync and synchronous_commit on."""
        import glob
        import pwd

        if not glob.glob("/usr/lib/postgresql/*/bin/postgres"):
            subprocess.run(["apt-get", "install", "-y", "-qq", "postgresql"], check=True)
        try:
            import psycopg2
        except ImportError:
            subprocess.run(
                [sys.executable, "-m", "pip", "install", "-q", "psycopg2-binary"], check=True
            )
            import psycopg2
        bindir = Path(sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1])
        user = pwd.getpwnam("postgres")
        self.postgres_dir = Path(tempfile.mkdtemp(prefix="relstorage-paxos-bench-pg-"))
        os.chown(self.postgres_dir, user.pw_uid, user.pw_gid)
        data = self.postgres_dir / "data"
        subprocess.run(
            [str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
            check=True,
            capture_output=True,
            user="postgres",
            cwd=self.postgres_dir,
        )
        (port,) = free_ports(1)
        log = (self.root / "postgres.log").open("ab")
        self.postgres = subprocess.Popen(
            [
                *(str(bindir / "postgres"), "-D", str(data), "-p", str(port), "-k", str(data)),
                *("-c", "listen_addresses=127.0.0.1", "-c", "shared_buffers=256MB"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            user="postgres",
            cwd=self.postgres_dir,
        )
        log.close()
        base = f"host=127.0.0.1 port={port} user=postgres"

        def connect() -> Any:
            assert self.postgres is not None and self.postgres.poll() is None, "postgres exited"
            try:
                return psycopg2.connect(f"{base} dbname=postgres")
            except psycopg2.OperationalError:
                return None

        conn = wait_for("postgres", connect, 60.0)
        conn.autocommit = True
        conn.cursor().execute("CREATE DATABASE zs")
        conn.close()
        self.postgres_dsn = f"{base} dbname=zs"

    def systems(self) -> dict[str, System]:
        assert self.cluster and self.leader and self.follower and self.embedded_dir
        others = [n for n in self.cluster.nodes.values() if n is not self.leader]
        spread = [self.leader, *others]
        return {
            s.name: s
            for s in (
                System("paxos-leader", "paxos", (str(self.leader.data_dir),), True),
                System("paxos-follower", "paxos", (str(self.follower.data_dir),), True),
                System("paxos-3node", "paxos", tuple(str(n.data_dir) for n in spread), True),
                System("embedded", "embedded", (str(self.embedded_dir),), False),
                System("rs-sqlite", "rs-sqlite", (str(self.root / "rs-sqlite"),), True),
                System("filestorage", "filestorage", (str(self.root / "fs" / "Data.fs"),), False),
                System("zeo", "zeo", (self.zeo_address,), True),
            )
        } | (
            {"postgres": System("postgres", "postgres", (self.postgres_dsn,), True)}
            if self.postgres_dsn
            else {}
        )

    def describe(self) -> dict[str, Any]:
        assert self.leader and self.follower
        return {
            "leader_node": self.leader.node_id,
            "follower_node": self.follower.node_id,
            "cluster_settings": "3 nodes, tick 0.02 s, election timeout 0.4 s, heartbeat 0.06 s",
            "zeo": self.zeo_address,
            "root": str(self.root),
        }

    def close(self) -> None:
        """Stop, by PID, every process this lab started; remove its directory."""
        if self.cluster is not None:
            for node in self.cluster.nodes.values():
                _stop(node.process)
                node._drop_client()
        _stop(self.zeo)
        _stop(self.postgres)
        shutil.rmtree(self.root, ignore_errors=True)
        if self.postgres_dir is not None:
            shutil.rmtree(self.postgres_dir, ignore_errors=True)
        if hasattr(self, "_previous_sigterm"):
            signal.signal(signal.SIGTERM, self._previous_sigterm)


def _stop(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGKILL)
        process.wait(10)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def wait_until(deadline: float) -> None:
    """Sleep until ``time.time()`` reaches ``deadline`` (a start time shared by processes)."""
    delay = deadline - time.time()
    if delay > 0:
        time.sleep(delay)
