"""The conformance tier under pytest: each zope.testrunner suite runs in a subprocess
(runner.py), and passes when it has no failure and no error, ran at least its floor of tests
and passed at least its floor, and reported no skip reason SKIPS.md does not list.

Each suite's ``Total: N tests, F failures, E errors and S skipped`` line is attached to its
report (``record_property("conformance", …)``), and tests/conftest.py prints those lines in
the terminal summary (reporting.py), so ``./scripts/test`` shows the counts.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.conformance import runner
from tests.conformance.reporting import PROPERTY
from tests.conformance.skips_doc import md_cell


@pytest.mark.parametrize("name", list(runner.SUITES))
def test_suite_passes(name: str, record_property: Callable[[str, object], None]) -> None:
    result = runner.run(runner.SUITES[name])
    record_property(PROPERTY, result.summary())
    print(result.summary())
    assert result.ok, result.problems_text()
    documented = runner.SKIPS_MD.read_text()
    missing = sorted(r for r in result.skip_reasons() if md_cell(r) not in documented)
    assert not missing, (
        f"skip reasons not in {runner.SKIPS_MD.name} (regenerate it:"
        f" python -m tests.conformance.runner --write-skips): {missing}"
    )
