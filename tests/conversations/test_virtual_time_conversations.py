"""Retention and anti-entropy on virtual time (trio MockClock, in-memory network)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
import trio.testing

from synapse_p2p import ConversationEvent
from synapse_p2p.testing import open_swarm

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> Any:
    return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})


async def test_a_node_that_missed_events_catches_up_by_anti_entropy(anyio_backend: Any) -> None:
    async with open_swarm(4, heartbeat_interval=1, peer_timeout=30) as swarm:
        assert swarm.network is not None
        a, _b, _c, lonely = swarm.nodes
        swarm.network.isolated.add(lonely.address)
        for i in range(30):
            await a.emit_conversation_event("log", "line", {"i": i})
        await anyio.sleep(2)
        assert lonely.conversation("log") == []
        swarm.network.isolated.clear()
        with anyio.fail_after(60):
            while len(lonely.conversation("log")) < 30:
                await anyio.sleep(0.5)
        assert [e.event_id for e in lonely.conversation("log")] == [
            e.event_id for e in a.conversation("log")
        ]


async def test_quiet_conversations_are_pruned_and_old_events_refused(anyio_backend: Any) -> None:
    base = 1_800_000_000.0

    def wall() -> float:  # wall-clock seconds that follow the virtual clock
        return base + anyio.current_time()

    async with open_swarm(2, conversation_retention=3600, wall_clock=wall) as swarm:
        a, b = swarm.nodes
        pruned: list[str] = []

        @b.on("conversation.pruned")
        async def on_pruned(cid: str) -> None:
            pruned.append(cid)

        await a.emit_conversation_event("quiet", "note", {})
        await a.emit_conversation_event("busy", "note", {})
        await anyio.sleep(1800)
        await a.emit_conversation_event("busy", "note", {})
        await anyio.sleep(1800 + 60 * 16)  # past the window for "quiet", not for "busy"
        assert "quiet" not in b.conversations()
        assert "busy" in b.conversations()
        assert pruned == ["quiet"]
        # An event older than the window is refused, so nothing leaks back through gossip.
        late = ConversationEvent("quiet", "late", "note", a.self_peer(), created_at=wall() - 4000)
        late = a._conversations.trust.sign(late)  # signed by its author, as a's events are
        assert await b._conversations.remember(late) is False
        assert "quiet" not in b.conversations()
