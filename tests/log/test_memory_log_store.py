"""``MemoryLogStore``'s durability model: what ``crash`` keeps is what the simulator's
restarted nodes see, so it must lose exactly the unsynced persists."""

from __future__ import annotations

from relstorage_paxos.core.ballot import Ballot
from relstorage_paxos.core.ready import Persist, PersistentState
from relstorage_paxos.log import MemoryLogStore
from tests.log.support import entry


def test_crash_drops_unsynced_writes_and_keeps_synced_ones() -> None:
    store = MemoryLogStore()
    store.persist(Persist(promised=Ballot(1, 1), entries=(entry(1),), must_sync=True))
    store.persist(Persist(promised=Ballot(2, 1), entries=(entry(1, chosen=True), entry(2))))
    store.persist(Persist(truncated=1))
    durable = PersistentState(promised=Ballot(1, 1), entries=(entry(1),))
    assert store.crash() == durable
    assert store.load() == durable


def test_a_sync_makes_earlier_unsynced_writes_durable() -> None:
    store = MemoryLogStore()
    store.persist(Persist(entries=(entry(1, chosen=True),)))
    store.persist(Persist(promised=Ballot(3, 2), must_sync=True))
    assert store.crash() == PersistentState(promised=Ballot(3, 2), entries=(entry(1, chosen=True),))


def test_an_empty_persist_syncs_nothing() -> None:
    store = MemoryLogStore()
    store.persist(Persist(entries=(entry(1),)))
    store.persist(Persist(must_sync=True))
    assert store.crash() == PersistentState()


def test_the_store_stays_usable_after_a_crash() -> None:
    store = MemoryLogStore()
    store.persist(Persist(entries=(entry(1),), must_sync=True))
    store.persist(Persist(entries=(entry(2),)))
    store.crash()
    store.persist(Persist(entries=(entry(3),), must_sync=True))
    assert store.crash().entries == (entry(1), entry(3))


def test_a_clean_close_makes_everything_durable() -> None:
    store = MemoryLogStore()
    store.persist(Persist(entries=(entry(1),)))
    store.close()
    assert store.crash().entries == (entry(1),)


def test_a_store_starts_from_the_state_it_is_given() -> None:
    state = PersistentState(promised=Ballot(4, 1), entries=(entry(8),), truncated=7)
    store = MemoryLogStore(state)
    assert store.load() == state
    store.persist(Persist(entries=(entry(9),)))
    assert store.crash() == state
