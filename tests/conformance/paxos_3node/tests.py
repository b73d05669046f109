"""The 3-node variant: a smaller set of classes on a fresh in-process 3-node cluster per
test (paxos_support.ThreeNodePaxosAdapterMixin): the test's storage is on a follower, and
every further storage of the test on the next node in turn.

- ZODB's mixin tests as RelStorage runs them (its ``HistoryFreeRelStorageTests`` and
  ``HistoryPreservingRelStorageTests`` through the ZODB-6 aliases), restricted to the
  methods ZODB's own mixins define: ``BasicStorage`` (with ``racetest.RaceTests``, whose
  external-invalidation race gets its second client on another node), ``Synchronization``,
  ``ConflictResolution``, ``MTStorage``, ``PersistentStorage``, ``ReadOnlyStorage`` and
  ``PackableStorage`` in both modes, plus ``TransactionalUndoStorage``,
  ``IteratorStorage``, ``RevisionStorage``, ``HistoryStorage`` and
  ``PackableUndoStorage`` history-preserving;
- RelStorage's concurrent-writer tests, both modes: its locking mixin
  (``relstorage.tests.locking.TestLocking``: readCurrent against write locks, on two or
  three storages) and ``checkCanVoteAndCommitWhileOtherStorageVotes``;
- the MVCC tests (mvcc.py): two storages, on two different nodes;
- ZODB's RecoveryStorage as RelStorage runs it (``copyTransactionsFrom`` and restore,
  to and from a FileStorage), both modes.

Run: ``python -m zope.testrunner --test-path=. -s tests.conformance.paxos_3node -vvv`` from
the repository root.
"""

from __future__ import annotations

import unittest

from relstorage.tests.hftestbase import (
    HistoryFreeFromFileStorage,
    HistoryFreeRelStorageTests,
    HistoryFreeToFileStorage,
)
from relstorage.tests.hptestbase import (
    HistoryPreservingFromFileStorage,
    HistoryPreservingRelStorageTests,
    HistoryPreservingToFileStorage,
)
from relstorage.tests.locking import TestLocking
from ZODB.tests import (
    BasicStorage,
    ConflictResolution,
    HistoryStorage,
    IteratorStorage,
    MTStorage,
    PackableStorage,
    PersistentStorage,
    ReadOnlyStorage,
    RevisionStorage,
    Synchronization,
    TransactionalUndoStorage,
    racetest,
)
from ZODB.tests.util import TestCase as ZODBTestCase

from tests.conformance.mvcc import HistoryFreeMVCCTests, HistoryPreservingMVCCTests
from tests.conformance.paxos_support import ThreeNodePaxosAdapterMixin
from tests.conformance.skips import PAXOS_SKIPS, skip_methods
from tests.conformance.zodb6_aliases import add_zodb6_check_aliases

ZODB_MIXINS = (
    BasicStorage.BasicStorage,
    racetest.RaceTests,
    Synchronization.SynchronizedStorage,
    ConflictResolution.ConflictResolvingStorage,
    MTStorage.MTStorage,
    PersistentStorage.PersistentStorage,
    ReadOnlyStorage.ReadOnlyStorage,
    PackableStorage.PackableStorage,
)
ZODB_HISTORY_MIXINS = (
    *ZODB_MIXINS,
    TransactionalUndoStorage.TransactionalUndoStorage,
    IteratorStorage.IteratorStorage,
    IteratorStorage.ExtendedIteratorStorage,
    RevisionStorage.RevisionStorage,
    HistoryStorage.HistoryStorage,
    PackableStorage.PackableUndoStorage,
)
BASE_DBNAME = "relstoragetest"
CONCURRENT_WRITER_CHECKS = frozenset(
    {n for n in vars(TestLocking) if n.startswith("check")}
    | {"checkCanVoteAndCommitWhileOtherStorageVotes"}
)


def zodb_mixin_checks(mixins: tuple[type, ...]) -> set[str]:
    """The check* names (aliases included) the ZODB mixin classes themselves define."""
    names: set[str] = set()
    for mixin in mixins:
        for cls in mixin.__mro__:
            if cls.__module__.startswith("ZODB.tests."):
                names |= {n for n in vars(cls) if n.startswith("check")}
    return names - {"checkResolve"}  # a helper with a parameter, called by the tests


def _make(name: str, bases: tuple[type, ...]) -> type:
    klass = type(name, (ThreeNodePaxosAdapterMixin, *bases), {"driver_name": "apsw"})
    klass.base_dbname = BASE_DBNAME
    klass.__module__ = __name__
    skip_methods(klass, PAXOS_SKIPS, ("check", "test"))
    return klass


def test_suite() -> unittest.TestSuite:
    aliases = add_zodb6_check_aliases()
    print(f"ZODB-6 check* aliases added: {aliases}")
    suite = unittest.TestSuite()
    for name, base, mixins in (
        ("Paxos3HistoryFreeZODBMixinTests", HistoryFreeRelStorageTests, ZODB_MIXINS),
        (
            "Paxos3HistoryPreservingZODBMixinTests",
            HistoryPreservingRelStorageTests,
            ZODB_HISTORY_MIXINS,
        ),
    ):
        zodb = _make(name, (base, ZODBTestCase))
        checks = (zodb_mixin_checks(mixins) | CONCURRENT_WRITER_CHECKS) & set(dir(zodb))
        suite.addTests(zodb(check) for check in sorted(checks))
    loader = unittest.TestLoader()
    for base in (HistoryFreeMVCCTests, HistoryPreservingMVCCTests):
        suite.addTests(loader.loadTestsFromTestCase(_make("Paxos3" + base.__name__, (base,))))
    check_loader = unittest.TestLoader()
    check_loader.testMethodPrefix = "check"
    for recovery in (
        HistoryFreeToFileStorage,
        HistoryFreeFromFileStorage,
        HistoryPreservingToFileStorage,
        HistoryPreservingFromFileStorage,
    ):
        klass = _make("Paxos3" + recovery.__name__, (recovery,))
        suite.addTests(check_loader.loadTestsFromTestCase(klass))
    return suite
