"""The peer-record rules against the attacks they stop: renaming a live peer, claiming another
node's id, inventing or overriding members through gossip, keeping a dead member alive.

Two forms: end to end on loopback (real nodes, an attacker with a plain client) and at unit
level on a :class:`Membership` built by hand, where the caller's verified channel id
(``Connection.node_id``) is given directly.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import anyio
import pytest

from synapse_p2p import Client, Identity, Node, Peer, RemoteError
from synapse_p2p._config import NodeConfig
from synapse_p2p._hub import EventHub
from synapse_p2p._seams import LocalNode
from synapse_p2p.errors import SynapseError
from synapse_p2p.identity import DOMAIN_PEER_RECORD
from synapse_p2p.membership import JoinError, Membership
from synapse_p2p.membership._signing import RecordProof, proof_in, signed_bytes
from synapse_p2p.rpc import Connection, EndpointRegistry
from synapse_p2p.secure import SecurityPolicy
from tests.helpers import NodeTimings

pytestmark = pytest.mark.anyio

FAST: NodeTimings = {"heartbeat_interval": 0.3, "peer_timeout": 1.5}
SECRET = "correct horse battery staple"
#: Any refusal of a claim of another node's id: over plaintext (no channel yet) or over the
#: attacker's own secure channel.
REFUSED = r"signs its peer records|proved its id on a secure channel|caller proved it is node"


@pytest.fixture(autouse=True)
def _secret_said(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests say which secret they use (``./dev test`` sets ``SYNAPSE_SECRET``)."""
    monkeypatch.delenv("SYNAPSE_SECRET", raising=False)


def peer_dict(node_id: str, port: int, **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"id": node_id, "address": "127.0.0.1", "port": port, "swarm": "s",
                            "team": "default", "name": "x", "kind": "node", "capabilities": [],
                            "last_seen": 0.0}  # fmt: skip
    base.update(extra)
    return base


def entry(data: dict[str, Any]) -> dict[str, Any]:
    """A digest entry (age 0: "heard just now") from a peer dict, proof keys kept."""
    out = {k: v for k, v in data.items() if k != "last_seen"}
    return {**out, "age": 0.0, "legacy": False}


async def converged(nodes: list[Node]) -> None:
    ids = {n.node_id for n in nodes}
    with anyio.fail_after(10):
        while not all(set(n.peers) == ids - {n.node_id} for n in nodes):
            await anyio.sleep(0.01)


@contextlib.asynccontextmanager
async def swarm(*names: str, **settings: Any) -> AsyncIterator[list[Node]]:
    first = Node(bind="127.0.0.1", name=names[0], swarm="s", **FAST, **settings)
    async with first, contextlib.AsyncExitStack() as stack:
        nodes = [first]
        for name in names[1:]:
            node = Node(bind="127.0.0.1", name=name, swarm="s",
                        seeds=[f"127.0.0.1:{first.port}"], **FAST, **settings)  # fmt: skip
            await stack.enter_async_context(node)
            nodes.append(node)
        await converged(nodes)
        yield nodes


# -- end to end -----------------------------------------------------------------------------


async def test_a_heartbeat_with_a_live_peer_s_id_cannot_rename_it(anyio_backend: str) -> None:
    async with swarm("a", "b") as (a, b):
        b.capability("translate")
        evil = peer_dict(b.node_id, b.port, name="evil", capabilities=["admin"])
        client = Client("127.0.0.1", a.port)
        with pytest.raises(RemoteError, match=REFUSED) as refused:
            await client.call("_synapse.heartbeat", evil)
        assert refused.value.code == "bad_request"
        with pytest.raises(RemoteError, match=REFUSED):
            await client.call("_synapse.gossip", {"v": 1, "from": evil, "members": []})
        await anyio.sleep(0.5)
        seen = a.peers[b.node_id]
        assert (seen.name, seen.port) == ("b", b.port)
        assert "admin" not in seen.capabilities
        assert sum(a.membership.trust.refused.values()) >= 2
        assert await client.call("_synapse.ping") == "pong"  # still serving


