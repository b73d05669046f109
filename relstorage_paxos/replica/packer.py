"""Pack records applied to the replica: old revisions pruned, unreachable objects removed,
transactions marked packed, every entry re-validated against the replica as it is now.

Owns: the apply of ``PackObjects`` and ``PackTransactions``. A pack is planned by an
application process on a read-only snapshot of its own replica (``adapter/pack.py``, after
RelStorage's ``HistoryPreservingPackUndo``/``HistoryFreePackUndo.pre_pack``), while commits
keep flowing; so nothing in a record is trusted that a later commit could have made wrong:

- pruning (history-preserving): the states of an object older than ``keep_tid``, its newest
  state at or before the pack tid, go only if that state is still there. States at or below
  the pack tid never come back (tids only grow), so this is always safe.
- removing a whole object (garbage collection, or an object whose newest state is a
  deletion) is safe only if it is still as planned: its current tid is the planned one (not
  written since, not gone), no transaction holds or awaits a lock on it (its commit would
  find it gone), and no state committed after the plan's snapshot refers to it, directly or
  through other objects of the record (the planner puts objects that refer to one another in
  the same record, so following references among them finds every such chain). Objects
  failing any check are kept, with everything they refer to in the record.

What is removed mirrors RelStorage's own pack (relstorage/adapters/packundo.py): states,
their blob chunks (the schema's ``ON DELETE CASCADE``), current-object pointers, ``prev_tid``
links to removed states (set to 0), and history-preserving transactions that are packed and
left without states. Each record takes a few set-wise statements over TEMP tables holding its
entries (the log waits while it applies); what they change does not depend on the order SQLite
visits rows, the Python loops run in OID or tid order, and references are read with ZODB's
own ``referencesf``, a pure function of the bytes.

Must not import: any clock or global randomness (tests/test_tidy.py), generated protobuf.
Called by: the applier thread, inside the slot's SQLite transaction.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from typing import Final

import apsw
from ZODB.serialize import referencesf
from ZODB.utils import u64

from relstorage_paxos.replica.locks import DATABASE
from relstorage_paxos.replica.outcomes import Packed, RecordedOutcome, Rejected
from relstorage_paxos.replica.records import PackObjects, PackTransactions

_ZLIB_PREFIX: Final = b".z"
_PLAIN_PREFIX: Final = b".n"
"""zc.zlibstorage's markers for a compressed and an uncompressed state (RelStorage packs
through it with references read from the untransformed state)."""


def references(state: bytes | None) -> set[int] | None:
    """The OIDs ``state`` refers to (ZODB's ``referencesf``, after undoing zc.zlibstorage's
    transform); None if it is no pickle this can read, which callers must treat as "may
    refer to anything"."""
    if not state:
        return set()
    data = state
    if data[:2] == _ZLIB_PREFIX:
        try:
            data = zlib.decompress(data[2:])
        except zlib.error:
            return None
    elif data[:2] == _PLAIN_PREFIX:
        data = data[2:]
    try:
        found: list[bytes] = referencesf(data)  # type: ignore[no-untyped-call]
        return {u64(oid) for oid in found}  # type: ignore[no-untyped-call]
    except MemoryError:
        raise  # not a property of the bytes: another replica might have read them
    except Exception:  # garbage makes the unpickler raise almost anything
        return None


_TEMP_TABLES: Final = (
    # The entries of the record being applied; keep = 1 marks those refused.
    "CREATE TEMP TABLE IF NOT EXISTS temp_pack_entry ("
    " zoid INTEGER PRIMARY KEY, tid INTEGER NOT NULL, keep INTEGER NOT NULL DEFAULT 0)",
    # The tids of the states it removed (history-preserving transactions to re-check).
    "CREATE TEMP TABLE IF NOT EXISTS temp_pack_tid (tid INTEGER PRIMARY KEY)",
)

_KEEP_WITHOUT_STATE: Final = """
    UPDATE temp_pack_entry SET keep = 1
    WHERE NOT EXISTS (
        SELECT 1 FROM object_state os
        WHERE os.zoid = temp_pack_entry.zoid AND os.tid = temp_pack_entry.tid
    )
"""

