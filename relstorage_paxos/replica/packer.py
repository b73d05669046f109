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
left without states. The order of every loop is fixed by the record or by SQL ``ORDER BY``,
and references are read with ZODB's own ``referencesf``, a pure function of the bytes.

Must not import: any clock or global randomness (tests/test_tidy.py), generated protobuf.
Called by: the applier thread, inside the slot's SQLite transaction.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

import apsw
from ZODB.serialize import referencesf
from ZODB.utils import u64

from relstorage_paxos.replica.outcomes import Packed, RecordedOutcome, Rejected
from relstorage_paxos.replica.records import PackObjects, PackTransactions, PrunedObject

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


@dataclass(slots=True)
class _Tally:
    states_removed: int = 0
    objects_removed: int = 0
    objects_kept: int = 0

    def outcome(self, transactions_removed: int) -> Packed:
        return Packed(
            states_removed=self.states_removed,
            objects_removed=self.objects_removed,
            objects_kept=self.objects_kept,
            transactions_removed=transactions_removed,
        )


class Packer:
    """Applies pack records on the applier's connection."""

    def __init__(self, db: apsw.Connection, keep_history: bool) -> None:
        self._db = db
        self._keep_history = keep_history

    # -- PackObjects ----------------------------------------------------------------------

    def pack_objects(self, record: PackObjects) -> RecordedOutcome:
        if record.pruned and not self._keep_history:
            return Rejected("a history-free replica keeps no old revisions to prune")
        tally = _Tally()
        emptied: set[int] = set()
        for pruned in record.pruned:
            self._prune(pruned, tally, emptied)
        if record.removed:
            self._remove(record, tally, emptied)
        removed_txns = self._drop_emptied_transactions(emptied) if self._keep_history else 0
        return tally.outcome(removed_txns)

    def _prune(self, pruned: PrunedObject, tally: _Tally, emptied: set[int]) -> None:
        oid, keep_tid = pruned.oid, pruned.keep_tid
        row = self._db.execute(
            "SELECT prev_tid FROM object_state WHERE zoid = ? AND tid = ?", (oid, keep_tid)
        ).fetchone()
        if row is None:  # removed by another pack since the plan
            tally.objects_kept += 1
            return
        tids = self._column(
            "SELECT tid FROM object_state WHERE zoid = ? AND tid > 0 AND tid < ? ORDER BY tid",
            (oid, keep_tid),
        )
        if not tids:
            return
        self._db.execute(
            "DELETE FROM object_state WHERE zoid = ? AND tid > 0 AND tid < ?", (oid, keep_tid)
        )
        if row[0] in tids:
            # RelStorage's pack ends the prev_tid chain at the first state it keeps.
            self._db.execute(
                "UPDATE object_state SET prev_tid = 0 WHERE zoid = ? AND tid = ?", (oid, keep_tid)
            )
        tally.states_removed += len(tids)
        emptied.update(tids)

    def _remove(self, record: PackObjects, tally: _Tally, emptied: set[int]) -> None:
        planned = {removed.oid: removed.tid for removed in record.removed}
        protected = self._protected(planned, record.snapshot_tid)
        tally.objects_kept += len(protected)
        for oid in sorted(planned.keys() - protected):
            tids = self._column("SELECT tid FROM object_state WHERE zoid = ? ORDER BY tid", (oid,))
            if self._keep_history:
                # current_object references object_state: the pointer goes first.
                self._db.execute("DELETE FROM current_object WHERE zoid = ?", (oid,))
            self._db.execute("DELETE FROM object_state WHERE zoid = ?", (oid,))
            tally.objects_removed += 1
            tally.states_removed += len(tids)
            emptied.update(tids)

    def _protected(self, planned: dict[int, int], snapshot_tid: int) -> set[int]:
        """The planned removals that must stay: changed, locked, or referenced by a state
        committed after the snapshot, and everything they refer to among ``planned``."""
        current_sql = (
            "SELECT tid FROM current_object WHERE zoid = ?"
            if self._keep_history
            else "SELECT tid FROM object_state WHERE zoid = ?"
        )
        protected: set[int] = set()
        for oid in sorted(planned):
            row = self._db.execute(current_sql, (oid,)).fetchone()
            locked = self._db.execute(
                "SELECT 1 FROM paxos_lock_oid WHERE zoid = ? LIMIT 1", (oid,)
            ).fetchone()
            if row is None or row[0] != planned[oid] or locked is not None:
                protected.add(oid)
        newer = self._db.execute(
            "SELECT state FROM object_state WHERE tid > ? ORDER BY tid, zoid", (snapshot_tid,)
        )
        if not self._mark_referenced(planned, protected, (state for (state,) in newer)):
            return set(planned)
        pending = sorted(protected)
        while pending:
            states = self._db.execute(
                "SELECT state FROM object_state WHERE zoid = ? ORDER BY tid", (pending.pop(),)
            )
            before = set(protected)
            if not self._mark_referenced(planned, protected, (state for (state,) in states)):
                return set(planned)
            pending.extend(sorted(protected - before))
        return protected

    @staticmethod
    def _mark_referenced(
        planned: dict[int, int], protected: set[int], states: Iterable[object]
    ) -> bool:
        """Add to ``protected`` the planned OIDs ``states`` refer to; False if a state
        could not be read (then any of them may be referenced)."""
        for state in states:
            assert state is None or isinstance(state, bytes), type(state)
            refs = references(state)
            if refs is None:
                return False
            protected.update(oid for oid in refs if oid in planned)
        return True

    # -- transactions (history-preserving) --------------------------------------------------

    def _has_states(self, tid: int) -> bool:
        """The transaction still has object states, or a state names it as ``prev_tid``
        (``object_state.prev_tid`` references ``"transaction"``)."""
        row = self._db.execute(
            "SELECT EXISTS (SELECT 1 FROM object_state WHERE tid = ?)"
            " OR EXISTS (SELECT 1 FROM object_state WHERE prev_tid = ?)",
            (tid, tid),
        ).fetchone()
        assert row is not None
        return bool(row[0])

    def _drop_emptied_transactions(self, tids: set[int]) -> int:
        """Remove the packed transactions among ``tids`` that have no states left (an
        unpacked one waits for its PackTransactions, which removes it then)."""
        removed = 0
        for tid in sorted(tids):
            row = self._db.execute(
                'SELECT packed FROM "transaction" WHERE tid = ?', (tid,)
            ).fetchone()
            if row is not None and row[0] and not self._has_states(tid):
                self._db.execute('DELETE FROM "transaction" WHERE tid = ?', (tid,))
                removed += 1
        return removed

    def pack_transactions(self, record: PackTransactions, last_tid: int) -> RecordedOutcome:
        if not self._keep_history:
            return Rejected("a history-free replica has no transactions to pack")
        if record.last_tid > last_tid:
            return Rejected(f"transactions up to {record.last_tid} are not all committed yet")
        tids = self._column(
            'SELECT tid FROM "transaction" WHERE tid >= ? AND tid <= ? AND packed = 0 ORDER BY tid',
            (record.first_tid, record.last_tid),
        )
        removed = 0
        for tid in tids:
            if self._has_states(tid):
                self._db.execute(
                    'UPDATE "transaction" SET packed = 1, is_empty = 0 WHERE tid = ?', (tid,)
                )
            else:
                self._db.execute('DELETE FROM "transaction" WHERE tid = ?', (tid,))
                removed += 1
        return Packed(transactions_packed=len(tids), transactions_removed=removed)

    def _column(self, sql: str, params: tuple[int, ...]) -> list[int]:
        values = []
        for (value,) in self._db.execute(sql, params):
            assert isinstance(value, int), (sql, value)
            values.append(value)
        return values
