"""A node's settings: the ``node.toml`` file in its data directory, validated.

Owns: the settings file format, its validation (every error names the file and the key), the
data directory layout, and the one conversion of seconds into core ticks.
Must not import: ``runtime``, ``transport``, ``adapter`` (they take these settings).
Called by: the CLI and the node server at start-up, any thread.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from relstorage_paxos.core import NodeOptions
from relstorage_paxos.errors import SettingsError

SETTINGS_FILE = "node.toml"
LOG_FILE = "paxos.sqlite3"
REPLICA_FILE = "replica.sqlite3"
SOCKET_FILE = "sequencer.sock"
LOCK_FILE = "node.pid"
SNAPSHOT_DIR = "snapshots"

MIB: Final = 1 << 20
DEFAULT_BATCH_BYTES_MAX: Final = 4 * MIB
MESSAGE_HEADROOM_BYTES: Final = MIB
"""What a gRPC message may hold beyond one record: the request id, the envelope, the entry's
slot and ballot (a few hundred bytes), with room to spare."""
RECORD_BYTES_FLOOR: Final = 64 * 1024
"""The smallest ``max-record-bytes`` accepted: below it even ordinary commits are refused."""

RECORD_BYTES_CEILING: Final = 512 * MIB
"""The largest ``max-record-bytes`` accepted: a record is one row in the log and its largest
object one row in the replica, and SQLite refuses rows over 10**9 bytes; protobuf refuses
messages over 2 GiB; and a node holds a few copies of a record in memory while it travels."""

_CLUSTER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_ADDRESS = re.compile(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})$")


@dataclass(frozen=True, slots=True)
class NodeSettings:
    """What ``relstorage-paxos init`` writes and ``serve`` reads."""

    cluster_id: str
    node_id: int
    keep_history: bool
    members: dict[int, str]
    """Every voting member's peer address (``host:port``), this node's included."""
    listen: str = ""
    """Where this node's peer server binds; its member address when empty."""
    sequencer_tcp: str = ""
    """An optional TCP address for the Sequencer service (the Unix socket is always on)."""
    http_status: str = ""
    """An optional address for the read-only HTTP endpoint (``/status``, ``/metrics``)."""
    tick_s: float = 0.05
    election_timeout_s: float = 1.0
    heartbeat_interval_s: float = 0.1
    node_timeout_s: float = 1.0
    """The leader releases the object locks of transactions made through a node it has not
    heard from for this long (ExpireNodes): the longest a dead or cut-off node's voted
    transactions block the others. A node paused for longer loses the locks of its voted
    transactions, which then fail at finish with a ConflictError."""
    read_lease_s: float = 1.0
    """How long one grant lets a node serve linearizable reads from its own replica (README,
    "Consistency levels"); a commit waits at most about this long for a holder that stopped
    answering. 0: no leases, every linearizable poll is a ReadIndex round. Every member must
    have the same."""
    clock_drift_ppm: int = 1000
    """The most any member's monotonic clock runs fast or slow; read leases rely on it."""
    pipeline_window_slots: int = 64
    batch_bytes_max: int = DEFAULT_BATCH_BYTES_MAX
    """Records are packed into one log slot up to this many bytes, and a peer message carries
    at most this many bytes of log entries; a larger record gets a slot and messages of its
    own."""
    max_record_bytes: int = 64 * MIB
    """The largest record (one transaction's objects and blobs, as committed) the node takes;
    larger ones are refused with ``RecordTooLargeError``. Every member must have the same."""
    compact_every_slots: int = 10_000
    compact_keep_slots: int = 2_000
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def listen_address(self) -> str:
        return self.listen or self.members[self.node_id]

    @property
    def max_message_bytes(self) -> int:
        """The gRPC message limit of the peer and Sequencer services and their clients: one
        record and its envelope fit."""
        return self.max_record_bytes + MESSAGE_HEADROOM_BYTES

    def node_options(self) -> NodeOptions:
        """The core's options: the only place seconds become ticks."""
        return NodeOptions(
            node_id=self.node_id,
            members=frozenset(self.members),
            election_timeout_ticks=_ticks(self.election_timeout_s, self.tick_s),
            heartbeat_interval_ticks=_ticks(self.heartbeat_interval_s, self.tick_s),
            node_timeout_ticks=_ticks(self.node_timeout_s, self.tick_s),
            pipeline_window_slots=self.pipeline_window_slots,
            batch_bytes_max=self.batch_bytes_max,
            message_bytes_max=self.batch_bytes_max,
            record_bytes_max=self.max_record_bytes,
            read_lease_us=round(self.read_lease_s * 1_000_000),
            clock_drift_ppm=self.clock_drift_ppm,
            tick_us=round(self.tick_s * 1_000_000),
        )


