"""A node's Prometheus metrics, in a registry of its own (several nodes may share a process
in tests and in the embedded mode, so nothing goes into prometheus_client's global one).

Owns: metric names and their meaning. Updated by the runtime's loop thread (the rejection
counters by the gRPC handlers' threads); read by the HTTP status endpoint's threads
(prometheus_client's metrics are thread-safe).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class NodeMetrics:
    def __init__(self, node_id: int) -> None:
        self.registry = CollectorRegistry()
        labels = {"node": str(node_id)}

        def counter(name: str, doc: str) -> Counter:
            return Counter(name, doc, labels, registry=self.registry).labels(**labels)

        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, labels, registry=self.registry).labels(**labels)

        self.proposals = counter(
            "relstorage_paxos_proposals", "Records proposed at this node (retries not counted)."
        )
        self.slots_applied = counter(
            "relstorage_paxos_slots_applied", "Chosen log slots applied to this replica."
        )
        self.records_applied = counter(
            "relstorage_paxos_records_applied", "Records applied (a slot holds a batch)."
        )
        self.conflicts = counter(
            "relstorage_paxos_conflicts", "Commits refused at apply because of a conflict."
        )
        self.lease_reads = counter(
            "relstorage_paxos_lease_reads",
            "Read barriers this node answered from its read lease, without a ReadIndex round.",
        )
        self.leader_changes = counter(
            "relstorage_paxos_leader_changes", "Times this node saw the leader change."
        )
        self.snapshots_installed = counter(
            "relstorage_paxos_snapshots_installed", "Replica snapshots installed from peers."
        )
        self.apply_seconds = Histogram(
            "relstorage_paxos_apply_seconds",
            "Time to apply one chosen slot to the replica.",
            labels,
            registry=self.registry,
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0),
        ).labels(**labels)
        self.chosen_slot = gauge("relstorage_paxos_chosen_slot", "Highest slot known chosen.")
        self.applied_slot = gauge("relstorage_paxos_applied_slot", "Last slot applied here.")
        self.lag_slots = gauge(
            "relstorage_paxos_lag_slots", "Slots known chosen but not yet applied here."
        )
        self.is_leader = gauge("relstorage_paxos_is_leader", "1 while this node leads.")
        self._rejected_messages = Counter(
            "relstorage_paxos_rejected_messages",
            "Peer streams refused for a bad message, by the error's class (one per stream: "
            "the first bad message ends it).",
            [*labels, "reason"],
            registry=self.registry,
        )
        self._rejected_requests = Counter(
            "relstorage_paxos_rejected_requests",
            "Sequencer requests refused as invalid, by the gRPC status they were answered with.",
            [*labels, "reason"],
            registry=self.registry,
        )
        self._node = labels["node"]

    def reject_message(self, reason: str) -> None:
        self._rejected_messages.labels(node=self._node, reason=reason).inc()

    def reject_request(self, reason: str) -> None:
        self._rejected_requests.labels(node=self._node, reason=reason).inc()
