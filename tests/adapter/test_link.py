"""Read barriers shared by concurrent polls: a ReadIndex round serves only the callers that
arrived before it started, and one round serves all of them. The rounds go through the real
Sequencer client and service over a Unix socket; only the node behind the service is the
test's, so that the test decides when each round ends."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

import pytest

from relstorage_paxos.adapter.link import _CoalescedReadIndex
from relstorage_paxos.errors import NodeUnavailableError, NoQuorumError
from relstorage_paxos.transport.sequencer import SequencerClient
from tests.transport.clusters import sequencer_for

CLUSTER_ID = "link"


class GatedNode:
    """A node whose ReadIndex rounds end when the test answers them, in order."""

    cluster_id = CLUSTER_ID

    def __init__(self) -> None:
        self.rounds: queue.Queue[Future[int]] = queue.Queue()

    def read_index(self) -> Future[int]:
        future: Future[int] = Future()
        self.rounds.put(future)
        return future

    def next_round(self) -> Future[int]:
        return self.rounds.get(timeout=5)


@pytest.fixture
def node() -> GatedNode:
    return GatedNode()


@pytest.fixture
def client(tmp_path: Path, node: GatedNode) -> Iterator[SequencerClient]:
    with sequencer_for(node, tmp_path / "sequencer.sock") as sequencer:  # type: ignore[arg-type]
        yield sequencer


def test_callers_during_a_round_share_the_next_one(
    node: GatedNode, client: SequencerClient
) -> None:
    barrier = _CoalescedReadIndex(client)
    results: dict[str, int] = {}

    def call(name: str) -> None:
        results[name] = barrier.wait(5.0)

    first = threading.Thread(target=call, args=("first",))
    first.start()
    round1 = node.next_round()  # round 1 reached the node
    late = [threading.Thread(target=call, args=(f"late{i}",)) for i in range(5)]
    for t in late:
        t.start()
    waiting = threading.Event()
    for _ in range(500):  # until all five wait on the condition (CPython's Condition)
        with barrier._cond:
            if len(barrier._cond._waiters) == 5:  # type: ignore[attr-defined]
                break
        waiting.wait(0.01)
    round1.set_result(10)  # round 1 ends: it must not answer the late callers
    first.join(5)
    assert results == {"first": 10}
    node.next_round().set_result(20)  # one round 2 for all five
    for t in late:
        t.join(5)
    assert node.rounds.empty(), "a third round was made"
    assert {results[f"late{i}"] for i in range(5)} == {20}


def test_a_failed_round_fails_its_callers_and_the_next_round_runs(
    node: GatedNode, client: SequencerClient
) -> None:
    barrier = _CoalescedReadIndex(client)
    outcome: list[BaseException | int] = []

    def call() -> None:
        try:
            outcome.append(barrier.wait(5.0))
        except NodeUnavailableError as exc:  # the node's NoQuorumError, through gRPC
            outcome.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    node.next_round().set_exception(NoQuorumError("no leader"))
    caller.join(5)
    assert len(outcome) == 1 and isinstance(outcome[0], Exception), outcome
    assert "no leader" in str(outcome[0])
    second = threading.Thread(target=call)
    second.start()
    node.next_round().set_result(7)
    second.join(5)
    assert outcome[1] == 7
