"""Live partial views: the HyParView core (:mod:`._views`) driven over RPC.

With ``Node(partial_views=True)`` a node keeps a small *active view* of members and decides
from it (a) whom it gossips to each round and (b) which pooled connections it keeps: one
connection per active link, opened by the member with the lower id (which also starts that
link's gossip), every other connection closes when idle for the pool's
``brief_idle_timeout``. ``node.peers`` stays the whole swarm: members are still learned
through the digests that active neighbors exchange (see :class:`~._service.Membership`).

View messages travel as ``_synapse.views`` calls (the endpoint and its rules are in
:mod:`._views_endpoint`), never to a 2.5.0 peer, only over a secure channel; the core
believes a record only if membership holds that member alive with a signed record at that
address: views never admit anyone the peer table has not verified.

A joiner sends the core's JOIN to the seed that answered its ``_synapse.join``
(:meth:`LiveViews.seeded`); the JOIN's FORWARD_JOIN walks spread joiners over the swarm.
Members come into the passive view as membership verifies them (a uniform sample, see
:meth:`LiveViews.member_up`); the core's paced repair (NEIGHBOR to passive records) builds
and mends the active view, and its SHUFFLE walks keep the passive views mixed. FORWARD_JOIN
and SHUFFLE messages carry the signed records of the members they name (``members``), so a
receiver that trusts us believes them at once. Per-host slot bounds (eclipse resistance) are
the core's, turned off when this node's address is a loopback address (a whole swarm on
127.0.0.1).

Sends to one peer leave in order from one task per busy peer, up to :data:`BATCH` per call
(at most :data:`OUTBOX` queued; beyond that a message is dropped and counted, the core's
timeouts repair it). The receiver's answers come back in the call's answer and are taken
only if the channel proved the callee's id. A send that fails tells the core the connection
failed.
"""

from __future__ import annotations

import ipaddress
import logging
import random
from collections import Counter, deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskGroup

from .._spawn import start_soon
from ..errors import ProtocolError, RemoteError, SynapseError
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
from ._views_endpoint import (
    BATCH,
    MAX_MEMBERS,
    MAX_REPLIES,
    VIEWS_ENDPOINT,
    VerificationWaits,
)
from ._views_wire import (
    ForwardJoin,
    Shuffle,
    ShuffleReply,
    decode_view_message,
)

if TYPE_CHECKING:
    from ._records import Action
    from ._service import Membership

__all__ = ["BATCH", "MAX_MEMBERS", "MAX_REPLIES", "OUTBOX", "VIEWS_ENDPOINT", "LiveViews"]

log = logging.getLogger(__name__)

