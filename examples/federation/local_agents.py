"""Route prompts across local stand-in agents (no LLM, no API key).

    python examples/federation/local_agents.py [--backend trio|asyncio]

Three agents register with their tools, tags, capacity and cost. The federation routes by
tag, by cost, and by load; one agent is flaky and gets demoted after repeated failures; the
slow sync agent runs in a worker thread, so the event loop stays responsive.
"""

from __future__ import annotations

import argparse
import logging
import random
import time

import anyio

from synapse_p2p.federation import (
    AgentFederation,
    AgentMetadata,
    InMemoryAgentRegistry,
    LocalAgentClient,
    RoutingStrategy,
)


class ResearchAgent:
    """An async agent: pretends to search and summarise."""

    async def run(self, query: str) -> str:
        await anyio.sleep(0.05)
        return f"[research] three sources agree on {query!r}"


def math_agent(query: str) -> str:
    """A sync agent (a plain function): blocks for a while, so it runs in a thread."""
    time.sleep(0.05)
    return f"[math] 42 * 1337 = {42 * 1337}" if "42 * 1337" in query else "[math] ?"


class FlakyAgent:
    """A cheap agent that fails most of the time."""

    async def arun(self, query: str) -> str:
        if random.random() < 0.8:
            raise ConnectionError("upstream model unavailable")
        return f"[cheap] quick answer to {query!r}"


async def main() -> None:
    federation = AgentFederation(
        registry=InMemoryAgentRegistry(stale_timeout=60.0),
        default_strategy=RoutingStrategy.COST_AWARE,
        failure_threshold=2,
        cooldown=5.0,
    )
    federation.register_agent(
        AgentMetadata(id="research-1", model="stand-in", tools=["web_search"],
                      tags=["research"], capacity=5),
        client=LocalAgentClient(ResearchAgent()),
    )  # fmt: skip
    federation.register_agent(
        AgentMetadata(id="math-1", model="stand-in", tools=["calculator"], tags=["math"],
                      capacity=2, cost_multiplier=0.5),
        client=math_agent,  # a plain function works too
    )  # fmt: skip
    federation.register_agent(
        AgentMetadata(id="cheap-1", model="stand-in", tags=["research"], capacity=3,
                      cost_multiplier=0.1),
        client=FlakyAgent(),
    )  # fmt: skip

    print(await federation.run("What is 42 * 1337?", tags=["math"]))
    print("research agents:", [a.id for a in federation.discover(tags=["research"])])

    # Twenty prompts at once: capacity limits hold, failures fail over and demote cheap-1.
    answers: list[str] = []

    async def ask(n: int) -> None:
        answers.append(await federation.run(f"question {n}", tags=["research"], timeout=2))

    async with anyio.create_task_group() as tg:
        for n in range(20):
            tg.start_soon(ask, n)
    print(f"{len(answers)} answers; by agent:")
    for agent_id, stats in federation.statistics().agents.items():
        print(
            f"  {agent_id:<11} ok={stats.successes:<3} failed={stats.failures:<3}"
            f" demoted={stats.demoted}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", choices=["trio", "asyncio"], default="trio")
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    anyio.run(main, backend=parser.parse_args().backend)
