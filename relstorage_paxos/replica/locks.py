"""Replicated object locks: exclusive for written OIDs, shared for readCurrent OIDs.

Owns: the ``paxos_lock_request``, ``paxos_lock_oid`` and ``paxos_released_txn`` tables and
their rules.
- A request is all or nothing: granted with every OID it names, or waiting with none.
- Waiting is FIFO: a request is granted only if no granted request, and no request that came
  before it, holds or wants one of its OIDs in a conflicting mode (shared/shared is the only
  compatible pair). So a stream of readers cannot starve a writer, and requests that touch
  nothing in common pass each other.
- The database lock is one more lockable item, ``DATABASE``, which no OID can be: every
  object request also holds it shared, a database request holds it (and nothing else)
  exclusively. So the same FIFO rule makes a database request wait for every request ahead
  of it and every later request wait for it, and a database lock never starves.
- No hold-and-wait: a txn has at most one request, and a granted request never waits for more.
  The oldest waiting request waits only for granted ones, which commits, releases, lease
  expiries and node expiries end, so there is no deadlock (Coffman's conditions need
  hold-and-wait).
- A readCurrent OID held exclusively by a granted request fails the request at once (a read
  conflict), whether it meets that lock when it arrives or when its turn comes: the holder is
  about to write the object, so the read-current check could only fail after the wait.
  PostgreSQL's RelStorage does the same (shared locks with NOWAIT), and a request that fails
  fast is one that does not sit in the queue in front of others.

Every query orders its rows, so the grant order is a function of the table contents alone.

Must not import: generated protobuf, anything with a clock.
Called by: the applier thread, inside the slot's SQLite transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

import apsw

DATABASE: Final = -1
"""The ``zoid`` of the database lock's row in ``paxos_lock_oid``; OIDs are never negative."""

_BLOCKED: Final = """
    SELECT EXISTS (
        SELECT 1
        FROM paxos_lock_oid AS mine
        JOIN paxos_lock_oid AS other
            ON other.zoid = mine.zoid AND other.txn_id <> mine.txn_id
        JOIN paxos_lock_request AS ahead ON ahead.txn_id = other.txn_id
        WHERE mine.txn_id = :txn_id
            AND (mine.exclusive OR other.exclusive)
            AND (ahead.granted OR ahead.queue_seq < :queue_seq)
    )
"""


_READ_CONFLICTS: Final = """
    SELECT DISTINCT mine.zoid
    FROM paxos_lock_oid AS mine
    JOIN paxos_lock_oid AS other
        ON other.zoid = mine.zoid AND other.txn_id <> mine.txn_id
    JOIN paxos_lock_request AS holder ON holder.txn_id = other.txn_id
    WHERE mine.txn_id = :txn_id
        AND mine.zoid <> -1
        AND NOT mine.exclusive
        AND other.exclusive
        AND holder.granted
    ORDER BY mine.zoid
"""
"""The txn's readCurrent OIDs that a granted request holds exclusively (the database lock
is not one: every object request holds it shared, and waits for an exclusive holder)."""


@dataclass(frozen=True, slots=True)
class ReadConflict:
    """A request dropped because a granted request holds some of its readCurrent OIDs
    exclusively."""

    request_id: bytes
    oids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Grants:
    """What a change to the table did to the waiting requests, in queue order."""

    granted: tuple[bytes, ...] = ()
    """Request ids now granted."""
    read_conflicts: tuple[ReadConflict, ...] = ()


@dataclass(frozen=True, slots=True)
class Dropped:
    """A request removed from the table, with whether it held its locks."""

    txn_id: bytes
    request_id: bytes
    was_granted: bool


