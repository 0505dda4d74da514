"""Membership on real loopback sockets, under trio and asyncio."""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import AsyncIterator
from typing import Any, TypedDict

import anyio
import pytest

from synapse_p2p import Client, Identity, Node, Peer, RemoteError
from synapse_p2p.events import PeerJoined
from synapse_p2p.identity import DOMAIN_PEER_RECORD
from synapse_p2p.membership import JoinError
from synapse_p2p.membership._gossip import MAX_DIGEST, digest_entry
from synapse_p2p.membership._signing import RecordProof, signed_bytes
from tests.helpers import NodeTimings

pytestmark = pytest.mark.anyio

FAST: NodeTimings = {"heartbeat_interval": 0.3, "peer_timeout": 1.5}


class Scope(TypedDict, total=False):
    swarm: str
    team: str


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def peer_dict(node_id: str, port: int, **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": node_id,
        "address": "127.0.0.1",
        "port": port,
        "swarm": "s",
        "team": "default",
        "name": "x",
        "kind": "node",
        "capabilities": [],
        "last_seen": 0.0,
    }
    base.update(extra)
    return base


@pytest.fixture
def no_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    """Raw, unsigned peer claims from a plain client: a test of the open swarm
    (``./dev test`` sets ``SYNAPSE_SECRET`` for its second pass)."""
    monkeypatch.delenv("SYNAPSE_SECRET", raising=False)


async def converged(nodes: list[Node]) -> None:
    ids = {n.node_id for n in nodes}
    with anyio.fail_after(10):
        while not all(set(n.peers) == ids - {n.node_id} for n in nodes):
            await anyio.sleep(0.01)


@contextlib.asynccontextmanager
async def started(*nodes: Node) -> AsyncIterator[None]:
    async with contextlib.AsyncExitStack() as stack:
        for node in nodes:
            await stack.enter_async_context(node)
        yield


async def test_nodes_join_through_a_seed_at_start(anyio_backend: str) -> None:
    seed = Node(bind="127.0.0.1", name="seed", swarm="s")
    joined: list[str] = []

    @seed.on("peer.joined")
    async def on_join(peer: Peer) -> None:
        joined.append(peer.name)

    async with seed:
        others = [
            Node(bind="127.0.0.1", name=f"n{i}", swarm="s", seeds=[f"127.0.0.1:{seed.port}"])
            for i in range(4)
        ]
        async with started(*others):
            await converged([seed, *others])
            peer = others[0].peers[seed.node_id]
            assert peer.to_dict().keys() == peer_dict("x", 1).keys()
            assert (peer.name, peer.address, peer.port, peer.swarm, peer.team) == (
                "seed",
                "127.0.0.1",
                seed.port,
                "s",
                "default",
            )
            listed = await Client("127.0.0.1", seed.port).call("_synapse.peers")
            assert sorted(p["name"] for p in listed) == ["n0", "n1", "n2", "n3"]
            with anyio.fail_after(5):
                while len(joined) < 4:
                    await anyio.sleep(0.01)
            assert sorted(joined) == ["n0", "n1", "n2", "n3"]


async def test_a_joiner_takes_every_member_of_a_seed_holding_more_than_a_digest(
    anyio_backend: str,
) -> None:
    """A seed answers a join with all its members, and the joiner reads them all, not only
    the first ``MAX_DIGEST`` (one digest's worth: past 256 members a joiner used to miss the
    newest until the rounds' digests brought them). Views off and rounds a minute apart: the
    members here exist only as signed records (their loopback ports are closed)."""
    timings: dict[str, Any] = {"heartbeat_interval": 60.0, "peer_timeout": 600.0}
    kw: dict[str, Any] = {"bind": "127.0.0.1", "swarm": "s", "partial_views": False, **timings}
    seed = Node(name="seed", **kw)
    async with seed:
        entries = []
        for i in range(MAX_DIGEST + 44):
            identity = Identity.generate()
            peer = Peer(identity.node_id, "127.0.0.1", 1, swarm="s", team="default", name=f"m{i}")
            sig = identity.sign(DOMAIN_PEER_RECORD, signed_bytes(peer, 1))
            entries.append(digest_entry(peer, 0.0, False, RecordProof(1, identity.public_key, sig)))
        for start in range(0, len(entries), MAX_DIGEST):
            seed.membership._apply_digest(
                entries[start : start + MAX_DIGEST], "f" * 64, trusted=True
            )
        assert len(seed.peers) == len(entries)
        joiner = Node(name="joiner", seeds=[f"127.0.0.1:{seed.port}"], **kw)
        async with joiner:
            with anyio.fail_after(10):  # the seed and all its members, from the join
                while len(joiner.peers) < len(entries) + 1:
                    await anyio.sleep(0.01)
            assert joiner.membership.messages_sent <= 1  # (its first round's, if any)


