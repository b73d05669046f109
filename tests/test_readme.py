"""Every command README.md shows, run as it is written (addresses and paths swapped for
loopback ports and a temporary directory): init and serve three nodes, status, the ZConfig
section and the zodburi URI, the simulator command. The two scripts have tests of their own
(tests/test_demo.py; ./scripts/test is this run)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import transaction
import ZODB.config
import zodburi

from tests.integration.processes import NodeProcess, free_ports, wait_for

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def fenced_blocks() -> list[str]:
    return re.findall(r"```\n(.*?)```", README, re.S)


def block_with(text: str) -> str:
    (block,) = [b for b in fenced_blocks() if text in b]
    return block


def test_readme_cluster_commands_work(tmp_path: Path) -> None:
    commands = block_with("relstorage-paxos init").replace("\\\n", " ").splitlines()
    init, serve = (shlex.split(c) for c in commands if c.strip())
    assert init[:2] == ["relstorage-paxos", "init"] and serve[:2] == ["relstorage-paxos", "serve"]
    ports = free_ports(3)

    def localize(args: list[str], node: int) -> list[str]:
        text = " ".join(args).replace("/var/lib/zodb/node1", str(tmp_path / f"node{node}"))
        text = text.replace("--node-id 1", f"--node-id {node}")
        for i, port in enumerate(ports, start=1):
            text = text.replace(f"node{i}.example:7101", f"127.0.0.1:{port}")
        return [sys.executable, "-m", "relstorage_paxos.cli", *text.split()[1:]]

    nodes = []
    for node_id in (1, 2, 3):
        subprocess.run(localize(init, node_id), check=True, capture_output=True)
        node = NodeProcess(
            node_id, tmp_path / f"node{node_id}", f"127.0.0.1:{ports[node_id - 1]}", "prod"
        )
        node.start()
        nodes.append(node)
    try:
        for node in nodes:  # `status` below fails unless every node answers
            wait_for(f"node {node.node_id}", node.status, 60)
        wait_for("a leader", lambda: any(n.status().role == "leader" for n in nodes), 60)
        status = subprocess.run(
            localize(shlex.split("relstorage-paxos status --data-dir /var/lib/zodb/node1"), 1),
            capture_output=True,
            text=True,
            check=False,
        )
        assert status.returncode == 0, status.stdout + status.stderr
        zconfig = block_with("%import relstorage_paxos").replace(
            "/var/lib/zodb/node1", str(tmp_path / "node1")
        )
        db = ZODB.config.databaseFromString(zconfig)
        with db.transaction() as conn:
            conn.root()["readme"] = "works"
        db.close()
        (uri,) = re.findall(r"`(paxos://[^`]+)`", README)
        factory, dbkw = zodburi.resolve_uri(
            uri.replace("/var/lib/zodb/node1", str(tmp_path / "node1"))
        )
        db = ZODB.DB(factory(), **dbkw)
        conn = db.open()
        assert conn.root()["readme"] == "works"
        conn.close()
        db.close()
        transaction.abort()
    finally:
        codes = [n.stop() for n in nodes]
    assert codes == [0, 0, 0]


def test_readme_simulator_command_works() -> None:
    (command,) = re.findall(r"`\.venv/bin/python (scripts/sim\.py [^`]+)`", README)
    args = shlex.split(command)
    args[args.index("--seeds") + 1] = "3"  # the README asks for 10,000; three show it runs
    result = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 seeds x 3 nodes passed" in result.stdout
