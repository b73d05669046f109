"""Snapshots with SQLite's backup API: the applied slot travels with the data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from relstorage_paxos.errors import HistoryModeMismatch, StaleSnapshot
from relstorage_paxos.replica import Committed, Replica

from .helpers import allocate, apply, commit, lock, open_readonly


def _fill(replica: Replica, slots: int) -> None:
    """Commit one new object per slot."""
    for n in range(replica.applied_slot, replica.applied_slot + slots):
        txn = b"t%d" % n
        outcomes = apply(
            replica,
            lock(b"l" + txn, txn, write=[n + 1]),
            commit(b"c" + txn, txn, [(n + 1, 0, b"state %d" % n)]),
            allocate(b"a" + txn, 1, 4),
        )
        assert isinstance(outcomes[1], Committed), outcomes


def test_snapshot_opens_as_the_same_replica(replica: Replica, tmp_path: Path) -> None:
    _fill(replica, 5)
    snapshot = tmp_path / "snapshot.sqlite3"
    assert replica.snapshot_to(snapshot) == 5
    # A single self-contained file, readable without the applier.
    assert not os.path.exists(f"{snapshot}-wal")
    reader = open_readonly(str(snapshot))
    assert reader.execute("SELECT applied_slot FROM paxos_meta").fetchall() == [(5,)]
    reader.close()
    with Replica.open(snapshot) as copy:
        assert copy.applied_slot == 5
        assert copy.running_hash == replica.running_hash
        assert copy.last_tid == replica.last_tid
        assert copy.logical_dump() == replica.logical_dump()
        # And it goes on from there exactly as the original does.
        _fill(copy, 1)
        _fill(replica, 1)
        assert copy.logical_dump() == replica.logical_dump()


def test_snapshot_refuses_to_overwrite(replica: Replica, tmp_path: Path) -> None:
    target = tmp_path / "taken.sqlite3"
    target.write_bytes(b"")
    with pytest.raises(FileExistsError):
        replica.snapshot_to(target)


def test_install_snapshot_over_a_lagging_replica(
    replica: Replica, tmp_path: Path, keep_history: bool
) -> None:
    lagging_path = tmp_path / "lagging.sqlite3"
    with Replica.open(lagging_path, keep_history=keep_history) as lagging:
        _fill(lagging, 1)
    _fill(replica, 4)
    snapshot = tmp_path / "snapshot.sqlite3"
    replica.snapshot_to(snapshot)
    # A reader of the lagging replica may stay open across the install.
    reader = open_readonly(str(lagging_path))
    with Replica.install_snapshot(snapshot, lagging_path) as installed:
        assert installed.applied_slot == 4
        assert installed.logical_dump() == replica.logical_dump()
    assert reader.execute("SELECT applied_slot FROM paxos_meta").fetchall() == [(4,)]
    reader.close()


def test_install_snapshot_creates_a_new_replica(replica: Replica, tmp_path: Path) -> None:
    _fill(replica, 2)
    snapshot = tmp_path / "snapshot.sqlite3"
    replica.snapshot_to(snapshot)
    with Replica.install_snapshot(snapshot, tmp_path / "new.sqlite3") as installed:
        assert installed.applied_slot == 2
        assert installed.keep_history is replica.keep_history
        assert installed.logical_dump() == replica.logical_dump()


def test_install_snapshot_refuses_to_go_back(
    replica: Replica, tmp_path: Path, keep_history: bool
) -> None:
    _fill(replica, 1)
    snapshot = tmp_path / "snapshot.sqlite3"
    replica.snapshot_to(snapshot)
    ahead_path = tmp_path / "ahead.sqlite3"
    with Replica.open(ahead_path, keep_history=keep_history) as ahead:
        _fill(ahead, 3)
    with pytest.raises(StaleSnapshot, match="slot 1, behind"):
        Replica.install_snapshot(snapshot, ahead_path)
    with Replica.open(ahead_path) as ahead:
        assert ahead.applied_slot == 3


def test_install_snapshot_refuses_the_other_mode(
    replica: Replica, tmp_path: Path, keep_history: bool
) -> None:
    snapshot = tmp_path / "snapshot.sqlite3"
    replica.snapshot_to(snapshot)
    other_path = tmp_path / "other.sqlite3"
    Replica.open(other_path, keep_history=not keep_history).close()
    with pytest.raises(HistoryModeMismatch):
        Replica.install_snapshot(snapshot, other_path)
    with pytest.raises(HistoryModeMismatch):
        Replica.install_snapshot(snapshot, tmp_path / "new.sqlite3", keep_history=not keep_history)
