"""PackObjects and PackTransactions: history-preserving pruning, removal of unreachable
objects with their blobs, re-validation against commits made after the plan (written,
locked, referenced directly or through other removed objects, unreadable states), the
transaction step, refusals, idempotence and determinism."""

from __future__ import annotations

import zlib
from collections.abc import Mapping

import pytest

from relstorage_paxos.errors import MalformedRecord
from relstorage_paxos.replica import (
    Committed,
    Duplicate,
    Outcome,
    Packed,
    PackObjects,
    PackTransactions,
    Proposal,
    PrunedObject,
    Record,
    Rejected,
    RemovedObject,
    Replica,
    decode_record,
    encode_record,
)
from relstorage_paxos.replica.packer import references

from .helpers import (
    T0_US,
    apply,
    commit,
    current_tids,
    lock,
    pack_objects,
    pack_transactions,
    pickled,
)


class _Writer:
    """Commits through LockObjects + CommitTxn, as a ZODB transaction does, to one replica
    or to several in step (the first is the one read for prev_tids)."""

    def __init__(self, *replicas: Replica) -> None:
        self.replicas = replicas
        self.count = 0

    def apply(self, *proposals: Proposal) -> list[Outcome]:
        outcomes = [apply(replica, *proposals) for replica in self.replicas]
        assert all(o == outcomes[0] for o in outcomes), outcomes
        return outcomes[0]

    def write(self, states: Mapping[int, bytes], blobs: Mapping[int, bytes] | None = None) -> int:
        self.count += 1
        txn = b"t%d" % self.count
        tids = current_tids(self.replicas[0])
        writes = [(oid, tids.get(oid, 0), state) for oid, state in sorted(states.items())]
        outcomes = self.apply(
            lock(b"l" + txn, txn, write=sorted(states)),
            commit(
                b"c" + txn,
                txn,
                writes,
                timestamp_us=T0_US + self.count,
                blobs=sorted((blobs or {}).items()),
            ),
        )
        committed = outcomes[1]
        assert isinstance(committed, Committed), committed
        return committed.tid


def _states(replica: Replica) -> dict[int, list[int]]:
    """{oid: [tids of its states]}."""
    rows = replica.logical_dump()["object_state"]
    found: dict[int, list[int]] = {}
    for row in rows:
        found.setdefault(int(row[0]), []).append(int(row[1]))  # type: ignore[arg-type]
    return found


def _table(replica: Replica, name: str) -> list[tuple[object, ...]]:
    return list(replica.logical_dump()[name])


@pytest.fixture
def hp(tmp_path: object) -> Replica:
    return Replica.open(f"{tmp_path}/hp.sqlite3", keep_history=True)


def test_history_preserving_prune_keeps_the_newest_state_at_the_pack_tid(hp: Replica) -> None:
    w = _Writer(hp)
    t1 = w.write({0: pickled(1), 1: pickled(value=1)}, blobs={1: b"blob1"})
    t2 = w.write({1: pickled(value=2)}, blobs={1: b"blob2"})
    t3 = w.write({1: pickled(value=3)})
    t4 = w.write({1: pickled(value=4)})  # after the pack tid: untouched
    (outcome,) = apply(hp, pack_objects(b"p1", t3, t4, pruned=[(1, t3)]))
    assert outcome == Packed(states_removed=2)
    assert _states(hp) == {0: [t1], 1: [t3, t4]}
    prev_tids = {(row[0], row[1]): row[2] for row in _table(hp, "object_state")}
    assert prev_tids[(1, t3)] == 0  # the chain ends at the first state kept
    assert prev_tids[(1, t4)] == t3
    assert _table(hp, "blob_chunk") == []  # both blob states went with their states
    # Not packed yet: transactions stay until PackTransactions marks them.
    assert [row[0] for row in _table(hp, "transaction")] == [0, t1, t2, t3, t4]
    (marked,) = apply(hp, pack_transactions(b"p2", t1, t3))
    assert marked == Packed(transactions_packed=3, transactions_removed=1)
    assert [(row[0], row[1], row[2]) for row in _table(hp, "transaction")] == [
        (0, 0, 0),
        (t1, 1, 0),
        (t3, 1, 0),
        (t4, 0, 0),
    ]


def test_prune_of_a_state_gone_since_the_plan_is_refused(hp: Replica) -> None:
    w = _Writer(hp)
    t1 = w.write({1: pickled(value=1)})
    t2 = w.write({1: pickled(value=2)})
    before = hp.logical_dump()
    (outcome,) = apply(hp, pack_objects(b"p1", t2, t2, pruned=[(1, t2 - 1)]))
    assert outcome == Packed(objects_kept=1)
    after = hp.logical_dump()
    assert after["object_state"] == before["object_state"]
    assert _states(hp) == {1: [t1, t2]}


