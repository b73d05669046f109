"""Read barriers shared by concurrent polls: a ReadIndex round serves only the callers that
arrived before it started, and one round serves all of them."""

from __future__ import annotations

import threading
from typing import Any

from relstorage_paxos.adapter.link import _CoalescedReadIndex


class GatedClient:
    """A Sequencer client whose ReadIndex calls block until the test opens the gate."""

    def __init__(self) -> None:
        self.calls = 0
        self.entered = threading.Semaphore(0)
        self.gate = threading.Semaphore(0)

    def read_index(self, timeout_s: float = 30.0) -> int:
        self.calls += 1
        slot = self.calls * 10
        self.entered.release()
        self.gate.acquire()
        return slot


def test_callers_during_a_round_share_the_next_one() -> None:
    client = GatedClient()
    barrier = _CoalescedReadIndex(client)  # type: ignore[arg-type]
    results: dict[str, int] = {}

    def call(name: str) -> None:
        results[name] = barrier.wait(5.0)

    first = threading.Thread(target=call, args=("first",))
    first.start()
    assert client.entered.acquire(timeout=5)  # round 1 is in flight
    late: list[threading.Thread] = [
        threading.Thread(target=call, args=(f"late{i}",)) for i in range(5)
    ]
    for t in late:
        t.start()
    waiting = threading.Event()
    for _ in range(500):  # until all five wait on the condition (CPython's Condition)
        with barrier._cond:
            if len(barrier._cond._waiters) == 5:  # type: ignore[attr-defined]
                break
        waiting.wait(0.01)
    client.gate.release()  # round 1 ends: it must not answer the late callers
    first.join(5)
    assert results == {"first": 10}
    assert client.entered.acquire(timeout=5)  # one round 2 for all five
    client.gate.release()
    for t in late:
        t.join(5)
    assert client.calls == 2
    assert {results[f"late{i}"] for i in range(5)} == {20}


def test_a_failed_round_fails_its_callers_and_the_next_round_runs() -> None:
    class Failing:
        calls = 0

        def read_index(self, timeout_s: float = 30.0) -> Any:
            self.calls += 1
            if self.calls == 1:
                raise TimeoutError("no leader")
            return 7

    barrier = _CoalescedReadIndex(Failing())  # type: ignore[arg-type]
    try:
        barrier.wait(5.0)
    except TimeoutError:
        pass
    else:
        raise AssertionError("the failure must reach the caller")
    assert barrier.wait(5.0) == 7
