"""apply_slot: slot order, the running hash, one transaction per slot, idempotence,
rejections, OID allocation."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest

from relstorage_paxos.pb import records_pb2 as pb
from relstorage_paxos.replica import (
    RECORD_VERSION,
    Allocated,
    Duplicate,
    Granted,
    NoopApplied,
    Proposal,
    Rejected,
    Replica,
)

from .helpers import allocate, apply, commit, lock, noop


def _expected_hash(previous: bytes, slot: int, proposals: list[Proposal]) -> bytes:
    hasher = hashlib.sha256(previous + slot.to_bytes(8, "big"))
    for request_id, payload in proposals:
        hasher.update(len(request_id).to_bytes(4, "big") + request_id)
        hasher.update(len(payload).to_bytes(8, "big") + payload)
    return hasher.digest()


def test_slots_must_come_in_order(replica: Replica) -> None:
    with pytest.raises(AssertionError):
        replica.apply_slot(2, [])
    replica.apply_slot(1, [])
    with pytest.raises(AssertionError):
        replica.apply_slot(1, [])


def test_empty_slot_moves_only_slot_and_hash(replica: Replica) -> None:
    before = replica.logical_dump()
    assert replica.apply_slot(1, []) == []
    assert replica.applied_slot == 1
    assert replica.running_hash == _expected_hash(bytes(32), 1, [])
    after = replica.logical_dump()
    assert {k: v for k, v in after.items() if k != "paxos_meta"} == {
        k: v for k, v in before.items() if k != "paxos_meta"
    }


def test_running_hash_chains_slots_and_proposals(replica: Replica) -> None:
    first = [noop(b"n1"), lock(b"l1", b"t1", write=[1])]
    second = [(b"x", b"garbage")]
    replica.apply_slot(1, first)
    replica.apply_slot(2, second)
    expected = _expected_hash(_expected_hash(bytes(32), 1, first), 2, second)
    assert replica.running_hash == expected


def test_noop(replica: Replica) -> None:
    assert apply(replica, noop(b"n1")) == [NoopApplied()]
    assert apply(replica, noop(b"n1")) == [Duplicate(NoopApplied())]


def test_duplicates_within_one_slot(replica: Replica) -> None:
    outcomes = apply(replica, lock(b"r1", b"t1", write=[1]), lock(b"r1", b"t1", write=[1]))
    assert outcomes == [Granted(), Duplicate(Granted())]


def test_outcome_of_unknown_request_is_none(replica: Replica) -> None:
    assert replica.outcome(b"never") is None


def test_malformed_payloads_are_rejected_and_recorded(replica: Replica) -> None:
    future = pb.Record(version=RECORD_VERSION + 1, request_id=b"v")
    future.noop.SetInParent()
    mismatched = noop(b"other")[1]
    outcomes = apply(
        replica,
        (b"g", b"\xff\xff"),
        (b"v", future.SerializeToString()),
        (b"m", mismatched),
        (b"", noop(b"e")[1]),
    )
    assert outcomes == [
        Rejected("undecodable record"),
        Rejected(f"record version {RECORD_VERSION + 1}; this replica applies {RECORD_VERSION}"),
        Rejected("record names request 6f74686572, proposed as 6d"),
        Rejected("empty request id"),
    ]
    assert replica.outcome(b"g") == Rejected("undecodable record")
    assert replica.outcome(b"") is None


def test_a_failure_mid_slot_leaves_the_previous_slot(replica: Replica) -> None:
    apply(replica, lock(b"l1", b"t1", write=[1]))
    before_dump = replica.logical_dump()
    before_hash = replica.running_hash

    def failing() -> Iterator[Proposal]:
        yield commit(b"c1", b"t1", [(1, 0, b"x")])
        yield allocate(b"a1", 1, 10)
        raise OSError("the disk went away")

    with pytest.raises(OSError, match="disk"):
        replica.apply_slot(2, failing())
    assert replica.applied_slot == 1
    assert replica.running_hash == before_hash
    assert replica.logical_dump() == before_dump
    assert replica.outcome(b"c1") is None
    # The same slot applies afterwards as if nothing had happened.
    outcomes = replica.apply_slot(2, [commit(b"c1", b"t1", [(1, 0, b"x")])])
    assert replica.applied_slot == 2
    assert [type(o).__name__ for o in outcomes] == ["Committed"]


def test_allocation_reserves_consecutive_blocks(replica: Replica) -> None:
    outcomes = apply(replica, allocate(b"a1", 1, 16), allocate(b"a2", 2, 16))
    assert outcomes == [Allocated(1, 16), Allocated(17, 16)]
    assert apply(replica, allocate(b"a3", 1, 100)) == [Allocated(33, 100)]
    assert replica.next_oid == 133
    assert replica.logical_dump()["paxos_oid_block"] == [(1, 33, 100, 2), (2, 17, 16, 1)]
    assert apply(replica, allocate(b"a1", 1, 16)) == [Duplicate(Allocated(1, 16))]
    assert replica.next_oid == 133


def test_allocation_honours_min_oid(replica: Replica) -> None:
    apply(replica, allocate(b"a1", 1, 10))
    assert apply(replica, allocate(b"a2", 1, 10, min_oid=1000)) == [Allocated(1001, 10)]
    # A min_oid below what was handed out changes nothing.
    assert apply(replica, allocate(b"a3", 1, 10, min_oid=5)) == [Allocated(1011, 10)]


def test_allocation_beyond_the_last_oid_is_rejected(replica: Replica) -> None:
    apply(replica, allocate(b"a1", 1, 10, min_oid=2**63 - 12))
    assert replica.next_oid == 2**63 - 1
    (rejected,) = apply(replica, allocate(b"a2", 1, 1))
    assert isinstance(rejected, Rejected)
    assert replica.next_oid == 2**63 - 1
