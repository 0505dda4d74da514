"""The swarm behind an A2A endpoint, driven by the a2a-sdk's own client.

A loopback swarm of real TCP nodes; node 0 serves A2A over HTTP (hypercorn) on 127.0.0.1.
Everything runs under trio and under asyncio.
"""

from __future__ import annotations

import contextlib
import functools
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import pytest

pytest.importorskip("a2a", reason="the a2a extra is not installed")

from a2a.client import A2ACardResolver, ClientConfig, create_client
from a2a.client.client import Client
from a2a.types import (
    CancelTaskRequest,
    GetTaskRequest,
    ListTasksRequest,
    Message,
    Part,
    Role,
    SendMessageRequest,
    StreamResponse,
    SubscribeToTaskRequest,
    Task,
    TaskState,
)
from a2a.utils.errors import A2AError
from google.protobuf.json_format import MessageToDict

from synapse_p2p.a2a import (
    A2AServer,
    CardSigner,
    card_verifier,
    open_a2a_server,
    serve_a2a,
)
from synapse_p2p.teams import Worker
from synapse_p2p.testing import Swarm, open_swarm

pytestmark = pytest.mark.anyio

CAPS = {1: ["math"], 2: ["slow", "build"]}


@dataclass
class Gates:
    slow: anyio.Event = field(default_factory=anyio.Event)
    slow_started: anyio.Event = field(default_factory=anyio.Event)
    build: anyio.Event = field(default_factory=anyio.Event)


@contextlib.asynccontextmanager
async def a2a_swarm(**options: Any) -> AsyncIterator[tuple[Swarm, A2AServer, Gates]]:
    gates = Gates()
    configure = lambda i: {"capabilities": CAPS.get(i, [])}  # noqa: E731
    async with open_swarm(3, transport="tcp", configure=configure) as swarm:
        math_node, slow_node = swarm.nodes[1], swarm.nodes[2]

        @math_node.ask
        async def answer(task: str, context: dict[str, Any]) -> Any:
            return {"by": math_node.name, "task": task, "skill": context.get("skill")}

        @slow_node.ask
        async def slow(task: str, context: dict[str, Any]) -> Any:
            gates.slow_started.set()
            await gates.slow.wait()
            return f"slow answer to {task}"

        math_node.artifact("agent-card", {"model": "calc-1", "tags": ["arithmetic"]})
        async with Worker(slow_node) as worker:

            @worker.task
            async def build(assignment: Any) -> Any:
                await assignment.progress("compiling")
                await gates.build.wait()
                await assignment.progress("linking")
                return {"built": assignment.title}

            async with open_a2a_server(swarm[0], port=0, team_skills=["build"],
                                       **options) as server:  # fmt: skip
                yield swarm, server, gates


@contextlib.asynccontextmanager
async def sdk_client(url: str, *, streaming: bool = False, **kw: Any) -> AsyncIterator[Client]:
    async with httpx.AsyncClient(timeout=30) as http:
        config = ClientConfig(streaming=streaming, httpx_client=http)
        client = await create_client(url, client_config=config, **kw)
        async with client:
            yield client


def request(text: str, skill: str | None = None, **meta: Any) -> SendMessageRequest:
    message = Message(role=Role.ROLE_USER, message_id=str(uuid.uuid4()), parts=[Part(text=text)])
    req = SendMessageRequest(message=message)
    if skill is not None:
        meta["skill"] = skill
    if meta:
        req.metadata.update(meta)
    return req


async def send(client: Client, req: SendMessageRequest) -> Task:
    responses = [r async for r in client.send_message(req)]
    assert len(responses) == 1
    return responses[0].task


def data(task: Task) -> list[Any]:
    out = []
    for artifact in task.artifacts:
        for part in artifact.parts:
            out.append(part.text if part.HasField("text") else MessageToDict(part.data))
    return out


async def resolve(url: str, verify: Any = None) -> Any:
    async with httpx.AsyncClient() as http:
        return await A2ACardResolver(http, url).get_agent_card(signature_verifier=verify)


