"""Leader election: randomized timeouts, pre-vote, leader stickiness, check-quorum."""

from __future__ import annotations

import itertools

from relstorage_paxos.core import (
    Ballot,
    Heartbeat,
    Prepare,
    PreVote,
    PreVoteReply,
    Promise,
    Role,
)
from tests.core.support import ballot, campaign, cycle, make_node, role, sent, step
from tests.interaction.harness import Cluster, match

T = 10
"""The default election_timeout_ticks."""


def ticks_until_pre_vote(seed: int) -> int:
    node = make_node(node_id=1, seed=seed, election_timeout_ticks=T)
    for ticks in range(1, 10 * T):
        node.tick()
        if sent(cycle(node), PreVote):
            return ticks
    raise AssertionError(f"seed {seed}: no pre-vote in {10 * T} ticks")


def test_election_timeout_is_random_in_t_to_2t() -> None:
    timeouts = [ticks_until_pre_vote(seed) for seed in range(200)]
    assert min(timeouts) >= T, min(timeouts)
    assert max(timeouts) < 2 * T, max(timeouts)
    assert len(set(timeouts)) >= T // 2, sorted(set(timeouts))


def test_timeout_is_redrawn_for_each_election() -> None:
    """A pre-candidate that hears nothing tries again after a fresh timeout in [T, 2T)."""
    node = make_node(node_id=1, seed=3, election_timeout_ticks=T)
    starts: list[int] = []
    for tick in range(1, 30 * T):
        node.tick()
        if sent(cycle(node), PreVote):
            starts.append(tick)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert len(gaps) >= 10, starts
    assert all(T <= g < 2 * T for g in gaps), gaps
    assert len(set(gaps)) > 1, gaps
    assert node.promised == Ballot(0, 0), "pre-votes never raise the candidate's own promise"


def test_pre_vote_majority_refusal_returns_to_follower() -> None:
    node = make_node(node_id=1)
    pre_ballot = campaign(node)
    assert role(node) is Role.PRE_CANDIDATE
    step(node, PreVoteReply(2, 1, pre_ballot, False, ballot("0.0")))
    assert role(node) is Role.PRE_CANDIDATE, "one refusal of three leaves a majority possible"
    step(node, PreVoteReply(3, 1, pre_ballot, False, ballot("0.0")))
    assert role(node) is Role.FOLLOWER


def test_pre_vote_win_starts_phase_one_above_every_ballot_seen() -> None:
    """n3 refuses (it promised 4.3 to some failed candidate), n2 agrees: n1 wins the
    pre-vote and asks for a ballot above 4.3 at once, not for its pre-vote ballot 1.1."""
    node = make_node(node_id=1)
    pre_ballot = campaign(node)
    assert pre_ballot == ballot("1.1")
    step(node, PreVoteReply(3, 1, pre_ballot, False, ballot("4.3")))
    ready = step(node, PreVoteReply(2, 1, pre_ballot, True, ballot("0.0")))
    assert role(node) is Role.CANDIDATE
    prepares = sent(ready, Prepare)
    assert [p.dst for p in prepares] == [2, 3]
    assert all(p.ballot == ballot("5.1") for p in prepares), prepares
    assert ready.persist.promised == ballot("5.1") and ready.persist.must_sync


def test_returning_node_does_not_disturb_a_live_leader() -> None:
    """Leader stickiness: n3 is cut off long enough to campaign many times; when it comes
    back its pre-votes are refused, nobody's promise moves and n1 keeps leading."""
    c = Cluster(3, seed=1)
    c.tick_until_campaign(1)
    c.deliver()
    c.partition({1, 2}, {3})
    for _ in range(10):
        c.tick(3, T)
        c.tick(1, 2)
        c.deliver()
    assert c.node(3).role is Role.PRE_CANDIDATE
    c.heal()
    c.tick_until_campaign(3)
    pre_votes = c.pending_of(PreVote, src=3)
    assert len(pre_votes) == 2
    c.deliver(type=(PreVote, PreVoteReply))
    assert c.trace.count(f"2->3 PreVoteReply REJECT ballot={pre_votes[0].ballot} promised=1.1")
    assert c.leaders() == [1]
    for i in (1, 2, 3):
        assert c.node(i).promised == ballot("1.1"), (i, c.node(i).promised)
        assert c.disks[i].promised == ballot("1.1"), (i, c.disks[i].promised)
    c.tick(1, 2)
    c.deliver()
    assert c.node(3).role is Role.FOLLOWER and c.node(3).leader == 1
    c.propose(3, "after")
    c.deliver()
    assert c.applied(1) == ["[after]"]


