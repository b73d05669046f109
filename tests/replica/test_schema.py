"""A replica's schema is stock RelStorage's, plus paxos_*; its mode is fixed at creation."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import apsw
import pytest

from relstorage_paxos.errors import HistoryModeMismatch, ReplicaError, ReplicaFormatError
from relstorage_paxos.replica import Replica
from relstorage_paxos.replica.schema import FORMAT_VERSION

# Runs in a child process: stock RelStorage creates its SQLite database with the stdlib
# sqlite3 module, which must never touch a file apsw has open in the same process.
_STOCK_SCHEMA = textwrap.dedent(
    """
    import json, sqlite3, sys
    from relstorage.adapters.sqlite.adapter import Sqlite3Adapter
    from relstorage.options import Options

    result = {}
    for keep_history in (False, True):
        data_dir = f"{sys.argv[1]}/{keep_history}"
        adapter = Sqlite3Adapter(data_dir, {}, options=Options(keep_history=keep_history))
        adapter.schema.prepare()
        adapter.close()
        db = sqlite3.connect(f"{data_dir}/main.sqlite3")
        master = db.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master"
            " WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name"
        ).fetchall()
        rows = {
            name: [[v.hex() if isinstance(v, bytes) else v for v in row]
                   for row in db.execute(f'SELECT * FROM "{name}" ORDER BY 1')]
            for (kind, name, _, _) in master if kind == "table"
        }
        result[str(keep_history)] = {"master": master, "rows": rows}
        db.close()
    print(json.dumps(result))
    """
)


@pytest.fixture(scope="module")
def stock(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """What stock RelStorage 4.3's SQLite adapter creates, in each mode."""
    out = subprocess.run(
        [sys.executable, "-c", _STOCK_SCHEMA, str(tmp_path_factory.mktemp("stock"))],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out)


def _relstorage_part(replica: Replica) -> tuple[list[list[Any]], dict[str, list[list[Any]]]]:
    dump = replica.logical_dump()
    master = [list(row) for row in dump["sqlite_master"] if not str(row[1]).startswith("paxos_")]
    tables = [str(row[1]) for row in master if row[0] == "table"]
    rows = {
        table: [[v.hex() if isinstance(v, bytes) else v for v in row] for row in dump[table]]
        for table in tables
    }
    return master, rows


def test_relstorage_schema_is_identical_to_stock(replica: Replica, stock: Any) -> None:
    master, rows = _relstorage_part(replica)
    expected = stock[str(replica.keep_history)]
    assert master == expected["master"]
    assert rows == expected["rows"]


def test_new_replica_meta(replica: Replica) -> None:
    assert replica.applied_slot == 0
    assert replica.last_tid == 0
    assert replica.running_hash == bytes(32)
    assert replica.next_oid == 1
    (row,) = replica.logical_dump()["paxos_meta"]
    assert row == (0, FORMAT_VERSION, int(replica.keep_history), 0, 0, bytes(32), 1)


def test_replica_runs_in_wal_mode(replica: Replica) -> None:
    db = apsw.Connection(replica.path)
    assert db.execute("PRAGMA journal_mode").fetchall() == [("wal",)]
    assert db.execute("PRAGMA page_size").fetchall() == [(4096,)]
    db.close()


@pytest.mark.parametrize("created", [False, True], ids=["hf", "hp"])
def test_other_mode_is_refused_on_reopen(tmp_path: Path, created: bool) -> None:
    path = tmp_path / "replica.sqlite3"
    Replica.open(path, keep_history=created).close()
    with pytest.raises(HistoryModeMismatch, match="history-") as refused:
        Replica.open(path, keep_history=not created)
    assert str(path) in str(refused.value)
    with Replica.open(path) as reopened:
        assert reopened.keep_history is created
    with Replica.open(path, keep_history=created) as reopened:
        assert reopened.keep_history is created


def test_creating_needs_a_mode(tmp_path: Path) -> None:
    with pytest.raises(ReplicaError, match="needs keep_history"):
        Replica.open(tmp_path / "replica.sqlite3")


def test_foreign_files_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite3"
    db = apsw.Connection(str(path))
    db.execute("CREATE TABLE object_state (zoid INTEGER)")
    db.close()
    with pytest.raises(ReplicaFormatError, match="not a relstorage_paxos replica"):
        Replica.open(path, keep_history=False)


def test_other_format_versions_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "replica.sqlite3"
    Replica.open(path, keep_history=False).close()
    db = apsw.Connection(str(path))
    db.execute("UPDATE paxos_meta SET format_version = 99")
    db.close()
    with pytest.raises(ReplicaFormatError, match="format 99"):
        Replica.open(path)
