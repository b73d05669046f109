"""The log store port: where an acceptor keeps its promise, accepted values and truncation point.

Owns the ``LogStore`` protocol, the invariants every implementation asserts, and
``MemoryLogStore``, the in-memory twin used by unit tests and the simulator (hashicorp/raft's
``InmemStore``). Imports only ``core``. Called from the runtime's driver thread (or the
simulator's loop) only; not thread-safe.
"""

from __future__ import annotations

from typing import Protocol

from relstorage_paxos.core.ballot import Ballot
from relstorage_paxos.core.messages import LogEntry
from relstorage_paxos.core.ready import Persist, PersistentState
from relstorage_paxos.errors import LogStoreError


class LogStore(Protocol):
    """Durable acceptor state (DESIGN.md §2 ``log/``, §6 Durability).

    ``persist`` applies one ``Persist`` atomically: the new promise, an upsert by slot of each
    entry, then the deletion of every entry at or below the new truncation point. When
    ``persist.must_sync`` is true it returns only after those changes, and every earlier
    persist, are on disk; without it a crash may lose this persist and later ones (never an
    earlier synced one). An empty ``Persist`` does nothing, whatever its ``must_sync``: what an
    outgoing message depends on was synced by the persist that wrote it.

    ``load`` returns the current state, entries in slot order. Any failure raises
    ``LogStoreError``; after a failed write the store refuses further use, so the node stops
    rather than continue on state it cannot trust. ``close`` is idempotent; a clean close
    leaves everything persisted on disk.
    """

    def persist(self, persist: Persist) -> None: ...

    def load(self) -> PersistentState: ...

    def close(self) -> None: ...


def check_persist(promised: Ballot, truncated: int, persist: Persist) -> None:
    """Assert what an acceptor's log never does, given its current ``promised`` and
    ``truncated``: a promise never goes back (Paxos Made Simple §2.2: an acceptor never
    forgets a promise), nor does the truncation point, and nothing is written into the
    truncated part of the log. A failure is a bug in the caller, caught before any write."""
    if persist.promised is not None:
        assert persist.promised >= promised, (persist.promised, promised)
    if persist.truncated is not None:
        assert persist.truncated >= truncated, (persist.truncated, truncated)
    for entry in persist.entries:
        assert entry.slot > truncated, (entry.slot, truncated)


class _State:
    """One copy of the acceptor state, mutated in place by ``apply``."""

    __slots__ = ("entries", "promised", "truncated")

    def __init__(self, promised: Ballot, truncated: int, entries: dict[int, LogEntry]) -> None:
        self.promised = promised
        self.truncated = truncated
        self.entries = entries

    @classmethod
    def of(cls, state: PersistentState) -> _State:
        return cls(state.promised, state.truncated, {e.slot: e for e in state.entries})

    def copy(self) -> _State:
        return _State(self.promised, self.truncated, dict(self.entries))

    def apply(self, persist: Persist) -> None:
        if persist.promised is not None:
            self.promised = persist.promised
        for entry in persist.entries:
            self.entries[entry.slot] = entry
        if persist.truncated is not None:
            self.truncated = persist.truncated
            for slot in [s for s in self.entries if s <= persist.truncated]:
                del self.entries[slot]

    def freeze(self) -> PersistentState:
        entries = tuple(self.entries[slot] for slot in sorted(self.entries))
        return PersistentState(promised=self.promised, entries=entries, truncated=self.truncated)


class MemoryLogStore:
    """``LogStore`` in memory, modelling durability the way SQLite's WAL provides it.

    Two copies of the state: the live one every persist updates, and the durable one that only
    a ``must_sync`` persist brings up to date (it makes every earlier persist durable too, as
    an fsync of the WAL does). ``crash`` drops what was never synced: that is the worst a power
    cut can do to the real store, which may also keep a prefix of the unsynced persists.
    """

    def __init__(self, state: PersistentState | None = None) -> None:
        """Start from ``state`` as if it had been loaded from disk (a restart in a simulation);
        an empty log by default."""
        self._durable = _State.of(state if state is not None else PersistentState())
        self._live = self._durable.copy()
        self._unsynced: list[Persist] = []
        self._closed = False

    def persist(self, persist: Persist) -> None:
        self._check_open()
        check_persist(self._live.promised, self._live.truncated, persist)
        if persist.is_empty():
            return
        self._live.apply(persist)
        self._unsynced.append(persist)
        if persist.must_sync:
            self._sync()

    def load(self) -> PersistentState:
        self._check_open()
        return self._live.freeze()

    def close(self) -> None:
        """Like SQLite's last close, which checkpoints the WAL: everything becomes durable."""
        if not self._closed:
            self._sync()
            self._closed = True

    def crash(self) -> PersistentState:
        """Lose every persist since the last sync, as a power cut would, and return what a
        restarted node loads. An open store stays usable, now holding only that state."""
        self._unsynced.clear()
        self._live = self._durable.copy()
        return self._durable.freeze()

    def _sync(self) -> None:
        for persist in self._unsynced:
            self._durable.apply(persist)
        self._unsynced.clear()

    def _check_open(self) -> None:
        if self._closed:
            raise LogStoreError("memory log store: used after close()")
