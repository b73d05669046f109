"""What only the SQLite store can get wrong: files, ownership, corruption, locking, the value
encoding, and the fsync itself (counted through an apsw VFS shim around the real one)."""

from __future__ import annotations

import dataclasses
import os
import random
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import apsw
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relstorage_paxos.core.ballot import Ballot
from relstorage_paxos.core.messages import Proposal, Value
from relstorage_paxos.core.ready import Persist, PersistentState
from relstorage_paxos.errors import LogStoreError
from relstorage_paxos.log import SqliteLogStore
from relstorage_paxos.log.sqlite_store import _entry_checksum, decode_value, encode_value
from tests.log.support import entry
from tests.sync_spy import SyncSpyVFS


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "paxos.sqlite3"


@pytest.fixture
def spy(request: pytest.FixtureRequest) -> Iterator[SyncSpyVFS]:
    vfs = SyncSpyVFS(f"syncspy-{request.node.name}")
    yield vfs
    vfs.unregister()


def open_store(path: Path, *, create: bool = False, vfs: str | None = None) -> SqliteLogStore:
    return SqliteLogStore(path, cluster_id="alpha", node_id=2, create=create, vfs=vfs)


def test_reopen_after_close(path: Path) -> None:
    store = open_store(path, create=True)
    store.persist(Persist(promised=Ballot(3, 2), entries=(entry(1),), must_sync=True))
    store.close()
    reopened = open_store(path)
    assert reopened.load() == PersistentState(promised=Ballot(3, 2), entries=(entry(1),))
    reopened.close()


def test_a_large_record_beside_small_ones_survives_a_reopen(path: Path) -> None:
    """A slot holding one record over batch-bytes-max (a 16 MiB object's CommitTxn) is one
    row like any other: written, marked chosen, and read back whole."""
    large = entry(2, payload=os.urandom(1024) * (16 * 1024 + 1))
    store = open_store(path, create=True)
    store.persist(Persist(entries=(entry(1), large, entry(3)), must_sync=True))
    store.persist(Persist(entries=(dataclasses.replace(large, chosen=True),)))
    store.close()
    reopened = open_store(path)
    loaded = reopened.load().entries
    reopened.close()
    assert [e.slot for e in loaded] == [1, 2, 3]
    assert loaded[1] == dataclasses.replace(large, chosen=True)


def test_another_process_loads_what_this_one_persisted(path: Path) -> None:
    store = open_store(path, create=True)
    state = PersistentState(promised=Ballot(4, 1), entries=(entry(6, chosen=True),), truncated=5)
    store.persist(
        Persist(promised=state.promised, entries=state.entries, truncated=5, must_sync=True)
    )
    store.close()
    script = (
        "import sys\n"
        "from relstorage_paxos.log import SqliteLogStore\n"
        "store = SqliteLogStore(sys.argv[1], cluster_id='alpha', node_id=2)\n"
        "sys.stdout.write(repr(store.load()))\n"
        "store.close()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(path)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == repr(state)


def test_a_missing_file_is_created_only_when_asked(path: Path) -> None:
    with pytest.raises(LogStoreError, match=r"cannot open.*create=True") as raised:
        open_store(path)
    assert str(path) in str(raised.value)
    assert not path.exists()


@pytest.mark.parametrize(
    ("cluster_id", "node_id", "owner"),
    [("beta", 2, "cluster 'alpha' node 2"), ("alpha", 3, "cluster 'alpha' node 2")],
)
def test_a_log_of_another_cluster_or_node_is_refused(
    path: Path, cluster_id: str, node_id: int, owner: str
) -> None:
    open_store(path, create=True).close()
    with pytest.raises(LogStoreError, match=f"belongs to {owner}, not cluster") as raised:
        SqliteLogStore(path, cluster_id=cluster_id, node_id=node_id, create=True)
    assert str(path) in str(raised.value)


@pytest.mark.parametrize("create", [False, True])
@pytest.mark.parametrize("size", [1, 100, 4096, 65536])
def test_a_corrupt_file_is_refused(path: Path, size: int, create: bool) -> None:
    garbage = random.Random(size).randbytes(size)
    path.write_bytes(garbage)
    with pytest.raises(LogStoreError, match="not a SQLite database") as raised:
        open_store(path, create=create)
    assert str(path) in str(raised.value)
    assert path.read_bytes() == garbage


def test_a_foreign_sqlite_file_is_refused(path: Path) -> None:
    foreign = apsw.Connection(str(path))
    foreign.execute("CREATE TABLE object_state (zoid INTEGER PRIMARY KEY, state BLOB)")
    foreign.close()
    with pytest.raises(LogStoreError, match="not a relstorage_paxos log"):
        open_store(path, create=True)


def test_an_empty_file_is_refused_unless_creating(path: Path) -> None:
    path.touch()
    with pytest.raises(LogStoreError, match="empty database"):
        open_store(path)
    open_store(path, create=True).close()
    open_store(path).close()


def test_another_format_version_is_refused(path: Path) -> None:
    damage(a_closed_log(path), "UPDATE meta SET format_version = 99")
    with pytest.raises(LogStoreError, match="format version 99, this code reads version 1"):
        open_store(path)


def damage(path: Path, sql: str, *bindings: apsw.SQLiteValue) -> None:
    """Change the file behind the store's back (it must be closed: it locks the file)."""
    raw = apsw.Connection(str(path))
    raw.execute(sql, bindings)
    raw.close()


def a_closed_log(path: Path) -> Path:
    store = open_store(path, create=True)
    store.persist(Persist(promised=Ballot(2, 2), entries=(entry(1), entry(2)), must_sync=True))
    store.close()
    return path


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE entries SET chosen = 1 WHERE slot = 2",
        "UPDATE entries SET ballot_round = 9 WHERE slot = 2",
        "UPDATE entries SET value = CAST(value || x'00' AS BLOB) WHERE slot = 2",
    ],
)
def test_a_damaged_entry_is_reported_with_its_slot(path: Path, sql: str) -> None:
    damage(a_closed_log(path), sql)
    store = open_store(path)
    with pytest.raises(LogStoreError, match="slot 2: checksum mismatch") as raised:
        store.load()
    assert str(path) in str(raised.value)
    store.close()


