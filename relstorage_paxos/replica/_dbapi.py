"""Just enough of a DB-API driver over apsw to run RelStorage's own SQLite schema installer
and object mover on the replica's connection.

Owns: ``Driver``, ``Connection`` and ``Cursor`` shims. They exist so that the replica's DDL
and commit DML are RelStorage's, byte for byte (``relstorage.adapters.sqlite``), without ever
opening the replica file with the stdlib ``sqlite3`` module: two SQLite libraries on one file
in one process can corrupt it (sqlite.org/howtocorrupt.html §2.2.1).

Only the surface those two components touch is here (traced in the shared notes,
relstorage-internals.md §1.4): ``execute``/``executemany`` with ``%s`` or ``?`` placeholders,
``fetchone``/``fetchall``/iteration, ``cursor.connection``, ``connection.in_transaction``,
``connection.execute`` and ``register_before_commit_cleanup``. Transactions are not the
shim's business: the replica begins and commits them on the apsw connection itself.

Must not import: the stdlib ``sqlite3`` module's connections (RelStorage's dialect module
imports ``sqlite3`` only to read its version; it opens nothing).
Called by: the applier thread, through ``schema.py`` and ``writer.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import apsw
from relstorage.adapters.sqlite.dialect import Sqlite3Dialect  # type: ignore[import-untyped]
from relstorage.options import Options  # type: ignore[import-untyped]

if TYPE_CHECKING:
    from apsw import SQLiteValue  # only in apsw's stubs

Row = tuple["SQLiteValue", ...]
Params = Sequence["SQLiteValue"]


class Driver:
    """What RelStorage's query builders and components ask of an ``IDBDriver``."""

    dialect = Sqlite3Dialect()

    @staticmethod
    def Binary(data: bytes | None) -> bytes | None:
        """As RelStorage's drivers do: None stays None (a NULL state, i.e. a delete)."""
        return None if data is None else bytes(data)


class ConnectionManager:
    """The schema installer reads only ``connmanager.driver``."""

    def __init__(self, driver: Driver) -> None:
        self.driver = driver


class Connection:
    def __init__(self, db: apsw.Connection) -> None:
        self.db = db
        self._before_commit_cleanups: list[Callable[[Connection], object]] = []

    @property
    def in_transaction(self) -> bool:
        return not self.db.get_autocommit()

    def execute(self, stmt: str) -> apsw.Cursor:
        return self.db.execute(stmt)

    def cursor(self) -> Cursor:
        return Cursor(self)

    def register_before_commit_cleanup(self, cleanup: Callable[[Connection], object]) -> None:
        """The mover registers the emptying of its temp tables here (RelStorage's SQLite
        driver runs these hooks on commit and rollback)."""
        self._before_commit_cleanups.append(cleanup)

    def run_before_commit_cleanups(self) -> None:
        for cleanup in self._before_commit_cleanups:
            cleanup(self)


class Cursor:
    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self._cursor = connection.db.cursor()
        self._rows: Iterator[Row] = iter(())

    def execute(self, stmt: str, params: Params | None = None) -> None:
        # RelStorage's stdlib cursor subclass rewrites the %s placeholders that some of its
        # hand-written SQL still uses whenever parameters are given; so do we.
        if params is not None:
            stmt = stmt.replace("%s", "?")
        self._rows = self._cursor.execute(stmt, params)

    def executemany(self, stmt: str, seq_of_params: Iterable[Params]) -> None:
        self._cursor.executemany(stmt.replace("%s", "?"), seq_of_params)
        self._rows = iter(())

    def fetchone(self) -> Row | None:
        return next(self._rows, None)

    def fetchall(self) -> list[Row]:
        return list(self._rows)

    def __iter__(self) -> Iterator[Row]:
        return self._rows


def make_options(keep_history: bool) -> Any:
    """RelStorage ``Options`` for the components that read them (the mover reads
    ``keep_history`` and ``blob_chunk_size``)."""
    return Options(keep_history=keep_history)
