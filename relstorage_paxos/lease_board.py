"""The read-lease board: how a node tells the application processes on its machine, without
a call, that they may read its replica linearizably (DESIGN.md §5, core/lease.py).

Owns: the file ``read-lease`` in the node's data directory, 32 bytes mapped into memory by the
node (the writer) and by every application process (readers): a sequence number, the end of
the node's read lease on CLOCK_MONOTONIC (which every process on a Linux machine shares, and
which starts again at a reboot: hence the boot it was measured in), and the floor slot. A
reader that reads the board at a moment before ``until`` and then sees, in the replica
snapshot its transaction reads, ``applied_slot >= floor``, sees every commit that finished
anywhere before that moment.
Must not import: ``core``, ``runtime``, ``adapter`` (both sides import this module).
Called by: the node's runtime thread (``LeaseBoardWriter.publish``); any application thread
(``LeaseBoardReader.read``).

Torn reads are ruled out seqlock-style: the writer makes the sequence number odd, writes the
fields, then makes it even again, each a store of its own; a reader reads the sequence, the
fields and the sequence again, and retries while it is odd or changed under it.
"""

from __future__ import annotations

import mmap
import os
import struct
import time
from pathlib import Path
from typing import Final

BOARD_FILE: Final = "read-lease"
_SEQ: Final = struct.Struct("<Q")
_FIELDS: Final = struct.Struct("<QqQ")
"""At offset 8, after the sequence: the boot, until (µs on CLOCK_MONOTONIC), the floor slot."""
_SIZE: Final = _SEQ.size + _FIELDS.size
_RETRIES: Final = 100


def this_boot() -> int:
    """This machine's boot, as 64 bits of the kernel's boot id (0 where there is none)."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return int(f.read().strip().replace("-", "")[:16], 16)
    except (OSError, ValueError):
        return 0


def monotonic_us() -> int:
    """CLOCK_MONOTONIC in µs: the clock the node's runtime and the board both use."""
    return time.monotonic_ns() // 1000


class LeaseBoardWriter:
    """The node's side. ``publish`` before sending anything that the published state covers
    (an acknowledgement of a slot raises the floor: the board must show it first)."""

    def __init__(self, data_dir: Path) -> None:
        path = data_dir / BOARD_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            os.ftruncate(fd, _SIZE)
            self._map = mmap.mmap(fd, _SIZE)
        finally:
            os.close(fd)
        (self._seq,) = _SEQ.unpack_from(self._map, 0)
        self._seq += self._seq % 2  # a writer that died mid-write left it odd
        self._boot = this_boot()
        self._published: tuple[int, int] = (-1, -1)
        self.publish(0, 0)

    def publish(self, until_us: int, floor: int) -> None:
        """Announce a lease valid until ``until_us`` with ``floor`` (0, 0: none)."""
        if (until_us, floor) == self._published:
            return
        self._seq += 1
        _SEQ.pack_into(self._map, 0, self._seq)  # odd: being written
        _FIELDS.pack_into(self._map, _SEQ.size, self._boot, until_us, floor)
        self._seq += 1
        _SEQ.pack_into(self._map, 0, self._seq)
        self._published = (until_us, floor)

    def close(self) -> None:
        """Withdraw the lease (a stopping node serves no more lease reads), then unmap."""
        self.publish(0, 0)
        self._map.close()


class LeaseBoardReader:
    """An application process's side; thread-safe (reads only)."""

    def __init__(self, data_dir: Path) -> None:
        self._path = data_dir / BOARD_FILE
        self._map: mmap.mmap | None = None
        self._boot = this_boot()

    def floor(self) -> int | None:
        """The floor of the node's lease if it holds one now, else None (no board yet, no
        lease, or the lease ended: read through ReadIndex instead)."""
        board = self._board()
        if board is None:
            return None
        for _ in range(_RETRIES):
            (before,) = _SEQ.unpack_from(board, 0)
            boot, until_us, floor = _FIELDS.unpack_from(board, _SEQ.size)
            (after,) = _SEQ.unpack_from(board, 0)
            if before == after and before % 2 == 0:
                break
        else:
            return None
        if boot != self._boot or monotonic_us() >= until_us:
            return None
        return int(floor)

    def _board(self) -> mmap.mmap | None:
        if self._map is None:
            try:
                with open(self._path, "rb") as f:
                    self._map = mmap.mmap(f.fileno(), _SIZE, access=mmap.ACCESS_READ)
            except (OSError, ValueError):
                return None
        return self._map

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