async def test_gossip_with_a_copied_from_cannot_override_a_verified_member(
    anyio_backend: str,
) -> None:
    async with swarm("a", "b", "c") as (a, b, c):
        client = Client("127.0.0.1", a.port)
        b_signed = await Client("127.0.0.1", b.port).call("_synapse.record")
        c_signed = await Client("127.0.0.1", c.port).call("_synapse.record")
        made_up = "e" * 64
        members = [
            entry(peer_dict(c.node_id, c.port, name="evil")),  # unsigned rename
            entry(peer_dict(c.node_id, 9, name="c")),  # unsigned move
            entry({**c_signed, "name": "evil", "seq": c_signed["seq"] + 10**6}),  # forged
            entry(peer_dict(made_up, 9, name="made-up")),
        ]
        message = {"v": 1, "from": b_signed, "members": members}
        # A stranger replaying b's record: refused over its own channel (b proved its id on
        # one); over plaintext it would be b's word on b, nothing more.
        with contextlib.suppress(RemoteError):
            await client.call("_synapse.gossip", message)
        # b itself (a member lying about c) on b's own channel: heard, but not about c.
        liar = Client("127.0.0.1", a.port, identity=b.identity)
        with pytest.raises(RemoteError, match=r"1 member record\(s\) with a bad signature"):
            await liar.call("_synapse.gossip", message)
        with pytest.raises(RemoteError, match=REFUSED):  # c itself, unsigned
            await client.call("_synapse.gossip", {"v": 1, "from": peer_dict(
                c.node_id, c.port, name="evil"), "members": []})  # fmt: skip
        await anyio.sleep(1.0)
        seen = a.peers[c.node_id]
        assert (seen.name, seen.port, seen.verified) == ("c", c.port, True)
        assert a.membership.trust.refused["third_party"] >= 1
        # Without a secret an unsigned stranger may still join, but only as unverified.
        if made_up in a.peers:
            assert a.peers[made_up].verified is False


async def test_with_a_secret_gossip_cannot_invent_a_member(anyio_backend: str) -> None:
    async with swarm("a", "b", secret=SECRET) as (a, b):
        made_up = "e" * 64
        members = [entry(peer_dict(made_up, b.port, name="made-up"))]
        copied = {"v": 1, "from": b.self_peer().to_dict(), "members": members}
        with pytest.raises((RemoteError, SynapseError, OSError)):
            await Client("127.0.0.1", a.port).call("_synapse.gossip", copied)
        try:
            b_signed = await Client("127.0.0.1", b.port).call("_synapse.record")
            replayed = {"v": 1, "from": b_signed, "members": members}
            await Client("127.0.0.1", a.port).call("_synapse.gossip", replayed)
        except (SynapseError, OSError):
            pass  # a secure channel refuses the stranger outright: the attack fails earlier
        await anyio.sleep(0.5)
        assert made_up not in a.peers
        assert not [k for k in a.membership.table.candidates if k[0] == made_up]


async def test_with_a_secret_a_member_s_connection_cannot_claim_another_id(
    anyio_backend: str,
) -> None:
    async with swarm("a", "b", secret=SECRET) as (a, b):
        insider = Client("127.0.0.1", a.port, secret=SECRET)  # holds the secret, its own key
        b_signed = await Client("127.0.0.1", b.port, secret=SECRET).call("_synapse.record")
        claims = [
            ("_synapse.join", peer_dict("f" * 64, 9)),  # an unknown id, at its own address
            ("_synapse.heartbeat", {**b.self_peer().to_dict(), "port": 9, "name": "evil"}),
            (
                "_synapse.gossip",
                {"v": 1, "from": b_signed, "members": [entry(peer_dict("e" * 64, 9))]},
            ),
        ]
        for endpoint, claim in claims:
            with pytest.raises(RemoteError, match="caller proved it is node") as refused:
                await insider.call(endpoint, claim)
            assert refused.value.code == "bad_request"
        await anyio.sleep(0.5)
        assert "f" * 64 not in a.peers
        assert "e" * 64 not in a.peers
        assert (a.peers[b.node_id].port, a.peers[b.node_id].name) == (b.port, "b")
        assert await insider.call("_synapse.ping") == "pong"


def member(name: str, seed: Node, **settings: Any) -> Node:
    return Node(bind="127.0.0.1", name=name, swarm="s", seeds=[f"127.0.0.1:{seed.port}"],
                **FAST, **settings)  # fmt: skip


async def test_claiming_an_offline_node_s_id_at_another_address_fails(
    anyio_backend: str,
) -> None:
    async with Node(bind="127.0.0.1", name="a", swarm="s", **FAST) as a:
        b = member("b", a)
        async with b:
            await converged([a, b])
            b.membership.say_goodbye = False  # a crash: a notices by the silence
        with anyio.fail_after(10):
            while b.node_id in a.peers:
                await anyio.sleep(0.05)
        async with member("impostor", a, node_id=b.node_id) as impostor:
            with pytest.raises(JoinError, match=REFUSED):
                await impostor.join()
            await anyio.sleep(1.0)
            assert b.node_id not in a.peers


