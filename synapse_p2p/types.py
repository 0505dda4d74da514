"""Data types shared by nodes, with the names, fields and wire shapes of synapse-p2p 2.5.0.

``from_dict`` validates what arrives from the network: required keys present, every field of
the right type, and raises :class:`~synapse_p2p.errors.ProtocolError` (a ``ValueError``) with a
message naming the field. Unknown keys are ignored so newer peers may add fields; ``to_dict``
always produces exactly the reference's keys, in its order.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from .errors import ProtocolError

__all__ = [
    "AdvertisedArtifact",
    "Broadcast",
    "BroadcastReply",
    "Capability",
    "ConversationEvent",
    "NodeKind",
    "Peer",
    "ServedArtifact",
]

MAX_ID_LENGTH = 256


class NodeKind(StrEnum):
    """What a node says it is; purely informational."""

    NODE = "node"
    BOOTSTRAP = "bootstrap"

    @classmethod
    def from_value(cls, value: NodeKind | str) -> NodeKind:
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a valid NodeKind") from None


def _require(data: Any, what: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ProtocolError(f"{what} must be a map, got {type(data).__name__}")
    return data


def _str(
    data: dict[str, Any],
    key: str,
    what: str,
    default: Any = ...,
    *,
    optional: bool = False,
    max_length: int | None = None,
) -> Any:
    if key not in data:
        if default is ...:
            raise ProtocolError(f"{what} has no {key!r}")
        return default
    value = data[key]
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise ProtocolError(f"{what} {key!r} must be a string, got {type(value).__name__}")
    if max_length is not None and len(value) > max_length:
        raise ProtocolError(f"{what} {key!r} is longer than {max_length} characters")
    return value


def _interned(value: Any) -> Any:
    """``value``, the one shared copy of it if it is a ``str`` (:func:`sys.intern`).

    The strings of a peer (id, address, swarm, team, name, capabilities) arrive again and
    again, each time decoded into a new object, and several tables keep them: interning
    the decoded ones keeps one copy per distinct string (a few hundred bytes per member of
    every node that knows it). Interned strings are freed when the last holder drops them.
    """
    return sys.intern(value) if type(value) is str else value


#: Ports seen decoded, one int object each (see :func:`_interned_port`); past this many, a
#: new port is not kept.
MAX_SHARED_PORTS = 4096
_PORTS: dict[int, int] = {}


def _interned_port(port: int) -> int:
    """``port``, the one shared int object for it.

    An int past 256 decoded from the wire is a new 28-byte object each time: the records of
    a member that every table keeps (and in one process, every node's tables) share one
    instead. At most :data:`MAX_SHARED_PORTS` ports are kept (a port is 0..65535, and the
    ports of a swarm are few: its nodes mostly listen on one or a few).
    """
    if type(port) is not int or port <= 256:  # (small ints are shared already)
        return port
    shared = _PORTS.get(port)
    if shared is not None:
        return shared
    if len(_PORTS) < MAX_SHARED_PORTS:
        _PORTS[port] = port
    return port


def _str_list(data: dict[str, Any], key: str, what: str) -> list[str]:
    value = data.get(key, [])
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ProtocolError(f"{what} {key!r} must be a list of strings")
    return [_interned(item) for item in value]


def _float(data: dict[str, Any], key: str, what: str, default: float) -> float:
    value = data.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ProtocolError(f"{what} {key!r} must be a finite number")
    return float(value)


def _map(data: dict[str, Any], key: str, what: str) -> dict[str, Any]:
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ProtocolError(f"{what} {key!r} must be a map, got {type(value).__name__}")
    return dict(value)


@dataclass(frozen=True, slots=True, weakref_slot=True)
class Peer:
    """Another node as this node knows it (the 9-key peer dict on the wire)."""

    id: str
    address: str
    port: int
    swarm: str | None = None
    team: str | None = None
    name: str = ""
    kind: NodeKind = NodeKind.NODE
    capabilities: list[str] = field(default_factory=list)
    #: When this node last had news of the peer's life (wall clock): the peer's own call or
    #: answer, or gossip of another member's contact with it (in ``node.peers``, brought up to
    #: date when read).
    last_seen: float = field(default_factory=time.time)
    #: This node's own knowledge, never read from the wire: the peer proved its identity key
    #: (a secure-channel handshake, or a record signed by it).
    verified: bool = field(default=False, compare=False)

    def __post_init__(self) -> None:
        if type(self.kind) is not NodeKind:  # a plain "node"/"bootstrap" string is accepted
            object.__setattr__(self, "kind", NodeKind.from_value(self.kind))

    @property
    def node_kind(self) -> NodeKind:
        return self.kind

    def is_kind(self, kind: NodeKind | str) -> bool:
        return self.node_kind == NodeKind.from_value(kind)

    @classmethod
    def from_dict(cls, data: Any) -> Peer:
        data = _require(data, "peer")
        port = data.get("port")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port < 65536:
            raise ProtocolError(f"peer 'port' must be an int in 0..65535, got {port!r}")
        kind = data.get("kind", "node")
        if kind not in ("node", "bootstrap"):
            raise ProtocolError(f"peer 'kind' {kind!r} is not a valid NodeKind")
        return cls(
            id=_interned(_str(data, "id", "peer", max_length=MAX_ID_LENGTH)),
            address=_interned(_str(data, "address", "peer", max_length=MAX_ID_LENGTH)),
            port=_interned_port(port),
            swarm=_interned(
                _str(data, "swarm", "peer", None, optional=True, max_length=MAX_ID_LENGTH)
            ),
            team=_interned(
                _str(data, "team", "peer", None, optional=True, max_length=MAX_ID_LENGTH)
            ),
            name=_interned(_str(data, "name", "peer", "", max_length=MAX_ID_LENGTH)),
            kind=NodeKind(kind),
            capabilities=_str_list(data, "capabilities", "peer"),
            last_seen=_float(data, "last_seen", "peer", time.time()),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "address": self.address,
            "port": self.port,
            "swarm": self.swarm,
            "team": self.team,
            "name": self.name,
            "kind": self.kind.value,
            "capabilities": list(self.capabilities),
            "last_seen": self.last_seen,
        }


@dataclass(slots=True)
class Capability:
    """Something a node can do, published by ``_node.capabilities``."""

    name: str
    description: str = ""
    input_schema: dict[str, Any] = field(default_factory=dict)
    output_schema: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "input_schema": dict(self.input_schema),
            "output_schema": dict(self.output_schema),
        }


@dataclass(frozen=True, slots=True)
class Broadcast:
    """One broadcast: its nonce (also the conversation id), origin and endpoint."""

    nonce: str
    origin: Peer
    endpoint: str
    #: The origin's signature of the broadcast's ``message`` event (``"sig"`` on the wire; see
    #: docs/signing.md), so receivers can check who broadcast; ``None`` from an unsigned
    #: (2.5.0) origin. synapse-p2p 2.5.0 ignores the key.
    sig: dict[str, Any] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_dict(cls, data: Any) -> Broadcast:
        data = _require(data, "broadcast")
        sig = data.get("sig")
        return cls(
            nonce=_str(data, "nonce", "broadcast", max_length=MAX_ID_LENGTH),
            origin=Peer.from_dict(data.get("origin")),
            endpoint=_str(data, "endpoint", "broadcast"),
            sig=dict(sig) if isinstance(sig, dict) else None,
        )

    def to_dict(self) -> dict[str, Any]:
        data = {"nonce": self.nonce, "origin": self.origin.to_dict(), "endpoint": self.endpoint}
        if self.sig is not None:
            data["sig"] = dict(self.sig)
        return data


@dataclass(frozen=True, slots=True)
class BroadcastReply:
    """A reply to a broadcast from one peer.

    ``error`` is ``None`` for a reply; for a peer whose handler failed (only from
    ``iter_replies(..., errors=True)``) it is the error message and ``result`` is ``None``.
    """

    nonce: str
    peer: Peer
    result: Any = None
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None

    def to_dict(self) -> dict[str, Any]:
        data = {"nonce": self.nonce, "peer": self.peer.to_dict(), "result": self.result}
        if self.error is not None:
            data["error"] = self.error
        return data


@dataclass(frozen=True, slots=True)
class ConversationEvent:
    """One event of a shared conversation (an append-only event log)."""

    conversation_id: str
    event_id: str
    kind: str
    peer: Peer
    payload: dict[str, Any] = field(default_factory=dict)
    parent_id: str | None = None
    created_at: float = field(default_factory=time.time)
    metadata: dict[str, Any] = field(default_factory=dict)
    #: This node's own knowledge, never read from the wire: the author's signature (in
    #: ``metadata``) was checked against the author's id.
    verified: bool = field(default=False, compare=False)

    @classmethod
    def from_dict(cls, data: Any) -> ConversationEvent:
        data = _require(data, "event")
        return cls(
            conversation_id=_str(data, "conversation_id", "event", max_length=MAX_ID_LENGTH),
            event_id=_str(data, "event_id", "event", max_length=MAX_ID_LENGTH),
            kind=_str(data, "kind", "event", max_length=MAX_ID_LENGTH),
            peer=Peer.from_dict(data.get("peer")),
            payload=_map(data, "payload", "event"),
            parent_id=_str(
                data, "parent_id", "event", None, optional=True, max_length=MAX_ID_LENGTH
            ),
            created_at=_float(data, "created_at", "event", time.time()),
            metadata=_map(data, "metadata", "event"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "conversation_id": self.conversation_id,
            "event_id": self.event_id,
            "kind": self.kind,
            "peer": self.peer.to_dict(),
            "payload": self.payload,
            "parent_id": self.parent_id,
            "created_at": self.created_at,
            "metadata": self.metadata,
        }


@dataclass(slots=True)
class AdvertisedArtifact:
    """What ``_synapse.artifacts`` lists about an artifact (no content)."""

    name: str
    mime_type: str
    kind: str = "metadata"
    description: str = ""
    encoding: str = "json"
    size: int | None = None
    sha256: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Any) -> AdvertisedArtifact:
        data = _require(data, "artifact")
        size = data.get("size")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int)):
            raise ProtocolError("artifact 'size' must be an int or nil")
        return cls(
            name=_str(data, "name", "artifact"),
            mime_type=_str(data, "mime_type", "artifact"),
            kind=_str(data, "kind", "artifact", "metadata"),
            description=_str(data, "description", "artifact", ""),
            encoding=_str(data, "encoding", "artifact", "json"),
            size=size,
            sha256=_str(data, "sha256", "artifact", None, optional=True),
            metadata=_map(data, "metadata", "artifact"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "mime_type": self.mime_type,
            "kind": self.kind,
            "description": self.description,
            "encoding": self.encoding,
            "size": self.size,
            "sha256": self.sha256,
            "metadata": dict(self.metadata),
        }


@dataclass(slots=True)
class ServedArtifact:
    """An artifact with its inline content, as ``_synapse.artifact.get`` returns it.

    ``content`` is what goes on the wire: a base64 string for bytes, the text for ``str``,
    the JSON value otherwise (see :meth:`synapse_p2p.Node.artifact`).
    """

    name: str
    mime_type: str
    content: Any
    kind: str = "metadata"
    description: str = ""
    encoding: str = "json"
    size: int | None = None
    sha256: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Any) -> ServedArtifact:
        descriptor = AdvertisedArtifact.from_dict(data)
        if "content" not in data:
            raise ProtocolError("artifact has no 'content'")
        return cls(
            name=descriptor.name,
            mime_type=descriptor.mime_type,
            content=data["content"],
            kind=descriptor.kind,
            description=descriptor.description,
            encoding=descriptor.encoding,
            size=descriptor.size,
            sha256=descriptor.sha256,
            metadata=descriptor.metadata,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "mime_type": self.mime_type,
            "content": self.content,
            "kind": self.kind,
            "description": self.description,
            "encoding": self.encoding,
            "size": self.size,
            "sha256": self.sha256,
            "metadata": dict(self.metadata),
        }

    def descriptor(self) -> AdvertisedArtifact:
        return AdvertisedArtifact(
            name=self.name,
            mime_type=self.mime_type,
            kind=self.kind,
            description=self.description,
            encoding=self.encoding,
            size=self.size,
            sha256=self.sha256,
            metadata=dict(self.metadata),
        )
