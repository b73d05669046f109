"""The ``<paxos>`` section's settings (and the same ones from a ``paxos://`` URI), validated.

Owns: ``AdapterSettings`` and the parsers both front ends use, so that a bad value fails at
configuration load with the same message, naming the key, whichever way it came in.
Must not import: anything with effects.
Called by: ZConfig while it loads a configuration, the zodburi resolver; pure functions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from relstorage_paxos import config

CONSISTENCY_LEVELS: Final = ("linearizable", "session", "local")
DEFAULT_MAX_LAG_S: Final = 5.0
DEFAULT_LOCK_LEASE_S: Final = 30.0
DEFAULT_READ_TIMEOUT_S: Final = 30.0
DEFAULT_CONNECT_TIMEOUT_S: Final = 10.0


@dataclass(frozen=True, slots=True)
class AdapterSettings:
    data_dir: Path
    """The data directory of the node this process reads and proposes through."""
    consistency: str = "linearizable"
    """DESIGN.md §5: ``linearizable`` waits for a ReadIndex round at every poll,
    ``session`` never waits (this node never goes back, and finish waits for local apply),
    ``local`` never waits but refuses to read from a node out of sync for over ``max_lag_s``."""
    max_lag_s: float = DEFAULT_MAX_LAG_S
    read_timeout_s: float = DEFAULT_READ_TIMEOUT_S
    """The longest a ``linearizable`` poll waits for a ReadIndex round when its node holds
    no read lease; then the transaction's next read raises ``ReadBarrierError``, which
    ``transaction.manager.attempts()`` retries. Long, because a node that reaches a quorum
    but applies slowly (a pack, a catch-up) should answer late rather than not at all; a
    node cut off from a quorum refuses within two election timeouts anyway."""
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S
    """How long opening the storage waits for its node to answer and know a leader (an
    application started before its node, or during its restart), as ZEO's client waits for
    its server; a node that never answers then fails the open with ``NodeUnavailableError``
    naming this key, one that answers without a leader opens (a linearizable read then
    raises the retryable ``ReadBarrierError`` until it has one)."""
    embedded: bool = False
    """Run the node inside this process (single-process applications, tests)."""
    lock_lease_s: float = DEFAULT_LOCK_LEASE_S
    """How long object locks outlive their grant (on top of ``commit-lock-timeout``, the
    longest wait for it): the longest a process killed between vote and finish blocks the
    writers of its objects, and the longest a live one may take from vote to finish."""


DRIVER_NAMES: Final = ("auto", "apsw")


def driver_name(value: str) -> str:
    """RelStorage reads the section's ``driver``; the replica is only ever read with apsw
    (never the stdlib sqlite3: see adapter/dbapi.py)."""
    name = value.strip().lower()
    if name not in DRIVER_NAMES:
        raise ValueError(f"driver: {value!r} is not one of {', '.join(DRIVER_NAMES)}")
    return name


def consistency_level(value: str) -> str:
    level = value.strip().lower()
    if level not in CONSISTENCY_LEVELS:
        raise ValueError(f"consistency: {value!r} is not one of {', '.join(CONSISTENCY_LEVELS)}")
    return level


def _positive_seconds(key: str, value: str | float) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(f"{key}: {value!r} is not a number of seconds") from None
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"{key}: {value!r} must be a positive number of seconds")
    return seconds


def max_lag_seconds(value: str | float) -> float:
    return _positive_seconds("max-lag", value)


def lock_lease_seconds(value: str | float) -> float:
    return _positive_seconds("lock-lease", value)


def read_timeout_seconds(value: str | float) -> float:
    return _positive_seconds("read-timeout", value)


def connect_timeout_seconds(value: str | float) -> float:
    return _positive_seconds("connect-timeout", value)


def node_data_dir(value: str) -> Path:
    path = Path(value).expanduser()
    if not path.is_dir():
        raise ValueError(f"data-dir: {value!r} is not a directory")
    if not config.settings_path(path).is_file():
        raise ValueError(
            f"data-dir: {value!r} holds no {config.SETTINGS_FILE}: not a node data directory"
            " (create one with `relstorage-paxos init`)"
        )
    return path.resolve()
