"""The conformance tier under pytest: each zope.testrunner suite runs in a subprocess
(runner.py), and passes when the runner exits 0 with no failure and no error, ran at least its
floor of tests and passed at least its floor, and skipped exactly the tests SKIPS.md counts
for it, reason by reason.

Each suite's ``Total: N tests, F failures, E errors and S skipped`` line is attached to its
report (``record_property("conformance", …)``), and tests/conftest.py prints those lines in
the terminal summary (reporting.py), so ``./scripts/test`` shows the counts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest

from tests.conformance import runner
from tests.conformance.reporting import PROPERTY
from tests.conformance.skips_doc import md_cell, measured_skips


@pytest.mark.parametrize("name", list(runner.SUITES))
def test_suite_passes(name: str, record_property: Callable[[str, object], None]) -> None:
    result = runner.run(runner.SUITES[name])
    record_property(PROPERTY, result.summary())
    print(result.summary())
    assert result.ok, result.problems_text()
    documented = measured_skips(runner.SKIPS_MD.read_text(), name)
    measured = Counter({md_cell(r): n for r, n in result.skip_reasons().items()})
    assert measured == documented, (
        f"skips differ from {runner.SKIPS_MD.name} (if that is intended, regenerate it:"
        f" python -m tests.conformance.runner --write-skips): now {measured - documented},"
        f" no longer {documented - measured}"
    )
