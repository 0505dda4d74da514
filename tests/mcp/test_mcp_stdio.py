"""``sn mcp`` end to end: the official MCP client SDK launches ``python -m synapse_p2p mcp`` as
a subprocess and talks to it over stdio, while a small swarm of loopback nodes runs in this
process (no mDNS: the server gets ``--no-mdns --seed``). The subprocess runs on the same
backend as the test; it is stopped by the client at the end of each test (stdin closed, then
SIGTERM/SIGKILL)."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from synapse_p2p import Node
from synapse_p2p.teams import Team, Worker
from synapse_p2p.testing import Swarm, open_swarm

mcp = pytest.importorskip("mcp", reason="the MCP SDK is not installed (pip install '.[mcp]')")

from mcp import ClientSession, StdioServerParameters, stdio_client  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.anyio

TOOLS = {
    "list_peers", "describe_peer", "ask_swarm", "ask_peer", "call_endpoint", "offer_task",
    "task_status", "wait_task", "list_conversations", "read_conversation", "post_event",
    "next_ask", "reply", "next_task", "progress", "done", "fail",
}  # fmt: skip


class Mcp:
    """A client session with ``sn mcp``; tool results parsed."""

    def __init__(self, session: ClientSession, stderr: Path) -> None:
        self.session = session
        self.stderr = stderr

    async def call(self, tool: str, **arguments: Any) -> dict[str, Any]:
        """A successful tool call's JSON result (fails the test on a tool error)."""
        result = await self.session.call_tool(tool, arguments)
        text = "".join(getattr(c, "text", "") for c in result.content)
        assert not result.is_error, f"{tool} failed: {text}\nserver stderr: {self.log()}"
        data: dict[str, Any] = json.loads(text)
        return data

    async def error(self, tool: str, **arguments: Any) -> str:
        """A tool call that must fail: its message."""
        result = await self.session.call_tool(tool, arguments)
        text = "".join(getattr(c, "text", "") for c in result.content)
        assert result.is_error, f"{tool} should have failed, got {text}"
        return text

    def log(self) -> str:
        return self.stderr.read_text(errors="replace") if self.stderr.exists() else ""

    async def until_peers(self, *names: str, timeout: float = 20) -> dict[str, Any]:
        """Poll list_peers until every name is there (the node is in another process: no
        event of this process says when it has joined)."""
        with anyio.fail_after(timeout):
            while True:
                peers = await self.call("list_peers", agent_cards=False)
                if set(names) <= {p["name"] for p in peers["peers"]}:
                    return peers
                await anyio.sleep(0.1)


@contextlib.asynccontextmanager
async def open_mcp(
    backend: str, seed: Node, tmp_path: Path, *options: str, name: str = "agent"
) -> AsyncIterator[Mcp]:
    args = ["-m", "synapse_p2p", "--backend", backend, "mcp", "lab", "--no-mdns",
            "--seed", f"127.0.0.1:{seed.port}", "--name", name, *options]  # fmt: skip
    params = StdioServerParameters(
        command=sys.executable, args=args, cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), **{k: v for k, v in os.environ.items() if k.startswith("COV")}},
    )  # fmt: skip
    stderr = tmp_path / f"{name}.stderr"
    problems: list[Exception] = []

    async def on_message(message: Any) -> None:
        if isinstance(message, Exception):  # a line on stdout that is not an MCP message
            problems.append(message)

    with stderr.open("w") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write):
            async with ClientSession(read, write, message_handler=on_message) as session:
                with anyio.fail_after(30):
                    await session.initialize()
                yield Mcp(session, stderr)
    assert not problems, f"stdout carried something else than MCP: {problems}"


def configure(i: int) -> dict[str, Any]:
    nodes: list[dict[str, Any]] = [
        {"name": "reviewer", "capabilities": ["code-review"]},
        {"name": "coder", "capabilities": ["python"]},
        {"name": "ghost"},
    ]
    return nodes[i]


