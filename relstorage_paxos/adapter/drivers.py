"""RelStorage's driver options for the Paxos adapter: one driver, ``apsw``.

Owns: ``ApswDriver`` (RelStorage's ``IDBDriver`` over ``relstorage_paxos.adapter.dbapi``) and
this module's ``IDBDriverOptions`` role (``implement_db_driver_options`` at the bottom), which
is how RelStorage's ``driver`` option (``auto`` or ``apsw``) finds it.
Must not import: the stdlib ``sqlite3`` module's connections.
Called by: RelStorage's adapter construction and connection manager, any application thread.
"""

from __future__ import annotations

from typing import Any, Final

from relstorage.adapters.drivers import (  # type: ignore[import-untyped]
    AbstractModuleDriver,
    implement_db_driver_options,
)
from relstorage.adapters.interfaces import IDBDriver  # type: ignore[import-untyped]
from relstorage.adapters.sqlite.dialect import Sqlite3Dialect  # type: ignore[import-untyped]
from zope.interface import implementer  # type: ignore[import-untyped]

from relstorage_paxos.adapter import dbapi

__all__ = ["ApswDriver"]

database_type: Final = "sqlite3"
"""The SQL dialect: RelStorage's SQLite schema and queries run unchanged."""


@implementer(IDBDriver)
class ApswDriver(AbstractModuleDriver):  # type: ignore[misc]
    __name__ = "apsw"
    MODULE_NAME = "relstorage_paxos.adapter.dbapi"
    PRIORITY = 1
    dialect = Sqlite3Dialect()
    # RelStorage's SQLite schema uses signed 64-bit INTEGER columns.
    supports_64bit_unsigned_id = False

    def __init__(self) -> None:
        super().__init__()
        # A connection closed under RelStorage (tests, shutdown) reports ProgrammingError,
        # as with the stdlib driver.
        self.disconnected_exceptions += (dbapi.ProgrammingError,)
        self._connect = self.connect_to_file

    def connect_to_file(
        self,
        fname: str,
        query_only: bool = False,
        timeout: float = 15,
        quick_check: bool = False,
        isolation_level: str | None = None,
        extra_pragmas: dict[str, Any] | None = None,
        **_ignored: Any,
    ) -> dbapi.Connection:
        """Open the replica read-only whatever RelStorage asks for: only the node's applier
        writes it (``query_only``, ``quick_check`` and RelStorage's pragmas, which tune or
        check a database one writes, do not apply)."""
        return dbapi.connect(
            fname,
            read_only=True,
            isolation_level=isolation_level,
            busy_timeout_ms=int(timeout * 1000),
        )

    def connection_may_need_rollback(self, conn: dbapi.Connection) -> bool:
        """Always: unlike a stock SQLite store connection, ours is not in a transaction at
        finish or abort (it never writes the main database), yet its commit or rollback
        must still run the mover's hooks that empty the TEMP tables. A closed connection
        fails the rollback, and RelStorage then drops it."""
        return True

    connection_may_need_commit = connection_may_need_rollback

    def exception_is_deadlock(self, exc: BaseException) -> bool:
        # One writer (the applier) and object locks granted FIFO by the log: no deadlocks.
        return False


implement_db_driver_options(__name__, ".drivers")
