"""Durable acceptor state: the promised ballot, the accepted value of each slot, and the
truncation point (DESIGN.md §2 ``log/``, §6 Durability).

The runtime persists each ``Ready.persist`` here before sending the messages that depend on it,
and loads a ``PersistentState`` on restart. ``SqliteLogStore`` keeps it in ``paxos.sqlite3``;
``MemoryLogStore`` is its in-memory twin, which also models what a crash loses.
"""

from relstorage_paxos.log.sqlite_store import SqliteLogStore
from relstorage_paxos.log.store import LogStore, MemoryLogStore

__all__ = ["LogStore", "MemoryLogStore", "SqliteLogStore"]
