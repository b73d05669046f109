"""Run one zope.testrunner conformance suite in a subprocess and read its result.

Owns: the suite table (package, layer selection, floor on the tests run, timeout), the
subprocess (its own process group and temporary directory, killed whole on timeout, by
its id), and parsing zope.testrunner's output: the ``Total: N tests, F failures, E errors
and S skipped`` line (or the sum of the ``Ran …`` lines when one layer ran), the names of
the failed tests, and every skipped test with its reason (``-vvv`` prints them).
Must not import: ``relstorage_paxos`` (the subprocess does).
Called by: test_conformance.py (pytest), and ``python -m tests.conformance.runner [SUITE…]``
by hand, which prints each suite's counts and its skips.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parents[2]
SKIPS_MD: Final = Path(__file__).resolve().parent / "SKIPS.md"


@dataclass(frozen=True, slots=True)
class Suite:
    name: str
    package: str
    min_tests: int
    """Floors, a little under the measured counts: a suite that silently lost its tests
    (an import error, the check* loader finding nothing, a skip matching too much) fails."""
    min_passed: int
    timeout_s: float
    layer_args: tuple[str, ...] = ()
    skips_table: str = ""
    """The name of this suite's table in skips.py (for SKIPS.md)."""


SUITES: Final = {
    s.name: s
    for s in (
        # Measured: 450 tests, 25 skipped, ~50 s (RelStorage's SQLite suite with the 89
        # ZODB-6 aliases, 430 tests, plus 20 MVCC tests); the gevent layers are left out.
        Suite(
            "stock_sqlite",
            "tests.conformance.stock_sqlite",
            min_tests=440,
            min_passed=400,
            timeout_s=600,
            layer_args=("--layer", "!gevent"),
            skips_table="STOCK_SQLITE_SKIPS",
        ),
        # Measured: 448 tests, 24 skipped, ~200 s.
        Suite(
            "paxos_1node",
            "tests.conformance.paxos_1node",
            min_tests=440,
            min_passed=400,
            timeout_s=900,
            skips_table="PAXOS_SKIPS",
        ),
        # Measured: 184 tests, 7 skipped, ~200 s on a loaded machine.
        Suite(
            "paxos_3node",
            "tests.conformance.paxos_3node",
            min_tests=180,
            min_passed=160,
            timeout_s=600,
            skips_table="PAXOS_SKIPS",
        ),
    )
}

TOTAL_RE: Final = re.compile(
    r"^Total: (\d+) tests, (\d+) failures, (\d+) errors and (\d+) skipped in (.*?)\.$", re.M
)
RAN_RE: Final = re.compile(
    r"^  Ran (\d+) tests with (\d+) failures, (\d+) errors and (\d+) skipped in", re.M
)
PROBLEM_RE: Final = re.compile(r"^(Failure|Error) in test (\S+) \(([^)]*)\)", re.M)
SKIP_RE: Final = re.compile(
    r"^ (\S+) \(([^)\s]+)\) \(skipped(?:: (.*))?\)(?: \([\d.]+ s\))?$", re.M
)
IMPORT_ERROR_RE: Final = re.compile(r"^Test-module import failures:", re.M)


@dataclass
class Result:
    suite: Suite
    returncode: int
    output: str
    seconds: float
    tests: int = 0
    failures: int = 0
    errors: int = 0
    skipped: int = 0
    problems: list[str] = field(default_factory=list)
    skips: list[tuple[str, str]] = field(default_factory=list)
    """(test id, reason) of every skipped test."""
    timed_out: bool = False

    @property
    def passed(self) -> int:
        return self.tests - self.failures - self.errors - self.skipped

    def summary(self) -> str:
        """One line, in zope.testrunner's own words."""
        state = " TIMED OUT" if self.timed_out else ""
        return (
            f"conformance {self.suite.name}: Total: {self.tests} tests, {self.failures}"
            f" failures, {self.errors} errors and {self.skipped} skipped"
            f" ({self.seconds:.0f} s){state}"
        )

    def skip_reasons(self) -> Counter[str]:
        return Counter(normalize_reason(reason) for _, reason in self.skips)

    def problems_text(self) -> str:
        """What went wrong, for an assertion message: the verdict, the failed tests, and
        the tail of the output."""
        lines = [self.summary(), *self.problems]
        if self.returncode != 0:
            lines.append(f"the test runner exited with {self.returncode}")
        if self.tests < self.suite.min_tests:
            lines.append(f"only {self.tests} tests ran; the floor is {self.suite.min_tests}")
        if self.passed < self.suite.min_passed:
            lines.append(f"only {self.passed} tests passed; the floor is {self.suite.min_passed}")
        return "\n".join([*lines, "--- output tail:", self.output[-6000:]])

    @property
    def ok(self) -> bool:
        return (
            not self.timed_out
            and self.returncode == 0
            and self.failures == 0
            and self.errors == 0
            and not self.problems
            and self.tests >= self.suite.min_tests
            and self.passed >= self.suite.min_passed
        )