# CROSS JOIN makes SQLite loop over the record's entries and look their states up, rather
# than scan object_state: the work is the record's size, not the database's.
_PRUNED_STATES: Final = """
    SELECT os.rowid, os.tid FROM temp_pack_entry e CROSS JOIN object_state os
    ON os.zoid = e.zoid AND os.tid > 0 AND os.tid < e.tid
    WHERE e.keep = 0
"""

_END_PREV_TID_CHAINS: Final = """
    UPDATE object_state SET prev_tid = 0
    WHERE rowid IN (
        SELECT os.rowid FROM temp_pack_entry e CROSS JOIN object_state os
        ON os.zoid = e.zoid AND os.tid = e.tid
        WHERE e.keep = 0 AND os.prev_tid > 0 AND os.prev_tid < e.tid
    )
"""

_KEEP_CHANGED_OR_LOCKED: Final = """
    UPDATE temp_pack_entry SET keep = 1
    WHERE NOT EXISTS (
        SELECT 1 FROM {current} c
        WHERE c.zoid = temp_pack_entry.zoid AND c.tid = temp_pack_entry.tid
    )
    OR EXISTS (SELECT 1 FROM paxos_lock_oid l WHERE l.zoid = temp_pack_entry.zoid)
    OR EXISTS (SELECT 1 FROM paxos_lock_oid l WHERE l.zoid = {database} AND l.exclusive)
"""
"""Keep an object written since the plan, or that a lock request names; keep every one
while a database lock is requested or held (an undo may bring back a state that refers to
any of them)."""

_EMPTY: Final = """
    NOT EXISTS (SELECT 1 FROM object_state WHERE tid = "transaction".tid)
    AND NOT EXISTS (SELECT 1 FROM object_state WHERE prev_tid = "transaction".tid)
"""
"""A transaction without states, that no state names as ``prev_tid`` either
(``object_state.prev_tid`` references ``"transaction"``)."""


