"""The replica's schema: RelStorage's SQLite schema plus the ``paxos_*`` tables.

Owns: creating a replica's tables in one SQLite transaction, and reading and writing the
``paxos_meta`` row. The RelStorage part is made by RelStorage's own installer
(``relstorage.adapters.sqlite.schema.Sqlite3SchemaInstaller``) run through the apsw shim of
``_dbapi.py``, so app processes can read the replica with stock RelStorage SQL and the DDL
cannot drift from what RelStorage would create (tests/replica compares the two).

The ``paxos_*`` tables hold the rest of the replicated state (DESIGN.md §2, §3):
- ``paxos_meta``: one row; format version, history mode, applied slot, last tid, running
  hash and next OID, written in the same SQLite transaction as the rows of each slot.
- ``paxos_lock_request``: one row per txn that holds or waits for object locks; waiting
  requests are granted in ``queue_seq`` order.
- ``paxos_lock_oid``: the OIDs of each request, ``exclusive`` for writes and not for
  readCurrent; they are held while the request is granted.
- ``paxos_outcome``: the outcome of every request id applied, for idempotent retries.
- ``paxos_oid_block``: the last OID block reserved for each node.
- ``paxos_released_txn``: txns released before any lock request of theirs was applied, until
  their lease ends, so such a request arriving late is refused instead of granted to a
  transaction that has gone.

Must not import: the stdlib ``sqlite3`` module's connections (see ``_dbapi.py``).
Called by: the applier thread (``Replica.open``); readers never write.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import apsw
from relstorage.adapters.sqlite.schema import (  # type: ignore[import-untyped]
    Sqlite3SchemaInstaller,
)
from relstorage.adapters.sqlite.scriptrunner import (  # type: ignore[import-untyped]
    Sqlite3ScriptRunner,
)

from relstorage_paxos.errors import HistoryModeMismatch, ReplicaFormatError
from relstorage_paxos.replica._dbapi import Connection, ConnectionManager, Driver

FORMAT_VERSION: Final = 2
"""The layout of the ``paxos_*`` tables; a replica of another version is refused."""

GENESIS_HASH: Final = bytes(32)
"""The running hash before slot 1."""

FIRST_OID: Final = 1
"""OID 0 is the root object, which ZODB creates without allocating it (RelStorage's
allocator also starts at 1)."""

_PAXOS_DDL: Final = (
    """
    CREATE TABLE paxos_meta (
        singleton       INTEGER PRIMARY KEY CHECK (singleton = 0),
        format_version  INTEGER NOT NULL,
        keep_history    INTEGER NOT NULL CHECK (keep_history IN (0, 1)),
        applied_slot    INTEGER NOT NULL CHECK (applied_slot >= 0),
        last_tid        INTEGER NOT NULL CHECK (last_tid >= 0),
        running_hash    BLOB NOT NULL,
        next_oid        INTEGER NOT NULL CHECK (next_oid >= 1)
    )
    """,
    """
    CREATE TABLE paxos_lock_request (
        txn_id          BLOB PRIMARY KEY,
        request_id      BLOB NOT NULL UNIQUE,
        node_id         INTEGER NOT NULL,
        lease_until_us  INTEGER NOT NULL,
        queue_seq       INTEGER NOT NULL UNIQUE,
        granted         INTEGER NOT NULL CHECK (granted IN (0, 1))
    )
    """,
    """
    CREATE TABLE paxos_lock_oid (
        txn_id          BLOB NOT NULL
                            REFERENCES paxos_lock_request (txn_id) ON DELETE CASCADE,
        zoid            INTEGER NOT NULL,
        exclusive       INTEGER NOT NULL CHECK (exclusive IN (0, 1)),
        PRIMARY KEY (txn_id, zoid)
    )
    """,
    "CREATE INDEX paxos_lock_oid_zoid ON paxos_lock_oid (zoid)",
    """
    CREATE TABLE paxos_outcome (
        request_id      BLOB PRIMARY KEY,
        slot            INTEGER NOT NULL,
        outcome         BLOB NOT NULL
    )
    """,
    """
    CREATE TABLE paxos_oid_block (
        node_id         INTEGER PRIMARY KEY,
        start_oid       INTEGER NOT NULL,
        count           INTEGER NOT NULL,
        slot            INTEGER NOT NULL
    )
    """,
    """
    CREATE TABLE paxos_released_txn (
        txn_id          BLOB PRIMARY KEY,
        lease_until_us  INTEGER NOT NULL
    )
    """,
)


@dataclass(frozen=True, slots=True)
class Meta:
    """The ``paxos_meta`` row."""

    format_version: int
    keep_history: bool
    applied_slot: int
    last_tid: int
    running_hash: bytes
    next_oid: int


def relstorage_installer(keep_history: bool) -> Sqlite3SchemaInstaller:
    """RelStorage's SQLite schema installer, wired to the apsw shim."""
    driver = Driver()
    return Sqlite3SchemaInstaller(
        driver,
        None,  # its OID allocator is only used by zap_all/drop_all, which we never call
        connmanager=ConnectionManager(driver),
        runner=Sqlite3ScriptRunner(),
        keep_history=keep_history,
    )


