"""The runtime: the one thread that owns a node's core, log store and replica.

Owns: the clock (ticks), the inbox, the Ready loop (persist, then send, then apply, then
advance), the waiters of local proposals and read barriers, snapshot installs, log
compaction.
Must not import: ``adapter``; generated code (the transport translates).
Called by: its own loop thread for everything that touches the core, the log store or the
replica; any thread for the public methods, which only enqueue work or read published state.

A waiting proposal is answered only once its record is applied on this node and its slot is
finished (``Node.finished``: every read-lease holder has it), with the outcome the replica
recorded; a proposal whose fate is unknown is never reported as failed: its future simply
stays pending until it is applied (the runtime re-proposes it with the same request id every
``retry_ticks``) or the caller stops waiting.

Read barriers are answered from this node's read lease when it holds one (no message at
all), else by a ReadIndex round; the lease's floor and end go on the lease board before any
message that the floor covers leaves (``lease_board.py``).
"""

from __future__ import annotations

import logging
import os
import queue
import random
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

from relstorage_paxos.core import (
    Message,
    Node,
    NodeOptions,
    ProposalTooLarge,
    Ready,
    Role,
    SnapshotRequest,
)
from relstorage_paxos.errors import (
    NodeUnavailableError,
    NoQuorumError,
    OutcomeUnknownError,
    PaxosError,
    RecordTooLargeError,
    ReplicaBehindLogError,
)
from relstorage_paxos.lease_board import LeaseBoardWriter
from relstorage_paxos.log.store import LogStore
from relstorage_paxos.replica import Conflict, Outcome, Queued, RecordedOutcome, Replica
from relstorage_paxos.runtime.clock import Clock
from relstorage_paxos.runtime.metrics import NodeMetrics
from relstorage_paxos.transport.port import Transport

logger = logging.getLogger(__name__)


SnapshotFetcher = Callable[[int, int, Path], int]
"""``fetch(peer_id, min_slot, dest) -> slot``: download a peer's snapshot covering at least
``min_slot`` to ``dest``; runs on a helper thread, may raise."""


@dataclass(frozen=True, slots=True)
class RuntimeOptions:
    tick_s: float = 0.05
    retry_ticks: int = 20
    """A local proposal or read not answered for this many ticks is sent again (same id)."""
    compact_every_slots: int = 10_000
    compact_keep_slots: int = 2_000
    """Slots kept in the log behind the replica, so that briefly lagging peers catch up from
    the log instead of a snapshot."""
    compact_every_bytes: int = 1 << 30
    """Compact too once the applied slots still in the log hold this many bytes: the core
    keeps its whole log in memory, and large records would fill it long before
    ``compact_every_slots``."""
    compact_keep_bytes: int = 256 << 20
    """Of the ``compact_keep_slots`` kept, only as many of the newest as hold this many
    bytes."""
    cut_off_ticks: int = 40
    """A node that has known no leader for this many ticks fails read barriers at once
    (``NoQuorumError``): a normal election ends well within it (the server sets it to two
    election timeouts), and a poll waiting out its whole timeout would only stall the
    application."""


@dataclass(frozen=True, slots=True)
class Applied:
    """The answer to a proposal: the slot its record was applied in and what it did."""

    slot: int
    outcome: RecordedOutcome


@dataclass(frozen=True, slots=True)
class NodeStatus:
    node_id: int
    role: str
    leader_id: int | None
    ballot: str
    commit_slot: int
    known_chosen_slot: int
    applied_slot: int
    truncated_slot: int
    last_tid: int
    running_hash: bytes
    silent_peers: frozenset[int] = frozenset()
    """While leading: the peers not heard from for a node timeout (``Node.silent_peers``)."""


@dataclass(slots=True)
class _Waiting:
    payload: bytes
    futures: list[Future[Applied]]
    last_sent_tick: int


