"""The apsw DB-API shim: the stdlib sqlite3 behaviour RelStorage relies on (implicit BEGIN,
commit/rollback hooks, rowcount, fetchmany, description after a finished SELECT, exception
classes), and read-only main database with writable TEMP tables."""

from __future__ import annotations

from pathlib import Path

import apsw
import pytest

from relstorage_paxos.adapter import dbapi


@pytest.fixture
def path(tmp_path: Path) -> str:
    db_path = str(tmp_path / "main.sqlite3")
    db = apsw.Connection(db_path)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)")
    db.executemany("INSERT INTO t VALUES (?, ?)", [(i, b"x") for i in range(5)])
    db.close()
    return db_path


def test_main_is_read_only_and_temp_tables_are_writable(path: str) -> None:
    conn = dbapi.connect(path, isolation_level="DEFERRED")
    cur = conn.cursor()
    with pytest.raises(dbapi.OperationalError, match="readonly"):
        cur.execute("DELETE FROM t")
    conn.rollback()
    cur.execute("CREATE TEMP TABLE tt (id INTEGER PRIMARY KEY)")
    cur.executemany("INSERT INTO tt VALUES (%s)", [(1,), (2,), (3,)])
    assert cur.rowcount == 3
    assert conn.in_transaction, "DML begins a transaction implicitly"
    conn.return_to_repeatable_read()
    assert not conn.in_transaction
    cur.execute("DELETE FROM tt WHERE id > ?", (1,))
    assert cur.rowcount == 2
    conn.rollback()
    cur.execute("SELECT count(*) FROM tt")
    assert cur.fetchone() == (3,)
    conn.close()


def test_commit_and_rollback_run_the_cleanup_hooks(path: str) -> None:
    conn = dbapi.connect(path, isolation_level="DEFERRED")
    calls: list[tuple[object, ...]] = []
    conn.register_before_commit_cleanup(lambda c, *rest: calls.append(rest))
    conn.commit()
    conn.rollback()
    assert calls == [(), (True,)]
    assert not conn.in_transaction
    conn.close()
    with pytest.raises(dbapi.ProgrammingError):
        conn.cursor()


def test_fetching_and_description(path: str) -> None:
    conn = dbapi.connect(path)
    cur = conn.cursor()
    cur.execute("SELECT id, v FROM t ORDER BY id")
    assert [d[0] for d in cur.description or ()] == ["id", "v"]
    assert cur.fetchmany(2) == [(0, b"x"), (1, b"x")]
    assert cur.fetchone() == (2, b"x")
    assert list(cur) == [(3, b"x"), (4, b"x")]
    assert cur.rowcount == -1
    cur.execute("SELECT id AS only_name FROM t WHERE id < 0")
    assert cur.fetchall() == []
    assert [d[0] for d in cur.description or ()] == ["only_name"]
    cur.execute("SELECT id FROM t WHERE id = :id", {"id": 3})
    assert cur.fetchall() == [(3,)]
    conn.close()


def test_errors_are_translated(path: str) -> None:
    conn = dbapi.connect(path)
    cur = conn.cursor()
    with pytest.raises(dbapi.OperationalError):
        cur.execute("SELECT nope FROM t")
    cur.execute("CREATE TEMP TABLE u (id INTEGER PRIMARY KEY)")
    cur.execute("INSERT INTO u VALUES (1)")
    with pytest.raises(dbapi.IntegrityError):
        cur.execute("INSERT INTO u VALUES (1)")
    with pytest.raises(dbapi.OperationalError):
        dbapi.connect(str(Path(path).parent / "missing" / "x.sqlite3"))
    conn.close()
