"""Swarm routing on virtual time (trio MockClock): the node defaults (heartbeat every 5 s, peer
timeout 20 s) and minute-long agent calls, in milliseconds."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
import trio.testing

from synapse_p2p.federation import AgentFederation, SwarmAgentRegistry
from synapse_p2p.testing import open_swarm

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> Any:
    return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})


async def test_dead_node_is_dropped_within_peer_timeout_while_under_load(
    anyio_backend: Any,
) -> None:
    async with open_swarm(5) as swarm:
        router, *workers = swarm.nodes
        peak: dict[str, int] = {}
        busy: dict[str, int] = {}
        for node in workers:
            node.artifact("agent-card", {"tags": ["slow"], "capacity": 4})
            peak[node.name] = busy[node.name] = 0

            @node.ask
            async def work(task: str, context: dict[str, Any], name: str = node.name) -> str:
                busy[name] += 1
                peak[name] = max(peak[name], busy[name])
                try:
                    await anyio.sleep(60)  # a minute-long "model call"
                    return name
                finally:
                    busy[name] -= 1

        registry = SwarmAgentRegistry(router, call_timeout=120)  # calls outlast 30 s
        federation = AgentFederation(registry=registry, failure_threshold=1, cooldown=600)
        results: list[str] = []
        failures: list[BaseException] = []

        async def one() -> None:
            try:
                results.append(await federation.run("job", tags="slow", timeout=3600))
            except Exception as exc:
                failures.append(exc)

        async with anyio.create_task_group() as tg:
            await tg.start(registry.run)
            dead = workers[1]
            for _ in range(40):
                tg.start_soon(one)
            await anyio.sleep(1)
            assert all(peak[name] == 4 for name in peak)  # 16 slots, 24 runs waiting
            swarm.kill(dead)
            killed = anyio.current_time()
            while dead.node_id in {a.id for a in registry.discover(tags="slow")}:
                await anyio.sleep(0.1)
            assert anyio.current_time() - killed <= router.peer_timeout + 5 + 0.5
            with anyio.fail_after(3600):
                while len(results) + len(failures) < 40:
                    await anyio.sleep(1)
            tg.cancel_scope.cancel()

        assert max(peak.values()) == 4
        # The four runs cut off on the dead node failed over: every run got an answer.
        assert failures == []
        assert len(results) == 40
        assert results.count(dead.name) == 0
