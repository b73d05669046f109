"""The clock port: the runtime's only source of time, so tests can drive it by hand."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (ticks, timeouts)."""
        ...

    def wall_us(self) -> int:
        """Microseconds since the epoch: what the runtime writes into records (commit
        timestamps, lease expiries); appliers read it from the record, never from here."""
        ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def wall_us(self) -> int:
        return time.time_ns() // 1000
