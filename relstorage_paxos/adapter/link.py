"""One application process's link to one node: the Sequencer client every adapter on that
data directory shares, the embedded node when there is one, and the read barriers.

Owns: the process-wide registry of links by data directory (reference counted, so that every
``RelStorage`` instance and ``new_instance()`` on one data directory shares one client and at
most one embedded node; a node's pid lock would refuse a second one anyway), proposals with
their outcomes decoded, OID blocks, and the consistency checks of DESIGN.md §5.
Must not import: ``core``, ``log``, ``runtime`` (the embedded node comes whole from ``server``).
Called by: any application thread; every method is thread-safe.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from pathlib import Path
from typing import Final

from relstorage_paxos import config
from relstorage_paxos.config import NodeSettings
from relstorage_paxos.errors import (
    NodeUnavailableError,
    PaxosError,
    ReplicaTooStaleError,
    SettingsError,
)
from relstorage_paxos.lease_board import LeaseBoardReader
from relstorage_paxos.replica import Record, RecordedOutcome, decode_outcome, encode_record
from relstorage_paxos.server import NodeServer
from relstorage_paxos.transport.sequencer import SequencerClient

logger = logging.getLogger(__name__)

OIDS_PER_REQUEST: Final = 100
"""OIDs fetched from the node per call; the node itself reserves larger blocks in the log."""

LAG_POLL_S: Final = 0.05
"""How often a ``local`` reader re-asks a node that is not known to be in sync."""

CONNECT_POLL_S: Final = 0.1
"""How often opening a storage re-asks a node that does not answer yet."""


class NodeLink:
    """The link to the node whose data directory is ``data_dir``."""

    def __init__(self, data_dir: Path, *, embedded: bool) -> None:
        self.data_dir = data_dir
        self.settings: NodeSettings = config.load(data_dir)
        self.server: NodeServer | None = None
        if embedded:
            self.server = NodeServer(data_dir)
            self.server.start()
        self.client = SequencerClient(
            f"unix:{data_dir / config.SOCKET_FILE}",
            self.settings.cluster_id,
            max_record_bytes=self.settings.max_record_bytes,
            max_message_bytes=self.settings.max_message_bytes,
        )
        self._barrier = _CoalescedReadIndex(self.client)
        self._board = LeaseBoardReader(data_dir)
        self._lag_lock = threading.Lock()
        self._in_sync_at = -math.inf
        self._checked_at = -math.inf

    @property
    def node_id(self) -> int:
        return self.settings.node_id

    @property
    def replica_path(self) -> Path:
        return self.data_dir / config.REPLICA_FILE

    def propose(self, record: Record, timeout_s: float) -> tuple[int, RecordedOutcome]:
        """Propose ``record``; (slot, outcome) once applied on this node. Raises the
        Sequencer client's errors (``OutcomeUnknownError`` means: retry, same request id)."""
        slot, outcome = self.client.propose(record.request_id, encode_record(record), timeout_s)
        return slot, decode_outcome(outcome)

    def new_oids(self) -> list[int]:
        """A block of fresh OIDs, largest first (RelStorage's allocators' order)."""
        start, count = self.client.allocate_oids(OIDS_PER_REQUEST)
        return list(range(start + count - 1, start - 1, -1))

    def lease_floor(self) -> int | None:
        """While the node holds a read lease: the slot a replica snapshot taken from now on
        must have applied to see every commit finished anywhere before now (no call to the
        node; see ``lease_board``). None: use ``read_barrier``."""
        return self._board.floor()

    def read_barrier(self, timeout_s: float) -> int:
        """Linearizable: return once this node's replica holds every commit that finished,
        on any node, before the call (concurrent callers share ReadIndex rounds, each
        bounded by the timeout of the caller that started it)."""
        return self._barrier.wait(timeout_s)

    def check_lag(self, max_lag_s: float) -> None:
        """Bounded staleness: return if this node was in sync with the leader (knows one,
        and has applied every slot it knows chosen) within the last ``max_lag_s``; else
        wait for that up to ``max_lag_s`` and raise ``ReplicaTooStaleError``.

        A node cut off from the leader stops learning chosen slots, but it also loses the
        leader within an election timeout, so its lag is bounded by ``max_lag_s`` plus that.
        """
        interval_s = min(1.0, max_lag_s / 4)
        with self._lag_lock:
            now = time.monotonic()
            if now - self._checked_at < interval_s and now - self._in_sync_at <= max_lag_s:
                return
            deadline = now + max_lag_s
            while True:
                status = self.client.status()
                now = time.monotonic()
                self._checked_at = now
                if status.leader_id is not None and status.applied_slot >= status.chosen_slot:
                    self._in_sync_at = now
                    return
                if now - self._in_sync_at <= max_lag_s:
                    return
                if now >= deadline:
                    raise ReplicaTooStaleError(
                        f"node {self.node_id} ({self.data_dir}) has not been in sync with a"
                        f" leader for more than max-lag {max_lag_s} s (applied slot"
                        f" {status.applied_slot}, chosen {status.chosen_slot}, leader"
                        f" {status.leader_id}); refusing to read"
                    )
                time.sleep(LAG_POLL_S)

    def wait_for_node(self, timeout_s: float) -> None:
        """Return once the node answers and knows a leader, or after ``timeout_s`` if it
        answers without one; raise ``NodeUnavailableError`` if it never answered."""
        deadline = time.monotonic() + timeout_s
        answered = False
        while True:
            try:
                status = self.client.status(timeout_s=max(0.05, min(2.0, timeout_s)))
            except PaxosError as exc:
                if time.monotonic() >= deadline:
                    raise NodeUnavailableError(
                        f"node {self.node_id} at {self.data_dir} did not answer within"
                        f" connect-timeout {timeout_s:g} s (is `relstorage-paxos serve"
                        f" --data-dir {self.data_dir}` running?): {exc}"
                    ) from exc
            else:
                answered = True
                if status.leader_id is not None:
                    return
            if answered and time.monotonic() >= deadline:
                logger.warning(
                    "node %d knows no leader after connect-timeout %g s; opening anyway",
                    self.node_id,
                    timeout_s,
                )
                return
            time.sleep(CONNECT_POLL_S)

    def close(self) -> None:
        self._board.close()
        self.client.close()
        if self.server is not None:
            self.server.stop()
            self.server = None


