"""synapse-p2p: the layer underneath agent swarms.

Give a process a :class:`Node` and it gets a name, peers, capabilities, RPC, shared
conversations, task leasing, schedules and agent routing, with no server to run. Works under
trio and asyncio (through anyio). Library logging goes to the ``synapse_p2p`` logger, silent
unless the application configures logging.
"""

from __future__ import annotations

import logging
from importlib.metadata import PackageNotFoundError, version

from ._quotas import Quotas
from .conversations import (
    BaseConversationLog,
    MemoryConversationLog,
    SqliteConversationLog,
    default_summarizer,
)
from .errors import (
    A2AAgentError,
    AgentTimeoutError,
    AllAgentsFailedError,
    CallTimeout,
    ConnectError,
    ConnectionLost,
    ConversationLogClosed,
    ConversationLogError,
    DroppedCall,
    FederationError,
    FrameTooLarge,
    HandshakeError,
    HandshakeTimeout,
    IdentityError,
    IncompleteFrame,
    InvalidMessageError,
    JoinError,
    MdnsError,
    NoAgentAvailableError,
    NoClientError,
    PlaintextPeer,
    ProtocolError,
    RecordError,
    RegistryError,
    RemoteError,
    SynapseConnectionError,
    SynapseError,
    TeamTaskError,
    UnknownAgentError,
    UnknownCursorError,
)
from .identity import Identity
from .node import Node
from .rpc import Client, Connection
from .schedules import CronSchedule, IntervalSchedule, SolarSchedule, cron, every, solar
from .types import (
    AdvertisedArtifact,
    Broadcast,
    BroadcastReply,
    Capability,
    ConversationEvent,
    NodeKind,
    Peer,
    ServedArtifact,
)

try:
    __version__ = version("synapse-p2p")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "A2AAgentError",
    "AdvertisedArtifact",
    "AgentTimeoutError",
    "AllAgentsFailedError",
    "BaseConversationLog",
    "Broadcast",
    "BroadcastReply",
    "CallTimeout",
    "Capability",
    "Client",
    "ConnectError",
    "Connection",
    "ConnectionLost",
    "ConversationEvent",
    "ConversationLogClosed",
    "ConversationLogError",
    "CronSchedule",
    "DroppedCall",
    "FederationError",
    "FrameTooLarge",
    "HandshakeError",
    "HandshakeTimeout",
    "Identity",
    "IdentityError",
    "IncompleteFrame",
    "IntervalSchedule",
    "InvalidMessageError",
    "JoinError",
    "MdnsError",
    "MemoryConversationLog",
    "NoAgentAvailableError",
    "NoClientError",
    "Node",
    "NodeKind",
    "Peer",
    "PlaintextPeer",
    "ProtocolError",
    "Quotas",
    "RecordError",
    "RegistryError",
    "RemoteError",
    "ServedArtifact",
    "SolarSchedule",
    "SqliteConversationLog",
    "SynapseConnectionError",
    "SynapseError",
    "TeamTaskError",
    "UnknownAgentError",
    "UnknownCursorError",
    "__version__",
    "cron",
    "default_summarizer",
    "every",
    "solar",
]
