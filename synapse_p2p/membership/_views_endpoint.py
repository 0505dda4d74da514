"""The ``_synapse.views`` endpoint of live partial views (:mod:`._live_views`): the rules a
view message must pass, and messages that wait for a member to be verified.

``_synapse.views(message, record=..., members=[...], more=[...])`` carries ``message`` and
up to ``BATCH - 1`` more from one caller, handled in order:

* only over a secure channel: the sender is the caller's proven id (``connection.node_id``);
  a plaintext caller, or a JOIN/NEIGHBOR/NEIGHBOR_REPLY whose record names another id, is
  refused with ``bad_request`` (counted in ``trust.refused``), as is a malformed message
  (:func:`~._views_wire.decode_view_message`) or a batch over the bounds;
* ``record`` is the sender's signed peer record, a direct claim (the rules of :mod:`._trust`);
  ``members``, the signed records of members the messages name, are taken as a gossip digest
  from the caller (trusted only if the caller is a member held alive at its address);
* a message that must name a member believably (a JOIN/NEIGHBOR/NEIGHBOR_REPLY its sender, a
  FORWARD_JOIN its joiner) while that member waits to be verified here waits for the check
  (:class:`VerificationWaits`) instead of being ignored.

The answer is ``{"ok": true}``, with ``"replies"``: the core's messages to the caller, which
ride the answer rather than a call back.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

import anyio

from ..errors import BAD_REQUEST, ProtocolError, RemoteError
from ..types import Peer
from ._views_wire import (
    ForwardJoin,
    Join,
    Neighbor,
    NeighborReply,
    ViewMessage,
    decode_view_message,
)

if TYPE_CHECKING:
    from ..rpc import Connection, EndpointRegistry
    from ._live_views import LiveViews

__all__ = [
    "BATCH",
    "DEFERRED",
    "MAX_MEMBERS",
    "MAX_REPLIES",
    "VIEWS_ENDPOINT",
    "VerificationWaits",
    "register_views",
]

#: Our extension (never called on 2.5.0 peers): HyParView messages from one caller.
VIEWS_ENDPOINT = "_synapse.views"
#: Most view messages one call carries (queued messages to one peer leave together).
BATCH = 16
#: Most view messages a call's answer carries back (the receiver's answers to the caller).
MAX_REPLIES = 32
#: Most signed records (``members``) one call carries.
MAX_MEMBERS = 128
#: View messages waiting at once, at most, for a member to be verified here.
DEFERRED = 256


class VerificationWaits:
    """View messages waiting until a member is verified (:meth:`verified`), bounded."""

    def __init__(self) -> None:
        self._events: dict[str, anyio.Event] = {}
        self._waiters: Counter[str] = Counter()  # messages waiting, by the id awaited
        self._waiting = 0
        #: Messages that waited (``deferred``) and how that ended: ``verified``,
        #: ``gave_up`` (not within the timeout), or not waited for (``overflow``, past
        #: :data:`DEFERRED`).
        self.counts: Counter[str] = Counter()

    def reset(self) -> None:
        for event in self._events.values():
            event.set()
        self._events.clear()
        self.counts.clear()

    def verified(self, node_id: str) -> None:
        """Member ``node_id`` was verified: the messages waiting for it go on."""
        event = self._events.pop(node_id, None)
        if event is not None:
            event.set()

    async def wait(self, node_id: str, timeout: float) -> bool:
        """Wait up to ``timeout`` for :meth:`verified` of ``node_id``; ``False`` at once when
        :data:`DEFERRED` messages are already waiting. Cancellation ends the wait."""
        if self._waiting >= DEFERRED:
            self.counts["overflow"] += 1
            return False
        event = self._events.get(node_id)
        if event is None:
            event = self._events[node_id] = anyio.Event()
        self.counts["deferred"] += 1
        self._waiting += 1
        self._waiters[node_id] += 1
        try:
            with anyio.move_on_after(timeout):
                await event.wait()
        finally:
            self._waiting -= 1
            self._waiters[node_id] -= 1
            if not self._waiters[node_id]:
                del self._waiters[node_id]
                if self._events.get(node_id) is event:
                    del self._events[node_id]
        return event.is_set()


async def serve(
    views: LiveViews,
    message: Any,
    record: Any,
    connection: Connection | None,
    members: Any = None,
    more: Any = None,
) -> dict[str, Any]:
    """View messages from one caller (see the module documentation); ``RemoteError`` with
    ``bad_request`` when a rule refuses the call (nothing of it is then handled)."""
    m = views.membership
    caller_id = connection.node_id if connection is not None else None
    if caller_id is None:
        m.trust.refuse(
            "plaintext",
            "views: view messages are taken only from a node proven on a secure channel",
        )
    assert caller_id is not None
    if more is not None and (not isinstance(more, list) or len(more) >= BATCH):
        raise RemoteError(BAD_REQUEST, f"views: more must be a list of under {BATCH}")
    if members is not None and not isinstance(members, list):
        raise RemoteError(BAD_REQUEST, "views: members must be a list")
    messages: list[ViewMessage] = []
    for wire in [message, *(more or ())]:
        try:
            decoded = decode_view_message(wire)
        except ProtocolError as exc:
            raise RemoteError(BAD_REQUEST, f"views: {exc}") from None
        if isinstance(decoded, Join | Neighbor | NeighborReply) and decoded.record.id != caller_id:
            m.trust.refuse(
                "wrong_caller",
                f"views: a message naming node {decoded.record.id[:16]} from node {caller_id[:16]}",
            )
        messages.append(decoded)
    if record is not None:
        sender = Peer.from_dict(record)
        m.config.check_member(sender)
        if sender.id != caller_id:
            m.trust.refuse(
                "wrong_caller",
                f"views: the record of node {sender.id[:16]} sent by node {caller_id[:16]}",
            )
        evidence = m.direct(sender, record, connection, "views")
        if members:
            known = m.table.get(caller_id)
            trusted = (
                evidence.first_hand
                and known is not None
                and known.alive
                and known.peer.address == sender.address
                and known.peer.port == sender.port
            )
            m._apply_digest(members[:MAX_MEMBERS], caller_id, trusted=trusted)
    answers: list[dict[str, Any]] = []
    for decoded in messages:
        if views.core is None:
            return {"ok": False}
        views.received += 1
        await _verified(views, decoded)
        core = views.core
        actions = core.handle(m._now(), caller_id, decoded)
        answers += views.apply(actions, answer_to=caller_id, room=MAX_REPLIES - len(answers))
    return {"ok": True, "replies": answers} if answers else {"ok": True}


async def _verified(views: LiveViews, message: ViewMessage) -> None:
    """Wait (at most the core's ``neighbor_timeout``) until the member ``message`` must name
    believably is verified here, if it is waiting to be verified (a candidate, or being
    dialed): the message is then handled, not ignored and asked again elsewhere."""
    if not isinstance(message, Join | Neighbor | NeighborReply | ForwardJoin):
        return
    subject = message.record
    m = views.membership
    if subject.id == m.local.node_id or views.believable(subject):
        return
    if m.table.signed_candidate(subject.id) is None and subject.id not in m.verifier.checking:
        return  # nobody is verifying it: the core ignores the message
    core = views.core
    if core is None:
        return
    await views.waits.wait(subject.id, core.config.neighbor_timeout)
    views.waits.counts["verified" if views.believable(subject) else "gave_up"] += 1


def register_views(views: LiveViews, registry: EndpointRegistry) -> None:
    """Serve ``_synapse.views`` for ``views`` on ``registry`` (unpublished)."""

    async def handler(
        message: Any,
        record: Any = None,
        members: Any = None,
        more: Any = None,
        connection: Connection | None = None,
    ) -> dict[str, Any]:
        return await serve(views, message, record, connection, members, more)

    registry.add(handler, VIEWS_ENDPOINT, publish=False)