def _ticks(seconds: float, tick_s: float) -> int:
    return max(1, math.ceil(seconds / tick_s - 1e-9))


def settings_path(data_dir: Path) -> Path:
    return data_dir / SETTINGS_FILE


def validate(settings: NodeSettings, source: str) -> NodeSettings:
    """Raise ``SettingsError`` naming ``source`` and the key for anything a node could not
    run with; return ``settings`` otherwise."""

    def bad(key: str, why: str) -> SettingsError:
        return SettingsError(f"{source}: {key}: {why}")

    if not _CLUSTER_ID.match(settings.cluster_id):
        raise bad("cluster-id", f"{settings.cluster_id!r} is not 1-64 letters, digits, . _ -")
    if not settings.members:
        raise bad("members", "no members")
    for node_id, address in settings.members.items():
        if node_id < 1:
            raise bad("members", f"node id {node_id} is not a positive integer")
        _check_address(address, f"members.{node_id}", bad)
    if len(set(settings.members.values())) != len(settings.members):
        raise bad("members", "two members share an address")
    if settings.node_id not in settings.members:
        raise bad(
            "node-id", f"{settings.node_id} is not among the members {sorted(settings.members)}"
        )
    if settings.listen:
        _check_address(settings.listen, "listen", bad)
    if settings.sequencer_tcp:
        _check_address(settings.sequencer_tcp, "sequencer-tcp", bad)
    if settings.http_status:
        _check_address(settings.http_status, "http-status", bad)
    if not 0.001 <= settings.tick_s <= 1.0:
        raise bad("tick", f"{settings.tick_s} s is outside 0.001-1 s")
    if settings.heartbeat_interval_s < settings.tick_s:
        raise bad("heartbeat-interval", "shorter than one tick")
    if settings.election_timeout_s < 3 * settings.heartbeat_interval_s:
        raise bad("election-timeout", "must be at least three heartbeat intervals")
    if settings.node_timeout_s < 4 * settings.heartbeat_interval_s:
        raise bad("node-timeout", "must be at least four heartbeat intervals")
    if settings.read_lease_s and not (
        2 * settings.heartbeat_interval_s <= settings.read_lease_s <= 10.0
    ):
        raise bad(
            "read-lease",
            f"{settings.read_lease_s} s: 0 (off), or from two heartbeat intervals to 10 s",
        )
    if not 0 <= settings.clock_drift_ppm <= 10_000:
        raise bad("clock-drift-ppm", f"{settings.clock_drift_ppm} is outside 0-10000")
    for key, value in (
        ("pipeline-window-slots", settings.pipeline_window_slots),
        ("batch-bytes-max", settings.batch_bytes_max),
        ("max-record-bytes", settings.max_record_bytes),
        ("compact-every-slots", settings.compact_every_slots),
    ):
        if value < 1:
            raise bad(key, f"{value} is not a positive integer")
    if settings.max_record_bytes < RECORD_BYTES_FLOOR:
        raise bad(
            "max-record-bytes", f"{settings.max_record_bytes} is below 64 KiB: commits would fail"
        )
    if settings.max_record_bytes > RECORD_BYTES_CEILING:
        raise bad("max-record-bytes", f"{settings.max_record_bytes} is over 512 MiB")
    if settings.batch_bytes_max > settings.max_record_bytes:
        raise bad("batch-bytes-max", "must not be over max-record-bytes")
    if not 0 <= settings.compact_keep_slots < settings.compact_every_slots:
        raise bad("compact-keep-slots", "must be below compact-every-slots")
    if settings.extra:
        raise bad(next(iter(settings.extra)), "unknown setting")
    return settings


