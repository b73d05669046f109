"""The WAL: readers never block the applier, the checkpointer keeps the WAL bounded while
readers come and go, and ``sync`` makes what was applied durable whatever readers do.

The bound (see ``replica/checkpointer.py``): the WAL stays under ``wal_size_limit_bytes``
unless one read transaction outlasts every forced checkpoint's busy timeout; then it grows
with the data applied, and is cut back once that reader ends. These tests run the real
checkpointer thread against real apsw readers, so they bound sizes rather than count frames.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import apsw
import pytest

from relstorage_paxos.replica import Committed, Replica, ReplicaOptions
from relstorage_paxos.replica.applier import WAL_FRAME_BYTES
from tests.sync_spy import SyncSpyVFS

from .helpers import apply, commit, lock, open_readonly

LIMIT_BYTES = 8 * 1024 * 1024
"""Small, so that the tests push many times the limit through the WAL in seconds; large
enough that the half of it between a forced checkpoint's threshold and the limit (some 70
slots) covers the time the checkpointer thread takes to get going on a busy machine."""

SLOT_SLACK_BYTES = 64 * WAL_FRAME_BYTES
"""More pages than one slot of ``_commit_new_object`` writes (under 50 on B-tree splits, some
15 on average): the slot that reaches the limit ends past it."""

SLOTS = 2500


@pytest.fixture
def small_wal_replica(tmp_path: Path, keep_history: bool) -> Iterator[Replica]:
    options = ReplicaOptions(wal_size_limit_bytes=LIMIT_BYTES)
    with Replica.open(tmp_path / "r.sqlite3", keep_history=keep_history, options=options) as r:
        yield r


def _commit_new_object(replica: Replica) -> None:
    """One slot of two records: lock and commit a new object of about 500 bytes (some 15
    pages of the WAL)."""
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


class OverlappingReaders:
    """A thread with two read-only connections whose read transactions overlap, so that one
    is open at every moment, as an application's load connections are under load: it begins
    a transaction on one (and loads a few objects) before it ends the other's."""

    def __init__(self, path: str) -> None:
        self._connections = (open_readonly(path), open_readonly(path))
        self._stop = threading.Event()
        self.transactions = 0
        self.failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="overlapping-readers")

    def __enter__(self) -> OverlappingReaders:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        for db in self._connections:
            db.close()
        if self.failure is not None:
            raise self.failure

    def _run(self) -> None:
        try:
            current, other = self._connections
            _begin_read(current)
            while not self._stop.is_set():
                count = _begin_read(other)
                for oid in range(max(1, count - 3), count + 1):
                    other.execute("SELECT state FROM object_state WHERE zoid = ?", (oid,))
                current.execute("COMMIT")
                current, other = other, current
                self.transactions += 1
            current.execute("COMMIT")
        except BaseException as exc:
            self.failure = exc


def test_wal_stays_under_the_limit_without_readers(small_wal_replica: Replica) -> None:
    sizes = []
    for _ in range(SLOTS):
        _commit_new_object(small_wal_replica)
        sizes.append(_wal_bytes(small_wal_replica))
    assert max(sizes) <= LIMIT_BYTES + SLOT_SLACK_BYTES