def test_unreachable_objects_are_removed_with_their_blobs(replica: Replica) -> None:
    w = _Writer(replica)
    w.write({0: pickled(1), 1: pickled(), 2: pickled(3), 3: pickled()}, blobs={3: b"b3"})
    t2 = w.write({2: pickled(3, value=1)}, blobs={2: b"b2"})
    t3 = w.write({4: pickled()})  # after the pack tid: kept although unreferenced
    planned = current_tids(replica)
    (outcome,) = apply(
        replica, pack_objects(b"p1", t2, t3, removed=[(2, planned[2]), (3, planned[3])])
    )
    states_of_2 = 2 if replica.keep_history else 1
    assert outcome == Packed(states_removed=states_of_2 + 1, objects_removed=2)
    assert sorted(current_tids(replica)) == [0, 1, 4]
    assert sorted(_states(replica)) == [0, 1, 4]
    assert _table(replica, "blob_chunk") == []


def test_an_object_written_after_the_plan_is_kept(replica: Replica) -> None:
    w = _Writer(replica)
    t1 = w.write({0: pickled(), 1: pickled(), 2: pickled()})
    w.write({1: pickled(value=1)})  # after the snapshot the plan was read from
    (outcome,) = apply(replica, pack_objects(b"p1", t1, t1, removed=[(1, t1), (2, t1)]))
    assert outcome == Packed(states_removed=1, objects_removed=1, objects_kept=1)
    assert sorted(current_tids(replica)) == [0, 1]


def test_an_object_referenced_after_the_plan_is_kept_with_what_it_refers_to(
    replica: Replica,
) -> None:
    w = _Writer(replica)
    # 1 -> 2 -> 3 and 4 -> 5: all unreachable when planned.
    w.write({0: pickled(), 1: pickled(2), 2: pickled(3), 3: pickled(), 4: pickled(5)})
    t2 = w.write({5: pickled(), 0: pickled()})
    planned = [(oid, tid) for oid, tid in sorted(current_tids(replica).items()) if oid]
    w.write({0: pickled(2)})  # the root links 2 again after the plan's snapshot
    (outcome,) = apply(replica, pack_objects(b"p1", t2, t2, removed=planned))
    # 2 and 3 (reached through 2) stay; 1, 4 and 5 go.
    assert outcome == Packed(states_removed=3, objects_removed=3, objects_kept=2)
    assert sorted(current_tids(replica)) == [0, 2, 3]


def test_a_locked_object_is_kept(replica: Replica) -> None:
    w = _Writer(replica)
    t1 = w.write({0: pickled(), 1: pickled(), 2: pickled()})
    apply(replica, lock(b"lx", b"tx", read=[1]))  # a transaction will read-current 1
    (outcome,) = apply(replica, pack_objects(b"p1", t1, t1, removed=[(1, t1), (2, t1)]))
    assert outcome == Packed(states_removed=1, objects_removed=1, objects_kept=1)
    assert sorted(current_tids(replica)) == [0, 1]


def test_a_database_lock_keeps_every_removal(replica: Replica) -> None:
    w = _Writer(replica)
    t1 = w.write({0: pickled(), 1: pickled(), 2: pickled()})
    apply(replica, lock(b"ld", b"undo", database=True))  # an undo may link them again
    (outcome,) = apply(replica, pack_objects(b"p1", t1, t1, removed=[(1, t1), (2, t1)]))
    assert outcome == Packed(objects_kept=2)
    assert sorted(current_tids(replica)) == [0, 1, 2]


def test_an_unreadable_newer_state_keeps_every_removal(replica: Replica) -> None:
    w = _Writer(replica)
    t1 = w.write({0: pickled(), 1: pickled(), 2: pickled()})
    w.write({3: b"not a pickle"})
    before = replica.logical_dump()["object_state"]
    (outcome,) = apply(replica, pack_objects(b"p1", t1, t1, removed=[(1, t1), (2, t1)]))
    assert outcome == Packed(objects_kept=2)
    assert replica.logical_dump()["object_state"] == before


def test_references_of_compressed_states_are_read() -> None:
    assert references(b".z" + zlib.compress(pickled(7, 9))) == {7, 9}
    assert references(b".n" + pickled(4)) == {4}
    assert references(None) == set()
    assert references(b".zbroken") is None
    assert references(b"\x80\x03garbage") is None


def test_a_history_preserving_removal_takes_every_state_and_the_current_pointer(
    hp: Replica,
) -> None:
    w = _Writer(hp)
    t1 = w.write({0: pickled(), 1: pickled(value=1)})
    t2 = w.write({1: pickled(value=2)})
    (outcome,) = apply(hp, pack_objects(b"p1", t2, t2, removed=[(1, t2)]))
    assert outcome == Packed(states_removed=2, objects_removed=1)
    assert _states(hp) == {0: [t1]}
    assert sorted(current_tids(hp)) == [0]


