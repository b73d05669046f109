"""Rate limiting of repeated log lines about peers.

Owns: ``LogLimiter``. A misconfigured or hostile peer can repeat the same mistake hundreds of
times a second (every reconnect of a stream that is rejected); the first occurrence is logged
at once, repeats of the same kind at most once per interval, with the number suppressed.
Must not import: grpc, ``runtime``.
Called by: any transport thread; thread-safe.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable


class LogLimiter:
    """Decides whether a log line of a given kind may be written now."""

    def __init__(
        self, interval_s: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._last_s: dict[Hashable, float] = {}
        self._suppressed: dict[Hashable, int] = {}

    def allow(self, key: Hashable) -> int | None:
        """``None`` if a line of kind ``key`` was written less than ``interval_s`` ago (this
        one is counted as suppressed); otherwise how many were suppressed since the last."""
        now = self._clock()
        with self._lock:
            last = self._last_s.get(key)
            if last is not None and now - last < self._interval_s:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return None
            self._last_s[key] = now
            return self._suppressed.pop(key, 0)


def suppressed_note(count: int) -> str:
    """The tail of a rate-limited log line: empty, or how many like it were not logged."""
    return f" ({count} similar not logged)" if count else ""