def test_overlapping_readers_keep_the_wal_under_the_limit_and_quiet(
    tmp_path: Path, keep_history: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue #10: a read transaction is open at every moment, so SQLite never finds the WAL
    unread. The applier's PASSIVE checkpoint before each slot could never restart it: the
    WAL grew without bound and a warning was logged every slot or two."""
    caplog.set_level(logging.WARNING, logger="relstorage_paxos.replica")
    # A forced checkpoint waits for the readers' thread to be scheduled twice; on a loaded
    # test machine that can take longer than the default timeout.
    options = ReplicaOptions(wal_size_limit_bytes=LIMIT_BYTES, checkpoint_busy_timeout_ms=200)
    with Replica.open(tmp_path / "r.sqlite3", keep_history=keep_history, options=options) as r:
        _commit_new_object(r)
        sizes = []
        with OverlappingReaders(r.path) as readers:
            for _ in range(SLOTS):
                _commit_new_object(r)
                sizes.append(_wal_bytes(r))
        assert readers.transactions > SLOTS // 10, readers.transactions
        assert r.applied_slot == SLOTS + 1
    # Some 18 times the limit went through the WAL.
    assert max(sizes) <= LIMIT_BYTES + SLOT_SLACK_BYTES, (max(sizes), LIMIT_BYTES)
    assert caplog.messages == []


def test_a_pinned_reader_grows_the_wal_until_it_ends(
    tmp_path: Path, keep_history: bool, caplog: pytest.LogCaptureFixture
) -> None:
    options = ReplicaOptions(wal_size_limit_bytes=LIMIT_BYTES, checkpoint_busy_timeout_ms=1)
    replica = Replica.open(tmp_path / "r.sqlite3", keep_history=keep_history, options=options)
    _commit_new_object(replica)
    reader = open_readonly(replica.path)
    seen = _begin_read(reader)
    caplog.set_level(logging.WARNING, logger="relstorage_paxos.replica")
    slots = 2000
    for _ in range(slots):
        _commit_new_object(replica)  # never blocked by the reader for long
    # The reader still sees its snapshot...
    (row,) = reader.execute("SELECT COUNT(*) FROM object_state").fetchall()
    assert row[0] == seen
    # ...so SQLite could neither copy the newer frames nor restart the WAL: it grew past the
    # limit, with a warning once per doubling, not per slot.
    pinned = _wal_bytes(replica)
    assert pinned > 2 * LIMIT_BYTES
    warnings = [m for m in caplog.messages if "a read transaction stays open" in m]
    assert 1 <= len(warnings) <= (pinned // LIMIT_BYTES).bit_length(), warnings
    reader.execute("COMMIT")
    # A PASSIVE checkpoint copies the WAL, and a forced one then cuts it back, while the
    # applier goes on.
    for _ in range(SLOTS):
        _commit_new_object(replica)
        if _wal_bytes(replica) < LIMIT_BYTES:
            break
    assert _wal_bytes(replica) < LIMIT_BYTES
    reader.close()
    replica.close()


def test_a_passive_checkpoint_syncs_nothing_while_a_reader_pins_the_wal(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Why ``Replica.sync`` does not checkpoint (issue #14): with ``synchronous=NORMAL``
    SQLite syncs only the frames a checkpoint copies, and a reader that began before the
    last commits lets it copy none of them."""
    vfs = SyncSpyVFS(f"synccount-{request.node.name}")
    try:
        writer = apsw.Connection(str(tmp_path / "w.sqlite3"), vfs=vfs.name)
        writer.execute("PRAGMA journal_mode = WAL").fetchall()
        writer.execute("PRAGMA synchronous = NORMAL")
        writer.execute("CREATE TABLE t (x)")
        writer.wal_checkpoint("main", apsw.SQLITE_CHECKPOINT_PASSIVE)
        reader = open_readonly(str(tmp_path / "w.sqlite3"))
        reader.execute("BEGIN")
        reader.execute("SELECT COUNT(*) FROM t").fetchall()
        for n in range(10):
            writer.execute("INSERT INTO t VALUES (?)", (n,))
        vfs.syncs.clear()
        log_frames, copied_frames = writer.wal_checkpoint("main", apsw.SQLITE_CHECKPOINT_PASSIVE)
        assert copied_frames < log_frames
        assert vfs.syncs == Counter()
        reader.close()
        writer.close()
    finally:
        vfs.unregister()


def test_sync_fsyncs_the_wal_while_a_reader_pins_it(
    replica: Replica, monkeypatch: pytest.MonkeyPatch
) -> None:
    _commit_new_object(replica)
    reader = open_readonly(replica.path)
    _begin_read(reader)
    for _ in range(5):
        _commit_new_object(replica)
    fsynced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        fsynced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    replica.sync()  # must not wait for the reader
    assert os.path.realpath(f"{replica.path}-wal") in fsynced, fsynced
    reader.execute("COMMIT")
    reader.close()
