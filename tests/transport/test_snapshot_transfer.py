"""Snapshot download: a round trip through a real ``FetchSnapshot`` call, the server's
refusals, and every kind of damaged stream (from a test server that serves doctored chunks),
each of which must raise ``SnapshotTransferError`` and leave neither a partial file nor a
changed destination."""

from __future__ import annotations

import hashlib
import random
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from relstorage_paxos.errors import SnapshotTransferError
from relstorage_paxos.pb import peer_pb2 as pb
from relstorage_paxos.transport.channels import SERVICE_NAME
from relstorage_paxos.transport.peer import PeerTransport
from relstorage_paxos.transport.snapshot_transfer import receive_snapshot, snapshot_chunks
from tests.transport.clusters import CLUSTER_ID

MIB = 1024 * 1024
SEED = 20240611
OLD_CONTENT = b"the replica before the download"


def random_file(path: Path, size: int, seed: int = SEED) -> bytes:
    data = random.Random(seed).randbytes(size)
    path.write_bytes(data)
    return data


def assert_untouched(dest: Path) -> None:
    """The destination still holds its old content and no temporary file is left."""
    assert dest.read_bytes() == OLD_CONTENT
    assert sorted(p.name for p in dest.parent.iterdir()) == [dest.name]


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    d = tmp_path / "dest"
    d.mkdir()
    f = d / "replica.sqlite3"
    f.write_bytes(OLD_CONTENT)
    return f


class Server:
    """Node 2 serving snapshots from ``source``, and node 1 (not started) fetching them."""

    def __init__(self, source: Callable[[int], tuple[Path, int] | None] | None) -> None:
        self.node2 = PeerTransport(
            2, CLUSTER_ID, "127.0.0.1:0", {1: "127.0.0.1:1"}, snapshot_source=source
        )
        self.node2.start(lambda m: None)
        self.node1 = PeerTransport(
            1, CLUSTER_ID, "127.0.0.1:0", {2: f"127.0.0.1:{self.node2.port}"}
        )

    def close(self) -> None:
        self.node1.close()
        self.node2.close()


def test_a_3_mib_snapshot_round_trips(tmp_path: Path, dest: Path) -> None:
    source_file = tmp_path / "snap.sqlite3"
    data = random_file(source_file, 3 * MIB + 12345)
    asked: list[int] = []

    def source(min_slot: int) -> tuple[Path, int]:
        asked.append(min_slot)
        return source_file, 500

    s = Server(source)
    try:
        assert s.node1.fetch_snapshot(2, 450, dest, timeout_s=10) == 500
    finally:
        s.close()
    assert asked == [450]
    assert dest.read_bytes() == data
    assert sorted(p.name for p in dest.parent.iterdir()) == [dest.name]


@pytest.mark.parametrize("size", [0, 1, 2 * MIB])
def test_edge_sizes_round_trip(tmp_path: Path, dest: Path, size: int) -> None:
    source_file = tmp_path / "snap"
    data = random_file(source_file, size)
    s = Server(lambda min_slot: (source_file, min_slot))
    try:
        assert s.node1.fetch_snapshot(2, 7, dest, timeout_s=10) == 7
    finally:
        s.close()
    assert dest.read_bytes() == data


@pytest.mark.parametrize(
    ("source", "status"),
    [
        (lambda min_slot: None, "FAILED_PRECONDITION"),
        (lambda min_slot: (Path("/nonexistent"), min_slot - 1), "FAILED_PRECONDITION"),
        (None, "UNIMPLEMENTED"),
        (lambda min_slot: (Path("/nonexistent/snap"), min_slot), "INTERNAL"),
    ],
    ids=["nothing", "too-old", "no-source", "unreadable"],
)
def test_a_refused_request_raises(
    dest: Path, source: Callable[[int], tuple[Path, int] | None] | None, status: str
) -> None:
    s = Server(source)
    try:
        with pytest.raises(SnapshotTransferError, match=status):
            s.node1.fetch_snapshot(2, 100, dest, timeout_s=10)
    finally:
        s.close()
    assert_untouched(dest)


def test_a_peer_that_is_down_raises(dest: Path) -> None:
    node1 = PeerTransport(1, CLUSTER_ID, "127.0.0.1:0", {2: "127.0.0.1:1"})
    try:
        with pytest.raises(SnapshotTransferError, match="UNAVAILABLE"):
            node1.fetch_snapshot(2, 1, dest, timeout_s=5)
    finally:
        node1.close()
    assert_untouched(dest)


# A test server that serves doctored chunks.

Chunks = list[pb.SnapshotChunk]


def _flip_a_byte(chunks: Chunks) -> Chunks:
    data = bytearray(chunks[1].data)
    data[10] ^= 1
    chunks[1].data = bytes(data)
    return chunks


def _changed_mid_transfer(chunks: Chunks) -> Chunks:
    # What a file rewritten while being sent looks like: each chunk consistent with its own
    # hash, the whole not what the first pass hashed.
    data = bytearray(chunks[1].data)
    data[10] ^= 1
    chunks[1].data = bytes(data)
    chunks[1].sha256 = hashlib.sha256(chunks[1].data).digest()
    return chunks


def _with(chunk: pb.SnapshotChunk, **fields: object) -> pb.SnapshotChunk:
    copy = pb.SnapshotChunk()
    copy.CopyFrom(chunk)
    for name, value in fields.items():
        setattr(copy, name, value)
    return copy


def _set(index: int, **fields: object) -> Callable[[Chunks], Chunks]:
    def doctor(chunks: Chunks) -> Chunks:
        for name, value in fields.items():
            setattr(chunks[index], name, value)
        return chunks

    return doctor