@contextlib.asynccontextmanager
async def open_lab(n: int = 2) -> AsyncIterator[Swarm]:
    """reviewer (ask handler, agent card, endpoints) and coder (a team worker for python)."""
    async with open_swarm(n, transport="tcp", configure=configure, swarm="lab",
                          heartbeat_interval=0.5, peer_timeout=3) as swarm:  # fmt: skip
        reviewer, coder = swarm.nodes[0], swarm.nodes[1]

        @reviewer.ask
        async def review(task: str, context: dict[str, Any]) -> str:
            return f"LGTM: {task}{' ' + context['url'] if 'url' in context else ''}"

        @reviewer.endpoint("sum")
        async def add(a: int, b: int) -> int:
            return a + b

        @reviewer.endpoint("slow")
        async def slow() -> str:
            await anyio.sleep(30)
            return "late"

        @reviewer.endpoint("big")
        async def big() -> dict[str, Any]:
            return {"log": "x" * 500_000, "lines": list(range(10_000))}

        reviewer.artifact("agent-card", {"name": "reviewer", "skills": ["code review"]})
        async with Worker(coder) as worker:

            @worker.task
            async def implement(assignment: Any) -> dict[str, Any]:
                await assignment.progress("writing")
                return {"diff": f"+ {assignment.title}"}

            yield swarm


def text_of(result: Any) -> str:
    return "".join(getattr(c, "text", "") for c in result.content)


async def test_tools_are_listed_with_schemas(anyio_backend: str, tmp_path: Path) -> None:
    async with open_lab() as swarm, open_mcp(anyio_backend, swarm[0], tmp_path) as client:
        listed = await client.session.list_tools()
        assert {t.name for t in listed.tools} == TOOLS
        for tool in listed.tools:
            assert tool.description, tool.name
            assert len(tool.description) > 40, tool.name
            assert tool.input_schema["type"] == "object"
            assert tool.input_schema["additionalProperties"] is False
        ask = next(t for t in listed.tools if t.name == "ask_swarm")
        assert ask.input_schema["required"] == ["task"]
        templates = await client.session.list_resource_templates()
        assert {t.uri_template for t in templates.resource_templates} == {
            "synapse://peer/{peer}/agent-card",
            "synapse://conversation/{conversation_id}",
        }


async def test_ask_the_swarm_and_one_peer_then_read_the_conversation(
    anyio_backend: str, tmp_path: Path
) -> None:
    async with open_lab() as swarm, open_mcp(anyio_backend, swarm[0], tmp_path) as client:
        reviewer = swarm[0]
        noted = anyio.Event()

        @reviewer.on("conversation.note")
        async def on_note(event: Any) -> None:
            if event.payload.get("text") == "thanks, merging":
                noted.set()

        await client.until_peers("reviewer", "coder")
        peers = await client.call("list_peers")
        cards = {p["name"]: p["agent_card"] for p in peers["peers"]}
        assert cards["reviewer"]["content"] == {"name": "reviewer", "skills": ["code review"]}
        assert cards["coder"] is None
        assert peers["self"]["name"] == "agent"
        only = await client.call("list_peers", capability="python", agent_cards=False)
        assert [p["name"] for p in only["peers"]] == ["coder"]

        asked = await client.call("ask_swarm", task="Review this diff",
                                  context={"url": "https://x/pull/1"}, timeout=20)  # fmt: skip
        assert [r["result"] for r in asked["replies"]] == [
            "LGTM: Review this diff https://x/pull/1"
        ]
        assert asked["replies"][0]["from"].startswith("reviewer")
        assert [a.split()[0] for a in asked["acked"]] == ["reviewer"]  # coder has no ask handler
        assert asked["still_working"] == []
        cid = asked["conversation_id"]

        direct = await client.call("ask_peer", peer="reviewer", task="and this one?")
        assert direct["answer"] == "LGTM: and this one?"
        total = await client.call("call_endpoint", peer=reviewer.node_id[:10], endpoint="sum",
                                  args=[2], kwargs={"b": 3})  # fmt: skip
        assert total["result"] == 5
        huge = (await client.call("call_endpoint", peer="reviewer", endpoint="big"))["result"]
        assert huge["log"].endswith("… (492000 more characters)")  # outputs are bounded
        assert huge["lines"][-1] == "… 9800 more items"
        described = await client.call("describe_peer", peer="reviewer")
        assert {"sum", "slow"} <= {m["name"] for m in described["endpoints"]}

        page = await client.call("read_conversation", conversation_id=cid, limit=2)
        assert page["more"] is True
        kinds = [e["kind"] for e in page["events"]]
        rest = await client.call("read_conversation", conversation_id=cid,
                                 after=page["next_after"])  # fmt: skip
        kinds += [e["kind"] for e in rest["events"]]
        assert kinds == ["message", "ack", "reply"]
        assert rest["more"] is False
        listed = await client.call("list_conversations")
        assert cid in [c["conversation_id"] for c in listed["conversations"]]

        await client.call("post_event", conversation_id=cid, text="thanks, merging")
        with anyio.fail_after(10):
            await noted.wait()

        card = await client.session.read_resource(f"synapse://peer/{reviewer.node_id}/agent-card")
        assert json.loads(card.contents[0].text)["content"]["name"] == "reviewer"  # type: ignore[union-attr]
        conversation = await client.session.read_resource(f"synapse://conversation/{cid}")
        data = json.loads(conversation.contents[0].text)  # type: ignore[union-attr]
        assert [e["kind"] for e in data["events"]][:3] == ["message", "ack", "reply"]


