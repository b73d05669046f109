"""An apsw VFS that counts each file's syncs, or fails them on demand: how tests see where
SQLite fsyncs (the log store, the replica) without a real power cut."""

from __future__ import annotations

import os
from collections import Counter

import apsw


class SyncSpyVFS(apsw.VFS):
    """The default VFS, counting ``xSync`` calls per file name, or failing them on demand."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.syncs: Counter[str] = Counter()
        self.fail_syncs = False
        super().__init__(name, "")

    def xOpen(self, name: str | apsw.URIFilename | None, flags: list[int]) -> apsw.VFSFile:
        return SyncSpyFile(self, name, flags)


class SyncSpyFile(apsw.VFSFile):
    def __init__(
        self, vfs: SyncSpyVFS, name: str | apsw.URIFilename | None, flags: list[int]
    ) -> None:
        self.vfs = vfs
        path = name.filename() if isinstance(name, apsw.URIFilename) else str(name)
        self.basename = os.path.basename(path)
        super().__init__("", name, flags)

    def xSync(self, flags: int) -> None:
        if self.vfs.fail_syncs:
            raise apsw.IOError("injected fsync failure")
        self.vfs.syncs[self.basename] += 1
        super().xSync(flags)
