"""News of members flows along a tree of the views: a neighbor that already held every record
of a push answers ``lazy``, and gets no push of news for a while (virtual time)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import anyio
import pytest
import trio.testing

from synapse_p2p import Node, Peer
from synapse_p2p.membership import _service
from synapse_p2p.membership._endpoints import GOSSIP_ENDPOINT, GOSSIP_VERSION
from tests.membership.test_virtual_time import Swarm, open_swarm

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> Any:
    return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})


def count_pushes(swarm: Swarm) -> Counter[str]:
    """Member id -> how many pushes of news carried a record of it."""
    pushed: Counter[str] = Counter()
    for node in swarm.nodes:
        m = node.membership
        send = m._gossip_one

        async def counting(
            peer: Any, message: dict[str, Any], interval: float, send: Any = send
        ) -> None:
            if message.get("push"):
                for entry in message.get("members") or []:
                    pushed[entry["id"]] += 1
            await send(peer, message, interval)

        m._gossip_one = counting  # type: ignore[method-assign]
    return pushed


def neighbors_and_news(swarm: Swarm) -> tuple[Node, Node, Node, list[Any]]:
    """A node ``b`` with four neighbors or more, one of them ``a``, a third ``member``, and
    ``a``'s entry of that member's record (what a push of news about it carries)."""
    by_id = {n.node_id: n for n in swarm.nodes}
    b = next(n for n in swarm.nodes if len(n.membership.views.active_ids()) >= 4)  # type: ignore[union-attr]
    a = by_id[sorted(b.membership.views.active_ids())[0]]  # type: ignore[union-attr]
    member = next(n for n in swarm.nodes if n is not a and n is not b)
    entries = a.membership._entries([member.node_id])
    assert entries
    return a, b, member, entries


async def push(a: Node, b: Node, entries: list[Any], **flags: Any) -> Any:
    """``a`` pushes news of ``entries`` to ``b``: ``b``'s answer."""
    message = {
        "v": GOSSIP_VERSION,
        "from": a.membership._signed_record(),
        "members": entries,
        "push": True,
        **flags,
    }
    return await a.membership.caller.call(
        b.membership.local.address, b.port, GOSSIP_ENDPOINT, [message], {}, timeout=5
    )


async def join(swarm: Swarm, tg: Any, i: int) -> Node:
    host = f"10.0.1.{i}"
    node = Node(
        bind=host,
        port=7000,
        name=f"x{i}",
        swarm="test",
        seeds=["10.0.0.1:7000"],
        transport=swarm.network.transport(host),
        partial_views=True,
    )
    await tg.start(node.serve)
    return node


async def test_news_of_a_join_reaches_each_node_about_once(anyio_backend: Any) -> None:
    """24 nodes converge, then new members join one by one: each is listed everywhere, and
    once the links that delivered duplicates went lazy, a join's record is pushed once or
    twice per node (flooding the views, about five times: once per neighbor). A join's pushes
    fell under 2.5 per node from the second to the eighth join in 73 runs, hence twelve."""
    n = 24
    async with open_swarm(n, partial_views=True) as swarm, anyio.create_task_group() as tg:
        await swarm.converged()
        pushed = count_pushes(swarm)
        joined = []
        for i in range(1, 13):
            node = await join(swarm, tg, i)
            joined.append(node)
            with anyio.fail_after(10):
                while not all(node.node_id in other.peers for other in swarm.nodes):
                    await anyio.sleep(0.01)
        copies = [pushed[node.node_id] for node in joined]
        assert sum(copies[-4:]) / 4 < 2.5 * n, copies  # (flooding: 100-140 each)
        tree = sum((node.membership.tree for node in swarm.nodes), Counter[str]())
        assert tree["told"] > 0
        assert tree["pruned"] > 0
        assert tree["skipped"] > 0
        tg.cancel_scope.cancel()