async def test_offer_a_task_a_worker_node_completes(anyio_backend: str, tmp_path: Path) -> None:
    async with open_lab() as swarm, open_mcp(anyio_backend, swarm[0], tmp_path) as client:
        await client.until_peers("reviewer", "coder")
        offered = await client.call("offer_task", title="implement the parser",
                                    spec={"file": "parser.py"}, requires=["python"])  # fmt: skip
        task_id = offered["task"]["task_id"]
        assert offered["task"]["status"] == "offered"
        finished = await client.call("wait_task", task_id=task_id, timeout=30)
        assert finished["task"]["status"] == "done"
        assert finished["task"]["result"] == {"diff": "+ implement the parser"}
        assert finished["task"]["assignee"].startswith("coder")
        status = await client.call("task_status", task_id=task_id)
        assert status["task"]["progress"][0]["message"] == "writing"
        assert [t["task_id"] for t in (await client.call("task_status"))["tasks"]] == [task_id]
        events = await client.call("read_conversation", conversation_id=task_id)
        kinds = [e["kind"] for e in events["events"] if e["kind"] != "task.progress"]
        assert kinds == ["task.offer", "task.claim", "task.grant", "task.done"]


async def test_asked_by_another_node_the_client_takes_acks_and_replies(
    anyio_backend: str, tmp_path: Path
) -> None:
    async with open_lab() as swarm, open_mcp(anyio_backend, swarm[0], tmp_path) as client:
        reviewer = swarm[0]
        await client.until_peers("reviewer", "coder")
        agent = next(p for p in reviewer.peers.values() if p.name == "agent")
        acked = anyio.Event()

        @reviewer.on("conversation.ack")
        async def on_ack(event: Any) -> None:
            if event.peer.id == agent.id:
                acked.set()

        broadcast = await reviewer.broadcast("synapse.ask", "summarise the logs",
                                             context={"day": "monday"})  # fmt: skip
        # The same call the broadcast makes: queued, not ACKed, while nobody has taken it.
        answer = await reviewer.call_peer(agent, "synapse.ask", "summarise the logs",
                                          context={"day": "monday"}, broadcast=broadcast.to_dict())  # fmt: skip
        assert answer["accepted"] is True
        assert answer["deferred"] is False
        assert not [
            e for e in reviewer.conversation(broadcast) if e.kind == "ack" and e.peer.id == agent.id
        ]

        taken = await client.call("next_ask", timeout=10)
        ask = taken["ask"]
        assert ask["task"] == "summarise the logs"
        assert ask["context"] == {"day": "monday"}
        assert ask["kind"] == "swarm"
        assert ask["conversation_id"] == broadcast.nonce
        assert ask["from"]["name"] == "reviewer"
        with anyio.fail_after(10):
            await acked.wait()  # taking it is what ACKed it
        assert (await client.call("next_ask", timeout=0))["ask"] is None  # taken once only

        await client.call("reply", ask_id=ask["ask_id"], result="3 errors, all fixed")
        replies = [r async for r in reviewer.iter_replies(broadcast, timeout=10)
                   if r.peer.id == agent.id]  # fmt: skip
        assert [r.result for r in replies] == ["3 errors, all fixed"]
        again = await client.error("reply", ask_id=ask["ask_id"], result="twice")
        assert "closed: answered already" in again

        # A direct ask: the caller waits for the client's answer.
        async with anyio.create_task_group() as tg:
            answers: list[Any] = []

            async def ask_directly() -> None:
                answers.append(await reviewer.call_peer(agent, "_node.ask", "what is 6*7?", {},
                                                        timeout=20))  # fmt: skip

            tg.start_soon(ask_directly)
            direct = (await client.call("next_ask", timeout=10))["ask"]
            assert direct["kind"] == "direct"
            assert direct["task"] == "what is 6*7?"
            await client.call("reply", ask_id=direct["ask_id"], result=42)
        assert answers == [42]


