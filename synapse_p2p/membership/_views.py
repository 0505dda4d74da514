"""HyParView partial views (Leitao, Pereira, Rodrigues, DSN 2007), sans-IO.

Each node keeps a small symmetric *active view* (the peers it holds connections to, about
``log2(N) + 2``, never more than :attr:`ViewConfig.active_max`) and a larger *passive view* of
records to repair it with. A joiner asks a contact (JOIN); the contact takes it into its active
view and starts random walks (FORWARD_JOIN, ``arwl`` hops) that end in other nodes' active
views and, at ``prwl`` hops to go, in passive views. When an active neighbor fails, a record
from the passive view is asked to become one (NEIGHBOR, high priority when the view is empty).
SHUFFLE random walks exchange samples so passive views stay fresh and random.

Eclipse resistance: every active slot is tagged by how the peer got in. *Joined* peers came in
from the network (JOIN, FORWARD_JOIN, NEIGHBOR from them); *chosen* peers we picked ourselves
(seeds, passive promotions). Joined peers take at most ``active_max - reserved_slots`` slots
(a full quota evicts a random joined peer, never a chosen one), chosen peers are topped up to
``reserved_slots``, and each host (and, if configured, each subnet) has a bounded number of
slots in both views. One identity flooding joins from one host thus holds at most
``max_active_per_host`` of our active slots and never our reserved ones.

Use: call :meth:`HyParView.join` with a contact, feed every received message to
:meth:`HyParView.handle`, call :meth:`HyParView.tick` about every ``tick_interval`` and
:meth:`HyParView.on_connection_failed` when a connection to a peer breaks; carry out the
returned actions (see :mod:`._records`). Nothing here raises on bad input from peers: a
message that breaks a rule is ignored (and counted in :attr:`HyParView.ignored`).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from ._records import (
    Action,
    Connect,
    Disconnect,
    NeighborDown,
    NeighborUp,
    PeerRecord,
    Send,
    Verifier,
    host_key,
    subnet_key,
)
from ._views_wire import (
    DisconnectMessage,
    ForwardJoin,
    Join,
    Neighbor,
    NeighborReply,
    Shuffle,
    ShuffleReply,
    ViewMessage,
)

__all__ = ["HyParView", "ViewConfig"]


@dataclass(frozen=True, slots=True)
class ViewConfig:
    """HyParView parameters; defaults follow the paper (``arwl=6``, ``prwl=3``, ``ka=3``,
    ``kp=4``) with the active size tracking ``log2(N) + 2`` between ``active_min`` and the hard
    cap ``active_max``."""

    active_min: int = 4
    active_max: int = 16
    accept_slack: int = 2  # NEIGHBOR requests accepted up to target + slack (under-filled nodes)
    passive_max: int = 48
    arwl: int = 6  # active random walk length (FORWARD_JOIN hops)
    prwl: int = 3  # FORWARD_JOIN hop count at which the joiner enters passive views
    shuffle_interval: float = 10.0
    shuffle_ttl: int = 4
    shuffle_active: int = 3  # ka: active records in a SHUFFLE
    shuffle_passive: int = 4  # kp: passive records in a SHUFFLE
    neighbor_timeout: float = 2.0  # a NEIGHBOR/JOIN unanswered this long counts as refused
    max_requests: int = 2  # NEIGHBOR requests of our own outstanding at once (paced repair)
    join_quiet: float = 0.5  # after our JOIN was accepted, no repair this long (walks arrive)
    reserved_slots: int = 2  # active slots kept for peers we chose (seeds, passive promotions)
    max_active_per_host: int | None = 2
    max_active_per_subnet: int | None = None
    max_passive_per_host: int | None = 4

    def target(self, size_estimate: int) -> int:
        """The active view size aimed at for a swarm of about ``size_estimate`` nodes."""
        want = math.ceil(math.log2(max(size_estimate, 2))) + 2
        # at most the cap less the slack: a view at its target then still takes a node short
        # of its own without evicting a neighbor (with the target at the cap, every request
        # past it evicts one, whose owner asks again: views never settle)
        ceiling = max(self.active_min, self.active_max - self.accept_slack)
        return max(self.active_min, min(ceiling, want))


@dataclass(slots=True)
class _Slot:
    record: PeerRecord
    chosen: bool  # we picked it (seed, passive promotion) rather than it joining us


@dataclass(slots=True)
class _Pending:
    record: PeerRecord
    deadline: float
    chosen: bool


@dataclass
class HyParView:
    """One node's active and passive views; see the module documentation."""

    record: PeerRecord
    config: ViewConfig = field(default_factory=ViewConfig)
    seed: int | None = None
    verify: Verifier | None = None
    #: Neighbors a SHUFFLE walk (sent or passed on) goes to first, at random, if any (a live
    #: driver's links it holds a connection to: a hop then opens none); ``None``: any.
    prefer: Callable[[PeerRecord], bool] | None = None
    active: dict[str, _Slot] = field(default_factory=dict)
    passive: dict[str, PeerRecord] = field(default_factory=dict)
    pending: dict[str, _Pending] = field(default_factory=dict)
    size_estimate: int = 0  # the driver may set this from the failure detector's member count
    ignored: int = 0
    requests: int = 0  # JOIN and NEIGHBOR requests sent
    evictions: int = 0  # active neighbors dropped to make room
    #: The generator of the core's choices, instead of one of its own seeded by ``seed``
    #: (which it then does not use): a live driver passes its node's, so that a node does
    #: not carry 2.5 KiB of generator state more.
    rng: random.Random | None = field(default=None, repr=False, compare=False)
    _contacts: list[PeerRecord] = field(default_factory=list)
    _joining: str | None = None  # the contact our JOIN is waiting on
    _quiet_until: float = -math.inf  # after a JOIN: the walks bring neighbors, no repair yet
    _refused: bool = False  # our last NEIGHBOR request was refused
    _next_shuffle: float = math.nan
    _last_shuffle: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self._rng = self.rng if self.rng is not None else random.Random(self.seed)

    # -- queries -------------------------------------------------------------------------------

    def neighbors(self) -> list[PeerRecord]:
        return [slot.record for slot in self.active.values()]

    @property
    def joining(self) -> str | None:
        """The contact a JOIN of ours waits on, if any."""
        return self._joining

    def target(self) -> int:
        known = len(self.active) + len(self.passive) + 1
        return self.config.target(max(self.size_estimate, known))

    def idle_until(self, now: float) -> float:
        """Until when :meth:`tick` has nothing to do unless a message comes or the driver
        changes something (``offer``, ``remove``, ``size_estimate``...): the next shuffle while
        no request is pending, no JOIN is under way and the view holds its target or has no
        passive record it may ask (the per-host and subnet bounds; else ``now``: tick on). A
        driver may tick less often while idle."""
        if self.pending or self._joining is not None or now < self._quiet_until:
            return now
        if not self.active and self._contacts:
            return now
        chosen = sum(1 for s in self.active.values() if s.chosen)
        short = self.target() > len(self.active) or self.config.reserved_slots > chosen
        if short and any(self._fits(r, chosen=True) for r in self.passive.values()):
            return now  # (someone _fill would ask)
        return now if math.isnan(self._next_shuffle) else max(now, self._next_shuffle)

    # -- driver entry points -------------------------------------------------------------------

    def join(self, now: float, contacts: list[PeerRecord]) -> list[Action]:
        """Join through ``contacts`` (seeds); the first answers, the rest are tried on timeout."""
        self._contacts = [c for c in contacts if c.id != self.record.id]
        return self._ask_contact(now)

    def offer(self, record: PeerRecord, *, evict: bool = False) -> None:
        """A record learned elsewhere (the failure detector): kept in the passive view if room,
        or with ``evict`` in place of a random passive record (a driver that offers every
        member with probability ``passive_max / members`` keeps a uniform sample)."""
        if evict or len(self.passive) < self.config.passive_max:
            self._add_passive(record, evict=evict)

    def remove(self, now: float, peer_id: str) -> list[Action]:
        """``peer_id`` is gone (declared dead or left): forget it and repair."""
        self.passive.pop(peer_id, None)
        return self.on_connection_failed(now, peer_id)

    def on_connection_failed(self, now: float, peer_id: str) -> list[Action]:
        """The connection to ``peer_id`` broke: drop it from the active view and repair (a
        lost neighbor at once; a request that failed at the next tick, so an overloaded
        swarm is not sent more requests for every one that timed out)."""
        actions: list[Action] = []
        slot = self.active.pop(peer_id, None)
        if slot is not None:
            actions += [NeighborDown(slot.record), Disconnect(slot.record)]
        self.passive.pop(peer_id, None)
        self.pending.pop(peer_id, None)
        if peer_id == self._joining:
            self._joining = None
        if slot is not None:
            actions += self._fill(now)
        return actions

    def tick(self, now: float) -> list[Action]:
        """Expire unanswered requests, top the active view up, shuffle when it is time."""
        actions: list[Action] = []
        for peer_id, pending in list(self.pending.items()):
            if pending.deadline <= now:
                del self.pending[peer_id]
                if peer_id == self._joining:
                    self._joining = None
                self.passive.pop(peer_id, None)
                if peer_id not in self.active:
                    actions.append(Disconnect(pending.record))
        if self._joining is not None and self._joining not in self.pending:
            self._joining = None  # its request was settled another way (it sent us NEIGHBOR)
        if not self.active and not self.pending and self._contacts and not self.passive:
            actions += self._ask_contact(now)
        actions += self._fill(now)
        if math.isnan(self._next_shuffle):
            self._next_shuffle = now + self._rng.uniform(0.5, 1.0) * self.config.shuffle_interval
        elif now >= self._next_shuffle and self.active:
            self._next_shuffle = now + self.config.shuffle_interval
            actions += self._start_shuffle()
        return actions

    def handle(self, now: float, from_id: str, message: ViewMessage) -> list[Action]:
        """React to ``message`` from the authenticated peer ``from_id``."""
        if from_id == self.record.id:
            self.ignored += 1
            return []
        if isinstance(message, Join | Neighbor | NeighborReply) and (
            message.record.id != from_id or not self._believable(message.record)
        ):
            self.ignored += 1
            return []
        if isinstance(message, Join):
            return self._on_join(now, message.record)
        if isinstance(message, ForwardJoin):
            return self._on_forward_join(now, from_id, message)
        if isinstance(message, Neighbor):
            return self._on_neighbor(now, message)
        if isinstance(message, NeighborReply):
            return self._on_neighbor_reply(now, message)
        if isinstance(message, DisconnectMessage):
            return self._on_disconnect(now, from_id)
        if isinstance(message, Shuffle):
            return self._on_shuffle(from_id, message)
        self._merge(message.records, self._last_shuffle)
        return []

    # -- message handlers ----------------------------------------------------------------------

    def _on_join(self, now: float, record: PeerRecord) -> list[Action]:
        """The contact takes the joiner while it has room (``target + accept_slack``: a
        contact of many simultaneous joiners does not evict a neighbor for each) and starts
        a walk through each of its other neighbors either way."""
        actions: list[Action] = []
        if record.id in self.active or len(self.active) < self._room():
            actions += self._add_active(record, chosen=False, room=self._room())
        else:
            self._add_passive(record, evict=True)
        accepted = record.id in self.active
        actions.append(Send(record, NeighborReply(self.record, accepted=accepted)))
        walk = ForwardJoin(record, self.config.arwl)
        actions += [Send(s.record, walk) for i, s in self.active.items() if i != record.id]
        return actions

    def _on_forward_join(self, now: float, from_id: str, message: ForwardJoin) -> list[Action]:
        """A walk ends here, in our active view, at ttl 0 or at a node with one neighbor (as
        in the paper: past ``target + accept_slack`` a neighbor is evicted), or early at a
        node short of its target: a swarm started at once fills its views with few
        evictions."""
        record = message.record
        if record.id == self.record.id or not self._believable(record):
            self.ignored += 1
            return []
        if message.ttl == 0 or len(self.active) <= 1 or len(self.active) < self.target():
            if record.id in self.active or record.id in self.pending:
                return []
            if not self._fits(record, chosen=False):
                self.ignored += 1
                return []
            self.pending[record.id] = _Pending(record, now + self.config.neighbor_timeout, False)
            self.requests += 1
            return [Connect(record), Send(record, Neighbor(self.record, high=True))]
        if message.ttl == self.config.prwl:
            self._add_passive(record, evict=True)
        others = [s.record for i, s in self.active.items() if i not in (from_id, record.id)]
        if not others:
            return []
        return [Send(self._rng.choice(others), ForwardJoin(record, message.ttl - 1))]

    def _on_neighbor(self, now: float, message: Neighbor) -> list[Action]:
        record = message.record
        if record.id in self.active:
            self.active[record.id].record = _newer(self.active[record.id].record, record)
            return [Send(record, NeighborReply(self.record, accepted=True))]
        room = self._room()
        if not message.high and len(self.active) >= room:
            self._add_passive(record, evict=True)
            return [Send(record, NeighborReply(self.record, accepted=False))]
        # High priority is always taken, evicting only past the room.
        actions = self._add_active(record, chosen=False, room=room)
        accepted = record.id in self.active
        if accepted:
            self.pending.pop(record.id, None)
        actions.append(Send(record, NeighborReply(self.record, accepted=accepted)))
        return actions

    def _on_neighbor_reply(self, now: float, message: NeighborReply) -> list[Action]:
        record = message.record
        pending = self.pending.pop(record.id, None)
        if record.id == self._joining:
            self._joining = None
            if message.accepted:  # the contact's walks are on their way: let them arrive
                self._quiet_until = now + self.config.join_quiet
        actions: list[Action] = []
        if pending is not None:
            self._refused = not message.accepted
        if not message.accepted:
            if record.id not in self.active:
                actions.append(Disconnect(record))
        elif record.id not in self.active:
            if pending is None:  # an answer we did not ask for (or gave up on): decline
                return [Send(record, DisconnectMessage())]
            actions += self._add_active(record, chosen=pending.chosen, room=self._room())
            if record.id not in self.active:
                actions.append(Send(record, DisconnectMessage()))
        if pending is not None and message.accepted:  # the next request, if still short
            actions += self._fill(now)  # (after a refusal: at the next tick, paced)
        return actions

    def _on_disconnect(self, now: float, from_id: str) -> list[Action]:
        slot = self.active.pop(from_id, None)
        if slot is None:
            return []
        self._add_passive(slot.record, evict=True)
        return [NeighborDown(slot.record), Disconnect(slot.record), *self._fill(now)]

    def _on_shuffle(self, from_id: str, message: Shuffle) -> list[Action]:
        origin = message.origin
        if origin.id == self.record.id or not self._believable(origin):
            self.ignored += 1
            return []
        ttl = message.ttl - 1
        others = [s.record for i, s in self.active.items() if i not in (from_id, origin.id)]
        if ttl > 0 and others:
            forward = Shuffle(origin, ttl, message.records)
            return [Send(self._walk_to(others), forward)]
        sample = self._sample(list(self.passive.values()), len(message.records))
        self._merge((origin, *message.records), tuple(r.id for r in sample))
        return [Send(origin, ShuffleReply(tuple(sample)))]

    # -- view maintenance ----------------------------------------------------------------------

    def _ask_contact(self, now: float) -> list[Action]:
        while self._contacts:
            contact = self._contacts.pop(0)
            self._contacts.append(contact)
            if contact.id in self.pending:
                return []
            deadline = now + self.config.neighbor_timeout
            self.pending[contact.id] = _Pending(contact, deadline, chosen=True)
            self._joining = contact.id
            self.requests += 1
            return [Connect(contact), Send(contact, Join(self.record))]
        return []

    def _fill(self, now: float) -> list[Action]:
        """Ask passive records to become neighbors while the view is short of its target (or
        of chosen peers), paced: at most ``max_requests`` requests outstanding, one at a time
        at high priority (see below), none while a JOIN is answered or its walks may still be
        arriving."""
        if self._joining is not None or now < self._quiet_until:
            return []
        actions: list[Action] = []
        chosen = sum(1 for s in self.active.values() if s.chosen)
        missing = max(self.target() - len(self.active), self.config.reserved_slots - chosen)
        # High priority (taken even by a full view) when we have no neighbor, or are short of
        # the target and were just refused: views full at target + slack otherwise lock a
        # late joiner out. One such request at a time.
        high = not self.active or (self._refused and len(self.active) < self.target())
        budget = min(missing, 1 if high else self.config.max_requests) - len(self.pending)
        if budget <= 0:
            return []
        candidates = [r for i, r in self.passive.items() if i not in self.pending]
        self._rng.shuffle(candidates)
        for record in candidates:
            if budget <= 0:
                break
            if not self._fits(record, chosen=True):
                continue
            budget -= 1
            deadline = now + self.config.neighbor_timeout
            self.pending[record.id] = _Pending(record, deadline, chosen=True)
            self.requests += 1
            actions += [Connect(record), Send(record, Neighbor(self.record, high=high))]
        return actions

    def _room(self) -> int:
        """Active neighbors taken without evicting one: the target plus ``accept_slack``."""
        return min(self.config.active_max, self.target() + self.config.accept_slack)

    def _fits(self, record: PeerRecord, *, chosen: bool) -> bool:
        """Whether ``record`` may take an active slot under the per-host/subnet bounds."""
        cfg = self.config
        slots = [s.record for i, s in self.active.items() if i != record.id]
        if cfg.max_active_per_host is not None:
            host = host_key(record.address)
            if sum(1 for r in slots if host_key(r.address) == host) >= cfg.max_active_per_host:
                return False
        if cfg.max_active_per_subnet is not None:
            net = subnet_key(record.address)
            same = sum(1 for r in slots if subnet_key(r.address) == net)
            if same >= cfg.max_active_per_subnet:
                return False
        return True

    def _add_active(
        self, record: PeerRecord, *, chosen: bool, room: int | None = None
    ) -> list[Action]:
        if record.id == self.record.id:
            return []
        if record.id in self.active:
            self.active[record.id].record = _newer(self.active[record.id].record, record)
            return []
        if not self._fits(record, chosen=chosen):
            self.ignored += 1
            return []
        actions: list[Action] = []
        cfg = self.config
        joined = [i for i, s in self.active.items() if not s.chosen]
        cap = min(cfg.active_max, max(room or self.target(), 1))
        if not chosen and len(joined) >= cfg.active_max - cfg.reserved_slots:
            actions += self._evict(self._rng.choice(joined))
        while len(self.active) >= cap:
            pool = [i for i, s in self.active.items() if not s.chosen]
            spare = sum(1 for s in self.active.values() if s.chosen) > cfg.reserved_slots
            if not pool and (chosen or spare):
                pool = list(self.active)
            if not pool:
                self.ignored += 1
                return actions  # the reserved slots never yield to a joiner
            actions += self._evict(self._rng.choice(pool))
        self.passive.pop(record.id, None)
        self.active[record.id] = _Slot(record, chosen)
        actions += [Connect(record), NeighborUp(record)]
        return actions

    def _evict(self, peer_id: str) -> list[Action]:
        self.evictions += 1
        slot = self.active.pop(peer_id)
        self._add_passive(slot.record, evict=True)
        return [
            Send(slot.record, DisconnectMessage()),
            NeighborDown(slot.record),
            Disconnect(slot.record),
        ]

    def _add_passive(self, record: PeerRecord, *, evict: bool, avoid: tuple[str, ...] = ()) -> None:
        if record.id == self.record.id or record.id in self.active:
            return
        known = self.passive.get(record.id)
        if known is not None:
            self.passive[record.id] = _newer(known, record)
            return
        cfg = self.config
        if cfg.max_passive_per_host is not None:
            host = host_key(record.address)
            same = sum(1 for r in self.passive.values() if host_key(r.address) == host)
            if same >= cfg.max_passive_per_host:
                return
        if len(self.passive) >= cfg.passive_max:
            if not evict:
                return
            preferred = [i for i in avoid if i in self.passive and i not in self.pending]
            pool = preferred or [i for i in self.passive if i not in self.pending]
            if not pool:
                return
            del self.passive[self._rng.choice(pool)]
        self.passive[record.id] = record

    def _merge(self, records: tuple[PeerRecord, ...], avoid: tuple[str, ...]) -> None:
        for record in records:
            if self._believable(record):
                self._add_passive(record, evict=True, avoid=avoid)

    def _start_shuffle(self) -> list[Action]:
        cfg = self.config
        active = self._sample(self.neighbors(), cfg.shuffle_active)
        passive = self._sample(list(self.passive.values()), cfg.shuffle_passive)
        records = tuple(active + passive)
        self._last_shuffle = tuple(r.id for r in passive)
        target = self._walk_to(self.neighbors())
        return [Send(target, Shuffle(self.record, cfg.shuffle_ttl, records))]

    def _walk_to(self, records: list[PeerRecord]) -> PeerRecord:
        """A random neighbor of ``records`` for a walk's next hop (see :attr:`prefer`)."""
        prefer = self.prefer
        if prefer is not None:
            preferred = [r for r in records if prefer(r)]
            if preferred:
                records = preferred
        return self._rng.choice(records)

    def _sample(self, records: list[PeerRecord], k: int) -> list[PeerRecord]:
        return self._rng.sample(records, min(k, len(records)))

    def _believable(self, record: PeerRecord) -> bool:
        return record.id != self.record.id and (self.verify is None or self.verify(record))


def _newer(old: PeerRecord, new: PeerRecord) -> PeerRecord:
    return new if new.seq > old.seq else old
