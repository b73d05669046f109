"""Pack as log records (DESIGN.md §3): planned here, on a read-only snapshot of this node's
replica, applied by every replica's applier (``replica/packer.py``), which re-validates
each entry against the replica as it is then.

Owns: the pack plan and its semantics, which are RelStorage's ``pre_pack``
(relstorage/adapters/packundo.py) read from one snapshot instead of written to the pack
tables, which an application process may not write:
- the pack tid is RelStorage's ``choose_pack_transaction`` (the newest unpacked transaction
  at or before the requested time, history-preserving; the newest state's tid at or before
  it, history-free);
- with garbage collection, the objects kept are those reachable from the root (OID 0) and
  from every object written after the pack tid, following references from each object's
  newest state at or before the pack tid and from every later state; the others (among
  those with a state at or before the pack tid) are removed whole;
- history-preserving, every kept object loses its states older than its newest state at or
  before the pack tid; without garbage collection, the objects whose newest state is a
  deletion (at or before the pack tid) are removed whole; then every unpacked transaction
  at or before the pack tid is marked packed, and those left without states are removed;
- history-free without garbage collection does nothing, as RelStorage's pack does.

The records (``PackPlan.records``): ``PackObjects`` batches of about ``STATES_PER_RECORD``
states, pruned objects first, then removed ones in groups that hold every removed object
another one refers to (the applier follows references only within a record), then
``PackTransactions`` chunks. Request ids are ``pack/<16 random bytes>/<n>``: a retry after an
unknown outcome gets the recorded outcome, never a second apply. Each record is answered
once applied on this node, so the caller sees the packed database when ``pack`` returns.

``prepack_only`` plans and keeps the plan in this storage, changing nothing;
``skip_prepack`` packs with that plan (its entries are re-validated at apply, so an old plan
is still safe) and raises ``PackError`` when there is none.

Must not import: ``core``, ``log``, ``runtime``.
Called by: RelStorage's ``Pack`` (relstorage/storage/pack.py), on the application thread
that packs.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from relstorage_paxos.adapter import dbapi
from relstorage_paxos.adapter.link import NodeLink
from relstorage_paxos.adapter.writes import propose_with_retries
from relstorage_paxos.errors import PackError
from relstorage_paxos.replica import (
    Packed,
    PackObjects,
    PackTransactions,
    PrunedObject,
    RecordBody,
    RemovedObject,
)

logger = logging.getLogger(__name__)

STATES_PER_RECORD: Final = 2000
"""About how many states one PackObjects removes: it bounds how long one pack record holds
the applier, and with it the whole log."""

TRANSACTIONS_PER_RECORD: Final = 5000
"""Transactions one PackTransactions marks packed."""

GROUP_STATES_MAX: Final = 50_000
"""Unreachable objects that refer to one another go into one record, whole (the applier
follows references only within a record); a group with more states than this is kept, and
logged, rather than hold the log for one long apply (50,000 states: a record of about 0.8 MB
that applies in about 0.2 s, well below the default 1 s election timeout)."""

References = Callable[[bytes], Iterable[int]]
PackedFunc = Callable[[int, int], object]


class PackHooks(Protocol):
    """RelStorage's test hooks on its PackUndo classes, called at the same points."""

    fill_object_refs_batch_size: int

    def on_filling_object_refs_added(self, oids: Any = None, tids: Any = None) -> None: ...

    def on_fill_object_ref_batch(self, oid_batch: Any, num_refs_found: int) -> None: ...


@dataclass(frozen=True, slots=True)
class PlannedObject:
    """An object the plan prunes (``tid``: the state it keeps) or removes (``tid``: its
    current tid), and the tids of the states that go."""

    oid: int
    tid: int
    removed_tids: tuple[int, ...]


