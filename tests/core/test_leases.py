"""Read leases (core/lease.py): a holder serves linearizable reads from its own replica; a
commit is finished only once every holder whose lease may run has it; the clock arithmetic
holds for every drift within the assumed bound, and fails without its margin."""

from __future__ import annotations

from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from relstorage_paxos.core import Heartbeat, HeartbeatReply, Prepare, Promise
from relstorage_paxos.core.lease import PPM, LeaseTimes
from tests.core.support import elected_with_one_slot
from tests.interaction.harness import Cluster, match

TICK_US = 10_000
LEASE = {"read_lease_us": 60_000, "clock_drift_ppm": 1000, "lease_margin_us": 1000}
OPTIONS = {**LEASE, "tick_us": TICK_US, "election_timeout_ticks": 10}


def at(c: Cluster, now_us: int) -> None:
    for node_id in c.members:
        if c.nodes[node_id] is not None:
            c.node(node_id).set_time(now_us)


def leased_cluster(size: int = 3) -> Cluster:
    """n1 leads, every other node holds a lease, slot 1 is finished everywhere; 200 ms."""
    c = Cluster(size, seed=1, **OPTIONS)
    at(c, 0)
    for node_id in c.members:
        c.tick(node_id, 10)  # past the quiet period after start
    c.drop()  # another node may have begun a pre-vote; n1 leads below
    at(c, 100_000)
    c.tick_until_campaign(1)
    c.deliver()
    c.propose(1, "a")
    c.deliver()
    at(c, 200_000)
    c.tick(1, 2)  # a heartbeat round: the replies register the others
    c.deliver()
    c.tick(1, 2)  # the next round grants them
    c.deliver()
    assert c.leaders() == [1]
    return c


def test_every_node_reads_locally_once_granted() -> None:
    c = leased_cluster()
    for node_id in (1, 2, 3):
        lease = c.node(node_id).lease_read()
        assert lease is not None, node_id
        assert lease[0] == 1, (node_id, lease)
    assert c.node(1).finished == 1


def test_a_commit_is_finished_only_once_every_holder_has_it() -> None:
    c = leased_cluster()
    c.propose(1, "b")
    c.deliver(match(HeartbeatReply))
    c.deliver(match(Heartbeat))
    accepts = c.pending()
    c.deliver(lambda m: m in accepts and m.dst == 2)
    c.deliver(lambda m: m.src == 2 and m.dst == 1)
    assert c.node(1).commit == 2, "chosen by n1 and n2"
    assert c.node(1).finished == 1, "n3 holds a lease and has not acknowledged slot 2"
    lease = c.node(2).lease_read()
    assert lease is not None and lease[0] == 2, "n2 acknowledged slot 2: it must read it"
    c.deliver()
    assert c.node(1).finished == 2


def test_a_silent_holder_stops_holding_commits_back_once_its_lease_surely_ended() -> None:
    c = leased_cluster()
    c.partition([1, 2], [3])
    c.propose(1, "b")
    c.deliver()
    assert c.node(1).finished == 1
    times = LeaseTimes(60_000, 1000, 1000, TICK_US)
    # n3's last reply reached n1 at 200 ms: n1 honours it for grantor_us and as many ticks.
    at(c, 200_000 + times.grantor_us - 1)
    c.tick(1, times.grantor_ticks)
    assert c.node(1).finished == 1, "n3's lease may still run by n1's clock"
    at(c, 200_000 + times.grantor_us)
    c.tick(1)
    assert c.node(1).finished == 2
    # ...by then n3's own lease, dated from when it sent that reply, has ended.
    c.node(3).set_time(200_000 + times.duration_us)
    assert c.node(3).lease_read() is None


def test_a_forward_clock_jump_does_not_end_a_holders_lease_early() -> None:
    c = leased_cluster()
    c.partition([1, 2], [3])
    c.propose(1, "b")
    c.deliver()
    at(c, 10_000_000)  # n1's clock leaps ten seconds; only a tick or two pass
    c.tick(1)
    assert c.node(1).finished == 1, "ticks still count the lease out"


def elect_n2_without_n1(c: Cluster, *, cut_off: list[int]) -> None:
    """n1 dies for good; n2 wins with the promises of all the others but ``cut_off``."""
    c.crash(1)
    rest = [n for n in c.members if n not in (1, *cut_off)]
    c.partition(rest, cut_off)
    at(c, 220_000)
    for node_id in rest:
        c.tick(node_id, 10)
    c.drop()
    c.tick_until_campaign(2)
    c.deliver()
    assert c.leaders() == [2]


def test_a_new_leader_honours_leases_it_did_not_grant() -> None:
    c = leased_cluster(5)
    elect_n2_without_n1(c, cut_off=[5])
    lease = c.node(5).lease_read()
    assert lease is not None, "n5 still holds the lease n1 granted it"
    c.propose(2, "b")
    c.deliver()
    assert c.node(2).commit == 2
    assert c.node(2).finished == 1, "n5 has not got slot 2"


def test_a_new_leader_need_not_wait_for_leases_given_up_by_promising() -> None:
    """Every live node promised the new leader, which gave up its lease; the old leader's
    own lease ended before anyone could win: commits finish at once after a failover."""
    c = leased_cluster(3)
    elect_n2_without_n1(c, cut_off=[])
    c.heal()
    assert c.node(3).lease_read() is None
    c.propose(2, "b")
    c.deliver()
    assert c.node(2).finished == c.node(2).commit == 2


