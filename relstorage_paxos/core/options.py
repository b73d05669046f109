"""Tunables of the core, in ticks, slots and bytes (``config.py`` converts seconds to ticks)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class NodeOptions:
    node_id: int
    members: frozenset[int]
    election_timeout_ticks: int = 10
    """A follower that hears no leader for this many ticks (plus up to as many again of
    jitter) starts an election; a leader that hears no majority for as long steps down."""
    heartbeat_interval_ticks: int = 2
    node_timeout_ticks: int = 10
    """A leader reports a peer it has not heard from for this many ticks in
    ``silent_peers`` (a peer it followed as leader before: for half as many after winning,
    since it was silent for an election timeout already)."""
    pipeline_window_slots: int = 64
    """Slots a leader keeps in phase 2 at once."""
    batch_bytes_max: int = 1 << 20
    """Proposals are packed into one slot up to this many bytes (``value_size``); a larger
    proposal gets a slot of its own."""
    message_bytes_max: int = 4 << 20
    """Log entries one message (Accept, Promise, CatchUpReply, Forward) carries at most, in
    ``entry_size`` bytes, so that messages stay within the transport's limit; an entry larger
    than this travels alone."""
    record_bytes_max: int = 64 << 20
    """The largest payload ``propose`` takes; larger ones raise ``ProposalTooLarge``."""
    catchup_slots_max: int = 256
    """Chosen slots per catch-up reply (fewer when they hold over ``message_bytes_max``)."""
    pending_proposals_max: int = 100_000
    """Proposals a node holds while it knows no leader; older ones are dropped first (clients
    retry those whose fate they do not learn)."""
    read_lease_us: int = 0
    """Read leases (``core/lease.py``): how long one grant lets a node serve linearizable
    reads from its own replica, by its clock; 0 turns them off (every read is a ReadIndex
    round, and a commit is finished once chosen)."""
    clock_drift_ppm: int = 1000
    """The most any node's monotonic clock may run fast or slow, in parts per million."""
    lease_margin_us: int = 5_000
    tick_us: int = 50_000
    """The runtime's tick length: leases are measured in time and in ticks (see lease.py)."""

    def __post_init__(self) -> None:
        assert self.node_id in self.members, (self.node_id, sorted(self.members))
        assert self.election_timeout_ticks > self.heartbeat_interval_ticks >= 1, (
            self.election_timeout_ticks,
            self.heartbeat_interval_ticks,
        )
        assert self.node_timeout_ticks >= 2 * self.heartbeat_interval_ticks, (
            self.node_timeout_ticks,
            self.heartbeat_interval_ticks,
        )
        assert self.pipeline_window_slots >= 1, self.pipeline_window_slots
        assert self.batch_bytes_max >= 1, self.batch_bytes_max
        assert self.message_bytes_max >= 1, self.message_bytes_max
        assert self.record_bytes_max >= 1, self.record_bytes_max
        assert self.catchup_slots_max >= 1, self.catchup_slots_max
        assert self.read_lease_us >= 0, self.read_lease_us
