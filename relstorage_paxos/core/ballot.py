"""Ballots: the totally ordered proposal numbers of Paxos (Paxos Made Simple §2.2).

A ballot is (round, node_id); comparing tuples orders rounds first and breaks ties by node id,
so two nodes never own the same ballot. Pure values; imported by every other core module.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True, slots=True)
class Ballot:
    round: int
    node_id: int

    def __str__(self) -> str:
        return f"{self.round}.{self.node_id}"


ZERO_BALLOT = Ballot(0, 0)