@dataclass(slots=True)
class PackPlan:
    pack_tid: int
    snapshot_tid: int
    """The replica's last tid in the snapshot the plan was read from."""
    pruned: list[PlannedObject] = field(default_factory=list)
    removed: list[list[PlannedObject]] = field(default_factory=list)
    """Groups of removed objects, each closed under references among removed objects."""
    transactions: list[int] = field(default_factory=list)
    """History-preserving: the unpacked transactions at or before the pack tid."""
    broken_refs: list[tuple[int, int]] = field(default_factory=list)
    """(oid, referenced oid): a kept object refers to one that has no current state."""

    @property
    def states(self) -> int:
        return sum(len(p.removed_tids) for p in self.pruned) + sum(
            len(p.removed_tids) for group in self.removed for p in group
        )

    def records(self) -> Iterator[tuple[RecordBody, list[PlannedObject]]]:
        """The records that carry out the plan, in order, each with the objects it plans
        to change (their cached states are dropped once it is applied)."""
        for batch in _batches([[p] for p in self.pruned]):
            pruned = tuple(PrunedObject(p.oid, p.tid) for p in batch)
            yield PackObjects(self.pack_tid, self.snapshot_tid, pruned=pruned), batch
        for batch in _batches(self.removed):
            removed = tuple(RemovedObject(p.oid, p.tid) for p in batch)
            yield PackObjects(self.pack_tid, self.snapshot_tid, removed=removed), batch
        for start in range(0, len(self.transactions), TRANSACTIONS_PER_RECORD):
            chunk = self.transactions[start : start + TRANSACTIONS_PER_RECORD]
            yield PackTransactions(chunk[0], chunk[-1]), []


def _batches(groups: list[list[PlannedObject]]) -> Iterator[list[PlannedObject]]:
    """Whole groups, gathered until a batch holds ``STATES_PER_RECORD`` states."""
    batch: list[PlannedObject] = []
    weight = 0
    for group in groups:
        batch.extend(group)
        weight += sum(max(1, len(p.removed_tids)) for p in group)
        if weight >= STATES_PER_RECORD:
            yield batch
            batch, weight = [], 0
    if batch:
        yield batch


# -- planning -------------------------------------------------------------------------------


def _ints(cursor: dbapi.Cursor, sql: str, params: tuple[int, ...] = ()) -> list[int]:
    cursor.execute(sql, params)
    return [int(value) for (value,) in cursor.fetchall()]


class _ReferenceGraph:
    """References read from states, and the objects reachable from the roots."""

    def __init__(self, get_references: References, hooks: PackHooks) -> None:
        self._get_references = get_references
        self._hooks = hooks
        self.edges: dict[int, set[int]] = {}
        self.roots: set[int] = {0}

    def read(self, rows: Iterable[tuple[int, int, Any]], pack_tid: int, scope: set[int]) -> None:
        """Add the references of ``rows`` (oid, tid, state): edges from objects in
        ``scope``, and roots from states written after ``pack_tid``."""
        size = max(1, self._hooks.fill_object_refs_batch_size)
        batch: list[int] = []
        found = 0
        for oid, tid, state in rows:
            refs = set(self._get_references(bytes(state))) if state else set()
            if tid > pack_tid:
                self.roots.add(oid)
                self.roots.update(refs)
            if oid in scope:
                self.edges.setdefault(oid, set()).update(refs)
            batch.append(oid)
            found += len(refs)
            if len(batch) >= size:
                self._hooks.on_fill_object_ref_batch(oid_batch=batch, num_refs_found=found)
                batch, found = [], 0
        if batch:
            self._hooks.on_fill_object_ref_batch(oid_batch=batch, num_refs_found=found)

    def reachable(self) -> set[int]:
        marked = set(self.roots)
        pending = list(marked)
        while pending:
            for ref in self.edges.get(pending.pop(), ()):
                if ref not in marked:
                    marked.add(ref)
                    pending.append(ref)
        return marked

    def groups(self, oids: set[int]) -> list[list[int]]:
        """``oids`` split into groups connected by references (either way), each sorted,
        in order of their smallest OID."""
        parent = {oid: oid for oid in oids}

        def find(oid: int) -> int:
            while parent[oid] != oid:
                parent[oid] = parent[parent[oid]]
                oid = parent[oid]
            return oid

        for oid in sorted(oids):
            for ref in self.edges.get(oid, ()):
                if ref in parent:
                    a, b = find(oid), find(ref)
                    if a != b:
                        parent[max(a, b)] = min(a, b)
        groups: dict[int, list[int]] = {}
        for oid in sorted(oids):
            groups.setdefault(find(oid), []).append(oid)
        return [groups[root] for root in sorted(groups)]