def normalize_reason(reason: str) -> str:
    """Skip reasons without object addresses (``<… object at 0x7f…>``), so runs compare."""
    return re.sub(r" at 0x[0-9a-fA-F]+", "", reason).strip()


def parse(suite: Suite, returncode: int, output: str, seconds: float) -> Result:
    result = Result(suite, returncode, output, seconds)
    total = TOTAL_RE.search(output)
    if total:
        counts = [int(g) for g in total.groups()[:4]]
    else:  # zope.testrunner prints Total only when more than one layer ran
        counts = [sum(int(m[i]) for m in RAN_RE.findall(output)) for i in range(4)]
    result.tests, result.failures, result.errors, result.skipped = counts
    result.problems = [
        f"{kind}: {test} ({where})" for kind, test, where in PROBLEM_RE.findall(output)
    ]
    if IMPORT_ERROR_RE.search(output):
        result.problems.append("test-module import failures (see the output)")
    result.skips = [
        (f"{where}", reason or "(no reason given)") for _, where, reason in SKIP_RE.findall(output)
    ]
    return result


def command(suite: Suite) -> list[str]:
    return [
        sys.executable,
        "-m",
        "zope.testrunner",
        f"--test-path={ROOT}",
        "-s",
        suite.package,
        *suite.layer_args,
        "-vvv",
        "--no-color",
    ]


def run(suite: Suite, log_dir: Path | None = None) -> Result:
    """Run ``suite`` in a subprocess of its own (own session, own TMPDIR), kill its group
    on timeout, and parse what it printed; the whole output goes to ``log_dir`` too."""
    work = Path(tempfile.mkdtemp(prefix=f"conf-{suite.name}-"))
    env = {
        **os.environ,
        "TMPDIR": str(work),
        "RS_PAXOS_CONFORMANCE_ROOT": str(Path(tempfile.mkdtemp(prefix="pxc", dir="/tmp"))),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "PYTHONUNBUFFERED": "1",
        "PYTHONFAULTHANDLER": "1",
        "GRPC_VERBOSITY": os.environ.get("GRPC_VERBOSITY", "ERROR"),
    }
    started = time.monotonic()
    timed_out = False
    proc = subprocess.Popen(
        command(suite),
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=suite.timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
        with_traceback = _dump_and_kill(proc)
        output = with_traceback
    seconds = time.monotonic() - started
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(env["RS_PAXOS_CONFORMANCE_ROOT"], ignore_errors=True)
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        (log_dir / f"{suite.name}.log").write_text(output)
    result = parse(suite, proc.returncode, output, seconds)
    result.timed_out = timed_out
    return result


def _dump_and_kill(proc: subprocess.Popen[str]) -> str:
    """SIGABRT first (faulthandler prints every thread's stack), then SIGKILL the group."""
    pgid = proc.pid  # start_new_session: the group id is the child's pid
    try:
        os.killpg(pgid, signal.SIGABRT)
        output, _ = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(pgid, signal.SIGKILL)
        output, _ = proc.communicate()
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("suites", nargs="*", help=f"any of {', '.join(SUITES)} (default: all)")
    parser.add_argument("--log-dir", type=Path, default=None, help="keep each suite's output")
    parser.add_argument(
        "--write-skips", action="store_true", help=f"rewrite {SKIPS_MD.name} from this run"
    )
    args = parser.parse_args(argv)
    names = args.suites or list(SUITES)
    unknown = set(names) - set(SUITES)
    if unknown:
        parser.error(f"unknown suites {sorted(unknown)}; known: {', '.join(SUITES)}")
    if args.write_skips and set(names) != set(SUITES):
        parser.error("--write-skips runs every suite: name none")
    results = {}
    for name in names:
        result = results[name] = run(SUITES[name], args.log_dir)
        print(result.summary(), flush=True)
        for reason, count in sorted(result.skip_reasons().items()):
            print(f"  skipped x{count}: {reason}")
        for problem in result.problems:
            print(f"  {problem}")
    if args.write_skips:
        from tests.conformance import skips_doc

        SKIPS_MD.write_text(skips_doc.render(results))
        print(f"wrote {SKIPS_MD}")
    return 0 if all(r.ok for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
