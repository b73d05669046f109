"""Hand-written interaction scripts (etcd-io/raft's ``testdata/*.txt`` model).

Each scenario drives a ``Cluster`` step by step, asserts its key facts in code, and compares
the full trace with ``golden/<scenario>.txt``. After an intended change of behaviour,
regenerate with ``UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/interaction`` and review
the diff like code.

Trace notation: ``> `` lines are script inputs; ``a->b Type ...`` a delivered message,
``drop ...`` a lost one; ``slot=value@ballot`` an acceptor's entry, ``*`` when it knows the
entry is chosen; ``noop`` the empty batch; ``nX is <role>`` a role change.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from relstorage_paxos.core import (
    NOOP,
    Accept,
    Accepted,
    Ballot,
    Prepare,
    PreVote,
    PreVoteReply,
    Promise,
    Role,
)
from tests.interaction.harness import Cluster, match

GOLDEN = Path(__file__).parent / "golden"
NOTATION = "notation: '> ' input; 'drop' lost message; slot=value@ballot, '*' known chosen"


def elect_node_1(c: Cluster) -> None:
    """Cold start: only n1 is ticked, so it times out first and wins with everybody."""
    c.tick_until_campaign(1)
    c.deliver()
    assert c.leaders() == [1], c.leaders()


def scenario_election_and_first_proposal() -> Cluster:
    c = Cluster(3, seed=1)
    c.note("(a) election in a 3-node cluster from cold start, then one proposal")
    c.note(NOTATION)
    c.note("n1 times out first (timeouts are random in [10, 20) ticks); pre-vote, then phase 1")
    c.tick_until_campaign(1)
    c.deliver(type=PreVote)
    c.deliver(type=PreVoteReply)
    c.deliver(type=Prepare)
    c.deliver(type=Promise)
    assert c.leaders() == [1], c.leaders()
    assert all(c.node(i).promised == Ballot(1, 1) for i in (1, 2, 3))
    assert all(c.disks[i].promised == Ballot(1, 1) for i in (1, 2, 3))
    c.note("the new leader's first heartbeats tell the followers who leads")
    c.deliver()
    assert c.node(2).leader == 1 and c.node(3).leader == 1
    c.note("phase 2 only: phase 1 already covers every slot of this leadership")
    c.propose(1, "a")
    c.deliver(slot=1)
    assert c.applied(1) == ["[a]"], c.applied(1)
    assert c.applied(2) == [] and c.applied(3) == []
    c.note("followers learn the choice at once from the leader's commit announcement")
    c.note("(an Accept without entries; it gets no reply)")
    c.deliver()
    for i in (1, 2, 3):
        assert c.applied(i) == ["[a]"], (i, c.applied(i))
    assert not c.pool, c.pool
    return c


def scenario_dueling_proposers() -> Cluster:
    c = Cluster(3, seed=1)
    c.note("(b) dueling proposers: n1 and n3 campaign at the same time")
    c.note(NOTATION)
    c.tick_until_campaign(1)
    c.tick_until_campaign(3)
    c.note("n2 grants both pre-votes: pre-votes promise nothing")
    c.deliver(type=PreVote, dst=2)
    c.deliver(type=PreVoteReply, dst=1)
    c.deliver(type=PreVoteReply, dst=3)
    assert c.node(1).role is Role.CANDIDATE and c.node(3).role is Role.CANDIDATE
    c.deliver(type=(PreVote, PreVoteReply))
    c.note("n2 promises 1.1 first: n1 leads in ballot 1.1 and proposes x")
    c.deliver(match(Prepare, src=1, dst=2))
    c.deliver(type=Promise, dst=1)
    assert c.leaders() == [1], c.leaders()
    c.propose(1, "x")
    c.note("then n2 promises the higher 1.3: n3 leads too, in a higher ballot")
    c.deliver(match(Prepare, src=3, dst=2))
    c.deliver(type=Promise, dst=3)
    assert c.leaders() == [1, 3], c.leaders()
    c.note("n2 refuses n1's accept; n1 learns of 1.3 and steps down; x is not chosen")
    c.deliver(match(Accept, src=1, dst=2))
    c.deliver(type=Accepted, dst=1)
    assert c.leaders() == [3], c.leaders()
    c.deliver()
    assert c.leaders() == [3], c.leaders()
    assert all(c.node(i).promised == Ballot(1, 3) for i in (1, 2, 3))
    assert all(c.node(i).leader == 3 for i in (1, 2, 3))
    assert all(c.applied(i) == [] for i in (1, 2, 3))
    c.note("the client retries x at n1, which forwards it to the leader")
    c.note("n3 announces its commit once x is chosen: n1 applies x one message later")
    c.propose(1, "x")
    c.deliver()
    for i in (1, 2, 3):
        assert c.applied(i) == ["[x]"], (i, c.applied(i))
    return c


def scenario_leader_change_mid_pipeline() -> Cluster:
    c = Cluster(3, seed=1)
    c.note("(c) leader changes in the middle of a pipeline")
    c.note(NOTATION)
    elect_node_1(c)
    c.note("n1 puts slots 1-4 in phase 2 at once")
    for request_id in "abcd":
        c.propose(1, request_id)
    c.note("slot 1 reaches everybody, slot 2 only n3, slot 3 nobody, slot 4 only n2")
    c.deliver(slot=1)
    c.deliver(match(Accept, dst=3, slot=2))
    c.drop(match(Accept, dst=2, slot=2))
    c.deliver(match(Accepted, slot=2))
    c.drop(slot=3)
    c.drop(match(Accept, dst=3, slot=4))
    c.deliver(match(Accept, dst=2, slot=4))
    c.drop(match(Accepted, slot=4))
    assert c.applied(1) == ["[a]", "[b]"], c.applied(1)
    c.note("n1 crashes before its commit announcements (commit=1, commit=2) leave")
    c.crash(1)
    c.drop(type=Accept)
    assert not c.pool, c.pool
    c.note("n2 stops hearing n1; n3 times out and campaigns")
    c.tick(2, 10)
    c.tick_until_campaign(3)
    c.deliver(type=(PreVote, PreVoteReply))
    c.note("phase 1 adopts b (n3) and d (n2); slot 3 is a gap, filled with a no-op")
    c.deliver(type=(Prepare, Promise))
    assert c.leaders() == [3], c.leaders()
    c.show_log(3)
    assert c.node(3).log[3].value == NOOP, c.node(3).log[3]
    c.note("n2 accepts all four slots in 2.3, but n3 crashes before it hears back")
    c.deliver(type=Accept)
    c.drop()
    c.crash(3)
    c.restart(1)
    c.note("n1 still holds c in slot 3 at ballot 1.1; n2 holds a no-op there at 2.3")
    c.show_log(1)
    c.show_log(2)
    assert c.node(1).log[3].value != NOOP and c.node(2).log[3].value == NOOP
    c.tick(2, 10)
    c.note("n2's promise (2.3) refuses n1's first pre-vote; n1 then asks with a higher ballot")
    c.tick_until_campaign(1)
    c.deliver()
    assert c.leaders() == [], c.leaders()
    c.tick_until_campaign(1)
    c.deliver(type=(PreVote, PreVoteReply, Prepare, Promise))
    assert c.leaders() == [1], c.leaders()
    c.note("P2c: n1 re-proposes the highest-ballot value, the 2.3 no-op, not its own c")
    c.show_log(1)
    assert c.node(1).log[3].value == NOOP, c.node(1).log[3]
    c.deliver()
    c.restart(3)
    c.tick(1, 2)
    c.deliver()
    expected = ["[a]", "[b]", "noop", "[d]"]
    for i in (1, 2, 3):
        assert c.applied(i) == expected, (i, c.applied(i))
    return c


def scenario_catch_up_after_partition() -> Cluster:
    c = Cluster(3, seed=1)
    c.note("(d) a follower cut off while slots are chosen catches up after the partition heals")
    c.note(NOTATION)
    elect_node_1(c)
    c.propose(1, "a")
    c.deliver()
    assert all(c.applied(i) == ["[a]"] for i in (1, 2, 3))
    c.partition({1, 2}, {3})
    c.note("n2 learns b and c from the commit announcements; n3's are lost to the partition")
    c.propose(1, "b")
    c.propose(1, "c")
    c.deliver()
    assert c.applied(2) == ["[a]", "[b]", "[c]"], c.applied(2)
    assert c.applied(3) == ["[a]"], c.applied(3)
    c.note("n3 times out; its pre-vote is lost, and it raised nobody's promise")
    c.tick_until_campaign(3)
    c.deliver()
    assert c.node(3).promised == Ballot(1, 1), c.node(3).promised
    c.heal()
    c.note("the next heartbeat carries commit=3; n3 has none of 2-3, so it asks for them")
    c.tick(1, 2)
    c.deliver()
    assert c.applied(3) == ["[a]", "[b]", "[c]"], c.applied(3)
    assert c.node(3).role is Role.FOLLOWER and c.node(3).leader == 1
    c.partition({1, 2}, {3})
    for request_id in "def":
        c.propose(1, request_id)
    c.deliver()
    assert c.applied(2) == ["[a]", "[b]", "[c]", "[d]", "[e]", "[f]"], c.applied(2)
    c.note("both n1 and n2 snapshot their state machine and forget slots 1-6")
    c.compact(1, 6)
    c.compact(2, 6)
    c.show_log(1)
    c.heal()
    c.note("n1 can no longer serve slot 4, so it names its snapshot instead")
    c.tick(1, 2)
    c.deliver()
    assert c.snapshot_requests[3].peer == 1 and c.snapshot_requests[3].min_slot == 6
    assert c.applied(3) == ["[a]", "[b]", "[c]"], c.applied(3)
    assert c.install_snapshot(3) == 6
    c.show_log(3)
    c.note("n3 is back in step: it proposes g (forwarded) and learns it from the")
    c.note("leader's commit announcement, one message after the leader")
    c.propose(3, "g")
    c.deliver()
    expected = ["[a]", "[b]", "[c]", "[d]", "[e]", "[f]", "[g]"]
    for i in (1, 2, 3):
        assert c.applied(i) == expected, (i, c.applied(i))
    return c


SCENARIOS: dict[str, Callable[[], Cluster]] = {
    "a_election_and_first_proposal": scenario_election_and_first_proposal,
    "b_dueling_proposers": scenario_dueling_proposers,
    "c_leader_change_mid_pipeline": scenario_leader_change_mid_pipeline,
    "d_catch_up_after_partition": scenario_catch_up_after_partition,
}


def check_golden(name: str, actual: str) -> None:
    path = GOLDEN / f"{name}.txt"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(actual)
        return
    assert path.exists(), f"{path} missing; run with UPDATE_GOLDEN=1 to create it"
    expected = path.read_text()
    if actual != expected:
        diff = difflib.unified_diff(
            expected.splitlines(keepends=True),
            actual.splitlines(keepends=True),
            fromfile=f"golden/{name}.txt",
            tofile="actual",
        )
        pytest.fail(
            f"trace differs from golden/{name}.txt (UPDATE_GOLDEN=1 regenerates):\n"
            + "".join(diff),
            pytrace=False,
        )


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_script(name: str) -> None:
    cluster = SCENARIOS[name]()
    check_golden(name, cluster.text())


def test_scripts_are_deterministic() -> None:
    for build in SCENARIOS.values():
        assert build().text() == build().text()


def test_golden_files_stay_readable() -> None:
    for name in SCENARIOS:
        lines = (GOLDEN / f"{name}.txt").read_text().splitlines()
        assert len(lines) < 160, (name, len(lines))