async def test_a_lazy_neighbor_gets_news_again_after_the_lapse_or_a_graft(
    anyio_backend: Any,
) -> None:
    """A neighbor that answered ``lazy`` gets no push of news for ``LAZY_ROUNDS``
    heartbeat intervals, then gets them again; one that lacked records (a graft) at once."""
    m = Node(bind="127.0.0.1", port=7000, name="me", partial_views=True).membership
    a, b = (Peer(id=name * 8, address="10.0.0.9", port=7000, name=name) for name in "ab")
    peers = [a, b]
    now = anyio.current_time()
    m._lazy[a.id] = now + _service.LAZY_ROUNDS * 5.0
    assert [p.id for p in m._eager(peers)] == [b.id]
    assert m.tree["skipped"] == 1
    await anyio.sleep(_service.LAZY_ROUNDS * 5.0)
    assert [p.id for p in m._eager(peers)] == [a.id, b.id]  # the lapse
    m._lazy[b.id] = anyio.current_time() + 10.0
    m.graft(b.id)  # it lacked a record we hold
    assert m.tree["grafted"] == 1
    assert [p.id for p in m._eager(peers)] == [a.id, b.id]


async def test_a_node_keeps_two_neighbors_pushing_news_to_it(anyio_backend: Any) -> None:
    """Duplicates from every neighbor (pushes that crossed): the node answers ``lazy`` to all
    but two, so it is never cut off the tree; after the lapse it may prune again."""
    m = Node(bind="127.0.0.1", port=7000, name="me", partial_views=True).membership
    assert m.views is not None
    active = ["a" * 8, "b" * 8, "c" * 8, "d" * 8]
    m.views.active_ids = lambda: active  # type: ignore[method-assign]
    assert [m.prune(i) for i in active] == [True, True, False, False]
    assert m.tree["told"] == 2
    await anyio.sleep(_service.LAZY_ROUNDS * 5.0)
    assert m.prune(active[2])


async def test_a_node_keeps_its_connection_to_a_neighbor_it_pushed_news_to(
    anyio_backend: Any,
) -> None:
    """A push of news on a link the neighbor owns goes on a connection of the pusher's own.
    While news flowed on it lately (``KEEP_PUSHED_ROUNDS`` heartbeat intervals) that
    connection stays open past the pool's brief idle timeout (5 s), so the next batch costs no
    handshake at either end; once the swarm is quiet it is let go (one connection per link)."""
    async with open_swarm(8, partial_views=True) as swarm:
        await swarm.converged()
        a, owner = next(
            (node, other)
            for node in swarm.nodes
            for other in sorted(node.membership.views.active_ids())  # type: ignore[union-attr]
            if other < node.node_id
        )
        m = a.membership
        peer = m.table.peers[owner].peer
        async with anyio.create_task_group() as calls:
            m._gossip_to(calls, [peer], 5.0, m._entries([owner]))
        assert m.caller.connected(peer.address, peer.port)
        await anyio.sleep(20)
        assert m.caller.connected(peer.address, peer.port)
        await anyio.sleep(_service.KEEP_PUSHED_ROUNDS * 5.0 + 10)
        # (not the socket: a round's digest to a random member now and then may open it)
        assert owner not in m._pushed_to
        assert (peer.address, peer.port) not in (m.views._retained or ())  # type: ignore[union-attr]


async def test_a_push_of_members_back_from_a_notice_is_never_answered_lazy(
    anyio_backend: Any,
) -> None:
    """A duplicate push of news (every record it names, another push brought first) is
    answered ``lazy``; the same push flagged ``revived`` (members back from a death notice,
    sent to every neighbor as the notice was) is not: its duplicates are expected, and
    pruning the link for them would cut the tree."""
    async with open_swarm(12, partial_views=True, heartbeat_interval=60, peer_timeout=600) as swarm:
        await swarm.converged()
        a, b, _, entries = neighbors_and_news(swarm)

        await push(a, b, entries)  # (the first push of that record here)
        b.membership._told.clear()  # (every other neighbor pushes news to b: it may prune)
        told = b.membership.tree["told"]
        assert (await push(a, b, entries, revived=True)).get("lazy") is None
        assert b.membership.tree["told"] == told
        assert (await push(a, b, entries)).get("lazy") is True  # the same duplicate, unflagged
        assert b.membership.tree["told"] == told + 1