def plan_pack(
    cursor: dbapi.Cursor,
    *,
    keep_history: bool,
    pack_tid: int,
    gc: bool,
    get_references: References,
    hooks: PackHooks,
) -> PackPlan:
    """The plan for packing to ``pack_tid``, read in the read transaction of ``cursor``
    (a load connection's, so every query sees one snapshot)."""
    (snapshot_tid,) = _ints(cursor, "SELECT last_tid FROM paxos_meta")
    plan = PackPlan(pack_tid, snapshot_tid)
    cursor.execute(
        "SELECT co.zoid, co.tid, os.state IS NULL FROM current_object co"
        " JOIN object_state os ON os.zoid = co.zoid AND os.tid = co.tid"
        if keep_history
        else "SELECT zoid, tid, state IS NULL FROM object_state"
    )
    current = {int(oid): (int(tid), bool(deleted)) for oid, tid, deleted in cursor.fetchall()}
    history: dict[int, list[int]] = {}
    if keep_history:
        cursor.execute(
            "SELECT zoid, tid FROM object_state WHERE tid > 0 AND tid <= ? ORDER BY zoid, tid",
            (pack_tid,),
        )
        for oid, tid in cursor.fetchall():
            history.setdefault(int(oid), []).append(int(tid))
    else:
        history = {oid: [tid] for oid, (tid, _) in current.items() if tid <= pack_tid}
    graph = _ReferenceGraph(get_references, hooks)
    if gc:
        hooks.on_filling_object_refs_added(oids=sorted(history))
        _read_references(cursor, graph, keep_history, pack_tid, set(history))
        reachable = graph.reachable()
        unreachable = set(history) - reachable
        plan.broken_refs = sorted(
            (oid, ref)
            for oid in reachable & set(history)
            for ref in graph.edges.get(oid, ())
            if ref not in current or current[ref][1]
        )
    elif keep_history:
        unreachable = {oid for oid in history if current[oid][1] and current[oid][0] <= pack_tid}
    else:
        logger.warning(
            "pack: garbage collection is disabled on a history-free storage: nothing to do"
        )
        return plan
    if keep_history:
        plan.pruned = [
            PlannedObject(oid, tids[-1], tuple(tids[:-1]))
            for oid, tids in sorted(history.items())
            if len(tids) > 1 and oid not in unreachable
        ]
        plan.transactions = _ints(
            cursor,
            'SELECT tid FROM "transaction" WHERE tid > 0 AND tid <= ? AND packed = 0 ORDER BY tid',
            (pack_tid,),
        )
    for group in graph.groups(unreachable):
        planned = [PlannedObject(oid, history[oid][-1], tuple(history[oid])) for oid in group]
        states = sum(len(p.removed_tids) for p in planned)
        if states > GROUP_STATES_MAX:
            logger.warning(
                "pack: keeping %d unreachable objects (%d states) that refer to one another,"
                " from oid %d: more than one pack record may hold (%d states)",
                len(planned),
                states,
                group[0],
                GROUP_STATES_MAX,
            )
            continue
        plan.removed.append(planned)
    return plan


def _read_references(
    cursor: dbapi.Cursor, graph: _ReferenceGraph, keep_history: bool, pack_tid: int, scope: set[int]
) -> None:
    """Read the references of every state the reachability depends on: each object's
    newest state at or before the pack tid, and every later state."""
    if keep_history:
        cursor.execute(
            "SELECT os.zoid, os.tid, os.state FROM object_state os JOIN"
            " (SELECT zoid, MAX(tid) AS tid FROM object_state WHERE tid > 0 AND tid <= ?"
            " GROUP BY zoid) k ON os.zoid = k.zoid AND os.tid = k.tid ORDER BY os.zoid",
            (pack_tid,),
        )
        graph.read(cursor, pack_tid, scope)
        cursor.execute(
            "SELECT zoid, tid, state FROM object_state WHERE tid > ? ORDER BY zoid, tid",
            (pack_tid,),
        )
        graph.read(cursor, pack_tid, scope)
    else:
        cursor.execute("SELECT zoid, tid, state FROM object_state ORDER BY zoid")
        graph.read(cursor, pack_tid, scope)


# -- proposing ------------------------------------------------------------------------------


