"""``scripts/bench/suite.py --quick`` runs end to end: every workload on every system it
names, the Markdown tables and the plots written, nothing left running. No assertion on
any time: this only keeps the benchmark working."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUITE = ROOT / "scripts" / "bench" / "suite.py"

EXPECTED = {
    "a_commit_latency": {
        "paxos-leader",
        "paxos-follower",
        "embedded",
        "rs-sqlite",
        "filestorage",
        "zeo",
    },
    "b_throughput": {"paxos-3node", "embedded", "rs-sqlite", "filestorage", "zeo"},
    "c_bank": {"paxos-3node", "embedded", "rs-sqlite", "filestorage", "zeo"},
    "d_shootout": {
        "paxos-leader",
        "paxos-follower",
        "embedded",
        "rs-sqlite",
        "filestorage",
        "zeo",
    },
    "e_uncached_load": {"paxos-leader", "paxos-follower", "rs-sqlite", "zeo"},
    "f_read_only_txn": {
        "paxos-leader (linearizable)",
        "paxos-follower (linearizable)",
        "paxos-leader (session)",
        "paxos-follower (session)",
        "embedded (linearizable)",
        "rs-sqlite",
        "filestorage",
    },
    "g_wsgi_request": {
        "paxos-leader",
        "paxos-follower",
        "embedded",
        "rs-sqlite",
        "filestorage",
        "zeo",
    },
    "h_failover": {"paxos-3node"},
    "i_lease_holder_death": {"paxos-3node"},
    "j_lock_holder_death": {"leader killed", "follower killed"},
}
PLOTS = [
    "a_commit_latency_cdf.png",
    "b_throughput.png",
    "e_uncached_load_cdf.png",
    "f_read_only_txn_cdf.png",
]


def test_quick_suite_writes_every_workload_table_and_plot(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run = subprocess.run(
        [sys.executable, str(SUITE), "--quick", "--out", str(out)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-6000:]
    results = json.loads((out / "results.json").read_text())
    assert set(results["workloads"]) == set(EXPECTED)
    for key, systems in EXPECTED.items():
        assert set(results["workloads"][key]["systems"]) == systems, key
    for name in ("rs-sqlite", "zeo", "filestorage"):
        assert set(results["workloads"]["b_throughput"]["systems"][name]["disjoint"]) == {
            "1",
            "4",
            "8",
        }
    assert all(s["total_ok"] for s in results["workloads"]["c_bank"]["systems"].values())
    markdown = (out / "results.md").read_text()
    for workload in results["workloads"].values():
        assert f"### {workload['title']}" in markdown
    assert "p50 ÷ rs-sqlite" in markdown and "commits/s ÷ zeo" in markdown
    assert markdown.strip() in run.stdout
    for png in PLOTS:
        assert (out / png).stat().st_size > 1000, png
    assert not Path(results["meta"]["lab"]["root"]).exists(), "the suite's temp dir is left"
