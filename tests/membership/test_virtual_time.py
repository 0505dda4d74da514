"""Membership on virtual time: many nodes on an in-memory network under trio's MockClock, so
heartbeats, timeouts and failure detection with the default settings take milliseconds."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
import trio.testing

from synapse_p2p import Node, Peer
from synapse_p2p.membership import _service
from synapse_p2p.transport import MemoryNetwork

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> Any:
    return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})


class Swarm:
    def __init__(self, network: MemoryNetwork, nodes: list[Node]) -> None:
        self.network = network
        self.nodes = nodes
        self.events: list[tuple[float, str, str, str]] = []  # (time, observer, event, peer)
        self.scopes: dict[str, anyio.CancelScope] = {}

    def record(self, node: Node) -> None:
        for event in ("peer.joined", "peer.offline"):

            async def handler(peer: Peer, event: str = event) -> None:
                self.events.append((anyio.current_time(), node.name, event, peer.name))

            node.on(event)(handler)

    def kill(self, name: str) -> None:
        """A crash: no goodbye, peers notice by the silence."""
        node = next(n for n in self.nodes if n.name == name)
        node.membership.say_goodbye = False
        self.scopes[name].cancel()

    async def converged(self, nodes: list[Node] | None = None) -> None:
        nodes = nodes or self.nodes
        names = {n.node_id for n in nodes}
        while not all(set(n.peers) == names - {n.node_id} for n in nodes):
            await anyio.sleep(0.01)


@contextlib.asynccontextmanager
async def open_swarm(n: int, **settings: Any) -> AsyncIterator[Swarm]:
    network = MemoryNetwork()
    nodes: list[Node] = []
    swarm = Swarm(network, nodes)
    async with anyio.create_task_group() as tg:
        for i in range(n):
            host = f"10.0.0.{i + 1}"
            seeds = ["10.0.0.1:7000"] if i else None
            node = Node(
                bind=host,
                port=7000,
                name=f"n{i}",
                swarm="test",
                seeds=seeds,
                transport=network.transport(host),
                **settings,
            )
            swarm.record(node)
            scope = anyio.CancelScope()
            swarm.scopes[node.name] = scope

            async def run(
                node: Node = node,
                scope: anyio.CancelScope = scope,
                *,
                task_status: anyio.abc.TaskStatus[None],
            ) -> None:
                with scope:
                    await node.serve(task_status=task_status)

            await tg.start(run)
            nodes.append(node)
        yield swarm
        tg.cancel_scope.cancel()


async def test_joins_through_the_seed_and_converges(anyio_backend: Any) -> None:
    async with open_swarm(12) as swarm:
        start = anyio.current_time()
        with anyio.fail_after(30):
            await swarm.converged()
        assert anyio.current_time() - start < 1.0  # virtual seconds: no heartbeat round needed
        peer = swarm.nodes[3].peers[swarm.nodes[5].node_id]
        assert (peer.name, peer.address, peer.port, peer.swarm, peer.team) == (
            "n5",
            "10.0.0.6",
            7000,
            "test",
            "default",
        )


async def test_killed_node_goes_offline_everywhere_within_the_bound(anyio_backend: Any) -> None:
    # Defaults: heartbeat_interval=5, peer_timeout=20 -> offline within 25 s.
    async with open_swarm(8) as swarm:
        await swarm.converged()
        await anyio.sleep(30)  # steady state: nobody goes offline while all are alive
        assert not [e for e in swarm.events if e[2] == "peer.offline"]
        killed_at = anyio.current_time()
        swarm.kill("n4")
        survivors = [n for n in swarm.nodes if n.name != "n4"]
        with anyio.fail_after(60):
            while any(swarm.nodes[4].node_id in n.peers for n in survivors):
                await anyio.sleep(0.1)
        offline = [e for e in swarm.events if e[2] == "peer.offline"]
        assert sorted(e[1] for e in offline) == sorted(n.name for n in survivors)
        assert {e[3] for e in offline} == {"n4"}
        assert max(e[0] for e in offline) - killed_at <= 25.0 + 0.5


async def test_tighter_settings_detect_faster(anyio_backend: Any) -> None:
    async with open_swarm(5, heartbeat_interval=0.5, peer_timeout=2) as swarm:
        await swarm.converged()
        killed_at = anyio.current_time()
        swarm.kill("n2")
        survivors = [n for n in swarm.nodes if n.name != "n2"]
        with anyio.fail_after(10):
            while any(swarm.nodes[2].node_id in n.peers for n in survivors):
                await anyio.sleep(0.05)
        assert anyio.current_time() - killed_at <= 2.5 + 0.1


async def test_partition_heals_and_peers_join_again(anyio_backend: Any) -> None:
    async with open_swarm(4, heartbeat_interval=1, peer_timeout=4) as swarm:
        await swarm.converged()
        lonely = swarm.nodes[3]
        swarm.network.isolated.add("10.0.0.4")
        with anyio.fail_after(60):
            while lonely.peers or any(lonely.node_id in n.peers for n in swarm.nodes[:3]):
                await anyio.sleep(0.1)
        swarm.network.isolated.clear()
        healed_at = anyio.current_time()
        with anyio.fail_after(120):
            await swarm.converged()
        assert anyio.current_time() - healed_at < 10
        rejoined = [e for e in swarm.events if e[2] == "peer.joined" and e[3] == "n3"]
        assert len({e[1] for e in rejoined}) == 3  # every other node saw n3 join again
        back = [e for e in swarm.events if e[2] == "peer.joined" and e[1] == "n3"]
        assert len(back) >= 6  # n3 saw the three others at first and again after the heal


async def test_the_seed_joiner_waits_for_a_member_lost_instead_of_looking(
    anyio_backend: Any,
) -> None:
    """While members are alive, the seeds' joiner waits for one to be lost (an event the
    membership sets when a member goes offline or leaves) instead of waking every few
    seconds to scan the table; a member lost wakes it, and it waits again."""
    async with open_swarm(3, heartbeat_interval=1, peer_timeout=4) as swarm:
        await swarm.converged()
        m = swarm.nodes[1].membership  # (the seed has no seeds to join)
        scans = 0
        table = m.table
        peers = table.peers

        class Counting(dict):  # type: ignore[type-arg]
            def values(self) -> Any:
                nonlocal scans
                scans += 1
                return super().values()

        table.peers = Counting(peers)
        await anyio.sleep(1)  # (a scan in flight settles)
        before = scans
        await anyio.sleep(60)
        assert m._lost is not None  # the joiner is waiting on it
        joiner_scans = scans - before
        waited = m._lost
        swarm.kill("n2")
        with anyio.fail_after(30):
            while any(n.name == "n2" for n in swarm.nodes[0].peers.values()):
                await anyio.sleep(0.1)
        await anyio.sleep(1)
        assert waited.is_set()  # the joiner was woken by the member lost,
        assert m._lost is not None  # looked, and waits again
        assert m._lost is not waited
        # Looking every peer_timeout / 4 (1 s), the joiner alone scanned 60 times a minute
        # (96 in all, measured); the rounds' scans remain (31).
        assert joiner_scans < 60


async def test_a_slow_peer_within_its_timeout_is_not_offline(anyio_backend: Any) -> None:
    async with open_swarm(3, heartbeat_interval=1, peer_timeout=4) as swarm:
        await swarm.converged()
        slow = swarm.nodes[2]
        original = slow._registry.get("_synapse.gossip")
        assert original is not None

        @slow.endpoint("_synapse.gossip", publish=False)
        async def sluggish(message: Any) -> Any:
            await anyio.sleep(0.9)  # slow, but answers within a round
            return await original.handler(message)

        await anyio.sleep(60)
        assert not [e for e in swarm.events if e[2] == "peer.offline"]
        assert all(len(n.peers) == 2 for n in swarm.nodes)


@pytest.mark.parametrize("views", [False, True])
async def test_idle_message_rate_does_not_grow_with_the_swarm(
    anyio_backend: Any, views: bool
) -> None:
    """Gossip calls per node per second, idle. Full mesh (5 and 20 nodes): fanout 3 every 5 s,
    0.6 whatever the size. Views (5, 20 and 40 nodes): a node gossips over the links it owns
    (the member with the lower id opens a link and starts its gossip, a push-pull both ends
    take part in), plus a repair gossip now and then: at most ``(fanout + 1 +
    REPAIR_CHANCE) / heartbeat_interval``, and no more at 40 nodes than at 20 (measured:
    0.37, 0.61, 0.54; fewer at 5, where a node owns about two links)."""
    rates = []
    for size in (5, 20, 40) if views else (5, 20):
        async with open_swarm(size, partial_views=views) as swarm:
            await swarm.converged()
            await anyio.sleep(10)
            before = sum(n.membership.messages_sent for n in swarm.nodes)
            await anyio.sleep(60)
            after = sum(n.membership.messages_sent for n in swarm.nodes)
            rates.append((after - before) / size / 60)
    if not views:
        assert rates[0] == pytest.approx(0.6, abs=0.1)
        assert rates[1] == pytest.approx(0.6, abs=0.1)
        return
    bound = (3 + 1 + _service.REPAIR_CHANCE) / 5.0
    assert 0 < rates[0] <= bound, rates
    assert 0 < rates[1] <= bound, rates
    assert 0 < rates[2] <= bound, rates
    assert rates[2] <= rates[1] + 0.1, rates


async def test_an_idle_swarm_gossips_compact_digests_and_keeps_every_member(
    anyio_backend: Any,
) -> None:
    """Twelve nodes with partial views, 4 minutes idle on virtual time: nobody goes offline,
    and rounds carry few records in full; once no record has reached a node for the table's
    window and one more ``peer_timeout`` (80 s), its rounds send the summary of the records
    held (gossip version 7), in three whole-digest rounds of four."""
    async with open_swarm(12, partial_views=True) as swarm:
        await swarm.converged()
        await anyio.sleep(10)
        sizes: list[tuple[int, int]] = []  # (full entries, compact entries) per round's gossip
        summaries: list[float] = []  # when each summary went
        for node in swarm.nodes:
            caller = node.membership.caller
            call = caller.call

            async def counting(*args: Any, call: Any = call, **kwargs: Any) -> Any:
                endpoint, arguments = args[2], args[3]
                if endpoint == "_synapse.gossip" and "compact" in arguments[0]:
                    message = arguments[0]
                    sizes.append((len(message["members"]), len(message["compact"])))
                if endpoint == "_synapse.gossip" and "summary" in arguments[0]:
                    summaries.append(anyio.current_time())
                return await call(*args, **kwargs)

            caller.call = counting  # type: ignore[method-assign]
        events = len(swarm.events)
        await anyio.sleep(240)
        assert swarm.events[events:] == []  # no member went offline anywhere
        await swarm.converged()
        full = sum(f for f, _ in sizes)
        compact = sum(c for _, c in sizes)
        assert len(sizes) + len(summaries) > 12 * 240 / 5  # a round every 5 s, to owned links
        assert compact > 9 * len(sizes)  # each names (almost) every other member...
        assert full < compact / 4  # ...and few of them in full
        assert len(summaries) > len(sizes) / 2  # quiet most of the time: summaries, mostly


async def test_an_idle_swarm_holding_the_same_records_answers_digests_same(
    anyio_backend: Any,
) -> None:
    """Twelve nodes with partial views, idle on virtual time: a round's whole digest asks
    ``same`` (no member ages by silence), and a partner holding every record it names answers
    ``same`` instead of naming them back; once quiet (no record for 80 s), a round sends the
    summary of the records held, answered ``same`` too. Most answers are ``same``; nobody
    goes offline, and membership stays whole."""
    async with open_swarm(12, partial_views=True) as swarm:
        await swarm.converged()
        await anyio.sleep(30)
        asked: list[bool] = []  # per whole digest asking ``same``: answered ``same``?
        summed: list[bool] = []  # per summary: answered ``same``?
        by_port = {node.port: node for node in swarm.nodes}
        before = sum(n.membership.answered_same for n in swarm.nodes)
        for node in swarm.nodes:
            caller = node.membership.caller
            call = caller.call

            async def counting(
                *args: Any, call: Any = call, node: Node = node, **kwargs: Any
            ) -> Any:
                endpoint, arguments = args[2], args[3]
                answer = await call(*args, **kwargs)
                message = arguments[0] if endpoint == "_synapse.gossip" else {}
                if "summary" in message:
                    summed.append(isinstance(answer, dict) and answer.get("same") is True)
                if message.get("same") is True:
                    assert "compact" in message
                    assert "partial" not in message
                    same = isinstance(answer, dict) and answer.get("same") is True
                    asked.append(same)
                    if same:  # what the callee would have answered: nothing the caller lacks
                        listed = {e[0]: e[1] for e in message["compact"]}
                        callee = by_port[args[1]].membership
                        members, rest, older = callee._answer_compact(listed, node.node_id)
                        assert members == []
                        assert not older
                        assert all(listed[e[0]] == e[1] for e in rest)
                return answer

            caller.call = counting  # type: ignore[method-assign]
        events = len(swarm.events)
        await anyio.sleep(120)
        assert swarm.events[events:] == []  # no member went offline anywhere
        await swarm.converged()
        # a whole digest or a summary every other round at least
        assert len(asked) + len(summed) > 12 * 120 / 5 / 2, (len(asked), len(summed))
        assert asked  # (before the swarm is quiet)
        assert summed  # (after)
        assert sum(asked) > 0.8 * len(asked), (sum(asked), len(asked))
        assert sum(summed) > 0.8 * len(summed), (sum(summed), len(summed))
        same = sum(n.membership.answered_same for n in swarm.nodes) - before
        assert same == sum(asked) + sum(summed)