def install(db: apsw.Connection, keep_history: bool) -> Meta:
    """Create every table of an empty replica; the caller holds the write transaction."""
    connection = Connection(db)
    # What Sqlite3SchemaInstaller.prepare() runs, minus opening its own (stdlib) connection.
    relstorage_installer(keep_history)._prepare_with_connection(connection, connection.cursor())
    for stmt in _PAXOS_DDL:
        db.execute(stmt)
    meta = Meta(
        format_version=FORMAT_VERSION,
        keep_history=keep_history,
        applied_slot=0,
        last_tid=0,
        running_hash=GENESIS_HASH,
        next_oid=FIRST_OID,
    )
    db.execute(
        "INSERT INTO paxos_meta (singleton, format_version, keep_history, applied_slot,"
        " last_tid, running_hash, next_oid) VALUES (0, ?, ?, ?, ?, ?, ?)",
        (
            meta.format_version,
            int(meta.keep_history),
            meta.applied_slot,
            meta.last_tid,
            meta.running_hash,
            meta.next_oid,
        ),
    )
    return meta


def write_meta(db: apsw.Connection, meta: Meta) -> None:
    """Store the per-slot fields of ``meta``; format and mode never change."""
    db.execute(
        "UPDATE paxos_meta SET applied_slot = ?, last_tid = ?, running_hash = ?, next_oid = ?",
        (meta.applied_slot, meta.last_tid, meta.running_hash, meta.next_oid),
    )


def table_names(db: apsw.Connection) -> set[str]:
    return {
        str(row[0]) for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    }


def read_meta(db: apsw.Connection, path: str) -> Meta:
    """The ``paxos_meta`` row of the replica at ``path`` (named in errors);
    ``ReplicaFormatError`` if the file is not a replica this code can use."""
    if "paxos_meta" not in table_names(db):
        raise ReplicaFormatError(f"{path} is not a relstorage_paxos replica (no paxos_meta)")
    row = db.execute(
        "SELECT format_version, keep_history, applied_slot, last_tid, running_hash, next_oid"
        " FROM paxos_meta"
    ).fetchone()
    if row is None:
        raise ReplicaFormatError(f"{path} has an empty paxos_meta table")
    format_version, keep_history, applied_slot, last_tid, running_hash, next_oid = row
    assert isinstance(format_version, int), format_version
    if format_version != FORMAT_VERSION:
        raise ReplicaFormatError(
            f"{path} has replica format {format_version}; this code reads {FORMAT_VERSION}"
        )
    assert isinstance(applied_slot, int), applied_slot
    assert isinstance(last_tid, int), last_tid
    assert isinstance(running_hash, bytes), running_hash
    assert isinstance(next_oid, int), next_oid
    return Meta(
        format_version=format_version,
        keep_history=bool(keep_history),
        applied_slot=applied_slot,
        last_tid=last_tid,
        running_hash=running_hash,
        next_oid=next_oid,
    )


def mode_name(keep_history: bool) -> str:
    return "history-preserving" if keep_history else "history-free"


def check_mode(meta: Meta, keep_history: bool | None, path: str) -> None:
    """``HistoryModeMismatch`` unless ``keep_history`` is None or the replica's own mode."""
    if keep_history is not None and keep_history != meta.keep_history:
        raise HistoryModeMismatch(
            f"{path} is a {mode_name(meta.keep_history)} replica; it cannot be opened"
            f" {mode_name(keep_history)} (zodbconvert converts between the two)"
        )
