"""The ask inbox and the task desk behind ``sn mcp``, in process (no MCP transport): when an
ask is ACKed, what askers are told when nobody takes it, bounds, and closing."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from synapse_p2p import RemoteError
from synapse_p2p.teams import Team
from synapse_p2p.testing import open_swarm

pytest.importorskip("mcp", reason="the MCP SDK is not installed (pip install '.[mcp]')")

from synapse_p2p.mcp import open_bridge
from synapse_p2p.mcp._inbox import GONE

pytestmark = pytest.mark.anyio


def acks_by(node: Any, nonce: str, author: Any) -> list[Any]:
    return [e for e in node.conversation(nonce) if e.kind == "ack" and e.peer.id == author.node_id]


async def test_a_queued_swarm_ask_is_not_acked_and_is_dropped_after_hold() -> None:
    async with open_swarm(2, swarm="lab") as swarm:
        asker, agent = swarm.nodes
        async with open_bridge(agent, hold=0.3) as bridge:
            b = await asker.broadcast("synapse.ask", "review", context={})
            peer = asker.peers[agent.node_id]
            answer = await asker.call_peer(peer, "synapse.ask", "review", context={},
                                           broadcast=b.to_dict())  # fmt: skip
            assert answer["accepted"] is True
            assert answer["deferred"] is False
            assert bridge.inbox.pending() == 1
            assert acks_by(agent, b.nonce, agent) == []
            await anyio.sleep(0.4)  # the hold itself is what is tested
            assert await bridge.inbox.take(0) is None
            assert acks_by(agent, b.nonce, agent) == []  # never ACKed: nothing was promised


async def test_a_waiting_client_takes_an_ask_at_once_and_acks_before_the_call_returns() -> None:
    async with open_swarm(2, swarm="lab") as swarm:
        asker, agent = swarm.nodes
        async with open_bridge(agent) as bridge, anyio.create_task_group() as tg:
            taken: list[Any] = []

            async def take() -> None:
                taken.append(await bridge.inbox.take(10))

            tg.start_soon(take)
            await anyio.wait_all_tasks_blocked()  # the client waits in take()
            b = await asker.broadcast("synapse.ask", "review", context={"pr": 1})
            answer = await asker.call_peer(asker.peers[agent.node_id], "synapse.ask", "review",
                                           context={"pr": 1}, broadcast=b.to_dict())  # fmt: skip
            assert answer == {"accepted": True, "deferred": True}
        assert taken[0].task == "review"
        assert taken[0].context == {"pr": 1}
        assert len(acks_by(agent, b.nonce, agent)) == 1


async def test_two_clients_waiting_both_get_an_ask() -> None:
    async with open_swarm(2, swarm="lab") as swarm:
        asker, agent = swarm.nodes
        async with open_bridge(agent) as bridge:
            got: list[str] = []
            async with anyio.create_task_group() as tg:

                async def take() -> None:
                    ask = await bridge.inbox.take(10)
                    assert ask is not None
                    got.append(ask.task)

                tg.start_soon(take)
                tg.start_soon(take)
                peer = asker.peers[agent.node_id]
                for task in ("one", "two"):
                    b = await asker.broadcast("synapse.ask", task, context={})
                    await asker.call_peer(
                        peer, "synapse.ask", task, context={}, broadcast=b.to_dict()
                    )
            assert sorted(got) == ["one", "two"]


async def test_the_queue_is_bounded() -> None:
    async with open_swarm(2, swarm="lab") as swarm:
        asker, agent = swarm.nodes
        async with open_bridge(agent, ask_capacity=2) as bridge:
            peer = asker.peers[agent.node_id]
            answers = []
            for task in ("a", "b", "c"):
                b = await asker.broadcast("synapse.ask", task, context={})
                answers.append(await asker.call_peer(peer, "synapse.ask", task, context={},
                                                     broadcast=b.to_dict()))  # fmt: skip
            assert [a["accepted"] for a in answers] == [True, True, False]
            assert answers[2]["reason"].startswith("busy: 2 asks")
            with pytest.raises(RemoteError) as caught:
                await asker.call_peer(peer, "_node.ask", "d", {})
            assert caught.value.code == "overloaded"
            assert bridge.inbox.pending() == 2


async def test_a_direct_ask_nobody_takes_fails_after_hold() -> None:
    async with open_swarm(2, swarm="lab") as swarm:
        asker, agent = swarm.nodes
        async with open_bridge(agent, hold=0.2):
            with pytest.raises(RemoteError, match=r"no agent took the ask within 0\.2 s"):
                await asker.call_peer(asker.peers[agent.node_id], "_node.ask", "hi", {})


async def test_closing_tells_the_swarm_about_acked_asks_and_refuses_new_ones() -> None:
    async with open_swarm(2, swarm="lab") as swarm:
        asker, agent = swarm.nodes
        peer = asker.peers[agent.node_id]
        async with open_bridge(agent) as bridge:
            b = await asker.broadcast("synapse.ask", "long job", context={})
            await asker.call_peer(
                peer, "synapse.ask", "long job", context={}, broadcast=b.to_dict()
            )
            ask = await bridge.inbox.take(5)
            assert ask is not None
        errors = [e for e in agent.conversation(b.nonce) if e.kind == "error"]
        assert [e.payload["error"] for e in errors] == [GONE]
        b2 = await asker.broadcast("synapse.ask", "another", context={})
        answer = await asker.call_peer(
            peer, "synapse.ask", "another", context={}, broadcast=b2.to_dict()
        )
        assert answer == {"accepted": False, "deferred": False, "reason": GONE}
        with pytest.raises(RemoteError, match="has gone"):
            await asker.call_peer(peer, "_node.ask", "hi", {})


async def test_a_task_report_needs_a_taken_task() -> None:
    async with open_swarm(1, swarm="lab") as swarm:
        async with open_bridge(swarm[0]) as bridge:
            assert bridge.desk is not None
            desk = bridge.desk  # (``desk.worker`` is narrowed to None below; bridge's is not)
            assert desk.worker is None  # nothing is claimed before next_task
            assert await desk.take(0) is None
            assert bridge.desk.worker is not None
            with pytest.raises(Exception, match="no task 'x' assigned to this node"):
                bridge.desk.finish("x", result=1)


def writer(i: int) -> dict[str, Any]:
    return {"capabilities": ["writing"]} if i == 1 else {}


async def test_a_taken_task_left_without_a_report_is_handed_back() -> None:
    async with open_swarm(2, swarm="lab", configure=writer) as swarm:
        lead, agent = swarm.nodes
        async with open_bridge(agent, task_idle_timeout=0.3) as bridge, Team(lead) as team:
            assert bridge.desk is not None
            await bridge.desk.take(0)  # starts claiming
            task = await team.offer("proofread", requires=["writing"])
            first = await bridge.desk.take(10)
            assert first is not None
            assert first.assignment.attempt == 1
            again = await bridge.desk.take(10)  # silent for 0.3 s: handed back, re-offered
            assert again is not None
            assert again.id == task.id
            assert again.assignment.attempt == 2
            release = [e for e in lead.conversation(task.id) if e.kind == "task.release"]
            assert release[0].payload["reason"] == "the agent sent no report for 0.3 s"
            await bridge.desk.progress(task.id, "reading", {})
            bridge.desk.finish(task.id, result="3 typos")
            assert await team.wait(task, timeout=10) == "3 typos"
            assert task.attempts == 2


def test_output_is_bounded() -> None:
    from synapse_p2p.mcp._output import MAX_TEXT, clip, json_text

    deep: Any = "bottom"
    for _ in range(50):
        deep = [deep]
    clipped = clip({"text": "x" * 20_000, "items": list(range(1000)), "deep": deep,
                    "raw": b"\x00" * 10})  # fmt: skip
    assert clipped["text"].endswith("… (12000 more characters)")
    assert len(clipped["items"]) == 201
    assert clipped["items"][-1] == "… 800 more items"
    assert "…" in json_text(clipped["deep"])
    assert clipped["raw"] == {"$bytes": "AAAAAAAAAAAAAA==", "size": 10}
    assert clip(float("nan")) == "nan"
    text = json_text({"big": ["y" * 5000] * 100})
    assert len(text) < MAX_TEXT + 100
    assert text.endswith(f"(output cut at {MAX_TEXT} characters)")