def test_a_damaged_promise_is_refused(path: Path) -> None:
    damage(a_closed_log(path), "UPDATE meta SET promised_round = 1")
    with pytest.raises(LogStoreError, match="meta: checksum mismatch"):
        open_store(path)


def test_a_malformed_value_is_reported_with_its_slot(path: Path) -> None:
    junk = b"\x00\x00\x00\x05junk"
    checksum = _entry_checksum(2, 1, 1, 0, junk)
    damage(
        a_closed_log(path),
        "UPDATE entries SET value = ?, checksum = ? WHERE slot = 2",
        junk,
        checksum,
    )
    store = open_store(path)
    with pytest.raises(LogStoreError, match="slot 2: malformed value"):
        store.load()
    store.close()


@pytest.mark.parametrize("page", [4, 5, 12])
def test_damaged_pages_are_reported(path: Path, page: int) -> None:
    store = open_store(path, create=True)
    rng = random.Random(page)
    entries = tuple(entry(s, payload=rng.randbytes(300)) for s in range(1, 201))
    store.persist(Persist(entries=entries, must_sync=True))
    store.close()
    with path.open("r+b") as file:
        file.seek(4096 * (page - 1) + 1024)
        file.write(rng.randbytes(64))
    with pytest.raises(LogStoreError, match=str(path)):
        open_store(path).load()


def test_a_log_in_use_is_refused(path: Path) -> None:
    first = open_store(path, create=True)
    with pytest.raises(LogStoreError, match="locked by another process"):
        open_store(path)
    first.close()
    open_store(path).close()


def test_a_must_sync_persist_fsyncs_the_wal_and_others_do_not(path: Path, spy: SyncSpyVFS) -> None:
    store = open_store(path, create=True, vfs=spy.name)
    spy.syncs.clear()
    store.persist(Persist(entries=(entry(1, chosen=True),)))
    store.persist(Persist(truncated=1))
    assert spy.syncs == Counter()
    for slot in range(2, 12):
        store.persist(Persist(promised=Ballot(slot, 1), entries=(entry(slot),), must_sync=True))
        assert spy.syncs[f"{path.name}-wal"] >= 1, slot
        assert spy.syncs.total() == spy.syncs[f"{path.name}-wal"], spy.syncs
        spy.syncs.clear()
    store.close()


def test_one_persist_is_one_group_commit(path: Path, spy: SyncSpyVFS) -> None:
    store = open_store(path, create=True, vfs=spy.name)
    spy.syncs.clear()
    store.persist(Persist(entries=tuple(entry(s) for s in range(1, 501)), must_sync=True))
    # One sync of the commit, plus one of the WAL header when the WAL starts over.
    assert 1 <= spy.syncs.total() <= 2, spy.syncs
    store.close()


