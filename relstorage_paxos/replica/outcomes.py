"""What applying a record did: one outcome per proposal, recorded under its request id.

Owns: the outcome values ``Replica.apply_slot`` returns and ``Replica.outcome`` reads back.
A recorded outcome is what a retried proposal gets (wrapped in ``Duplicate``); the outcome of
a waiting lock request changes once, when a later record grants it (``Queued`` becomes
``Granted``), drops it (``Queued`` becomes ``Rejected``), or makes it meet a read conflict
(``Queued`` becomes ``Conflict``).

Must not import: generated protobuf (``codec.py`` translates), apsw.
Called by: any thread; pure values.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Granted:
    """The lock request holds all its locks."""


@dataclass(frozen=True, slots=True)
class Queued:
    """The lock request waits in FIFO order; a later record's ``granted_requests`` names it
    when it is granted."""


@dataclass(frozen=True, slots=True)
class Committed:
    tid: int
    granted_requests: tuple[bytes, ...] = ()
    """Request ids of waiting LockObjects that releasing this txn's locks granted, in order."""


@dataclass(frozen=True, slots=True)
class StaleWrite:
    """A write based on ``prev_tid`` while the object's current tid is ``current_tid``."""

    oid: int
    prev_tid: int
    current_tid: int


@dataclass(frozen=True, slots=True)
class Conflict:
    """The commit wrote nothing and changed no lock; ``stale_writes`` is empty when the reason
    is a missing lock. For a lock request: a readCurrent OID is locked for writing by
    another txn, and the request was dropped (a read conflict, retryable)."""

    reason: str
    stale_writes: tuple[StaleWrite, ...] = ()


@dataclass(frozen=True, slots=True)
class Released:
    granted_requests: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class Expired:
    count: int
    """Lock requests dropped, held or waiting."""
    granted_requests: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class Renewed:
    count: int
    """Lock requests whose lease moved (the others had ended or were further already)."""


@dataclass(frozen=True, slots=True)
class Allocated:
    """The OIDs ``[start, start + count)`` belong to the requesting node."""

    start: int
    count: int


@dataclass(frozen=True, slots=True)
class Rejected:
    """The record has no effect: malformed, invalid against the replica's state, or a lock
    request released or expired while it still waited."""

    reason: str


@dataclass(frozen=True, slots=True)
class NoopApplied:
    """The Noop was applied: only the slot and the running hash moved."""


@dataclass(frozen=True, slots=True)
class Packed:
    """What a PackObjects or PackTransactions record removed, and what it kept."""

    states_removed: int = 0
    objects_removed: int = 0
    objects_kept: int = 0
    """Pruned or removed entries the applier refused: the object was written, locked or
    referenced after the plan, or is gone."""
    transactions_packed: int = 0
    transactions_removed: int = 0


RecordedOutcome = (
    Granted
    | Queued
    | Committed
    | Conflict
    | Released
    | Expired
    | Renewed
    | Allocated
    | Rejected
    | NoopApplied
    | Packed
)


@dataclass(frozen=True, slots=True)
class Duplicate:
    """The request id was applied before (in this slot or an earlier one): nothing was
    applied again, and ``recorded`` is its outcome as it stands now."""

    recorded: RecordedOutcome


Outcome = RecordedOutcome | Duplicate