def test_removing_states_of_packed_transactions_removes_those_transactions(hp: Replica) -> None:
    w = _Writer(hp)
    t1 = w.write({0: pickled(), 1: pickled()})
    t2 = w.write({2: pickled()})
    apply(hp, pack_transactions(b"p1", t1, t2))  # both packed, neither empty
    (outcome,) = apply(hp, pack_objects(b"p2", t2, t2, removed=[(2, t2)]))
    assert outcome == Packed(states_removed=1, objects_removed=1, transactions_removed=1)
    assert [row[0] for row in _table(hp, "transaction")] == [0, t1]


def test_pack_transactions_refuses_tids_not_committed_yet(hp: Replica) -> None:
    t1 = _Writer(hp).write({0: pickled()})
    (outcome,) = apply(hp, pack_transactions(b"p1", t1, t1 + 1))
    assert isinstance(outcome, Rejected), outcome


@pytest.mark.parametrize(
    "proposal",
    [
        pack_objects(b"p1", 5, 5, pruned=[(1, 5)]),
        pack_transactions(b"p1", 1, 1),
    ],
    ids=["prune", "transactions"],
)
def test_history_free_refuses_what_needs_history(tmp_path: object, proposal: object) -> None:
    with Replica.open(f"{tmp_path}/hf.sqlite3", keep_history=False) as hf:
        (outcome,) = apply(hf, proposal)  # type: ignore[arg-type]
        assert isinstance(outcome, Rejected), outcome


def test_a_retried_pack_record_is_not_applied_twice(replica: Replica) -> None:
    w = _Writer(replica)
    t1 = w.write({0: pickled(), 1: pickled(), 2: pickled()})
    record = pack_objects(b"p1", t1, t1, removed=[(1, t1)])
    (first,) = apply(replica, record)
    dump = replica.logical_dump()
    (again,) = apply(replica, record)
    assert again == Duplicate(first)
    assert replica.logical_dump()["object_state"] == dump["object_state"]


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: PackObjects(5, 4), "pack_tid 5 outside 1..4"),
        (lambda: PackObjects(0, 4), "pack_tid 0 outside 1..4"),
        (lambda: PackObjects(4, 4, pruned=(PrunedObject(1, 5),)), "keep_tid 5 outside 1..4"),
        (lambda: PackObjects(4, 4, removed=(RemovedObject(1, 0),)), "removed tid 0 outside"),
        (
            lambda: PackObjects(4, 4, removed=(RemovedObject(1, 2), RemovedObject(1, 3))),
            "an oid appears twice in removed",
        ),
        (
            lambda: PackObjects(4, 4, (PrunedObject(1, 2),), (RemovedObject(1, 3),)),
            "oids both pruned and removed",
        ),
        (lambda: PackTransactions(3, 2), "first_tid 3 outside 1..2"),
    ],
)
def test_malformed_pack_records(build: object, message: str) -> None:
    with pytest.raises(MalformedRecord, match=message):
        build()  # type: ignore[operator]


def test_pack_records_round_trip() -> None:
    body = PackObjects(7, 9, (PrunedObject(1, 7), PrunedObject(2, 3)), (RemovedObject(4, 5),))
    for record in (Record(b"r", body), Record(b"s", PackTransactions(1, 7))):
        assert decode_record(encode_record(record)) == record


def test_two_replicas_applying_the_same_pack_log_are_identical(tmp_path: object) -> None:
    """The same slots, pack records among commits, give the same rows and running hash."""
    for keep_history in (False, True):
        with (
            Replica.open(f"{tmp_path}/a{keep_history}.sqlite3", keep_history) as a,
            Replica.open(f"{tmp_path}/b{keep_history}.sqlite3", keep_history) as b,
        ):
            w = _Writer(a, b)
            w.write({0: pickled(1, 2), 1: pickled(), 2: pickled(3), 3: pickled()}, {3: b"x"})
            t2 = w.write({0: pickled(1), 2: pickled(3, value=1)})
            planned = current_tids(a)
            w.write({0: pickled(1, 3)})  # after the plan: 3 is referenced again
            pruned = [(0, t2), (2, t2)] if keep_history else []
            outcomes = w.apply(
                pack_objects(b"p1", t2, t2, pruned=pruned),
                pack_objects(b"p2", t2, t2, removed=[(2, planned[2]), (3, planned[3])]),
            )
            # HP: p1 pruned 2's first state already.
            assert outcomes[1] == Packed(states_removed=1, objects_removed=1, objects_kept=1)
            if keep_history:
                w.apply(pack_transactions(b"p3", 1, t2))
            assert a.applied_slot == b.applied_slot
            assert a.running_hash == b.running_hash
            assert a.logical_dump() == b.logical_dump()
            assert sorted(current_tids(b)) == [0, 1, 3]
