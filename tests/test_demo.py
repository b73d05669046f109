"""``./scripts/demo`` end to end, as a user runs it: a short bank workload on 3 real nodes
(and on 5), with the leader killed -9 and restarted; it must exit 0 and say in its final
report that the replicas are identical and the invariant held on every node. It must refuse
a directory it did not make, and leave no process and no file outside its directory."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "scripts" / "demo"


def run_demo(*args: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(DEMO), *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def processes_mentioning(path: Path) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(path) in text:
            found.append(f"{cmdline.parent.name}: {text}")
    return found


@pytest.mark.parametrize(("nodes", "seconds"), [(3, 6), (5, 4)])
def test_the_demo_passes_with_a_leader_killed_and_restarted(
    tmp_path: Path, nodes: int, seconds: int
) -> None:
    demo_dir = tmp_path / "demo"
    result = run_demo(
        "--dir", str(demo_dir), "--nodes", str(nodes), "--seconds", str(seconds), timeout_s=120
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "RESULT: PASS" in out
    assert re.search(r"^kill -9: +node \d \(leader\) at t=", out, re.M), out
    assert re.search(r"^restart: .*its app committing again after \d+\.\d+ s$", out, re.M), out
    assert "replicas:   identical (same applied slot, same running hash on every node)" in out
    hashes = re.findall(
        r"^  node (\d): applied slot (\d+), last tid \w+, running hash (\w+)$", out, re.M
    )
    assert sorted(int(n) for n, _, _ in hashes) == list(range(1, nodes + 1)), out
    assert len({(slot, h) for _, slot, h in hashes}) == 1, out
    invariant = re.findall(r"^invariant:  node (\d): total 200000 OK \(ledgers: (\d+)", out, re.M)
    assert [int(n) for n, _ in invariant] == list(range(1, nodes + 1)), out
    committed = int(re.search(r"^transfers:  (\d+) committed", out, re.M).group(1))  # type: ignore[union-attr]
    assert committed > 0
    assert re.search(r"^reads: +\d+ read transactions .* 0 saw a wrong total", out, re.M), out
    # Nothing left running, nothing written beside the demo directory.
    assert processes_mentioning(demo_dir) == []
    assert [p.name for p in tmp_path.iterdir()] == ["demo"]
    assert not (demo_dir / "demo.json").exists()


def test_the_demo_refuses_a_directory_it_did_not_make(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    result = run_demo("--dir", str(tmp_path), "--seconds", "1", timeout_s=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "was not made by this demo" in result.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["precious.txt"]
