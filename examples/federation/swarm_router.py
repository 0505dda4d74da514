"""Route prompts across a live swarm: agent nodes with cards and ask handlers, and a router.

    python examples/federation/swarm_router.py [--backend trio|asyncio]

Three agent nodes (stand-in agents: no LLM, no API key) publish an ``agent-card`` artifact and
answer asks. A router node joins them and builds ``AgentFederation(registry=
SwarmAgentRegistry(node))``: every peer is an agent, prompts go to its ask handler over RPC,
and no other server is involved. Everything runs on 127.0.0.1 in one process, in a few
seconds; in real life each agent is its own process or host joining through a seed.
"""

from __future__ import annotations

import argparse
import logging
import re
from typing import Any

import anyio
import anyio.abc

from synapse_p2p import Node
from synapse_p2p.federation import AgentFederation, RoutingStrategy, SwarmAgentRegistry

# Quick failure detection for a demo (the defaults are a heartbeat every 5 s, 20 s timeout).
FAST: dict[str, Any] = {"heartbeat_interval": 0.25, "peer_timeout": 1.5}

CARDS = {
    "math-1": {"model": "stand-in", "tools": ["calculator"], "tags": ["math"], "capacity": 2,
               "cost_multiplier": 0.5},
    "research-1": {"model": "stand-in", "tools": ["web_search"], "tags": ["research"],
                   "capacity": 3},
    "research-2": {"model": "stand-in-mini", "tags": ["research"], "capacity": 2,
                   "cost_multiplier": 0.2},
}  # fmt: skip


def make_agent(name: str, seed: str | None) -> Node:
    node = Node(name=name, bind="127.0.0.1", seeds=[seed] if seed else None, **FAST)
    node.artifact("agent-card", CARDS[name], mime_type="application/vnd.synapse.agent-card+json")
    calls = 0

    @node.ask
    async def answer(task: str, context: dict[str, Any]) -> str:
        nonlocal calls
        calls += 1
        await anyio.sleep(0.05)  # "thinking"
        if name == "math-1":
            match = re.search(r"(\d+)\s*\*\s*(\d+)", task)
            return f"[{name}] {int(match[1]) * int(match[2])}" if match else f"[{name}] ?"
        if name == "research-2" and calls % 3 == 0:
            raise ConnectionError("upstream model unavailable")  # the router fails over
        return f"[{name}] three sources agree on {task!r} (for {context.get('user', '?')})"

    return node


async def serve(
    node: Node,
    stop: anyio.Event,
    *,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    async with node:
        task_status.started()
        await stop.wait()


async def main() -> None:
    stops = {name: anyio.Event() for name in [*CARDS, "router"]}
    async with anyio.create_task_group() as tg:
        first = make_agent("math-1", None)
        await tg.start(serve, first, stops["math-1"])
        seed = f"127.0.0.1:{first.port}"
        for name in ("research-1", "research-2"):
            await tg.start(serve, make_agent(name, seed), stops[name])
        router = Node(name="router", bind="127.0.0.1", seeds=[seed], **FAST)
        await tg.start(serve, router, stops["router"])
        with anyio.fail_after(10):
            while len(router.peers) < len(CARDS):
                await anyio.sleep(0.05)

        registry = SwarmAgentRegistry(router, refresh=10)
        await tg.start(registry.run)  # returns once the cards of the current peers are in
        federation = AgentFederation(registry=registry, default_strategy=RoutingStrategy.COST_AWARE)

        def name_of(agent_id: str) -> str:
            peer = router.peers.get(agent_id)
            return peer.name if peer else agent_id[:8]

        print("agents in the swarm:")
        for agent in registry.list():
            print(
                f"  {name_of(agent.id):<11} {agent.endpoint:<16} model={agent.model:<14}"
                f" tags={agent.tags} tools={agent.tools} capacity={agent.capacity}"
                f" cost={agent.cost_multiplier}"
            )

        print(await federation.run("What is 42 * 1337?", tags=["math"]))
        print(await federation.run("Latest on fusion?", tools=["web_search"], user="ann"))

        answers: list[str] = []

        async def ask(n: int) -> None:
            answers.append(await federation.run(f"question {n}", tags=["research"], timeout=5))

        async with anyio.create_task_group() as burst:  # capacity limits hold; failures fail over
            for n in range(12):
                burst.start_soon(ask, n)
        print(f"{len(answers)} research answers:")
        by_name = {name_of(i): s for i, s in federation.statistics().agents.items()}
        for name, stats in sorted(by_name.items()):
            print(f"  {name:<11} ok={stats.successes:<3} failed={stats.failures}")

        gone = next(p for p in router.peers.values() if p.name == "research-2")
        stops["research-2"].set()
        started = anyio.current_time()
        with anyio.fail_after(10):
            while registry.is_healthy(gone.id):
                await anyio.sleep(0.05)
        print(
            f"research-2 stopped; dropped from routing after {anyio.current_time() - started:.1f}s"
        )
        print(await federation.run("Anything new?", tags=["research"]))
        tg.cancel_scope.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", choices=["trio", "asyncio"], default="trio")
    logging.basicConfig(level=logging.ERROR, format="%(name)s: %(message)s")
    anyio.run(main, backend=parser.parse_args().backend)
