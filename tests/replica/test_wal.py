"""The WAL: readers never block the applier, and how far the WAL grows.

The bound (see ``Replica._checkpoint_if_due``): with no read transaction held across slots,
the WAL stays under the limit plus one slot's frames; a read transaction that stays open pins
every frame committed after it began, so the WAL then grows with the data applied, and is cut
back to the limit by the first slot applied after that reader ends.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import apsw
import pytest

from relstorage_paxos.replica import Committed, Replica, ReplicaOptions
from relstorage_paxos.replica.applier import WAL_FRAME_BYTES

from .helpers import apply, commit, lock, open_readonly

LIMIT_BYTES = 512 * 1024
SLOT_FRAMES_MAX = 64
"""More pages than one slot of ``_commit_new_object`` writes (measured: under 50, on B-tree
splits; about 15 on average)."""
SLOT_SLACK_BYTES = SLOT_FRAMES_MAX * WAL_FRAME_BYTES


@pytest.fixture
def small_wal_replica(tmp_path: Path, keep_history: bool) -> Iterator[Replica]:
    options = ReplicaOptions(wal_size_limit_bytes=LIMIT_BYTES)
    with Replica.open(tmp_path / "r.sqlite3", keep_history=keep_history, options=options) as r:
        yield r


def _commit_new_object(replica: Replica) -> None:
    """One slot of two records: lock and commit a new object of about 500 bytes."""
    n = replica.applied_slot + 1
    txn = b"t%d" % n
    outcomes = apply(
        replica,
        lock(b"l" + txn, txn, write=[n]),
        commit(b"c" + txn, txn, [(n, 0, n.to_bytes(8, "big") * 64)]),
    )
    assert isinstance(outcomes[1], Committed), outcomes


def _wal_bytes(replica: Replica) -> int:
    return os.path.getsize(f"{replica.path}-wal")


def _begin_read(db: apsw.Connection) -> int:
    """Start a read transaction and fix its snapshot, as RelStorage's load connection does
    (BEGIN, then the first SELECT); return the object count it sees."""
    db.execute("BEGIN DEFERRED")
    (row,) = db.execute("SELECT COUNT(*) FROM object_state").fetchall()
    count = row[0]
    assert isinstance(count, int)
    return count


def test_wal_stays_under_the_limit_without_readers(small_wal_replica: Replica) -> None:
    sizes = []
    for _ in range(2000):
        _commit_new_object(small_wal_replica)
        sizes.append(_wal_bytes(small_wal_replica))
    # Some 200 times the limit went through the WAL meanwhile.
    assert max(sizes) <= LIMIT_BYTES + SLOT_SLACK_BYTES


def test_a_pinned_reader_grows_the_wal_until_it_ends(
    small_wal_replica: Replica, caplog: pytest.LogCaptureFixture
) -> None:
    replica = small_wal_replica
    _commit_new_object(replica)
    reader = open_readonly(replica.path)
    seen = _begin_read(reader)
    caplog.set_level(logging.WARNING, logger="relstorage_paxos.replica.applier")
    slots = 500
    for _ in range(slots):
        _commit_new_object(replica)  # never blocked by the reader
    # The reader still sees its snapshot...
    (row,) = reader.execute("SELECT COUNT(*) FROM object_state").fetchall()
    assert row[0] == seen
    # ...so SQLite could neither copy the newer frames nor restart the WAL: it grew with
    # every slot, and nothing more.
    pinned = _wal_bytes(replica)
    assert pinned > 4 * LIMIT_BYTES
    assert pinned <= LIMIT_BYTES + slots * SLOT_SLACK_BYTES
    assert any("not checkpointable" in message for message in caplog.messages)
    reader.execute("COMMIT")
    # The first slot after the reader ends checkpoints, restarts and cuts the WAL back.
    _commit_new_object(replica)
    assert _wal_bytes(replica) <= LIMIT_BYTES
    reader.close()


def test_readers_that_pause_between_transactions_keep_the_wal_bounded(
    small_wal_replica: Replica,
) -> None:
    replica = small_wal_replica
    reader = open_readonly(replica.path)
    read_slots = 10
    sizes = []
    for n in range(2000):
        if n % (read_slots + 1) == 0:
            _begin_read(reader)
        _commit_new_object(replica)
        sizes.append(_wal_bytes(replica))
        if n % (read_slots + 1) == read_slots - 1:
            reader.execute("COMMIT")  # the reader is idle during the next slot
    # Bounded by the limit plus what was written during one read transaction.
    assert max(sizes) <= LIMIT_BYTES + (read_slots + 1) * SLOT_SLACK_BYTES
    reader.close()
