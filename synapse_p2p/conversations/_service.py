"""The node's conversations: storing, delivering, syncing, compacting.

Delivery. A node delivers the events it creates (``emit_conversation_event``, ACKs, replies,
errors) itself, in one hop, to every live peer, through bounded per-peer queues
(:mod:`._delivery`): O(N) frames per event, and ``emit`` returns once the event is stored and
queued. Receivers store and never re-forward. With ``event_tree`` (and partial views), in a
swarm of 20 members or more, an event for every member travels on the broadcast tree of the
active views instead (:mod:`._tree`): the author pushes it to its neighbors, each node passes
it on once, and only the members the tree does not reach get it from the author. What a
queue drops or a peer misses is repaired by anti-entropy: every few rounds a node compares a
digest of its recent conversations with one neighbor's and pulls (paged) what it lacks.
synapse-p2p 2.5.0 peers get and send ``_synapse.conversation.event`` and
``_synapse.broadcast.reply`` exactly as they expect (and flood among themselves as they
always did).

One identity per event. A reply has the same ``event_id`` on every node (derived from the nonce
and the replier's id), and a broadcast's ``message`` event is the nonce, so syncing from
several peers never duplicates them. Authors of events are never added to the peer table:
learning an event's author is not a licence to dial it.

Trust. Events this node makes are signed where they are made (:meth:`Conversations.new_event`);
every event received is checked in :meth:`Conversations.remember` before the log's dedup
(:mod:`._signing`: signature, author, replay and clock rules; ``docs/signing.md``).

Broadcasts, asks, ACKs and replies are in :mod:`._broadcasting`; the decisions (sync pages,
digest diffs, compaction and retention plans) in :mod:`._plans`.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskGroup, TaskStatus

from .._hub import ConversationCompacted, ConversationPruned, EventHub, EventStored, ReplyReceived
from .._quotas import caller_key
from .._random import SHARED
from .._spawn import start_soon
from .._validate import format_address
from ..errors import BAD_REQUEST, ProtocolError, RemoteError, SynapseError
from ..types import Broadcast, BroadcastReply, ConversationEvent, Peer
from ..wire import pack
from ._admission import Admission
from ._broadcasts import BroadcastBook
from ._delivery import BATCH, EVENT_ENDPOINT, EVENTS_ENDPOINT, Delivery
from ._ids import random_id
from ._log import UnknownCursorError
from ._plans import (
    SYNC_PAGE,
    build_digest,
    expired_conversations,
    plan_compaction,
    stale_conversations,
    sync_page,
)
from ._signing import EventTrust
from ._tree import EventTree

if TYPE_CHECKING:
    from .._config import NodeConfig
    from .._seams import LocalNode, PeerCaller
    from ..membership import Membership
    from ..rpc import Connection, EndpointRegistry
    from ..secure import SecurityPolicy
    from ._log import ConversationLog
    from ._summary import Summarizer

__all__ = ["Conversations"]

log = logging.getLogger(__name__)

SYNC_ENDPOINT = "_synapse.conversation.sync"
DIGEST_ENDPOINT = "_synapse.conversation.digest"
ANTI_ENTROPY_ROUNDS = 4  # heartbeat intervals between two anti-entropy exchanges
ANSWER_LINGER = 0.1  # seconds an ACK or reply waits for company on its way to bystanders
#: Ids of events stored unverified that a verified copy may still replace.
UNVERIFIED_REMEMBERED = 65536


class Conversations:
    """The conversation store and its traffic; see the module documentation.

    Built from the node's settings, its own record, the log, the endpoint registry it serves
    the conversation endpoints on, the ``members`` (membership: who is alive, who is a 2.5.0
    node), a ``caller`` to reach peers, the ``hub`` it publishes ``EventStored`` & co. to,
    ``summarizer`` (returns the user's summarizer, or ``None`` for the default) and ``policy``
    (which ids proved their key; by default a fresh one for the node's keyring). Events this
    node authors are signed, and every event received is checked (:mod:`._signing`).
    """

    def __init__(
        self,
        config: NodeConfig,
        local: LocalNode,
        log_store: ConversationLog,
        *,
        registry: EndpointRegistry,
        members: Membership,
        caller: PeerCaller,
        hub: EventHub,
        summarizer: Callable[[], Summarizer | None] = lambda: None,
        policy: SecurityPolicy | None = None,
    ) -> None:
        if policy is None:
            from ..secure import SecurityPolicy

            policy = SecurityPolicy(config.keyring)
        self.config = config
        self.local = local
        self.log = log_store
        self.members = members
        self.caller = caller
        self.hub = hub
        self._summarizer = summarizer
        self.book = BroadcastBook()
        self.delivery = Delivery(
            caller, is_legacy=members.is_legacy, call_timeout=config.call_timeout
        )
        self._task_group: TaskGroup | None = None
        self._compacting: set[str] = set()
        # Conversations by recent activity, to bound how many a node keeps (a remote peer can
        # start conversations at will): past the cap, the quietest one is pruned.
        self._active: OrderedDict[str, None] = OrderedDict(
            (cid, None) for cid in reversed(log_store.conversations())
        )
        self._rng = SHARED
        self.refused_old = 0
        self.trust = EventTrust(config, local, policy)
        self.admission = Admission(config.quotas)
        self._unverified: OrderedDict[str, None] = OrderedDict()
        self._register(registry)
        self.tree = EventTree(self, registry)

    @property
    def task_group(self) -> TaskGroup | None:
        """The service's task group while it runs (for work it owns, e.g. ask handlers)."""
        return self._task_group

    def holds(self, conversation_id: str) -> bool:
        """Whether this node keeps conversation ``conversation_id`` (it is active here)."""
        return conversation_id in self._active

    # -- storing ----------------------------------------------------------------------------

    def _now(self) -> float:
        return self.config.wall_clock()

    def record(self) -> Peer:
        """This node's peer record, stamped now."""
        return self.local.record(self._now())

    def new_event(
        self,
        conversation_id: str,
        event_id: str,
        kind: str,
        payload: dict[str, Any],
        *,
        parent_id: str | None = None,
        created_at: float | None = None,
        metadata: dict[str, Any] | None = None,
        peer: Peer | None = None,
    ) -> ConversationEvent:
        """An event authored by this node, signed: the one place local events are made."""
        record = peer if peer is not None else self.record()
        event = ConversationEvent(
            conversation_id=conversation_id,
            event_id=event_id,
            kind=kind,
            peer=record,
            payload=payload,
            parent_id=parent_id,
            created_at=record.last_seen if created_at is None else created_at,
            metadata=dict(metadata or {}),
        )
        return self.trust.sign(event)

    async def remember(
        self, event: ConversationEvent, *, local: bool = False, checked: bool = False
    ) -> bool:
        """Store ``event`` (signature, membership, replay and retention checked); publish
        ``EventStored``. ``local``: made by :meth:`new_event` (signed already); ``checked``:
        received, and returned by ``trust.check`` already (the broadcast tree checks each
        event before passing it on).

        Returns False for a duplicate (or replay), an event older than the retention window or
        of a pruned conversation. Raises ``RemoteError`` (``bad_request``) if the author is not
        of this swarm and team, or the event fails the signature rules (:mod:`._signing`).
        A verified event replaces an unverified copy stored under the same id.
        """
        trust = self.trust
        self.config.check_member(event.peer)
        if not local and not checked:
            event = trust.check(event)
        retention = self.config.conversation_retention
        if retention is not None and event.created_at < self._now() - retention:
            self.refused_old += 1
            return False
        if trust.replayed(event):
            return False
        if not await self.log.append(event):
            trust.accepted(event)
            if event.verified and event.event_id in self._unverified:
                del self._unverified[event.event_id]
                return await self._upgrade(event)
            return False
        trust.accepted(event)
        if not event.verified:
            self._unverified[event.event_id] = None
            while len(self._unverified) > UNVERIFIED_REMEMBERED:
                self._unverified.popitem(last=False)
        self._stored(event)
        if not local and self._relays(event):
            self.deliver(event)  # an answer to our own broadcast: on to the bystanders
        return True

    async def _upgrade(self, event: ConversationEvent) -> bool:
        """A verified ``event`` arrived whose id was stored unverified (a 2.5.0 copy, or a
        forgery under an id not yet known to be verified): it takes the stored one's place."""
        try:
            await self.log.compact(event.conversation_id, [], event)
        except ValueError:  # the id is stored in another conversation
            return False
        self.trust.dropped["replaced_unverified"] += 1
        self._stored(event)
        return True

    def _stored(self, event: ConversationEvent) -> None:
        config = self.config
        cid = event.conversation_id
        self._active[cid] = None
        self._active.move_to_end(cid)
        self.admission.touched(cid, event.peer.id)
        cap = config.conversation_max_conversations
        if cap is not None and len(self._active) > cap and self._task_group is not None:
            victim = self.admission.victim(cid, self._active, cap)
            del self._active[victim]
            self.admission.forgot(victim)
            self._task_group.start_soon(self._prune, victim)
        nonce = event.parent_id or event.conversation_id
        if event.kind == "ack" and event.parent_id:
            self.book.add_ack(event.parent_id, event.peer.id)
        elif event.kind == "reply" and event.parent_id:
            self.count_reply(
                event.parent_id, event.peer, event.payload.get("result"), verified=event.verified
            )
        elif event.kind == "error":
            error = event.payload.get("error")
            self.book.add_failure(nonce, event.peer, str(error) if error is not None else "failed")
        self.hub.publish(EventStored(event))
        limit = config.conversation_max_events
        if (
            limit is not None
            and event.kind != "summary"
            and event.conversation_id not in self._compacting
            and self.log.count(event.conversation_id) > limit
            and self._task_group is not None
        ):
            self._compacting.add(event.conversation_id)
            self._task_group.start_soon(self._auto_compact, event.conversation_id)

    def count_reply(
        self, nonce: str, replier: Peer, result: Any, *, verified: bool = False
    ) -> None:
        """Count another node's reply to ``nonce`` (once per replier; a verified reply
        replaces an unverified one)."""
        reply = BroadcastReply(nonce, replier, result)
        if replier.id != self.local.node_id and self.book.add_reply(reply, verified=verified):
            self.hub.publish(ReplyReceived(reply))

    # -- delivering ---------------------------------------------------------------------------

    def _answer_origin(self, event: ConversationEvent) -> Peer | None:
        """The origin of the broadcast ``event`` answers (an ACK, reply or error), if known."""
        if event.kind not in ("ack", "reply", "error"):
            return None
        state = self.book.get(event.parent_id or event.conversation_id)
        return None if state is None or state.broadcast is None else state.broadcast.origin

    def _relays(self, event: ConversationEvent) -> bool:
        """Whether this node passes ``event`` on to the bystanders: an answer of one of our
        nodes (not 2.5.0) to a broadcast of this node's (see :meth:`deliver`), the first of
        its kind from that member (one ACK, one reply, one error each: a member sending
        many answers cannot make the origin send each to everyone)."""
        if event.kind not in ("ack", "reply", "error"):
            return False
        state = self.book.get(event.parent_id or event.conversation_id)
        if (
            state is None
            or state.broadcast is None
            or state.broadcast.origin.id != self.local.node_id
            or event.peer.id == self.local.node_id
            or self.members.is_legacy(event.peer.id)
        ):
            return False
        key = (event.kind, event.peer.id)
        if key in state.passed or len(state.passed) >= 3 * self.book.max_replies:
            return False
        state.passed.add(key)
        return True

    def deliver(self, event: ConversationEvent) -> None:
        """Queue ``event`` for every live peer. Answers to a broadcast (ACKs, replies, errors)
        go to its origin first and at once; the other peers get them after a short linger,
        batched with whatever else is said meanwhile. Our answers to a broadcast of one of
        our members go to its origin only, which passes every answer it stores on to the
        bystanders (:meth:`remember`): each bystander gets a few batches from the origin
        rather than one call from each replier, O(N) calls per ask instead of O(N^2). Answers
        to a 2.5.0 origin, or to one that is not a member, still go to everyone."""
        data = event.to_dict()
        origin: str | None = None
        members = self.members.records
        peers = [p for p in members.values() if p.id != event.peer.id]
        if event.kind in ("ack", "reply", "error"):
            asker = self._answer_origin(event)
            if asker is not None:
                origin = asker.id
                if (
                    event.peer.id == self.local.node_id
                    and origin in members
                    and not self.members.is_legacy(origin)
                ):
                    peers = [members[origin]]  # it passes our answer on (see above)
                if origin not in members and origin not in (event.peer.id, self.local.node_id):
                    # The origin called us (a command-line asker that just joined, say) and
                    # is not verified yet: it still gets the answers to its own question, at
                    # an address its own record gives (never on the message's word).
                    reachable = self.members.dialable(asker)
                    if reachable is not None:
                        peers.append(reachable)
        tree = self.tree
        if (origin is None or origin == self.local.node_id) and tree.usable():
            # On the broadcast tree (._tree): each member passes it on once; the members the
            # tree does not reach (2.5.0 peers, nodes of ours without views) get it from here.
            tree.broadcast(event, linger=0.0 if origin is None else ANSWER_LINGER)
            peers = [p for p in peers if not tree.reaches(p.id)]
        if origin is not None:
            peers.sort(key=lambda p: p.id != origin)
        for peer in peers:
            linger = ANSWER_LINGER if origin is not None and peer.id != origin else 0.0
            self.delivery.send(peer, EVENT_ENDPOINT, [data], {}, linger=linger)

    def check_size(self, event: ConversationEvent) -> None:
        """``ValueError`` if ``event`` is too large for peers to accept."""
        size = len(pack(event.to_dict()))
        limit = self.config.max_upload_size - 1024
        if size > limit:
            raise ValueError(
                f"conversation event is {size} bytes; peers accept at most about {limit}"
            )

    async def emit(
        self,
        conversation: Broadcast | str,
        kind: str,
        payload: dict[str, Any] | None = None,
        *,
        parent_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        event_id: str | None = None,
    ) -> ConversationEvent:
        cid = conversation.nonce if isinstance(conversation, Broadcast) else conversation
        if not isinstance(cid, str) or not cid:
            raise TypeError("conversation must be a Broadcast or a non-empty string")
        if not isinstance(kind, str) or not kind:
            raise TypeError("kind must be a non-empty string")
        if payload is not None and not isinstance(payload, dict):
            raise TypeError("payload must be a dict or None")
        if metadata is not None and not isinstance(metadata, dict):
            raise TypeError("metadata must be a dict or None")
        event = self.new_event(
            cid,
            event_id or random_id(),
            kind,
            dict(payload or {}),
            parent_id=parent_id,
            metadata=metadata,
        )
        self.check_size(event)
        if await self.remember(event, local=True):
            self.deliver(event)
        return event

    # -- endpoints ----------------------------------------------------------------------------

    def admit(self, connection: Connection | None, events: list[ConversationEvent]) -> None:
        """Charge the caller of an endpoint for ``events`` (:class:`Admission`); raises
        ``RemoteError(overloaded)`` past its quota. Calls from this process (no connection)
        are not charged."""
        if connection is None:
            return
        key = caller_key(connection.node_id, connection.ip)
        self.admission.admit(key, events, self.holds, anyio.current_time())

    def _register(self, registry: EndpointRegistry) -> None:
        async def conversation_event(
            event: Any, connection: Connection | None = None
        ) -> dict[str, Any]:
            incoming = ConversationEvent.from_dict(event)
            self.admit(connection, [incoming])
            return {"ok": True, "stored": await self.remember(incoming)}

        async def conversation_events(
            events: Any, connection: Connection | None = None
        ) -> dict[str, Any]:
            if not isinstance(events, list) or len(events) > BATCH:
                raise RemoteError(BAD_REQUEST, f"events must be a list of at most {BATCH}")
            parsed: list[ConversationEvent | ProtocolError] = []
            for item in events:
                try:
                    parsed.append(ConversationEvent.from_dict(item))
                except ProtocolError as exc:
                    parsed.append(exc)
            self.admit(connection, [e for e in parsed if isinstance(e, ConversationEvent)])
            stored: list[bool] = []
            errors: list[str | None] = []
            for incoming in parsed:
                try:
                    if isinstance(incoming, ProtocolError):
                        raise incoming
                    stored.append(await self.remember(incoming))
                    errors.append(None)
                except (ProtocolError, RemoteError) as exc:
                    stored.append(False)
                    errors.append(str(exc))
            if any(errors):  # why each refused event was refused (None: not refused)
                return {"ok": True, "stored": stored, "errors": errors}
            return {"ok": True, "stored": stored}

        async def conversation_sync(
            conversation_id: str,
            since: float = 0.0,
            after: str | None = None,
            limit: int | None = None,
        ) -> dict[str, Any]:
            if not isinstance(conversation_id, str):
                raise RemoteError(BAD_REQUEST, "conversation_id must be a string")
            if isinstance(since, bool) or not isinstance(since, int | float):
                raise RemoteError(BAD_REQUEST, "since must be a number")
            if limit is not None and (not isinstance(limit, int) or limit <= 0):
                raise RemoteError(BAD_REQUEST, "limit must be a positive integer")
            page = min(limit, SYNC_PAGE) if limit is not None else None
            bound = (page + 1) if page else None
            try:
                events = self.log.events(conversation_id, since=float(since), after=after,
                                         limit=bound)  # fmt: skip
            except UnknownCursorError:  # the cursor was compacted away: start over
                events = self.log.events(conversation_id, since=float(since), limit=bound)
            return sync_page(events, page=page, after=after, size_of=lambda d: len(pack(d)))

        async def conversation_list() -> list[str]:
            return self.log.conversations()

        async def conversation_digest() -> dict[str, list[float]]:
            return self._digest()

        registry.add(conversation_event, EVENT_ENDPOINT, publish=False)
        registry.add(conversation_events, EVENTS_ENDPOINT, publish=False)
        registry.add(conversation_sync, SYNC_ENDPOINT, publish=False)
        registry.add(conversation_list, "_synapse.conversation.list", publish=False)
        registry.add(conversation_digest, DIGEST_ENDPOINT, publish=False)

    # -- sync and anti-entropy ----------------------------------------------------------------

    def _digest(self) -> dict[str, list[float]]:
        log_ = self.log
        return build_digest(log_.conversations(), log_.count, log_.last_activity)

    async def sync(self, peer: Peer, conversation: Broadcast | str, *, since: float = 0.0) -> int:
        """Pull ``conversation`` from ``peer`` (paged with our nodes); store what is new
        (lifecycle events fire, nothing is re-delivered). Returns the number of new events."""
        cid = conversation.nonce if isinstance(conversation, Broadcast) else conversation
        legacy = self.members.is_legacy(peer.id) or self.caller.is_legacy(peer.address, peer.port)
        new = 0
        after: str | None = None
        for _ in range(100_000):  # bounded: 50 million events
            kwargs: dict[str, Any] = {"since": since}
            if not legacy:
                kwargs.update(limit=SYNC_PAGE, after=after)
            reply = await self.caller.call(peer.address, peer.port, SYNC_ENDPOINT, [cid], kwargs)
            if not isinstance(reply, dict) or not isinstance(reply.get("events"), list):
                where = format_address(peer.address, peer.port)
                raise ProtocolError(f"invalid sync answer from {where}")
            for data in reply["events"]:
                try:
                    event = ConversationEvent.from_dict(data)
                    if event.conversation_id != cid:
                        continue
                    if await self.remember(event):
                        new += 1
                except (ProtocolError, RemoteError) as exc:
                    log.debug("skipping a synced event: %s", exc)
            if legacy or not reply.get("more"):
                return new
            after = reply.get("next")
            if not isinstance(after, str):
                return new
        return new

    async def _anti_entropy(self, interval: float) -> None:
        """Compare digests with one random peer: soon after start (a restarted or late node
        catches up), then every ``ANTI_ENTROPY_ROUNDS`` heartbeat intervals (delivery is
        direct; this is only the backstop for what a peer missed)."""
        delay = min(interval, 1.0)
        while True:
            await anyio.sleep(delay)
            delay = interval * ANTI_ENTROPY_ROUNDS
            ours = self.members.neighbors()
            if not ours:
                delay = interval  # nobody to ask yet: try again soon
                continue
            peer = self._rng.choice(ours)
            try:
                with anyio.fail_after(self.config.call_timeout):
                    theirs = await self.caller.call(
                        peer.address, peer.port, DIGEST_ENDPOINT, [], {}
                    )
                    for cid in stale_conversations(self._digest(), theirs):
                        await self.sync(peer, cid)
            except (SynapseError, OSError, TimeoutError, ValueError) as exc:
                log.debug("anti-entropy with %s:%s failed: %s", peer.address, peer.port, exc)

    # -- compaction and retention -------------------------------------------------------------

    async def compact(
        self, cid: str, *, keep_recent: int | None = None
    ) -> ConversationEvent | None:
        keep = self.config.conversation_keep_recent if keep_recent is None else keep_recent
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
            raise ValueError("keep_recent must be an int >= 0")
        plan = plan_compaction(self.log.events(cid), keep)
        if not plan.fold:
            return None
        summarizer = self._summarizer() or _default_summarizer()
        text = await summarizer(plan.fold)
        summary = self.new_event(
            cid,
            random_id(),
            "summary",
            {
                "summary": str(text),
                "compacted_events": len(plan.fold),
                "from": plan.fold[0].created_at,
                "until": plan.fold[-1].created_at,
            },
            parent_id=plan.head.event_id if plan.head is not None else None,
            created_at=plan.fold[-1].created_at,
        )
        self.trust.accepted(summary)
        await self.log.compact(cid, [e.event_id for e in plan.fold], summary)
        self.hub.publish(ConversationCompacted(summary))
        return summary

    async def _auto_compact(self, cid: str) -> None:
        try:
            await self.compact(cid)
        except Exception:
            log.exception("compacting conversation %s failed", cid)
        finally:
            self._compacting.discard(cid)

    async def _prune(self, cid: str) -> None:
        self._active.pop(cid, None)
        self.admission.forgot(cid)
        self.trust.bury(cid, self.log.last_activity(cid))
        await self.log.prune(cid)
        self.book.drop(cid)
        self.hub.publish(ConversationPruned(cid))

    async def _retention_loop(self, retention: float) -> None:
        while True:
            await anyio.sleep(min(60.0, max(0.05, retention / 4)))
            horizon = self._now() - retention
            for cid in expired_conversations(
                self.log.conversations(), self.log.last_activity, horizon
            ):
                await self._prune(cid)

    # -- running ------------------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as tg:
            self.delivery.attach(tg)  # its senders in this group: no task of its own
            self._task_group = tg
            try:
                if self.members.views is not None:
                    self.tree.start()
                    start_soon(tg, self.tree.run)
                if self.config.conversation_retention is not None:
                    tg.start_soon(self._retention_loop, self.config.conversation_retention)
                task_status.started()
                # in this task: none of its own
                await self._anti_entropy(self.config.heartbeat_interval or 5.0)
            finally:
                # Under trio the group takes no new task once this body and its tasks are
                # done, before anyio marks it inactive: nothing may try from here.
                self.delivery.detach()
                self._task_group = None


def _default_summarizer() -> Summarizer:
    from ._summary import default_summarizer

    return default_summarizer