class PowerCutVFS(apsw.VFS):
    """The default VFS, keeping for each file the image a power cut would leave: the writes
    and truncations made before its last ``xSync`` (of any handle on the file, as fsync
    syncs the file, not the descriptor), none made after."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.durable: dict[str, bytearray] = {}
        self.pending: dict[str, list[tuple[int, bytes | None]]] = {}
        super().__init__(name, "")

    def xOpen(self, name: str | apsw.URIFilename | None, flags: list[int]) -> apsw.VFSFile:
        return PowerCutFile(self, name, flags)

    def xDelete(self, filename: str, syncdir: bool) -> None:
        basename = os.path.basename(filename)
        self.durable.pop(basename, None)
        self.pending.pop(basename, None)
        super().xDelete(filename, syncdir)

    def sync(self, basename: str) -> None:
        image = self.durable.setdefault(basename, bytearray())
        for offset, data in self.pending.pop(basename, []):
            if data is None:
                del image[offset:]
            else:
                image.extend(bytes(max(0, offset + len(data) - len(image))))
                image[offset : offset + len(data)] = data

    def cut(self, into: Path) -> None:
        """Write every file as the power cut leaves it into the directory ``into``."""
        into.mkdir()
        for basename, image in self.durable.items():
            (into / basename).write_bytes(image)


class PowerCutFile(apsw.VFSFile):
    def __init__(
        self, vfs: PowerCutVFS, name: str | apsw.URIFilename | None, flags: list[int]
    ) -> None:
        self.vfs = vfs
        path = name.filename() if isinstance(name, apsw.URIFilename) else str(name)
        self.basename = os.path.basename(path)
        super().__init__("", name, flags)

    def xWrite(self, data: bytes, offset: int) -> None:
        self.vfs.pending.setdefault(self.basename, []).append((offset, bytes(data)))
        super().xWrite(data, offset)

    def xTruncate(self, newsize: int) -> None:
        self.vfs.pending.setdefault(self.basename, []).append((newsize, None))
        super().xTruncate(newsize)

    def xSync(self, flags: int) -> None:
        super().xSync(flags)
        self.vfs.sync(self.basename)


def test_a_power_cut_keeps_every_must_sync_persist(
    path: Path, request: pytest.FixtureRequest
) -> None:
    """Each accepted entry is persisted must_sync and then marked chosen without sync, as a
    follower does, over enough slots to checkpoint and restart the WAL several times; a power
    cut after any of them keeps every entry whose persist returned, chosen or not."""
    vfs = PowerCutVFS(f"powercut-{request.node.name}")
    try:
        store = open_store(path, create=True, vfs=vfs.name)
        payload = b"v" * 3000
        for slot in range(1, 1201):
            store.persist(Persist(entries=(entry(slot, payload=payload),), must_sync=True))
            store.persist(Persist(entries=(entry(slot, chosen=True, payload=payload),)))
        store.persist(Persist(promised=Ballot(7, 1), must_sync=True))
        vfs.cut(path.parent / "cut")
        store.close()
    finally:
        vfs.unregister()
    survivor = open_store(path.parent / "cut" / path.name)
    state = survivor.load()
    survivor.close()
    assert state.promised == Ballot(7, 1)
    assert [e.slot for e in state.entries] == list(range(1, 1201))
    assert all(e.value == entry(e.slot, payload=payload).value for e in state.entries)


def test_a_failed_fsync_raises_and_the_store_refuses_further_use(
    path: Path, spy: SyncSpyVFS
) -> None:
    store = open_store(path, create=True, vfs=spy.name)
    store.persist(Persist(entries=(entry(1),), must_sync=True))
    spy.fail_syncs = True
    with pytest.raises(LogStoreError, match="persist failed") as raised:
        store.persist(Persist(promised=Ballot(2, 1), must_sync=True))
    assert str(path) in str(raised.value)
    spy.fail_syncs = False
    with pytest.raises(LogStoreError, match="unusable after an earlier failure"):
        store.persist(Persist(entries=(entry(2),), must_sync=True))
    with pytest.raises(LogStoreError, match="unusable after an earlier failure"):
        store.load()
    store.close()
    reopened = open_store(path)
    assert reopened.load().entries == (entry(1),)
    reopened.close()


proposals = st.builds(Proposal, request_id=st.binary(max_size=40), payload=st.binary(max_size=300))


@settings(derandomize=True, max_examples=200)
@given(st.lists(proposals, max_size=6).map(tuple))
def test_the_value_encoding_round_trips_and_rejects_every_truncation(value: Value) -> None:
    blob = encode_value(value)
    assert decode_value(blob) == value
    assert encode_value(decode_value(blob)) == blob
    for cut in range(len(blob)):
        with pytest.raises(ValueError):
            decode_value(blob[:cut])
    with pytest.raises(ValueError):
        decode_value(blob + b"\x00")


def test_the_value_encoding_is_pinned() -> None:
    """The file format: changing it needs a new FORMAT_VERSION and a migration."""
    assert encode_value(()) == b"\x00\x00\x00\x00"
    assert encode_value((Proposal(b"id", b"abc"),)) == (
        b"\x00\x00\x00\x01" + b"\x00\x00\x00\x02\x00\x00\x00\x03" + b"idabc"
    )
