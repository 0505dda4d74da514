"""Typed node events, for ``node.subscribe(...)``.

``@node.on("peer.joined")`` handlers run concurrently, each in its own task; a subscription
delivers the same happenings as typed objects, in order, to one reader of your own::

    from synapse_p2p.events import EventStored, PeerJoined

    with node.subscribe(PeerJoined, EventStored) as events:
        async for event in events:
            if isinstance(event, PeerJoined):
                print("joined:", event.peer.name)
            else:
                print(event.event.kind, event.event.payload)

Each class has a ``name``, the ``@node.on`` name of the same happening.
"""

from __future__ import annotations

from ._hub import (
    BroadcastReceived,
    ConversationCompacted,
    ConversationPruned,
    EventStored,
    NodeEvent,
    PeerHeartbeat,
    PeerJoined,
    PeerLeft,
    PeerOffline,
    ReplyReceived,
    Subscription,
)

__all__ = [
    "BroadcastReceived",
    "ConversationCompacted",
    "ConversationPruned",
    "EventStored",
    "NodeEvent",
    "PeerHeartbeat",
    "PeerJoined",
    "PeerLeft",
    "PeerOffline",
    "ReplyReceived",
    "Subscription",
]
