"""A DB-API 2 module over apsw, shaped like the stdlib ``sqlite3`` module RelStorage's SQLite
adapter was written for.

Owns: the exception tree (apsw errors translated into it), ``Binary``, ``connect`` and the
``Connection``/``Cursor`` wrappers with exactly the behaviour RelStorage relies on (the shared
notes, relstorage-internals.md §1.4):
- the stdlib's legacy implicit BEGIN: with an ``isolation_level``, a transaction of that kind
  starts before the first INSERT/UPDATE/DELETE/REPLACE outside one (RelStorage's store
  connections rely on it to make their TEMP-table writes transactional);
- ``commit``/``rollback`` that run the hooks RelStorage's SQLite mover registers with
  ``register_before_commit_cleanup`` (they empty the TEMP tables), and
  ``return_to_repeatable_read`` that commits without them;
- ``rowcount`` for DML, ``fetchmany``/``arraysize``, and ``description`` even for a SELECT that
  has finished (apsw raises ``ExecutionCompleteError`` there; we ask ``apsw.ext.query_info``).

Why apsw and not the stdlib: the node's applier writes the replica with apsw, and two SQLite
libraries on one file in one process can corrupt it (sqlite.org/howtocorrupt.html §2.2.1).

Must not import: the stdlib ``sqlite3`` module.
Called by: application threads, through RelStorage's components; a connection is used by one
thread at a time, as RelStorage does.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Final, NamedTuple

import apsw
import apsw.ext

apilevel: Final = "2.0"
threadsafety: Final = 1
paramstyle: Final = "qmark"

Binary = bytes

Params = Sequence[Any] | Mapping[str, Any]
Row = tuple[Any, ...]


class Restoring(NamedTuple):
    """A store connection's restore in progress (``tpc_begin`` with a tid)."""

    tid: int
    packed: bool
    object_tids: dict[int, int]
    """{oid: tid} of every ``restore()``d object: RelStorage's history-free copier gives
    each its own, not the transaction's; objects ``store()``d in it take the transaction's."""


class Prepared(NamedTuple):
    """A transaction voted with its tid chosen and its blobs moved into a shared blob
    directory under it: what its finish proposes (``PaxosTransactionControl.commit_phase2``),
    and RelStorage's ``prepared_txn`` marker for it."""

    tid: int
    user: bytes | str
    description: bytes | str
    extension: bytes


class Warning(Exception):  # the DB-API name, shadowing the builtin on purpose
    pass


class Error(Exception):
    pass


class InterfaceError(Error):
    pass


class DatabaseError(Error):
    pass


class DataError(DatabaseError):
    pass


class OperationalError(DatabaseError):
    pass


class IntegrityError(DatabaseError):
    pass


class InternalError(DatabaseError):
    pass


class ProgrammingError(DatabaseError):
    pass


class NotSupportedError(DatabaseError):
    pass


# The stdlib's mapping of SQLite result codes, so RelStorage's ``except`` clauses (written
# for sqlite3) see the classes they expect.
_TRANSLATION: Final[tuple[tuple[type[apsw.Error], type[DatabaseError]], ...]] = (
    (apsw.ConstraintError, IntegrityError),
    (apsw.TooBigError, DataError),
    (apsw.MismatchError, DataError),
    (apsw.RangeError, ProgrammingError),
    (apsw.ConnectionClosedError, ProgrammingError),
    (apsw.CursorClosedError, ProgrammingError),
    (apsw.ThreadingViolationError, ProgrammingError),
    (apsw.InternalError, InternalError),
    (apsw.CorruptError, DatabaseError),
    (apsw.NotADBError, DatabaseError),
)


def _translate(exc: apsw.Error) -> DatabaseError:
    for source, target in _TRANSLATION:
        if isinstance(exc, source):
            return target(str(exc))
    return OperationalError(str(exc))


_DML: Final = re.compile(r"\s*(?:INSERT|UPDATE|DELETE|REPLACE)\b", re.IGNORECASE)
_TRANSACTION_CONTROL: Final = re.compile(r"\s*(?:BEGIN|COMMIT|END|ROLLBACK)\b", re.IGNORECASE)


