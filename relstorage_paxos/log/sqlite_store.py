"""``SqliteLogStore``: the acceptor's durable state in ``paxos.sqlite3``, through apsw.

Owns the file's schema, the value encoding and the fsync policy. Imports ``core`` and
``apsw`` only (never protobuf: the log must stay readable whatever the wire format becomes).
Called from the runtime's driver thread only; the connection is never shared.

Two tables: ``meta`` (one row: format version, cluster id, node id, promised ballot,
truncation point) and ``entries`` (one row per slot). ``PRAGMA application_id`` marks the
file as ours, so a foreign SQLite file is refused before its tables are read. Every row
carries a CRC-32 of its fields: SQLite checks its b-tree structure but not the bytes of a
record, and an acceptor that silently loads a damaged ballot or value breaks Paxos.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import struct
import zlib
from collections.abc import Callable, Iterator
from typing import cast

import apsw

from relstorage_paxos.core.ballot import Ballot
from relstorage_paxos.core.messages import LogEntry, Proposal, Value
from relstorage_paxos.core.ready import Persist, PersistentState
from relstorage_paxos.errors import LogStoreError
from relstorage_paxos.log.store import check_persist

logger = logging.getLogger(__name__)

APPLICATION_ID = 0x52535058
"""``PRAGMA application_id`` of a relstorage_paxos log: ASCII "RSPX"."""

FORMAT_VERSION = 1

_SQLITE_HEADER = b"SQLite format 3\x00"

_SCHEMA = (
    """CREATE TABLE meta (
        id INTEGER PRIMARY KEY CHECK (id = 0),
        format_version INTEGER NOT NULL,
        cluster_id TEXT NOT NULL,
        node_id INTEGER NOT NULL,
        promised_round INTEGER NOT NULL,
        promised_node INTEGER NOT NULL,
        truncated INTEGER NOT NULL,
        checksum INTEGER NOT NULL
    ) STRICT""",
    """CREATE TABLE entries (
        slot INTEGER PRIMARY KEY,
        ballot_round INTEGER NOT NULL,
        ballot_node INTEGER NOT NULL,
        chosen INTEGER NOT NULL CHECK (chosen IN (0, 1)),
        value BLOB NOT NULL,
        checksum INTEGER NOT NULL
    ) STRICT""",
)

_U32 = struct.Struct(">I")
_ENTRY_FIELDS = struct.Struct(">qqqB")
_META_FIELDS = struct.Struct(">qqqqq")


@functools.lru_cache(maxsize=64)
def _lengths_struct(count: int) -> struct.Struct:
    """Compiled once per proposal count: loading a long log decodes many values."""
    return struct.Struct(f">{2 * count}I")


def encode_value(value: Value) -> bytes:
    """A slot's value as bytes: the proposal count, then each proposal's request id and
    payload lengths, then the bytes themselves, all lengths big-endian u32. Deterministic
    (equal values give equal bytes) and 4 + 8 bytes per proposal of overhead; the lengths come
    first so decoding unpacks them in one call."""
    lengths = [n for p in value for n in (len(p.request_id), len(p.payload))]
    header = struct.pack(f">{1 + len(lengths)}I", len(value), *lengths)
    return b"".join([header, *(part for p in value for part in (p.request_id, p.payload))])


def decode_value(blob: bytes) -> Value:
    """The inverse of ``encode_value``; ``ValueError`` unless ``blob`` is exactly one
    encoded value."""
    if len(blob) < _U32.size:
        raise ValueError(f"{len(blob)} bytes, shorter than the proposal count")
    (count,) = _U32.unpack_from(blob)
    start = _U32.size + 8 * count
    if start > len(blob):
        raise ValueError(f"{count} proposals do not fit in {len(blob)} bytes")
    lengths = _lengths_struct(count).unpack_from(blob, _U32.size)
    if start + sum(lengths) != len(blob):
        raise ValueError(f"lengths add up to {start + sum(lengths)} bytes, not {len(blob)}")
    proposals = []
    for i in range(0, 2 * count, 2):
        middle = start + lengths[i]
        end = middle + lengths[i + 1]
        proposals.append(Proposal(request_id=blob[start:middle], payload=blob[middle:end]))
        start = end
    return tuple(proposals)


def _entry_checksum(
    slot: int, ballot_round: int, ballot_node: int, chosen: int, blob: bytes
) -> int:
    fields = _ENTRY_FIELDS.pack(slot, ballot_round, ballot_node, chosen)
    return zlib.crc32(blob, zlib.crc32(fields))


def _checksum_matches(stored: object, checksum: Callable[..., int], *fields: object) -> bool:
    """False too when a damaged row holds a value of the wrong type for its checksum."""
    try:
        return stored == checksum(*fields)
    except (TypeError, struct.error):
        return False


class SqliteLogStore:
    """``LogStore`` (see its contract) in one SQLite file in WAL mode.

    The file is created, with ``cluster_id`` and ``node_id`` written into it, only when
    ``create`` is true: a node whose log went missing must not quietly start over with an
    empty one, for it would forget its promises. Opening a file of another cluster or node, a
    foreign or corrupt file, or one another process holds open raises ``LogStoreError``.

    The connection uses ``locking_mode=EXCLUSIVE``: the file stays locked until ``close``, so
    two processes can never act as the same acceptor. ``vfs`` names a registered SQLite VFS
    for the connection; tests pass shims that count or fail syncs.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        cluster_id: str,
        node_id: int,
        create: bool = False,
        vfs: str | None = None,
    ) -> None:
        self.path = os.fspath(path)
        self.cluster_id = cluster_id
        self.node_id = node_id
        self._failure: str | None = None
        self._closed = False
        flags = apsw.SQLITE_OPEN_READWRITE | (apsw.SQLITE_OPEN_CREATE if create else 0)
        try:
            self._db = apsw.Connection(self.path, flags=flags, vfs=vfs)
        except apsw.CantOpenError as exc:
            hint = "" if create else " (a new node's log is made with create=True)"
            raise self._error(f"cannot open: {exc}{hint}") from exc
        try:
            with self._reading("open"):
                self._open(create)
                self._promised, self._truncated = self._read_meta()
                self._wal = self._open_wal(vfs)
        except BaseException:
            self._db.close()
            raise

    def persist(self, persist: Persist) -> None:
        self._check_usable()
        check_persist(self._promised, self._truncated, persist)
        if persist.is_empty():
            return
        promised = self._promised if persist.promised is None else persist.promised
        truncated = self._truncated if persist.truncated is None else persist.truncated
        with self._writing("persist"):
            self._commit(persist, promised, truncated)
            if persist.must_sync:
                self._sync_wal()
        self._promised, self._truncated = promised, truncated

    def load(self) -> PersistentState:
        self._check_usable()
        with self._reading("load"), self._db:
            promised, truncated = self._read_meta()
            rows = self._db.execute(
                "SELECT slot, ballot_round, ballot_node, chosen, value, checksum"
                " FROM entries ORDER BY slot"
            )
            entries = tuple(self._decode_entries(rows))
        return PersistentState(promised=promised, entries=entries, truncated=truncated)

    def close(self) -> None:
        """Close the connection; SQLite checkpoints the WAL into the database file, syncing it."""
        if self._closed:
            return
        self._closed = True
        with self._reading("close"):
            self._wal.xClose()
            self._db.close()

    def _commit(self, persist: Persist, promised: Ballot, truncated: int) -> None:
        cursor = self._db.cursor()
        cursor.execute("BEGIN IMMEDIATE")
        if persist.entries:
            cursor.executemany(
                "REPLACE INTO entries VALUES (?, ?, ?, ?, ?, ?)",
                [self._entry_row(e) for e in persist.entries],
            )
        if persist.truncated is not None:
            cursor.execute("DELETE FROM entries WHERE slot <= ?", (persist.truncated,))
        if persist.promised is not None or persist.truncated is not None:
            cursor.execute(
                "UPDATE meta SET promised_round = ?, promised_node = ?, truncated = ?,"
                " checksum = ?",
                (
                    promised.round,
                    promised.node_id,
                    truncated,
                    self._meta_checksum(promised, truncated),
                ),
            )
        cursor.execute("COMMIT")

    @staticmethod
    def _entry_row(entry: LogEntry) -> tuple[int, int, int, int, bytes, int]:
        ballot, chosen, blob = entry.ballot, int(entry.chosen), encode_value(entry.value)
        checksum = _entry_checksum(entry.slot, ballot.round, ballot.node_id, chosen, blob)
        return entry.slot, ballot.round, ballot.node_id, chosen, blob, checksum

    def _meta_checksum(self, promised: Ballot, truncated: int) -> int:
        fields = _META_FIELDS.pack(
            FORMAT_VERSION, self.node_id, promised.round, promised.node_id, truncated
        )
        return zlib.crc32(self.cluster_id.encode(), zlib.crc32(fields))

    def _sync_wal(self) -> None:
        """Durability before acknowledgement: the one place the fsync of a must_sync persist
        happens, after its COMMIT and before ``persist`` returns (so before any message that
        depends on it is sent).

        The connection runs with ``synchronous=NORMAL`` always: a WAL COMMIT then writes its
        frames, commit frame last, into the file (the page cache) without syncing them
        (sqlite.org/pragma.html#pragma_synchronous). One sync of the WAL file makes this commit
        durable and every earlier one with it: recovery at open replays every frame of the WAL
        up to the last commit frame whose checksum chain is intact (sqlite.org/fileformat.html
        §4.3), and the frames of commits before the last WAL restart are in the database file,
        synced by the complete checkpoint that allowed the restart. That is what FULL does at
        COMMIT, without switching the pragma whenever a persist differs from the one before.
        SQLite still syncs what it must by itself: the WAL before a checkpoint copies it, the
        database file after, and the WAL header when the WAL restarts (one more sync in the
        persist that restarts it). The sync goes through the connection's VFS, so a VFS shim
        sees (and can fail) it like SQLite's own.
        """
        self._wal.xSync(apsw.SQLITE_SYNC_NORMAL)

    def _open_wal(self, vfs: str | None) -> apsw.VFSFile:
        """A handle on the WAL file for ``_sync_wal``, through the connection's VFS.

        The WAL exists from the first read of a WAL-mode database and is deleted only when the
        last connection closes (or leaves WAL mode); ``locking_mode=EXCLUSIVE`` makes ours the
        only one, so this handle names the live WAL until ``close``. A WAL file holds no
        POSIX locks (those are on the database file), so a second handle on it is harmless.
        """
        wal_path = os.path.abspath(f"{self.path}-wal")
        if not os.path.exists(wal_path):
            raise self._error(f"{wal_path} missing after opening the log in WAL mode")
        flags = apsw.SQLITE_OPEN_WAL | apsw.SQLITE_OPEN_READWRITE
        return apsw.VFSFile(vfs or "", wal_path, [flags, 0])

    def _open(self, create: bool) -> None:
        """Check that the file is a log of this cluster and node (after writing one into a
        new file, when ``create``)."""
        # Before the first read, so the lock taken by that read is kept.
        self._db.execute("PRAGMA locking_mode = EXCLUSIVE")
        application_id = self._scalar("PRAGMA application_id")
        if application_id == 0 and self._scalar("SELECT count(*) FROM sqlite_schema") == 0:
            self._check_header()
            if not create:
                raise self._error("empty database, not a paxos log (create=False)")
            self._initialize()
        elif application_id != APPLICATION_ID:
            raise self._error(
                f"not a relstorage_paxos log (application_id {application_id:#x}, "
                f"expected {APPLICATION_ID:#x})"
            )
        self._check_owner()
        journal_mode = self._scalar("PRAGMA journal_mode")
        if journal_mode != "wal":
            raise self._error(f"journal_mode is {journal_mode!r}, expected 'wal'")
        self._db.execute("PRAGMA synchronous = NORMAL")

    def _check_header(self) -> None:
        """SQLite reads a file too short to hold its header as an empty database; refuse to
        initialize over one that holds anything else."""
        with open(self.path, "rb") as file:
            head = file.read(len(_SQLITE_HEADER))
        if head and head != _SQLITE_HEADER:
            raise self._error(f"not a SQLite database (starts with {head!r})")

    def _initialize(self) -> None:
        self._scalar("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = FULL")
        with self._db:
            for statement in _SCHEMA:
                self._db.execute(statement)
            self._db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            self._db.execute(
                "INSERT INTO meta VALUES (0, ?, ?, ?, 0, 0, 0, ?)",
                (
                    FORMAT_VERSION,
                    self.cluster_id,
                    self.node_id,
                    self._meta_checksum(Ballot(0, 0), 0),
                ),
            )
        logger.info(
            "node %d: created paxos log %s for cluster %r", self.node_id, self.path, self.cluster_id
        )

    def _check_owner(self) -> None:
        """The format version first: a later version may lay out ``meta`` differently."""
        versions = self._db.execute("SELECT format_version FROM meta").fetchall()
        if len(versions) != 1:
            raise self._error(f"meta table has {len(versions)} rows, expected 1")
        if versions[0][0] != FORMAT_VERSION:
            raise self._error(
                f"log format version {versions[0][0]}, this code reads version {FORMAT_VERSION}"
            )
        owner = self._db.execute("SELECT cluster_id, node_id FROM meta").fetchall()[0]
        if owner != (self.cluster_id, self.node_id):
            raise self._error(
                f"belongs to cluster {owner[0]!r} node {owner[1]}, "
                f"not cluster {self.cluster_id!r} node {self.node_id}: this data directory "
                "was made for another node; point --data-dir at this node's own directory, "
                "or create a new one with `relstorage-paxos init`"
            )

    def _read_meta(self) -> tuple[Ballot, int]:
        row = self._db.execute(
            "SELECT promised_round, promised_node, truncated, checksum FROM meta"
        ).fetchall()[0]
        promised_round, promised_node, truncated, checksum = cast(tuple[int, int, int, int], row)
        promised = Ballot(promised_round, promised_node)
        if not _checksum_matches(checksum, self._meta_checksum, promised, truncated):
            raise self._error("meta: checksum mismatch, the file is damaged")
        return promised, truncated

    def _decode_entries(self, rows: Iterator[apsw.SQLiteValues]) -> Iterator[LogEntry]:
        ballots: dict[tuple[int, int], Ballot] = {}  # one object per ballot, not per entry
        for slot, ballot_round, ballot_node, chosen, blob, checksum in cast(
            Iterator[tuple[int, int, int, int, bytes, int]], rows
        ):
            fields = (slot, ballot_round, ballot_node, chosen, blob)
            if not _checksum_matches(checksum, _entry_checksum, *fields):
                raise self._error(f"slot {slot}: checksum mismatch, the file is damaged")
            try:
                value = decode_value(blob)
            except ValueError as exc:
                raise self._error(f"slot {slot}: malformed value ({exc})") from exc
            key = (ballot_round, ballot_node)
            ballot = ballots.get(key)
            if ballot is None:
                ballot = ballots[key] = Ballot(ballot_round, ballot_node)
            yield LogEntry(slot=slot, ballot=ballot, value=value, chosen=bool(chosen))

    def _scalar(self, sql: str) -> apsw.SQLiteValue:
        return self._db.execute(sql).fetchall()[0][0]

    def _check_usable(self) -> None:
        if self._closed:
            raise self._error("used after close()")
        if self._failure is not None:
            raise self._error(f"unusable after an earlier failure ({self._failure}); restart")

    def _error(self, problem: str) -> LogStoreError:
        return LogStoreError(f"{self.path}: {problem}")

    @contextlib.contextmanager
    def _reading(self, doing: str) -> Iterator[None]:
        """SQLite's errors as ``LogStoreError`` naming the file, what we were doing and why."""
        try:
            yield
        except apsw.BusyError as exc:
            raise self._error(f"{doing}: locked by another process or connection ({exc})") from exc
        except apsw.NotADBError as exc:
            raise self._error(f"{doing}: not a SQLite database ({exc})") from exc
        except UnicodeDecodeError as exc:
            raise self._error(f"{doing}: undecodable text, the file is damaged ({exc})") from exc
        except apsw.Error as exc:
            raise self._error(f"{doing} failed: {type(exc).__name__}: {exc}") from exc

    @contextlib.contextmanager
    def _writing(self, doing: str) -> Iterator[None]:
        """Like ``_reading``, and a failed write leaves the store unusable: after a failed
        fsync the kernel may have dropped the dirty pages, and a retry could report success
        over lost data ("fsyncgate"). The node must stop and restart from what is on disk."""
        try:
            with self._reading(doing):
                try:
                    yield
                finally:
                    if self._db.in_transaction:
                        self._rollback()
        except LogStoreError as exc:
            self._failure = str(exc.__cause__)
            raise

    def _rollback(self) -> None:
        """Best effort: the store is being marked unusable and the original error raised."""
        with contextlib.suppress(apsw.Error):
            self._db.execute("ROLLBACK")
