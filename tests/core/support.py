"""Builders shared by the core unit tests: a lone node stepped by hand, one Ready at a time,
and a three-node cluster with a leader."""

from __future__ import annotations

import random
from typing import TypeVar

from relstorage_paxos.core import (
    Ballot,
    LogEntry,
    Message,
    Node,
    NodeOptions,
    PersistentState,
    PreVote,
    Proposal,
    Ready,
    Role,
    Value,
)
from tests.interaction.harness import Cluster

M = TypeVar("M")


def ballot(text: str) -> Ballot:
    """``"2.3"`` → ``Ballot(2, 3)``, as ballots are printed."""
    round_, node_id = text.split(".")
    return Ballot(int(round_), int(node_id))


def value(*request_ids: str) -> Value:
    return tuple(Proposal(r.encode(), b"") for r in request_ids)


def entry(slot: int, at: str, *request_ids: str, chosen: bool = False) -> LogEntry:
    return LogEntry(slot, ballot(at), value(*request_ids), chosen)


def make_node(
    node_id: int = 2,
    size: int = 3,
    state: PersistentState | None = None,
    applied: int = 0,
    seed: int = 0,
    **options: int,
) -> Node:
    opts = NodeOptions(node_id=node_id, members=frozenset(range(1, size + 1)), **options)
    return Node(opts, random.Random(seed), state, applied)


def step(node: Node, *messages: Message) -> Ready:
    """Step ``messages`` into ``node``, then take and acknowledge one Ready."""
    for m in messages:
        node.step(m)
    return cycle(node)


def cycle(node: Node) -> Ready:
    ready = node.ready()
    node.advance(ready)
    return ready


def role(node: Node) -> Role:
    """``node.role``, read through a call so type checkers do not narrow it across steps."""
    return node.role


def campaign(node: Node) -> Ballot:
    """Tick a lone follower until it asks for pre-votes; returns the pre-vote ballot."""
    while role(node) is Role.FOLLOWER:
        node.tick()
    pre_votes = [m for m in cycle(node).messages if isinstance(m, PreVote)]
    assert pre_votes, "campaigned without pre-votes"
    return pre_votes[0].ballot


def sent(ready: Ready, kind: type[M]) -> list[M]:
    """The messages of type ``kind`` in ``ready``, in order."""
    return [m for m in ready.messages if isinstance(m, kind)]


def elected(size: int = 3, **options: int) -> Cluster:
    """``size`` nodes (seed 1) with ``options``; n1 campaigned and leads."""
    c = Cluster(size, seed=1, **options)
    c.tick_until_campaign(1)
    c.deliver()
    assert c.leaders() == [1]
    return c


def elected_with_one_slot() -> Cluster:
    """Three nodes; n1 leads and slot 1 is chosen."""
    c = elected()
    c.propose(1, "a")
    c.deliver()
    assert c.leaders() == [1] and c.node(1).commit == 1
    return c
