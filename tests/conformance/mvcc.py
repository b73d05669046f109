"""MVCC between two storages on one database, after ``ZODB.tests.testmvcc``.

testmvcc is a doctest against ``MinimalMemoryStorage``, and RelStorage's builder does not
include it (notes/relstorage-internals.md §6.1): its scenarios are restated here against
two RelStorage instances, A (``self._storage``) and B (a second ``make_storage(zap=False)``
on the same database). On stock SQLite both read one file; on a 1-node Paxos cluster both
use one node; on the 3-node variant A is on a follower and B on another node, so commits
through one node are loaded through another.

Owns: ``HistoryFreeMVCCTests`` and ``HistoryPreservingMVCCTests`` (unittest ``test_*``
classes; a suite adds its adapter mixin in front, like RelStorage's ``TestSqlite3``).
Must not import: ``relstorage_paxos``: the stock anchor runs these too.
Called by: zope.testrunner, one test per thread (test_concurrent_increments starts its own).
"""

from __future__ import annotations

import threading
from typing import Any

import transaction
from persistent.mapping import PersistentMapping
from relstorage.tests.reltestbase import RelStorageTestBase
from ZODB.DB import DB
from ZODB.POSException import ConflictError, ReadConflictError
from ZODB.tests.ConflictResolution import PCounter
from ZODB.tests.MinPO import MinPO
from ZODB.utils import maxtid, u64

ROUNDS = 20
THREADS = 4
INCREMENTS = 10


