"""News relayed over the views is not pushed back to the neighbors known to hold it (sans-IO:
the membership service's push builder, driven directly)."""

from __future__ import annotations

from typing import Any

import pytest

from synapse_p2p import Node, Peer
from synapse_p2p.membership._signing import RecordProof
from synapse_p2p.membership._table import PeerState

pytestmark = pytest.mark.anyio


class Calls:
    """Stands in for the rounds' task group: records the gossip calls started."""

    def __init__(self) -> None:
        self.sent: dict[str, dict[str, Any]] = {}

    def start_soon(self, fn: Any, peer: Peer, message: dict[str, Any], interval: float) -> None:
        self.sent[peer.id] = message


def member(name: str, seq: int = 5) -> PeerState:
    peer = Peer(id=name * 8, address="10.0.0.9", port=7000, name=name)
    return PeerState(peer, 0.0, False, proof=RecordProof(seq, b"k" * 32, b"s" * 64))


@pytest.fixture
def node() -> Node:
    return Node(bind="127.0.0.1", port=7000, name="me", partial_views=True)


def entry(state: PeerState, seq: int | None = None) -> dict[str, Any]:
    out = {"id": state.peer.id, "address": state.peer.address, "port": state.peer.port}
    out["seq"] = state.seq if seq is None else seq
    return out


async def test_a_push_leaves_out_what_a_neighbor_holds(node: Node) -> None:
    m = node.membership
    x, y = member("x"), member("y")
    b, c, d = member("b").peer, member("c").peer, member("d").peer
    news = [entry(x), entry(y)]
    holders = {x.peer.id: {b.id, c.id}, y.peer.id: {c.id}}
    calls = Calls()
    m._gossip_to(calls, [b, c, d], 1.0, news, holders=holders)  # type: ignore[arg-type]
    assert [e["id"] for e in calls.sent[b.id]["members"]] == [y.peer.id]
    assert c.id not in calls.sent  # it holds all of it: no call
    assert calls.sent[d.id]["members"] == news
    # A push carrying notices, or our renewed record, still goes, without what it holds.
    for kwargs in ({"dead": [[x.peer.id, 5]]}, {"keep": True}):
        calls = Calls()
        m._gossip_to(calls, [c], 1.0, news, holders=holders, **kwargs)  # type: ignore[arg-type]
        assert calls.sent[c.id]["members"] == []


def test_a_neighbor_that_sends_a_record_holds_it(node: Node) -> None:
    m = node.membership
    x, y, z = member("x"), member("y"), member("z", seq=7)
    for state in (x, y, z):
        m.table.peers[state.peer.id] = state
    m._news = {x.peer.id: False, z.peer.id: False}
    m._held_by("bbbb", [(x.peer.id, 5), (y.peer.id, 5), (z.peer.id, 6), ("nobody", 1)])
    # y is no news here; the sender's record of z is older than ours: it still needs it.
    assert m._holders == {x.peer.id: {"bbbb"}}
    m._held_by("cccc", [(x.peer.id, "5"), (z.peer.id, 8)])  # (a malformed seq is skipped)
    assert m._holders == {x.peer.id: {"bbbb"}, z.peer.id: {"cccc"}}
