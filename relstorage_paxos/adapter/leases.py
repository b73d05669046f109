"""Lease renewal for the lock requests of this process's live transactions (DESIGN.md §3:
"owners renew live leases").

Owns: the set of txns holding granted locks, and one daemon thread, alive only while that
set is not empty, that proposes RenewLeases for those whose lease is past half its length.
So a transaction may take as long as it needs between vote and finish (a slow resource
manager in the same two-phase commit, a debugger) without losing its locks, while the locks
of a process that died still expire one lease after its last renewal.
Must not import: ``core``, ``log``, ``runtime``.
Called by: application threads (``hold``, ``drop``); its own thread proposes.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from relstorage_paxos.adapter.link import NodeLink
from relstorage_paxos.errors import PaxosError
from relstorage_paxos.replica import Record, RenewLeases

logger = logging.getLogger(__name__)


def now_us() -> int:
    return time.time_ns() // 1000


class LeaseKeeper:
    def __init__(self, link: NodeLink, lease_s: Callable[[], float]) -> None:
        """``lease_s``: a lease's length, read at each use (it follows the commit lock
        timeout, which may change)."""
        self._link = link
        self._lease_s = lease_s
        self._lock = threading.Lock()
        self._held: dict[bytes, int] = {}
        """txn_id -> the lease it was last given."""
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()

    @property
    def _lease_us(self) -> int:
        return int(self._lease_s() * 1_000_000)

    def lease_from_now(self) -> int:
        return now_us() + self._lease_us

    def hold(self, txn_id: bytes, lease_until_us: int) -> None:
        """The txn's locks were granted with ``lease_until_us``: renew them from now on."""
        with self._lock:
            self._held[txn_id] = lease_until_us
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"paxos-leases-{self._link.node_id}", daemon=True
                )
                self._thread.start()

    def drop(self, txn_id: bytes) -> None:
        """The txn ended (committed, released, or given up): stop renewing it."""
        with self._lock:
            self._held.pop(txn_id, None)
        self._wake.set()

    def _run(self) -> None:
        while True:
            check_s = max(0.05, self._lease_s() / 4)
            with self._lock:
                if not self._held:
                    self._thread = None
                    return
                due = sorted(
                    txn_id
                    for txn_id, until_us in self._held.items()
                    if until_us - now_us() < self._lease_us // 2
                )
            if due:
                self._renew(due)
            self._wake.wait(check_s)
            self._wake.clear()

    def _renew(self, txn_ids: list[bytes]) -> None:
        lease_until_us = self.lease_from_now()
        record = Record(b"renew-" + os.urandom(16), RenewLeases(tuple(txn_ids), lease_until_us))
        try:
            self._link.propose(record, self._lease_us / 4 / 1_000_000)
        except PaxosError as exc:
            # The next round tries again with a new lease; the old one still runs meanwhile.
            logger.warning("could not renew the lock leases of %d txns: %s", len(txn_ids), exc)
            return
        with self._lock:
            for txn_id in txn_ids:
                if txn_id in self._held:
                    self._held[txn_id] = lease_until_us
