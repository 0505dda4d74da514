"""A2A agents in the federation: a minimal a2a-sdk agent (the SDK's own server, request
handler and task store) routed to by AgentFederation through A2AAgentClient, next to swarm
peers.

The SDK's default request handler runs on asyncio only, so the agent is served by hypercorn in
a thread with its own asyncio loop on 127.0.0.1; the federation side runs under trio and
under asyncio.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

pytest.importorskip("a2a", reason="the a2a extra is not installed")

from a2a.helpers.proto_helpers import new_task_from_user_message, new_text_message
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    Part,
)
from starlette.applications import Starlette

from synapse_p2p.federation import (
    A2AAgentClient,
    A2AAgentError,
    A2AAgentRegistry,
    AgentFederation,
    SwarmAgentRegistry,
)
from synapse_p2p.testing import open_swarm

pytestmark = pytest.mark.anyio


class Translator(AgentExecutor):
    """Answers "translate: X" with an artifact; "fail" fails the task."""

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        assert context.message is not None
        task = context.current_task or new_task_from_user_message(context.message)
        if context.current_task is None:
            await event_queue.enqueue_event(task)
        updater = TaskUpdater(event_queue, task.id, task.context_id)
        await updater.start_work()
        text = context.get_user_input()
        if "fail" in text:
            await updater.failed(new_text_message("cannot translate that"))
            return
        skill = context.metadata.get("skill") if context.metadata else None
        await updater.add_artifact(
            [Part(text=f"translated({text})"), ], name="translation",
            metadata={"skill": skill or ""},
        )  # fmt: skip
        await updater.complete()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        raise NotImplementedError


def agent_card(url: str) -> AgentCard:
    return AgentCard(
        name="translator",
        description="translates",
        version="1",
        supported_interfaces=[
            AgentInterface(url=url, protocol_binding="JSONRPC", protocol_version="1.0")
        ],
        capabilities=AgentCapabilities(streaming=True),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        skills=[AgentSkill(id="translate", name="translate", description="t", tags=["language"])],
    )


@contextlib.contextmanager
def sdk_agent() -> Iterator[str]:
    """Serve the Translator on a free loopback port in a thread; yield its URL."""
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    card = agent_card(url + "/")
    handler = DefaultRequestHandler(Translator(), InMemoryTaskStore(), card)
    app = Starlette(routes=[*create_agent_card_routes(card), *create_jsonrpc_routes(handler, "/")])
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    ready, stopping = threading.Event(), None
    loop = asyncio.new_event_loop()

    async def main() -> None:
        nonlocal stopping
        stopping = asyncio.Event()
        ready.set()
        await serve(app, config, shutdown_trigger=stopping.wait)  # type: ignore[arg-type]

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    ready.wait(10)
    try:
        for _ in range(100):  # hypercorn binds right after start: wait for the port
            with socket.socket() as conn:
                if conn.connect_ex(("127.0.0.1", port)) == 0:
                    break
            threading.Event().wait(0.05)
        yield url
    finally:
        assert stopping is not None
        loop.call_soon_threadsafe(stopping.set)
        thread.join(10)
        loop.close()


async def test_a2a_client_runs_prompts_on_an_sdk_agent() -> None:
    with sdk_agent() as url:
        client = A2AAgentClient(url, skill="translate", timeout=20)
        assert await client.run("translate: bonjour") == "translated(translate: bonjour)"
        card = await client.card()
        assert card.name == "translator"
        with pytest.raises(A2AAgentError, match="FAILED: cannot translate") as info:
            await client.run("fail please")
        assert info.value.state == "TASK_STATE_FAILED"
    with pytest.raises(A2AAgentError):  # the agent is gone
        await A2AAgentClient(url, timeout=5).run("hello")


async def test_federation_routes_to_an_a2a_agent_beside_swarm_peers() -> None:
    with sdk_agent() as url:
        configure = lambda i: {"capabilities": ["math"] if i == 1 else []}  # noqa: E731
        async with open_swarm(2, transport="tcp", configure=configure) as swarm:

            @swarm.nodes[1].ask
            async def answer(task: str, context: dict[str, Any]) -> Any:
                return f"peer: {task}"

            swarm_registry = SwarmAgentRegistry(swarm[0])
            registry = A2AAgentRegistry([url], beside=swarm_registry)
            async with anyio.create_task_group() as tg:
                await tg.start(swarm_registry.run)
                await tg.start(registry.run)
                ids = {a.id for a in registry.list()}
                assert ids == {"a2a:" + url, swarm.nodes[1].node_id}
                a2a_agent = registry.get("a2a:" + url)
                assert a2a_agent is not None
                assert {"translate", "language"} <= set(a2a_agent.tags)
                federation = AgentFederation(registry=registry)
                assert await federation.run("hola", tags=["translate"]) == "translated(hola)"
                assert await federation.run("1+1", tags=["math"]) == "peer: 1+1"
                assert await federation.run("x", tags=["language"], skill="translate") == (
                    "translated(x)"
                )
                tg.cancel_scope.cancel()
