"""SWIM/Lifeguard core: codecs, probes, suspicion and refutation, tombstones, local health."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from synapse_p2p.errors import ProtocolError
from synapse_p2p.membership._records import MemberDown, MemberUp, PeerRecord, Send, WireMessage
from synapse_p2p.membership._swim import Swim, SwimConfig
from synapse_p2p.membership._swim_wire import (
    Ack,
    Alive,
    Dead,
    Delta,
    Gossip,
    Nack,
    Ping,
    PingReq,
    PushPull,
    Suspect,
    decode_swim_message,
)

ME = PeerRecord("me", "10.0.0.1", 7000)


def rec(i: int, seq: int = 0) -> PeerRecord:
    return PeerRecord(f"p{i}", f"10.0.1.{i}", 7000, seq=seq)


def swim_with(n: int, config: SwimConfig | None = None) -> Swim:
    swim = Swim(ME, config or SwimConfig(), seed=7)
    swim.handle(0.0, "p1", PushPull(tuple(Alive(rec(i)) for i in range(1, n + 1)), reply=False))
    return swim


def sends(actions: Sequence[object], kind: type[WireMessage]) -> list[Send]:
    return [a for a in actions if isinstance(a, Send) and isinstance(a.message, kind)]


ids = st.text(min_size=1, max_size=12)
deltas = st.one_of(
    st.builds(lambda i, s: Alive(PeerRecord(i, "10.0.0.9", 1, seq=s)), ids, st.integers(0, 99)),
    st.builds(Suspect, ids, st.integers(0, 2**40), ids),
    st.builds(Dead, ids, st.integers(0, 2**40), ids),
)


@given(st.integers(0, 2**40), ids, st.lists(deltas, max_size=6).map(tuple), st.booleans())
def test_messages_round_trip(seq: int, target: str, gossip: tuple[Delta, ...], flag: bool) -> None:
    record = PeerRecord(target, "::1", 9)
    for message in (
        Ping(seq, target, gossip),
        Ack(seq, gossip),
        Nack(seq),
        PingReq(seq, record, gossip),
        Gossip(gossip),
        PushPull(gossip, flag),
    ):
        assert decode_swim_message(message.to_wire()) == message


@pytest.mark.parametrize(
    "wire",
    [
        {"k": "sw.ping", "seq": -1, "target": "x"},
        {"k": "sw.ping", "seq": 1, "target": 5},
        {"k": "sw.ack", "seq": 1, "gossip": [{"t": "x"}]},
        {"k": "sw.gossip", "gossip": [{"t": "s", "id": "a", "inc": 0}]},
        {"k": "sw.push_pull", "state": [], "reply": "yes"},
        {"k": "sw.gossip", "gossip": [{"t": "d", "id": "a", "inc": 0, "by": "b"}] * 1025},
        ["sw.ping"],
    ],
)
def test_bad_messages_are_rejected(wire: object) -> None:
    with pytest.raises(ProtocolError):
        decode_swim_message(wire)


def test_push_pull_lists_members_and_answers() -> None:
    swim = Swim(ME, seed=1)
    actions = swim.handle(0.0, "p1", PushPull((Alive(rec(1)), Alive(rec(2))), reply=True))
    assert {a.peer.id for a in actions if isinstance(a, MemberUp)} == {"p1", "p2"}
    (reply,) = sends(actions, PushPull)
    assert isinstance(reply.message, PushPull)
    assert not reply.message.reply
    assert {d.id for d in reply.message.state} == {"me", "p1", "p2"}


def test_a_live_node_refutes_suspicion_with_a_higher_incarnation() -> None:
    swim = swim_with(3)
    swim.handle(1.0, "p1", Gossip((Suspect("me", 0, "p1"),)))
    assert swim.record.seq == 1
    assert swim.health == 1  # Lifeguard: being suspected says something about us
    (ack,) = sends(swim.handle(1.1, "p2", Ping(5, "me")), Ack)
    assert isinstance(ack.message, Ack)
    assert Alive(swim.record) in ack.message.gossip
    # a stale suspicion (older incarnation) changes nothing
    swim.handle(1.2, "p1", Gossip((Suspect("me", 0, "p3"),)))
    assert swim.record.seq == 1


def test_failed_probe_goes_indirect_then_suspects_then_declares_dead() -> None:
    cfg = SwimConfig()
    swim = swim_with(5, cfg)
    now = 0.0
    ping = None
    while ping is None:
        now += 0.01
        found = sends(swim.tick(now), Ping)
        ping = found[0] if found else None
    assert isinstance(ping.message, Ping)
    target = ping.peer.id
    now += cfg.probe_timeout + 0.01
    reqs = sends(swim.tick(now), PingReq)
    assert 1 <= len(reqs) <= cfg.indirect_checks
    assert all(
        r.peer.id != target and isinstance(r.message, PingReq) and r.message.target.id == target
        for r in reqs
    )
    for r in reqs:  # every relay answers NACK: the target is the problem, not us
        swim.handle(now, r.peer.id, Nack(ping.message.seq))
    now += cfg.probe_interval
    swim.tick(now)
    assert swim.state_of(target) == "suspect"
    assert swim.health == 1
    downs: list[MemberDown] = []
    for _ in range(2000):
        now += 0.05
        downs += [a for a in swim.tick(now) if isinstance(a, MemberDown)]
        if downs:
            break
    assert downs
    assert downs[0].peer.id == target
    assert downs[0].reason == "dead"
    assert swim.state_of(target) == "dead"


def test_missed_nacks_raise_local_health_and_slow_probing() -> None:
    cfg = SwimConfig()
    swim = swim_with(5, cfg)
    now, ping = 0.0, None
    while ping is None:
        now += 0.01
        found = sends(swim.tick(now), Ping)
        ping = found[0] if found else None
    now += cfg.probe_timeout + 0.01
    swim.tick(now)  # indirect probes go out; no NACK ever comes back
    now += cfg.probe_interval
    swim.tick(now)
    assert swim.health == 2
    now += 0.01
    assert sends(swim.tick(now), Ping)  # the next probe waits (and is waited for) 3x longer
    assert swim.next_wakeup() == pytest.approx(now + 3 * cfg.probe_timeout)


def test_ack_keeps_the_target_alive_and_relays_answer() -> None:
    swim = swim_with(3)
    actions = swim.handle(0.0, "p1", PingReq(42, rec(2)))
    (ping,) = sends(actions, Ping)
    assert isinstance(ping.message, Ping)
    relayed = swim.handle(0.05, "p2", Ack(ping.message.seq))
    assert relayed == [Send(rec(1), Ack(42))]
    # no answer from the target: the requester gets a NACK
    actions = swim.handle(1.0, "p1", PingReq(43, rec(3)))
    nacks = sends(swim.tick(5.0), Nack)
    assert [n.message.seq for n in nacks if isinstance(n.message, Nack)] == [43]
    assert nacks[0].peer.id == "p1"


def test_more_independent_suspecters_shorten_the_suspicion() -> None:
    swim = swim_with(50)
    swim.handle(0.0, "p1", Gossip((Suspect("p9", 0, "p1"),)))
    alone = swim.next_wakeup()
    member = swim.members["p9"]
    lone = swim._suspicion_deadline(member)
    for by in ("p2", "p3"):
        swim.handle(0.0, by, Gossip((Suspect("p9", 0, by),)))
    assert swim._suspicion_deadline(member) < lone
    assert alone <= lone


def test_dead_members_are_not_relearned_from_stale_gossip() -> None:
    swim = swim_with(3)
    actions = swim.handle(0.0, "p1", Gossip((Dead("p2", 0, "p1"),)))
    assert MemberDown(rec(2), "dead") in actions
    assert swim.handle(1.0, "p3", Gossip((Alive(rec(2, seq=0)),))) == []
    assert swim.state_of("p2") == "dead"
    back = swim.handle(2.0, "p3", Gossip((Alive(rec(2, seq=1)),)))
    assert MemberUp(rec(2, seq=1)) in back
    assert swim.state_of("p2") == "alive"
    # leaving is announced as a dead delta by the member itself
    leaving = swim.handle(3.0, "p3", Gossip((Dead("p3", 0, "p3"),)))
    assert MemberDown(rec(3), "left") in leaving


def test_each_delta_is_sent_a_bounded_number_of_times() -> None:
    swim = swim_with(20)
    limit = swim._transmit_limit()
    count = 0
    for seq in range(200):
        (ack,) = sends(swim.handle(float(seq), "p1", Ping(seq, "me")), Ack)
        assert isinstance(ack.message, Ack)
        count += sum(1 for d in ack.message.gossip if d.id == "p5")
    assert count == limit


@given(
    st.lists(st.tuples(st.integers(1, 5), st.integers(0, 4), st.sampled_from("asd")), max_size=60)
)
def test_incarnations_never_go_backwards(script: list[tuple[int, int, str]]) -> None:
    swim = swim_with(5)
    seen: dict[str, int] = {}
    for i, inc, tag in script:
        pid = f"p{i}"
        delta: dict[str, Delta] = {
            "a": Alive(rec(i, inc)),
            "s": Suspect(pid, inc, "p1"),
            "d": Dead(pid, inc, "p1"),
        }
        swim.handle(1.0, "p1", Gossip((delta[tag],)))
        member = swim.members[pid]
        assert member.incarnation >= seen.get(pid, 0)
        seen[pid] = member.incarnation
        assert "me" not in swim.members
