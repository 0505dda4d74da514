"""What a node knows about broadcasts: replies, ACKs and failures per nonce, bounded."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import anyio

from ..types import Broadcast, BroadcastReply

__all__ = ["BroadcastBook", "BroadcastState"]


@dataclass
class BroadcastState:
    """Replies to one broadcast, in arrival order, and who ACKed or failed."""

    nonce: str
    broadcast: Broadcast | None = None
    replies: list[BroadcastReply] = field(default_factory=list)
    replied: set[str] = field(default_factory=set)
    acked: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)
    #: Peers this node sent its own broadcast to whose call has not returned yet.
    pending: set[str] = field(default_factory=set)
    changed: anyio.Event = field(default_factory=anyio.Event)

    def notify(self) -> None:
        self.changed.set()
        self.changed = anyio.Event()

    def delivered(self, peer_id: str, result: Any, error: BaseException | None) -> None:
        """The broadcast call to ``peer_id`` returned (or failed, or was dropped). A
        ``{"deferred": True}`` answer means the peer took the task: it has ACKed, even if the
        ACK event is still on its way."""
        self.pending.discard(peer_id)
        if error is None and isinstance(result, dict) and result.get("deferred") is True:
            self.acked.add(peer_id)
        self.notify()


class BroadcastBook:
    """Per-nonce broadcast state, least recently used first out.

    Nonces are chosen by whoever broadcasts, so the book holds at most ``max_broadcasts``
    nonces and ``max_replies`` replies per nonce; a node's own broadcasts are kept in front.
    """

    def __init__(self, *, max_broadcasts: int = 1024, max_replies: int = 1024) -> None:
        self.max_broadcasts = max_broadcasts
        self.max_replies = max_replies
        self._states: OrderedDict[str, BroadcastState] = OrderedDict()

    def get(self, nonce: str) -> BroadcastState | None:
        return self._states.get(nonce)

    def state(self, nonce: str) -> BroadcastState:
        state = self._states.get(nonce)
        if state is None:
            state = self._states[nonce] = BroadcastState(nonce)
            while len(self._states) > self.max_broadcasts:
                _, dropped = self._states.popitem(last=False)
                dropped.notify()
        else:
            self._states.move_to_end(nonce)
        return state

    def add_reply(self, reply: BroadcastReply) -> bool:
        """Record a reply; False if this peer already replied (or the nonce is full)."""
        state = self.state(reply.nonce)
        if reply.peer.id in state.replied or len(state.replies) >= self.max_replies:
            return False
        state.replied.add(reply.peer.id)
        state.replies.append(reply)
        state.notify()
        return True

    def add_ack(self, nonce: str, peer_id: str) -> None:
        state = self.state(nonce)
        if peer_id not in state.acked and len(state.acked) < self.max_replies:
            state.acked.add(peer_id)
            state.notify()

    def add_failure(self, nonce: str, peer_id: str) -> None:
        state = self.state(nonce)
        if peer_id not in state.failed and len(state.failed) < self.max_replies:
            state.failed.add(peer_id)
            state.notify()

    def notify_all(self) -> None:
        for state in self._states.values():
            state.notify()

    def drop(self, nonce: str) -> None:
        state = self._states.pop(nonce, None)
        if state is not None:
            state.notify()
