"""Agent federation: a registry of named agents and a router that dispatches prompts to them.

::

    from synapse_p2p.federation import (
        AgentFederation, AgentMetadata, InMemoryAgentRegistry, LocalAgentClient,
        RoutingStrategy, RedisAgentRegistry,
    )

* :class:`AgentMetadata` describes an agent (id, model, tools, tags, capacity, cost, ...).
* Registries implement :class:`AgentRegistryBackend`: :class:`InMemoryAgentRegistry` (one
  process, thread-safe) and :class:`RedisAgentRegistry` (shared by processes and hosts;
  needs ``pip install synapse-p2p[redis]``).
* :class:`AgentFederation` discovers agents, picks one with a :class:`RoutingStrategy`
  (round robin, capacity aware, cost aware, least loaded), enforces each agent's capacity as
  a concurrency limit, demotes agents that keep failing, and fails over between candidates.
* Clients implement :class:`AgentClient` (``async run(prompt, **kwargs)``);
  :class:`LocalAgentClient` adapts in-process agents and plain callables.
* Across the swarm: :class:`SwarmAgentRegistry` lists every live peer of a running node as an
  agent (fields from its ``agent-card`` artifact) and hands the federation a
  :class:`NodeAgentClient` per peer, which runs prompts on the peer's ask handler over RPC.

* A2A agents (``pip install 'synapse-p2p[a2a]'``): :class:`A2AAgentClient` runs prompts on an
  A2A agent and :class:`A2AAgentRegistry` lists A2A agents read from card URLs beside another
  registry's agents (both are imported on first use, so the a2a-sdk is only needed then).

Everything async runs on anyio, under trio or asyncio. Log records go to the
``synapse_p2p.federation`` loggers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import (
    A2AAgentError,
    AgentAttempt,
    AgentTimeoutError,
    AllAgentsFailedError,
    FederationError,
    NoAgentAvailableError,
    NoClientError,
    RegistryError,
    UnknownAgentError,
)
from ._client import AgentClient, LocalAgentClient
from ._federation import AgentFederation
from ._heartbeat import serve_heartbeats
from ._load import AgentStatistics, FederationStatistics
from ._metadata import AgentMetadata
from ._redis import RedisAgentRegistry
from ._registry import AgentRegistryBackend, InMemoryAgentRegistry
from ._routing import RoutingStrategy
from ._swarm import AgentCard, NodeAgentClient, SwarmAgentRegistry

if TYPE_CHECKING:
    from ._a2a import A2AAgentClient, A2AAgentRegistry

_LAZY = {"A2AAgentClient", "A2AAgentRegistry"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from . import _a2a

        return getattr(_a2a, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: synapsekit's alias for :class:`RoutingStrategy`.
AgentRoutingStrategy = RoutingStrategy

__all__ = [
    "A2AAgentClient",
    "A2AAgentError",
    "A2AAgentRegistry",
    "AgentAttempt",
    "AgentCard",
    "AgentClient",
    "AgentFederation",
    "AgentMetadata",
    "AgentRegistryBackend",
    "AgentRoutingStrategy",
    "AgentStatistics",
    "AgentTimeoutError",
    "AllAgentsFailedError",
    "FederationError",
    "FederationStatistics",
    "InMemoryAgentRegistry",
    "LocalAgentClient",
    "NoAgentAvailableError",
    "NoClientError",
    "NodeAgentClient",
    "RedisAgentRegistry",
    "RegistryError",
    "RoutingStrategy",
    "SwarmAgentRegistry",
    "UnknownAgentError",
    "serve_heartbeats",
]
