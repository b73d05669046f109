"""Transaction ids from the times written in CommitTxn records (DESIGN.md §3).

Owns: ``tid_of`` and ``next_tid``. A tid is ZODB's 8-byte TimeStamp (``ZODB.TimeStamp`` is
ZODB's alias of ``persistent.timestamp``) read as an integer (``ZODB.utils.u64``), exactly as
RelStorage's ``lock_database_and_choose_next_tid`` makes it, but from the record's
``timestamp_us`` instead of ``time.time()``: every replica computes the same tid, and tids
follow log order even when the proposers' clocks disagree.

Must not import: any clock (tests/test_tidy.py bans them in replica/).
Called by: the applier thread; pure functions.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final

from persistent.timestamp import TimeStamp  # type: ignore[import-untyped]
from ZODB.utils import u64

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def tid_of(timestamp_us: int) -> int:
    """The tid ZODB gives the instant ``timestamp_us`` (microseconds since the Unix epoch)."""
    seconds, micros = divmod(timestamp_us, 1_000_000)
    moment = _EPOCH + timedelta(seconds=seconds)
    stamp = TimeStamp(
        moment.year,
        moment.month,
        moment.day,
        moment.hour,
        moment.minute,
        moment.second + micros / 1_000_000,
    )
    tid: int = u64(stamp.raw())  # type: ignore[no-untyped-call]
    return tid


def next_tid(last_tid: int, timestamp_us: int) -> int:
    """The tid of a commit applied after ``last_tid``: its own time's tid, or the next tid
    after ``last_tid`` if that is not later (ZODB's ``TimeStamp.laterThan``)."""
    return max(last_tid + 1, tid_of(timestamp_us))