def _check_address(address: str, key: str, bad: Any) -> None:
    match = _ADDRESS.match(address)
    if match is None or not 1 <= int(match.group(2)) <= 65535:
        raise bad(key, f"{address!r} is not host:port")


_KEYS = {
    "cluster-id": ("cluster_id", str),
    "node-id": ("node_id", int),
    "keep-history": ("keep_history", bool),
    "listen": ("listen", str),
    "sequencer-tcp": ("sequencer_tcp", str),
    "http-status": ("http_status", str),
    "tick": ("tick_s", float),
    "election-timeout": ("election_timeout_s", float),
    "heartbeat-interval": ("heartbeat_interval_s", float),
    "node-timeout": ("node_timeout_s", float),
    "read-lease": ("read_lease_s", float),
    "clock-drift-ppm": ("clock_drift_ppm", int),
    "pipeline-window-slots": ("pipeline_window_slots", int),
    "batch-bytes-max": ("batch_bytes_max", int),
    "max-record-bytes": ("max_record_bytes", int),
    "compact-every-slots": ("compact_every_slots", int),
    "compact-keep-slots": ("compact_keep_slots", int),
}
_REQUIRED = ("cluster-id", "node-id", "keep-history")


def load(data_dir: Path) -> NodeSettings:
    """Read and validate ``data_dir/node.toml``."""
    path = settings_path(data_dir)
    source = str(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise SettingsError(
            f"{source}: missing: {data_dir} is not a node data directory "
            "(create one with `relstorage-paxos init`)"
        ) from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"{source}: unreadable: {exc}") from exc
    return parse(raw, source)


def parse(raw: dict[str, Any], source: str) -> NodeSettings:
    kwargs: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "members":
            kwargs["members"] = _parse_members(value, source)
            continue
        if key not in _KEYS:
            extra[key] = value
            continue
        name, kind = _KEYS[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise SettingsError(f"{source}: {key}: {value!r} is not a {kind.__name__}")
        kwargs[name] = value
    for key in (*_REQUIRED, "members"):
        if _KEYS.get(key, (key,))[0] not in kwargs:
            raise SettingsError(f"{source}: {key}: missing")
    return validate(NodeSettings(**kwargs, extra=extra), source)


def _parse_members(value: Any, source: str) -> dict[int, str]:
    if not isinstance(value, dict):
        raise SettingsError(f'{source}: members: not a table of node id = "host:port"')
    members: dict[int, str] = {}
    for key, address in value.items():
        if not str(key).isdigit() or not isinstance(address, str):
            raise SettingsError(f'{source}: members.{key}: expected node id = "host:port"')
        members[int(key)] = address
    return members


def dump(settings: NodeSettings) -> str:
    """The ``node.toml`` text for ``settings`` (``load`` reads it back equal)."""
    lines = ["# relstorage_paxos node settings; see `relstorage-paxos init --help`."]
    for key, (name, kind) in _KEYS.items():
        value = getattr(settings, name)
        if kind is str and value == "" and key not in _REQUIRED:
            continue
        if kind is bool:
            lines.append(f"{key} = {'true' if value else 'false'}")
        elif kind is str:
            lines.append(f'{key} = "{value}"')
        else:
            lines.append(f"{key} = {value!r}")
    lines.append("")
    lines.append("[members]")
    lines.extend(
        f'{node_id} = "{address}"' for node_id, address in sorted(settings.members.items())
    )
    return "\n".join(lines) + "\n"
