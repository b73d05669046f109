"""Read leases: the arithmetic of the clock assumptions, in one place.

Owns: how long a holder may trust a lease by its own clock, how long a grantor must honour
it by its own, and how long a leader's heartbeat quorum keeps any other node from leading.
Must not import: anything with I/O, clocks, threads or global randomness (tests/test_tidy.py).
Called by: ``Node`` (pure arithmetic; no state).

The assumptions (the README's consistency section states them for operators):
- every node reads a monotonic clock whose rate differs from real time by at most
  ``drift_ppm`` parts per million (NTP slews CLOCK_MONOTONIC by at most 500 ppm);
- a node's ticks never come faster than its clock says (the runtime ticks from that clock);
  they may come slower (a busy loop or a pause skips ticks), which only makes waits longer.

A holder's lease starts when the holder *sent* the heartbeat reply the grant answers, and it
trusts the lease for ``duration_us`` by its own clock. The grantor registered that reply when
it arrived, later in real time, so it honours the lease for ``grantor_us`` after arrival:
long enough that no drift within the bound makes the holder's end fall after the grantor's.
"""

from __future__ import annotations

from dataclasses import dataclass

PPM = 1_000_000


@dataclass(frozen=True, slots=True)
class LeaseTimes:
    duration_us: int
    """How long a holder serves reads from one grant, by its own clock."""
    drift_ppm: int
    margin_us: int
    """Added to every grantor-side wait, for what the drift bound does not cover (the
    rounding of times to microseconds, a clock read a little before the event it stamps)."""
    tick_us: int
    """The runtime's tick: the grantor also counts ticks, so that a clock that jumps forward
    cannot end its wait early (a jump of the clock brings one tick, not many)."""

    def __post_init__(self) -> None:
        assert self.duration_us > 0, self.duration_us
        assert 0 <= self.drift_ppm < PPM // 10, self.drift_ppm
        assert self.margin_us >= 0, self.margin_us
        assert self.tick_us > 0, self.tick_us

    @property
    def grantor_us(self) -> int:
        """The real time a holder's ``duration_us`` can last at most, measured by a clock
        that may run slow: duration · (1 + rho) / (1 - rho), plus the margin."""
        span = self.duration_us * (PPM + self.drift_ppm)
        return -(-span // (PPM - self.drift_ppm)) + self.margin_us

    @property
    def grantor_ticks(self) -> int:
        """Ticks that must pass as well as ``grantor_us`` (one more for the partial tick)."""
        return -(-self.grantor_us // self.tick_us) + 1

    def leader_lease_us(self, election_timeout_ticks: int) -> int:
        """How long after sending a heartbeat that a majority answered a leader knows that
        no other node can lead: each of them refuses to promise another ballot until it has
        counted ``election_timeout_ticks`` ticks without hearing a leader, which takes at
        least ``election_timeout_ticks - 1`` tick lengths by its clock. Measured by ours, at
        most that, shrunk by the drift bound on both clocks, less the margin."""
        real_us = (election_timeout_ticks - 1) * self.tick_us * (PPM - self.drift_ppm) // PPM
        return real_us * (PPM - self.drift_ppm) // (PPM + self.drift_ppm) - self.margin_us