async def test_a_node_that_loses_a_link_feeding_it_news_asks_a_lazy_one_to_push_again(
    anyio_backend: Any,
) -> None:
    """x told every active neighbor but two ``lazy``; one of the two leaves. x, with one
    neighbor left pushing news to it (fewer than ``MIN_EAGER``), asks one it told ``lazy`` to
    push to it again (``graft: true``) at once, not after the lapse or the rounds' digests
    (rounds a minute apart here), and only as many as make up ``MIN_EAGER``."""
    async with open_swarm(12, partial_views=True, heartbeat_interval=60, peer_timeout=600) as swarm:
        await swarm.converged()
        by_id = {n.node_id: n for n in swarm.nodes}

        def active(node: Node) -> list[str]:
            return sorted(node.membership.views.active_ids())  # type: ignore[union-attr]

        x = next(n for n in swarm.nodes if len(active(n)) >= 4 and n.name != "n0")
        feeding = [i for i in active(x) if by_id[i].name != "n0"][:2]
        lazy = [i for i in active(x) if i not in feeding]
        far = anyio.current_time() + 600
        x.membership._told.clear()  # (the swarm's start may have pruned some links already)
        for i in feeding:
            by_id[i].membership._lazy.pop(x.node_id, None)
        for i in lazy:  # as if x had answered each of them ``lazy``
            x.membership._told[i] = far
            by_id[i].membership._lazy[x.node_id] = far
        assert x.membership.tree["regrafted"] == 0
        asked: list[list[str]] = []
        send = x.membership._gossip_to

        def recording(calls: Any, peers: list[Peer], *args: Any, **kwargs: Any) -> None:
            if kwargs.get("graft"):
                asked.append([p.id for p in peers])
            send(calls, peers, *args, **kwargs)

        x.membership._gossip_to = recording  # type: ignore[method-assign]
        # (x does not fill the gap from its passive view meanwhile: on a loaded machine a
        # new eager neighbor could come before the graft, and none would be needed)
        x.membership.views.core.passive.clear()  # type: ignore[union-attr]
        gone = by_id[feeding[0]]
        swarm.scopes[gone.name].cancel()  # a clean stop: it says goodbye
        with anyio.move_on_after(2):
            while not asked or any(x.node_id in by_id[i].membership._lazy for i in asked[0]):
                await anyio.sleep(0.01)
        # One was enough to make up MIN_EAGER (two), and it took x off its lazy links.
        # (The swarm's own view changes may ask again later: only the first is checked.)
        assert asked, (gone.node_id in active(x), len(active(x)), x.membership._told)
        assert len(asked[0]) == 1, asked
        assert asked[0][0] in lazy
        assert asked[0][0] not in x.membership._told
        assert x.node_id not in by_id[asked[0][0]].membership._lazy
        assert by_id[asked[0][0]].membership.tree["grafted"] >= 1


async def test_a_graft_an_earlier_version_ignored_leaves_the_link_lazy_here(
    anyio_backend: Any,
) -> None:
    """A neighbor of gossip version 4 answers a graft as a plain probe (it still holds us
    lazy): the node keeps counting that link as lazy, so it neither prunes its last eager
    links on that belief nor waits for news from it; one of version 5 took it."""
    async with open_swarm(8, partial_views=True, heartbeat_interval=60, peer_timeout=600) as swarm:
        await swarm.converged()
        x = swarm.nodes[1]
        m = x.membership
        y = sorted(m.views.active_ids())[0]  # type: ignore[union-attr]
        peer = m.table.peers[y].peer
        call = m.caller.call

        async def as_version_4(*args: Any, **kwargs: Any) -> Any:
            reply = await call(*args, **kwargs)
            return {**reply, "v": 4}

        for answer_as, lazy_after in ((as_version_4, True), (call, False)):
            m.caller.call = answer_as  # type: ignore[method-assign]
            async with anyio.create_task_group() as calls:
                m._gossip_to(calls, [peer], 60.0, [], graft=True)
            assert (y in m._told) is lazy_after
            m._told.pop(y, None)
        m.caller.call = call  # type: ignore[method-assign]


async def test_a_push_naming_only_members_not_held_here_is_answered_lazy(
    anyio_backend: Any,
) -> None:
    """A push whose records this node does not keep (its table is full) brought nothing here:
    it counts as a duplicate, and the sender is told ``lazy``; with room, the same push is
    taken and is not."""
    async with open_swarm(12, partial_views=True, heartbeat_interval=60, peer_timeout=600) as swarm:
        await swarm.converged()
        a, b, member, entries = neighbors_and_news(swarm)
        table = b.membership.table
        table._forget(table.peers[member.node_id])
        table.max_peers = len(table.peers)  # (full: the member's record is not kept)

        b.membership._told.clear()
        assert (await push(a, b, entries)).get("lazy") is True
        assert member.node_id not in table.peers
        table.max_peers = 1024
        b.membership._told.clear()
        assert (await push(a, b, entries)).get("lazy") is None
        assert member.node_id in table.peers