async def test_a_team_task_taken_with_next_task_and_done(
    anyio_backend: str, tmp_path: Path
) -> None:
    async with open_lab() as swarm, open_mcp(anyio_backend, swarm[0], tmp_path,
                                             "--capability", "writing") as client:  # fmt: skip
        reviewer = swarm[0]
        await client.until_peers("reviewer", "coder")
        first = await client.call("next_task", timeout=0)  # starts claiming
        assert first["task"] is None
        async with Team(reviewer) as team:
            task = await team.offer("write the release notes", spec={"version": "3.0"},
                                    requires=["writing"])  # fmt: skip
            taken = (await client.call("next_task", timeout=20))["task"]
            assert taken["task_id"] == task.id
            assert taken["title"] == "write the release notes"
            assert taken["spec"] == {"version": "3.0"}
            await client.call("progress", task_id=task.id, message="drafting", data={"words": 120})
            await client.call("done", task_id=task.id, result={"notes": "## 3.0"})
            assert await team.wait(task, timeout=20) == {"notes": "## 3.0"}
            assert task.assignee is not None
            assert task.assignee.name == "agent"
            assert [p["message"] for p in task.progress] == ["drafting"]
            assert task.progress[0]["words"] == 120
            late = await client.error("done", task_id=task.id, result="again")
            assert "no longer this node's: it is done" in late


async def test_a_task_not_taken_in_time_is_handed_back(anyio_backend: str, tmp_path: Path) -> None:
    async with open_lab() as swarm, open_mcp(anyio_backend, swarm[0], tmp_path,
                                             "--capability", "writing", "--hold", "1") as client:  # fmt: skip
        reviewer = swarm[0]
        await client.until_peers("reviewer", "coder")
        released = anyio.Event()

        @reviewer.on("conversation.task.release")
        async def on_release(event: Any) -> None:
            released.set()

        await client.call("next_task", timeout=0)
        async with Team(reviewer) as team:
            task = await team.offer("proofread", requires=["writing"])
            with anyio.fail_after(20):
                await released.wait()
            assert "no agent took it within 1 s" in next(
                e.payload["reason"]
                for e in reviewer.conversation(task.id)
                if e.kind == "task.release"
            )
            # Re-offered as a new attempt; taken this time, it is done.
            taken = (await client.call("next_task", timeout=20))["task"]
            assert taken["task_id"] == task.id
            assert taken["attempt"] >= 2
            await client.call("done", task_id=task.id, result="ok")
            assert await team.wait(task, timeout=20) == "ok"


