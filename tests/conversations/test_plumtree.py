"""Plumtree core: codecs, exactly-once delivery on any connected overlay, tree pruning, lazy
repair, replies routed to the origin."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from synapse_p2p.conversations._plumtree import (
    Deliver,
    Plumtree,
    PlumtreeAction,
    PlumtreeConfig,
    ReplyReceived,
)
from synapse_p2p.conversations._plumtree_wire import (
    Eager,
    EagerItem,
    Graft,
    IHave,
    PlumtreeMessage,
    Prune,
    Replies,
    ReplyItem,
    decode_plumtree_message,
)
from synapse_p2p.errors import ProtocolError
from synapse_p2p.membership._records import PeerRecord, Send

payloads = st.one_of(st.none(), st.integers(), st.text(max_size=8), st.binary(max_size=8))


@given(st.text(max_size=10), st.integers(0, 999), payloads)
def test_messages_round_trip(mid: str, rnd: int, payload: object) -> None:
    for message in (
        Eager((EagerItem(mid, "o", rnd, payload),)),
        IHave(((mid, rnd),)),
        Graft((mid,)),
        Prune(),
        Replies((ReplyItem(mid, "o", "r", payload),)),
    ):
        assert decode_plumtree_message(message.to_wire()) == message


@pytest.mark.parametrize(
    "wire",
    [
        {"k": "pt.eager", "items": [["m", "o", -1, None]]},
        {"k": "pt.eager", "items": [["m", "o", 1]]},
        {"k": "pt.ihave", "items": [["m"]]},
        {"k": "pt.graft", "items": [1]},
        {"k": "pt.graft", "items": ["m"] * 1025},
        {"k": "pt.what"},
    ],
)
def test_bad_messages_are_rejected(wire: object) -> None:
    with pytest.raises(ProtocolError):
        decode_plumtree_message(wire)


class Net:
    """A tiny synchronous network: messages delivered in a random order, some dropped."""

    def __init__(self, edges: set[tuple[int, int]], n: int, seed: int, drop: float = 0.0) -> None:
        self.rng = random.Random(seed)
        self.nodes = {f"n{i}": Plumtree(f"n{i}") for i in range(n)}
        for a, b in edges:
            self.nodes[f"n{a}"].neighbor_up(PeerRecord(f"n{b}", "h", 1))
            self.nodes[f"n{b}"].neighbor_up(PeerRecord(f"n{a}", "h", 1))
        self.queue: list[tuple[str, str, PlumtreeMessage]] = []
        self.delivered: dict[str, list[str]] = {}
        self.replies: list[ReplyReceived] = []
        self.eager = 0
        self.drop = drop
        self.now = 0.0

    def apply(self, node: str, actions: Sequence[PlumtreeAction]) -> None:
        for action in actions:
            if isinstance(action, Send):
                if isinstance(action.message, Eager):
                    self.eager += len(action.message.items)
                    if self.rng.random() < self.drop:
                        continue
                assert isinstance(action.message, (Eager, IHave, Graft, Prune, Replies))
                self.queue.append((node, action.peer.id, action.message))
            elif isinstance(action, Deliver):
                self.delivered.setdefault(action.mid, []).append(node)
            elif isinstance(action, ReplyReceived):
                self.replies.append(action)

    def run(self) -> None:
        for _ in range(100_000):
            if self.queue:
                src, dst, message = self.queue.pop(self.rng.randrange(len(self.queue)))
                self.apply(dst, self.nodes[dst].handle(self.now, src, message))
                continue
            pending = any(p._timers or p._lazy_queue or p._reply_queue for p in self.nodes.values())
            if not pending:
                return
            self.now += 0.05
            for name, p in self.nodes.items():
                self.apply(name, p.tick(self.now))
        raise AssertionError("did not settle")


def connected_edges(n: int, extra: list[tuple[int, int]]) -> set[tuple[int, int]]:
    edges = {(i, random.Random(i).randrange(i)) for i in range(1, n)}  # a random tree
    edges |= {(a % n, b % n) for a, b in extra if a % n != b % n}
    return edges


@settings(max_examples=60, deadline=None)
@given(
    st.integers(2, 30),
    st.lists(st.tuples(st.integers(0, 99), st.integers(0, 99)), max_size=60),
    st.integers(0, 1000),
    st.sampled_from([0.0]),
)
def test_every_node_delivers_every_message_exactly_once(
    n: int, extra: list[tuple[int, int]], seed: int, drop: float
) -> None:
    net = Net(connected_edges(n, extra), n, seed, drop)
    for k in range(4):
        origin = f"n{net.rng.randrange(n)}"
        net.apply(origin, net.nodes[origin].broadcast(net.now, f"m{k}", k))
        net.run()
        got = net.delivered[f"m{k}"]
        assert sorted(got) == sorted(net.nodes)  # everyone, once


def test_duplicates_prune_the_overlay_into_a_tree() -> None:
    n = 40
    rng = random.Random(3)
    extra = [(rng.randrange(n), rng.randrange(n)) for _ in range(120)]
    net = Net(connected_edges(n, extra), n, seed=4)
    net.apply("n0", net.nodes["n0"].broadcast(0.0, "warm", None))
    net.run()
    first = net.eager
    net.eager = 0
    net.apply("n7", net.nodes["n7"].broadcast(net.now, "next", None))
    net.run()
    assert first > 2 * n  # flooding the first time
    assert net.eager == n - 1  # then exactly the spanning tree


def test_lazy_announcement_repairs_a_lost_eager_push() -> None:
    net = Net({(0, 1), (1, 2), (0, 2)}, 3, seed=1)
    a, b, c = net.nodes["n0"], net.nodes["n1"], net.nodes["n2"]
    b.eager.pop("n0", None)
    b.lazy["n0"] = None
    a.eager.pop("n1", None)
    a.lazy["n1"] = None
    c.eager.pop("n1", None)
    c.lazy["n1"] = None
    actions = a.broadcast(0.0, "m", "x")
    # the push to n2 is lost; n1 only hears IHAVEs and must GRAFT
    net.apply("n0", [x for x in actions if not isinstance(x, Send)])
    net.run()
    assert sorted(net.delivered["m"]) == ["n0", "n1", "n2"]
    assert "n0" in b.eager or "n2" in b.eager


def test_replies_reach_the_origin_along_the_reverse_path() -> None:
    n = 25
    net = Net(connected_edges(n, []), n, seed=9)  # a tree: most nodes are far from n0
    net.apply("n0", net.nodes["n0"].broadcast(0.0, "ask", None))
    net.run()
    for name, p in net.nodes.items():
        if name != "n0":
            net.apply(name, p.reply(net.now, "ask", {"from": name}))
    net.run()
    assert sorted(r.replier for r in net.replies) == sorted(set(net.nodes) - {"n0"})
    assert all(r.mid == "ask" for r in net.replies)


def test_seen_set_is_bounded() -> None:
    from synapse_p2p.conversations._plumtree import PlumtreeConfig

    p = Plumtree("a", PlumtreeConfig(seen_max=10, cache_max=5))
    for i in range(100):
        p.broadcast(0.0, f"m{i}", None)
    assert len(p._seen) == 10
    assert len(p._cache) == 5


def test_a_neighbor_that_showed_it_holds_a_message_is_not_told_of_it() -> None:
    """An IHAVE from a lazy neighbor, or a duplicate it pushed, takes the message out of the
    announcements queued for that neighbor (both ends of a lazy link would otherwise announce
    each message to each other)."""
    p = Plumtree("a")
    for peer in ("b", "c", "d"):
        p.neighbor_up(PeerRecord(peer, "h", 1))
    p.handle(0.0, "b", Prune())
    p.handle(0.0, "c", Prune())  # b and c lazy, d eager
    p.handle(0.0, "d", Eager((EagerItem("m1", "o", 1, None), EagerItem("m2", "o", 1, None))))
    assert p.handle(0.0, "b", IHave((("m1", 1),))) == []  # b holds m1
    p.lazy.pop("c")
    p.eager["c"] = None
    p.handle(0.0, "c", Eager((EagerItem("m2", "o", 1, None),)))  # c pushed m2: c holds it
    announced = {
        a.peer.id: a.message.items
        for a in p.tick(1.0)
        if isinstance(a, Send) and isinstance(a.message, IHave)
    }
    assert announced == {"b": (("m2", 2),), "c": (("m1", 2),)}


def _announced(actions: Sequence[PlumtreeAction]) -> dict[str, tuple[tuple[str, int], ...]]:
    return {
        a.peer.id: a.message.items
        for a in actions
        if isinstance(a, Send) and isinstance(a.message, IHave)
    }


def test_lazy_fanout_announces_to_that_many_neighbors_in_turn() -> None:
    """With ``lazy_fanout=2`` and five lazy neighbors, each interval announces to two of
    them, the oldest queues first; the others keep their ids for their turn, and drop those
    the neighbor shows it holds meanwhile. A neighbor ``reachable`` rejects gets none."""
    p = Plumtree("a", PlumtreeConfig(lazy_interval=1.0, lazy_fanout=2))
    lazy = ["b", "c", "d", "e", "f"]
    for peer in [*lazy, "g"]:
        p.neighbor_up(PeerRecord(peer, "h", 1))
    for peer in lazy:
        p.handle(0.0, peer, Prune())
    p.handle(0.0, "g", Eager((EagerItem("m1", "o", 1, None),)))
    assert _announced(p.tick(0.0)) == {"b": (("m1", 2),), "c": (("m1", 2),)}
    p.handle(0.5, "d", IHave((("m1", 1),)))  # d holds m1: nothing left for d
    p.handle(0.5, "g", Eager((EagerItem("m2", "o", 1, None),)))
    assert _announced(p.tick(1.0)) == {"e": (("m1", 2), ("m2", 2)), "f": (("m1", 2), ("m2", 2))}
    assert _announced(p.tick(2.0)) == {"b": (("m2", 2),), "c": (("m2", 2),)}
    assert _announced(p.tick(3.0)) == {"d": (("m2", 2),)}  # (its queue began anew after m1)
    assert p.next_wakeup() == math.inf
    p.handle(3.5, "g", Eager((EagerItem("m3", "o", 1, None),)))
    actions = p.tick(4.0, reachable=lambda peer: peer in ("d", "f"))
    assert _announced(actions) == {"d": (("m3", 2),), "f": (("m3", 2),)}
    assert p.unannounced == 3  # b, c and e were not reachable


def test_without_lazy_fanout_every_lazy_neighbor_is_announced_to_at_once() -> None:
    p = Plumtree("a", PlumtreeConfig(lazy_interval=1.0))
    for peer in ("b", "c", "d", "e"):
        p.neighbor_up(PeerRecord(peer, "h", 1))
    for peer in ("b", "c", "d"):
        p.handle(0.0, peer, Prune())
    p.handle(0.0, "e", Eager((EagerItem("m1", "o", 1, None),)))
    assert set(_announced(p.tick(0.0))) == {"b", "c", "d"}
