"""synapse-p2p: the layer underneath agent swarms.

Give a process a :class:`Node` and it gets a name, peers, capabilities, RPC, shared
conversations, task leasing, schedules and agent routing, with no server to run. Works under
trio and asyncio (through anyio). Library logging goes to the ``synapse_p2p`` logger, silent
unless the application configures logging.
"""

from __future__ import annotations

import logging
from importlib.metadata import PackageNotFoundError, version

from .conversations import (
    BaseConversationLog,
    MemoryConversationLog,
    SqliteConversationLog,
    default_summarizer,
)
from .errors import (
    HandshakeError,
    HandshakeTimeout,
    IdentityError,
    PlaintextPeer,
    RecordError,
    RemoteError,
    TeamTaskError,
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
    "AdvertisedArtifact",
    "BaseConversationLog",
    "Broadcast",
    "BroadcastReply",
    "Capability",
    "Client",
    "Connection",
    "ConversationEvent",
    "CronSchedule",
    "HandshakeError",
    "HandshakeTimeout",
    "Identity",
    "IdentityError",
    "IntervalSchedule",
    "MemoryConversationLog",
    "Node",
    "NodeKind",
    "Peer",
    "PlaintextPeer",
    "RecordError",
    "RemoteError",
    "ServedArtifact",
    "SolarSchedule",
    "SqliteConversationLog",
    "TeamTaskError",
    "__version__",
    "cron",
    "default_summarizer",
    "every",
    "solar",
]