class _MVCCTests(RelStorageTestBase):  # type: ignore[misc]
    def setUp(self) -> None:
        super().setUp()
        self.db_a = self._closing(DB(self._storage))
        self.storage_b = self.make_storage(zap=False)
        self.db_b = self._closing(DB(self.storage_b))
        self.tm_a = transaction.TransactionManager()
        self.tm_b = transaction.TransactionManager()
        self.cn_a = self._closing(self.db_a.open(self.tm_a))
        self.cn_b = self._closing(self.db_b.open(self.tm_b))

    def tearDown(self) -> None:
        self.tm_a.abort()
        self.tm_b.abort()
        super().tearDown()

    def _commit_a(self, **items: Any) -> None:
        with self.tm_a:
            root = self.cn_a.root()
            for key, value in items.items():
                root[key] = value

    def _setup_ab(self) -> None:
        self._commit_a(a=MinPO(1))
        self._commit_a(b=MinPO(1))  # separate transactions, as testmvcc does

    # -- testmvcc's narrative -------------------------------------------------------------

    def test_snapshot_is_fixed_for_the_whole_transaction(self) -> None:
        """testmvcc "Connection high-water mark": B's transaction keeps reading the states
        of its start even after A commits new ones for both objects."""
        self._setup_ab()
        self.tm_b.begin()
        root_b = self.cn_b.root()
        self.assertEqual(root_b["a"].value, 1)
        with self.tm_a:
            root_a = self.cn_a.root()
            root_a["a"].value = 2
            root_a["b"].value = 2
        # Same transaction on B: b was not loaded yet, and must still be the old revision.
        self.assertEqual(root_b["b"].value, 1)
        self.assertEqual(root_b["a"].value, 1)
        self.tm_b.abort()
        self.tm_b.begin()
        self.assertEqual((root_b["a"].value, root_b["b"].value), (2, 2))
        self.tm_b.abort()

    def test_new_transaction_sees_invalidations(self) -> None:
        """testmvcc "invalidations": an object B holds in its cache is invalidated (ghosted,
        then reloaded) at B's next transaction once A committed it."""
        self._setup_ab()
        self.tm_b.begin()
        obj_b = self.cn_b.root()["a"]
        self.assertEqual(obj_b.value, 1)
        self.tm_b.abort()
        with self.tm_a:
            self.cn_a.root()["a"].value = 3
        self.tm_b.begin()
        self.assertIsNone(obj_b._p_changed, "still in B's cache after A's commit")
        self.assertEqual(obj_b.value, 3)
        self.tm_b.abort()

    def test_write_conflict_between_storages(self) -> None:
        """Both change ``a`` from the same snapshot; the later commit conflicts, and after an
        abort it sees the winner's state and can commit on top of it."""
        self._setup_ab()
        self.tm_b.begin()
        self.cn_b.root()["a"].value = 20
        with self.tm_a:
            self.cn_a.root()["a"].value = 10
        with self.assertRaises(ConflictError):
            self.tm_b.commit()
        self.tm_b.abort()
        with self.tm_b:
            obj = self.cn_b.root()["a"]
            self.assertEqual(obj.value, 10)
            obj.value = 21
        self.tm_a.begin()
        self.assertEqual(self.cn_a.root()["a"].value, 21)
        self.tm_a.abort()

    def test_read_current_conflict_between_storages(self) -> None:
        """B's readCurrent(a) fails B's commit once A has committed a new ``a``."""
        self._setup_ab()
        self.tm_b.begin()
        root_b = self.cn_b.root()
        obj_a = root_b["a"]
        obj_a._p_activate()  # readCurrent of a ghost records nothing
        self.cn_b.readCurrent(obj_a)
        root_b["b"].value = 5
        with self.tm_a:
            self.cn_a.root()["a"].value = 4
        with self.assertRaises(ReadConflictError):
            self.tm_b.commit()
        self.tm_b.abort()

    # -- what a replicated storage adds -----------------------------------------------------

    def test_each_commit_is_visible_to_the_other_storage_at_once(self) -> None:
        """Read-your-writes through another storage (another node on the 3-node variant):
        the transaction B starts after A's commit returned sees it, without waiting."""
        self._commit_a(n=MinPO(-1))
        for i in range(ROUNDS):
            with self.tm_a:
                self.cn_a.root()["n"].value = i
            self.tm_b.begin()
            self.assertEqual(self.cn_b.root()["n"].value, i, f"round {i}")
            self.tm_b.abort()

    def test_tids_increase_whichever_storage_commits(self) -> None:
        """Commits alternate between the storages; each tid exceeds the one before, and
        the other storage's next transaction reads the object at exactly that tid."""
        self._setup_ab()
        last = 0
        sides = ((self.tm_a, self.cn_a), (self.tm_b, self.cn_b))
        for i in range(ROUNDS):
            (tm, cn), (other_tm, other_cn) = sides[i % 2], sides[1 - i % 2]
            with tm:
                cn.root()["a"].value = i
            tid = u64(cn.root()["a"]._p_serial)
            self.assertGreater(tid, last, f"round {i}")
            with other_tm:
                obj = other_cn.root()["a"]
                self.assertEqual((obj.value, u64(obj._p_serial)), (i, tid), f"round {i}")
            last = tid

    def test_new_oids_never_collide(self) -> None:
        oids_a = {self._storage.new_oid() for _ in range(300)}
        oids_b = {self.storage_b.new_oid() for _ in range(300)}
        self.assertEqual(len(oids_a), 300)
        self.assertEqual(len(oids_b), 300)
        self.assertFalse(oids_a & oids_b)

    def test_objects_added_on_both_sides_are_distinct(self) -> None:
        with self.tm_a:
            self.cn_a.root()["from_a"] = PersistentMapping({i: MinPO(i) for i in range(50)})
        with self.tm_b:
            self.cn_b.root()["from_b"] = PersistentMapping({i: MinPO(-i) for i in range(50)})
        for tm, cn in ((self.tm_a, self.cn_a), (self.tm_b, self.cn_b)):
            with tm:
                root = cn.root()
                oids = {root["from_a"][i]._p_oid for i in range(50)}
                oids |= {root["from_b"][i]._p_oid for i in range(50)}
                self.assertEqual(len(oids), 100)
                self.assertEqual([root["from_b"][i].value for i in range(3)], [0, -1, -2])

    def test_concurrent_increments(self) -> None:
        """Threads on both storages increment one unresolvable counter, retrying conflicts:
        no increment is lost and none is applied twice."""
        self._commit_a(counter=MinPO(0))
        errors: list[BaseException] = []

        def worker(db: DB) -> None:
            tm = transaction.TransactionManager()
            conn = db.open(tm)
            try:
                for _ in range(INCREMENTS):
                    for attempt in tm.attempts(50):
                        with attempt:
                            conn.root()["counter"].value += 1
            except BaseException as exc:
                errors.append(exc)
            finally:
                tm.abort()
                conn.close()

        threads = [
            threading.Thread(target=worker, args=(self.db_a if i % 2 else self.db_b,))
            for i in range(THREADS)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        self.assertFalse([t for t in threads if t.is_alive()], "workers still running")
        self.assertEqual(errors, [])
        for tm, cn in ((self.tm_a, self.cn_a), (self.tm_b, self.cn_b)):
            tm.begin()
            self.assertEqual(cn.root()["counter"].value, THREADS * INCREMENTS)
            tm.abort()


class HistoryFreeMVCCTests(_MVCCTests):
    keep_history = False


class HistoryPreservingMVCCTests(_MVCCTests):
    keep_history = True

    def test_conflict_resolution_between_storages(self) -> None:
        """ZODB's ConflictResolvingStorage.checkResolve across the two storages: PCounter
        resolves concurrent increments; each side then sees the sum. (History-preserving
        only: resolution needs the state both sides started from, which a history-free
        database no longer holds once the other side has committed, unless it is still in
        the resolving storage's own cache.)"""
        counter = PCounter()
        counter.inc()  # the state must hold _value: resolution reads it from every state
        self._commit_a(p=counter)
        self.tm_b.begin()
        self.cn_b.root()["p"].inc(2)
        with self.tm_a:
            self.cn_a.root()["p"].inc(1)
        self.tm_b.commit()
        for tm, cn in ((self.tm_a, self.cn_a), (self.tm_b, self.cn_b)):
            tm.begin()
            self.assertEqual(cn.root()["p"]._value, 4)
            tm.abort()

    def test_load_before_reads_the_older_revision_through_the_other_storage(self) -> None:
        """testmvcc "loadBefore": B reads A's older revision by tid."""
        self._setup_ab()
        oid = self.cn_a.root()["a"]._p_oid
        tid1 = self.cn_a.root()["a"]._p_serial
        with self.tm_a:
            self.cn_a.root()["a"].value = 2
        tid2 = self.cn_a.root()["a"]._p_serial
        self.storage_b.sync()
        data, start, end = self.storage_b.loadBefore(oid, tid2)
        self.assertEqual((start, end), (tid1, tid2))
        self.assertEqual(data, self._storage.loadSerial(oid, tid1))
        data2, start2, end2 = self.storage_b.loadBefore(oid, maxtid)
        self.assertEqual((start2, end2), (tid2, None))
        self.assertEqual(data2, self._storage.loadSerial(oid, tid2))
        self.assertNotEqual(data, data2)