def test_a_follower_refuses_a_prepare_while_it_hears_a_leader() -> None:
    c = leased_cluster()
    ballot = c.node(3).promised
    higher = type(ballot)(ballot.round + 1, 3)
    c.step(Prepare(3, 2, higher, 1))
    (promise,) = c.pending_of(Promise, src=2)
    assert not promise.ok and c.node(2).promised == ballot, promise


def test_a_restarted_node_promises_nobody_for_an_election_timeout() -> None:
    c = leased_cluster()
    c.crash(2)
    c.restart(2)
    at(c, 300_000)
    ballot = c.node(3).promised
    higher = type(ballot)(ballot.round + 1, 3)
    c.step(Prepare(3, 2, higher, 1))
    (promise,) = c.pending_of(Promise, src=2)
    assert not promise.ok, promise
    c.tick(2, 10)
    c.step(Prepare(3, 2, higher, 1))
    assert c.pending_of(Promise, src=2)[-1].ok


def test_a_higher_promise_ends_a_holders_lease() -> None:
    c = leased_cluster()
    c.crash(1)
    c.tick(3, 10)  # n3 no longer hears n1, though its lease has not run out by its clock
    c.drop()
    assert c.node(3).lease_read() is not None
    ballot = c.node(3).promised
    c.step(Prepare(2, 3, type(ballot)(ballot.round + 1, 2), 1))
    assert c.pending_of(Promise, src=3)[-1].ok
    assert c.node(3).lease_read() is None


def test_without_leases_reads_go_through_read_index_and_commits_finish_when_chosen() -> None:
    c = elected_with_one_slot()
    assert c.node(1).lease_read() is None and c.node(2).lease_read() is None
    assert c.node(1).finished == c.node(1).commit == 1


rates = st.integers(min_value=-1000, max_value=1000).map(lambda ppm: Fraction(PPM + ppm, PPM))


@given(holder_rate=rates, grantor_rate=rates, delay_us=st.integers(0, 10**6))
def test_the_grantor_outwaits_the_holder_for_any_drift_within_the_bound(
    holder_rate: Fraction, grantor_rate: Fraction, delay_us: int
) -> None:
    """Real time, for clocks running at ``rate`` x real: the holder's lease starts when it
    sends (real 0) and lasts ``duration_us`` of its clock; the grantor's wait starts when the
    reply arrives (real ``delay_us``) and lasts ``grantor_us`` of its own."""
    times = LeaseTimes(1_000_000, 1000, 0, TICK_US)
    holder_end = Fraction(times.duration_us) / holder_rate
    grantor_end = delay_us + Fraction(times.grantor_us) / grantor_rate
    assert grantor_end >= holder_end


def test_without_the_drift_allowance_a_slow_holder_outlives_its_grantor() -> None:
    times = LeaseTimes(1_000_000, 1000, 0, TICK_US)
    slow, fast = Fraction(PPM - 1000, PPM), Fraction(PPM + 1000, PPM)
    assert Fraction(times.duration_us) / fast < Fraction(times.duration_us) / slow
    assert Fraction(times.grantor_us) / fast >= Fraction(times.duration_us) / slow


@given(leader_rate=rates, follower_rate=rates)
def test_a_leaders_lease_ends_before_any_follower_would_promise_another(
    leader_rate: Fraction, follower_rate: Fraction
) -> None:
    """A follower that heard the leader at real 0 refuses other ballots until it has counted
    ``election_timeout_ticks`` ticks, which take at least that many minus one tick lengths
    of its clock."""
    times = LeaseTimes(1_000_000, 1000, 0, TICK_US)
    follower_refuses_until = Fraction(9 * TICK_US) / follower_rate
    leader_lease_end = Fraction(times.leader_lease_us(10)) / leader_rate
    assert leader_lease_end <= follower_refuses_until


def test_a_holder_whose_clock_falls_behind_the_leaders_gives_up_its_lease() -> None:
    c = leased_cluster()
    assert c.node(2).lease_read() is not None
    c.node(1).set_time(400_000)  # n1's clock leaps 100 ms ahead of n2's and n3's
    c.node(2).set_time(300_000)
    c.node(3).set_time(300_000)
    c.tick(1, 2)
    c.deliver(match(Heartbeat))
    assert c.node(2).lease_read() is None
    assert c.node(3).lease_read() is None
    c.deliver()
    c.tick(1, 2)
    c.deliver()
    assert c.node(2).lease_read() is None, "no grant taken for a lease term"


def test_network_delay_alone_is_no_clock_fault() -> None:
    c = leased_cluster()
    c.tick(1, 2)
    heartbeats = c.pending_of(Heartbeat)
    at(c, 250_000)  # the round arrives 50 ms late: the gap grows, which delays explain
    c.deliver(lambda m: m in heartbeats)
    c.deliver()
    c.tick(1, 2)
    c.deliver()
    assert c.node(2).lease_read() is not None


def test_without_leases_a_leader_keeps_no_heartbeat_times() -> None:
    c = elected_with_one_slot()
    for _ in range(50):
        c.tick(1, 2)
        c.deliver()
    lead = c.node(1)._lead
    assert lead is not None and lead.heartbeat_sent_us == {}, len(lead.heartbeat_sent_us)


def test_with_leases_a_leader_forgets_heartbeat_times_past_its_leader_lease() -> None:
    c = leased_cluster()
    for step in range(50):
        at(c, 300_000 + step * 20_000)
        c.tick(1, 2)
        c.deliver()
    lead = c.node(1)._lead
    assert lead is not None and len(lead.heartbeat_sent_us) < 10, len(lead.heartbeat_sent_us)