class Packer:
    """Applies pack records on the applier's connection, a few set-wise statements per
    record (a record holds thousands of entries, and the log waits while it applies)."""

    def __init__(self, db: apsw.Connection, keep_history: bool) -> None:
        self._db = db
        self._keep_history = keep_history
        for ddl in _TEMP_TABLES:
            db.execute(ddl)

    # -- PackObjects ----------------------------------------------------------------------

    def pack_objects(self, record: PackObjects) -> RecordedOutcome:
        if record.pruned and not self._keep_history:
            return Rejected("a history-free replica keeps no old revisions to prune")
        states_removed = objects_removed = objects_kept = 0
        if record.pruned:
            self._load_entries((p.oid, p.keep_tid) for p in record.pruned)
            states_removed, objects_kept = self._prune()
        if record.removed:
            self._load_entries((r.oid, r.tid) for r in record.removed)
            objects_removed, kept, states = self._remove(record.snapshot_tid)
            objects_kept += kept
            states_removed += states
        transactions_removed = self._drop_emptied_transactions() if self._keep_history else 0
        self._db.execute("DELETE FROM temp_pack_entry")
        self._db.execute("DELETE FROM temp_pack_tid")
        return Packed(
            states_removed=states_removed,
            objects_removed=objects_removed,
            objects_kept=objects_kept,
            transactions_removed=transactions_removed,
        )

    def _load_entries(self, entries: Iterable[tuple[int, int]]) -> None:
        self._db.execute("DELETE FROM temp_pack_entry")
        self._db.executemany("INSERT INTO temp_pack_entry (zoid, tid) VALUES (?, ?)", entries)

    def _prune(self) -> tuple[int, int]:
        """(states removed, entries refused): each entry's states older than its keep
        state go, unless that state is gone (another pack removed the object since)."""
        self._db.execute(_KEEP_WITHOUT_STATE)
        kept = self._db.changes()
        rowids, tids = [], []
        for rowid, tid in self._db.execute(_PRUNED_STATES):
            assert isinstance(rowid, int) and isinstance(tid, int), (rowid, tid)
            rowids.append((rowid,))
            tids.append(tid)
        self._remember_tids(tids)
        self._db.executemany("DELETE FROM object_state WHERE rowid = ?", rowids)
        # RelStorage's pack ends the prev_tid chain at the first state it keeps.
        self._db.execute(_END_PREV_TID_CHAINS)
        return len(rowids), kept

    def _remove(self, snapshot_tid: int) -> tuple[int, int, int]:
        """(objects removed, entries refused, states removed)."""
        current = "current_object" if self._keep_history else "object_state"
        self._db.execute(_KEEP_CHANGED_OR_LOCKED.format(current=current, database=DATABASE))
        planned = set(self._column("SELECT zoid FROM temp_pack_entry", ()))
        protected = set(self._column("SELECT zoid FROM temp_pack_entry WHERE keep = 1", ()))
        for oid in sorted(self._referenced(planned, protected, snapshot_tid) - protected):
            self._db.execute("UPDATE temp_pack_entry SET keep = 1 WHERE zoid = ?", (oid,))
        gone = "SELECT zoid FROM temp_pack_entry WHERE keep = 0"
        self._remember_tids(
            self._column(f"SELECT tid FROM object_state WHERE zoid IN ({gone})", ())
        )
        if self._keep_history:
            # current_object references object_state: the pointer goes first.
            self._db.execute(f"DELETE FROM current_object WHERE zoid IN ({gone})")
        self._db.execute(f"DELETE FROM object_state WHERE zoid IN ({gone})")
        states = self._db.changes()
        (kept,) = self._column("SELECT COUNT(*) FROM temp_pack_entry WHERE keep = 1", ())
        return len(planned) - kept, kept, states

    def _referenced(self, planned: set[int], protected: set[int], snapshot_tid: int) -> set[int]:
        """``protected`` grown by the planned objects a state committed after the snapshot
        refers to, and by everything protected ones refer to among ``planned``; all of
        ``planned`` if a state could not be read."""
        protected = set(protected)
        newer = self._db.execute(
            "SELECT state FROM object_state WHERE tid > ? ORDER BY tid, zoid", (snapshot_tid,)
        )
        if not self._mark_referenced(planned, protected, (state for (state,) in newer)):
            return planned
        pending = sorted(protected)
        while pending:
            states = self._db.execute(
                "SELECT state FROM object_state WHERE zoid = ? ORDER BY tid", (pending.pop(),)
            )
            before = set(protected)
            if not self._mark_referenced(planned, protected, (state for (state,) in states)):
                return planned
            pending.extend(sorted(protected - before))
        return protected

    @staticmethod
    def _mark_referenced(planned: set[int], protected: set[int], states: Iterable[object]) -> bool:
        """Add to ``protected`` the planned OIDs ``states`` refer to; False if a state
        could not be read (then any of them may be referenced)."""
        for state in states:
            assert state is None or isinstance(state, bytes), type(state)
            refs = references(state)
            if refs is None:
                return False
            protected.update(refs & planned)
        return True

    def _remember_tids(self, tids: Iterable[int]) -> None:
        self._db.executemany(
            "INSERT OR IGNORE INTO temp_pack_tid (tid) VALUES (?)", ((tid,) for tid in tids)
        )

    # -- transactions (history-preserving) --------------------------------------------------

    def _drop_emptied_transactions(self) -> int:
        """Remove the packed transactions that lost their last state to this record (an
        unpacked one waits for its PackTransactions, which removes it then)."""
        self._db.execute(
            'DELETE FROM "transaction" WHERE tid IN (SELECT tid FROM temp_pack_tid)'
            f" AND packed = 1 AND {_EMPTY}"
        )
        return self._db.changes()

    def pack_transactions(self, record: PackTransactions, last_tid: int) -> RecordedOutcome:
        if not self._keep_history:
            return Rejected("a history-free replica has no transactions to pack")
        if record.last_tid > last_tid:
            return Rejected(f"transactions up to {record.last_tid} are not all committed yet")
        span = (record.first_tid, record.last_tid)
        in_span = 'FROM "transaction" WHERE tid >= ? AND tid <= ? AND packed = 0'
        (packed,) = self._column(f"SELECT COUNT(*) {in_span}", span)
        self._db.execute(f"DELETE {in_span} AND {_EMPTY}", span)
        removed = self._db.changes()
        self._db.execute(
            'UPDATE "transaction" SET packed = 1, is_empty = 0'
            f" WHERE tid IN (SELECT tid {in_span})",
            span,
        )
        return Packed(transactions_packed=packed, transactions_removed=removed)

    def _column(self, sql: str, params: tuple[int, ...]) -> list[int]:
        values = []
        for (value,) in self._db.execute(sql, params):
            assert isinstance(value, int), (sql, value)
            values.append(value)
        return values