async def test_join_endpoint_shapes_and_rules(anyio_backend: str, no_secret: None) -> None:
    async with Node(bind="127.0.0.1", swarm="s") as node:
        client = Client("127.0.0.1", node.port)
        reply = await client.call("_synapse.join", peer_dict("a" * 64, 1))
        assert reply["accepted"] is True
        assert reply["self"] == {
            **node.self_peer().to_dict(),
            "last_seen": reply["self"]["last_seen"],
        }
        assert [p["id"] for p in reply["peers"]] == ["a" * 64]  # includes the joiner
        beat = await client.call("_synapse.heartbeat", peer_dict("a" * 64, 1))
        assert beat == {"ok": True, "self": node.node_info()}
        for bad, message in [
            (peer_dict("b", 1, swarm="other"), "peer requested a different swarm"),
            (peer_dict("b", 1, team="red"), "peer requested a different team"),
            (
                {"id": "b", "address": "127.0.0.1", "port": 1, "swarm": "s"},
                "peer requested a different team",
            ),  # no team: refused by a default node
            ({"id": "b", "address": "127.0.0.1"}, "'port' must be an int"),
            (peer_dict("b", 1, kind="relay"), "not a valid NodeKind"),
            ("not a map", "peer must be a map"),
        ]:
            for endpoint in ("_synapse.join", "_synapse.heartbeat"):
                with pytest.raises(RemoteError, match=message) as info:
                    await client.call(endpoint, bad)
                assert info.value.code == "bad_request"
        assert await client.call("_synapse.ping") == "pong"


async def test_seed_unreachable_then_up(anyio_backend: str) -> None:
    port = free_port()
    late = Node(bind="127.0.0.1", name="late", swarm="s", seeds=[f"127.0.0.1:{port}"])
    async with late:
        with pytest.raises(JoinError, match=f"127.0.0.1:{port}"):
            await late.join()
        await anyio.sleep(0.3)  # the node keeps retrying in the background
        async with Node(bind="127.0.0.1", port=port, name="seed", swarm="s") as seed:
            await converged([late, seed])


async def test_wrong_swarm_or_team_is_refused(anyio_backend: str) -> None:
    async with Node(bind="127.0.0.1", swarm="s") as seed:
        scopes: list[Scope] = [{"swarm": "other"}, {"swarm": "s", "team": "red"}]
        for kwargs in scopes:
            async with Node(bind="127.0.0.1", seeds=[f"127.0.0.1:{seed.port}"], **kwargs) as node:
                with pytest.raises(JoinError, match=r"different (swarm|team)"):
                    await node.join()
                assert node.peers == {}
        assert seed.peers == {}


async def test_a_forged_heartbeat_cannot_move_a_peer(anyio_backend: str, no_secret: None) -> None:
    a = Node(bind="127.0.0.1", name="a", swarm="s", **FAST)
    async with (
        a,
        Node(bind="127.0.0.1", name="b", swarm="s", seeds=[f"127.0.0.1:{a.port}"], **FAST) as b,
    ):
        await converged([a, b])
        async with Node(bind="127.0.0.1", name="attacker", swarm="s") as attacker:
            forged = peer_dict(b.node_id, attacker.port, name="b")
            client = Client("127.0.0.1", a.port)
            for _ in range(5):  # b signs its records: an unsigned claim of its id is refused
                with pytest.raises(
                    RemoteError, match=r"signs its peer records|secure channel"
                ) as refused:
                    await client.call("_synapse.heartbeat", forged)
                assert refused.value.code == "bad_request"
            await anyio.sleep(1)
            assert a.peers[b.node_id].port == b.port
            assert attacker.node_id not in a.peers


