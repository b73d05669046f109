"""RelStorage's generic suite on relstorage_paxos: the ``StorageCreatingMixin`` that builds
storages on a fresh Paxos cluster per test, and the suite builder with this tier's skips
(notes/relstorage-internals.md §6.3).

Owns: node data directories for the tests (short paths: a Unix socket path has a 107-byte
limit, and ZODB's per-test temporary directories are named after the test), one cluster per
test and database name (RelStorage's ``zap_all`` cannot clear a replicated database, so a
fresh database is a fresh cluster: every test runs in its own temporary directory), the
in-process 3-node clusters, and ``ConformancePaxosAdapter``.
Must not import: ``relstorage_paxos`` internals beyond the adapter's and server's public API.
Called by: zope.testrunner processes (test_conformance.py starts them), on test threads.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import sys
import tempfile
import threading
import time
import unittest
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import ZODB.tests.util as zodb_test_util
from relstorage.options import Options
from relstorage.tests import StorageCreatingMixin
from relstorage.tests.util import AbstractTestSuiteBuilder
from ZODB.utils import z64

from relstorage_paxos import config
from relstorage_paxos.adapter import AdapterSettings, PaxosAdapter, drivers
from relstorage_paxos.config import NodeSettings
from relstorage_paxos.server import NodeServer, init_data_dir
from tests.conformance.skips import Skip, SkippingBuilderMixin, skip_in_suite
from tests.integration.processes import free_ports

logger = logging.getLogger(__name__)

ROOT_ENV: Final = "RS_PAXOS_CONFORMANCE_ROOT"
"""Where node data directories go (runner.py sets a fresh one per run)."""

ONE_NODE_TIMING: Final = {"tick_s": 0.01, "heartbeat_interval_s": 0.03, "election_timeout_s": 0.15}
THREE_NODE_TIMING: Final = {"tick_s": 0.02, "heartbeat_interval_s": 0.06, "election_timeout_s": 0.4}
"""As tests/integration's clusters: one process runs all three nodes and the test's threads,
so a tighter election timeout would elect spuriously under load."""

LEADER_WAIT_S: Final = 30.0

_lock = threading.RLock()
_counter = itertools.count(1)
_root: Path | None = None
_data_dirs: dict[tuple[str, str], Path] = {}


def nodes_root() -> Path:
    """A short directory for node data (made once per process)."""
    global _root
    with _lock:
        if _root is None:
            base = os.environ.get(ROOT_ENV)
            if base:
                _root = Path(base)
                _root.mkdir(parents=True, exist_ok=True)
            else:
                _root = Path(tempfile.mkdtemp(prefix="pxc", dir="/tmp"))
        return _root


def data_root_for(dbname: str) -> Path:
    """The directory for database ``dbname`` of the running test: one per (test temporary
    directory, name), so two storages on one database in one test share it and the next
    test gets a new one (ZODB's TestCase gives each test its own ``tempfile.tempdir``)."""
    key = (tempfile.gettempdir(), dbname)
    with _lock:
        path = _data_dirs.get(key)
        if path is None:
            path = _data_dirs[key] = nodes_root() / f"{next(_counter)}"
        return path


@contextlib.contextmanager
def real_wall_clock() -> Iterator[None]:
    """Undo ZODB's fake ``time.time`` (``ZODB.tests.util.time_monotonically_increases``,
    which many PackableStorage/RevisionStorage tests wear) while a node starts: the fake
    clock gains a second per call and never gives it back, and gRPC's server start waits
    until a deadline taken from ``time.time()``, i.e. for as long as the fake clock is
    ahead of the real one (10 s, then 24 s… measured), so every later node start in the
    process would take longer."""
    saved = time.time, time.gmtime
    time.time, time.gmtime = zodb_test_util._real_time, zodb_test_util._real_gmtime
    try:
        yield
    finally:
        time.time, time.gmtime = saved


def ensure_node(
    data_dir: Path,
    *,
    keep_history: bool,
    cluster_id: str,
    node_id: int = 1,
    members: dict[int, str] | None = None,
    timing: dict[str, float] = ONE_NODE_TIMING,
) -> Path:
    """The node at ``data_dir``, initialised on first use (idempotent)."""
    with _lock:
        if not config.settings_path(data_dir).is_file():
            if members is None:
                (port,) = free_ports(1)
                members = {node_id: f"127.0.0.1:{port}"}
            init_data_dir(
                data_dir,
                NodeSettings(
                    cluster_id=cluster_id,
                    node_id=node_id,
                    keep_history=keep_history,
                    members=members,
                    **timing,  # type: ignore[arg-type]
                ),
            )
        return data_dir


class ConformancePaxosAdapter(PaxosAdapter):  # type: ignore[misc]
    """The Paxos adapter with a test-only ``zap_all``: RelStorage's suite zaps every storage
    it makes (and some tests zap at their end). The real adapter refuses (a zap would clear
    one replica only); here every test starts on a fresh cluster, so a zap of an empty
    database is a no-op and a zap of a non-empty one is logged and ignored: a test that
    needs the data gone fails visibly and is listed in SKIPS.md."""

    def _create(self) -> None:
        super()._create()
        self.schema.zap_all = self._zap_all
        self.schema.drop_all = self._zap_all

    def _zap_all(self, reset_oid: bool = True, slow: bool = False) -> None:
        def last_tid(_conn: Any, cursor: Any) -> int:
            cursor.execute("SELECT last_tid FROM paxos_meta")
            return int(cursor.fetchone()[0])

        last_tid.transaction_read_only = True  # type: ignore[attr-defined]
        tid = self.connmanager.open_and_call(last_tid)
        if tid:
            # On stderr, which zope.testrunner shows (its logging setup may not).
            print(
                f"conformance: zap_all of a non-empty database ignored (tid {tid})", file=sys.stderr
            )


class PaxosAdapterMixin(StorageCreatingMixin):  # type: ignore[misc]
    """Storages on a 1-node cluster run embedded in the test process, one per test and
    database (see ``data_root_for``)."""

    consistency = "linearizable"

    def _dbname(self, db: str | None = None) -> str:
        if db is not None:
            return db
        return self.base_dbname if self.keep_history else self.base_dbname + "_hf"

    def _node_for(self, options: Any, db: str | None) -> tuple[Path, bool]:
        """(data dir, embedded) of the node the next adapter on ``db`` uses."""
        dbname = self._dbname(db)
        data_dir = ensure_node(
            data_root_for(dbname),
            keep_history=bool(options.keep_history),
            cluster_id=f"conformance-{dbname}",
        )
        return data_dir, True

    def make_adapter(self, options: Any, db: str | None = None) -> PaxosAdapter:
        data_dir, embedded = self._node_for(options, db)
        settings = AdapterSettings(data_dir, consistency=self.consistency, embedded=embedded)
        with real_wall_clock():
            return ConformancePaxosAdapter(settings, options=options)

    def get_adapter_class(self) -> type:
        return PaxosAdapter

    def get_adapter_zconfig(self) -> str:
        data_dir, embedded = self._node_for(Options(keep_history=self.keep_history), None)
        return f"""
        %import relstorage_paxos
        <paxos>
            driver {self.driver_name}
            data-dir {data_dir}
            consistency {self.consistency}
            embedded {"true" if embedded else "false"}
            lock-lease 20
        </paxos>
        """

    def verify_adapter_from_zconfig(self, adapter: Any) -> None:
        data_dir, _ = self._node_for(Options(keep_history=self.keep_history), None)
        self.assertIsInstance(adapter, PaxosAdapter)
        self.assertEqual(adapter.settings.data_dir, data_dir.resolve())
        self.assertEqual(adapter.settings.consistency, self.consistency)
        self.assertEqual(adapter.settings.lock_lease_s, 20.0)
        self.assertEqual(adapter.driver.__name__, "apsw")
        self.assertEqual(Path(adapter.connmanager.path), data_dir.resolve() / config.REPLICA_FILE)

    def get_adapter_zconfig_replica_conf(self) -> None:
        return None  # read replicas are RelStorage's, not ours: every node is one

    def _new_storage_client(self) -> Any:
        # ZODB's racetest: "a new storage client connected to the same server" (the stock
        # SQLite mixin does not define it, so its external-invalidation race is skipped).
        return self.make_storage(zap=False)


class PaxosZodbConvertMixin(PaxosAdapterMixin):
    """For RelStorage's zodbconvert classes, whose storages come from ZConfig (the real
    adapter, whose ``zap_all`` refuses): their setUp zaps a database that is empty here
    (a fresh cluster per test), so that zap is left out; and ``zap_supported_by_dest`` is
    false, so their ``--clear`` tests skip themselves ("zap_all not supported")."""

    zap_supported_by_dest = False

    def make_storage(self, zap: bool = True) -> Any:
        storage = super().make_storage(zap=False)
        if zap and storage.lastTransaction() != z64:
            storage.zap_all(slow=self.zap_slow)  # refused: the test fails, as it should
        return storage


class InProcessCluster:
    """``size`` NodeServers of one cluster in this process (the 3-node variant: adapters
    connect to them through their sockets, not embedded, since a node alone has no
    quorum)."""

    def __init__(self, root: Path, size: int, *, keep_history: bool, cluster_id: str) -> None:
        ports = free_ports(size)
        members = {i + 1: f"127.0.0.1:{port}" for i, port in enumerate(ports)}
        self.data_dirs = {
            node_id: ensure_node(
                root / f"n{node_id}",
                keep_history=keep_history,
                cluster_id=cluster_id,
                node_id=node_id,
                members=members,
                timing=THREE_NODE_TIMING,
            )
            for node_id in members
        }
        self.servers: dict[int, NodeServer] = {}
        try:
            for node_id, data_dir in self.data_dirs.items():
                server = NodeServer(data_dir)
                self.servers[node_id] = server
                with real_wall_clock():
                    server.start()
            self.leader_id = self.wait_for_leader()
        except BaseException:
            self.stop()
            raise

    def wait_for_leader(self) -> int:
        deadline = time.monotonic() + LEADER_WAIT_S
        while time.monotonic() < deadline:
            for node_id, server in self.servers.items():
                status = server.status()
                if status.role == "leader":
                    return node_id
            time.sleep(0.02)
        raise AssertionError(f"no leader after {LEADER_WAIT_S} s")

    def stop(self) -> None:
        servers, self.servers = self.servers, {}
        for server in servers.values():
            server.stop()


_clusters: dict[Path, InProcessCluster] = {}
_rotations: dict[Path, Iterator[int]] = {}


class ThreeNodePaxosAdapterMixin(PaxosAdapterMixin):
    """Storages on a 3-node cluster in this process, one per test and database. The first
    storage of a test (``self._storage``) is on a follower, so its commits are forwarded to
    the leader; every later storage on the same database (``make_storage(zap=False)``,
    ``_new_storage_client``, the MVCC tests' second storage) is on the next node in turn, so
    commits through one node are loaded through another."""

    def _node_for(self, options: Any, db: str | None) -> tuple[Path, bool]:
        dbname = self._dbname(db)
        root = data_root_for(dbname)
        with _lock:
            cluster = _clusters.get(root)
            if cluster is None:
                cluster = _clusters[root] = InProcessCluster(
                    root,
                    3,
                    keep_history=bool(options.keep_history),
                    cluster_id=f"conformance3-{dbname}",
                )
                if isinstance(self, unittest.TestCase):
                    self.addCleanup(_stop_cluster, root)
                order = sorted(cluster.data_dirs, key=lambda n: n == cluster.leader_id)
                _rotations[root] = itertools.cycle(order)
            node_id = next(_rotations[root])
            return cluster.data_dirs[node_id], False


def _stop_cluster(root: Path) -> None:
    with _lock:
        cluster = _clusters.pop(root, None)
        _rotations.pop(root, None)
    if cluster is not None:
        cluster.stop()


class PaxosTestSuiteBuilder(SkippingBuilderMixin, AbstractTestSuiteBuilder):  # type: ignore[misc]
    """RelStorage's generic suite (HF and HP check classes, pack classes, zodbconvert,
    blob suites) on a 1-node cluster per test, plus ``extra_test_classes``."""

    __name__ = "Paxos"
    RAISED_EXCEPTIONS = Exception

    def __init__(
        self, skips: tuple[Skip, ...] = (), extra_test_classes: tuple[type, ...] = ()
    ) -> None:
        self.SKIPS = skips
        super().__init__(drivers, PaxosAdapterMixin, extra_test_classes=extra_test_classes)

    def _compute_large_blob_size(self, use_small_blobs: bool) -> int:
        return int(Options().blob_chunk_size)

    def _make_zodbconvert_classes(self) -> list[type]:
        # The builder makes these with ``self.use_adapter`` and no hook: swap in the mixin
        # that knows their storages come from ZConfig.
        use_adapter = self.use_adapter
        self.use_adapter = PaxosZodbConvertMixin
        try:
            classes: list[type] = super()._make_zodbconvert_classes()
        finally:
            self.use_adapter = use_adapter
        return classes

    def test_suite(self) -> unittest.TestSuite:
        suite: unittest.TestSuite = super().test_suite()
        skip_in_suite(suite, self.SKIPS)
        return suite