async def test_bad_arguments_and_a_vanished_peer_are_tool_errors(
    anyio_backend: str, tmp_path: Path
) -> None:
    async with open_lab(3) as swarm, open_mcp(anyio_backend, swarm[0], tmp_path) as client:
        await client.until_peers("reviewer", "coder", "ghost")
        message = await client.error("ask_swarm")
        assert message == "bad arguments for ask_swarm: 'task' is a required property"
        message = await client.error("ask_swarm", task="x", timeout="soon")
        assert message.startswith("bad arguments for ask_swarm (at timeout): 'soon' is not of type")
        message = await client.error("read_conversation", conversation_id="c", limit=0)
        assert "(at limit)" in message
        message = await client.error("no_such_tool")
        assert message.startswith("no tool 'no_such_tool'")
        assert "no peer 'nobody'" in await client.error("ask_peer", peer="nobody", task="hi")
        assert "no ask 'ask-99'" in await client.error("reply", ask_id="ask-99", result=1)
        assert "exactly one of" in await client.error("reply", ask_id="ask-1")
        assert "no ask handler" in await client.error("ask_peer", peer="coder", task="hi")
        assert "reserved" in await client.error("post_event", conversation_id="c", kind="reply")
        assert "no conversation 'nope'" in await client.error("read_conversation",
                                                               conversation_id="nope")  # fmt: skip
        message = await client.error("call_endpoint", peer="reviewer", endpoint="slow", timeout=0.5)
        assert message.startswith("timed out")
        message = await client.error("call_endpoint", peer="reviewer",
                                     endpoint="_synapse.conversation.event", args=[{}])  # fmt: skip
        assert "part of the swarm's own protocol" in message
        pong = await client.call("call_endpoint", peer="reviewer", endpoint="_synapse.ping")
        assert pong["result"] == "pong"
        message = await client.error("wait_task", task_id="t-1")
        assert "no task 't-1'" in message

        with pytest.raises(mcp.MCPError, match="no conversation 'nope'"):
            await client.session.read_resource("synapse://conversation/nope")
        with pytest.raises(mcp.MCPError, match="publishes no agent card"):
            await client.session.read_resource("synapse://peer/coder/agent-card")

        swarm.kill(swarm[2])  # the ghost vanishes without a word
        message = await client.error("ask_peer", peer="ghost", task="are you there?", timeout=5)
        assert "unreachable" in message or "no peer 'ghost'" in message, message
        # The server keeps serving.
        peers = await client.call("list_peers", agent_cards=False)
        assert "reviewer" in {p["name"] for p in peers["peers"]}


async def test_sn_mcp_joins_a_secured_swarm_with_its_secret(
    anyio_backend: str, tmp_path: Path
) -> None:
    """`sn mcp --secret` joins a swarm whose nodes hold that secret and asks it; with another
    secret it is shut out (no peer ever listed, the reviewer never asked)."""
    asked: list[str] = []
    async with open_swarm(1, transport="tcp", swarm="lab", secret="lab-secret") as swarm:
        reviewer = swarm[0]
        reviewer.name = "reviewer"

        @reviewer.ask
        async def review(task: str, context: dict[str, Any]) -> str:
            asked.append(task)
            return f"LGTM: {task}"

        async with open_mcp(anyio_backend, reviewer, tmp_path, "--secret", "lab-secret") as mcp:
            await mcp.until_peers("reviewer")
            answer = await mcp.call("ask_swarm", task="secured?", timeout=20)
            assert [r["result"] for r in answer["replies"]] == ["LGTM: secured?"]
        async with open_mcp(
            anyio_backend, reviewer, tmp_path, "--secret", "wrong", name="outsider"
        ) as outsider:
            peers = await outsider.call("list_peers", agent_cards=False)
            assert peers["peers"] == []
        assert asked == ["secured?"]
        assert all(p.name != "outsider" for p in reviewer.peers.values())
