"""A commit's object rows, written with RelStorage's own SQL.

Owns: the applier connection's TEMP tables and the statements that move a commit from them
into ``object_state`` / ``current_object`` / ``blob_chunk`` / ``"transaction"``. Every one is
RelStorage's: ``Sqlite3ObjectMover.on_store_opened`` creates the TEMP tables,
``replace_temps`` fills ``temp_store``, ``GenericTransactionControl.add_transaction`` writes
the HP transaction row, ``move_from_temp`` and ``update_current`` do the rest, and the
mover's before-commit hook empties the TEMP tables (relstorage/adapters/mover.py and
sqlite/mover.py). So a replica holds exactly the rows a stock RelStorage commit would write,
and app processes read them with stock RelStorage SQL.

The one statement that is ours is ``stale_writes``: RelStorage detects conflicts with an inner
join against current states (``_detect_conflict_query``), which misses an object whose
``prev_tid`` is not 0 but that no longer exists; the applier must refuse that write too.

Must not import: the stdlib ``sqlite3`` module's connections (see ``_dbapi.py``).
Called by: the applier thread, inside the slot's SQLite transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import apsw
from relstorage.adapters.sqlite.mover import Sqlite3ObjectMover  # type: ignore[import-untyped]
from relstorage.adapters.txncontrol import (  # type: ignore[import-untyped]
    GenericTransactionControl,
)

from relstorage_paxos.replica._dbapi import Connection, ConnectionManager, Driver, make_options
from relstorage_paxos.replica.outcomes import StaleWrite
from relstorage_paxos.replica.records import CommitTxn, RestoreTxn

# RelStorage's SQLite mover keeps one chunk per blob (``_upload_blob_uses_chunks = False``)
# and inserts it with this statement when uploading to the TEMP table (tid None).
_INSERT_TEMP_BLOB: Final = "INSERT INTO temp_blob_chunk (zoid, chunk_num, chunk) VALUES (?, 0, ?)"

RESTORE_BATCH_ROWS: Final = 100
"""Rows per statement when restoring; the batcher's SQL has one parameter set per row."""

_STALE_WRITES_HF: Final = """
    SELECT temp_store.zoid, temp_store.prev_tid, COALESCE(object_state.tid, 0)
    FROM temp_store LEFT JOIN object_state USING (zoid)
    WHERE COALESCE(object_state.tid, 0) <> temp_store.prev_tid
    ORDER BY temp_store.zoid
"""

_STALE_WRITES_HP: Final = """
    SELECT temp_store.zoid, temp_store.prev_tid, COALESCE(current_object.tid, 0)
    FROM temp_store LEFT JOIN current_object USING (zoid)
    WHERE COALESCE(current_object.tid, 0) <> temp_store.prev_tid
    ORDER BY temp_store.zoid
"""


_DELETE_HF: Final = (
    "DELETE FROM blob_chunk WHERE zoid IN (SELECT zoid FROM temp_store WHERE state IS NULL)",
    "DELETE FROM object_state WHERE zoid IN (SELECT zoid FROM temp_store WHERE state IS NULL)",
    "DELETE FROM temp_store WHERE state IS NULL",
)


class ObjectWriter:
    """Writes commits on the applier's connection; one instance per connection, because the
    TEMP tables belong to the connection."""

    def __init__(self, db: apsw.Connection, keep_history: bool) -> None:
        self._keep_history = keep_history
        self._connection = Connection(db)
        self._cursor = self._connection.cursor()
        driver = Driver()
        self._mover = Sqlite3ObjectMover(driver, make_options(keep_history))
        # It finds its SQL dialect through connmanager.driver; it needs no poller for this.
        self._txncontrol = GenericTransactionControl(
            ConnectionManager(driver), None, keep_history=keep_history, Binary=driver.Binary
        )
        assert not self._connection.in_transaction
        self._mover.on_store_opened(self._cursor)

    def stage(self, commit: CommitTxn) -> list[StaleWrite]:
        """Load the commit into the TEMP tables; return the writes whose ``prev_tid`` is not
        the object's current tid (0 for an object that does not exist), in OID order."""
        self._mover.replace_temps(
            self._cursor, ((w.state, w.oid, w.prev_tid) for w in commit.writes)
        )
        for blob in commit.blobs:
            self._cursor.execute(_INSERT_TEMP_BLOB, (blob.oid, blob.data))
        self._cursor.execute(_STALE_WRITES_HP if self._keep_history else _STALE_WRITES_HF)
        stale = []
        for oid, prev_tid, current_tid in self._cursor.fetchall():
            assert isinstance(oid, int), oid
            assert isinstance(prev_tid, int), prev_tid
            assert isinstance(current_tid, int), current_tid
            stale.append(StaleWrite(oid, prev_tid, current_tid))
        return stale

    def write(self, commit: CommitTxn, tid: int) -> None:
        """Move the staged commit into the permanent tables under ``tid``. A write without
        a state deletes: history-preserving stores it as RelStorage's whiteout (a NULL
        state, which ``move_from_temp`` copies as it is); history-free removes the row and
        its blob, as RelStorage's own ``deleteObject`` does."""
        self._txncontrol.add_transaction(
            self._cursor, tid, commit.user, commit.description, commit.extension
        )
        if not self._keep_history:
            for statement in _DELETE_HF:
                self._cursor.execute(statement)
        self._mover.move_from_temp(self._cursor, tid, bool(commit.blobs))
        self._mover.update_current(self._cursor, tid)

    def existing_oids(self, oids: Iterable[int]) -> list[int]:
        """Those of ``oids`` that have a state (HF: a row in ``object_state``), in order."""
        assert not self._keep_history
        existing = []
        for oid in sorted(oids):
            self._cursor.execute("SELECT 1 FROM object_state WHERE zoid = ?", (oid,))
            if self._cursor.fetchone() is not None:
                existing.append(oid)
        return existing

    def restore(self, restore: RestoreTxn) -> None:
        """Write a restored transaction, each object under its own tid, as RelStorage's
        restore path does (``mover.restore`` with its batcher, blobs straight into
        ``blob_chunk`` under their object's tid, then the HP transaction row and current
        pointers). A restored state replaces whatever the object had at that tid; None
        removes (HF) or "uncreates" (HP) it."""
        cursor = self._cursor
        self._txncontrol.add_transaction(
            cursor,
            restore.tid,
            restore.user,
            restore.description,
            restore.extension,
            restore.packed,
        )
        batcher = self._mover.make_batcher(cursor, RESTORE_BATCH_ROWS)
        for obj in restore.objects:
            self._mover.restore(cursor, batcher, obj.oid, obj.tid, obj.state)
        batcher.flush()
        tids = {obj.oid: obj.tid for obj in restore.objects}
        for blob in restore.blobs:
            tid = tids[blob.oid]
            if self._keep_history:
                cursor.execute("DELETE FROM blob_chunk WHERE zoid = ? AND tid = ?", (blob.oid, tid))
            else:
                cursor.execute("DELETE FROM blob_chunk WHERE zoid = ?", (blob.oid,))
            cursor.execute(
                "INSERT INTO blob_chunk (zoid, tid, chunk_num, chunk) VALUES (?, ?, 0, ?)",
                (blob.oid, tid, blob.data),
            )
        self._mover.update_current(cursor, restore.tid)

    def clear(self) -> None:
        """Empty the TEMP tables, as RelStorage does before every commit or rollback."""
        self._connection.run_before_commit_cleanups()