async def test_forged_identities_do_not_cause_a_connection_storm(
    anyio_backend: str, no_secret: None
) -> None:
    accepted = 0

    async def count(stream: anyio.abc.SocketStream) -> None:
        nonlocal accepted
        accepted += 1
        await stream.aclose()

    async with (
        await anyio.create_tcp_listener(local_host="127.0.0.1") as victim,
        anyio.create_task_group() as tg,
    ):
        victim_port = victim.extra(anyio.abc.SocketAttribute.local_port)
        tg.start_soon(victim.serve, count)
        async with Node(bind="127.0.0.1", swarm="s", max_peers=50, **FAST) as node:
            client = Client("127.0.0.1", node.port)
            async with Client("127.0.0.1", node.port) as session:
                for i in range(200):
                    await session.call("_synapse.heartbeat", peer_dict(f"{i:064x}", victim_port))
            await anyio.sleep(2)
            assert node.peers == {}
            assert len(node.membership.table.candidates) <= node.membership.table.max_candidates
            assert await client.call("_synapse.ping") == "pong"
        tg.cancel_scope.cancel()
    assert accepted <= 3, accepted  # the reference made 19,900 connections for 200 forgeries


async def test_peer_cap_is_enforced_and_logged(
    anyio_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "synapse_p2p")
    async with Node(bind="127.0.0.1", swarm="s", max_peers=2) as seed:
        nodes = [
            Node(bind="127.0.0.1", swarm="s", seeds=[f"127.0.0.1:{seed.port}"]) for _ in range(4)
        ]
        async with started(*nodes):
            await anyio.sleep(1)
            assert len(seed.peers) == 2
    assert "peer table full (max_peers=2)" in caplog.text


async def test_a_tarpit_peer_does_not_make_healthy_peers_look_offline(anyio_backend: str) -> None:
    settings: NodeTimings = {"heartbeat_interval": 0.2, "peer_timeout": 1.0, "call_timeout": 10.0}
    a = Node(bind="127.0.0.1", name="a", swarm="s", **settings)
    offline: list[tuple[str, str]] = []
    async with a:
        others = [
            Node(bind="127.0.0.1", name=n, swarm="s", seeds=[f"127.0.0.1:{a.port}"], **settings)
            for n in ("b", "c", "tarpit")
        ]
        for node in (a, *others):

            @node.on("peer.offline")
            async def gone(peer: Peer, node: Node = node) -> None:
                offline.append((node.name, peer.name))

        async with started(*others):
            await converged([a, *others])
            tarpit = others[2]

            @tarpit.endpoint("_synapse.gossip", publish=False)
            async def hang(message: Any) -> None:
                await anyio.sleep_forever()

            await anyio.sleep(4)
    healthy = {"a", "b", "c"}
    assert not [o for o in offline if o[1] in healthy and o[0] in healthy], offline


async def test_a_node_without_rounds_admits_a_joiner(anyio_backend: str) -> None:
    """With ``heartbeat_interval=None``, no views and no seeds, the membership service ended
    right after its start, and with it the check of a joiner's address: the node never listed
    the member that joined it (its joiner listed it)."""
    options: dict[str, Any] = {"bind": "127.0.0.1", "mdns": False, "heartbeat_interval": None,
                               "partial_views": False}  # fmt: skip
    async with Node(name="a", **options) as a:
        with a.subscribe(PeerJoined) as joined:
            async with Node(name="b", seeds=[f"127.0.0.1:{a.port}"], **options) as b:
                with anyio.fail_after(10):
                    async for event in joined:
                        if isinstance(event, PeerJoined) and event.peer.id == b.node_id:
                            break
                assert b.node_id in a.peers
                assert a.node_id in b.peers