class NodeRuntime:
    def __init__(
        self,
        node_options: NodeOptions,
        options: RuntimeOptions,
        log_store: LogStore,
        replica: Replica,
        transport: Transport,
        clock: Clock,
        *,
        snapshot_dir: Path,
        fetch_snapshot: SnapshotFetcher | None = None,
        seed: int | None = None,
        lease_board: LeaseBoardWriter | None = None,
    ) -> None:
        self.node_id = node_options.node_id
        self.options = options
        self._log_store = log_store
        self._replica = replica
        self._transport = transport
        self._clock = clock
        self._snapshot_dir = snapshot_dir
        self._fetch_snapshot = fetch_snapshot
        self.metrics = NodeMetrics(self.node_id)
        state = log_store.load()
        if replica.applied_slot < state.truncated:
            peers = sorted(node_options.members - {self.node_id})
            self._replica = self._rebuild_from_peer(state.truncated, peers)
        self._core = Node(node_options, random.Random(seed), state, self._replica.applied_slot)
        self._inbox: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._proposals: dict[bytes, _Waiting] = {}
        self._lock_waiters: dict[bytes, list[Future[Applied]]] = {}
        self._reads: dict[bytes, tuple[Future[int], int]] = {}
        self._read_barriers: list[tuple[int, Future[int]]] = []
        self._lease_barriers: list[Future[int]] = []
        """Barriers waiting for this node's lease floor to be applied."""
        self._unfinished: list[tuple[int, Future[Applied], Applied]] = []
        """Answers applied here, held until their slot is finished."""
        self._applied_waiters: list[tuple[int, threading.Event]] = []
        self._lease_board = lease_board
        self._read_prefix = f"read-{self.node_id}-{os.urandom(8).hex()}-"
        """Read request ids are unique to this incarnation: a ReadIndex reply meant for an
        earlier process (the same counter values) must not answer this one's barriers."""
        self._read_counter = 0
        self._ticks = 0
        self._leaderless_ticks = 0
        self._applied_sizes: deque[tuple[int, int]] = deque()
        """(slot, bytes) of the slots applied since start that the log still holds."""
        self._applied_bytes = 0
        self._snapshot_in_progress = False
        self._stopping = threading.Event()
        self._stopped = False
        self._enqueue_lock = threading.Lock()
        self._thread = threading.Thread(
            target=self._run, name=f"paxos-node-{self.node_id}", daemon=True
        )
        self._failure: BaseException | None = None
        self.last_heard: dict[int, float] = {}
        """Peer id -> clock time of the last message received from it (written by the
        transport's threads; one dict store is atomic)."""
        self._last_leader: int | None = None
        self.status = self._make_status()

    # ------------------------------------------------------------------ public, any thread

    def start(self) -> None:
        self._transport.start(self.deliver)
        self._thread.start()

    def stop(self) -> None:
        """Stop the loop, then answer every waiter: proposals with ``OutcomeUnknownError``
        (they may still be chosen: the caller retries with the same request id, elsewhere or
        after a restart), reads with ``NodeUnavailableError``. Nobody is left waiting on a
        node that is gone, so a server thread blocked on a future returns at once."""
        self._stopping.set()
        self._inbox.put(lambda: None)
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join()
        self._shut_down()

    def _shut_down(self) -> None:
        """Refuse new work and answer every waiter; from ``stop``, or from the loop itself
        when it fails (an application in the node's process must not wait out its timeouts
        on a loop that is gone). Only the first call does anything."""
        with self._enqueue_lock:
            if self._stopped:
                return
            self._stopped = True
        self._transport.close()
        while True:  # work queued before the stop: its waiters are answered below
            try:
                self._inbox.get_nowait()()
            except queue.Empty:
                break
        unknown = OutcomeUnknownError(
            f"node {self.node_id} stopped before the outcome was known; "
            "retry with the same request id"
        )
        gone = self._gone()
        for waiting in self._proposals.values():
            for future in waiting.futures:
                future.set_exception(unknown)
        for futures in self._lock_waiters.values():
            for future in futures:
                future.set_exception(unknown)
        for read_future, _ in self._reads.values():
            read_future.set_exception(gone)
        for _, barrier in self._read_barriers:
            barrier.set_exception(gone)
        for barrier in self._lease_barriers:
            barrier.set_exception(gone)
        for _, future, _ in self._unfinished:
            future.set_exception(unknown)
        for _, event in self._applied_waiters:
            event.set()
        self._proposals.clear()
        self._lock_waiters.clear()
        self._reads.clear()
        self._read_barriers.clear()
        self._lease_barriers.clear()
        self._unfinished.clear()
        self._applied_waiters.clear()
        if self._lease_board is not None:
            self._lease_board.close()

    def _enqueue(self, work: Callable[[], None], refuse: Callable[[], None]) -> None:
        """Hand ``work`` to the loop, or call ``refuse`` once the node has stopped."""
        with self._enqueue_lock:
            if not self._stopped:
                self._inbox.put(work)
                return
        refuse()

    def _gone(self) -> NodeUnavailableError:
        failure = self._failure
        cause = f": {type(failure).__name__}: {failure}" if failure is not None else ""
        return NodeUnavailableError(f"node {self.node_id} stopped{cause}")

    @property
    def replica(self) -> Replica:
        """The replica in use (a snapshot install replaces it); close it after ``stop``."""
        return self._replica

    @property
    def failure(self) -> BaseException | None:
        """Why the loop stopped on its own (a failed fsync, a replica error), if it did."""
        return self._failure

    def deliver(self, message: Message) -> None:
        self.last_heard[message.src] = self._clock.monotonic()
        self._inbox.put(lambda: self._step(message))

    def propose(self, request_id: bytes, payload: bytes) -> Future[Applied]:
        """Propose a record; the future resolves once it is applied here (see module doc)."""
        future: Future[Applied] = Future()
        self._enqueue(
            lambda: self._propose(request_id, payload, future),
            lambda: future.set_exception(self._gone()),
        )
        return future

    def read_index(self) -> Future[int]:
        """A linearizable read barrier: resolves with a slot this replica has applied and
        that covers every commit finished anywhere before the call."""
        future: Future[int] = Future()
        self._enqueue(
            lambda: self._read_index(future),
            lambda: future.set_exception(self._gone()),
        )
        return future

    def wait_applied(self, slot: int, timeout_s: float) -> int:
        """Wait until the replica has applied ``slot``; returns the applied slot then (or
        what it is when the timeout runs out)."""
        event = threading.Event()
        self._enqueue(lambda: self._add_applied_waiter(slot, event), event.set)
        event.wait(timeout_s)
        return self.status.applied_slot

    # ------------------------------------------------------------------ loop thread

    def _run(self) -> None:
        tick_s = self.options.tick_s
        next_tick = self._clock.monotonic() + tick_s
        try:
            while not self._stopping.is_set():
                timeout = max(0.0, next_tick - self._clock.monotonic())
                try:
                    self._inbox.get(timeout=timeout)()
                    while True:  # take everything queued now: one Ready for all of it
                        self._inbox.get_nowait()()
                except queue.Empty:
                    pass
                now = self._clock.monotonic()
                if now >= next_tick:
                    self._tick()
                    next_tick = max(next_tick + tick_s, now)
                self._process_ready()
        except BaseException as exc:
            logger.critical("node %d stops: %s", self.node_id, exc, exc_info=True)
            self._failure = exc
            self._stopping.set()
            self._shut_down()

    def _now_us(self) -> int:
        return int(self._clock.monotonic() * 1_000_000)

    def _step(self, message: Message) -> None:
        """Read leases need the time each message is handled at, not its batch's start: a
        reply registered at a time before it was sent would shorten a holder's lease."""
        self._core.set_time(self._now_us())
        self._core.step(message)

    def _tick(self) -> None:
        self._ticks += 1
        self._core.set_time(self._now_us())
        self._core.tick()
        if self._core.leader is not None:
            self._leaderless_ticks = 0
        else:
            self._leaderless_ticks += 1
            if self._cut_off():
                self._fail_reads()
        retry = self.options.retry_ticks
        for request_id, waiting in self._proposals.items():
            if self._ticks - waiting.last_sent_tick >= retry:
                waiting.last_sent_tick = self._ticks
                self._core.propose(request_id, waiting.payload)
        for request_id, (_, sent) in list(self._reads.items()):
            if self._ticks - sent >= retry:
                self._reads[request_id] = (self._reads[request_id][0], self._ticks)
                self._core.read_index(request_id)

    def _process_ready(self) -> None:
        while self._core.has_ready():
            ready = self._core.ready()
            self._log_store.persist(ready.persist)  # fsyncs when ready.persist.must_sync
            self._publish_lease()
            if ready.messages:
                self._transport.send(ready.messages)
            self._apply(ready)
            self._core.advance(ready)
            if ready.snapshot_request is not None:
                self._start_snapshot_fetch(ready.snapshot_request)
            self._maybe_compact()
        # A follower learns ``finished``, and time ends leases, without a Ready of its own.
        self._publish_lease()
        self._resolve_finished()
        if self._lease_barriers:
            self._resolve_lease_barriers(self._replica.applied_slot)
        self.status = self._make_status()

    def _apply(self, ready: Ready) -> None:
        metrics = self.metrics
        for sv in ready.chosen:
            proposals = [(p.request_id, p.payload) for p in sv.value]
            started = self._clock.monotonic()
            outcomes = self._replica.apply_slot(sv.slot, proposals)
            size = sum(len(request_id) + len(payload) for request_id, payload in proposals)
            self._applied_sizes.append((sv.slot, size))
            self._applied_bytes += size
            metrics.apply_seconds.observe(self._clock.monotonic() - started)
            metrics.slots_applied.inc()
            metrics.records_applied.inc(len(proposals))
            for (request_id, _), outcome in zip(proposals, outcomes, strict=True):
                if isinstance(outcome, Conflict):
                    metrics.conflicts.inc()
                self._resolve_proposal(request_id, sv.slot, outcome)
            self._resolve_lock_waiters(sv.slot)
        self._resolve_finished()
        for rs in ready.read_states:
            entry = self._reads.pop(rs.request_id, None)
            if entry is not None:
                self._read_barriers.append((rs.slot, entry[0]))
        self._resolve_barriers()

    def _resolve_proposal(self, request_id: bytes, slot: int, outcome: Outcome) -> None:
        waiting = self._proposals.pop(request_id, None)
        if waiting is None:
            return
        recorded = self._replica.outcome(request_id)
        assert recorded is not None, request_id
        if isinstance(recorded, Queued):
            self._lock_waiters.setdefault(request_id, []).extend(waiting.futures)
            return
        for future in waiting.futures:
            self._answer(future, Applied(slot, recorded))

    def _resolve_lock_waiters(self, slot: int) -> None:
        for request_id in list(self._lock_waiters):
            recorded = self._replica.outcome(request_id)
            if recorded is not None and not isinstance(recorded, Queued):
                for future in self._lock_waiters.pop(request_id):
                    self._answer(future, Applied(slot, recorded))

    def _answer(self, future: Future[Applied], applied: Applied) -> None:
        """Answer once ``applied.slot`` is finished (every read-lease holder has it): a
        commit reported before that could be missed by a lease read on another node."""
        if applied.slot <= self._core.finished:
            future.set_result(applied)
        else:
            self._unfinished.append((applied.slot, future, applied))

    def _resolve_finished(self) -> None:
        finished = self._core.finished
        if not self._unfinished:
            return
        keep: list[tuple[int, Future[Applied], Applied]] = []
        for slot, future, applied in self._unfinished:
            if slot <= finished:
                future.set_result(applied)
            else:
                keep.append((slot, future, applied))
        self._unfinished = keep

    def _publish_lease(self) -> None:
        if self._lease_board is None:
            return
        lease = self._core.lease_read()
        if lease is None:
            self._lease_board.publish(0, 0)
        else:
            floor, until_us = lease
            self._lease_board.publish(until_us, floor)

    def _resolve_barriers(self) -> None:
        applied = self._replica.applied_slot
        if self._lease_barriers:
            self._resolve_lease_barriers(applied)
        keep: list[tuple[int, Future[int]]] = []
        for slot, future in self._read_barriers:
            if slot <= applied:
                future.set_result(applied)
            else:
                keep.append((slot, future))
        self._read_barriers = keep
        waiting: list[tuple[int, threading.Event]] = []
        for slot, event in self._applied_waiters:
            if slot <= applied:
                event.set()
            else:
                waiting.append((slot, event))
        self._applied_waiters = waiting

    def _resolve_lease_barriers(self, applied: int) -> None:
        """Answer lease barriers whose floor is applied, checking the lease now, after the
        wait; one whose lease ended meanwhile becomes a ReadIndex round."""
        lease = self._core.lease_read()
        barriers, self._lease_barriers = self._lease_barriers, []
        for future in barriers:
            if lease is None:
                self._start_read_index(future)
            elif lease[0] <= applied:
                future.set_result(applied)
            else:
                self._lease_barriers.append(future)

    def _propose(self, request_id: bytes, payload: bytes, future: Future[Applied]) -> None:
        recorded = self._replica.outcome(request_id)
        if recorded is not None and not isinstance(recorded, Queued):
            self._answer(future, Applied(self._replica.applied_slot, recorded))
            return
        if recorded is not None:
            self._lock_waiters.setdefault(request_id, []).append(future)
            return
        waiting = self._proposals.get(request_id)
        if waiting is not None:
            waiting.futures.append(future)
            return
        try:
            self._core.propose(request_id, payload)
        except ProposalTooLarge as exc:
            future.set_exception(RecordTooLargeError.of("a record", exc.size, exc.limit))
            return
        self._proposals[request_id] = _Waiting(payload, [future], self._ticks)
        self.metrics.proposals.inc()

    def _read_index(self, future: Future[int]) -> None:
        self._core.set_time(self._now_us())
        if self._core.lease_read() is not None:
            self._lease_barriers.append(future)
            self._resolve_barriers()
            self.metrics.lease_reads.inc()
        elif self._cut_off():
            future.set_exception(self._no_quorum())
        else:
            self._start_read_index(future)

    def _cut_off(self) -> bool:
        return self._leaderless_ticks >= self.options.cut_off_ticks

    def _no_quorum(self) -> NoQuorumError:
        seconds = self._leaderless_ticks * self.options.tick_s
        return NoQuorumError(
            f"node {self.node_id} has known no leader for {seconds:.1f} s: it cannot reach"
            " a quorum, so no read barrier"
        )

    def _fail_reads(self) -> None:
        if self._reads:
            error = self._no_quorum()
            for future, _ in self._reads.values():
                future.set_exception(error)
            self._reads.clear()

    def _start_read_index(self, future: Future[int]) -> None:
        self._read_counter += 1
        request_id = f"{self._read_prefix}{self._read_counter}".encode()
        self._reads[request_id] = (future, self._ticks)
        self._core.read_index(request_id)

    def _add_applied_waiter(self, slot: int, event: threading.Event) -> None:
        self._applied_waiters.append((slot, event))
        self._resolve_barriers()

    # ------------------------------------------------------------------ snapshots

    def _start_snapshot_fetch(self, request: SnapshotRequest) -> None:
        if self._snapshot_in_progress or self._fetch_snapshot is None:
            return
        self._snapshot_in_progress = True
        fetch = self._fetch_snapshot
        dest = self._snapshot_dir / f"incoming-{request.peer}.sqlite3"

        def work() -> None:
            try:
                slot = fetch(request.peer, request.min_slot, dest)
            except Exception as exc:
                logger.warning(
                    "node %d: snapshot from node %d failed: %s", self.node_id, request.peer, exc
                )
                self._inbox.put(self._snapshot_failed)
                return
            self._inbox.put(lambda: self._install_snapshot(dest, slot))

        threading.Thread(target=work, name=f"snapshot-fetch-{self.node_id}", daemon=True).start()

    def _rebuild_from_peer(self, truncated: int, peers: Sequence[int]) -> Replica:
        """Replace a replica the log cannot replay (behind its truncation point: an old copy
        of the file restored, or the file lost and recreated empty) by the first peer's
        snapshot that covers the truncation point, before the node starts."""
        replica = self._replica
        problem = (
            f"node {self.node_id}: replica {replica.path} at slot {replica.applied_slot} is "
            f"behind the log's truncation point {truncated}: the log cannot replay it"
        )
        fetch = self._fetch_snapshot
        failures: list[str] = []
        for peer in peers:
            if fetch is None:
                break
            dest = self._snapshot_dir / f"incoming-{peer}.sqlite3"
            try:
                slot = fetch(peer, truncated, dest)
            except PaxosError as exc:
                failures.append(str(exc))
                continue
            logger.warning("%s; replacing it by node %d's snapshot of slot %d", problem, peer, slot)
            path, keep_history = replica.path, replica.keep_history
            replica.close()
            rebuilt = Replica.install_snapshot(dest, path, keep_history)
            dest.unlink(missing_ok=True)
            self.metrics.snapshots_installed.inc()
            return rebuilt
        raise ReplicaBehindLogError(
            f"{problem}, and no peer sent a snapshot covering it"
            + (f" ({'; '.join(failures)})" if failures else " (no peer to ask)")
            + ": start a peer that has one, or restore the replica file that goes with this log"
        )

    def _snapshot_failed(self) -> None:
        self._snapshot_in_progress = False

    def _install_snapshot(self, path: Path, slot: int) -> None:
        self._snapshot_in_progress = False
        if slot <= self._replica.applied_slot:
            path.unlink(missing_ok=True)
            return
        replica_path = self._replica.path
        keep_history = self._replica.keep_history
        self._replica.close()
        self._replica = Replica.install_snapshot(path, replica_path, keep_history)
        path.unlink(missing_ok=True)
        logger.info("node %d installed a snapshot at slot %d", self.node_id, slot)
        self.metrics.snapshots_installed.inc()
        self._core.restore_snapshot(self._replica.applied_slot)
        self._forget_sizes(self._replica.applied_slot)
        self._resolve_barriers()

    def _maybe_compact(self) -> None:
        core = self._core
        opts = self.options
        if (
            core.applied - core.truncated < opts.compact_every_slots
            and self._applied_bytes < opts.compact_every_bytes
        ):
            return
        upto = max(core.applied - opts.compact_keep_slots, self._slot_keeping_bytes())
        if upto <= core.truncated:
            return
        self._replica.sync()
        core.compact(upto)
        self._forget_sizes(upto)

    def _slot_keeping_bytes(self) -> int:
        """The slot to compact up to so that the applied slots after it hold at most
        ``compact_keep_bytes``."""
        kept = 0
        for slot, size in reversed(self._applied_sizes):
            kept += size
            if kept > self.options.compact_keep_bytes:
                return slot
        return 0

    def _forget_sizes(self, upto_slot: int) -> None:
        while self._applied_sizes and self._applied_sizes[0][0] <= upto_slot:
            self._applied_bytes -= self._applied_sizes.popleft()[1]

    # ------------------------------------------------------------------ status

    def _make_status(self) -> NodeStatus:
        core = self._core
        metrics = self.metrics
        if core.leader != self._last_leader and core.leader is not None:
            metrics.leader_changes.inc()
            logger.info(
                "node %d: leader is now node %d (ballot %s)",
                self.node_id,
                core.leader,
                core.promised,
            )
        self._last_leader = core.leader
        metrics.is_leader.set(1 if core.role is Role.LEADER else 0)
        metrics.chosen_slot.set(core.commit)
        metrics.applied_slot.set(self._replica.applied_slot)
        metrics.lag_slots.set(core.commit - self._replica.applied_slot)
        return NodeStatus(
            node_id=self.node_id,
            role=core.role.value,
            leader_id=core.leader if core.role is not Role.PRE_CANDIDATE else None,
            ballot=str(core.promised),
            commit_slot=core.commit,
            known_chosen_slot=core.known_chosen,
            applied_slot=self._replica.applied_slot,
            truncated_slot=core.truncated,
            last_tid=self._replica.last_tid,
            running_hash=self._replica.running_hash,
            silent_peers=core.silent_peers(),
        )
