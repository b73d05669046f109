"""The replica's WAL checkpointer: keeps ``replica.sqlite3-wal`` bounded, off the applier's
thread, while readers come and go.

Owns: one thread and its own apsw connection to the replica, used for nothing but
checkpoints. The applier (``Replica``) reports the frames each commit appends and holds
``gate`` around each slot's write transaction; nothing else is shared.

What SQLite allows (sqlite.org/wal.html, "Checkpoint starvation" and "Avoiding excessively
large WAL files"): a checkpoint copies into the database only the frames that no open read
transaction may still need, and the WAL starts over from its beginning only once it has
been copied completely and no reader reads from it; a reader that begins while the WAL is
copied completely reads the database file alone and does not hold it. With application
readers whose read transactions overlap (RelStorage keeps one open per ZODB transaction) and
an applier committing all the time, neither moment comes by itself, so:

- every ``limit / 8`` written, a PASSIVE checkpoint copies what it can (never waiting for
  anyone): the bulk of the copying and its fsyncs happen here, not on the applier's
  thread, and an applier that then finds the WAL copied completely restarts it itself;
- once the WAL holds ``limit / 2`` and did not start over, a TRUNCATE checkpoint with the
  gate held: the applier waits at its next slot (an in-process lock, so it resumes the
  moment the checkpoint ends), SQLite's write lock is free, and the checkpoint waits at most
  ``busy_timeout_ms`` for readers older than the last commit to end, then for those that
  began before the copy completed (later ones read the database file); then it resets the
  WAL and truncates the file to zero bytes. A reader that outlasts the timeout (a long ZODB
  transaction, a snapshot being served) makes it give up, and it tries again after the next
  ``limit / 8``; past ``limit`` it warns, once per doubling;
- an applier that reaches ``limit`` anyway (it writes faster than the checkpoints copy and
  fsync) waits for the next forced checkpoint before its next slot, once per doubling.

What it costs the applier: waiting for one TRUNCATE checkpoint every ``limit / 2`` written
(copying what the last PASSIVE left, two fsyncs, and the readers' drain, at most
``busy_timeout_ms`` twice), and SQLite's one fsync of the new WAL header in the commit after
each restart. No checkpoint runs on its thread.

Must not import: any clock or global randomness (tests/test_tidy.py).
Called by: the applier's thread (``frames_written``, ``close``) and its own thread.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Final

import apsw

logger = logging.getLogger(__name__)

BUSY_POLL_S: Final = 0.0005
"""How often a forced checkpoint looks again whether the readers it waits for are gone: finer
than SQLite's own busy handler (1, 2, 5, 10 ms...), since the applier waits as long."""


