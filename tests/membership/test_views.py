"""HyParView core: codecs, view invariants under any sequence of events, eclipse bounds."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from synapse_p2p.errors import ProtocolError
from synapse_p2p.membership._records import (
    Connect,
    NeighborUp,
    PeerRecord,
    Send,
    host_key,
)
from synapse_p2p.membership._views import HyParView, ViewConfig
from synapse_p2p.membership._views_wire import (
    DisconnectMessage,
    ForwardJoin,
    Join,
    Neighbor,
    NeighborReply,
    Shuffle,
    ShuffleReply,
    decode_view_message,
)

ME = PeerRecord("me", "10.0.0.1", 7000)


def rec(i: int, host: str | None = None) -> PeerRecord:
    return PeerRecord(f"p{i}", host or f"10.1.{i // 250}.{i % 250 + 1}", 7000, seq=i % 3)


records = st.builds(
    PeerRecord,
    id=st.text(min_size=1, max_size=20),
    address=st.sampled_from(["10.0.0.2", "10.0.0.3", "::1", "host.example"]),
    port=st.integers(0, 65535),
    name=st.text(max_size=10),
    capabilities=st.lists(st.text(max_size=8), max_size=3).map(tuple),
    seq=st.integers(0, 2**40),
    signature=st.binary(max_size=8),
)


@given(records, st.integers(0, 16), st.booleans(), st.lists(records, max_size=5))
def test_messages_round_trip(
    record: PeerRecord, ttl: int, flag: bool, more: list[PeerRecord]
) -> None:
    messages = [
        Join(record),
        ForwardJoin(record, ttl),
        Neighbor(record, flag),
        NeighborReply(record, flag),
        DisconnectMessage(),
        Shuffle(record, ttl, tuple(more)),
        ShuffleReply(tuple(more)),
    ]
    for message in messages:
        assert decode_view_message(message.to_wire()) == message


@pytest.mark.parametrize(
    "wire",
    [
        None,
        {"k": "hv.nope"},
        {"k": "hv.join"},
        {"k": "hv.join", "record": {"id": "x", "address": "a", "port": 70000, "seq": 0}},
        {"k": "hv.fjoin", "record": {"id": "x", "address": "a", "port": 1, "seq": 0}, "ttl": 99},
        {"k": "hv.neighbor", "record": {"id": "x", "address": "a", "port": 1, "seq": 0}},
        {"k": "hv.shuffle_reply", "records": [{}] * 65},
        {"k": "hv.join", "record": {"id": "x" * 300, "address": "a", "port": 1, "seq": 0}},
    ],
)
def test_bad_messages_are_rejected(wire: object) -> None:
    with pytest.raises(ProtocolError):
        decode_view_message(wire)


def check_invariants(view: HyParView) -> None:
    cfg = view.config
    assert len(view.active) <= cfg.active_max
    assert len(view.passive) <= cfg.passive_max
    assert view.record.id not in view.active
    assert view.record.id not in view.passive
    assert not set(view.active) & set(view.passive)
    if cfg.max_active_per_host is not None:
        hosts = [host_key(s.record.address) for s in view.active.values()]
        assert all(hosts.count(h) <= cfg.max_active_per_host for h in hosts)
    joined = sum(1 for s in view.active.values() if not s.chosen)
    assert joined <= cfg.active_max - cfg.reserved_slots


events = st.lists(
    st.tuples(
        st.sampled_from(
            ["join", "fjoin", "neighbor", "reply", "disconnect", "fail", "shuffle", "tick", "offer"]
        ),
        st.integers(0, 60),
        st.integers(0, 6),
        st.booleans(),
    ),
    max_size=120,
)


@settings(max_examples=100, deadline=None)
@given(
    events,
    st.sampled_from([ViewConfig(), ViewConfig(active_max=5, passive_max=8, reserved_slots=1)]),
)
def test_views_stay_within_bounds(
    script: list[tuple[str, int, int, bool]], cfg: ViewConfig
) -> None:
    view = HyParView(ME, cfg, seed=1)
    now = 0.0
    view.join(now, [rec(1)])
    for op, i, ttl, flag in script:
        now += 0.3
        peer = rec(i, host="10.9.9.9" if flag and i % 2 else None)
        if op == "join":
            view.handle(now, peer.id, Join(peer))
        elif op == "fjoin":
            view.handle(now, "p0", ForwardJoin(peer, ttl))
        elif op == "neighbor":
            view.handle(now, peer.id, Neighbor(peer, flag))
        elif op == "reply":
            view.handle(now, peer.id, NeighborReply(peer, flag))
        elif op == "disconnect":
            view.handle(now, peer.id, DisconnectMessage())
        elif op == "fail":
            view.on_connection_failed(now, peer.id)
        elif op == "shuffle":
            view.handle(now, "p0", Shuffle(peer, ttl, tuple(rec(j) for j in range(i % 7))))
        elif op == "tick":
            view.tick(now)
        else:
            view.offer(peer)
        check_invariants(view)
        # a node never lists itself, whatever others claim
        view.handle(now, "p3", Shuffle(rec(3), 0, (ME,)))
        assert ME.id not in view.passive


def test_join_is_answered_and_forwarded() -> None:
    view = HyParView(ME, seed=2)
    for i in range(3):
        view.handle(0.0, f"p{i}", Join(rec(i)))
    actions = view.handle(0.0, "p9", Join(rec(9)))
    assert Send(rec(9), NeighborReply(ME, accepted=True)) in actions
    walks = [a for a in actions if isinstance(a, Send) and isinstance(a.message, ForwardJoin)]
    assert {a.peer.id for a in walks} == {"p0", "p1", "p2"}
    assert all(
        isinstance(a.message, ForwardJoin) and a.message.ttl == view.config.arwl for a in walks
    )
    assert NeighborUp(rec(9)) in actions
    assert Connect(rec(9)) in actions


def test_forward_join_ends_in_active_view_and_passes_passive_at_prwl() -> None:
    view = HyParView(ME, seed=3)
    for i in range(1, 6):  # at its target (5): walks pass through
        view.handle(0.0, f"p{i}", Join(rec(i)))
    assert len(view.active) == view.target() == 5
    newcomer = rec(50)
    actions = view.handle(0.0, "p1", ForwardJoin(newcomer, view.config.prwl))
    assert newcomer.id in view.passive
    sends = [a for a in actions if isinstance(a, Send)]
    assert len(sends) == 1
    assert sends[0].peer.id in {"p2", "p3", "p4", "p5"}
    assert sends[0].message == ForwardJoin(newcomer, view.config.prwl - 1)
    actions = view.handle(0.0, "p1", ForwardJoin(rec(51), 0))
    assert Send(rec(51), Neighbor(ME, high=True)) in actions
    view.handle(0.1, "p51", NeighborReply(rec(51), accepted=True))
    assert "p51" in view.active


def test_forward_join_ends_early_at_a_node_short_of_its_target() -> None:
    view = HyParView(ME, seed=3)
    view.handle(0.0, "p1", Join(rec(1)))
    view.handle(0.0, "p2", Join(rec(2)))
    actions = view.handle(0.0, "p1", ForwardJoin(rec(50), view.config.arwl))
    assert actions == [Connect(rec(50)), Send(rec(50), Neighbor(ME, high=True))]
    view.handle(0.1, "p50", NeighborReply(rec(50), accepted=True))
    assert set(view.active) == {"p1", "p2", "p50"}
    assert view.evictions == 0


def test_one_host_flooding_joins_cannot_take_the_active_view() -> None:
    cfg = ViewConfig(active_max=8, reserved_slots=2, max_active_per_host=2)
    view = HyParView(ME, cfg, seed=4)
    view.size_estimate = 1000
    honest = [rec(i) for i in range(1, 4)]
    view.join(0.0, [honest[0]])
    view.handle(0.0, honest[0].id, NeighborReply(honest[0], accepted=True))
    for peer in honest[1:]:
        view.offer(peer)
    view.tick(1.0)  # past the quiet time after the JOIN (its walks would arrive in it)
    for peer in honest[1:]:
        view.handle(1.1, peer.id, NeighborReply(peer, accepted=True))
    assert {"p1", "p2", "p3"} <= set(view.active)
    for i in range(1000, 3000):  # one attacker host, 2,000 identities
        attacker = PeerRecord(f"evil{i}", "203.0.113.66", 7000)
        view.handle(2.0, attacker.id, Join(attacker))
        view.handle(2.0, "p1", ForwardJoin(PeerRecord(f"fwd{i}", "203.0.113.66", 7000), 0))
        check_invariants(view)
    evil = [s for s in view.active.values() if s.record.address == "203.0.113.66"]
    assert len(evil) <= 2
    assert {"p1", "p2"} & set(view.active)  # chosen peers kept their reserved slots
    assert sum(1 for r in view.passive.values() if r.address == "203.0.113.66") <= 4


def test_unverified_records_are_ignored() -> None:
    view = HyParView(ME, seed=5, verify=lambda r: r.signature == b"ok")
    assert view.handle(0.0, "p1", Join(rec(1))) == []
    signed = PeerRecord("p1", "10.1.0.2", 7000, signature=b"ok")
    assert view.handle(0.0, "p1", Join(signed))
    assert view.handle(0.0, "p2", Join(signed)) == []  # a record must be its sender's own
    view.handle(0.0, "p1", ShuffleReply((rec(7), PeerRecord("p8", "10.0.0.8", 1, signature=b"ok"))))
    assert set(view.passive) == {"p8"}


def test_failed_neighbor_is_replaced_from_the_passive_view() -> None:
    view = HyParView(ME, ViewConfig(active_min=2, active_max=2, reserved_slots=0), seed=6)
    for i in (1, 2):
        view.handle(0.0, f"p{i}", Join(rec(i)))
    for i in (3, 4, 5):
        view.offer(rec(i))
    actions = view.on_connection_failed(1.0, "p1")
    asked = [a.peer.id for a in actions if isinstance(a, Send) and isinstance(a.message, Neighbor)]
    assert len(asked) == 1
    assert asked[0] in {"p3", "p4", "p5"}
    view.handle(1.1, asked[0], NeighborReply(rec(int(asked[0][1:])), accepted=True))
    assert set(view.active) == {"p2", asked[0]}
    # an unanswered request times out: the record is dropped and another is asked
    view.on_connection_failed(2.0, "p2")
    (pending,) = view.pending
    view.tick(2.0 + view.config.neighbor_timeout + 0.1)
    assert pending not in view.passive


def test_a_shuffle_walk_takes_the_preferred_neighbors_first() -> None:
    """With ``prefer`` (a live node: the links it holds a connection to), a SHUFFLE it starts
    or passes on goes to a preferred neighbor, at random among them; with none preferred, to
    any; without ``prefer``, to any (the simulator's cores)."""
    preferred = {"p2", "p4"}
    chosen: dict[str, set[str]] = {"start": set(), "forward": set(), "none": set()}
    for seed in range(40):
        view = HyParView(ME, seed=seed, prefer=lambda r: r.id in preferred)
        for i in range(1, 6):
            view.handle(0.0, f"p{i}", Join(rec(i)))
        view.tick(0.0)  # (the first shuffle's time)
        actions = view.tick(view.config.shuffle_interval * 2)
        [start] = [a for a in actions if isinstance(a, Send) and isinstance(a.message, Shuffle)]
        chosen["start"].add(start.peer.id)
        actions = view.handle(1.0, "p1", Shuffle(rec(9), 3, (rec(8),)))
        [hop] = [a for a in actions if isinstance(a, Send)]
        assert isinstance(hop.message, Shuffle)
        assert hop.message.ttl == 2
        chosen["forward"].add(hop.peer.id)
        preferred_none = HyParView(ME, seed=seed, prefer=lambda r: False)
        for i in range(1, 6):
            preferred_none.handle(0.0, f"p{i}", Join(rec(i)))
        [hop] = [
            a
            for a in preferred_none.handle(1.0, "p1", Shuffle(rec(9), 3, ()))
            if isinstance(a, Send)
        ]
        chosen["none"].add(hop.peer.id)
    assert chosen["start"] == preferred
    assert chosen["forward"] == preferred
    assert chosen["none"] == {"p2", "p3", "p4", "p5"}  # (not back to p1, nor to the origin)
