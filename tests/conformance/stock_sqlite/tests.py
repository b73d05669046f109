"""RelStorage 4.3's SQLite suite (``relstorage.adapters.sqlite.tests.test_sqlite``) with
the ZODB-6 ``check*`` aliases and this tier's skips (skips.STOCK_SQLITE_SKIPS, SKIPS.md),
plus the MVCC tests (mvcc.py), which are validated here against stock SQLite.

Run: ``python -m zope.testrunner --test-path=. -s tests.conformance.stock_sqlite
--layer '!gevent' -vvv`` from the repository root (test_conformance.py does, through
runner.py).
"""

from __future__ import annotations

import unittest

from relstorage.adapters.sqlite.tests.test_sqlite import (
    Sqlite3AdapterMixin,
    Sqlite3TestSuiteBuilder,
)

from tests.conformance.mvcc import HistoryFreeMVCCTests, HistoryPreservingMVCCTests
from tests.conformance.skips import STOCK_SQLITE_SKIPS, SkippingBuilderMixin, skip_in_suite
from tests.conformance.zodb6_aliases import add_zodb6_check_aliases


class Sqlite3HistoryFreeMVCCTests(Sqlite3AdapterMixin, HistoryFreeMVCCTests):
    pass


class Sqlite3HistoryPreservingMVCCTests(Sqlite3AdapterMixin, HistoryPreservingMVCCTests):
    pass


class StockSqlite3TestSuiteBuilder(SkippingBuilderMixin, Sqlite3TestSuiteBuilder):
    SKIPS = STOCK_SQLITE_SKIPS

    def __init__(self) -> None:
        super().__init__()
        self.extra_test_classes = (
            *self.extra_test_classes,
            Sqlite3HistoryFreeMVCCTests,
            Sqlite3HistoryPreservingMVCCTests,
        )


def test_suite() -> unittest.TestSuite:
    aliases = add_zodb6_check_aliases()
    print(f"ZODB-6 check* aliases added: {aliases}")
    suite = StockSqlite3TestSuiteBuilder().test_suite()
    skip_in_suite(suite, STOCK_SQLITE_SKIPS)
    return suite