class WalCheckpointer:
    """Checkpoints the WAL of the replica at ``path`` on a thread of its own (module doc)."""

    def __init__(
        self,
        path: str,
        *,
        limit_frames: int,
        busy_timeout_ms: int,
        gate: threading.Lock,
    ) -> None:
        assert limit_frames >= 8, limit_frames
        self._path = path
        self._limit_frames = limit_frames
        self._passive_every_frames = limit_frames // 8
        self._force_frames = limit_frames // 2
        self._busy_polls = max(1, round(busy_timeout_ms / 1000 / BUSY_POLL_S))
        self._gate = gate
        self._hold_frames = limit_frames
        """From this WAL length on, the applier waits for a forced checkpoint, and a failed
        one warns; doubled past the length of a WAL a reader kept from being cut back."""
        self._wal_frames = 0
        """The WAL's length, written with the gate held: by the applier's WAL hook, and here
        after a TRUNCATE."""
        self._unchecked_frames = 0
        """Frames appended since the thread was last woken (the applier's thread only)."""
        self._failure: apsw.Error | None = None
        self._wake = threading.Event()
        self._round_done = threading.Event()
        self._stopping = False
        self._db = apsw.Connection(path)
        self._db.set_busy_handler(self._busy)
        # A first read opens the WAL; until then a checkpoint returns (-1, -1) and does nothing.
        (mode,) = self._db.execute("PRAGMA journal_mode").fetchall()
        assert mode == ("wal",), (path, mode)
        # Through SQLite's VFS, which keeps this process's POSIX locks on the file when the
        # handle closes (a plain os.close would drop them: sqlite.org/howtocorrupt.html §2.2).
        self._db_file = apsw.VFSFile(
            "", os.path.abspath(path), [apsw.SQLITE_OPEN_MAIN_DB | apsw.SQLITE_OPEN_READWRITE, 0]
        )
        self._thread = threading.Thread(
            target=self._run, name=f"wal-checkpointer {path}", daemon=True
        )
        self._thread.start()

    @property
    def failure(self) -> apsw.Error | None:
        """The error that stopped the thread (a failed read, write or fsync), if any: the
        replica must not go on as if its checkpoints worked."""
        return self._failure

    def committed(self, wal_frames: int) -> None:
        """A commit left the WAL ``wal_frames`` long, shorter than before if it started over
        (the applier's thread, from its WAL hook: this only counts, and sets an event every
        ``limit / 8`` written)."""
        grew = wal_frames > self._wal_frames
        self._unchecked_frames += wal_frames - self._wal_frames if grew else wal_frames
        self._wal_frames = wal_frames
        if self._unchecked_frames >= self._passive_every_frames:
            self._unchecked_frames = 0
            self._wake.set()

    def wait_if_over_limit(self) -> None:
        """Before a slot's write (the applier's thread, without the gate): once the WAL
        reached the limit, wait for the checkpointer to finish a round, which then forces a
        checkpoint. Only an applier that outruns the checkpoints (writes faster than they
        copy and fsync) ever waits here, and it waits once per doubling of a WAL that a
        reader keeps from being cut back; without it, the WAL would grow as long as that."""
        if self._wal_frames < self._hold_frames or self._failure is not None:
            return
        self._round_done.clear()
        self._wake.set()
        self._round_done.wait()

    def close(self) -> None:
        """Stop the thread (after the checkpoint it is running, if any) and close its
        connection."""
        self._stopping = True
        self._wake.set()
        self._thread.join()
        self._db_file.xClose()
        self._db.close()

    def _run(self) -> None:
        try:
            while True:
                self._wake.wait()
                self._wake.clear()
                if self._stopping:
                    return
                self._checkpoint()
                self._round_done.set()
        except apsw.Error as exc:
            logger.error("replica %s: WAL checkpoint failed: %s", self._path, exc)
            self._failure = exc
        finally:
            self._round_done.set()  # nobody waits for a thread that is gone

    def _checkpoint(self) -> None:
        try:
            passive = self._db.wal_checkpoint("main", apsw.SQLITE_CHECKPOINT_PASSIVE)
        except apsw.BusyError:
            # The applier was rewriting the WAL index header as this read it (a WAL restart);
            # PASSIVE never waits, so look again at once.
            self._wake.set()
            return
        log_frames, copied_frames = passive
        if copied_frames < log_frames:
            # SQLite syncs the database file only after a complete checkpoint; sync what this
            # one copied now, or the forced checkpoint's sync, with the applier waiting, would
            # write out every page copied since the last complete one.
            self._db_file.xSync(apsw.SQLITE_SYNC_NORMAL)
        if log_frames < self._force_frames:
            return
        with self._gate:
            try:
                self._db.wal_checkpoint("main", apsw.SQLITE_CHECKPOINT_TRUNCATE)
            except apsw.BusyError:
                self._warn_if_over_limit(log_frames, copied_frames)
                return
            self._wal_frames = 0
        if self._hold_frames > self._limit_frames:
            logger.info("replica %s: WAL cut back to zero after exceeding its limit", self._path)
            self._hold_frames = self._limit_frames

    def _warn_if_over_limit(self, log_frames: int, copied_frames: int) -> None:
        if log_frames < self._hold_frames:
            return
        self._hold_frames = 2 * log_frames
        logger.warning(
            "replica %s: WAL holds %d frames (limit %d), %d not copied into the database:"
            " a read transaction stays open (a long ZODB transaction, a snapshot being"
            " served); it is cut back once that ends",
            self._path,
            log_frames,
            self._limit_frames,
            log_frames - copied_frames,
        )

    def _busy(self, prior_calls: int) -> bool:
        """SQLite's busy handler for this connection: poll every ``BUSY_POLL_S`` until
        ``busy_timeout_ms`` (counted in polls, so no clock is read)."""
        if prior_calls >= self._busy_polls:
            return False
        time.sleep(BUSY_POLL_S)
        return True
