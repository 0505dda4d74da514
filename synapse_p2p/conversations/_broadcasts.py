"""What a node knows about broadcasts: replies, ACKs and failures per nonce, bounded."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Container
from dataclasses import dataclass, field
from typing import Any

import anyio

from ..types import Broadcast, BroadcastReply, Peer

__all__ = ["BroadcastBook", "BroadcastState", "BroadcastStatus"]


@dataclass
class BroadcastState:
    """Replies to one broadcast, in arrival order, and who ACKed or failed."""

    nonce: str
    broadcast: Broadcast | None = None
    replies: list[BroadcastReply] = field(default_factory=list)
    #: Replies and failures (``BroadcastReply.error`` set) in arrival order.
    answers: list[BroadcastReply] = field(default_factory=list)
    replied: set[str] = field(default_factory=set)
    #: Repliers whose reply was not signed (a verified reply may still take its place).
    unverified: set[str] = field(default_factory=set)
    acked: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)
    #: (kind, member id) of the answers this node, the origin, passed on to the others.
    passed: set[tuple[str, str]] = field(default_factory=set)
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


@dataclass(frozen=True, slots=True)
class BroadcastStatus:
    """Where one broadcast stands, as this node knows it (a snapshot).

    ``pending``: peers this node sent its own broadcast to whose call has not returned yet;
    ``acked``: peers that took it (their ACK event came, or their call answered
    ``deferred``); ``replied`` and ``failed``: peers that answered; ``gone``: peers that took
    it and are no longer members (offline or left) without having answered.
    """

    nonce: str
    pending: frozenset[str]
    acked: frozenset[str]
    replied: frozenset[str]
    failed: frozenset[str]
    gone: frozenset[str]
    replies: int

    @property
    def working(self) -> frozenset[str]:
        """Peers that took it and are still working on it."""
        return self.acked - self.replied - self.failed - self.gone

    @property
    def over(self) -> bool:
        """The broadcast is over: every call returned, someone took it, and every peer that
        took it has replied, failed or gone. (Callers usually wait a short quiet spell more,
        for an ACK still on its way.)"""
        return not self.pending and bool(self.acked) and not self.working

    @classmethod
    def of(cls, state: BroadcastState, members: Container[str]) -> BroadcastStatus:
        """The status of ``state``; ``members`` are the ids of the live members now."""
        answered = state.replied | state.failed
        gone = frozenset(p for p in state.acked if p not in answered and p not in members)
        return cls(
            nonce=state.nonce,
            pending=frozenset(state.pending),
            acked=frozenset(state.acked),
            replied=frozenset(state.replied),
            failed=frozenset(state.failed),
            gone=gone,
            replies=len(state.replies),
        )


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

    def add_reply(self, reply: BroadcastReply, *, verified: bool = False) -> bool:
        """Record a reply; False if this peer already replied (or the nonce is full). A
        ``verified`` reply takes the place of an unverified one from the same peer id (see
        :func:`~._signing.may_move`)."""
        state = self.state(reply.nonce)
        peer_id = reply.peer.id
        if peer_id in state.replied:
            if not verified or peer_id not in state.unverified:
                return False
            state.unverified.discard(peer_id)
            for answers in (state.replies, state.answers):
                answers[:] = [reply if r.peer.id == peer_id and not r.failed else r
                              for r in answers]  # fmt: skip
            state.notify()
            return True
        if len(state.replies) >= self.max_replies:
            return False
        if not verified:
            state.unverified.add(peer_id)
        state.replied.add(peer_id)
        state.replies.append(reply)
        state.answers.append(reply)
        state.notify()
        return True

    def add_ack(self, nonce: str, peer_id: str) -> None:
        state = self.state(nonce)
        if peer_id not in state.acked and len(state.acked) < self.max_replies:
            state.acked.add(peer_id)
            state.notify()

    def add_failure(self, nonce: str, peer: Peer, error: str) -> None:
        state = self.state(nonce)
        if peer.id not in state.failed and len(state.failed) < self.max_replies:
            state.failed.add(peer.id)
            state.answers.append(BroadcastReply(nonce, peer, None, error))
            state.notify()

    def notify_all(self) -> None:
        for state in self._states.values():
            state.notify()

    def member_gone(self, peer_id: str) -> None:
        """A member went offline or left: wake whoever waits on a broadcast it took."""
        for state in self._states.values():
            if peer_id in state.acked or peer_id in state.pending:
                state.notify()

    def __len__(self) -> int:
        return len(self._states)

    def nonces(self) -> list[str]:
        """Nonces held, least recently used first."""
        return list(self._states)

    def drop(self, nonce: str) -> None:
        state = self._states.pop(nonce, None)
        if state is not None:
            state.notify()