class _CoalescedReadIndex:
    """One ReadIndex round at a time, shared by every caller waiting when it starts.

    A round only serves callers that arrived before it started (a round already in flight
    may have been answered before a commit that finished just before the caller came), so a
    caller waits for the next round to start and end; the first to find no round in flight
    runs it for everyone. Under load that is one round trip per round, not per poll.
    """

    def __init__(self, client: SequencerClient) -> None:
        self._client = client
        self._cond = threading.Condition()
        self._started = 0
        self._finished = 0
        self._in_flight = False
        self._result: int | BaseException = 0

    def wait(self, timeout_s: float) -> int:
        with self._cond:
            target = self._started + 1
            while self._finished < target:
                if not self._in_flight:
                    self._in_flight = True
                    self._started += 1
                    break
                self._cond.wait()
            else:
                return self._value()
            my_round = self._started
        result: int | BaseException
        try:
            result = self._client.read_index(timeout_s)
        except BaseException as exc:  # handed to every waiter of this round, then re-raised
            result = exc
        with self._cond:
            self._in_flight = False
            self._finished = my_round
            self._result = result
            self._cond.notify_all()
            return self._value()

    def _value(self) -> int:
        result = self._result
        if isinstance(result, BaseException):
            raise result
        return result


class _Entry:
    def __init__(self, link: NodeLink) -> None:
        self.link = link
        self.users = 0


_registry_lock = threading.Lock()
_registry: dict[Path, _Entry] = {}


def acquire(data_dir: Path, *, embedded: bool, connect_timeout_s: float = 0.0) -> NodeLink:
    """The process's link to the node at ``data_dir``, made on first use; pair with
    ``release``. ``embedded`` runs the node in this process (its first user decides). The
    first use waits up to ``connect_timeout_s`` for a node running elsewhere
    (``NodeLink.wait_for_node``)."""
    key = data_dir.resolve()
    with _registry_lock:
        entry = _registry.get(key)
        if entry is None:
            made = NodeLink(key, embedded=embedded)
            if made.server is None and connect_timeout_s > 0:
                try:
                    made.wait_for_node(connect_timeout_s)
                except BaseException:
                    made.close()
                    raise
            entry = _registry[key] = _Entry(made)
        elif embedded and entry.link.server is None:
            raise SettingsError(
                f"<paxos> embedded: {key} is already used by this process through a node"
                " running elsewhere; open it embedded everywhere or nowhere"
            )
        entry.users += 1
        return entry.link


def release(link: NodeLink) -> None:
    """Drop one use; the last one closes the client and stops an embedded node."""
    with _registry_lock:
        entry = _registry[link.data_dir]
        entry.users -= 1
        if entry.users:
            return
        del _registry[link.data_dir]
    logger.info("closing the link to node %d at %s", link.node_id, link.data_dir)
    link.close()