class LockTable:
    def __init__(self, db: apsw.Connection) -> None:
        self._db = db

    def remember_released(self, txn_id: bytes, lease_until_us: int) -> None:
        """The txn was released with no request applied: refuse one until its lease ends."""
        self._db.execute(
            "INSERT OR REPLACE INTO paxos_released_txn (txn_id, lease_until_us) VALUES (?, ?)",
            (txn_id, lease_until_us),
        )

    def was_released(self, txn_id: bytes) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM paxos_released_txn WHERE txn_id = ?", (txn_id,)
        ).fetchone()
        return row is not None

    def has_request(self, txn_id: bytes) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM paxos_lock_request WHERE txn_id = ?", (txn_id,)
        ).fetchone()
        return row is not None

    def request(
        self,
        txn_id: bytes,
        request_id: bytes,
        node_id: int,
        lease_until_us: int,
        exclusive_by_oid: Mapping[int, bool],
        database: bool = False,
    ) -> bool | ReadConflict:
        """Add a request at the tail of the queue and grant it if nothing is in its way;
        return whether it was granted, or, if a granted request holds one of its readCurrent
        OIDs exclusively, the read conflict (the request is not kept). The txn must have no
        request yet. ``database``: the database lock, in which case ``exclusive_by_oid``
        must be empty."""
        assert not self.has_request(txn_id), txn_id
        assert not (database and exclusive_by_oid), txn_id
        assert DATABASE not in exclusive_by_oid, txn_id
        items = {**exclusive_by_oid, DATABASE: database}
        row = self._db.execute(
            "SELECT COALESCE(MAX(queue_seq), 0) + 1 FROM paxos_lock_request"
        ).fetchone()
        assert row is not None
        (queue_seq,) = row
        assert isinstance(queue_seq, int), queue_seq
        self._db.execute(
            "INSERT INTO paxos_lock_request"
            " (txn_id, request_id, node_id, lease_until_us, queue_seq, granted)"
            " VALUES (?, ?, ?, ?, ?, 0)",
            (txn_id, request_id, node_id, lease_until_us, queue_seq),
        )
        self._db.executemany(
            "INSERT INTO paxos_lock_oid (txn_id, zoid, exclusive) VALUES (?, ?, ?)",
            [(txn_id, oid, int(items[oid])) for oid in sorted(items)],
        )
        return self._grant_if_free(txn_id, request_id, queue_seq)

    def unlocked(self, txn_id: bytes, oids: Iterable[int]) -> list[int]:
        """Those of ``oids`` the txn does not hold exclusively, in order: all of them if it
        holds no granted request, none if it holds the database lock."""
        held = self._granted_items(txn_id) or {}
        if held.get(DATABASE, False):
            return []
        return sorted(oid for oid in oids if not held.get(oid, False))

    def holds_database(self, txn_id: bytes) -> bool:
        return (self._granted_items(txn_id) or {}).get(DATABASE, False)

    def _granted_items(self, txn_id: bytes) -> dict[int, bool] | None:
        """``{zoid: exclusive}`` held by the txn (``DATABASE`` included), or None if it holds
        no granted request."""
        row = self._db.execute(
            "SELECT granted FROM paxos_lock_request WHERE txn_id = ?", (txn_id,)
        ).fetchone()
        if row is None or not row[0]:
            return None
        held: dict[int, bool] = {}
        for oid, exclusive in self._db.execute(
            "SELECT zoid, exclusive FROM paxos_lock_oid WHERE txn_id = ? ORDER BY zoid",
            (txn_id,),
        ):
            assert isinstance(oid, int), oid
            held[oid] = bool(exclusive)
        return held

    def drop(self, txn_id: bytes) -> Dropped | None:
        """Remove the txn's request, held or waiting; None if it had none."""
        row = self._db.execute(
            "SELECT request_id, granted FROM paxos_lock_request WHERE txn_id = ?", (txn_id,)
        ).fetchone()
        if row is None:
            return None
        request_id, granted = row
        assert isinstance(request_id, bytes), request_id
        self._db.execute("DELETE FROM paxos_lock_request WHERE txn_id = ?", (txn_id,))
        return Dropped(txn_id, request_id, bool(granted))

    def renew(self, txn_ids: Iterable[bytes], lease_until_us: int) -> int:
        """Move the leases of these txns' requests up to ``lease_until_us``; return how many
        moved."""
        renewed = 0
        for txn_id in sorted(set(txn_ids)):
            self._db.execute(
                "UPDATE paxos_lock_request SET lease_until_us = ?"
                " WHERE txn_id = ? AND lease_until_us < ?",
                (lease_until_us, txn_id, lease_until_us),
            )
            renewed += self._db.changes()
        return renewed

    def drop_nodes(self, node_ids: Iterable[int]) -> list[Dropped]:
        """Remove every request made through one of ``node_ids``, in queue order."""
        nodes = sorted(set(node_ids))
        marks = ", ".join("?" * len(nodes))
        dropped = []
        for txn_id, request_id, granted in self._db.execute(
            "SELECT txn_id, request_id, granted FROM paxos_lock_request"
            f" WHERE node_id IN ({marks}) ORDER BY queue_seq",
            nodes,
        ).fetchall():
            assert isinstance(txn_id, bytes), txn_id
            assert isinstance(request_id, bytes), request_id
            dropped.append(Dropped(txn_id, request_id, bool(granted)))
        self._db.execute(f"DELETE FROM paxos_lock_request WHERE node_id IN ({marks})", nodes)
        return dropped

    def drop_expired(self, now_us: int) -> list[Dropped]:
        """Remove every request whose lease ended before ``now_us``, in queue order."""
        expired = []
        for txn_id, request_id, granted in self._db.execute(
            "SELECT txn_id, request_id, granted FROM paxos_lock_request"
            " WHERE lease_until_us < ? ORDER BY queue_seq",
            (now_us,),
        ).fetchall():
            assert isinstance(txn_id, bytes), txn_id
            assert isinstance(request_id, bytes), request_id
            expired.append(Dropped(txn_id, request_id, bool(granted)))
        self._db.execute("DELETE FROM paxos_lock_request WHERE lease_until_us < ?", (now_us,))
        self._db.execute("DELETE FROM paxos_released_txn WHERE lease_until_us < ?", (now_us,))
        return expired

    def grant_waiting(self) -> Grants:
        """Grant, in queue order, every waiting request nothing is in the way of any more,
        and drop those that now meet a read conflict. Call after removing requests."""
        granted: list[bytes] = []
        conflicts: list[ReadConflict] = []
        for txn_id, request_id, queue_seq in self._db.execute(
            "SELECT txn_id, request_id, queue_seq FROM paxos_lock_request"
            " WHERE NOT granted ORDER BY queue_seq"
        ).fetchall():
            assert isinstance(txn_id, bytes), txn_id
            assert isinstance(request_id, bytes), request_id
            assert isinstance(queue_seq, int), queue_seq
            result = self._grant_if_free(txn_id, request_id, queue_seq)
            if isinstance(result, ReadConflict):
                conflicts.append(result)
            elif result:
                granted.append(request_id)
        return Grants(tuple(granted), tuple(conflicts))

    def _grant_if_free(
        self, txn_id: bytes, request_id: bytes, queue_seq: int
    ) -> bool | ReadConflict:
        """Grant the request if nothing is in its way; drop it if it meets a read conflict.
        Read conflicts first: a request that would wait for something else still fails at
        once when one of its readCurrent OIDs is about to be written."""
        oids = tuple(int(oid) for (oid,) in self._db.execute(_READ_CONFLICTS, {"txn_id": txn_id}))
        if oids:
            self._db.execute("DELETE FROM paxos_lock_request WHERE txn_id = ?", (txn_id,))
            return ReadConflict(request_id, oids)
        row = self._db.execute(_BLOCKED, {"txn_id": txn_id, "queue_seq": queue_seq}).fetchone()
        assert row is not None
        if row[0]:
            return False
        self._db.execute("UPDATE paxos_lock_request SET granted = 1 WHERE txn_id = ?", (txn_id,))
        return True


def nodes_with_requests(db: apsw.Connection) -> frozenset[int]:
    """The nodes through which some lock request, held or waiting, was made: the leader
    proposes ExpireNodes only for silent nodes among them, on a read-only connection of its
    own (so a dead node is expired once, not at every check)."""
    return frozenset(
        int(node_id) for (node_id,) in db.execute("SELECT DISTINCT node_id FROM paxos_lock_request")
    )


def earliest_lease_until_us(db: apsw.Connection) -> int | None:
    """The earliest ``lease_until_us`` of any lock request, held or waiting, or remembered
    release; None if there is none. The leader reads it on a read-only connection of its own
    to propose ExpireLeases only when some lease has run out (replicated state, so any node's
    answer is the same at the same slot)."""
    row = db.execute(
        "SELECT MIN(lease_until_us) FROM"
        " (SELECT lease_until_us FROM paxos_lock_request"
        " UNION ALL SELECT lease_until_us FROM paxos_released_txn)"
    ).fetchone()
    assert row is not None
    (earliest,) = row
    assert earliest is None or isinstance(earliest, int), earliest
    return earliest
