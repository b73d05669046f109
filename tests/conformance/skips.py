"""The conformance tier's own skips: one table per suite, applied at class creation through
the suite builders' ``_make_check_class_*``/``_make_test_class_*`` hooks and, for the blob
suites RelStorage builds without hooks (``storage_reusable_suite``), by a walk over the
built suite. ``SKIPS.md`` is rendered from the same tables (``python -m
tests.conformance.skips --write``; tests/conformance/test_skips_doc.py keeps it current).

Must not import: ``relstorage_paxos`` (the stock anchor uses this module too).
Called by: the suites' ``test_suite()`` in a zope.testrunner process, single-threaded.
"""

from __future__ import annotations

import os
import unittest
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

RUNNING_AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0

ROOT_REASON = (
    "running as root: the test expects open(committed_blob, 'w') to raise PermissionError,"
    " which root's file access never does"
)
UNDO_MULTI_CR_REASON = (
    "conflict-resolving undo is not supported by RelStorage (its HP class skips"
    " checkUndoMultipleConflictResolution; ZODB 6's Reversed variant calls the ZODB test"
    " directly and bypasses that skip)"
)


@dataclass(frozen=True, slots=True)
class Skip:
    """Skip the test methods matching ``method`` (an ``fnmatch`` pattern) in every
    generated class with a class matching one of ``classes`` in its MRO (any class when
    empty), if ``when`` holds."""

    method: str
    reason: str
    classes: tuple[str, ...] = ()
    when: bool = True
    condition: str = ""
    """Human-readable ``when``, for SKIPS.md (empty: always)."""
    kind: str = "suite"
    """Why, in one word, for SKIPS.md: ``environment`` (how the tests run), ``suite`` (the
    test itself cannot pass anywhere), ``unsupported`` (a feature the adapter refuses, by
    design or not yet), ``adapter-bug`` (the adapter should pass it: fix, then drop the
    skip)."""

    def matches(self, cls: type, method: str) -> bool:
        if not self.when or not fnmatchcase(method, self.method):
            return False
        if not self.classes:
            return True
        return any(fnmatchcase(k.__name__, c) for k in cls.__mro__ for c in self.classes)


STOCK_SQLITE_SKIPS: tuple[Skip, ...] = (
    Skip(
        "test_committed_cannot_open_for_write",
        ROOT_REASON,
        ("TestBlobTransaction",),
        when=RUNNING_AS_ROOT,
        condition="euid == 0",
        kind="environment",
    ),
    Skip(
        "checkUndoMultipleConflictResolutionReversed",
        UNDO_MULTI_CR_REASON,
        ("HistoryPreservingRelStorageTests",),
    ),
)


def _skipping(reason: str) -> Callable[..., None]:
    @unittest.skip(reason)
    def skipped(*_args: Any) -> None:
        raise AssertionError("unreachable: skipped")

    return skipped


def skip_methods(klass: type, skips: Iterable[Skip], prefixes: tuple[str, ...]) -> list[str]:
    """Replace the matching test methods (names starting with one of ``prefixes``) of
    ``klass`` by skipping ones; return their names."""
    done = []
    names = [n for n in dir(klass) if n.startswith(prefixes) and callable(getattr(klass, n))]
    for name in names:
        for skip in skips:
            if skip.matches(klass, name):
                setattr(klass, name, _skipping(skip.reason))
                done.append(name)
                break
    return done


def iter_tests(suite: unittest.TestSuite) -> Iterator[unittest.TestCase]:
    for test in suite:
        if isinstance(test, unittest.TestSuite):
            yield from iter_tests(test)
        else:
            assert isinstance(test, unittest.TestCase), test
            yield test


def skip_in_suite(suite: unittest.TestSuite, skips: Iterable[Skip]) -> int:
    """Skip the matching tests of an already built suite (for suites built without
    hooks): the method is replaced on the test instance, which ``unittest`` honours."""
    count = 0
    skips = tuple(skips)
    for test in iter_tests(suite):
        name = test._testMethodName
        for skip in skips:
            if getattr(getattr(test, name), "__unittest_skip__", False):
                break
            if skip.matches(type(test), name):
                setattr(test, name, _skipping(skip.reason))
                count += 1
                break
    return count


class SkippingBuilderMixin:
    """Applies ``SKIPS`` to every class RelStorage's ``AbstractTestSuiteBuilder`` makes
    through its class hooks: it looks up ``_make_check_class_<Base>`` and
    ``_make_test_class_<Base>`` by name and falls back to the ``_default_make_*_class``
    overridden here (which builder-specific hooks call too). Classes made without hooks
    (zodbconvert, extra classes, blob suites) get theirs from ``skip_in_suite``."""

    SKIPS: tuple[Skip, ...] = ()

    def _default_make_check_class(
        self, bases: tuple[type, ...], name: str, klass_dict: Any = None
    ) -> type:
        klass: type = super()._default_make_check_class(  # type: ignore[misc]
            bases, name, klass_dict
        )
        skip_methods(klass, self.SKIPS, ("check", "test"))
        return klass

    _default_make_test_class = _default_make_check_class


ZAP_REASON = (
    "needs zap_all of a non-empty database (it simulates failover to a stale replica by"
    " zapping and restoring older transactions): a replicated database cannot be zapped,"
    " and its tids never go back"
)

NO_DEADLOCK_REASON = (
    "expects a lock deadlock to be detected and reported (UnableToLockRowsDeadlockError)"
    " after taking a transaction's exclusive and shared locks in two steps: a paxos lock"
    " request is granted all or nothing, in log order, so it cannot deadlock; the"
    " conflicting readCurrent fails at once with UnableToLockRowsToReadCurrentError"
    " instead (tests/adapter/test_vote.py)"
)

PAXOS_SKIPS: tuple[Skip, ...] = (
    *STOCK_SQLITE_SKIPS,
    # -- refused by the adapter, by design or not yet -------------------------------------
    Skip("checkBackwardTimeTravelWith*RevertWhenStale", ZAP_REASON, kind="unsupported"),
    # -- expectations this design cannot meet ------------------------------------------------
    Skip("checkTL_InterleavedConflictingReadCurrentDeadlock", NO_DEADLOCK_REASON),
    Skip("checkTL_manualInterleavedConflictingReadCurrentDeadlock", NO_DEADLOCK_REASON),
)
