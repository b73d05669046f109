"""RelStorage 4.3's generic adapter suite with the ZODB-6 ``check*`` aliases, plus the MVCC
tests (mvcc.py), on a fresh embedded 1-node cluster per test
(paxos_support.PaxosAdapterMixin), with this tier's skips (skips.PAXOS_SKIPS, SKIPS.md).

Run: ``python -m zope.testrunner --test-path=. -s tests.conformance.paxos_1node -vvv`` from
the repository root (test_conformance.py does, through runner.py).
"""

from __future__ import annotations

import unittest

from tests.conformance.mvcc import HistoryFreeMVCCTests, HistoryPreservingMVCCTests
from tests.conformance.paxos_support import PaxosAdapterMixin, PaxosTestSuiteBuilder
from tests.conformance.skips import PAXOS_SKIPS
from tests.conformance.zodb6_aliases import add_zodb6_check_aliases


class PaxosHistoryFreeMVCCTests(PaxosAdapterMixin, HistoryFreeMVCCTests):
    pass


class PaxosHistoryPreservingMVCCTests(PaxosAdapterMixin, HistoryPreservingMVCCTests):
    pass


def test_suite() -> unittest.TestSuite:
    aliases = add_zodb6_check_aliases()
    print(f"ZODB-6 check* aliases added: {aliases}")
    builder = PaxosTestSuiteBuilder(
        PAXOS_SKIPS,
        extra_test_classes=(PaxosHistoryFreeMVCCTests, PaxosHistoryPreservingMVCCTests),
    )
    return builder.test_suite()
