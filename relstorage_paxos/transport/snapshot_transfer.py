"""Replica snapshot files in chunks, both ways: cutting one into ``SnapshotChunk`` messages,
and writing received chunks to disk only if every checksum and the size agree.

Owns: the chunk format's rules (peer.proto ``SnapshotChunk``): chunks in file order, no gaps
or overlaps, ``slot`` and ``file_size`` the same on every chunk, a SHA-256 per chunk, and the
whole file's SHA-256 on the last chunk, which alone ends at ``file_size``.
Must not import: grpc, ``runtime``, ``replica`` (a snapshot is an opaque file here).
Called by: a gRPC server thread (``snapshot_chunks``); the thread that fetches a snapshot
(``receive_snapshot``). Pure functions over files; any thread.

The destination is written as a temporary file next to it, fsynced and renamed over it, and
the directory fsynced: after a crash the destination holds either its old content or the whole
verified snapshot, never a part (lessons.md (b) 5).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, Final

from relstorage_paxos.errors import SnapshotTransferError
from relstorage_paxos.pb import peer_pb2 as pb

CHUNK_BYTES: Final = 1024 * 1024
_HASH_READ_BYTES: Final = 4 * 1024 * 1024


def file_sha256(f: BinaryIO) -> bytes:
    """SHA-256 of what remains of ``f`` (read in large blocks)."""
    digest = hashlib.sha256()
    while block := f.read(_HASH_READ_BYTES):
        digest.update(block)
    return digest.digest()


def snapshot_chunks(
    path: Path, slot: int, chunk_bytes: int = CHUNK_BYTES
) -> Iterator[pb.SnapshotChunk]:
    """The chunks of the snapshot file ``path``, which covers every slot up to ``slot``.

    The whole-file SHA-256 is computed before the first chunk is sent, from the same open
    file: if the file changes while it is being sent (a snapshot source that reuses a path),
    the receiver's whole-file check fails instead of accepting a mixture of two snapshots.
    A file that shrinks meanwhile raises ``SnapshotTransferError``.
    """
    assert chunk_bytes > 0, chunk_bytes
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        whole = file_sha256(f)
        f.seek(0)
        offset = 0
        while True:
            data = f.read(min(chunk_bytes, size - offset))
            if len(data) != min(chunk_bytes, size - offset):
                raise SnapshotTransferError(
                    f"snapshot {path} shrank to {offset + len(data)} bytes while being sent"
                )
            last = offset + len(data) == size
            yield pb.SnapshotChunk(
                slot=slot,
                file_size=size,
                offset=offset,
                data=data,
                sha256=hashlib.sha256(data).digest(),
                file_sha256=whole if last else b"",
            )
            offset += len(data)
            if last:
                return


def receive_snapshot(chunks: Iterable[pb.SnapshotChunk], min_slot: int, dest: Path) -> int:
    """Write the snapshot carried by ``chunks`` to ``dest``; the slot it covers.

    Raises ``SnapshotTransferError`` if any check fails (and whatever iterating ``chunks``
    raises), and then leaves neither ``dest`` changed nor a temporary file behind. An
    ``OSError`` of the local disk (full, failed fsync) propagates as it is: that is this
    node's problem, not the transfer's.
    """
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            slot = _write_verified(chunks, min_slot, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(dest.parent)
    return slot


def _write_verified(chunks: Iterable[pb.SnapshotChunk], min_slot: int, out: BinaryIO) -> int:
    whole = hashlib.sha256()
    first: pb.SnapshotChunk | None = None
    written = 0
    complete = False
    for chunk in chunks:
        if complete:
            raise SnapshotTransferError(f"chunk at offset {chunk.offset} after the last chunk")
        if first is None:
            first = chunk
            if chunk.slot < min_slot:
                raise SnapshotTransferError(
                    f"snapshot covers slot {chunk.slot}, {min_slot} was asked for"
                )
        _check_chunk(chunk, first, written)
        out.write(chunk.data)
        whole.update(chunk.data)
        written += len(chunk.data)
        complete = written == chunk.file_size
        if complete and chunk.file_sha256 != whole.digest():
            raise SnapshotTransferError(
                f"whole-file SHA-256 mismatch over {written} bytes: "
                f"got {chunk.file_sha256.hex() or 'none'}, computed {whole.hexdigest()}"
            )
    if first is None or not complete:
        size = "?" if first is None else first.file_size
        raise SnapshotTransferError(f"stream ended after {written} of {size} bytes")
    return first.slot


def _check_chunk(chunk: pb.SnapshotChunk, first: pb.SnapshotChunk, written: int) -> None:
    """One chunk against the first one and the bytes written so far."""
    where = f"chunk at offset {chunk.offset}"
    if chunk.slot != first.slot or chunk.file_size != first.file_size:
        raise SnapshotTransferError(
            f"{where}: slot/size {chunk.slot}/{chunk.file_size}, "
            f"first chunk said {first.slot}/{first.file_size}"
        )
    if chunk.offset != written:
        raise SnapshotTransferError(f"{where}: expected offset {written}")
    end = written + len(chunk.data)
    if end > chunk.file_size:
        raise SnapshotTransferError(f"{where}: ends at {end}, past file_size {chunk.file_size}")
    if not chunk.data and chunk.file_size != 0:
        raise SnapshotTransferError(f"{where}: empty chunk")
    if hashlib.sha256(chunk.data).digest() != chunk.sha256:
        raise SnapshotTransferError(f"{where}: chunk SHA-256 mismatch ({len(chunk.data)} bytes)")
    if end < chunk.file_size and chunk.file_sha256:
        raise SnapshotTransferError(f"{where}: file_sha256 on a chunk that is not the last")


def _fsync_dir(directory: Path) -> None:
    """Make the rename durable (POSIX: the directory entry lives in the directory)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
