"""Live partial views (``Node(partial_views=True)``) on real loopback sockets, under trio and
asyncio: the HyParView core driven over ``_synapse.views``."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from synapse_p2p import Client, Identity, Node, Peer, RemoteError
from synapse_p2p.events import PeerJoined
from synapse_p2p.membership import _views_endpoint
from synapse_p2p.membership._live_views import (
    BATCH,
    LIVE_SHUFFLE_INTERVAL,
    VIEWS_ENDPOINT,
    LiveViews,
)
from tests.helpers import NodeTimings, read_frame, request_frame

pytestmark = pytest.mark.anyio

FAST: NodeTimings = {"heartbeat_interval": 0.3, "peer_timeout": 1.5}


def views_of(node: Node) -> LiveViews:
    views = node.membership.views
    assert views is not None
    assert views.core is not None
    return views


class Swarm:
    """Nodes each running in a cancel scope of their own, so a test can kill one."""

    def __init__(self, nodes: list[Node]) -> None:
        self.nodes = nodes
        self.scopes: dict[str, anyio.CancelScope] = {}

    def kill(self, node: Node) -> None:
        """A crash: no goodbye, the others notice by the silence."""
        node.membership.say_goodbye = False
        self.scopes[node.node_id].cancel()
        self.nodes.remove(node)

    def complete(self) -> bool:
        ids = {n.node_id for n in self.nodes}
        return all(set(n.peers) == ids - {n.node_id} for n in self.nodes)


@contextlib.asynccontextmanager
async def open_swarm(n: int, **settings: Any) -> AsyncIterator[Swarm]:
    kw: dict[str, Any] = {"bind": "127.0.0.1", "swarm": "views", "partial_views": True}
    kw.update(settings)
    async with anyio.create_task_group() as tg:
        seed = Node(name="n0", **kw)
        swarm = Swarm([seed])

        async def run(node: Node, *, task_status: anyio.abc.TaskStatus[None]) -> None:
            with swarm.scopes[node.node_id]:
                await node.serve(task_status=task_status)

        swarm.scopes[seed.node_id] = anyio.CancelScope()
        await tg.start(run, seed)
        for i in range(1, n):
            node = Node(name=f"n{i}", seeds=[f"127.0.0.1:{seed.port}"], **kw)
            swarm.nodes.append(node)
            swarm.scopes[node.node_id] = anyio.CancelScope()
            await tg.start(run, node)
        try:
            yield swarm
        finally:
            tg.cancel_scope.cancel()


async def settled(swarm: Swarm, timeout: float = 20) -> None:
    """Until membership is complete and every node has a symmetric, non-empty active view."""

    def ok() -> bool:
        if not swarm.complete():
            return False
        by_id = {n.node_id: n for n in swarm.nodes}
        for node in swarm.nodes:
            active = views_of(node).active_ids()
            if not active:
                return False
            for other in active:
                peer = by_id.get(other)
                if peer is None or node.node_id not in views_of(peer).active_ids():
                    return False
        return True

    with anyio.fail_after(timeout):
        while not ok():
            await anyio.sleep(0.05)


async def test_both_ends_of_a_link_see_their_neighbor_s_last_seen_move(
    anyio_backend: str,
) -> None:
    """On a link only its owner gossips; the other end's answer is contact too: each end's
    ``last_seen`` of the other moves, with a ``peer.heartbeat`` event, round after round."""
    async with open_swarm(2, **FAST) as swarm:
        await settled(swarm)
        a, b = swarm.nodes
        beats: dict[str, list[float]] = {a.node_id: [], b.node_id: []}
        both = anyio.Event()

        for node in (a, b):

            @node.on("peer.heartbeat")
            async def beat(peer: Any, node: Node = node) -> None:
                beats[node.node_id].append(peer.last_seen)
                if all(len(seen) >= 3 for seen in beats.values()):
                    both.set()

        start = {a.node_id: a.peers[b.node_id].last_seen, b.node_id: b.peers[a.node_id].last_seen}
        with anyio.fail_after(10):
            await both.wait()
        assert a.peers[b.node_id].last_seen > start[a.node_id]
        assert b.peers[a.node_id].last_seen > start[b.node_id]


async def test_the_nodes_of_one_process_share_a_member_s_record(anyio_backend: str) -> None:
    """The nodes of one process that hold a member's signed record hold one ``Peer`` for it
    (not one each); each node still lists the member with the ``last_seen`` of its own news,
    and announces a joiner with its own."""
    async with open_swarm(4, **FAST) as swarm:
        await settled(swarm)
        joined: list[float] = []
        first = swarm.nodes[0]

        @first.on("peer.joined")
        async def on_join(peer: Any) -> None:
            joined.append(peer.last_seen)

        late = Node(name="late", seeds=[f"127.0.0.1:{first.port}"], **_LATE_KW)
        async with late:
            with anyio.fail_after(20):
                while not (
                    len(late.peers) == len(swarm.nodes)
                    and all(late.node_id in n.peers for n in swarm.nodes)
                ):
                    await anyio.sleep(0.05)
                while not joined:
                    await anyio.sleep(0.05)
            took_at = time.time()
            for member in [*swarm.nodes, late]:
                held = {
                    id(state.peer)
                    for node in [*swarm.nodes, late]
                    if node is not member
                    for state in [node.membership.table.get(member.node_id)]
                    if state is not None
                }
                assert len(held) == 1, member.name
            assert took_at - 5 < joined[0] <= took_at
            for node in swarm.nodes:
                assert took_at - 5 < node.peers[late.node_id].last_seen <= took_at + 1
            # Neither contact (every round here) nor reading node.peers gives a node a copy
            # of its own to keep: it lists the record its table holds, the shared one.
            for node in [*swarm.nodes, late]:
                for member_id in list(node.peers):
                    shown = node.peers[member_id]
                    # No news between two reads: the same last_seen (clocks read again).
                    assert node.peers[member_id] == shown
                    state = node.membership.table.get(member_id)
                    assert state is not None
                    assert node.membership.records[member_id] is state.peer, node.name
            # Read from another thread, a member's last_seen is the latest news as well.
            other = swarm.nodes[1].node_id
            with anyio.fail_after(10):  # (the record held was stamped when first taken)
                while (
                    first.peers[other].last_seen - first.membership.records[other].last_seen < 1.0
                ):
                    await anyio.sleep(0.05)
            here = first.peers[other].last_seen
            there = await anyio.to_thread.run_sync(lambda: first.peers[other].last_seen)
            assert abs(there - here) < 0.5


async def test_a_member_s_last_seen_is_this_node_s_clock_and_news(anyio_backend: str) -> None:
    """``last_seen`` is this node's wall clock at its latest news of the member: never the
    member's own clock (one 600 s ahead), never the time another node of the process took the
    record; ``peer.offline`` and ``peer.left`` carry it too."""
    offset = [0.0]

    def clock() -> float:  # the swarm's wall clock, moved on by the test
        return time.time() + offset[0]

    async with open_swarm(3, wall_clock=clock, **FAST) as swarm:
        await settled(swarm)
        first = swarm.nodes[0]
        ahead = Node(
            name="ahead",
            seeds=[f"127.0.0.1:{first.port}"],
            **{**_LATE_KW, "wall_clock": lambda: time.time() + 600},
        )
        left: list[Peer] = []
        gone = anyio.Event()

        @first.on("peer.left")
        async def on_left(peer: Peer) -> None:
            left.append(peer)
            gone.set()

        async with ahead:
            with anyio.fail_after(20):
                while not all(ahead.node_id in n.peers for n in swarm.nodes):
                    await anyio.sleep(0.05)
            for node in swarm.nodes:
                assert node.peers[ahead.node_id].last_seen <= clock() + 1
                assert node.membership.records[ahead.node_id].last_seen <= clock() + 1
            offset[0] = 100.0  # the swarm's clock jumps: news from now on is 100 s later
            moved = clock()
            with anyio.fail_after(10):
                while first.peers[ahead.node_id].last_seen < moved:
                    await anyio.sleep(0.05)
        with anyio.fail_after(10):
            await gone.wait()
        assert moved - 1 < left[0].last_seen <= clock() + 1


_LATE_KW: dict[str, Any] = {"bind": "127.0.0.1", "swarm": "views", "partial_views": True, **FAST}


async def test_last_seen_of_a_member_outside_the_view_is_its_latest_news(
    anyio_backend: str,
) -> None:
    """A member that is not a neighbor rarely calls this node itself: its ``last_seen`` in
    ``node.peers`` follows the news of its life gossip brings, not its last call to us."""
    async with open_swarm(12, **FAST) as swarm:
        await settled(swarm)
        outside = [
            (node, other)
            for node in swarm.nodes
            for other in swarm.nodes
            if other is not node and other.node_id not in views_of(node).active_ids()
        ]
        assert len(outside) > 20  # the views are partial
        joined = max(n.peers[o.node_id].last_seen for n, o in outside)

        def fresh() -> bool:
            # Every member, as every other node has it, heard of within a peer timeout.
            now = time.time()
            return all(now - n.peers[o.node_id].last_seen < 1.5 + 1.0 for n, o in outside)

        with anyio.fail_after(10):
            while not fresh() or min(n.peers[o.node_id].last_seen for n, o in outside) <= joined:
                await anyio.sleep(0.1)


async def test_views_stay_within_their_cap_and_peers_stay_complete(anyio_backend: str) -> None:
    async with open_swarm(14, **FAST) as swarm:
        await settled(swarm)
        for _ in range(10):  # a few rounds later: still complete, still within the cap
            await anyio.sleep(0.3)
            assert swarm.complete()
            for node in swarm.nodes:
                core = views_of(node).core
                assert core is not None
                config = core.config  # the target, plus slack for under-filled askers
                cap = min(config.active_max, config.target(len(swarm.nodes)) + config.accept_slack)
                assert 1 <= len(core.active) <= cap, (node.name, len(core.active), cap)
                assert node.node_id not in core.active
                # live shuffles are rare (the passive view is also fed by membership)
                assert config.shuffle_interval == LIVE_SHUFFLE_INTERVAL
        # Not everyone is everyone's neighbor: the views are partial.
        assert any(len(views_of(n).active_ids()) < len(swarm.nodes) - 1 for n in swarm.nodes)


async def test_a_killed_active_neighbour_is_replaced_from_the_passive_view(
    anyio_backend: str,
) -> None:
    async with open_swarm(9, **FAST) as swarm:
        await settled(swarm)
        node = min(swarm.nodes, key=lambda n: len(views_of(n).active_ids()))
        core = views_of(node).core
        assert core is not None
        before = set(core.active)
        passive_before = set(core.passive)
        assert passive_before, "nine nodes: some are only in the passive view"
        # Enough of its neighbors die that it falls below its target (log2(9) + 2) and must
        # refill (a view may settle above the target: one death alone may leave it there).
        count = max(1, len(before) - core.target() + 1)
        by_id = {n.node_id: n for n in swarm.nodes}
        victims = [by_id[i] for i in sorted(before)[:count]]
        for victim in victims:
            swarm.kill(victim)
        left = len(before) - count
        assert left < core.target()
        with anyio.fail_after(20):
            while any(v.node_id in core.active for v in victims) or len(core.active) <= left:
                await anyio.sleep(0.05)
        added = set(core.active) - before
        assert added
        assert added <= passive_before
        with anyio.fail_after(10):  # declared dead: out of the passive view too
            while any(v.node_id in core.passive for v in victims):
                await anyio.sleep(0.05)
        with anyio.fail_after(10):
            while not swarm.complete():
                await anyio.sleep(0.05)


def sockets(node: Node) -> int:
    stats = node.statistics()
    assert stats.server is not None
    assert stats.pool is not None
    return stats.server.open_connections + stats.pool.open_connections


async def test_sockets_per_node_stay_bounded_after_idle(anyio_backend: str) -> None:
    """40 nodes, one gossip round a second: after 15 rounds a full mesh (3 partners a round,
    round-robin) has met every member and keeps 2 x 39 = 78 sockets per node; with views
    each node keeps about its active view, plus connections that close after 5 s idle."""
    async with open_swarm(40, heartbeat_interval=1, peer_timeout=8) as swarm:
        with anyio.fail_after(60):
            while not swarm.complete():
                await anyio.sleep(0.1)
        await anyio.sleep(15)
        good = 0
        with anyio.fail_after(60):
            while good < 3:  # three samples in a row within the bound
                counts = [sockets(n) for n in swarm.nodes]
                good = good + 1 if max(counts) <= 24 and sum(counts) / len(counts) <= 16 else 0
                await anyio.sleep(1)
        assert swarm.complete()
        for node in swarm.nodes:  # what is kept: the links this node opened to neighbors
            views = views_of(node)
            stats = node.statistics()
            assert stats.pool is not None
            assert len(views.owned()) <= len(views.active_ids()) <= 16


@pytest.fixture
def no_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    """A plaintext caller needs a swarm without a secret (``./dev test`` sets one on its
    second pass)."""
    monkeypatch.delenv("SYNAPSE_SECRET", raising=False)


def neighbor(record_id: str, port: int = 1) -> dict[str, Any]:
    record = {"id": record_id, "address": "127.0.0.1", "port": port, "seq": 1}
    return {"k": "hv.neighbor", "record": record, "high": True}


async def test_view_messages_from_plaintext_or_naming_another_id_are_refused(
    anyio_backend: str, no_secret: None
) -> None:
    async with Node(bind="127.0.0.1", swarm="views", partial_views=True) as node:
        refused = node.membership.trust.refused
        # Plaintext (a 2.5.0-style frame): nobody proved an id.
        stream = await anyio.connect_tcp("127.0.0.1", node.port)
        async with stream:
            await stream.send(request_frame(VIEWS_ENDPOINT, neighbor("a" * 64)))
            with anyio.fail_after(5):
                answer = await read_frame(stream)
        assert answer is not None
        assert answer["error"]["code"] == "bad_request"
        assert "secure channel" in answer["error"]["message"]
        assert refused["plaintext"] >= 1
        # A secure caller naming another id, and a malformed message.
        me = Identity.generate()
        async with Client("127.0.0.1", node.port, identity=me) as client:
            with pytest.raises(RemoteError) as info:
                await client.call(VIEWS_ENDPOINT, neighbor("b" * 64))
            assert info.value.code == "bad_request"
            assert refused["wrong_caller"] == 1
            with pytest.raises(RemoteError) as info:
                await client.call(VIEWS_ENDPOINT, {"k": "hv.shuffle", "ttl": 99})
            assert info.value.code == "bad_request"
            # Our own id, but not a member: the core ignores it, nothing is admitted.
            assert await client.call(VIEWS_ENDPOINT, neighbor(me.node_id)) == {"ok": True}
            assert views_of(node).active_ids() == []
            assert await client.call("_synapse.ping") is not None  # still serving


async def test_views_off_serves_no_view_endpoint(anyio_backend: str) -> None:
    async with Node(bind="127.0.0.1", swarm="views", partial_views=False) as node:
        assert node.membership.views is None
        async with Client("127.0.0.1", node.port) as client:
            with pytest.raises(RemoteError) as info:
                await client.call(VIEWS_ENDPOINT, neighbor("a" * 64))
            assert info.value.code == "bad_request"


async def test_sixty_nodes_started_at_once_converge(anyio_backend: str) -> None:
    """60 nodes started at the same moment, all through one seed: each joiner sends a
    HyParView JOIN to the seed (its walks spread joiners over the swarm), the views fill
    with no message refused or broken, and every node's ``peers`` becomes the whole swarm.
    Waits on ``PeerJoined`` events, not on sleeps. (The 60 nodes' handshakes share one
    process: on a loaded machine a callee may answer after the 5 s call timeout; such
    messages are counted apart and printed, and the views converge regardless.)"""
    n = 60
    kw: dict[str, Any] = {"bind": "127.0.0.1", "swarm": "views60", "partial_views": True}
    seed = Node(name="n0", **kw)
    async with seed, anyio.create_task_group() as tg:
        nodes = [seed] + [
            Node(name=f"n{i}", seeds=[f"127.0.0.1:{seed.port}"], **kw) for i in range(1, n)
        ]
        everyone = anyio.Event()
        done: set[str] = set()

        async def watch(node: Node, *, task_status: anyio.abc.TaskStatus[None]) -> None:
            with node.subscribe(PeerJoined) as joins:
                task_status.started()
                async for _event in joins:
                    if len(node.peers) == n - 1:
                        done.add(node.node_id)
                        if len(done) == n:
                            everyone.set()
                        return

        for node in nodes:
            await tg.start(watch, node)
        for node in nodes[1:]:
            tg.start_soon(node.serve)  # all at once
        with anyio.fail_after(90):
            await everyone.wait()
        ids = {node.node_id for node in nodes}
        assert all(set(node.peers) == ids - {node.node_id} for node in nodes)
        # A node evicted a moment ago (a later joiner took its slot) is refilling its view.
        with anyio.fail_after(30):
            while not all(views_of(node).active_ids() for node in nodes):
                await anyio.sleep(0.05)
        for node in nodes:
            views = views_of(node)
            assert views.failed == views.timed_out, node.name
            assert 1 <= len(views.active_ids()) <= 16
        late = sum(views_of(node).timed_out for node in nodes)
        print(f"view messages not answered within the call timeout: {late}")
        joins = [views_of(node).sent_kinds["hv.join"] for node in nodes[1:]]
        assert all(count >= 1 for count in joins)  # every joiner went through the seed
        # NEIGHBOR answers rode the calls' answers (no connection back per request)
        assert sum(views_of(node).inline["taken"] for node in nodes) > 0
        tg.cancel_scope.cancel()


async def test_a_batch_of_view_messages_is_bounded(anyio_backend: str) -> None:
    async with Node(bind="127.0.0.1", swarm="views", partial_views=True) as node:
        me = Identity.generate()
        async with Client("127.0.0.1", node.port, identity=me) as client:
            one = neighbor(me.node_id)
            assert await client.call(VIEWS_ENDPOINT, one, more=[one, one]) == {"ok": True}
            with pytest.raises(RemoteError) as info:
                await client.call(VIEWS_ENDPOINT, one, more=[one] * BATCH)
            assert info.value.code == "bad_request"
            with pytest.raises(RemoteError) as info:
                await client.call(VIEWS_ENDPOINT, one, more=[{"k": "hv.nope"}])
            assert info.value.code == "bad_request"
            assert views_of(node).active_ids() == []  # not a member: nothing admitted


async def test_news_of_members_floods_the_views_without_waiting_for_rounds(
    anyio_backend: str,
) -> None:
    """Rounds a minute apart: a member learned second-hand is relayed to the active neighbors
    at once (batched), so a swarm started one node after the other knows itself whole long
    before the next round, though most members never called most others."""
    n = 24
    async with open_swarm(n, heartbeat_interval=60.0, peer_timeout=600.0) as swarm:
        with anyio.fail_after(30):
            while not swarm.complete():
                await anyio.sleep(0.1)
        # partial: news came through the views, not a call from every member
        assert any(len(views_of(node).active_ids()) < n - 1 for node in swarm.nodes)


async def test_a_young_node_catches_up_with_its_first_neighbors_at_once(
    anyio_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rounds a minute apart. Node J has joined (it holds the swarm as its seed knew it) but
    takes no part in the views yet when three more nodes join: their news is pushed over the
    links, none to J (and J takes no link from them). When J's links come up, it asks its
    first new neighbors at once (a round's digest, ``CATCH_UP_LINKS``) rather than at its
    next round, a minute away: in a swarm growing by several nodes at a time, a joiner misses
    its fellow joiners' news so."""
    settings: dict[str, Any] = {"heartbeat_interval": 60.0, "peer_timeout": 600.0}
    kw: dict[str, Any] = {"bind": "127.0.0.1", "swarm": "views", "partial_views": True}
    async with open_swarm(8, **settings) as swarm, anyio.create_task_group() as tg:
        with anyio.fail_after(30):
            while not swarm.complete():
                await anyio.sleep(0.05)
        seed = f"127.0.0.1:{swarm.nodes[0].port}"
        j = Node(name="j", seeds=[seed], **kw, **settings)
        views_of_j = j.membership.views
        assert views_of_j is not None
        held: list[str] = []
        views_of_j.seeded = held.append  # type: ignore[method-assign,assignment]  # no JOIN yet
        serve = _views_endpoint.serve

        late_ids: set[str] = set()

        async def dropping(
            views: LiveViews, message: Any, record: Any, connection: Any, *more: Any
        ) -> dict[str, Any]:
            # J drops every view message before it joins, and those of the late nodes: it can
            # learn of them only from its older neighbors. (Dropped, not refused: a refusal
            # is a failed call, which makes its caller suspect J.)
            if views is views_of_j and (held or connection.node_id in late_ids):
                return {"ok": True}
            return await serve(views, message, record, connection, *more)

        monkeypatch.setattr(_views_endpoint, "serve", dropping)
        await tg.start(j.serve)
        with anyio.fail_after(30):
            while len(j.peers) < len(swarm.nodes) or not held:
                await anyio.sleep(0.05)
        late = [Node(name=f"k{i}", seeds=[seed], **kw, **settings) for i in range(3)]
        late_ids.update(node.node_id for node in late)
        for node in late:
            tg.start_soon(node.serve)
        swarm.nodes += late
        everyone = {node.node_id for node in swarm.nodes} | {j.node_id}
        with anyio.fail_after(30):  # all but J know all
            while not all(set(n.peers) == everyone - {n.node_id} for n in swarm.nodes):
                await anyio.sleep(0.05)
        # (J holds none of them, unless a late node with no link yet pushed its news to
        # every member it knew, J among them.)
        digests: list[str] = []  # whom J sent a round's digest
        gossip_one = j.membership._gossip_one

        async def recording(peer: Peer, message: dict[str, Any], interval: float) -> None:
            if "compact" in message:
                digests.append(peer.id)
            await gossip_one(peer, message, interval)

        j.membership._gossip_one = recording  # type: ignore[method-assign]
        del views_of_j.seeded
        seed_id = held.pop()
        views_of_j.seeded(seed_id)  # now J joins the views
        swarm.nodes.append(j)
        with anyio.fail_after(30):
            while not swarm.complete():
                await anyio.sleep(0.05)
        # J asked a new neighbor at once, not at its next round a minute away (the code
        # before this sent none; here J learned the late nodes anyway, from a neighbor that
        # took J's renewed record as news and sent it a whole digest)
        assert digests
        tg.cancel_scope.cancel()


async def test_a_push_of_news_is_answered_without_a_digest(anyio_backend: str) -> None:
    """A gossip push (news only, ``push: true``) is answered with the callee's record, not its
    digest of every member: news costs what it carries, not the size of the swarm."""
    async with open_swarm(6, heartbeat_interval=60.0, peer_timeout=600.0) as swarm:
        with anyio.fail_after(30):
            while not swarm.complete():
                await anyio.sleep(0.1)
        caller, callee = swarm.nodes[1], swarm.nodes[2]
        m = caller.membership
        message = {"v": 1, "from": m._signed_record(), "members": [], "push": True}
        reply = await m.caller.call("127.0.0.1", callee.port, "_synapse.gossip", [message], {})
        assert reply["self"]["id"] == callee.node_id
        assert "members" not in reply
        del message["push"]  # a round's gossip is a push-pull: the digest comes back
        reply = await m.caller.call("127.0.0.1", callee.port, "_synapse.gossip", [message], {})
        assert {e["id"] for e in reply["members"]} >= {n.node_id for n in swarm.nodes[3:]}
