"""pytest hooks that print the conformance suites' counts in the terminal summary.

A test's stdout is captured (and with ``-n 2`` it runs in a worker process), so each suite's
``Total: …`` line travels as a user property on its report (``record_property``), which
pytest-xdist carries to the controller; ``pytest_terminal_summary`` prints them there.
tests/conftest.py imports these two hooks (a conftest below ``tests/`` would not be loaded
by the controller, which collects nothing itself).
Called by: pytest, in the controller process.
"""

from __future__ import annotations

from typing import Any, Final

PROPERTY: Final = "conformance"

_lines: list[str] = []


def pytest_runtest_logreport(report: Any) -> None:
    if report.when != "call":
        return
    for key, value in getattr(report, "user_properties", ()):
        if key == PROPERTY:
            _lines.append(f"{value}  [{report.outcome}]")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _lines:
        return
    terminalreporter.section("conformance (zope.testrunner)")
    for line in sorted(_lines):
        terminalreporter.write_line(line)
