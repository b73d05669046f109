"""Nodes and databases for the adapter tests: a one-node cluster made in a temporary
directory (run embedded in the test process), and ZODB databases opened from ZConfig text
exactly as an application would."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import apsw
import transaction
import ZODB
import ZODB.config
from persistent import Persistent
from ZODB.Connection import TransactionMetaData
from ZODB.POSException import ConflictError
from ZODB.tests.MinPO import MinPO
from ZODB.tests.StorageTestBase import zodb_pickle

from relstorage_paxos.config import NodeSettings
from relstorage_paxos.replica.locks import DATABASE
from relstorage_paxos.server import init_data_dir
from tests.integration.processes import free_ports

FAST = {"tick_s": 0.01, "heartbeat_interval_s": 0.03, "election_timeout_s": 0.15}


def make_node(root: Path, *, keep_history: bool, name: str = "node1", **settings: int) -> Path:
    """A fresh one-node cluster's data directory (not running); ``settings`` are further
    ``NodeSettings`` fields."""
    (port,) = free_ports(1)
    data_dir = root / name
    init_data_dir(
        data_dir,
        NodeSettings(
            cluster_id=f"adapter-{name}",
            node_id=1,
            keep_history=keep_history,
            members={1: f"127.0.0.1:{port}"},
            **FAST,
            **settings,
        ),
    )
    return data_dir


def relstorage_section(
    data_dir: Path, *, keep_history: bool, relstorage: str = "", name: str = "", **paxos: object
) -> str:
    """A ``<relstorage>`` section with a ``<paxos>`` section; keyword names use _ for -."""
    keys = "\n".join(f"    {k.replace('_', '-')} {v}" for k, v in paxos.items())
    return f"""
  <relstorage {name}>
    keep-history {"true" if keep_history else "false"}
    {relstorage}
    <paxos>
      data-dir {data_dir}
{keys}
    </paxos>
  </relstorage>
"""


def zconfig(data_dir: Path, *, keep_history: bool, relstorage: str = "", **paxos: object) -> str:
    """A ``<zodb>`` configuration around ``relstorage_section``."""
    section = relstorage_section(
        data_dir, keep_history=keep_history, relstorage=relstorage, **paxos
    )
    return f"%import relstorage_paxos\n<zodb>{section}</zodb>\n"


def open_storage(
    data_dir: Path, *, keep_history: bool, relstorage: str = "", **paxos: object
) -> Any:
    """The storage alone, as zodbconvert opens it: no ``ZODB.DB``, so no root object is
    committed into an empty database."""
    section = relstorage_section(
        data_dir, keep_history=keep_history, relstorage=relstorage, **paxos
    )
    return ZODB.config.storageFromString(f"%import relstorage_paxos\n{section}")


def open_db(
    data_dir: Path, *, keep_history: bool, relstorage: str = "", **paxos: object
) -> ZODB.DB:
    text = zconfig(data_dir, keep_history=keep_history, relstorage=relstorage, **paxos)
    return ZODB.config.databaseFromString(text)


class Item(Persistent):
    """A plain persistent object: no conflict resolution."""

    def __init__(self, value: int) -> None:
        self.value = value


def assert_conflict_then_retry(db1: ZODB.DB, db2: ZODB.DB) -> None:
    """Two databases (two processes, on one node or on two) write the same plain object:
    the second commit gets ConflictError, its retry succeeds, and the result holds both."""
    with db1.transaction() as conn:
        conn.root()["item"] = Item(0)
    tm1, tm2 = transaction.TransactionManager(), transaction.TransactionManager()
    c1, c2 = db1.open(tm1), db2.open(tm2)
    c1.root()["item"].value = 1
    c2.root()["item"].value = 2
    tm1.commit()
    try:
        tm2.commit()
        raise AssertionError("the second write of the same object committed")
    except ConflictError:
        tm2.abort()
    c2.root()["item"].value += 10
    tm2.commit()
    tm1.begin()
    assert c1.root()["item"].value == 11
    c1.close()
    c2.close()


def replica_rows(data_dir: Path, query: str) -> list[tuple[Any, ...]]:
    """``query`` on the node's replica, read-only (as an application process reads it)."""
    replica = apsw.Connection(str(data_dir / "replica.sqlite3"), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return replica.execute(query).fetchall()
    finally:
        replica.close()


def lock_requests(data_dir: Path) -> list[tuple[bool, bool]]:
    """(granted, holds or wants the database lock) of each lock request, in queue order."""
    rows = replica_rows(
        data_dir,
        "SELECT r.granted, EXISTS (SELECT 1 FROM paxos_lock_oid AS o WHERE o.txn_id = r.txn_id"
        f" AND o.zoid = {DATABASE} AND o.exclusive) FROM paxos_lock_request AS r"
        " ORDER BY r.queue_seq",
    )
    return [(bool(granted), bool(database)) for granted, database in rows]


def vote_a_write(db: ZODB.DB, oid: bytes, value: str) -> tuple[Any, TransactionMetaData]:
    """A new storage instance of ``db`` that has voted a write of ``MinPO(value)`` to
    ``oid``, so holds its lock, and has not finished: ``(storage, txn)``."""
    storage = db.storage.new_instance()
    serial = storage.load(oid)[1]
    txn = TransactionMetaData()
    storage.tpc_begin(txn)
    storage.store(oid, serial, zodb_pickle(MinPO(value)), "", txn)
    storage.tpc_vote(txn)
    return storage, txn
