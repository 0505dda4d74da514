"""The dashboard's state model fed by a real swarm of a few dozen in-process nodes (the memory
network), under trio and asyncio: what the page would be sent stays right and bounded."""

from __future__ import annotations

import functools
import json
from typing import Any

import anyio
import pytest

from synapse_p2p.dashboard import DashboardState, Limits, serve_dashboard
from synapse_p2p.testing import open_swarm
from synapse_p2p.types import ConversationEvent, Peer
from tests.dashboard.helpers import WsClient

pytestmark = pytest.mark.anyio

N = 30
ASKS = 12


async def test_a_swarm_of_thirty_through_the_model(anyio_backend: str) -> None:
    # Timings a loaded 2-core machine sustains for 30 in-process nodes (with 0.5 s / 2 s, under
    # load a quarter of the CPU went to gossip and false offline marks).
    async with open_swarm(N, heartbeat_interval=1, peer_timeout=5) as swarm:
        observer, asker, *answering = swarm.nodes
        limits = Limits(conversations=ASKS, events_per_conversation=40)
        state = DashboardState(observer.node_id, suspect_after=30, limits=limits)
        changed = anyio.Event()

        def handler(name: str) -> Any:
            async def handle(payload: Any) -> None:
                now = anyio.current_time()
                if isinstance(payload, ConversationEvent):
                    state.event(payload)
                elif isinstance(payload, Peer) and name == "peer.offline":
                    state.peer_offline(payload, now)
                elif isinstance(payload, Peer):
                    state.peer_seen(payload, now)
                changed.set()

            return handle

        for name in ("peer.joined", "peer.heartbeat", "peer.offline", "conversation.event"):
            observer.on(name)(handler(name))
        for node in answering:

            @node.ask
            async def answer(task: str, context: dict[str, Any], name: str = node.name) -> str:
                return f"{name} did {task}"

        for peer in observer.peers.values():
            state.peer_seen(peer, anyio.current_time())
        nonces = [(await asker.broadcast("synapse.ask", f"job {i}")).nonce for i in range(ASKS)]
        sizes: list[int] = []

        def complete() -> bool:
            asks = [state.asks.get(n) for n in nonces[-limits.conversations :]]
            full = {"acked": N - 2, "replied": N - 2, "errors": 0, "working": 0}
            return all(a is not None and a.view()["counts"] == full for a in asks)

        with anyio.fail_after(60):
            while not complete():
                await changed.wait()
                changed = anyio.Event()
                delta = state.drain()
                if delta is not None:
                    sizes.append(len(json.dumps(delta)))

        # Bounded: each conversation keeps only its newest events.
        assert set(state.conversations) == set(nonces)
        assert all(len(c.events) <= 40 for c in state.conversations.values())
        assert state.events_seen >= ASKS * (1 + 2 * (N - 2))
        assert max(sizes) < 512 * 1024
        snapshot = state.snapshot()
        assert len(snapshot["peers"]) == N - 1
        assert {p["status"] for p in snapshot["peers"]} == {"alive"}

        # A node that dies is reported offline.
        victim = answering[0]
        swarm.kill(victim)
        with anyio.fail_after(30):
            while state.peers[victim.node_id].status != "offline":
                await changed.wait()
                changed = anyio.Event()


async def test_quiet_members_of_a_large_swarm_stay_alive_on_the_page(anyio_backend: str) -> None:
    """Each round a member gossips to 3 others: with 30 of them it calls the observer itself
    about every 10 rounds (5 s) on average, and a quarter of the time not within 12 rounds,
    the page's suspect time here (6 s): among 29 members over 8 s, some would be shown
    suspect on their own calls alone. What the observer's node heard of them, first hand or
    gossiped (a few rounds old, with room for a loaded machine), keeps them alive."""
    async with open_swarm(N, heartbeat_interval=0.5, peer_timeout=4) as swarm:
        observer = swarm.nodes[1]
        async with anyio.create_task_group() as tg:
            serve = functools.partial(serve_dashboard, observer, port=0, interval=0.05)
            dashboard = await tg.start(serve)
            client = await WsClient.open(int(dashboard.url.rsplit(":", 1)[1].strip("/")))
            hello = await client.until(lambda m: m["type"] == "snapshot")
            status = {p["id"]: p["status"] for p in hello["peers"]}
            shown: set[str] = set(status.values())
            with anyio.move_on_after(8):  # nearly twice the suspect time
                while (message := await client.receive()) is not None:
                    for view in message.get("peers", []) if message["type"] == "delta" else []:
                        status[view["id"]] = view["status"]
                        shown.add(view["status"])
            await client.aclose()
            tg.cancel_scope.cancel()
    assert len(status) == N - 1
    assert shown == {"alive"}
