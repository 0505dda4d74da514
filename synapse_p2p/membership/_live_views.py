"""Live partial views: the HyParView core (:mod:`._views`) driven over RPC.

With ``Node(partial_views=True)`` a node keeps a small *active view* of members and decides
from it (a) whom it gossips to each round and (b) which pooled connections it keeps: one
connection per active link, opened by the member with the lower id (which also starts that
link's gossip), every other connection closes when idle for the pool's
``brief_idle_timeout``. ``node.peers`` stays the whole swarm: members are still learned
through the digests that active neighbors exchange (see :class:`~._service.Membership`).

View messages travel as ``_synapse.views(message, record=...)``, never to a 2.5.0 peer:

* only over a secure channel: the sender is the caller's proven id (``connection.node_id``);
  a plaintext caller, or a JOIN/NEIGHBOR/NEIGHBOR_REPLY whose record names another id, is
  refused with ``bad_request`` (counted in ``trust.refused``);
* ``message`` is decoded by :func:`~._views_wire.decode_view_message` (bounded, validating);
* ``record`` is the sender's signed peer record, taken as a direct claim (the rules of
  :mod:`._trust`; an unknown sender is verified by dialing it, like a gossip sender);
* the core believes a record only if membership holds that member alive with a signed record
  at that address: views never admit anyone the peer table has not verified.

Members come into the passive view as membership verifies them (a uniform sample, see
:meth:`LiveViews.member_up`); the core's repair (NEIGHBOR to passive records) builds and
mends the active view, and its SHUFFLE walks keep the passive views mixed. Per-host slot
bounds (eclipse resistance) are the core's, turned off when this node's address is a
loopback address (a whole swarm on 127.0.0.1).

Sends to one peer leave in order from one task per busy peer (at most :data:`OUTBOX`
queued; beyond that a message is dropped and counted, the core's timeouts repair it). A send
that fails tells the core the connection failed.
"""

from __future__ import annotations

import ipaddress
import logging
import random
from collections import Counter, deque
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskGroup

from ..errors import BAD_REQUEST, ProtocolError, RemoteError, SynapseError
from ..types import Peer
from ._gossip import digest_entry
from ._records import (
    Connect,
    Disconnect,
    NeighborDown,
    NeighborUp,
    PeerRecord,
    Send,
    WireMessage,
)
from ._views import HyParView, ViewConfig
from ._views_wire import (
    ForwardJoin,
    Join,
    Neighbor,
    NeighborReply,
    Shuffle,
    ShuffleReply,
    ViewMessage,
    decode_view_message,
)

if TYPE_CHECKING:
    from ..rpc import Connection, EndpointRegistry
    from ._records import Action
    from ._service import Membership

__all__ = ["BATCH", "DEFERRED", "OUTBOX", "VIEWS_ENDPOINT", "LiveViews"]

log = logging.getLogger(__name__)

#: Our extension (never called on 2.5.0 peers): one HyParView message per call.
VIEWS_ENDPOINT = "_synapse.views"
#: Seconds between the core's ticks (timeouts, repair, shuffles).
VIEW_TICK = 1.0
#: View messages queued per peer at most.
OUTBOX = 32
#: Seconds a NEIGHBOR/JOIN waits for its answer: under the 5 s a view call may take (a loaded
#: swarm answers late, and an answer after the request was given up is declined, churn).
LIVE_NEIGHBOR_TIMEOUT = 4.0
#: View messages waiting at once, at most, for their sender (or a walk's joiner) to be
#: verified here.
DEFERRED = 256
#: Most view messages one call carries (queued messages to one peer leave together).
BATCH = 16
#: Most view messages a call's answer carries back (the receiver's answers to the caller).
MAX_REPLIES = 32
#: Most signed records (``members``) one call carries.
MAX_MEMBERS = 128


