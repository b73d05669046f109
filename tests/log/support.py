"""Builders shared by the log store tests."""

from __future__ import annotations

from relstorage_paxos.core.ballot import Ballot
from relstorage_paxos.core.messages import LogEntry, Proposal, Value


def value(*payloads: bytes) -> Value:
    """A batch with one proposal per payload; request ids derived from the payloads."""
    return tuple(Proposal(request_id=b"req-" + p[:8], payload=p) for p in payloads)


def entry(slot: int, round_: int = 1, *, chosen: bool = False, payload: bytes = b"x") -> LogEntry:
    return LogEntry(slot=slot, ballot=Ballot(round_, 1), value=value(payload), chosen=chosen)