async def test_with_a_secret_an_unknown_id_cannot_be_claimed(anyio_backend: str) -> None:
    async with Node(bind="127.0.0.1", swarm="s", secret=SECRET, **FAST) as a:
        claimed = "f" * 64
        impostor = Node(bind="127.0.0.1", node_id=claimed, swarm="s",
                        seeds=[f"127.0.0.1:{a.port}"], **FAST)  # fmt: skip
        async with impostor:
            with pytest.raises(JoinError):
                await impostor.join()
            await anyio.sleep(0.5)
            assert claimed not in a.peers
            assert not [k for k in a.membership.table.candidates if k[0] == claimed]


async def test_a_dead_member_is_not_kept_alive_by_third_party_gossip(anyio_backend: str) -> None:
    async with Node(bind="127.0.0.1", name="a", swarm="s", **FAST) as a:
        # An unverified member of its own (no secret: allowed) that keeps vouching for c.
        async with member("liar", a, node_id="d" * 64) as liar:
            c = member("c", a)
            async with c:
                await converged([a, c, liar])
                c_signed = await Client("127.0.0.1", c.port).call("_synapse.record")
                c.membership.say_goodbye = False
            stale = [entry(peer_dict(c.node_id, c.port, name="c")), entry(c_signed)]
            message = {"v": 1, "from": liar.self_peer().to_dict(), "members": stale}
            client = Client("127.0.0.1", a.port)
            with anyio.fail_after(6 * FAST["peer_timeout"]):  # 4 x after its last record
                while c.node_id in a.peers:
                    await client.call("_synapse.gossip", message)
                    await anyio.sleep(0.05)


async def test_peers_say_whether_they_proved_their_key(anyio_backend: str) -> None:
    async with swarm("a", "b") as (a, b):
        assert a.peers[b.node_id].verified is True
        assert b.peers[a.node_id].verified is True
        unverified = Node(bind="127.0.0.1", node_id="u" * 64, swarm="s",
                          seeds=[f"127.0.0.1:{a.port}"], **FAST)  # fmt: skip
        async with unverified:
            await converged([a, b, unverified])
            assert a.peers[unverified.node_id].verified is False
            assert b.peers[unverified.node_id].verified is False  # learned second-hand
            assert unverified.peers[a.node_id].verified is True


async def test_a_member_s_new_name_and_capabilities_spread_signed(anyio_backend: str) -> None:
    async with swarm("a", "b", "c") as (a, b, c):
        c.name = "renamed"
        c.capability("translate")
        with anyio.fail_after(10):
            while not all(
                n.peers[c.node_id].name == "renamed"
                and "translate" in n.peers[c.node_id].capabilities
                for n in (a, b)
            ):
                await anyio.sleep(0.05)
        assert a.membership.trust.refused == {}


# -- unit level: the rules with a given channel id -------------------------------------------


