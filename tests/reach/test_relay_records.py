"""Relayed routes in the signed peer record: a node reserved on a relay says so in its own
record, and every member that verifies the record reaches it through the relay with no
``add_route`` anywhere; a forged route is refused (the signature covers it); the route goes
when the record drops it or the member leaves."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import anyio
import pytest

from synapse_p2p import Client, Node, Peer, RemoteError
from synapse_p2p._record_extras import RecordExtras, RelayHint, extras_from_wire
from synapse_p2p.identity import Identity
from synapse_p2p.membership._signing import (
    MalformedProof,
    RecordProof,
    RecordSigner,
    RecordVerifier,
    proof_in,
)
from synapse_p2p.relay import RelayTransport
from synapse_p2p.relay._advertised import MAX_UNCHECKED_ROUTES, AdvertisedRoutes
from tests.relay.test_relay_client import Unreachable
from tests.relay.test_relay_swarm import free_port

pytestmark = pytest.mark.anyio

FAST: dict[str, Any] = {"bind": "127.0.0.1", "heartbeat_interval": 0.2, "peer_timeout": 3.0}


@pytest.fixture(autouse=True)
def _no_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SYNAPSE_SECRET", raising=False)


async def until(check: Callable[[], bool], timeout: float = 15) -> None:
    with anyio.fail_after(timeout):
        while not check():
            await anyio.sleep(0.02)


def _signed(extras: RecordExtras | None = None) -> tuple[Peer, RecordProof]:
    identity = Identity.generate()
    peer = Peer(id=identity.node_id, address="10.1.0.2", port=7000, name="b")
    signer = RecordSigner(identity, wall_clock=lambda: 1000.0, refresh=60)
    return peer, signer.proof(peer, 0.0, extras or RecordExtras())


HINT = RelayHint("198.18.0.1", 9000, "r" * 64)


# -- the record ---------------------------------------------------------------------------------


def test_the_signature_covers_the_relays() -> None:
    peer, proof = _signed(RecordExtras((HINT,)))
    wire = proof.to_wire()
    assert wire["relays"] == [["198.18.0.1", 9000, "r" * 64]]
    parsed = proof_in({**peer.to_dict(), **wire})
    assert parsed == proof
    assert RecordVerifier().check(peer, parsed)
    # A relay added to a record signed without one, or another relay put in: both break it.
    plain_peer, plain = _signed()
    assert RecordVerifier().check(plain_peer, plain)
    added = proof_in({**plain.to_wire(), "relays": [["6.6.6.6", 1, "e" * 64]]})
    assert added is not None
    assert added.extras.relays
    assert not RecordVerifier().check(plain_peer, added)
    swapped = replace(proof, extras=RecordExtras((RelayHint("6.6.6.6", 1, "e" * 64),)))
    assert not RecordVerifier().check(peer, swapped)
    dropped = replace(proof, extras=RecordExtras())  # nor can they be taken out
    assert not RecordVerifier().check(peer, dropped)
    flag = replace(plain, extras=RecordExtras(relay=True))
    assert not RecordVerifier().check(plain_peer, flag)


def test_a_record_without_extras_is_signed_as_before() -> None:
    _peer, proof = _signed()
    assert set(proof.to_wire()) == {"seq", "key", "sig"}


@pytest.mark.parametrize(
    "bad",
    [
        {"relays": "198.18.0.1:9000"},
        {"relays": [["198.18.0.1", 9000]]},
        {"relays": [["198.18.0.1", 0, "r"]]},
        {"relays": [["", 9000, "r"]]},
        {"relays": [["h", 1, "r"]] * 5},
        {"relay": "yes"},
    ],
)
def test_malformed_extras_are_refused_with_the_key_named(bad: dict[str, Any]) -> None:
    _peer, proof = _signed()
    with pytest.raises(MalformedProof, match="relay"):
        proof_in({**proof.to_wire(), **bad})
    with pytest.raises(ValueError, match="relay"):
        extras_from_wire(bad)


# -- routes from records (sans-IO) --------------------------------------------------------------


def test_routes_follow_the_newest_checked_record() -> None:
    transport = RelayTransport()
    routes = AdvertisedRoutes(transport, "me", lambda: ("127.0.0.1", 1))
    peer, proof = _signed(RecordExtras((HINT,)))
    assert routes.learned(peer, proof)
    route = transport.route_for("10.1.0.2", 7000)
    assert route is not None
    assert (route.relay, route.node_id, route.relay_node_id) == (
        ("198.18.0.1", 9000),
        peer.id,
        "r" * 64,
    )
    # an older copy changes nothing
    assert not routes.learned(peer, replace(proof, seq=proof.seq - 1, extras=RecordExtras()))
    assert transport.route_for("10.1.0.2", 7000) is not None
    # a newer record without relays removes the route
    assert routes.learned(peer, replace(proof, seq=proof.seq + 1, extras=RecordExtras()))
    assert transport.route_for("10.1.0.2", 7000) is None
    # back, then the member leaves
    assert routes.learned(peer, replace(proof, seq=proof.seq + 2))
    routes.forgotten(peer.id)
    assert transport.routes == {}


def test_records_without_routes_are_not_held_and_a_removed_route_stays_ordered() -> None:
    transport = RelayTransport()
    routes = AdvertisedRoutes(transport, "me", lambda: ("127.0.0.1", 1))
    members = [_signed() for _ in range(3)]
    for peer, proof in members:  # most members: no relays, nothing kept per member
        assert not routes.learned(peer, proof)
    assert routes._held == {}
    peer, proof = _signed(RecordExtras((HINT,)))
    assert routes.learned(peer, proof)
    assert routes.learned(peer, replace(proof, seq=proof.seq + 1, extras=RecordExtras()))
    assert transport.route_for("10.1.0.2", 7000) is None
    assert list(routes._held) == [peer.id]  # what is left of the route orders older copies
    assert not routes.learned(peer, proof)  # the older copy with relays changes nothing
    assert transport.route_for("10.1.0.2", 7000) is None


def test_a_refused_route_and_a_relay_member_are_held_so_copies_change_nothing() -> None:
    transport = RelayTransport()
    other = Peer(id="o" * 64, address="10.1.0.2", port=7000)
    routes = AdvertisedRoutes(transport, "me", lambda: ("127.0.0.1", 1), {other.id: other})
    peer, proof = _signed(RecordExtras((HINT,)))
    for _ in range(3):  # the address is another member's: refused once, copies ignored
        assert not routes.learned(peer, proof)
    assert routes.refused == 1
    relay, relay_proof = _signed(RecordExtras(relay=True))
    assert not routes.learned(relay, relay_proof)
    moved = replace(relay, address="10.1.0.9")
    assert not routes.learned(
        moved, replace(relay_proof, seq=relay_proof.seq + 1, extras=RecordExtras())
    )
    assert routes.relay_members == {}
    assert not routes.learned(relay, relay_proof)  # an older copy brings back nothing
    assert routes.relay_members == {}


def test_a_record_cannot_take_the_address_of_another_member() -> None:
    transport = RelayTransport()
    other = Peer(id="o" * 64, address="10.1.0.2", port=7000)
    routes = AdvertisedRoutes(transport, "me", lambda: ("127.0.0.1", 1), {other.id: other})
    peer, proof = _signed(RecordExtras((HINT,)))
    assert not routes.learned(peer, proof)
    assert transport.routes == {}
    assert routes.refused == 1
    # nor this node's own address, nor route a node through itself
    mine = AdvertisedRoutes(transport, "me", lambda: ("10.1.0.2", 7000))
    assert not mine.learned(peer, proof)
    own = RecordExtras((RelayHint("h", 1, peer.id),))
    assert not AdvertisedRoutes(transport, "me", lambda: ("h", 2)).learned(
        peer, replace(proof, extras=own)
    )
    assert transport.routes == {}


def test_relay_members_are_known_from_their_records() -> None:
    routes = AdvertisedRoutes(RelayTransport(), "me", lambda: ("127.0.0.1", 1))
    peer, proof = _signed(RecordExtras(relay=True))
    routes.learned(peer, proof)
    assert list(routes.relay_members) == [peer.id]
    routes.learned(peer, replace(proof, seq=proof.seq + 1, extras=RecordExtras()))
    assert routes.relay_members == {}


# -- end to end (loopback) ----------------------------------------------------------------------


async def test_members_reach_a_reserved_node_through_the_relay_its_record_names(
    anyio_backend: str,
) -> None:
    b_port = free_port()
    relay = Node(name="relay", relay=True, transport=Unreachable(b_port), **FAST)
    async with relay:
        where = f"127.0.0.1:{relay.port}"
        a = Node(name="a", transport=Unreachable(b_port), seeds=[where], **FAST)
        b = Node(name="b", port=b_port, relays=[where], seeds=[where], **FAST)

        @b.endpoint("whoami", publish=False)
        async def whoami() -> str:
            return "b"

        async with a, b:
            assert b.self_peer().id == b.node_id
            await until(lambda: all(len(n.peers) == 2 for n in (relay, a, b)))
            # nobody was told a route: each learned it from B's signed record
            for node in (relay, a):
                route = node.relay.routes[("127.0.0.1", b_port)]
                assert (route.node_id, route.relay) == (b.node_id, ("127.0.0.1", relay.port))
            assert await a.call_peer(a.peers[b.node_id], "whoami") == "b"
            assert b.node_id in relay.relay.advertised.routed()
            # the relay's own record says it is one
            assert relay.node_id in a.relay.advertised.relay_members
        # B left: its route goes
        await until(lambda: not a.relay.routes)
        assert not relay.relay.routes


async def test_a_forged_route_in_gossip_is_refused(anyio_backend: str) -> None:
    relay = Node(name="relay", relay=True, **FAST)
    async with relay:
        where = f"127.0.0.1:{relay.port}"
        a = Node(name="a", seeds=[where], **FAST)
        c = Node(name="c", seeds=[where], **FAST)
        async with a, c:
            await until(lambda: all(len(n.peers) == 2 for n in (relay, a, c)))
            c_signed = await Client("127.0.0.1", c.port).call("_synapse.record")
            relay_signed = await Client("127.0.0.1", relay.port).call("_synapse.record")
            forged_relays = [["127.0.0.1", relay.port, relay.node_id]]
            members = [
                # c's record, newer and sending traffic to c through the relay: not c's word
                {**c_signed, "seq": c_signed["seq"] + 10**6, "relays": forged_relays},
                # c's own current record with a relay slipped in beside its signature
                {**c_signed, "relays": forged_relays},
            ]
            for member in members:
                member.pop("last_seen", None)
                member.update(age=0.0, legacy=False)
            liar = Client("127.0.0.1", a.port, identity=relay.identity)
            message = {"v": 1, "from": relay_signed, "members": members}
            with pytest.raises(RemoteError, match=r"with a bad signature"):
                await liar.call("_synapse.gossip", message)
            await anyio.sleep(0.5)
            assert a.relay.routes == {}
            assert sum(a.membership.trust.refused.values()) >= 1
            assert await Client("127.0.0.1", c.port).call("_synapse.ping") == "pong"


def test_a_route_names_every_relay_of_the_record() -> None:
    transport = RelayTransport()
    routes = AdvertisedRoutes(transport, "me", lambda: ("127.0.0.1", 1))
    second = RelayHint("198.18.0.9", 9001, "s" * 64)
    peer, proof = _signed(RecordExtras((HINT, second)))
    assert routes.learned(peer, proof)
    route = transport.route_for("10.1.0.2", 7000)
    assert route is not None
    assert route.relay == ("198.18.0.1", 9000)
    assert route.fallbacks == ((("198.18.0.9", 9001), "s" * 64),)


async def test_a_route_falls_back_to_the_next_relay(anyio_backend: str) -> None:
    async with (
        Node(name="relay", relay=True, **FAST) as relay,
        Node(name="empty", relay=True, **FAST) as empty,
    ):
        b = Node(name="b", relays=[f"127.0.0.1:{relay.port}"], **FAST)

        @b.endpoint("whoami", publish=False)
        async def whoami() -> str:
            return "b"

        async with b:
            with anyio.fail_after(10):
                await b.relay.wait_reserved()
            good = (("127.0.0.1", relay.port), relay.node_id)
            # the first relay is down, or does not hold b's reservation: the next one is tried
            for first in (("127.0.0.1", free_port()), ("127.0.0.1", empty.port)):
                via = RelayTransport()
                via.add_route(("127.0.0.1", b.port), relay=first, node_id=b.node_id,
                              fallbacks=[good])  # fmt: skip
                client = Client("127.0.0.1", b.port, transport=via)
                assert await client.call("whoami") == "b"


async def test_a_record_cannot_take_the_address_of_a_node_not_yet_a_member(
    anyio_backend: str,
) -> None:
    # Anyone can sign a record naming any address and a relay of its own. A node answering
    # at that address directly wins: the route is tried only when the address cannot be
    # connected to (before, every dial of the address went to the record's relay).
    async with Node(name="v", **FAST) as v:
        identity = Identity.generate()
        claim = Peer(id=identity.node_id, address="127.0.0.1", port=v.port, name="claimant")
        signer = RecordSigner(identity, wall_clock=lambda: 1000.0, refresh=60)
        hint = RelayHint("127.0.0.1", free_port(), "r" * 64)  # a relay nobody runs
        proof = signer.proof(claim, 0.0, RecordExtras((hint,)))
        transport = RelayTransport()
        assert AdvertisedRoutes(transport, "me", lambda: ("127.0.0.1", 1)).learned(claim, proof)
        assert transport.route_for("127.0.0.1", v.port) is not None
        async with Client("127.0.0.1", v.port, transport=transport) as client:
            info = await client.call("_synapse.info")
        assert info["id"] == v.node_id


def test_routes_for_nodes_not_yet_members_are_bounded() -> None:
    transport = RelayTransport()
    routes = AdvertisedRoutes(transport, "me", lambda: ("127.0.0.1", 1))
    for i in range(MAX_UNCHECKED_ROUTES + 5):
        identity = Identity.generate()
        peer = Peer(id=identity.node_id, address="10.9.0.1", port=1000 + i)
        proof = RecordSigner(identity, wall_clock=lambda: 1000.0, refresh=60).proof(
            peer, 0.0, RecordExtras((HINT,))
        )
        routes.learned(peer, proof)
    assert len(transport.routes) == MAX_UNCHECKED_ROUTES
    assert routes.refused == 5
