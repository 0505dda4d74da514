"""A node on a SQLite log: restart keeps the conversations and catches up on what it missed;
a custom summarizer; broadcast.received."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from synapse_p2p import ConversationEvent, Identity, Node, SqliteConversationLog
from synapse_p2p.testing import open_swarm

pytestmark = pytest.mark.anyio


async def test_restarted_node_keeps_its_log_and_catches_up(
    anyio_backend: str, tmp_path: Path
) -> None:
    db = tmp_path / "node.db"
    async with open_swarm(2, heartbeat_interval=0.2, peer_timeout=1) as swarm:
        a, _ = swarm.nodes
        assert swarm.network is not None
        settings: dict[str, Any] = {
            "bind": "10.0.9.1", "port": 7000, "swarm": "test", "name": "restarted",
            "seeds": [f"{a.address}:{a.port}"], "heartbeat_interval": 0.2, "peer_timeout": 1,
            "transport": swarm.network.transport("10.0.9.1"),
        }  # fmt: skip
        key = Identity.generate()  # the restarted node keeps its key, so its id
        first = Node(identity=key, conversation_log=SqliteConversationLog(db), **settings)
        async with first:
            await swarm.converged()
            await a.emit_conversation_event("work", "step", {"i": 0})
            with anyio.fail_after(10):
                while len(first.conversation("work")) < 1:
                    await anyio.sleep(0.01)
        # While it is down, the swarm goes on.
        for i in range(1, 6):
            await a.emit_conversation_event("work", "step", {"i": i})
        second = Node(identity=key, conversation_log=SqliteConversationLog(db), **settings)
        assert [e.payload["i"] for e in second.conversation("work")] == [0]  # survived
        async with second:
            with anyio.fail_after(30):  # anti-entropy pulls the missed events
                while len(second.conversation("work")) < 6:
                    await anyio.sleep(0.05)
        assert [e.payload["i"] for e in second.conversation("work")] == list(range(6))


async def test_a_custom_summarizer_and_broadcast_received(anyio_backend: str) -> None:
    async with open_swarm(2, conversation_max_events=6, conversation_keep_recent=2) as swarm:
        a, b = swarm.nodes
        received: list[dict[str, Any]] = []
        summaries: list[str] = []

        @b.summarizer
        async def summarize(events: list[ConversationEvent]) -> str:
            return f"{len(events)} lines about {events[0].kind}"

        @b.on("broadcast.received")
        async def on_received(info: dict[str, Any]) -> None:
            received.append(info)

        @b.on("conversation.compacted")
        async def on_compacted(summary: ConversationEvent) -> None:
            summaries.append(summary.payload["summary"])

        @b.endpoint("topic.open", publish=False)
        async def topic_open(title: str, broadcast: Any) -> str:
            return title

        bc = await a.broadcast("topic.open", "parser")
        for i in range(8):
            await a.emit_conversation_event(bc, "line", {"i": i})
        with anyio.fail_after(10):
            while not summaries or not received:
                await anyio.sleep(0.01)
        assert summaries[0].endswith("lines about line")
        assert received[0]["endpoint"] == "topic.open"
        assert received[0]["args"] == ["parser"]
        assert received[0]["broadcast"].nonce == bc.nonce