DOCTORED: dict[str, tuple[Callable[[Chunks], Chunks], str]] = {
    "chunk-hash": (_flip_a_byte, "chunk SHA-256 mismatch"),
    "whole-file-hash": (_changed_mid_transfer, "whole-file SHA-256 mismatch"),
    "last-chunk-missing": (lambda c: c[:-1], "stream ended after"),
    "middle-chunk-missing": (lambda c: c[:1] + c[2:], "expected offset"),
    "chunk-repeated": (lambda c: c[:2] + c[1:], "expected offset"),
    "extra-chunk-after-last": (lambda c: [*c, c[-1]], "after the last chunk"),
    "no-chunks": (lambda c: [], "stream ended after 0"),
    "slot-changes": (_set(1, slot=99), "first chunk said"),
    "size-changes": (_set(1, file_size=5 * MIB), "first chunk said"),
    "slot-too-old": (lambda c: [_with(chunk, slot=3) for chunk in c], "covers slot 3"),
    "file-hash-early": (_set(0, file_sha256=b"\x00" * 32), "not the last"),
    "file-hash-missing": (_set(-1, file_sha256=b""), "whole-file SHA-256 mismatch"),
    "empty-chunk": (
        lambda c: [c[0], _with(c[1], data=b"", sha256=hashlib.sha256().digest()), *c[1:]],
        "empty chunk",
    ),
}


class DoctoredPeer:
    """A PaxosPeer server whose FetchSnapshot serves ``snapshot_chunks`` of ``path`` after
    ``doctor`` changed them, then (if ``abort`` is set) fails the call."""

    def __init__(
        self, path: Path, doctor: Callable[[Chunks], Chunks], abort: grpc.StatusCode | None = None
    ) -> None:
        self.path = path
        self.doctor = doctor
        self.abort = abort
        self.release = threading.Event()
        self.server = grpc.server(ThreadPoolExecutor(2))
        handler = grpc.unary_stream_rpc_method_handler(
            self.fetch,
            request_deserializer=pb.SnapshotRequest.FromString,
            response_serializer=pb.SnapshotChunk.SerializeToString,
        )
        self.server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE_NAME, {"FetchSnapshot": handler}),)
        )
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def fetch(
        self, request: pb.SnapshotRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.SnapshotChunk]:
        yield from self.doctor(list(snapshot_chunks(self.path, 50, chunk_bytes=256 * 1024)))
        if self.abort is grpc.StatusCode.DEADLINE_EXCEEDED:
            self.release.wait(10)  # stall until the client's deadline passes
        elif self.abort is not None:
            context.abort(self.abort, "server gave up")

    def close(self) -> None:
        self.release.set()
        self.server.stop(None).wait()


@pytest.mark.parametrize("damage", sorted(DOCTORED))
def test_a_damaged_stream_raises_and_leaves_nothing(
    tmp_path: Path, dest: Path, damage: str
) -> None:
    source_file = tmp_path / "snap"
    random_file(source_file, MIB + 1000)
    doctor, reason = DOCTORED[damage]
    peer = DoctoredPeer(source_file, doctor)
    node1 = PeerTransport(1, CLUSTER_ID, "127.0.0.1:0", {2: f"127.0.0.1:{peer.port}"})
    try:
        with pytest.raises(SnapshotTransferError, match=reason):
            node1.fetch_snapshot(2, 40, dest, timeout_s=10)
    finally:
        node1.close()
        peer.close()
    assert_untouched(dest)


@pytest.mark.parametrize("status", [grpc.StatusCode.ABORTED, grpc.StatusCode.DEADLINE_EXCEEDED])
def test_a_call_failing_after_the_chunks_raises(
    tmp_path: Path, dest: Path, status: grpc.StatusCode
) -> None:
    source_file = tmp_path / "snap"
    random_file(source_file, MIB + 1000)
    # Every chunk but the last arrives intact, then the call fails.
    peer = DoctoredPeer(source_file, lambda c: c[:-1], abort=status)
    node1 = PeerTransport(1, CLUSTER_ID, "127.0.0.1:0", {2: f"127.0.0.1:{peer.port}"})
    try:
        with pytest.raises(SnapshotTransferError, match=status.name):
            node1.fetch_snapshot(2, 40, dest, timeout_s=0.5)
    finally:
        node1.close()
        peer.close()
    assert_untouched(dest)


def test_a_file_rewritten_while_being_sent_is_caught(tmp_path: Path, dest: Path) -> None:
    source_file = tmp_path / "snap"
    random_file(source_file, MIB + 1000)
    chunks = snapshot_chunks(source_file, 50, chunk_bytes=256 * 1024)

    def rewritten_after_the_first_chunk() -> Iterator[pb.SnapshotChunk]:
        yield next(chunks)
        random_file(source_file, MIB + 1000, seed=SEED + 1)
        yield from chunks

    with pytest.raises(SnapshotTransferError, match="whole-file SHA-256"):
        receive_snapshot(rewritten_after_the_first_chunk(), 40, dest)
    assert_untouched(dest)


def test_a_file_that_shrinks_while_being_sent_stops_the_server(tmp_path: Path) -> None:
    source_file = tmp_path / "snap"
    random_file(source_file, MIB + 1000)
    chunks = snapshot_chunks(source_file, 50, chunk_bytes=256 * 1024)
    next(chunks)
    source_file.write_bytes(b"short")
    with pytest.raises(SnapshotTransferError, match="shrank"):
        list(chunks)
