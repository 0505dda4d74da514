"""A background task that keeps agents' heartbeats fresh."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import anyio
import anyio.abc

from ..errors import UnknownAgentError
from ._discovery import registry_call
from ._metadata import check_timeout
from ._registry import AgentRegistryBackend

__all__ = ["serve_heartbeats"]

logger = logging.getLogger(__name__)


async def serve_heartbeats(
    registry: AgentRegistryBackend,
    agent_ids: Iterable[str],
    *,
    interval: float = 10.0,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Heartbeat ``agent_ids`` every ``interval`` seconds until cancelled.

    Start it with ``await task_group.start(serve_heartbeats, registry, ["a", "b"])``:
    ``task_status.started()`` fires after the first round. Blocking registries are called in a
    worker thread. A failed heartbeat (an unknown or pruned agent, a lost connection) is
    logged and retried on the next round; the loop never dies of it. Cancellation stops it
    between or during rounds (an abandoned in-flight heartbeat finishes in its thread).
    """
    period = check_timeout(interval, "interval")
    if period <= 0:
        raise ValueError("interval must be positive.")
    ids = list(agent_ids)
    started = False
    while True:
        for agent_id in ids:
            try:
                await registry_call(registry, registry.heartbeat, agent_id)
            except UnknownAgentError:
                logger.warning("heartbeat for unregistered agent %s ignored", agent_id)
            except Exception:
                logger.warning("heartbeat for agent %s failed", agent_id, exc_info=True)
        if not started:
            started = True
            task_status.started()
        await anyio.sleep(period)
