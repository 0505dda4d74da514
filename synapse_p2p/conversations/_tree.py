"""Conversation events on a broadcast tree of the active views (Plumtree, driven live).

With ``Node(event_tree=True)`` (and partial views, the default), in a swarm of at least
:data:`TREE_MIN_MEMBERS` other members, an event that goes to every member (a node's own, and
the answers an ask's origin passes on to the bystanders) is not sent by its author to each
member: it is pushed to the author's active
neighbors, each of which passes it on once (:mod:`._plumtree`, the sans-IO core). Duplicates
prune links to *lazy*; lazy links only announce what they hold (IHAVE, every
:data:`LAZY_INTERVAL`), and a node that hears of an event it still lacks a while later
(:data:`GRAFT_TIMEOUT`) asks for it (GRAFT), which also puts that link back in the tree. Each
node handles each event about once, whatever the swarm's size, and holds connections only to
its neighbors. Members the tree cannot reach (synapse-p2p 2.5.0 peers, nodes of ours without
views) still get the event from its author directly. Every node with partial views serves the
endpoint and passes events on, whatever its own ``event_tree``: a swarm may turn it on node
by node.

``_synapse.tree(message)`` carries one Plumtree message (``docs/scale.md``). Its rules:

* only over a secure channel, from a member of ours held alive in views (else
  ``bad_request``); a malformed message is ``bad_request``; answers travel directly, never as
  ``pt.replies`` (``bad_request``);
* each item new to this node is checked before anything else happens to it (the event's
  form, its id is the item's id, its author is of this swarm and team, signed by its author:
  :meth:`~._signing.EventTrust.check`) and charged to its *author's* event quota
  (:class:`~._admission.Admission`): a relay is not charged for everyone's events. An item
  that fails is dropped and never passed on (counted in :attr:`EventTree.refused`); a sender
  over the quota with events of its own gets ``overloaded``;
* an item this node stored before and older than :data:`FORWARD_WINDOW` is not passed on nor
  charged: replaying old signed events cannot make the swarm carry them again.

Everything else (storing, replay windows, lifecycle events) is :meth:`Conversations.remember`,
as for an event that came directly.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio

from ..errors import BAD_REQUEST, OVERLOADED, ProtocolError, RemoteError
from ..membership._records import PeerRecord, Send
from ..types import ConversationEvent, Peer
from ._delivery import TREE_ENDPOINT
from ._plumtree import Deliver, Plumtree, PlumtreeAction, PlumtreeConfig
from ._plumtree_wire import Eager, EagerItem, Replies, decode_plumtree_message

if TYPE_CHECKING:
    from ..rpc import Connection, EndpointRegistry
    from ._service import Conversations

__all__ = ["FORWARD_WINDOW", "TREE_ENDPOINT", "TREE_MIN_MEMBERS", "EventTree", "TreeStatistics"]

log = logging.getLogger(__name__)

#: Events go on the tree only in a swarm of at least this many other members; below it, the
#: author sends each member its copy (as many frames as the tree would carry, on connections
#: a small swarm has open anyway, one hop).
TREE_MIN_MEMBERS = 20
#: Seconds between two IHAVE batches on a lazy link. Announcements only repair: an event lost
#: on its tree branch is found this much later at worst (plus the graft timeout); a long
#: interval keeps a stream of events to about one announcement per lazy link per interval.
LAZY_INTERVAL = 1.0
#: Seconds a node waits, after hearing of an event it lacks, before asking for it: announced
#: events are at least this old, so the tree's copy is then late, not merely slower.
GRAFT_TIMEOUT = 1.0
GRAFT_RETRY = 0.5
#: Lazy neighbors a node announces to per :data:`LAZY_INTERVAL`, in turn (the rest wait for
#: theirs): during a stream of events each node sends this many announcements a second
#: whatever its view's size, and a node missing an event still hears of it from each of its
#: neighbors that holds it, one after another.
LAZY_FANOUT = 2
#: Seconds: an event created longer ago that this node stored before is not passed on.
FORWARD_WINDOW = 120.0


@dataclass(frozen=True, slots=True)
class TreeStatistics:
    """A snapshot of a node's broadcast tree: its links now (``eager``: in the tree, ``lazy``:
    announcing only), messages sent and received by kind (``pt.eager``, ``pt.ihave``,
    ``pt.graft``, ``pt.prune``), items dropped on arrival by reason, duplicate pushes
    received, announcements skipped."""

    eager: int
    lazy: int
    sent: Mapping[str, int]
    received: Mapping[str, int]
    refused: Mapping[str, int]
    duplicates: int
    #: Message ids not announced to a lazy neighbor: no connection was open to it.
    skipped: int


#: Events kept to answer GRAFTs (asked for within a few seconds of their push).
CACHE = 1024


def live_config() -> PlumtreeConfig:
    """The core's timers for the live node (see :data:`LAZY_INTERVAL`)."""
    return PlumtreeConfig(
        lazy_interval=LAZY_INTERVAL,
        graft_timeout=GRAFT_TIMEOUT,
        graft_retry=GRAFT_RETRY,
        cache_max=CACHE,
        lazy_fanout=LAZY_FANOUT,
    )


