"""Proof of determinism: the same slots give the same replica, however the applier is
stopped and restarted along the way.

Slots are generated against a reference replica (so commits mostly hold their locks and name
current tids, and sometimes do not): conflicting and waiting locks, releases, expiries,
commits with current and stale prev_tids (states that are pickles referring to other objects,
or not), allocations, noops, pack records (pruning, removals validated against later commits,
transactions), garbage payloads and repeated request ids.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from relstorage_paxos.replica import Proposal, Replica, logical_dump

from .helpers import (
    T0_US,
    allocate,
    commit,
    current_tids,
    expire,
    granted_locks,
    lock,
    noop,
    open_readonly,
    pack_objects,
    pack_transactions,
    pickled,
    release,
    renew,
)

TXNS = tuple(b"t%d" % n for n in range(5))
OIDS = tuple(range(1, 7))
TIMES_US = (0, T0_US, T0_US + 1, T0_US + 10**6)
KINDS = (
    "lock",
    "lock",
    "commit",
    "commit",
    "release",
    "renew",
    "expire",
    "allocate",
    "noop",
    "garbage",
    "pack",
    "pack transactions",
)
STATES = st.one_of(
    st.binary(max_size=6),
    st.lists(st.sampled_from((0, *OIDS)), max_size=2).map(lambda refs: pickled(*refs)),
)


@dataclass
class _View:
    """What the generator knows of the reference replica before a slot."""

    granted: dict[bytes, dict[int, bool]]
    tids: dict[int, int]
    used_ids: list[bytes]
    last_tid: int


def _request_id(data: st.DataObject, view: _View) -> bytes:
    if view.used_ids and data.draw(st.integers(0, 7)) == 0:
        return data.draw(st.sampled_from(view.used_ids))
    fresh = b"r%d" % len(view.used_ids)
    view.used_ids.append(fresh)
    return fresh


def _commit(data: st.DataObject, view: _View, request_id: bytes) -> Proposal:
    txn = data.draw(st.sampled_from(sorted(view.granted) * 2 + list(TXNS)))
    held = [oid for oid, exclusive in view.granted.get(txn, {}).items() if exclusive and oid >= 0]
    candidates = sorted({*held, data.draw(st.sampled_from(OIDS))})
    oids = data.draw(st.lists(st.sampled_from(candidates), max_size=3, unique=True))
    writes = []
    for oid in oids:
        current = view.tids.get(oid, 0)
        prev_tid = data.draw(st.sampled_from([current, current, current + 1, max(current - 1, 0)]))
        writes.append((oid, prev_tid, data.draw(st.none() | STATES)))
    blobs = [
        (oid, b"blob%d" % oid)
        for oid, _, state in writes[:1]
        if state is not None and data.draw(st.booleans())
    ]
    timestamp_us = data.draw(st.sampled_from(TIMES_US))
    # A fixed tid: mostly right after the last one (what a database lock holder chooses),
    # sometimes one already used.
    tid = data.draw(st.sampled_from([0, 0, view.last_tid + 1, view.last_tid]))
    return commit(request_id, txn, writes, timestamp_us=timestamp_us, blobs=blobs, tid=tid)


def _pack(data: st.DataObject, view: _View, request_id: bytes) -> Proposal:
    """A pack batch as a planner on some earlier snapshot might send it: tids current or
    not, objects referenced or not, pruning a history-free replica refuses."""
    tids = sorted({view.last_tid, *view.tids.values()})
    snapshot_tid = data.draw(st.sampled_from(tids))
    pack_tid = data.draw(st.sampled_from([t for t in tids if t <= snapshot_tid]))
    oids = data.draw(st.lists(st.sampled_from(OIDS), max_size=4, unique=True))
    split = data.draw(st.integers(0, len(oids)))
    planned = {oid: min(view.tids.get(oid, pack_tid), pack_tid) for oid in oids}
    pruned = [(oid, planned[oid]) for oid in oids[:split]]
    removed = [(oid, planned[oid]) for oid in oids[split:]]
    return pack_objects(request_id, pack_tid, snapshot_tid, pruned, removed)


def _proposal(data: st.DataObject, view: _View) -> Proposal:
    kind = data.draw(st.sampled_from(KINDS))
    request_id = _request_id(data, view)
    some_oids = st.lists(st.sampled_from(OIDS), max_size=3, unique=True)
    if kind == "lock":
        txn = data.draw(st.sampled_from(TXNS))
        lease_until_us = data.draw(st.integers(0, 10))
        if data.draw(st.integers(0, 4)) == 0:
            return lock(request_id, txn, lease_until_us=lease_until_us, database=True)
        return lock(request_id, txn, data.draw(some_oids), data.draw(some_oids), lease_until_us)
    if kind == "commit":
        return _commit(data, view, request_id)
    if kind == "release":
        txn = data.draw(st.sampled_from(TXNS))
        # A database lock holder's release burns the tid it chose (right after the last).
        tid = data.draw(st.sampled_from([0, 0, view.last_tid + 1]))
        return release(request_id, txn, data.draw(st.sampled_from([0, 5, 11])), tid)
    if kind == "renew":
        txns = data.draw(st.lists(st.sampled_from(TXNS), min_size=1, max_size=2))
        return renew(request_id, txns, data.draw(st.integers(0, 12)))
    if kind == "expire":
        return expire(request_id, data.draw(st.integers(0, 12)))
    if kind == "allocate":
        node_id = data.draw(st.integers(1, 3))
        min_oid = data.draw(st.sampled_from([0, 0, 100, 10**6]))
        return allocate(request_id, node_id, data.draw(st.integers(1, 20)), min_oid)
    if kind == "noop" or (kind.startswith("pack") and not view.last_tid):
        return noop(request_id)
    if kind == "pack":
        return _pack(data, view, request_id)
    if kind == "pack transactions":
        last_tid = data.draw(st.sampled_from([view.last_tid, view.last_tid + 1]))
        return pack_transactions(request_id, data.draw(st.integers(1, last_tid)), last_tid)
    return (request_id, data.draw(st.binary(max_size=8)))


def _slots(data: st.DataObject, reference: Replica) -> Iterator[list[Proposal]]:
    """Generate slots one at a time; the caller applies each to ``reference`` before asking
    for the next."""
    used_ids: list[bytes] = []
    for _ in range(data.draw(st.integers(1, 12), label="slots")):
        view = _View(
            granted_locks(reference), current_tids(reference), used_ids, reference.last_tid
        )
        yield [_proposal(data, view) for _ in range(data.draw(st.integers(0, 5)))]


@given(data=st.data(), keep_history=st.booleans())
@settings(deadline=None)
def test_two_replicas_applying_the_same_slots_are_identical(
    data: st.DataObject, keep_history: bool
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        paths = (os.path.join(tmp, "a.sqlite3"), os.path.join(tmp, "b.sqlite3"))
        with (
            Replica.open(paths[0], keep_history) as a,
            Replica.open(paths[1], keep_history) as b,
        ):
            for slot, proposals in enumerate(_slots(data, a), start=1):
                outcomes = a.apply_slot(slot, proposals)
                assert outcomes == b.apply_slot(slot, proposals)
                for outcome in outcomes:
                    event(type(outcome).__name__)
            assert a.applied_slot == b.applied_slot
            assert a.running_hash == b.running_hash
            assert a.last_tid == b.last_tid
            assert a.logical_dump() == b.logical_dump()
        # The files themselves, read by fresh connections.
        readers = [open_readonly(path) for path in paths]
        assert logical_dump(readers[0]) == logical_dump(readers[1])
        for reader in readers:
            reader.close()


class _Crash(Exception):
    """Stands for the process dying in the middle of a slot."""


def _crashing(proposals: list[Proposal], after: int) -> Iterator[Proposal]:
    yield from proposals[:after]
    raise _Crash


@given(data=st.data(), keep_history=st.booleans())
@settings(deadline=None)
def test_stopping_between_any_two_records_and_replaying_gives_the_same_replica(
    data: st.DataObject, keep_history: bool
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "stopped.sqlite3")
        with Replica.open(os.path.join(tmp, "reference.sqlite3"), keep_history) as reference:
            slots = []
            for slot, proposals in enumerate(_slots(data, reference), start=1):
                reference.apply_slot(slot, proposals)
                slots.append(proposals)
            replica = Replica.open(path, keep_history)
            try:
                for proposals in slots:
                    stop = data.draw(st.sampled_from(["none", "between slots", "within slot"]))
                    if stop == "within slot":
                        after = data.draw(st.integers(0, len(proposals)))
                        with pytest.raises(_Crash):
                            replica.apply_slot(
                                replica.applied_slot + 1, _crashing(proposals, after)
                            )
                    if stop != "none":
                        replica.close()
                        replica = Replica.open(path)
                    # The runtime replays from applied_slot + 1.
                    replica.apply_slot(replica.applied_slot + 1, proposals)
                assert replica.applied_slot == reference.applied_slot
                assert replica.running_hash == reference.running_hash
                assert replica.logical_dump() == reference.logical_dump()
            finally:
                replica.close()


_CHILD = textwrap.dedent(
    """
    import os, pickle, sys
    from relstorage_paxos.replica import Replica

    path, slots_file, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with open(slots_file, "rb") as f:
        slots = pickle.load(f)
    replica = Replica.open(path, keep_history=True)
    for slot, proposals in enumerate(slots[:count], start=1):
        replica.apply_slot(slot, proposals)
    os._exit(0)  # no close, no checkpoint: the WAL holds the last slots
    """
)


def test_a_killed_applier_resumes_at_its_last_committed_slot(tmp_path: Path) -> None:
    slots: list[list[Proposal]] = []
    for n in range(1, 41):
        txn = b"t%d" % n
        oid = n % 7 + 1
        slots.append([lock(b"l" + txn, txn, write=[oid])])
        slots.append([commit(b"c" + txn, txn, [(oid, 0, b"s%d" % n)]), release(b"x" + txn, txn)])
    slots_file = tmp_path / "slots.pickle"
    slots_file.write_bytes(pickle.dumps(slots))
    path = tmp_path / "killed.sqlite3"
    subprocess.run(
        [sys.executable, "-c", _CHILD, str(path), str(slots_file), "50"],
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    with Replica.open(tmp_path / "reference.sqlite3", keep_history=True) as reference:
        for slot, proposals in enumerate(slots[:50], start=1):
            reference.apply_slot(slot, proposals)
        with Replica.open(path) as resumed:
            assert resumed.applied_slot == 50
            assert resumed.running_hash == reference.running_hash
            assert resumed.logical_dump() == reference.logical_dump()
            for slot, proposals in enumerate(slots[50:], start=51):
                assert resumed.apply_slot(slot, proposals) == reference.apply_slot(slot, proposals)
            assert resumed.logical_dump() == reference.logical_dump()
