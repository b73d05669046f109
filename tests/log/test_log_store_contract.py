"""The ``LogStore`` contract, run against ``MemoryLogStore`` and ``SqliteLogStore`` alike
(CONVENTIONS.md rule 8): whatever the simulator learns from the twin holds for the real store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import pytest

from relstorage_paxos.core.ballot import Ballot
from relstorage_paxos.core.messages import LogEntry, Proposal
from relstorage_paxos.core.ready import Persist, PersistentState
from relstorage_paxos.errors import LogStoreError
from relstorage_paxos.log import LogStore, MemoryLogStore, SqliteLogStore
from tests.log.support import entry, value


class Harness(Protocol):
    def open(self) -> LogStore:
        """The store under test, on a new empty log."""

    def reopen(self) -> LogStore:
        """Close the current store cleanly and open the same log again."""

    def close(self) -> None: ...


class MemoryHarness:
    def __init__(self) -> None:
        self.store = MemoryLogStore()

    def open(self) -> LogStore:
        return self.store

    def reopen(self) -> LogStore:
        self.store.close()
        self.store = MemoryLogStore(self.store.crash())
        return self.store

    def close(self) -> None:
        self.store.close()


class SqliteHarness:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.store = SqliteLogStore(path, cluster_id="test", node_id=1, create=True)

    def open(self) -> LogStore:
        return self.store

    def reopen(self) -> LogStore:
        self.store.close()
        self.store = SqliteLogStore(self.path, cluster_id="test", node_id=1)
        return self.store

    def close(self) -> None:
        self.store.close()


@pytest.fixture(params=["memory", "sqlite"])
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    made: Harness = (
        MemoryHarness() if request.param == "memory" else SqliteHarness(tmp_path / "paxos.sqlite3")
    )
    yield made
    made.close()


@pytest.fixture
def store(harness: Harness) -> LogStore:
    return harness.open()


def test_a_new_log_is_empty(store: LogStore) -> None:
    assert store.load() == PersistentState()


def test_round_trip_before_and_after_reopen(harness: Harness) -> None:
    store = harness.open()
    entries = (entry(1, chosen=True), entry(2), entry(3, round_=2, payload=b"third"))
    store.persist(Persist(promised=Ballot(2, 3), entries=entries, must_sync=True))
    expected = PersistentState(promised=Ballot(2, 3), entries=entries, truncated=0)
    assert store.load() == expected
    assert harness.reopen().load() == expected


def test_upsert_replaces_the_entry_of_a_slot(harness: Harness) -> None:
    store = harness.open()
    store.persist(Persist(entries=(entry(5, payload=b"old"), entry(6)), must_sync=True))
    store.persist(Persist(entries=(entry(5, round_=2, payload=b"new"),), must_sync=True))
    assert store.load().entries == (entry(5, round_=2, payload=b"new"), entry(6))
    assert harness.reopen().load().entries == (entry(5, round_=2, payload=b"new"), entry(6))


def test_within_one_persist_the_last_entry_for_a_slot_wins(store: LogStore) -> None:
    store.persist(Persist(entries=(entry(1, payload=b"a"), entry(1, payload=b"b"))))
    assert store.load().entries == (entry(1, payload=b"b"),)


def test_entries_load_in_slot_order(store: LogStore) -> None:
    store.persist(Persist(entries=(entry(9), entry(2), entry(7))))
    store.persist(Persist(entries=(entry(1), entry(8))))
    assert [e.slot for e in store.load().entries] == [1, 2, 7, 8, 9]


def test_truncation_deletes_up_to_the_point_and_survives_reload(harness: Harness) -> None:
    store = harness.open()
    store.persist(Persist(entries=tuple(entry(s) for s in range(1, 11)), must_sync=True))
    store.persist(Persist(truncated=4))
    expected = PersistentState(entries=tuple(entry(s) for s in range(5, 11)), truncated=4)
    assert store.load() == expected
    assert harness.reopen().load() == expected


def test_truncation_applies_after_the_entries_of_the_same_persist(store: LogStore) -> None:
    store.persist(Persist(entries=(entry(3, chosen=True), entry(4), entry(5)), truncated=4))
    assert store.load() == PersistentState(entries=(entry(5),), truncated=4)


def test_truncation_past_the_last_entry_empties_the_log(store: LogStore) -> None:
    store.persist(Persist(entries=(entry(1), entry(2))))
    store.persist(Persist(truncated=100))
    assert store.load() == PersistentState(truncated=100)
    store.persist(Persist(entries=(entry(101),)))
    assert store.load() == PersistentState(entries=(entry(101),), truncated=100)


def test_promised_survives_reload_and_leaves_entries_alone(harness: Harness) -> None:
    store = harness.open()
    store.persist(Persist(promised=Ballot(1, 2), entries=(entry(1),), must_sync=True))
    store.persist(Persist(promised=Ballot(7, 1), must_sync=True))
    assert harness.reopen().load() == PersistentState(promised=Ballot(7, 1), entries=(entry(1),))


def test_the_same_promise_again_is_accepted(store: LogStore) -> None:
    store.persist(Persist(promised=Ballot(3, 1)))
    store.persist(Persist(promised=Ballot(3, 1)))
    assert store.load().promised == Ballot(3, 1)


def test_chosen_flags_round_trip_and_can_be_set_later(harness: Harness) -> None:
    store = harness.open()
    store.persist(Persist(entries=(entry(1), entry(2, chosen=True)), must_sync=True))
    assert [e.chosen for e in store.load().entries] == [False, True]
    store.persist(Persist(entries=(entry(1, chosen=True),)))
    assert [e.chosen for e in harness.reopen().load().entries] == [True, True]


def test_empty_values_round_trip(harness: Harness) -> None:
    store = harness.open()
    noop = LogEntry(slot=1, ballot=Ballot(1, 1), value=(), chosen=True)
    blank = LogEntry(slot=2, ballot=Ballot(1, 1), value=(Proposal(b"", b""),), chosen=False)
    store.persist(Persist(entries=(noop, blank), must_sync=True))
    assert harness.reopen().load().entries == (noop, blank)


@pytest.mark.parametrize("must_sync", [False, True])
def test_an_empty_persist_changes_nothing(store: LogStore, must_sync: bool) -> None:
    store.persist(Persist(promised=Ballot(1, 1), entries=(entry(1),), truncated=0))
    before = store.load()
    store.persist(Persist(must_sync=must_sync))
    assert store.load() == before


def test_large_values_round_trip(harness: Harness) -> None:
    store = harness.open()
    big = LogEntry(
        slot=1, ballot=Ballot(1, 1), value=value(bytes(range(256)) * 16384), chosen=False
    )
    many = LogEntry(
        slot=2,
        ballot=Ballot(1, 1),
        value=tuple(Proposal(i.to_bytes(16, "big"), b"p" * i) for i in range(1000)),
        chosen=True,
    )
    store.persist(Persist(entries=(big, many), must_sync=True))
    assert harness.reopen().load().entries == (big, many)


def test_large_ballots_and_slots_round_trip(harness: Harness) -> None:
    store = harness.open()
    huge = 2**63 - 1
    store.persist(
        Persist(
            promised=Ballot(huge, huge),
            entries=(LogEntry(huge, Ballot(huge, huge), value(b"x"), True),),
            truncated=huge - 1,
            must_sync=True,
        )
    )
    loaded = harness.reopen().load()
    assert loaded.promised == Ballot(huge, huge)
    assert loaded.entries[0].slot == huge
    assert loaded.truncated == huge - 1


def test_a_long_log_round_trips(harness: Harness) -> None:
    store = harness.open()
    for first in range(1, 100_001, 5_000):
        batch = tuple(entry(s, round_=s // 30_000 + 1) for s in range(first, first + 5_000))
        store.persist(Persist(entries=batch, must_sync=True))
    loaded = harness.reopen().load()
    assert len(loaded.entries) == 100_000
    assert [e.slot for e in loaded.entries] == list(range(1, 100_001))
    assert loaded.entries[-1] == entry(100_000, round_=4)


def test_a_promise_never_goes_back(store: LogStore) -> None:
    store.persist(Persist(promised=Ballot(5, 2)))
    with pytest.raises(AssertionError):
        store.persist(Persist(promised=Ballot(5, 1), entries=(entry(1),)))
    assert store.load() == PersistentState(promised=Ballot(5, 2))


def test_the_truncation_point_never_goes_back(store: LogStore) -> None:
    store.persist(Persist(truncated=10))
    with pytest.raises(AssertionError):
        store.persist(Persist(truncated=9))
    assert store.load().truncated == 10


def test_nothing_is_written_into_the_truncated_part(store: LogStore) -> None:
    store.persist(Persist(truncated=10))
    with pytest.raises(AssertionError):
        store.persist(Persist(entries=(entry(11), entry(10))))
    assert store.load() == PersistentState(truncated=10)


def test_use_after_close_raises_and_close_is_idempotent(store: LogStore) -> None:
    store.close()
    store.close()
    with pytest.raises(LogStoreError, match="after close"):
        store.load()
    with pytest.raises(LogStoreError, match="after close"):
        store.persist(Persist(entries=(entry(1),)))
