"""Mixed swarms with synapse-p2p 2.5.0: asks, ACKs, replies and events in both directions, and
a 2.5.0 late joiner syncing from our node."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from synapse_p2p import ConversationEvent, Node
from tests.helpers import NodeTimings
from tests.interop.refenv import RefProcess, ref_python

__all__ = ["ref_python"]

pytestmark = [pytest.mark.interop, pytest.mark.anyio]

FAST: NodeTimings = {"heartbeat_interval": 0.5, "peer_timeout": 3}


async def command(ref: RefProcess, cmd: dict[str, Any], timeout: float = 20) -> Any:
    assert ref.proc.stdin is not None
    assert ref.proc.stdout is not None
    ref.proc.stdin.write(json.dumps(cmd) + "\n")
    ref.proc.stdin.flush()
    with anyio.fail_after(timeout):
        line = await anyio.to_thread.run_sync(ref.proc.stdout.readline, abandon_on_cancel=True)
    return json.loads(line)


async def test_asks_and_events_cross_between_implementations(
    ref_python: Path, anyio_backend: str
) -> None:
    ours = Node(bind="127.0.0.1", name="ours", swarm="mix", **FAST)

    @ours.ask
    async def handle(task: str, context: dict[str, Any]) -> dict[str, Any]:
        return {"from": "ours", "answer": task.upper()}

    seen_kinds: list[str] = []

    @ours.on("conversation.event")
    async def on_event(event: ConversationEvent) -> None:
        seen_kinds.append(event.kind)

    async with ours:
        ref = await RefProcess.start(
            ref_python, "ref_asker.py", "mix", f"127.0.0.1:{ours.port}", "ref"
        )
        try:
            ref_id = ref.ready["id"]
            with anyio.fail_after(10):
                while ref_id not in ours.peers:
                    await anyio.sleep(0.05)
            # A 2.5.0 asker gets our ACK and our reply.
            out = await command(ref, {"op": "ask", "task": "abc", "wait": 2})
            assert out["acks"] == ["ours"]
            assert out["replies"] == [["ours", {"from": "ours", "answer": "ABC"}]]
            # Our asker gets the 2.5.0 node's ACK and reply.
            b = await ours.broadcast("synapse.ask", "hello")
            replies = [r async for r in ours.iter_replies(b, timeout=10)]
            assert [(r.peer.name, r.result) for r in replies] == [
                ("ref", {"from": "ref", "answer": "olleh"})
            ]
            kinds = sorted(e.kind for e in ours.conversation(b))
            assert kinds == ["ack", "message", "reply"]
            # Events emitted on either side reach the other.
            ev = await ours.emit_conversation_event("room", "note", {"by": "ours"})
            out = await command(ref, {"op": "emit", "cid": "room", "kind": "note"})
            with anyio.fail_after(10):
                while len(ours.conversation("room")) < 2:
                    await anyio.sleep(0.05)
            for _ in range(50):
                log = await command(ref, {"op": "log", "cid": "room"})
                if len(log["events"]) == 2:
                    break
                await anyio.sleep(0.1)
            assert sorted(e[1] for e in log["events"]) == sorted([ev.event_id, out["event_id"]])
        finally:
            ref.stop()


async def test_a_reference_late_joiner_syncs_from_our_node(
    ref_python: Path, anyio_backend: str
) -> None:
    async with Node(bind="127.0.0.1", name="ours", swarm="late", **FAST) as ours:
        for i in range(50):
            await ours.emit_conversation_event("history", "line", {"i": i})
        ref = await RefProcess.start(
            ref_python, "ref_asker.py", "late", f"127.0.0.1:{ours.port}", "late-ref"
        )
        try:
            out = await command(ref, {"op": "sync", "peer_port": ours.port, "cid": "history"})
            assert out == {"new": 50}
            log = await command(ref, {"op": "log", "cid": "history"})
            assert sorted(e[1] for e in log["events"]) == sorted(
                e.event_id for e in ours.conversation("history")
            )
        finally:
            ref.stop()
