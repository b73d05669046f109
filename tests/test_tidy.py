"""Mechanical guards of the layering in DESIGN.md §2 and of banned calls (CONVENTIONS.md).

The core must stay a pure state machine (no clocks, threads, I/O or global randomness); the
replica must never read a clock (apply is a function of the log alone); only the CLI prints.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "relstorage_paxos"

CORE_BANNED_MODULES = {
    "time",
    "threading",
    "asyncio",
    "socket",
    "os",
    "grpc",
    "apsw",
    "relstorage",
    "ZODB",
    "subprocess",
    "selectors",
    "multiprocessing",
    "uuid",
    "secrets",
    "datetime",
}
SIBLINGS = {"log", "replica", "transport", "runtime", "adapter", "pb", "cli", "config"}
CLOCK_CALLS = {
    "time.time",
    "time.time_ns",
    "time.monotonic",
    "time.monotonic_ns",
    "time.perf_counter",
    "time.perf_counter_ns",
    "time.process_time",
    "time.localtime",
    "time.gmtime",
    "time.ctime",
    "uuid.uuid1",
    "uuid.uuid4",
    "datetime.datetime.now",
    "datetime.datetime.utcnow",
    "datetime.datetime.today",
    "datetime.date.today",
    "os.urandom",
    "os.getrandom",
}
"""Calls that read a clock or the machine's entropy, by their full dotted name."""
RANDOM_MODULE_FUNCS = {
    "random",
    "randint",
    "randrange",
    "choice",
    "shuffle",
    "sample",
    "uniform",
    "getrandbits",
    "randbytes",
    "seed",
    "choices",
    "gauss",
}


def python_files(folder: str) -> list[Path]:
    return sorted((PACKAGE / folder).rglob("*.py"))


def imported_modules(tree: ast.AST) -> list[str]:
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    return names


def called_names(tree: ast.AST) -> list[str]:
    """The full dotted name of every call, through import aliases (``import time as t``,
    ``from time import time_ns``, ``from datetime import datetime``)."""
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                aliases[alias.asname or alias.name.split(".")[0]] = (
                    alias.name if alias.asname else alias.name.split(".")[0]
                )
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    calls = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        parts: list[str] = []
        func: ast.expr = node.func
        while isinstance(func, ast.Attribute):
            parts.append(func.attr)
            func = func.value
        if isinstance(func, ast.Name):
            parts.append(aliases.get(func.id, func.id))
            calls.append(".".join(reversed(parts)))
    return calls


def clock_and_random_calls(tree: ast.AST) -> list[str]:
    return [
        name
        for name in called_names(tree)
        if name in CLOCK_CALLS
        or (name.startswith("random.") and name.removeprefix("random.") in RANDOM_MODULE_FUNCS)
    ]


def test_core_exists() -> None:
    assert python_files("core"), "relstorage_paxos/core is empty"


@pytest.mark.parametrize("path", python_files("core"), ids=lambda p: p.name)
def test_core_imports_nothing_with_effects(path: Path) -> None:
    tree = ast.parse(path.read_text(), str(path))
    for module in imported_modules(tree):
        top = module.split(".")[0]
        assert top not in CORE_BANNED_MODULES, f"{path.name} imports {module}"
        if top == "relstorage_paxos":
            parts = module.split(".")
            assert len(parts) > 1 and parts[1] == "core", f"{path.name} imports sibling {module}"


@pytest.mark.parametrize("path", python_files("core"), ids=lambda p: p.name)
def test_core_calls_no_clock_or_global_random(path: Path) -> None:
    tree = ast.parse(path.read_text(), str(path))
    assert not clock_and_random_calls(tree), (
        f"{path.name} calls {clock_and_random_calls(tree)}; take a clock or random.Random argument"
    )


@pytest.mark.parametrize("path", python_files("replica"), ids=lambda p: p.name)
def test_replica_reads_no_clock(path: Path) -> None:
    tree = ast.parse(path.read_text(), str(path))
    assert not clock_and_random_calls(tree), f"{path.name} calls {clock_and_random_calls(tree)}"


@pytest.mark.parametrize(
    "source",
    [
        "import time\ntime.monotonic()",
        "import time as t\nt.monotonic()",
        "from time import time_ns\ntime_ns()",
        "from time import perf_counter as clock\nclock()",
        "import datetime\ndatetime.datetime.now()",
        "from datetime import datetime\ndatetime.now()",
        "from datetime import date\ndate.today()",
        "import os\nos.urandom(8)",
        "import random\nrandom.random()",
        "from random import choice\nchoice([1])",
    ],
)
def test_the_clock_check_sees_every_spelling(source: str) -> None:
    assert clock_and_random_calls(ast.parse(source)), source


def test_the_clock_check_lets_a_seeded_random_and_other_calls_be() -> None:
    source = "import random\nrng = random.Random(1)\nrng.random()\nlen([])\nx.time()"
    assert clock_and_random_calls(ast.parse(source)) == []


def test_only_the_cli_prints() -> None:
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "cli.py" or "pb" in path.relative_to(PACKAGE).parts:
            continue
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id != "print", f"{path.relative_to(PACKAGE)} calls print()"


def test_generated_code_imported_only_by_transport() -> None:
    allowed = {"transport", "pb", "replica"}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).parts
        if len(parts) > 1 and parts[0] in allowed:
            continue
        for module in imported_modules(ast.parse(path.read_text(), str(path))):
            assert not module.startswith("relstorage_paxos.pb"), (
                f"{path.relative_to(PACKAGE)} imports generated code {module}"
            )