class EventTree:
    """One node's Plumtree driver for conversation events; see the module documentation.

    :meth:`usable` says whether events go on the tree now (views on, a swarm of
    :data:`TREE_MIN_MEMBERS` or more, a neighbor to push to), :meth:`broadcast` puts one on
    it, :meth:`run` ticks the core until cancelled; the endpoint is registered on
    construction when views are on.
    """

    def __init__(
        self,
        conversations: Conversations,
        registry: EndpointRegistry,
        *,
        config: Callable[[], PlumtreeConfig] = live_config,
    ) -> None:
        self.conv = conversations
        self._config = config
        self.core = Plumtree(conversations.local.node_id, config())
        self._links: tuple[str, ...] = ()
        self._pushed: set[str] = set()  # neighbors this node pushed events to
        self._wake = anyio.Event()
        self._pending: list[ConversationEvent] = []
        self._pending_at = math.inf
        #: Neighbors of ours that answered they serve no tree endpoint (pushed to no more).
        self.unsupported: set[str] = set()
        #: Items dropped on arrival, by reason (``malformed``, ``wrong_id``, ``refused``,
        #: ``unsigned``, ``quota``, ``old``).
        self.refused: Counter[str] = Counter()
        #: Messages sent and received, by kind (``pt.eager``, ``pt.ihave``, ...).
        self.sent: Counter[str] = Counter()
        self.received: Counter[str] = Counter()
        if conversations.members.views is not None:
            registry.add(self._serve, TREE_ENDPOINT, publish=False)

    def statistics(self) -> TreeStatistics:
        core = self.core
        return TreeStatistics(
            len(core.eager), len(core.lazy), dict(self.sent), dict(self.received),
            dict(self.refused), core.duplicates, core.unannounced,
        )  # fmt: skip

    def start(self) -> None:
        """A fresh core (the node starts again)."""
        self.core = Plumtree(self.conv.local.node_id, self._config())
        self._wake = anyio.Event()
        self._links = ()
        self._pushed = set()
        self._pending.clear()
        self._pending_at = math.inf
        self.unsupported.clear()

    # -- which members the tree covers ---------------------------------------------------------

    def reaches(self, peer_id: str) -> bool:
        """Whether member ``peer_id`` takes part in the tree (it is in views: signed, ours,
        serving the views endpoint, and the tree endpoint as far as this node knows)."""
        views = self.conv.members.views
        return views is not None and views.in_views(peer_id) and peer_id not in self.unsupported

    def usable(self) -> bool:
        """Whether this node puts its events on the tree now: ``event_tree`` and views on, a
        swarm of :data:`TREE_MIN_MEMBERS` other members or more, and at least one neighbor to
        push to."""
        conv = self.conv
        if (
            not conv.config.event_tree
            or conv.members.views is None
            or len(conv.members.peers) < TREE_MIN_MEMBERS
        ):
            return False
        self._sync()
        return bool(self.core.neighbors)

    def _sync(self) -> None:
        """Bring the core's neighbors in line with the active view (members of ours held
        alive that serve the tree)."""
        views = self.conv.members.views
        ids = () if views is None else tuple(
            i for i in views.active_ids()
            if self._peer(i) is not None and views.in_views(i) and i not in self.unsupported
        )  # fmt: skip
        if ids == self._links:
            return
        current = set(ids)
        for gone in self._links:
            if gone not in current:
                self.core.neighbor_down(gone)
        for node_id in ids:
            peer = self._peer(node_id)
            assert peer is not None
            self.core.neighbor_up(PeerRecord(node_id, peer.address, peer.port))
        self._links = ids

    def _peer(self, node_id: str) -> Peer | None:
        """Member ``node_id`` as the peer table holds it, if alive."""
        state = self.conv.members.table.get(node_id)
        return state.peer if state is not None and state.alive else None

    # -- sending -------------------------------------------------------------------------------

    def broadcast(self, event: ConversationEvent, *, linger: float = 0.0) -> None:
        """Put ``event`` (stored here already) on the tree; with ``linger``, after that many
        seconds, together with whatever else is broadcast meanwhile. Call only when
        :meth:`usable`."""
        if linger > 0:
            self._pending.append(event)
            if self._pending_at == math.inf:
                self._pending_at = anyio.current_time() + linger
                self._wake.set()
            return
        self._apply(self.core.broadcast(anyio.current_time(), event.event_id, event.to_dict()))

    def _flush_pending(self) -> None:
        pending, self._pending = self._pending, []
        self._pending_at = math.inf
        now = anyio.current_time()
        actions: list[PlumtreeAction] = []
        for event in pending:  # (pushes to one neighbor leave together: Delivery merges them)
            actions += self.core.broadcast(now, event.event_id, event.to_dict())
        self._apply(actions)

    def _apply(self, actions: list[PlumtreeAction]) -> list[Deliver]:
        """Send what the core sends; return its deliveries (for the caller to store)."""
        delivered: list[Deliver] = []
        for action in actions:
            if isinstance(action, Deliver):
                delivered.append(action)
            elif isinstance(action, Send):
                peer = self._peer(action.peer.id)
                if peer is None:
                    continue
                if isinstance(action.message, Eager):
                    self._pushed.add(peer.id)
                wire = action.message.to_wire()
                self.sent[wire["k"]] += 1
                self.conv.delivery.send(
                    peer, TREE_ENDPOINT, [wire], {}, outcome=self._outcome(peer)
                )
        if self.core.next_wakeup() < math.inf:
            self._wake.set()
        self._keep_links()
        return delivered

    def _keep_links(self) -> None:
        """The tree's links carry pushes both ways: the end that pushed on one keeps its
        connection open too (a link that never carried a push here, as every link of a swarm
        that has said nothing yet, keeps only its owner's)."""
        views = self.conv.members.views
        if views is None:
            return
        self._pushed &= self.core.neighbors.keys()
        views.keep_also(i for i in self.core.eager if i in self._pushed)  # (no-op if unchanged)

    def _announceable(self, peer_id: str) -> bool:
        """Whether announcements may go to neighbor ``peer_id``: a connection to it is open.
        An announcement never opens one (a handshake at both ends, on each lazy link after
        every quiet spell): it goes where one is open, as on the links this node keeps; the
        other end's announcements, and anti-entropy, cover the rest. The core drops the ids
        queued for the others (``unannounced``), and gives the fanout's turns to these."""
        peer = self._peer(peer_id)
        return peer is not None and self.conv.caller.connected(peer.address, peer.port)

    def _outcome(self, peer: Peer) -> Callable[[Any, BaseException | None], None]:
        def outcome(result: Any, error: BaseException | None) -> None:
            if isinstance(error, RemoteError) and "Unregistered endpoint" in error.message:
                # a node of ours without the tree: it gets events from their authors
                self.unsupported.add(peer.id)
                self._sync()

        return outcome

    # -- receiving -----------------------------------------------------------------------------

    async def _serve(self, message: Any, connection: Connection | None = None) -> dict[str, Any]:
        conv = self.conv
        views = conv.members.views
        caller = connection.node_id if connection is not None else None
        if caller is None:
            raise RemoteError(
                BAD_REQUEST, "tree: messages are taken only from a node proven on a secure channel"
            )
        if views is None or self._peer(caller) is None or not views.in_views(caller):
            raise RemoteError(BAD_REQUEST, "tree: the caller is not a member in views here")
        try:
            decoded = decode_plumtree_message(message)
        except ProtocolError as exc:
            raise RemoteError(BAD_REQUEST, f"tree: {exc}") from None
        if isinstance(decoded, Replies):
            raise RemoteError(BAD_REQUEST, "tree: answers travel to their asker directly")
        self.received[decoded.KIND] += 1
        self._sync()
        now = anyio.current_time()
        if not isinstance(decoded, Eager):
            self._apply(self.core.handle(now, caller, decoded))
            return {"ok": True}
        events: dict[str, ConversationEvent] = {}
        kept: list[EagerItem] = []
        overloaded: RemoteError | None = None
        for item in decoded.items:
            if self.core.has_seen(item.mid):
                kept.append(item)  # a duplicate: the core prunes the link it came on
                continue
            try:
                event = self._check(item, caller)
            except RemoteError as exc:
                if exc.code == OVERLOADED:
                    overloaded = exc
                continue
            if event is not None:
                events[item.mid] = event
                kept.append(item)
        delivered = self._apply(self.core.handle(now, caller, Eager(tuple(kept))))
        stored = 0
        for deliver in delivered:
            event = events.get(deliver.mid)
            if event is None:
                continue
            try:
                stored += await conv.remember(event, checked=True)
            except (ProtocolError, RemoteError) as exc:  # (checked above; a race at most)
                log.debug("tree: event %s not stored: %s", deliver.mid[:16], exc)
        if overloaded is not None:
            raise overloaded
        return {"ok": True, "stored": stored}

    def _check(self, item: EagerItem, caller: str) -> ConversationEvent | None:
        """The item's event, checked and charged; ``None`` (counted) if it is dropped;
        ``RemoteError(overloaded)`` when the caller's own events are over its quota."""
        conv = self.conv
        try:
            event = ConversationEvent.from_dict(item.payload)
        except ProtocolError:
            self.refused["malformed"] += 1
            return None
        if event.event_id != item.mid:
            self.refused["wrong_id"] += 1
            return None
        try:
            conv.config.check_member(event.peer)
            event = conv.trust.check(event)
        except RemoteError:
            self.refused["refused"] += 1
            return None
        if not event.verified:
            self.refused["unsigned"] += 1
            return None
        if conv.log.seen(event.event_id):  # stored before: passed on if recent, not charged
            if event.created_at < conv.config.wall_clock() - FORWARD_WINDOW:
                self.refused["old"] += 1
                return None
            return event
        try:
            conv.admission.admit(event.peer.id, [event], conv.holds, anyio.current_time())
        except RemoteError:
            self.refused["quota"] += 1
            if event.peer.id == caller:
                raise
            return None
        return event

    # -- running -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Flush IHAVE batches, GRAFT what is missing and send lingering events, until
        cancelled."""
        while True:
            now = anyio.current_time()
            if now >= self._pending_at:
                self._flush_pending()
            if self.conv.members.views is not None:
                self._sync()
                self._apply(self.core.tick(now, self._announceable))
            wake = min(self.core.next_wakeup(), self._pending_at)
            self._wake = anyio.Event()
            # Nothing due: asleep until a message or a broadcast gives the core work (an idle
            # node costs nothing here).
            with anyio.move_on_after(max(0.0, wake - now) if wake < math.inf else math.inf):
                await self._wake.wait()
