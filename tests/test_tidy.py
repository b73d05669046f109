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
    ("time", "time"),
    ("time", "monotonic"),
    ("time", "perf_counter"),
    ("time", "time_ns"),
    ("time", "monotonic_ns"),
    ("uuid", "uuid4"),
    ("uuid", "uuid1"),
    ("datetime", "now"),
    ("datetime", "utcnow"),
    ("os", "urandom"),
}
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


def attribute_calls(tree: ast.AST) -> list[tuple[str, str]]:
    calls = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            value = node.func.value
            if isinstance(value, ast.Name):
                calls.append((value.id, node.func.attr))
    return calls


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
    for owner, attr in attribute_calls(tree):
        assert (owner, attr) not in CLOCK_CALLS, f"{path.name} calls {owner}.{attr}"
        assert not (owner == "random" and attr in RANDOM_MODULE_FUNCS), (
            f"{path.name} calls module-level random.{attr}; take a random.Random argument"
        )
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "random":
            names = {alias.name for alias in node.names}
            assert names <= {"Random"}, f"{path.name} imports {names} from random"


@pytest.mark.parametrize("path", python_files("replica"), ids=lambda p: p.name)
def test_replica_reads_no_clock(path: Path) -> None:
    tree = ast.parse(path.read_text(), str(path))
    for owner, attr in attribute_calls(tree):
        assert (owner, attr) not in CLOCK_CALLS, f"{path.name} calls {owner}.{attr}"
        assert not (owner == "random" and attr in RANDOM_MODULE_FUNCS), path.name


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