def connect(
    path: str,
    *,
    read_only: bool = True,
    isolation_level: str | None = None,
    busy_timeout_ms: int = 15_000,
) -> Connection:
    """Open ``path``. ``read_only`` opens the main database with SQLITE_OPEN_READONLY: nothing
    can write it through this connection, yet TEMP tables (a separate database per
    connection) stay writable, which is all RelStorage's store connections write here."""
    flags = apsw.SQLITE_OPEN_READONLY if read_only else apsw.SQLITE_OPEN_READWRITE
    try:
        db = apsw.Connection(path, flags=flags)
    except apsw.Error as exc:
        raise OperationalError(f"{exc} (at {path!r})") from exc
    db.set_busy_timeout(busy_timeout_ms)
    return Connection(db, path, isolation_level)


class Connection:
    """A DB-API connection with the stdlib sqlite3 module's legacy transaction handling."""

    replica = None
    """RelStorage's connection manager reads this when replica selectors are configured."""

    paxos_txn_id: bytes | None = None
    """Set by the adapter on a store connection while its transaction may hold (or wait for)
    replicated object locks, so whichever path ends the transaction releases them."""

    paxos_lease_until_us: int = 0
    """The lease of the lock request ``paxos_txn_id`` made; its release carries it."""

    paxos_restore: Restoring | None = None
    """Set by the adapter on a store connection restoring a transaction."""

    paxos_database_tid: int | None = None
    """Set by the adapter on a store connection whose transaction holds the database lock:
    the tid it chose, under which it commits (history-preserving undo and deleteObject, and
    blobs moved into a shared blob directory at vote)."""

    paxos_read_current: Mapping[int, int] = {}
    """``{oid: tid}`` the transaction voted with readCurrent: checked again if it trades its
    object locks for the database lock (a shared blob directory)."""

    paxos_prepared: Prepared | None = None
    """Set by the adapter on a store connection whose transaction voted with its blobs
    moved into a shared blob directory: finish proposes its commit."""

    unfenced: Exception | None = None
    """Set by the poller on a load connection whose consistency barrier failed: every
    statement but transaction control raises it until the next poll, so nothing reads the
    unfenced snapshot."""

    def __init__(self, db: apsw.Connection, path: str, isolation_level: str | None) -> None:
        self.db = db
        self.rs_db_filename = path
        self.isolation_level = isolation_level
        self._before_commit: list[Callable[..., object]] = []
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"in_transaction={self.in_transaction}"
        return f"<{type(self).__name__} at 0x{id(self):x} to {self.rs_db_filename!r} {state}>"

    @property
    def in_transaction(self) -> bool:
        if self._closed:
            raise ProgrammingError("Cannot operate on a closed database.")
        return not self.db.get_autocommit()

    def cursor(self) -> Cursor:
        if self._closed:
            raise ProgrammingError("Cannot operate on a closed database.")
        return Cursor(self)

    def execute(self, stmt: str, params: Params | None = None) -> Cursor:
        cursor = self.cursor()
        cursor.execute(stmt, params)
        return cursor

    def executescript(self, script: str) -> None:
        """As the stdlib: commit first, then run every statement in autocommit mode."""
        self.return_to_repeatable_read()
        try:
            for _ in self.db.execute(script):
                pass
        except apsw.Error as exc:
            raise _translate(exc) from exc

    def register_before_commit_cleanup(self, func: Callable[..., object]) -> None:
        self._before_commit.append(func)

    def begin_implicitly(self) -> None:
        """Start a transaction if the stdlib would before a DML statement."""
        if self.isolation_level is not None and self.db.get_autocommit():
            self._run(f"BEGIN {self.isolation_level}")

    def commit(self) -> None:
        for func in self._before_commit:
            func(self)
        self.return_to_repeatable_read()

    def return_to_repeatable_read(self) -> None:
        """COMMIT without the cleanup hooks (RelStorage calls it mid-transaction, after
        storing its TEMP rows, to give up the read snapshot without losing them)."""
        if not self.db.get_autocommit():
            self._run("COMMIT")

    def rollback(self) -> None:
        if self._closed:
            raise ProgrammingError("Cannot operate on a closed database.")
        if not self.db.get_autocommit():
            self._run("ROLLBACK")
        for func in self._before_commit:
            func(self, True)
        # The hooks' DELETEs began a transaction (implicitly, on the TEMP tables only);
        # end it so the connection is idle again, as after the stdlib's rollback.
        self.return_to_repeatable_read()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._before_commit = []
            self.db.close()

    def _run(self, stmt: str) -> None:
        try:
            self.db.execute(stmt)
        except apsw.Error as exc:
            raise _translate(exc) from exc