class NoCalls:
    async def call(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("no call expected")

    async def session_info(self, host: str, port: int) -> dict[str, Any]:
        raise AssertionError("no call expected")

    def is_legacy(self, host: str, port: int) -> bool:
        return False

    def connected(self, host: str, port: int) -> bool:
        return False

    def retain(self, addresses: Any) -> None:
        pass

    def alias(self, address: Any, via: Any, node_id: str) -> bool:
        return False


def membership(
    *, secret: str | None = None, registry: EndpointRegistry | None = None
) -> tuple[Membership, SecurityPolicy]:
    config = NodeConfig.build(bind="127.0.0.1", swarm="s", secret=secret)
    me = Identity.generate()
    local = LocalNode(me.node_id, name="me", swarm="s", address="127.0.0.1", port=7000,
                      identity=me)  # fmt: skip
    policy = SecurityPolicy(config.keyring)
    service = Membership(config, local, registry=registry or EndpointRegistry(),
                         caller=NoCalls(), hub=EventHub(), policy=policy)  # fmt: skip
    return service, policy


def signed(identity: Identity, *, port: int = 8000, name: str = "x", seq: int = 1) -> Any:
    peer = Peer(identity.node_id, "127.0.0.1", port, swarm="s", team="default", name=name)
    sig = identity.sign(DOMAIN_PEER_RECORD, signed_bytes(peer, seq))
    return peer, {**peer.to_dict(), **RecordProof(seq, identity.public_key, sig).to_wire()}


def channel(node_id: str | None) -> Connection:
    return Connection.from_address("127.0.0.1", 40000, node_id)


@pytest.mark.parametrize("secret", [None, SECRET])
async def test_a_caller_proved_to_be_another_node_is_refused(
    anyio_backend: str, secret: str | None
) -> None:
    service, _ = membership(secret=secret)
    victim, attacker = Identity.generate(), Identity.generate()
    peer, data = signed(victim)
    if secret is not None:
        with pytest.raises(RemoteError, match="caller proved it is node") as refused:
            service.direct(peer, data, channel(attacker.node_id), "join")
        assert refused.value.code == "bad_request"
        assert service.trust.refused["wrong_caller"] == 1
    else:  # no secret: another node's channel is no proof, the victim's signature is
        assert service.direct(peer, data, channel(attacker.node_id), "join").proof is not None
        with pytest.raises(RemoteError, match="signs its peer records"):
            service.direct(peer, peer.to_dict(), channel(attacker.node_id), "join")
    # Its own channel is proof enough, signed or not.
    assert service.direct(peer, {}, channel(victim.node_id), "join").channel


@pytest.mark.parametrize("secret", [None, SECRET])
async def test_a_record_signed_by_another_key_is_refused(
    anyio_backend: str, secret: str | None
) -> None:
    service, _ = membership(secret=secret)
    victim, attacker = Identity.generate(), Identity.generate()
    peer, data = signed(victim)
    _, theirs = signed(attacker)
    forged = {**data, "key": theirs["key"], "sig": theirs["sig"]}
    with pytest.raises(RemoteError, match="not signed by that node's key"):
        service.direct(peer, forged, channel(None), "heartbeat")
    renamed = {**data, "name": "evil"}
    with pytest.raises(RemoteError, match="not signed by that node's key"):
        service.direct(replace(peer, name="evil"), renamed, channel(None), "heartbeat")


async def test_with_a_secret_an_unproven_claim_is_refused(anyio_backend: str) -> None:
    service, _ = membership(secret=SECRET)
    stranger = Peer("f" * 64, "127.0.0.1", 9, swarm="s", team="default")
    with pytest.raises(RemoteError, match="must prove its id"):
        service.direct(stranger, stranger.to_dict(), channel(None), "join")
    assert service.table.candidates == {}
    peer, data = signed(Identity.generate())
    assert service.direct(peer, data, channel(None), "join").proof is not None


async def test_an_id_seen_on_a_channel_is_never_believed_over_plaintext(
    anyio_backend: str,
) -> None:
    service, policy = membership()
    node = Identity.generate()
    peer, data = signed(node)
    policy.note_verified(node.node_id)
    for carrier in (data, peer.to_dict()):  # even its own signed record, replayed
        with pytest.raises(RemoteError, match="proved its id on a secure channel"):
            service.direct(peer, carrier, channel(None), "gossip")
        with pytest.raises(RemoteError, match="proved its id on a secure channel"):
            service.direct(peer, carrier, channel(Identity.generate().node_id), "gossip")
    assert service.trust.refused["plaintext"] == 2
    assert service.trust.refused["wrong_caller"] == 2


async def test_signed_content_changes_only_with_a_newer_record(anyio_backend: str) -> None:
    service, _ = membership()
    node = Identity.generate()
    own = channel(node.node_id)
    peer, data = signed(node, seq=5)
    service.table.verified(peer, anyio.current_time(), legacy=False)  # an unsigned member...
    service.direct(peer, data, own, "heartbeat")  # ...now held signed
    state = service.table.get(node.node_id)
    assert state is not None
    assert state.seq == 5
    assert state.verified
    assert state.peer.verified
    older, old_data = signed(node, name="old", seq=4)
    service.direct(older, old_data, own, "heartbeat")
    assert service.table.peers[node.node_id].peer.name == "x"
    service.direct(replace(peer, name="evil"), {}, own, "heartbeat")
    assert service.table.peers[node.node_id].peer.name == "x"  # channel: alive, not renamed
    renamed, renamed_data = signed(node, name="new", seq=6)
    service.direct(renamed, renamed_data, own, "heartbeat")
    assert service.table.peers[node.node_id].peer.name == "new"
    moved, moved_data = signed(node, name="new", port=8001, seq=7)
    service.direct(moved, moved_data, own, "heartbeat")
    # A move is dialed first: the held record stays until the new address answers as it.
    assert service.table.peers[node.node_id].peer.port == 8000
    assert (node.node_id, "127.0.0.1", 8001) in service.table.candidates


async def test_a_copied_record_is_news_never_proof_of_life(anyio_backend: str) -> None:
    """A valid signature proves a record's content, not who sends it: a copy replayed over
    another node's channel or over plaintext neither keeps a member alive nor makes its
    sender a trusted gossip partner, and it is never a goodbye (each of these worked on the
    code before this rule)."""
    service, _ = membership()
    member, mallory = Identity.generate(), Identity.generate()
    peer, data = signed(member)
    now = anyio.current_time()
    service.table.verified(peer, now, legacy=False, proof=proof_in(data))
    for carrier in (channel(mallory.node_id), channel(None)):
        heard = service.table.peers[member.node_id].heard
        service.direct(peer, data, carrier, "heartbeat")
        assert service.table.peers[member.node_id].heard == heard  # not heard from
    # A dead member's copied record does not keep it alive.
    service.table.expire(now + 100)
    assert member.node_id not in service.peers
    service.direct(peer, data, channel(None), "heartbeat")
    assert member.node_id not in service.peers


async def test_a_copied_from_is_not_a_trusted_gossip_sender(anyio_backend: str) -> None:
    """b is held signed, learned through gossip (never seen on a channel here); mallory sends
    gossip over its own channel with b's record copied as "from": the made-up member in its
    digest is not taken as alive (on the code before this rule it was, with no dial)."""
    registry = EndpointRegistry()
    service, _ = membership(registry=registry)
    b, mallory = Identity.generate(), Identity.generate()
    peer, data = signed(b)
    service.table.verified(peer, anyio.current_time(), legacy=False, proof=proof_in(data))
    invented = Peer("e" * 64, "192.0.2.7", 80, swarm="s", team="default", name="ghost")
    gossip = registry.handlers()["_synapse.gossip"]
    message = {"v": 1, "from": data, "members": [entry(invented.to_dict())]}
    await gossip(message, connection=channel(mallory.node_id))
    assert invented.id not in service.peers
    assert invented.id not in service.table.peers
    leave = registry.handlers()["_synapse.leave"]
    await leave(data, connection=channel(mallory.node_id))  # a copy is not a goodbye
    await leave(data, connection=channel(None))
    assert service.table.peers[b.node_id].alive


async def test_origins_are_dialed_only_where_their_record_says(anyio_backend: str) -> None:
    open_swarm, _ = membership()
    stranger = Peer("f" * 64, "127.0.0.1", 9, swarm="s", team="default")
    assert open_swarm.dialable(stranger) == stranger  # no secret, never seen: as 2.5.0
    node = Identity.generate()
    peer, data = signed(node)
    open_swarm.direct(peer, data, channel(None), "join")  # a candidate, being verified
    assert open_swarm.dialable(replace(peer, port=6666)) == peer
    open_swarm.table.verified(peer, anyio.current_time(), legacy=False, proof=proof_in(data))
    open_swarm.table.silenced(peer.id, anyio.current_time())  # offline now
    open_swarm.table.candidates.clear()
    assert open_swarm.dialable(replace(peer, port=6666)) is None  # its record says otherwise
    held = open_swarm.dialable(peer)  # the record held (its last_seen: when it was taken)
    assert held is not None
    assert (held.id, held.address, held.port) == (peer.id, peer.address, peer.port)
    secured, _ = membership(secret=SECRET)
    assert secured.dialable(stranger) is None


# -- mDNS sightings: unsigned hints -----------------------------------------------------------


async def test_an_mdns_sighting_cannot_rename_a_member_held_signed(anyio_backend: str) -> None:
    service, _ = membership()
    node = Identity.generate()
    peer, data = signed(node)
    service.table.verified(peer, anyio.current_time(), legacy=False, proof=proof_in(data))
    service.discovered(replace(peer, name="evil", capabilities=["admin"]))
    held = service.table.peers[node.node_id].peer
    assert (held.name, held.capabilities) == ("x", [])
    service.discovered(replace(peer, port=6666))  # another address: not even a candidate
    assert not [k for k in service.table.candidates if k[2] == 6666]


@pytest.mark.parametrize("secret", [None, SECRET])
async def test_an_mdns_sighting_joins_with_the_record_signed_at_that_address(
    anyio_backend: str, secret: str | None
) -> None:
    async with (
        Node(bind="127.0.0.1", name="a", swarm="s", secret=secret, **FAST) as a,
        Node(bind="127.0.0.1", name="b", swarm="s", secret=secret, **FAST) as b,
    ):
        sighting = Peer(b.node_id, "127.0.0.1", b.port, swarm="s", team="default", name="bogus")
        a.membership.discovered(sighting)
        with anyio.fail_after(10):
            while b.node_id not in a.peers:
                await anyio.sleep(0.02)
        seen = a.peers[b.node_id]
        assert (seen.name, seen.verified) == ("b", True)  # the signed record, not the TXT
