"""The read-only HTTP endpoint: /status as JSON, /metrics in Prometheus text, 404 otherwise."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from relstorage_paxos.http_status import StatusHttpServer
from relstorage_paxos.runtime.metrics import NodeMetrics


def test_status_and_metrics_over_http() -> None:
    metrics = NodeMetrics(node_id=7)
    metrics.slots_applied.inc(3)
    metrics.is_leader.set(1)
    server = StatusHttpServer(
        "127.0.0.1:0", lambda: {"node_id": 7, "role": "leader"}, metrics.registry
    )
    server.start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        with urllib.request.urlopen(f"{base}/status", timeout=5) as reply:
            assert reply.headers["Content-Type"] == "application/json"
            assert json.load(reply) == {"node_id": 7, "role": "leader"}
        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as reply:
            text = reply.read().decode()
        assert 'relstorage_paxos_slots_applied_total{node="7"} 3.0' in text
        assert 'relstorage_paxos_is_leader{node="7"} 1.0' in text
        with pytest.raises(urllib.error.HTTPError) as raised:
            urllib.request.urlopen(f"{base}/nothing", timeout=5)
        assert raised.value.code == 404
    finally:
        server.stop()