class PackProposer:
    """Proposes a plan's records through this process's node, one at a time."""

    def __init__(self, link: NodeLink, timeout_s: float, barrier: Callable[[], object]) -> None:
        self._link = link
        self._timeout_s = timeout_s
        self.barrier = barrier
        """Run before choosing the pack tid: the consistency barrier of the storage's reads."""

    def run(self, plan: PackPlan, packed_func: PackedFunc | None) -> Packed:
        pack_id = os.urandom(16)
        total = Packed()
        for number, (body, planned) in enumerate(plan.records()):
            request_id = b"pack/" + pack_id + b"/" + number.to_bytes(4, "big")
            _, outcome = propose_with_retries(self._link, request_id, body, self._timeout_s)
            if not isinstance(outcome, Packed):
                raise PackError(
                    f"pack record {number} refused by node {self._link.node_id}: {outcome}"
                )
            total = _add(total, outcome)
            if packed_func is not None:
                for p in planned:
                    for tid in p.removed_tids:
                        packed_func(p.oid, tid)
        logger.info(
            "pack to tid %d: removed %d states and %d objects, kept %d objects changed since"
            " the plan; %d transactions packed, %d removed",
            plan.pack_tid,
            total.states_removed,
            total.objects_removed,
            total.objects_kept,
            total.transactions_packed,
            total.transactions_removed,
        )
        return total


def _add(a: Packed, b: Packed) -> Packed:
    return Packed(
        a.states_removed + b.states_removed,
        a.objects_removed + b.objects_removed,
        a.objects_kept + b.objects_kept,
        a.transactions_packed + b.transactions_packed,
        a.transactions_removed + b.transactions_removed,
    )


# -- the PackUndo seam ----------------------------------------------------------------------


class _PlanSlot:
    """The plan of the last pre-pack, shared by the PackUndo copies ``with_options`` makes
    (it copies attributes by reference)."""

    def __init__(self) -> None:
        self.plan: PackPlan | None = None


class PaxosPackMixin:
    """Pre-pack and pack of RelStorage's PackUndo classes as a plan and its records.

    RelStorage's ``Pack`` calls ``choose_pack_transaction``, ``pre_pack``, then ``pack``
    (or ``_find_pack_tid`` then ``pack`` for ``skip_prepack``, and ``check_refs`` after
    ``pre_pack`` for zodbpack's reference check)."""

    keep_history: bool
    options: Any
    connmanager: Any
    fill_object_refs_batch_size: int
    pack_proposer: PackProposer
    """Set by the adapter when it builds the component."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._plan_slot = _PlanSlot()

    def on_fill_object_ref_batch(self, oid_batch: Any, num_refs_found: int) -> None:
        """Test hook (RelStorage's history-free PackUndo has it too)."""

    def on_filling_object_refs_added(self, oids: Any = None, tids: Any = None) -> None:
        """Test hook, as RelStorage's."""

    def choose_pack_transaction(self, pack_point: int) -> int | None:
        self.pack_proposer.barrier()
        tid: int | None = super().choose_pack_transaction(pack_point)  # type: ignore[misc]
        return tid

    def pre_pack(self, pack_tid: int, get_references: References) -> None:
        conn, cursor = self.connmanager.open_for_load()
        try:
            plan = plan_pack(
                cursor,
                keep_history=self.keep_history,
                pack_tid=pack_tid,
                gc=bool(self.options.pack_gc),
                get_references=get_references,
                hooks=self,
            )
        finally:
            self.connmanager.rollback_and_close(conn, cursor)
        self._plan_slot.plan = plan
        logger.info(
            "pre_pack to tid %d (snapshot at tid %d): %d objects to prune, %d to remove"
            " (%d states), %d transactions to mark packed",
            plan.pack_tid,
            plan.snapshot_tid,
            len(plan.pruned),
            sum(len(group) for group in plan.removed),
            plan.states,
            len(plan.transactions),
        )

    def _find_pack_tid(self) -> int:
        plan = self._plan_slot.plan
        if plan is None:
            raise PackError(
                "skip_prepack: no pre-pack plan in this storage (a plan is kept in memory by"
                " a pack with prepack_only, in this process); pack without skip_prepack"
            )
        return plan.pack_tid

    def pack(self, pack_tid: int | None, packed_func: PackedFunc | None = None) -> None:
        plan = self._plan_slot.plan
        if pack_tid is None:
            return  # RelStorage found nothing to pack
        if plan is None or plan.pack_tid != pack_tid:
            raise PackError(f"no pre-pack plan for pack tid {pack_tid}")
        self._plan_slot.plan = None
        self.pack_proposer.run(plan, packed_func)

    def check_refs(self, pack_tid: int | None) -> list[tuple[int, int]]:
        """Zodbpack's reference check: references from kept objects to missing ones, as
        the last pre-pack found them."""
        plan = self._plan_slot.plan
        if plan is None or plan.pack_tid != pack_tid:
            return []
        for oid, ref in plan.broken_refs:
            logger.warning("check_refs: object %d references missing object %d", oid, ref)
        return list(plan.broken_refs)
