"""The committed generated protobuf code is exactly what ``scripts/gen_protos.py`` makes from
``proto/`` (CONVENTIONS.md: generated code is produced only by the script and verified).

On failure, regenerate with ``.venv/bin/python scripts/gen_protos.py`` and commit the result
together with the ``.proto`` change.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "relstorage_paxos"
GENERATED_PATTERNS = ("*_pb2.py", "*_pb2.pyi", "*_pb2_grpc.py")


def _generated_files(package: Path) -> dict[str, Path]:
    """Generated files under ``package``, by path relative to the package root."""
    return {
        str(path.relative_to(package.parent)): path
        for pattern in GENERATED_PATTERNS
        for path in package.rglob(pattern)
    }


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("gen_protos")
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return _generated_files(out / "relstorage_paxos")


def test_every_proto_has_committed_generated_code(regenerated: dict[str, Path]) -> None:
    missing = sorted(set(regenerated) - set(_generated_files(PACKAGE)))
    assert not missing, f"generated from proto/ but not committed: {missing}"


def test_every_committed_generated_file_has_a_proto(regenerated: dict[str, Path]) -> None:
    orphans = sorted(set(_generated_files(PACKAGE)) - set(regenerated))
    assert not orphans, f"committed generated files with no .proto under proto/: {orphans}"


def test_committed_generated_code_is_fresh(regenerated: dict[str, Path]) -> None:
    committed = _generated_files(PACKAGE)
    stale = sorted(
        name
        for name, path in regenerated.items()
        if name in committed and committed[name].read_bytes() != path.read_bytes()
    )
    assert not stale, f"generated files that differ from what proto/ now gives: {stale}"