class LiveViews:
    """Drives one :class:`~._views.HyParView` for the :class:`~._service.Membership` that owns
    it; see the module documentation. :meth:`start` builds a fresh core, :meth:`run` ticks it
    and owns the send tasks until cancelled (cancelling drops queued messages)."""

    def __init__(
        self, membership: Membership, rng: random.Random, config: ViewConfig | None = None
    ) -> None:
        self._m = membership
        self._rng = rng
        self._config = config
        self.core: HyParView | None = None
        self._outbox: dict[str, deque[tuple[dict[str, Any], list[dict[str, Any]]]]] = {}
        #: id awaiting verification -> set when it is verified (:meth:`member_up`).
        self._awaited: dict[str, anyio.Event] = {}
        self._waiters: Counter[str] = Counter()  # messages waiting, by the id awaited
        self._waiting = 0
        self._tg: TaskGroup | None = None
        self._retained: frozenset[tuple[str, int]] | None = None
        #: Members that answered that they serve no view endpoint (not in views).
        self.unsupported: set[str] = set()
        self.sent = 0
        self.received = 0
        self.failed = 0
        self.dropped = 0
        #: View messages sent, by kind (``hv.neighbor``, ...).
        self.sent_kinds: Counter[str] = Counter()
        #: View messages that waited for a member to be verified (``deferred``), and how
        #: that ended: ``verified``, ``gave_up`` (not within the core's
        #: ``neighbor_timeout``), or not waited for (``overflow``, past :data:`DEFERRED`).
        self.deferrals: Counter[str] = Counter()
        #: View messages that rode a call's answer back (``answered``, ``taken``).
        self.inline: Counter[str] = Counter()

    # -- queries ------------------------------------------------------------------------------

    def view_config(self) -> ViewConfig:
        """The core's settings: the given ones, else the defaults with
        :data:`LIVE_NEIGHBOR_TIMEOUT` and, on a loopback address, the per-host bounds off."""
        if self._config is not None:
            return self._config
        try:
            loopback = ipaddress.ip_address(self._m.local.address).is_loopback
        except ValueError:
            loopback = self._m.local.address == "localhost"
        if loopback:
            return ViewConfig(
                neighbor_timeout=LIVE_NEIGHBOR_TIMEOUT,
                max_active_per_host=None,
                max_passive_per_host=None,
            )
        return ViewConfig(neighbor_timeout=LIVE_NEIGHBOR_TIMEOUT)

    def active_ids(self) -> list[str]:
        return [] if self.core is None else list(self.core.active)

    def owned(self) -> list[str]:
        """Active neighbors whose link this node keeps open and gossips over (lower id)."""
        me = self._m.local.node_id
        return [i for i in self.active_ids() if me < i]

    def in_views(self, node_id: str) -> bool:
        """Whether member ``node_id`` can take part in views (signed, not 2.5.0, serves
        the endpoint)."""
        state = self._m.table.get(node_id)
        return (
            state is not None
            and state.proof is not None
            and not state.legacy
            and node_id not in self.unsupported
        )

    def _believable(self, record: PeerRecord) -> bool:
        state = self._m.table.get(record.id)
        return (
            state is not None
            and state.alive
            and self.in_views(record.id)
            and state.peer.address == record.address
            and state.peer.port == record.port
        )

    def _record_of(self, peer: Peer) -> PeerRecord:
        state = self._m.table.get(peer.id)
        seq = 0 if state is None or state.proof is None else state.proof.seq
        return PeerRecord(peer.id, peer.address, peer.port, peer.name, (), seq)

    def _self_record(self) -> PeerRecord:
        m = self._m
        proof = m._proof()
        local = m.local
        return PeerRecord(local.node_id, local.address, local.port, local.name, (),
                          0 if proof is None else proof.seq)  # fmt: skip

    # -- membership glue ----------------------------------------------------------------------

    def member_up(self, node_id: str) -> None:
        """A member was verified (new, back or moved): into the passive view, replacing a
        random record with probability ``passive_max / members`` once it is full."""
        core = self.core
        state = self._m.table.get(node_id)
        if core is None or state is None or not self.in_views(node_id):
            return
        alive = max(1, len(self._m.table.alive()))
        evict = self._rng.random() < core.config.passive_max / alive
        core.offer(self._record_of(state.peer), evict=evict)
        awaited = self._awaited.pop(node_id, None)
        if awaited is not None:
            awaited.set()

    def seeded(self, seed_id: str) -> None:
        """Seed ``seed_id`` answered our ``_synapse.join`` (it holds our signed record): with
        an empty active view and no JOIN outstanding, send it a HyParView JOIN, whose random
        walks (FORWARD_JOIN) spread this node over random members' views."""
        core = self.core
        state = self._m.table.get(seed_id)
        if core is None or state is None or not self.in_views(seed_id) or core.active:
            return
        if core.joining is None:
            self.apply(core.join(self._m._now(), [self._record_of(state.peer)]))

    def member_down(self, node_id: str) -> None:
        """A member went offline or left: out of both views, repaired from the passive."""
        if self.core is not None:
            self.apply(self.core.remove(self._m._now(), node_id))

    # -- running ------------------------------------------------------------------------------

    def start(self) -> None:
        """A fresh core (before the membership tasks start)."""
        self.core = HyParView(
            self._self_record(),
            self.view_config(),
            seed=self._rng.randrange(2**32),
            verify=self._believable,
        )
        self._outbox.clear()
        self.unsupported.clear()
        self._retained = None
        self.sent = self.received = self.failed = self.dropped = 0
        self.sent_kinds.clear()
        self.deferrals.clear()
        self.inline.clear()
        for event in self._awaited.values():
            event.set()
        self._awaited.clear()
        for state in self._m.table.alive():
            self.member_up(state.peer.id)

    async def run(self) -> None:
        """Tick the core every :data:`VIEW_TICK` and carry out its actions, until
        cancelled; then connections are kept as before views (``retain(None)``)."""
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                while True:
                    self.tick()
                    await anyio.sleep(VIEW_TICK)
        finally:
            self._tg = None
            self._outbox.clear()
            self._m.caller.retain(None)

    def tick(self) -> None:
        core = self.core
        if core is None:
            return
        core.record = self._self_record()
        core.size_estimate = len(self._m.table.alive()) + 1
        self.apply(core.tick(self._m._now()))

    def apply(
        self, actions: list[Action], answer_to: str | None = None, room: int = MAX_REPLIES
    ) -> list[dict[str, Any]]:
        """Carry out the core's actions: sends, and the connections to keep. Messages to
        ``answer_to`` (the caller being served) are returned, to ride the call's answer,
        rather than sent on a connection of our own (at most ``room``)."""
        changed = False
        answers: list[dict[str, Any]] = []
        for action in actions:
            if isinstance(action, Send):
                if action.peer.id == answer_to and len(answers) < room:
                    answers.append(action.message.to_wire())
                    self.inline["answered"] += 1
                else:
                    self._send(action.peer, action.message)
            elif isinstance(action, NeighborUp | NeighborDown | Connect | Disconnect):
                changed = True
        if changed:
            self._retain()
        return answers

    def _retain(self) -> None:
        keep: set[tuple[str, int]] = set()
        for node_id in self.owned():
            state = self._m.table.get(node_id)
            if state is not None:
                keep.add((state.peer.address, state.peer.port))
        retained = frozenset(keep)
        if retained != self._retained:
            self._retained = retained
            self._m.caller.retain(retained)

    def _members(self, message: WireMessage, to: str) -> list[dict[str, Any]]:
        """Digest entries (signed records) of the members ``message`` names besides its
        sender and receiver: a walk's joiner, a shuffle's records. A receiver that trusts us
        takes them as it takes our gossip, so it can believe them at once."""
        if isinstance(message, ForwardJoin):
            named: tuple[PeerRecord, ...] = (message.record,)
        elif isinstance(message, Shuffle):
            named = (message.origin, *message.records)
        elif isinstance(message, ShuffleReply):
            named = message.records
        else:
            return []
        now = self._m._now()
        out = []
        for record in named:
            state = self._m.table.get(record.id)
            if record.id != to and state is not None and state.alive and state.proof is not None:
                out.append(digest_entry(state.peer, now - state.heard, state.legacy, state.proof))
        return out

    def _send(self, record: PeerRecord, message: WireMessage) -> None:
        if self._tg is None:
            return
        queue = self._outbox.get(record.id)
        if queue is None:
            state = self._m.table.get(record.id)
            peer = state.peer if state is not None else None
            address = (peer.address, peer.port) if peer else (record.address, record.port)
            if not address[0] or record.id == self._m.local.node_id:
                return
            queue = self._outbox[record.id] = deque()
            self._tg.start_soon(self._drain, record.id, address, queue)
        if len(queue) >= OUTBOX:
            self.dropped += 1
            return
        queue.append((message.to_wire(), self._members(message, record.id)))

    async def _drain(
        self,
        node_id: str,
        address: tuple[str, int],
        queue: deque[tuple[dict[str, Any], list[dict[str, Any]]]],
    ) -> None:
        m = self._m
        try:
            while queue:
                batch = [queue.popleft() for _ in range(min(len(queue), BATCH))]
                wires = [wire for wire, _ in batch]
                records: dict[str, dict[str, Any]] = {}
                for _, members in batch:
                    records.update((entry["id"], entry) for entry in members)
                self.sent += len(wires)
                for wire in wires:
                    self.sent_kinds[str(wire.get("k"))] += 1
                kwargs: dict[str, Any] = {"record": m._signed_record()}
                if records:
                    kwargs["members"] = list(records.values())[:MAX_MEMBERS]
                if len(wires) > 1:
                    kwargs["more"] = wires[1:]
                try:
                    answer = await m.caller.call(
                        address[0],
                        address[1],
                        VIEWS_ENDPOINT,
                        wires[:1],
                        kwargs,
                        timeout=min(m.config.call_timeout, 5.0),
                    )
                    if isinstance(answer, dict) and answer.get("replies"):
                        await self._take_answers(node_id, address, answer["replies"])
                except (SynapseError, OSError, RuntimeError) as exc:  # (not running: stopping)
                    if isinstance(exc, RemoteError) and "Unregistered endpoint" in exc.message:
                        self.unsupported.add(node_id)
                    log.debug("view message to %s failed: %s", node_id[:16], exc)
                    self.failed += 1
                    queue.clear()
                    if self.core is not None:
                        self.apply(self.core.on_connection_failed(m._now(), node_id))
                    return
        finally:
            if self._outbox.get(node_id) is queue:
                del self._outbox[node_id]

    async def _take_answers(self, node_id: str, address: tuple[str, int], answers: Any) -> None:
        """View messages that rode the answer of our call to ``node_id``: from that node
        only if the channel we called it on proved that id."""
        info = await self._m.caller.session_info(*address)
        if info.get("node_id") != node_id or not isinstance(answers, list):
            return
        for wire in answers[:MAX_REPLIES]:
            try:
                message = decode_view_message(wire)
            except ProtocolError as exc:
                log.debug("bad view answer from %s: %s", node_id[:16], exc)
                continue
            if self.core is None:
                return
            self.inline["taken"] += 1
            self.apply(self.core.handle(self._m._now(), node_id, message))

    # -- the endpoint -------------------------------------------------------------------------

    async def handle(
        self,
        message: Any,
        record: Any,
        connection: Connection | None,
        members: Any = None,
        more: Any = None,
    ) -> dict[str, Any]:
        """View messages from one caller (``message``, then those in ``more``, in order; see
        the module documentation for the rules); the core's answers to the caller ride the
        answer (``replies``)."""
        m = self._m
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
            if isinstance(decoded, Join | Neighbor | NeighborReply) and (
                decoded.record.id != caller_id
            ):
                m.trust.refuse(
                    "wrong_caller",
                    f"views: a message naming node {decoded.record.id[:16]} from node "
                    f"{caller_id[:16]}",
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
            if self.core is None:
                return {"ok": False}
            self.received += 1
            await self._verified(decoded)
            core = self.core
            actions = core.handle(m._now(), caller_id, decoded)
            answers += self.apply(actions, answer_to=caller_id, room=MAX_REPLIES - len(answers))
        return {"ok": True, "replies": answers} if answers else {"ok": True}

    async def _verified(self, message: ViewMessage) -> None:
        """Wait (at most the core's ``neighbor_timeout``) until the member ``message`` must
        name believably (its sender, or a walk's joiner) is verified here, if it is waiting to
        be verified (a candidate, or being dialed): the message is then handled, not ignored
        and asked again elsewhere. At most :data:`DEFERRED` messages wait at once."""
        if not isinstance(message, Join | Neighbor | NeighborReply | ForwardJoin):
            return
        subject = message.record
        if subject.id == self._m.local.node_id or self._believable(subject):
            return
        m = self._m
        if m.table.signed_candidate(subject.id) is None and subject.id not in m.verifier.checking:
            return  # nobody is verifying it: the core ignores the message
        core = self.core
        if core is None or self._waiting >= DEFERRED:
            self.deferrals["overflow"] += 1
            return
        event = self._awaited.get(subject.id)
        if event is None:
            event = self._awaited[subject.id] = anyio.Event()
        self.deferrals["deferred"] += 1
        self._waiting += 1
        self._waiters[subject.id] += 1
        try:
            with anyio.move_on_after(core.config.neighbor_timeout):
                await event.wait()
        finally:
            self._waiting -= 1
            self._waiters[subject.id] -= 1
            if not self._waiters[subject.id]:
                del self._waiters[subject.id]
                if self._awaited.get(subject.id) is event:
                    del self._awaited[subject.id]
        self.deferrals["verified" if self._believable(subject) else "gave_up"] += 1


def register_views(views: LiveViews, registry: EndpointRegistry) -> None:
    """Serve ``_synapse.views`` for ``views`` on ``registry`` (unpublished)."""

    async def handler(
        message: Any,
        record: Any = None,
        members: Any = None,
        more: Any = None,
        connection: Connection | None = None,
    ) -> dict[str, Any]:
        return await views.handle(message, record, connection, members, more)

    registry.add(handler, VIEWS_ENDPOINT, publish=False)