class Cursor:
    """A DB-API cursor. RelStorage's own SQL still uses ``%s`` placeholders in places; like
    its stdlib cursor subclass, we rewrite them to ``?`` whenever parameters are given."""

    arraysize = 1

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self._cursor = connection.db.cursor()
        self._rows: Iterator[Row] = iter(())
        self._stmt: str | None = None
        self._params: Params | None = None
        self.rowcount = -1
        self.lastrowid: int | None = None

    def execute(self, stmt: str, params: Params | None = None) -> Cursor:
        if self.connection.unfenced is not None and not _TRANSACTION_CONTROL.match(stmt):
            raise self.connection.unfenced
        if params is not None:
            stmt = stmt.replace("%s", "?")
        is_dml = _DML.match(stmt) is not None
        if is_dml:
            self.connection.begin_implicitly()
        db = self.connection.db
        before = db.total_changes()
        try:
            self._rows = self._cursor.execute(stmt, params)
        except apsw.Error as exc:
            self._rows = iter(())
            raise _translate(exc) from exc
        self._stmt, self._params = stmt, params
        self.rowcount = db.total_changes() - before if is_dml else -1
        self.lastrowid = db.last_insert_rowid()
        return self

    def executemany(self, stmt: str, seq_of_params: Iterable[Params]) -> Cursor:
        if self.connection.unfenced is not None:
            raise self.connection.unfenced
        stmt = stmt.replace("%s", "?")
        if _DML.match(stmt) is not None:
            self.connection.begin_implicitly()
        db = self.connection.db
        before = db.total_changes()
        try:
            for _ in self._cursor.executemany(stmt, seq_of_params):
                pass
        except apsw.Error as exc:
            raise _translate(exc) from exc
        finally:
            self._rows = iter(())
        self._stmt, self._params = None, None
        self.rowcount = db.total_changes() - before
        return self

    @property
    def description(self) -> tuple[tuple[Any, ...], ...] | None:
        if self._stmt is None:
            return None
        try:
            names = self._cursor.get_description()
        except apsw.ExecutionCompleteError:
            # The statement has finished (a SELECT with no rows left): ask SQLite to
            # describe it again without running it.
            details = apsw.ext.query_info(self.connection.db, self._stmt, self._params)
            names = details.description or ()
        if not names:
            return None
        return tuple((name, None, None, None, None, None, None) for name, *_ in names)

    def fetchone(self) -> Row | None:
        try:
            return next(self._rows, None)
        except apsw.Error as exc:
            raise _translate(exc) from exc

    def fetchmany(self, size: int | None = None) -> list[Row]:
        count = self.arraysize if size is None else size
        rows = []
        for _ in range(count):
            row = self.fetchone()
            if row is None:
                break
            rows.append(row)
        return rows

    def fetchall(self) -> list[Row]:
        try:
            return list(self._rows)
        except apsw.Error as exc:
            raise _translate(exc) from exc

    def __iter__(self) -> Iterator[Row]:
        return self

    def __next__(self) -> Row:
        row = self.fetchone()
        if row is None:
            raise StopIteration
        return row

    def close(self) -> None:
        self._rows = iter(())
        self._cursor.close(force=True)
