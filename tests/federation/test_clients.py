"""LocalAgentClient dispatch and client coercion."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from synapse_p2p.federation import AgentClient, AgentFederation, AgentMetadata, LocalAgentClient

pytestmark = pytest.mark.anyio


class OnlyInvoke:
    def invoke(self, prompt: str, **kwargs: Any) -> str:
        return f"invoke:{prompt}:{sorted(kwargs)}"


class ExecuteAndAinvoke:
    def execute(self, prompt: str) -> str:
        return "execute"

    async def ainvoke(self, prompt: str) -> str:
        return "ainvoke"


class CallableWithInvoke:
    def __call__(self, prompt: str) -> str:
        return "call"

    def invoke(self, prompt: str) -> str:
        return "invoke"


class ArunNone:
    arun = None

    def run(self, prompt: str) -> str:
        return "run"


class BothArunRun:
    async def arun(self, prompt: str) -> str:
        return "arun"

    def run(self, prompt: str) -> str:
        return "run"


class AsyncRun:
    async def run(self, prompt: str, **kwargs: Any) -> str:
        return f"async-run:{kwargs}"


async def test_dispatch_order() -> None:
    assert await LocalAgentClient(OnlyInvoke()).run("p", k=1) == "invoke:p:['k']"
    assert await LocalAgentClient(ExecuteAndAinvoke()).run("p") == "execute"
    assert await LocalAgentClient(CallableWithInvoke()).run("p") == "invoke"
    assert await LocalAgentClient(ArunNone()).run("p") == "run"
    assert await LocalAgentClient(BothArunRun()).run("p") == "arun"
    assert await LocalAgentClient(lambda p, **kw: f"fn:{p}:{kw}").run("x", a=1) == "fn:x:{'a': 1}"

    async def coro(prompt: str) -> str:
        return f"coro:{prompt}"

    assert await LocalAgentClient(coro).run("y") == "coro:y"


async def test_sync_targets_run_in_a_worker_thread() -> None:
    loop_thread = threading.get_ident()
    assert await LocalAgentClient(lambda p: threading.get_ident()).run("p") != loop_thread
    on_loop = LocalAgentClient(lambda p: threading.get_ident(), sync_in_thread=False)
    assert await on_loop.run("p") == loop_thread

    async def later(prompt: str) -> str:
        return f"later:{prompt}"

    # a sync function returning an awaitable has it awaited on the loop
    assert await LocalAgentClient(lambda p: later(p)).run("z") == "later:z"


async def test_unusable_executor_fails_at_construction() -> None:
    with pytest.raises(TypeError, match="LocalAgentClient requires"):
        LocalAgentClient(object())
    with pytest.raises(TypeError):
        AgentFederation().register_agent(AgentMetadata("a", "m"), client=42)
    fed = AgentFederation()
    with pytest.raises(TypeError):
        fed.register_agent(AgentMetadata("a", "m"), client=object())
    assert fed.discover() == []  # nothing registered when the client is unusable


async def test_coercion_prefers_async() -> None:
    fed = AgentFederation()
    raw = AsyncRun()
    fed.register_agent(AgentMetadata("raw", "m"), client=raw)
    assert fed.clients["raw"] is raw  # async run: used as is
    fed.register_agent(AgentMetadata("both", "m"), client=BothArunRun())
    assert isinstance(fed.clients["both"], LocalAgentClient)
    assert await fed.run("p", agent_id="both") == "arun"  # not the sync run
    assert isinstance(fed.get_client("raw"), AgentClient)
    assert await fed.run("p", agent_id="raw", flag=True) == "async-run:{'flag': True}"
