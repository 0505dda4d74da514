"""The narrow seams between a node's services.

A service of a node (membership, conversations, discovery, teams...) is built from what it
uses, never from the whole ``Node``:

* a frozen :class:`~synapse_p2p._config.NodeConfig`;
* the :class:`LocalNode`: this node's id, its identity key (to sign with) and its current peer
  record (name, capabilities, advertised address and port, which change while it runs);
* a :class:`PeerCaller`: a way to call another node (the node's connection pool);
* the :class:`~synapse_p2p._hub.EventHub` to publish what happened and subscribe to it;
* the :class:`~synapse_p2p.rpc.EndpointRegistry` to serve endpoints of its own.

Every long-lived service is a :class:`Service`: ``async def run(*, task_status)``, started
with ``await task_group.start(service.run)``; it calls ``task_status.started()`` once it is
ready and runs until cancelled.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol, runtime_checkable

import anyio
from anyio.abc import TaskStatus

from ._record_extras import RecordExtras
from .identity import Identity
from .types import Capability, NodeKind, Peer

__all__ = ["LocalNode", "PeerCaller", "Service"]


@runtime_checkable
class Service(Protocol):
    """A long-lived part of a node, started in order and stopped in reverse."""

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None: ...


class PeerCaller(Protocol):
    """Calls to other nodes (implemented by the node over its connection pool).

    Errors are those of :meth:`synapse_p2p.rpc.ConnectionPool.call`: ``RemoteError``,
    ``CallTimeout``, ``ConnectError``, ``ConnectionLost``; ``RuntimeError`` when the node is
    not running.
    """

    async def call(
        self,
        host: str,
        port: int,
        endpoint: str,
        args: list[Any],
        kwargs: dict[str, Any],
        *,
        timeout: float | None = None,
    ) -> Any: ...

    async def session_info(self, host: str, port: int) -> Mapping[str, Any]: ...

    def is_legacy(self, host: str, port: int) -> bool: ...

    def connected(self, host: str, port: int) -> bool:
        """Whether a connection to ``host:port`` is open now (a call would open none)."""

    def retain(self, addresses: Iterable[tuple[str, int]] | None) -> None:
        """Keep idle connections long only to ``addresses`` (``None``: to everyone); others
        close soon after their last call (see ``ConnectionPool.retain``)."""

    def alias(self, address: tuple[str, int], via: tuple[str, int], node_id: str) -> bool:
        """If the open connection to ``via`` proved ``node_id``, reach ``address`` (that
        node's advertised address) at ``via`` whenever it cannot be connected to directly
        (see ``ConnectionPool.alias``); return whether the alias was taken."""


class LocalNode:
    """This node as its peers see it: the one place its record is built from.

    ``node_id`` never changes; the descriptive fields may be changed by the application
    (``node.name = ...``, ``node.capability(...)``) and ``address``/``port`` are set when the
    node binds. :meth:`record` and :meth:`info` read them fresh every time.
    """

    __slots__ = (
        "address",
        "capabilities",
        "description",
        "extras",
        "identity",
        "kind",
        "name",
        "node_id",
        "port",
        "role",
        "swarm",
        "team",
    )

    def __init__(
        self,
        node_id: str,
        *,
        name: str = "",
        role: str = "",
        description: str = "",
        kind: NodeKind = NodeKind.NODE,
        swarm: str | None = None,
        team: str | None = "default",
        capabilities: list[Capability] | None = None,
        address: str = "",
        port: int = 0,
        identity: Identity | None = None,
    ) -> None:
        self.node_id = node_id
        #: The key ``node_id`` is the hash of, to sign with; ``None`` for an unverified node
        #: (a ``node_id=`` of the application's own).
        self.identity = identity
        self.name = name
        self.role = role
        self.description = description
        self.kind = kind
        self.swarm = swarm
        self.team = team
        self.capabilities: list[Capability] = capabilities if capabilities is not None else []
        self.address = address
        self.port = port
        #: What this node's signed record says beyond the peer dict (the relays it is
        #: reserved on, whether it is a relay); set by the node's relay parts.
        self.extras = RecordExtras()

    def capability_names(self) -> list[str]:
        return [c.name for c in self.capabilities]

    def record(self, now: float) -> Peer:
        """The peer record this node announces (``last_seen`` = ``now``)."""
        return Peer(
            id=self.node_id,
            address=self.address,
            port=self.port,
            swarm=self.swarm,
            team=self.team,
            name=self.name,
            kind=self.kind,
            capabilities=self.capability_names(),
            last_seen=now,
        )

    def info(self) -> dict[str, Any]:
        """What ``_synapse.info`` answers (synapse-p2p 2.5.0's shape)."""
        return {
            "id": self.node_id,
            "name": self.name,
            "kind": self.kind.value,
            "address": self.address,
            "port": self.port,
            "swarm": self.swarm,
            "team": self.team,
            "role": self.role,
            "description": self.description,
            "capabilities": self.capability_names(),
        }
