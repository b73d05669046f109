"""The pack plan, read from a replica through the adapter's read-only DB-API connection:
RelStorage's reachability (root, objects written after the pack tid and what they refer to),
removed objects grouped by the references among them, history-preserving pruning and
transactions, without garbage collection, and the records a plan becomes (groups never
split, pruning first, transactions last)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ZODB.serialize import referencesf
from ZODB.utils import u64

from relstorage_paxos.adapter import dbapi, pack
from relstorage_paxos.adapter.pack import PackPlan, PlannedObject, plan_pack
from relstorage_paxos.replica import (
    Committed,
    PackTransactions,
    Replica,
    RestoredObject,
    RestoreTxn,
)
from tests.replica.helpers import T0_US, apply, commit, current_tids, lock, pickled, proposal


class _Hooks:
    fill_object_refs_batch_size = 1024

    def __init__(self) -> None:
        self.examined: list[int] = []

    def on_filling_object_refs_added(self, oids: Any = None, tids: Any = None) -> None:
        pass

    def on_fill_object_ref_batch(self, oid_batch: Any, num_refs_found: int) -> None:
        self.examined.extend(oid_batch)


def _references(state: bytes) -> set[int]:
    return {u64(oid) for oid in referencesf(state)}


class _Db:
    def __init__(self, path: Path, keep_history: bool) -> None:
        self.replica = Replica.open(path, keep_history=keep_history)
        self.count = 0

    def write(self, states: dict[int, bytes]) -> int:
        self.count += 1
        txn = b"t%d" % self.count
        tids = current_tids(self.replica)
        writes = [(oid, tids.get(oid, 0), state) for oid, state in sorted(states.items())]
        outcomes = apply(
            self.replica,
            lock(b"l" + txn, txn, write=sorted(states)),
            commit(b"c" + txn, txn, writes, timestamp_us=T0_US + self.count),
        )
        assert isinstance(outcomes[1], Committed), outcomes
        return outcomes[1].tid

    def plan(self, pack_tid: int, gc: bool = True) -> PackPlan:
        conn = dbapi.connect(self.replica.path)
        try:
            return plan_pack(
                conn.cursor(),
                keep_history=self.replica.keep_history,
                pack_tid=pack_tid,
                gc=gc,
                get_references=_references,
                hooks=_Hooks(),
            )
        finally:
            conn.close()


@pytest.fixture(params=[False, True], ids=["history-free", "history-preserving"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[_Db]:
    made = _Db(tmp_path / "replica.sqlite3", bool(request.param))
    yield made
    made.replica.close()


def _oids(groups: list[list[PlannedObject]]) -> list[list[int]]:
    return [[p.oid for p in group] for group in groups]


def test_plan_with_garbage_collection(db: _Db) -> None:
    t1 = db.write({0: pickled(1, 2, 5), 1: pickled(), 2: pickled(3), 3: pickled(4), 4: pickled()})
    t2 = db.write({0: pickled(1), 1: pickled(value=1)})  # 2 -> 3 -> 4 and 5 unlinked
    db.write({6: pickled(7), 7: pickled()})  # after the pack tid
    plan = db.plan(t2)
    assert (plan.pack_tid, plan.snapshot_tid) == (t2, db.replica.last_tid)
    # 5 was never written: a reference to a missing object, from the root's old state only.
    assert _oids(plan.removed) == [[2, 3, 4]]
    assert [p.removed_tids for p in plan.removed[0]] == [(t1,), (t1,), (t1,)]
    if db.replica.keep_history:
        assert plan.pruned == [PlannedObject(0, t2, (t1,)), PlannedObject(1, t2, (t1,))]
        assert plan.transactions == [t1, t2]
    else:
        assert plan.pruned == [] and plan.transactions == []
    assert plan.broken_refs == []


def test_objects_written_after_the_pack_tid_keep_what_they_refer_to(db: _Db) -> None:
    t1 = db.write({0: pickled(), 1: pickled(2), 2: pickled(), 3: pickled()})
    db.write({4: pickled(1)})  # 4 is new and unreferenced, yet refers to 1
    plan = db.plan(t1)
    assert _oids(plan.removed) == [[3]]


def test_references_to_missing_objects_are_reported(db: _Db) -> None:
    t1 = db.write({0: pickled(1, 9), 1: pickled()})
    assert db.plan(t1).broken_refs == [(0, 9)]


def test_a_group_too_large_for_one_record_is_kept(db: _Db, monkeypatch: pytest.MonkeyPatch) -> None:
    t1 = db.write({0: pickled(), 1: pickled(2), 2: pickled(3), 3: pickled(), 4: pickled()})
    monkeypatch.setattr(pack, "GROUP_STATES_MAX", 2)
    assert _oids(db.plan(t1).removed) == [[4]]


def test_records_keep_groups_whole_prune_first_and_mark_transactions_last(
    db: _Db, monkeypatch: pytest.MonkeyPatch
) -> None:
    t1 = db.write({0: pickled(4), 1: pickled(2), 2: pickled(3), 3: pickled(), 4: pickled()})
    db.write({0: pickled(4, value=1), 4: pickled(value=1)})
    t3 = db.write({0: pickled(4, value=2), 4: pickled(value=2)})
    monkeypatch.setattr(pack, "STATES_PER_RECORD", 2)
    seen = []
    for body, planned in db.plan(t3).records():
        if isinstance(body, PackTransactions):
            seen.append(("transactions", [body.first_tid, body.last_tid]))
        elif body.pruned:
            seen.append(("pruned", [p.oid for p in body.pruned]))
        else:
            seen.append(("removed", [r.oid for r in body.removed]))
            assert [p.oid for p in planned] == [r.oid for r in body.removed]
    if db.replica.keep_history:
        assert seen == [
            ("pruned", [0]),
            ("pruned", [4]),
            ("removed", [1, 2, 3]),
            ("transactions", [t1, t3]),
        ]
    else:
        assert seen == [("removed", [1, 2, 3])]


def test_without_garbage_collection(db: _Db) -> None:
    t1 = db.write({0: pickled(), 1: pickled(), 2: pickled()})
    t2 = db.write({1: pickled(value=1)})
    if db.replica.keep_history:
        # A restore's "uncreation": 2's newest state is a deletion.
        apply(db.replica, lock(b"lr", b"tr", write=[2]))
        tid = t2 + 1
        restored_object = RestoredObject(2, tid, None)
        record = RestoreTxn(b"tr", tid, b"", b"", b"", False, (restored_object,))
        (restored,) = apply(db.replica, proposal(b"rr", record))
        assert restored == Committed(tid)
        plan = db.plan(tid, gc=False)
        assert plan.pruned == [PlannedObject(1, t2, (t1,))]
        assert _oids(plan.removed) == [[2]]
        assert plan.removed[0][0].removed_tids == (t1, tid)
    else:
        plan = db.plan(t2, gc=False)
        assert plan.pruned == [] and plan.removed == []
