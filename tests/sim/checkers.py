"""Invariants checked on every simulated run: agreement, validity, durability of acknowledged
values, linearizable ReadIndex answers, and (at the end) convergence of every replica."""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING, NoReturn, Protocol

from relstorage_paxos.core import SlotValue, Value

if TYPE_CHECKING:
    from tests.sim.cluster import Simulation


class _Reproducible(Protocol):
    def reproducer(self) -> str: ...


class SimulationFailure(Exception):
    """An invariant broke; the message ends with the one-line reproducer."""


class Checker:
    def __init__(self, config: _Reproducible) -> None:
        self.config = config
        self.chosen: dict[int, Value] = {}
        self.proposed: dict[bytes, bytes] = {}
        self.acked: dict[bytes, int] = {}
        self._ack_times: list[int] = []
        self._ack_max_slot: list[int] = []
        self.reads_checked = 0

    def fail(self, message: str) -> NoReturn:
        raise SimulationFailure(f"{message}\n  reproduce: {self.config.reproducer()}")

    def on_proposed(self, request_id: bytes, payload: bytes) -> None:
        self.proposed[request_id] = payload

    def on_chosen(self, node_id: int, sv: SlotValue) -> None:
        """(1) agreement: one value per slot across all nodes and all time; (2) validity:
        every chosen proposal was proposed, with that payload."""
        known = self.chosen.setdefault(sv.slot, sv.value)
        if known != sv.value:
            self.fail(
                f"agreement: node {node_id} applied {sv.value!r} at slot {sv.slot}, "
                f"another node {known!r}"
            )
        for p in sv.value:
            if self.proposed.get(p.request_id) != p.payload:
                self.fail(f"validity: slot {sv.slot} holds {p!r}, never proposed")

    def on_snapshot(self, node_id: int, peer_id: int, slot: int, digest: bytes) -> None:
        if slot not in self.chosen:
            self.fail(
                f"snapshot: node {node_id} installed slot {slot} from {peer_id}, "
                "which no node applied"
            )

    def on_acked(self, request_id: bytes, slot: int, now_us: int) -> None:
        """(3) durability starts here: an acknowledged request is in the chosen slot it was
        acknowledged at; check_final shows it is still there on every node."""
        value = self.chosen.get(slot, ())
        if request_id not in {p.request_id for p in value}:
            self.fail(f"durability: {request_id!r} acknowledged at slot {slot}, not chosen there")
        self.acked[request_id] = slot
        self._ack_times.append(now_us)
        best = max(slot, self._ack_max_slot[-1] if self._ack_max_slot else 0)
        self._ack_max_slot.append(best)

    def on_read(self, request_id: bytes, started_us: int, slot: int, applied: int) -> None:
        """A ReadIndex answer must cover every write acknowledged before the read began."""
        i = bisect.bisect_left(self._ack_times, started_us)
        must_cover = self._ack_max_slot[i - 1] if i else 0
        if slot < must_cover or applied < slot:
            self.fail(
                f"linearizable read: {request_id!r} started at {started_us}us got slot "
                f"{slot} (applied {applied}), but slot {must_cover} was acknowledged before"
            )
        self.reads_checked += 1

    def check_final(self, sim: Simulation) -> None:
        """(3) every acknowledged request is still applied where it was acknowledged, on
        every node; (4) every replica converged (same applied slot, same running hash)."""
        states = {(n.sm.applied, n.sm.hash) for n in sim.nodes.values()}
        if len(states) != 1:
            self.fail(f"convergence: replicas differ: {sorted(states)}")
        for node in sim.nodes.values():
            for request_id, slot in self.acked.items():
                if node.sm.first_slot.get(request_id) != slot:
                    self.fail(
                        f"durability at the end: node {node.id} has {request_id!r} at "
                        f"{node.sm.first_slot.get(request_id)}, acknowledged at {slot}"
                    )