async def test_cards_list_skills_and_nodes() -> None:
    signer = CardSigner.generate("gateway-key")
    async with a2a_swarm(signer=signer) as (swarm, server, _gates):
        verify = card_verifier({"gateway-key": signer.public_key})
        card = await resolve(server.url, verify)
        skills = {s.id: list(s.tags) for s in card.skills}
        assert {"math", "arithmetic", "slow", "build"} <= set(skills)
        assert "team-task" in skills["build"]
        assert card.capabilities.streaming
        assert card.supported_interfaces[0].protocol_version == "1.0"
        assert card.supported_interfaces[0].url == server.url + "/"
        assert card.signatures
        node = swarm.nodes[1]
        node_card = await resolve(server.node_url(node.node_id), verify)
        assert {s.id for s in node_card.skills} == {"math", "arithmetic"}
        assert node_card.supported_interfaces[0].url.endswith(f"/nodes/{node.node_id}/")
        other = card_verifier({"gateway-key": CardSigner.generate("gateway-key").public_key})
        with pytest.raises(Exception, match="signature"):
            await resolve(server.url, other)
        async with httpx.AsyncClient() as http:
            missing = await http.get(server.node_url("0" * 64) + "/.well-known/agent-card.json")
        assert missing.status_code == 404


async def test_send_message_routes_by_skill_and_replies_as_artifacts() -> None:
    async with a2a_swarm() as (swarm, server, _gates), sdk_client(server.url) as client:
        task = await send(client, request("6*7", "arithmetic"))
        assert task.status.state == TaskState.TASK_STATE_COMPLETED
        assert data(task) == [{"by": "node1", "task": "6*7", "skill": "arithmetic"}]
        assert task.history[0].parts[0].text == "6*7"
        got = await client.get_task(GetTaskRequest(id=task.id))
        assert got.status.state == TaskState.TASK_STATE_COMPLETED
        assert data(got) == data(task)
        listed = await client.list_tasks(ListTasksRequest())
        assert [t.id for t in listed.tasks] == [task.id]
        assert listed.total_size == 1
        # the per-node endpoint goes to that member
        async with sdk_client(server.node_url(swarm.nodes[1].node_id)) as nc:
            pinned = await send(nc, request("1+1"))
        assert data(pinned)[0]["by"] == "node1"


async def test_errors_are_a2a_errors() -> None:
    async with a2a_swarm(timeout=30) as (_swarm, server, gates), sdk_client(server.url) as client:
        with pytest.raises(A2AError, match="unknown skill 'juggling'"):
            await send(client, request("x", "juggling"))
        with pytest.raises(A2AError, match="unknown task"):
            await client.get_task(GetTaskRequest(id="nope"))
        task = await send(client, request("wait", "slow", timeout=0.3))
        assert task.status.state == TaskState.TASK_STATE_FAILED
        assert "timed out" in task.status.message.parts[0].text
        gates.slow.set()
        with pytest.raises(A2AError, match="already finished"):
            await client.cancel_task(CancelTaskRequest(id=task.id))
        # bad JSON-RPC: the SDK's dispatcher answers with JSON-RPC errors
        async with httpx.AsyncClient() as http:
            bad = await http.post(server.url + "/", content=b"{not json")
            assert bad.json()["error"]["code"] == -32700
            unknown = await http.post(server.url + "/", json={"jsonrpc": "2.0", "id": 1,
                                                             "method": "Juggle", "params": {}})  # fmt: skip
            assert unknown.json()["error"]["code"] == -32601
            noparams = await http.post(server.url + "/", json={
                "jsonrpc": "2.0", "id": 2, "method": "SendMessage",
                "params": {"message": {"role": "ROLE_USER", "messageId": "m", "parts": []}}},
                headers={"A2A-Version": "1.0"})  # fmt: skip
            assert noparams.json()["error"]["code"] == -32602
            # a declared size over the limit is refused before the body is read
            host, port = server.host, server.port
            async with await anyio.connect_tcp(host, port) as raw:
                await raw.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                               b"\r\nContent-Length: 5000000\r\n\r\n")  # fmt: skip
                head = await raw.receive()
            assert head.startswith(b"HTTP/1.1 413")

            async def chunks() -> Any:  # no content-length: counted as it arrives
                for _ in range(4):
                    yield b"a" * (1024 * 1024)
                yield b"a"  # one byte over the limit, in the last chunk

            streamed = await http.post(server.url + "/", content=chunks())
            assert streamed.json()["error"]["message"] == "Payload too large"
        # the server keeps serving
        task = await send(client, request("2+2", "math"))
        assert task.status.state == TaskState.TASK_STATE_COMPLETED


