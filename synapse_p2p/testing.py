"""Helpers for testing code built on synapse-p2p, without a network.

``open_swarm(n)`` starts ``n`` nodes that already know each other and yields them::

    async with open_swarm(3, swarm="test") as swarm:
        reviewer, tester, asker = swarm.nodes
        ...

By default the nodes talk over an in-process :class:`~synapse_p2p.transport.MemoryNetwork`
(no sockets), so the whole swarm also runs on virtual time (trio's
``MockClock(autojump_threshold=0)``): heartbeats, timeouts, leases and schedules take
milliseconds. ``transport="tcp"`` uses real loopback sockets instead.

With pytest, the opt-in plugin :mod:`synapse_p2p.pytest_plugin` provides a ``swarm`` fixture
(configured by ``@pytest.mark.synapse_swarm(n=...)``) and a ``synapse_swarm`` factory built on
:func:`open_swarm`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio

from .node import Node
from .transport import MemoryNetwork

__all__ = ["Swarm", "open_swarm"]


@dataclass
class Swarm:
    """Running nodes; ``network`` is the memory network (``None`` over TCP)."""

    nodes: list[Node]
    network: MemoryNetwork | None
    _scopes: dict[str, anyio.CancelScope] = field(default_factory=dict)

    def __getitem__(self, index: int) -> Node:
        return self.nodes[index]

    def kill(self, node: Node) -> None:
        """Stop ``node`` abruptly, as a crash would (its task is cancelled and it says no
        goodbye: peers notice by its silence)."""
        node.membership.say_goodbye = False
        self._scopes[node.node_id].cancel()

    async def converged(self, timeout: float = 30.0) -> None:
        """Wait until every running node knows every other running node."""
        running = [n for n in self.nodes if n.running]
        ids = {n.node_id for n in running}
        with anyio.fail_after(timeout):
            # Convergence is a property of every table at once; there is no one event for it.
            while not all(set(n.peers) >= ids - {n.node_id} for n in running):  # noqa: ASYNC110
                await anyio.sleep(0.01)


@contextlib.asynccontextmanager
async def open_swarm(
    n: int,
    *,
    transport: Literal["memory", "tcp"] = "memory",
    configure: Callable[[int], dict[str, Any]] | None = None,
    **settings: Any,
) -> AsyncIterator[Swarm]:
    """Start ``n`` joined nodes (node 0 is everyone's seed); stop them all on exit.

    ``settings`` go to every :class:`Node`; ``configure(i)`` may return per-node keywords
    (name, capabilities, ...). Waits until the membership has converged before yielding.
    """
    if n < 1:
        raise ValueError("n must be at least 1")
    network = MemoryNetwork() if transport == "memory" else None
    swarm = Swarm([], network)
    settings.setdefault("swarm", "test")
    async with anyio.create_task_group() as tg:
        seed: str | None = None
        for i in range(n):
            options: dict[str, Any] = {"name": f"node{i}", **settings}
            if configure is not None:
                options.update(configure(i))
            if network is not None:
                host = f"10.0.{i // 250}.{i % 250 + 1}"
                options.update(bind=host, port=7000, transport=network.transport(host))
            else:
                options.setdefault("bind", "127.0.0.1")
            if seed is not None:
                options.setdefault("seeds", [seed])
            node = Node(**options)
            scope = anyio.CancelScope()
            swarm._scopes[node.node_id] = scope

            async def run(
                node: Node = node,
                scope: anyio.CancelScope = scope,
                *,
                task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
            ) -> None:
                with scope:
                    await node.serve(task_status=task_status)

            await tg.start(run)
            if seed is None:
                seed = f"{node.address}:{node.port}"
            swarm.nodes.append(node)
        await swarm.converged()
        try:
            yield swarm
        finally:
            tg.cancel_scope.cancel()