#: Seconds between the core's ticks (timeouts, repair, shuffles) while it has work.
VIEW_TICK = 1.0
#: Seconds between ticks at most while the core is idle (``HyParView.idle_until``): a view
#: message, a member verified or lost wakes it sooner (at most one tick per ``VIEW_TICK``).
VIEW_IDLE_TICK = 10.0
#: View messages queued per peer at most.
OUTBOX = 32
#: Seconds a NEIGHBOR/JOIN waits for its answer: under the 5 s a view call may take (a loaded
#: swarm answers late, and an answer after the request was given up is declined, churn).
LIVE_NEIGHBOR_TIMEOUT = 4.0
#: Seconds between a node's SHUFFLE walks (the core's default is 10 s). Here the passive view
#: is also fed by membership (a uniform sample of the members verified, the dead removed at
#: once), so shuffles only mix it further; each walk hop and its reply over a link this node
#: does not own costs a connection and a handshake (about 25 a second at N=100 every 10 s;
#: every 60 s, 19 a second at N=200, three quarters of the connections an idle swarm opened).
LIVE_SHUFFLE_INTERVAL = 300.0


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
        #: View messages waiting for a member to be verified (:mod:`._views_endpoint`).
        self.waits = VerificationWaits()
        self._tg: TaskGroup | None = None
        self._poked: anyio.Event | None = None  # set: tick soon (see _rest)
        self._retained: frozenset[tuple[str, int]] | None = None
        self._also: dict[str, frozenset[str]] = {}  # keep_also: who asked -> neighbors
        self._closing = False
        #: Members that answered that they serve no view endpoint (not in views).
        self.unsupported: set[str] = set()
        self.sent = 0
        self.received = 0
        self.failed = 0
        #: Of :attr:`failed`, the sends that got no answer in time (a busy or gone callee).
        self.timed_out = 0
        self.dropped = 0
        #: View messages sent, by kind (``hv.neighbor``, ...).
        self.sent_kinds: Counter[str] = Counter()
        #: View messages that rode a call's answer back (``answered``, ``taken``).
        self.inline: Counter[str] = Counter()

    # -- queries ------------------------------------------------------------------------------

    def view_config(self) -> ViewConfig:
        """The core's settings: the given ones, else the defaults with
        :data:`LIVE_NEIGHBOR_TIMEOUT`, :data:`LIVE_SHUFFLE_INTERVAL` and, on a loopback
        address, the per-host bounds off."""
        if self._config is not None:
            return self._config
        try:
            loopback = ipaddress.ip_address(self._m.local.address).is_loopback
        except ValueError:
            loopback = self._m.local.address == "localhost"
        if loopback:
            return ViewConfig(
                neighbor_timeout=LIVE_NEIGHBOR_TIMEOUT,
                shuffle_interval=LIVE_SHUFFLE_INTERVAL,
                max_active_per_host=None,
                max_passive_per_host=None,
            )
        return ViewConfig(
            neighbor_timeout=LIVE_NEIGHBOR_TIMEOUT, shuffle_interval=LIVE_SHUFFLE_INTERVAL
        )

    @property
    def deferrals(self) -> Counter[str]:
        """See :attr:`._views_endpoint.VerificationWaits.counts`."""
        return self.waits.counts

    def active_ids(self) -> list[str]:
        return [] if self.core is None else list(self.core.active)

    def owned(self) -> list[str]:
        """Active neighbors whose link this node keeps open and gossips over (lower id)."""
        me = self._m.local.node_id
        return [i for i in self.active_ids() if me < i]

    def is_active(self, node_id: str) -> bool:
        """Whether ``node_id`` is an active neighbor (a link this node watches)."""
        return self.core is not None and node_id in self.core.active

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

    @property
    def membership(self) -> Membership:
        """The :class:`~._service.Membership` this driver belongs to."""
        return self._m

    def believable(self, record: PeerRecord) -> bool:
        """The core's ``verify``: ``record`` names a member held alive, signed, in views, at
        that address."""
        return self._believable(record)

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
        alive = max(1, len(self._m.peers))
        evict = self._rng.random() < core.config.passive_max / alive
        core.offer(self._record_of(state.peer), evict=evict)
        self.waits.verified(node_id)
        self._poke()  # (the size estimate, and so the target, may have grown)

    def seeded(self, seed_id: str) -> None:
        """Seed ``seed_id`` answered our ``_synapse.join`` (it holds our signed record): with
        an empty active view and no JOIN outstanding, send it a HyParView JOIN, whose random
        walks (FORWARD_JOIN) spread this node over random members' views."""
        core = self.core
        state = self._m.table.get(seed_id)
        if core is None or state is None or not self.in_views(seed_id) or core.active:
            return
        if core.joining is None:
            self._m.joining_views()
            self.apply(core.join(self._m._now(), [self._record_of(state.peer)]))

    def member_down(self, node_id: str) -> None:
        """A member went offline or left: out of both views, repaired from the passive."""
        if self.core is not None:
            self.apply(self.core.remove(self._m._now(), node_id))

    # -- running ------------------------------------------------------------------------------

    def _connected(self, record: PeerRecord) -> bool:
        """Whether this node holds a connection to ``record``'s address (a SHUFFLE walk's hop
        there opens none: on a link the neighbor opened, it would open a second)."""
        return self._m.caller.connected(record.address, record.port)

    def start(self) -> None:
        """A fresh core (before the membership tasks start)."""
        self.core = HyParView(
            self._self_record(),
            self.view_config(),
            rng=self._rng,
            verify=self._believable,
            prefer=self._connected,
        )
        self._outbox.clear()
        self._closing = False
        self.unsupported.clear()
        self._retained = None
        self._also = {}
        self.sent = self.received = self.failed = self.timed_out = self.dropped = 0
        self.sent_kinds.clear()
        self.inline.clear()
        self.waits.reset()
        for state in self._m.table.alive():
            self.member_up(state.peer.id)

    async def run(self) -> None:
        """Tick the core every :data:`VIEW_TICK` and carry out its actions, until
        cancelled; then connections are kept as before views (``retain(None)``)."""
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                try:
                    while True:
                        self.tick()
                        await self._rest()
                finally:
                    self._closing = True  # no new sends while the group winds down
        finally:
            self._tg = None
            self._outbox.clear()
            self._m.caller.retain(None)

    async def _rest(self) -> None:
        """Until the next tick: ``VIEW_TICK``, or while the core is idle until it has work
        (at most ``VIEW_IDLE_TICK``; :meth:`_poke` wakes it earlier, not before ``VIEW_TICK``
        after the last tick)."""
        tick = anyio.current_time()
        core = self.core
        wait = VIEW_TICK
        if core is not None:
            now = self._m._now()
            wait = max(VIEW_TICK, min(core.idle_until(now) - now, VIEW_IDLE_TICK))
        if wait > VIEW_TICK:
            self._poked = anyio.Event()
            with anyio.move_on_after(wait):
                await self._poked.wait()
            self._poked = None
        await anyio.sleep_until(tick + VIEW_TICK)  # (no-op if that passed)

    def moved(self) -> None:
        """This node advertises another address: the core's own record says it at once (an
        idle core is ticked only every ``VIEW_IDLE_TICK``)."""
        if self.core is not None:
            self.core.record = self._self_record()
        self._poke()

    def _poke(self) -> None:
        """The core may have work (a message, a member up or down): tick soon."""
        if self._poked is not None:
            self._poked.set()

    def tick(self) -> None:
        core = self.core
        if core is None:
            return
        core.record = self._self_record()
        core.size_estimate = len(self._m.peers) + 1
        self.apply(core.tick(self._m._now()))

    def apply(
        self, actions: list[Action], answer_to: str | None = None, room: int = MAX_REPLIES
    ) -> list[dict[str, Any]]:
        """Carry out the core's actions: sends, and the connections to keep. Messages to
        ``answer_to`` (the caller being served) are returned, to ride the call's answer,
        rather than sent on a connection of our own (at most ``room``)."""
        self._poke()
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
                if isinstance(action, NeighborUp):  # a new link is contact: watched from now
                    self._m.table.responded(action.peer.id, self._m._now())
                    self._m.neighbor_up(action.peer.id)
                elif isinstance(action, NeighborDown):
                    self._m.neighbor_down(action.peer.id)
                changed = True
        if changed:
            self._retain()
        return answers

    def keep_also(self, node_ids: Iterable[str], *, user: str = "tree") -> None:
        """Keep this node's own connections to these active neighbors open too, not only to
        the links it owns: links that carry pushes both ways (the broadcast tree's,
        conversations/_tree.py; the neighbors membership pushed news to lately, ``user``
        ``"news"``); a push against the link's owner would otherwise open a connection (a
        handshake) after every quiet spell. Each ``user`` names its own set (this replaces
        it); the connections kept are the union."""
        also = frozenset(node_ids)
        if also != self._also.get(user, frozenset()):
            self._also[user] = also
            self._retain()

    def _retain(self) -> None:
        keep: set[tuple[str, int]] = set()
        active = set(self.active_ids())
        also = set().union(*self._also.values())
        for node_id in [*self.owned(), *(i for i in also if i in active)]:
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
        if self._tg is None or self._closing:
            return
        queue = self._outbox.get(record.id)
        if queue is None:
            state = self._m.table.get(record.id)
            peer = state.peer if state is not None else None
            address = (peer.address, peer.port) if peer else (record.address, record.port)
            if not address[0] or record.id == self._m.local.node_id:
                return
            queue = deque()
            try:
                start_soon(self._tg, self._drain, record.id, address, queue)
            except RuntimeError:  # stopping: the task group takes no more
                return
            self._outbox[record.id] = queue
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
                    m.table.responded(node_id, m._now())
                    m.health = max(0, m.health - 1)
                    if isinstance(answer, dict) and answer.get("replies"):
                        await self._take_answers(node_id, address, answer["replies"])
                except (SynapseError, OSError, RuntimeError) as exc:  # (not running: stopping)
                    if isinstance(exc, RemoteError) and "Unregistered endpoint" in exc.message:
                        self.unsupported.add(node_id)
                    log.debug("view message to %s failed: %s", node_id[:16], exc)
                    self.failed += 1
                    self.timed_out += isinstance(exc, TimeoutError)
                    queue.clear()
                    m.link_failed(node_id, exc)
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
