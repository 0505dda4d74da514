"""One member flooding a node: asks, new conversations, events. Before the quotas every ask
was ACKed and queued, a flood of new conversations evicted the others' conversations, and
every event was stored. Nodes in one process on the memory transport, both backends."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from synapse_p2p import Quotas
from synapse_p2p.testing import open_swarm

pytestmark = pytest.mark.anyio


async def until(predicate: Any, timeout: float = 10.0) -> None:
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.01)


def settings(i: int, target: dict[str, Any]) -> dict[str, Any]:
    return {"name": "target", **target} if i == 0 else {"name": f"member{i}"}


async def test_a_flood_of_asks_runs_at_most_the_callers_quota_of_handlers(
    anyio_backend: str,
) -> None:
    release = anyio.Event()
    running = 0
    seen = 0
    target = {"quotas": Quotas(deferred_asks=4)}
    async with open_swarm(2, configure=lambda i: settings(i, target)) as swarm:
        victim, flooder = swarm.nodes

        @victim.ask
        async def handle(task: str, context: dict[str, Any]) -> str:
            nonlocal running, seen
            running += 1
            seen += 1
            await release.wait()
            running -= 1
            return "done"

        broadcasts = [await flooder.broadcast("synapse.ask", f"work {i}") for i in range(12)]
        await until(lambda: seen == 4)

        def answered() -> list[str]:  # per broadcast: "acked", "failed" or "" (not yet)
            out = []
            for b in broadcasts:
                status = flooder.broadcast_status(b)
                assert status is not None
                if victim.node_id in status.acked:
                    out.append("acked")
                elif victim.node_id in status.failed:
                    out.append("failed")
                else:
                    out.append("")
            return out

        await until(lambda: all(answered()))
        assert sorted(answered()) == ["acked"] * 4 + ["failed"] * 8
        assert running == 4
        release.set()
        await until(lambda: running == 0)
        assert seen == 4
        # Once its handlers are done, the member is served again.
        again = await flooder.broadcast("synapse.ask", "one more")
        await until(lambda: seen == 5)
        with anyio.fail_after(10):
            replies = [r async for r in flooder.iter_replies(again, timeout=10)]
        assert [r.result for r in replies] == ["done"]


async def test_a_member_flooding_new_conversations_evicts_only_its_own(
    anyio_backend: str,
) -> None:
    target = {"conversation_max_conversations": 40}
    async with open_swarm(3, configure=lambda i: settings(i, target)) as swarm:
        victim, honest, flooder = swarm.nodes
        for i in range(5):
            await honest.emit_conversation_event(f"real-{i}", "note", {"i": i})
        await until(lambda: all(victim.conversation(f"real-{i}") for i in range(5)))
        for i in range(200):
            await flooder.emit_conversation_event(f"spam-{i}", "note", {"i": i})
        await until(lambda: bool(victim.conversation("spam-199")), timeout=30)
        await until(lambda: len(victim.conversations()) <= 40)  # (pruning runs in the background)
        assert all(victim.conversation(f"real-{i}") for i in range(5))


async def test_events_past_a_callers_quota_are_refused(anyio_backend: str) -> None:
    target = {"quotas": Quotas(events_per_second=1, event_burst=30)}
    async with open_swarm(3, configure=lambda i: settings(i, target)) as swarm:
        victim, honest, flooder = swarm.nodes
        for i in range(100):
            await flooder.emit_conversation_event("flood", "note", {"i": i})
        await until(lambda: flooder.statistics().delivery.failed > 0)
        assert len(victim.conversation("flood")) < 60
        # Another member is not affected.
        await honest.emit_conversation_event("fine", "note", {"ok": True})
        await until(lambda: bool(victim.conversation("fine")))
