"""One node, assembled from its data directory: log store, replica, peer transport, runtime,
and the Sequencer service on a Unix socket (and optionally TCP).

Owns: the data directory's lifecycle (``init_data_dir``, the pid lock that keeps two
processes off one data directory), OID blocks handed to app processes, and the Sequencer
backend that turns service calls into runtime calls.
Must not import: ``adapter``.
Called by: the CLI's ``serve`` (main thread: start, wait, stop), gRPC threads (the backend
methods), tests and the embedded mode.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import threading
import time
from concurrent import futures
from concurrent.futures import Future
from pathlib import Path
from typing import Final

import apsw
import grpc

from relstorage_paxos import config
from relstorage_paxos.config import NodeSettings
from relstorage_paxos.errors import (
    DataDirError,
    MalformedRecord,
    OutcomeUnknownError,
    RequestRejectedError,
)
from relstorage_paxos.http_status import StatusHttpServer
from relstorage_paxos.lease_board import LeaseBoardWriter
from relstorage_paxos.log.sqlite_store import SqliteLogStore
from relstorage_paxos.replica import (
    Allocated,
    AllocateOids,
    ExpireLeases,
    ExpireNodes,
    Record,
    Replica,
    decode_record,
    earliest_lease_until_us,
    encode_outcome,
    encode_record,
    nodes_with_requests,
)
from relstorage_paxos.runtime.clock import SystemClock
from relstorage_paxos.runtime.driver import Applied, NodeRuntime, RuntimeOptions
from relstorage_paxos.transport.peer import PeerTransport
from relstorage_paxos.transport.sequencer import (
    PeerView,
    SequencerService,
    StatusView,
    add_to_server,
)

logger = logging.getLogger(__name__)

OID_BLOCK: Final = 1000
"""OIDs a node reserves per AllocateOids record and hands out to its app processes."""

SOFTWARE_VERSION: Final = "0.1.0.dev0"

HOUSEKEEPING_S: Final = 0.1
"""How often the leader looks for object locks whose lease has run out (ExpireLeases) or
whose node fell silent (ExpireNodes), DESIGN.md §3: a lock outlives either by at most this
plus one proposal."""
HOUSEKEEPING_PROPOSAL_TIMEOUT_S: Final = 5.0
CUT_OFF_REPEAT_S: Final = 60.0
CATCH_UP_REPORT_SLOTS: Final = 1000
CATCH_UP_REPORT_S: Final = 5.0


def init_data_dir(data_dir: Path, settings: NodeSettings) -> None:
    """Create a node's data directory: settings, an empty log, an empty replica in the
    cluster's history mode. Refuses a directory that already holds a node."""
    config.validate(settings, "node settings")
    data_dir.mkdir(parents=True, exist_ok=True)
    settings_file = config.settings_path(data_dir)
    if settings_file.exists() or (data_dir / config.LOG_FILE).exists():
        raise DataDirError(
            f"{data_dir} already holds a node ({settings_file.name} or {config.LOG_FILE} "
            "exists); choose an empty directory"
        )
    (data_dir / config.SNAPSHOT_DIR).mkdir(exist_ok=True)
    SqliteLogStore(
        data_dir / config.LOG_FILE,
        cluster_id=settings.cluster_id,
        node_id=settings.node_id,
        create=True,
    ).close()
    Replica.open(data_dir / config.REPLICA_FILE, settings.keep_history).close()
    tmp = settings_file.with_suffix(".tmp")
    tmp.write_text(config.dump(settings))
    os.replace(tmp, settings_file)