def test_follower_that_lost_its_leader_grants_a_pre_vote() -> None:
    c = Cluster(3, seed=1)
    c.tick_until_campaign(1)
    c.deliver()
    c.crash(1)
    c.tick(2, T)  # n2 has not heard from n1 for a full election timeout
    c.tick_until_campaign(3)
    c.deliver(type=(PreVote, PreVoteReply, Prepare, Promise))
    assert c.leaders() == [3]


def test_check_quorum_leader_cut_off_steps_down() -> None:
    """The leader checks every election timeout that a majority answered it in that window;
    cut off right after winning, it steps down at the end of the second window at most."""
    c = Cluster(3, seed=1)
    c.tick_until_campaign(1)
    c.deliver()
    c.partition({1}, {2, 3})
    ticks = 0
    while c.node(1).role is Role.LEADER:
        assert ticks <= 2 * T, ticks
        c.tick(1)
        c.deliver()
        ticks += 1
    assert T <= ticks <= 2 * T, ticks
    assert c.node(1).role is Role.FOLLOWER and c.node(1).leader is None
    assert c.node(1).promised == ballot("1.1"), "stepping down raises no promise"


def test_check_quorum_leader_heard_by_a_majority_stays() -> None:
    c = Cluster(5, seed=1)
    c.tick_until_campaign(1)
    c.deliver()
    c.partition({1, 2, 3}, {4, 5})
    for _ in range(5 * T):
        c.tick(1)
        c.deliver()
    assert c.leaders() == [1]


def test_check_quorum_leader_heard_by_a_minority_steps_down() -> None:
    c = Cluster(5, seed=1)
    c.tick_until_campaign(1)
    c.deliver()
    c.partition({1, 2}, {3, 4, 5})
    for _ in range(2 * T):
        c.tick(1)
        c.deliver()
    assert c.leaders() == []


def test_five_node_cluster_elects_with_three_promises() -> None:
    c = Cluster(5, seed=1)
    c.tick_until_campaign(1)
    c.drop(lambda m: m.dst in (4, 5))
    c.deliver(type=(PreVote, PreVoteReply))
    assert c.node(1).role is Role.CANDIDATE
    c.drop(lambda m: m.dst in (4, 5))
    c.deliver(match(Prepare, dst=2))
    c.deliver(match(Promise, src=2))
    assert c.node(1).role is Role.CANDIDATE, "two promises of five are not enough"
    c.deliver(match(Prepare, dst=3))
    c.deliver(match(Promise, src=3))
    assert c.leaders() == [1]
    assert [c.node(i).promised for i in (4, 5)] == [ballot("0.0")] * 2
    c.deliver()
    c.propose(1, "a")
    c.deliver()
    assert c.applied(1) == ["[a]"]


def test_candidate_refused_by_a_majority_gives_up() -> None:
    node = make_node(node_id=1)
    pre_ballot = campaign(node)
    (prepare, _) = sent(step(node, PreVoteReply(2, 1, pre_ballot, True, ballot("0.0"))), Prepare)
    step(node, Promise(2, 1, prepare.ballot, False, prepare.ballot, (), 0))
    assert role(node) is Role.CANDIDATE
    step(node, Promise(3, 1, prepare.ballot, False, prepare.ballot, (), 0))
    assert role(node) is Role.FOLLOWER


def test_higher_ballot_in_a_refusal_deposes_at_once() -> None:
    node = make_node(node_id=1)
    pre_ballot = campaign(node)
    (prepare, _) = sent(step(node, PreVoteReply(2, 1, pre_ballot, True, ballot("0.0"))), Prepare)
    step(node, Promise(2, 1, prepare.ballot, False, ballot("7.3"), (), 0))
    assert role(node) is Role.FOLLOWER
    step(node, Heartbeat(3, 1, ballot("7.3"), 0, 0))
    assert node.leader == 3