async def test_cancel_a_running_task() -> None:
    async with a2a_swarm() as (_swarm, server, gates), sdk_client(server.url) as client:
        req = request("forever", "slow")
        req.configuration.return_immediately = True
        task = await send(client, req)
        assert task.status.state in (TaskState.TASK_STATE_SUBMITTED, TaskState.TASK_STATE_WORKING)
        await gates.slow_started.wait()
        canceled = await client.cancel_task(CancelTaskRequest(id=task.id))
        assert canceled.status.state == TaskState.TASK_STATE_CANCELED
        gates.slow.set()
        got = await client.get_task(GetTaskRequest(id=task.id))
        assert got.status.state == TaskState.TASK_STATE_CANCELED
        assert not got.artifacts


def kind(response: StreamResponse) -> str:
    return str(response.WhichOneof("payload"))


async def test_stream_team_task_and_resume_after_a_dropped_connection() -> None:
    async with a2a_swarm() as (swarm, server, gates):
        seen: list[StreamResponse] = []
        async with sdk_client(server.url, streaming=True) as client:
            stream = client.send_message(request("app", "build"))
            async for response in stream:
                seen.append(response)
                if (
                    kind(response) == "status_update"
                    and response.status_update.status.message.parts
                ):
                    break  # the "compiling" note: the connection drops here
            await stream.aclose()  # type: ignore[attr-defined]
        assert kind(seen[0]) == "task"
        assert seen[-1].status_update.status.message.parts[0].text == "compiling"
        task_id = seen[0].task.id
        last = int(seen[-1].status_update.metadata["sequence"])
        gates.build.set()  # the worker goes on while nobody listens
        async with sdk_client(server.url, streaming=True) as client:
            resumed = [r async for r in client.subscribe(SubscribeToTaskRequest(id=task_id))]
        snapshot = resumed[0].task
        later = [r.status_update if kind(r) == "status_update" else r.artifact_update
                 for r in resumed[1:]]  # fmt: skip
        numbers = [int(snapshot.metadata["sequence"])] + [
            int(e.metadata["sequence"]) for e in later
        ]
        # the snapshot covers every event up to its number, the stream every one after it
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
        assert numbers[0] >= last
        final = resumed[-1].task if len(resumed) == 1 else resumed[-1].status_update
        assert final.status.state == TaskState.TASK_STATE_COMPLETED
        # nothing lost: the notes are in the history, the result in the artifacts
        async with sdk_client(server.url) as client:
            done = await client.get_task(GetTaskRequest(id=task_id))
        assert done.status.state == TaskState.TASK_STATE_COMPLETED
        notes = [m.parts[0].text for m in done.history if m.role == Role.ROLE_AGENT]
        assert notes == ["compiling", "linking"]
        assert data(done) == [{"built": "app"}]
        assert done.artifacts[0].metadata["worker"] == swarm.nodes[2].node_id


async def test_serve_a2a_in_a_task_group() -> None:
    async with open_swarm(1, transport="tcp") as swarm, anyio.create_task_group() as tg:
        server = await tg.start(functools.partial(serve_a2a, swarm[0], port=0, name="solo"))
        async with httpx.AsyncClient() as http:
            card = await A2ACardResolver(http, server.url).get_agent_card()
        assert card.name == "solo"
        assert list(card.skills) == []
        tg.cancel_scope.cancel()
    async with httpx.AsyncClient() as http:
        with pytest.raises(httpx.ConnectError):  # stopped with its task group
            await http.get(server.url + "/.well-known/agent-card.json")


async def test_stopping_the_server_ends_open_streams() -> None:
    got: list[StreamResponse] = []
    ended = anyio.Event()
    async with anyio.create_task_group() as tg:
        async with a2a_swarm() as (_swarm, server, gates):

            async def read() -> None:
                async with sdk_client(server.url, streaming=True) as client:
                    async for response in client.send_message(request("x", "slow")):
                        got.append(response)
                ended.set()

            tg.start_soon(read)
            await gates.slow_started.wait()
        with anyio.fail_after(10):  # the stream ended cleanly when the server stopped
            await ended.wait()
    assert kind(got[0]) == "task"
    assert got[-1].status_update.status.state == TaskState.TASK_STATE_WORKING


async def test_cards_are_signed_by_the_nodes_identity_by_default() -> None:
    async with a2a_swarm() as (swarm, server, _gates):
        gateway = swarm.nodes[0]
        key = gateway.identity.public_key  # the raw 32 bytes; its SHA-256 is the node id
        card = await resolve(server.url, card_verifier({gateway.node_id: key}))
        assert card.signatures
        stranger = card_verifier({gateway.node_id: CardSigner.generate("x").public_key})
        with pytest.raises(Exception, match="signature"):
            await resolve(server.url, stranger)