class _PidLock:
    """``node.pid``, locked with flock for as long as the node runs: a second process on the
    same data directory is refused, and a lock left by a killed process is simply taken over
    (the kernel released it when that process died)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / config.LOCK_FILE
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(self._fd)
            raise DataDirError(
                f"{data_dir} is in use by a running node (pid {holder}, lock {self.path}); "
                "stop it first, or give this node its own data directory"
            ) from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        os.close(self._fd)

    @staticmethod
    def holder(data_dir: Path) -> int | None:
        """The pid of the node running on ``data_dir``, or ``None`` when none holds the
        lock (a pid left in the file by a process that is gone is not believed)."""
        path = data_dir / config.LOCK_FILE
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                text = os.pread(fd, 32, 0).decode(errors="replace").strip()
                return int(text) if text.isdigit() else None
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)


def running_node_pid(data_dir: Path) -> int | None:
    """The pid of the node serving ``data_dir`` right now, if any (``relstorage-paxos
    stop``)."""
    return _PidLock.holder(data_dir)


class NodeServer:
    """A running node. ``start()`` then ``stop()``; also the Sequencer's backend."""

    def __init__(self, data_dir: Path, *, runtime_options: RuntimeOptions | None = None):
        self.data_dir = data_dir
        self.settings = config.load(data_dir)
        self.cluster_id = self.settings.cluster_id
        s = self.settings
        self._lock = _PidLock(data_dir)
        self._started_at = time.monotonic()
        self._oid_lock = threading.Lock()
        self._oid_next = 0
        self._oid_end = 0
        self._grpc: grpc.Server | None = None
        self._http: StatusHttpServer | None = None
        self._stopping = threading.Event()
        self._cut_off_since: float | None = None
        self._catch_up_from: tuple[float, int] | None = None
        self._catch_up_reported = 0.0
        self._next_cut_off_warning = 0.0
        self._housekeeping = threading.Thread(
            target=self._housekeeping_loop, name=f"housekeeping-{s.node_id}", daemon=True
        )
        try:
            self._log_store = SqliteLogStore(
                data_dir / config.LOG_FILE, cluster_id=s.cluster_id, node_id=s.node_id
            )
            self._set_aside_if_damaged(data_dir / config.REPLICA_FILE)
            self._replica = Replica.open(data_dir / config.REPLICA_FILE, s.keep_history)
            snapshot_dir = data_dir / config.SNAPSHOT_DIR
            snapshot_dir.mkdir(exist_ok=True)
            self.transport = PeerTransport(
                s.node_id,
                s.cluster_id,
                s.listen_address,
                {n: a for n, a in s.members.items() if n != s.node_id},
                snapshot_source=self._snapshot_source,
                max_message_bytes=s.max_message_bytes,
                on_rejected=self._reject_message,
            )
            status_service = SequencerService(
                self,
                record_bytes_max=s.max_record_bytes,
                status_only=True,
                on_rejected=self._reject_request,
            )
            self.transport.add_service(lambda server: add_to_server(server, status_service))
            self.runtime = NodeRuntime(
                s.node_options(),
                runtime_options
                or RuntimeOptions(
                    tick_s=s.tick_s,
                    compact_every_slots=s.compact_every_slots,
                    compact_keep_slots=s.compact_keep_slots,
                    cut_off_ticks=2 * s.node_options().election_timeout_ticks,
                ),
                self._log_store,
                self._replica,
                self.transport,
                SystemClock(),
                snapshot_dir=snapshot_dir,
                fetch_snapshot=self._fetch_snapshot,
                lease_board=LeaseBoardWriter(data_dir) if s.read_lease_s else None,
            )
        except BaseException:
            self._lock.release()
            raise

    def _set_aside_if_damaged(self, path: Path) -> None:
        """Move a replica that fails SQLite's quick check (and its WAL) aside, kept for
        forensics: the node starts with an empty one, which the log replays, or a peer's
        snapshot replaces when the log no longer reaches back (``NodeRuntime``)."""
        problem = Replica.damage(path)
        if problem is None:
            return
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        aside = path.with_name(f"{path.name}.damaged-{stamp}")
        for suffix in ("", "-wal", "-shm"):
            source = Path(f"{path}{suffix}")
            if source.exists():
                source.rename(f"{aside}{suffix}")
        logger.error(
            "node %d: replica %s is damaged (%s); set aside as %s, rebuilding it from the "
            "log or a peer's snapshot",
            self.settings.node_id,
            path,
            problem,
            aside,
        )

    @property
    def socket_path(self) -> Path:
        return self.data_dir / config.SOCKET_FILE

    def start(self) -> None:
        self.runtime.start()
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=32, thread_name_prefix="sequencer"),
            options=[
                ("grpc.so_reuseport", 0),
                ("grpc.max_send_message_length", self.settings.max_message_bytes),
                ("grpc.max_receive_message_length", self.settings.max_message_bytes),
            ],
        )
        add_to_server(
            server,
            SequencerService(
                self,
                record_bytes_max=self.settings.max_record_bytes,
                on_rejected=self._reject_request,
            ),
        )
        self.socket_path.unlink(missing_ok=True)
        old_umask = os.umask(0o177)  # the socket is created 0600: local app processes only
        try:
            server.add_insecure_port(f"unix:{self.socket_path}")
        finally:
            os.umask(old_umask)
        if self.settings.sequencer_tcp:
            server.add_insecure_port(self.settings.sequencer_tcp)
        server.start()
        self._grpc = server
        self._housekeeping.start()
        if self.settings.http_status:
            self._http = StatusHttpServer(
                self.settings.http_status,
                lambda: self.status().to_json(),
                self.runtime.metrics.registry,
            )
            self._http.start()
        logger.info(
            "node %d of cluster %s serving: peers on %s, sequencer on %s",
            self.settings.node_id,
            self.cluster_id,
            self.settings.listen_address,
            self.socket_path,
        )

    def stop(self) -> None:
        self._stopping.set()
        if self._http is not None:
            self._http.stop()
            self._http = None
        if self._housekeeping.is_alive():
            self._housekeeping.join()
        # The runtime first: it answers every waiting call (outcome unknown), so no Sequencer
        # thread stays blocked on a proposal that can no longer complete.
        self.runtime.stop()
        if self._grpc is not None:
            self._grpc.stop(grace=1.0).wait()
            self._grpc = None
        self.runtime.replica.close()
        self._log_store.close()
        self.socket_path.unlink(missing_ok=True)
        self._lock.release()

    # ------------------------------------------------------------------ lock leases

    def _housekeeping_loop(self) -> None:
        """Every ``HOUSEKEEPING_S``: warn when cut off from the majority, and, while this
        node leads, release the object locks of dead holders.

        - ExpireNodes for the nodes the core reports silent (``Node.silent_peers``) that
          hold or await locks: a dead or cut-off node's transactions stop blocking the
          others about a node timeout after it fell silent.
        - ExpireLeases{now} when a lock's lease has run out: the backstop for a process that
          died while its node lives. The time is the leader's clock, read once and written
          into the record; holders chose their leases on their own clocks, so clock skew
          between nodes shortens or lengthens leases by as much (the lease length leaves
          room for that)."""
        db = apsw.Connection(
            str(self.data_dir / config.REPLICA_FILE), flags=apsw.SQLITE_OPEN_READONLY
        )
        try:
            while not self._stopping.wait(HOUSEKEEPING_S):
                self._warn_if_cut_off()
                self._report_catch_up()
                status = self.runtime.status
                if status.role != "leader" or self.runtime.failure is not None:
                    continue
                holding = status.silent_peers & nodes_with_requests(db)
                if holding:
                    self._propose_housekeeping(
                        b"expire-nodes-", ExpireNodes(tuple(sorted(holding)))
                    )
                earliest = earliest_lease_until_us(db)
                now_us = time.time_ns() // 1000
                if earliest is not None and earliest < now_us:
                    self._propose_housekeeping(b"expire-", ExpireLeases(now_us))
        except Exception:
            logger.exception("node %d: housekeeping stopped", self.settings.node_id)
        finally:
            db.close()

    def _propose_housekeeping(self, prefix: bytes, body: ExpireLeases | ExpireNodes) -> None:
        request_id = prefix + os.urandom(16)
        record = encode_record(Record(request_id, body))
        try:
            applied = self.runtime.propose(request_id, record).result(
                timeout=HOUSEKEEPING_PROPOSAL_TIMEOUT_S
            )
        except futures.TimeoutError:
            logger.info("node %d: %s not applied yet; will retry", self.settings.node_id, body)
            return
        logger.info("node %d: %s: %s", self.settings.node_id, body, applied.outcome)

    # ------------------------------------------------------------------ snapshots

    def _snapshot_source(self, min_slot: int) -> tuple[Path, int]:
        """A fresh snapshot of our replica for a peer (called on a gRPC thread: the backup
        reads through its own connection and never blocks the applier)."""
        # One file per serving thread, replaced by that thread's next snapshot: at most one
        # stale copy per thread stays on disk.
        path = self.data_dir / config.SNAPSHOT_DIR / f"outgoing-{threading.get_ident()}.sqlite3"
        path.unlink(missing_ok=True)
        slot = Replica.snapshot_file(self.data_dir / config.REPLICA_FILE, path)
        return path, slot

    def _fetch_snapshot(self, peer: int, min_slot: int, dest: Path) -> int:
        return self.transport.fetch_snapshot(peer, min_slot, dest, timeout_s=600.0)

    # ------------------------------------------------------------------ Sequencer backend

    def _reject_message(self, reason: str) -> None:
        self.runtime.metrics.reject_message(reason)

    def _reject_request(self, reason: str) -> None:
        self.runtime.metrics.reject_request(reason)

    def propose(self, request_id: bytes, record: bytes) -> Future[tuple[int, bytes]]:
        try:
            decode_record(record)
        except MalformedRecord as exc:
            raise RequestRejectedError(f"malformed record: {exc}") from None
        return _map_future(self.runtime.propose(request_id, record))

    def read_index(self) -> Future[int]:
        return self.runtime.read_index()

    def wait_applied(self, slot: int, timeout_s: float) -> int:
        return self.runtime.wait_applied(slot, timeout_s)

    def allocate_oids(self, count: int, timeout_s: float) -> tuple[int, int]:
        with self._oid_lock:
            if self._oid_next >= self._oid_end:
                self._refill_oids(max(count, OID_BLOCK), timeout_s)
            start = self._oid_next
            granted = min(count, self._oid_end - start)
            self._oid_next += granted
            return start, granted

    def _refill_oids(self, count: int, timeout_s: float) -> None:
        request_id = b"oids-" + os.urandom(16)
        record = encode_record(
            Record(request_id, AllocateOids(node_id=self.settings.node_id, count=count))
        )
        future = self.runtime.propose(request_id, record)
        try:
            applied = future.result(timeout=timeout_s)
        except futures.TimeoutError:
            raise OutcomeUnknownError(
                "no OID block in time: this node hears no leader with a quorum"
            ) from None
        outcome = applied.outcome
        assert isinstance(outcome, Allocated), outcome
        self._oid_next, self._oid_end = outcome.start, outcome.start + outcome.count

    def _peer_views(self) -> tuple[PeerView, ...]:
        now = time.monotonic()
        silent_after_s = 3 * self.settings.election_timeout_s
        views = []
        for node_id, address in sorted(self.settings.members.items()):
            if node_id == self.settings.node_id:
                continue
            heard = self.runtime.last_heard.get(node_id)
            ago = None if heard is None else now - heard
            views.append(
                PeerView(
                    node_id,
                    address,
                    ago is not None and ago < silent_after_s,
                    None if ago is None else int(ago * 1000),
                )
            )
        return tuple(views)

    def _report_catch_up(self) -> None:
        """While the replica is far behind what is chosen (a restart after a long absence,
        a new node), log its progress every ``CATCH_UP_REPORT_S``: slots to go, rate, and
        an estimate of the time left."""
        st = self.runtime.status
        behind = st.known_chosen_slot - st.applied_slot
        now = time.monotonic()
        if behind < CATCH_UP_REPORT_SLOTS:
            if self._catch_up_from is not None:
                logger.info("node %d caught up at slot %d", st.node_id, st.applied_slot)
            self._catch_up_from = None
            return
        if self._catch_up_from is None:
            self._catch_up_from = (now, st.applied_slot)
            self._catch_up_reported = now
            return
        if now - self._catch_up_reported < CATCH_UP_REPORT_S:
            return
        self._catch_up_reported = now
        started, first_slot = self._catch_up_from
        rate = (st.applied_slot - first_slot) / max(now - started, 1e-9)
        eta = f"about {behind / rate:.0f} s left" if rate > 0 else "no progress yet"
        logger.info(
            "node %d catching up: applied slot %d of %d chosen (%d to go), %.0f slots/s, %s",
            st.node_id,
            st.applied_slot,
            st.known_chosen_slot,
            behind,
            rate,
            eta,
        )

    def _warn_if_cut_off(self) -> None:
        """Say plainly when this node has heard from no majority for ten election timeouts
        (and again every ``CUT_OFF_REPEAT_S``): nothing can be committed through it."""
        peers = self._peer_views()
        heard = 1 + sum(p.reachable for p in peers)
        if heard > len(self.settings.members) // 2:
            self._cut_off_since = None
            return
        now = time.monotonic()
        if self._cut_off_since is None:
            self._cut_off_since = now
            return
        patience_s = 10 * self.settings.election_timeout_s
        if now - self._cut_off_since < patience_s or now < self._next_cut_off_warning:
            return
        self._next_cut_off_warning = now + CUT_OFF_REPEAT_S
        silent = ", ".join(f"node {p.node_id} at {p.address}" for p in peers if not p.reachable)
        logger.warning(
            "node %d hears from no majority of the cluster (silent: %s) and cannot commit: "
            "check that those nodes run, that their addresses in %s are right, and that this "
            "machine can reach them (firewall); `relstorage-paxos status` shows each node",
            self.settings.node_id,
            silent,
            config.settings_path(self.data_dir),
        )

    def status(self) -> StatusView:
        st = self.runtime.status
        failure = self.runtime.failure
        return StatusView(
            node_id=st.node_id,
            cluster_id=self.cluster_id,
            role=st.role,
            leader_id=st.leader_id,
            ballot=st.ballot,
            chosen_slot=st.commit_slot,
            applied_slot=st.applied_slot,
            truncated_slot=st.truncated_slot,
            last_tid=st.last_tid,
            running_hash=st.running_hash,
            serving=failure is None,
            not_serving_reason="" if failure is None else f"stopped: {failure}",
            uptime_s=time.monotonic() - self._started_at,
            software_version=SOFTWARE_VERSION,
            peers=self._peer_views(),
            pid=os.getpid(),
            **self._disk_use(),
        )

    def _disk_use(self) -> dict[str, int]:
        """Sizes of the data directory's files (those that vanish while listed, such as a
        snapshot being replaced, are skipped) and the free space of its filesystem."""
        total = wal = 0
        for path in self.data_dir.rglob("*"):
            try:
                size = path.stat().st_size if path.is_file() else 0
            except FileNotFoundError:
                continue
            total += size
            if path.name.endswith("-wal"):
                wal += size
        free = shutil.disk_usage(self.data_dir).free
        return {"data_dir_bytes": total, "wal_bytes": wal, "disk_free_bytes": free}


def _map_future(source: Future[Applied]) -> Future[tuple[int, bytes]]:
    target: Future[tuple[int, bytes]] = Future()

    def done(f: Future[Applied]) -> None:
        if f.cancelled():
            target.cancel()
        elif (exc := f.exception()) is not None:
            target.set_exception(exc)
        else:
            applied = f.result()
            target.set_result((applied.slot, encode_outcome(applied.outcome)))

    source.add_done_callback(done)
    return target
