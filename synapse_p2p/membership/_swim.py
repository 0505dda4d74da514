"""SWIM failure detection with Lifeguard, sans-IO.

SWIM (Das, Gupta, Motivala, DSN 2002) as memberlist runs it, with Lifeguard (Dadgar et al.,
2018):

- **Probes.** Every ``probe_interval`` one member is pinged, in randomized round-robin order.
  No ack within ``probe_timeout``: ``indirect_checks`` other members are asked to ping it
  (PING_REQ) and relay the ack, or a NACK if they got none (Lifeguard).
- **Suspicion.** A failed probe makes the target *suspect* at its current incarnation. A live
  member that hears it is suspected refutes with a higher incarnation (``record.seq``). A
  suspicion times out into *dead* after ``max(min, max - (max - min) * log(C + 1) / log(K + 1))``
  where ``min = suspicion_mult * log10(N) * probe_interval``, ``max = suspicion_max_mult * min``,
  ``C`` counts independent suspecters heard and ``K = suspicion_mult - 2`` (Lifeguard's dynamic
  suspicion: the more nodes agree, the sooner it is declared).
- **Local health.** A node that misses acks or nacks, or has to refute suspicion of itself,
  raises its health score (0 is healthy, up to ``awareness_max - 1``); probe interval and
  timeout scale by ``score + 1``, so a slow node probes less and waits longer before it
  accuses anyone.
- **Dissemination.** Changes (alive, suspect, dead/left deltas) ride on probe messages and on
  gossip sent every ``gossip_interval`` to ``gossip_nodes`` members; each delta is sent at
  most ``retransmit_mult * ceil(log10(N + 1))`` times, fewest-sent first (memberlist's
  transmit-limited queue). A newer delta about a member replaces the queued one.
- **Repair.** Rarely (``push_pull_interval``, scaled linearly past ``push_pull_scale`` members
  so the bytes per node stay flat in N) a full-state PUSH_PULL with one random member; a
  joiner does one with its contact.
- **Over the views** (``neighbors``): a driver whose messages ride TCP connections can give
  the core the HyParView active view; probes, indirect-probe relays, gossip and push-pulls
  then go to live members among those neighbors only, so they reuse the view's connections.
  Every member is still probed (by its own neighbors: the active view is symmetric), and deltas
  still reach everyone (the views are connected). Only an indirect probe's relay may reach a
  target outside its own view, and a reconnect attempt goes to a dead member.
- **Tombstones.** Dead and left members stay as tombstones with their incarnation for
  ``dead_retention`` seconds, so stale alive gossip cannot bring them back; only a higher
  incarnation (a restart or refutation) can.

A reply to a sender this node does not know is addressed to ``PeerRecord(from_id, "", 0)``: the
driver sends it back on the channel the request came from. Bad deltas (unverifiable records)
are ignored and counted in :attr:`Swim.ignored`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Literal

from ._records import Action, MemberDown, MemberUp, PeerRecord, Send, Verifier
from ._swim_wire import (
    Ack,
    Alive,
    Dead,
    Delta,
    Gossip,
    Nack,
    Ping,
    PingReq,
    PushPull,
    Suspect,
    SwimMessage,
)

__all__ = ["Swim", "SwimConfig"]

State = Literal["alive", "suspect", "dead", "left"]


@dataclass(frozen=True, slots=True)
class SwimConfig:
    """SWIM/Lifeguard parameters. memberlist's LAN profile probes every 1 s with a 500 ms
    timeout and suspicion multiplier 4; a swarm on a LAN or one site can afford twice the probe
    rate, which halves detection time (a crash known everywhere within 10 s at N=1,000)."""

    probe_interval: float = 0.5
    probe_timeout: float = 0.2
    indirect_checks: int = 3
    suspicion_mult: int = 4
    suspicion_max_mult: int = 6
    retransmit_mult: int = 4
    gossip_interval: float = 0.2
    gossip_nodes: int = 3
    max_piggyback: int = 256  # deltas per message (TCP frames, not 1,400-byte UDP packets)
    push_pull_interval: float = 30.0
    push_pull_scale: int = 128
    join_sync: tuple[float, ...] = (0.5, 1.5)  # extra push-pulls this long after joining
    awareness_max: int = 8
    dead_retention: float = 120.0
    reconnect_interval: float = 10.0  # a push-pull to a random dead member (heals partitions)
    max_members: int = 65536


@dataclass(slots=True)
class _Member:
    record: PeerRecord
    state: State
    since: float
    suspecters: set[str] = field(default_factory=set)

    @property
    def incarnation(self) -> int:
        return self.record.seq


@dataclass(slots=True)
class _Probe:
    seq: int
    target: PeerRecord
    deadline: float
    indirect: bool = False
    nacks_expected: int = 0
    nacks: int = 0


@dataclass(slots=True)
class _Relay:
    requester: str
    seq: int
    deadline: float


class Swim:
    """One node's failure detector and member list; see the module documentation."""

    def __init__(
        self,
        record: PeerRecord,
        config: SwimConfig | None = None,
        *,
        seed: int | None = None,
        verify: Verifier | None = None,
        neighbors: Callable[[], Iterable[str]] | None = None,
    ) -> None:
        self.record = record
        self.config = config or SwimConfig()
        self.verify = verify
        #: With ``neighbors`` (the ids of the HyParView active view), probes, indirect-probe
        #: relays, gossip and push-pulls go only to those of them that are live members: a
        #: driver over TCP then needs no connection beyond the view's (see the module doc).
        self.neighbors = neighbors
        self.members: dict[str, _Member] = {}
        self.health = 0
        self.ignored = 0
        self.left = False
        self._rng = random.Random(seed)
        self._seq = 0
        self._probe: _Probe | None = None
        self._relays: dict[int, _Relay] = {}
        self._order: list[str] = []
        self._next_probe = math.nan
        self._next_gossip = math.nan
        self._last_push_pull = math.nan
        self._push_pull_phase = 1.0
        self._syncs: list[float] = []
        self._contacts: list[PeerRecord] = []
        self._answers = 0  # push-pull answers received (to the join and the join syncs)
        self._next_reconnect = math.nan
        # transmit-limited queue: bucket i holds deltas sent i times, keyed by member id
        self._queue: list[dict[str, Delta]] = []
        self._queued_at: dict[str, int] = {}
        self._ids: list[str] = []  # every member id, for O(1) random picks
        self._index: dict[str, int] = {}
        self._suspects: set[str] = set()
        self._gone: set[str] = set()  # dead or left (tombstones)

    # -- queries -------------------------------------------------------------------------------

    def alive_members(self) -> list[PeerRecord]:
        return [m.record for m in self.members.values() if m.state in ("alive", "suspect")]

    def state_of(self, peer_id: str) -> State | None:
        member = self.members.get(peer_id)
        return None if member is None else member.state

    def size(self) -> int:
        return 1 + len(self.members) - len(self._gone)

    def next_wakeup(self) -> float:
        """The earliest time :meth:`tick` has something to do."""
        times = [self._next_push_pull(), *self._syncs[:1]]
        times.append(self._probe.deadline if self._probe is not None else self._next_probe)
        if self._queued_at:
            times.append(self._next_gossip)
        if self._gone:
            times.append(self._next_reconnect)
        times += [r.deadline for r in self._relays.values()]
        times += [self._suspicion_deadline(self.members[i]) for i in self._suspects]
        return min((t for t in times if not math.isnan(t)), default=math.inf)

    # -- driver entry points -------------------------------------------------------------------

    def join(self, now: float, contacts: list[PeerRecord]) -> list[Action]:
        """Announce ourselves and pull the whole state from the first contact."""
        self._enqueue(Alive(self.record))
        self._start_timers(now)
        self._syncs = [now + delay for delay in self.config.join_sync]
        self._contacts = [c for c in contacts if c.id != self.record.id]
        state = (Alive(self.record),)
        return [
            Send(c, PushPull(state, reply=True)) for c in contacts[:1] if c.id != self.record.id
        ]

    def leave(self, now: float) -> list[Action]:
        """Announce a graceful leave to ``2 * gossip_nodes`` members; stop probing."""
        self.left = True
        dead = Dead(self.record.id, self.record.seq, self.record.id)
        picks = self._random_members(2 * self.config.gossip_nodes)
        return [Send(p, Gossip((dead,))) for p in picks]

    def unreachable(self, now: float, peer_id: str) -> list[Action]:
        """The driver's connection to member ``peer_id`` failed (a view link broke): like a
        failed probe, the member becomes suspect at its incarnation (it refutes if alive).
        Over the views this is how a crashed member is noticed: its neighbors drop it from
        their active views, so nobody would probe it again."""
        member = self.members.get(peer_id)
        if self.left or member is None or member.state not in ("alive", "suspect"):
            return []
        return self._declare(now, Suspect(peer_id, member.incarnation, self.record.id))

    def tick(self, now: float) -> list[Action]:
        if self.left:
            return []
        if math.isnan(self._next_probe):
            self._start_timers(now)
            self._last_push_pull = now
        actions: list[Action] = []
        actions += self._tick_probe(now)
        for seq, relay in list(self._relays.items()):
            if relay.deadline <= now:
                del self._relays[seq]
                actions.append(Send(self._record_of(relay.requester), Nack(relay.seq)))
        for peer_id in list(self._suspects):
            member = self.members[peer_id]
            if self._suspicion_deadline(member) <= now:
                dead = Dead(peer_id, member.incarnation, self.record.id)
                actions += self._declare(now, dead)
        for peer_id in list(self._gone):
            if now - self.members[peer_id].since > self.config.dead_retention:
                self._forget(peer_id)
        if now >= self._next_gossip:
            self._next_gossip = now + self.config.gossip_interval
            actions += self._gossip()
        if self._syncs and now >= self._syncs[0]:
            self._syncs.pop(0)
            peers = self._random_members(1)
            if not self._answers and self._contacts:  # our join (or its answer) was lost
                peers = [self._contacts[len(self._syncs) % len(self._contacts)]]
            if not self._syncs and self._answers <= len(self.config.join_sync):
                self._syncs.append(now + self.config.join_sync[-1])  # until enough answers
            for peer in peers:
                actions.append(Send(peer, PushPull(self._state(), reply=True)))
        if self._gone and now >= self._next_reconnect:
            self._next_reconnect = now + self.config.reconnect_interval
            gone = self.members[self._rng.choice(sorted(self._gone))]
            if gone.state == "dead":
                actions.append(Send(gone.record, PushPull(self._state(), reply=True)))
        if now >= self._next_push_pull():
            self._last_push_pull = now
            self._push_pull_phase = self._rng.uniform(0.5, 1.5)
            for peer in self._random_members(1):
                actions.append(Send(peer, PushPull(self._state(), reply=True)))
        return actions

    def handle(self, now: float, from_id: str, message: SwimMessage) -> list[Action]:
        """React to ``message`` from the authenticated peer ``from_id``."""
        if self.left or from_id == self.record.id:
            return []
        actions: list[Action] = []
        if isinstance(message, PushPull):
            for delta in message.state:
                if isinstance(delta, Dead) and delta.by != delta.id:
                    # memberlist's rule: another node's "dead" only makes us suspect (so a
                    # healed partition does not kill the members we can still reach)
                    delta = Suspect(delta.id, delta.incarnation, from_id)
                actions += self._apply(now, delta)
            self._answers += not message.reply
            if message.reply:
                actions.append(Send(self._record_of(from_id), PushPull(self._state(), reply=False)))
            return actions
        for delta in message.gossip if not isinstance(message, Nack) else ():
            actions += self._apply(now, delta)
        if isinstance(message, Ping):
            if message.target == self.record.id:
                actions.append(Send(self._record_of(from_id), Ack(message.seq, self._piggyback())))
        elif isinstance(message, Ack):
            actions += self._on_ack(now, message.seq)
        elif isinstance(message, Nack):
            if self._probe is not None and self._probe.seq == message.seq:
                self._probe.nacks += 1
        elif isinstance(message, PingReq):
            self._seq += 1
            deadline = now + self.config.probe_timeout * (self.health + 1)
            self._relays[self._seq] = _Relay(from_id, message.seq, deadline)
            actions.append(
                Send(message.target, Ping(self._seq, message.target.id, self._piggyback()))
            )
        return actions

    # -- probing -------------------------------------------------------------------------------

    def _start_timers(self, now: float) -> None:
        cfg = self.config
        self._next_probe = now + self._rng.uniform(0, cfg.probe_interval)
        self._next_gossip = now + self._rng.uniform(0, cfg.gossip_interval)
        self._last_push_pull = now
        self._push_pull_phase = self._rng.uniform(0.5, 1.5)
        self._next_reconnect = now + self._rng.uniform(0.5, 1.5) * cfg.reconnect_interval

    def _next_push_pull(self) -> float:
        """Push-pull period scaled with the current size, so bytes per node stay flat in N."""
        cfg = self.config
        period = cfg.push_pull_interval * max(1.0, self.size() / cfg.push_pull_scale)
        return self._last_push_pull + self._push_pull_phase * period

    def _tick_probe(self, now: float) -> list[Action]:
        cfg, probe = self.config, self._probe
        scale = self.health + 1
        if probe is not None and now >= probe.deadline:
            if not probe.indirect:
                probe.indirect = True
                probe.deadline = now + (cfg.probe_interval - cfg.probe_timeout) * scale
                relays = self._random_members(cfg.indirect_checks, exclude=probe.target.id)
                probe.nacks_expected = len(relays)
                request = PingReq(probe.seq, probe.target, self._piggyback())
                return [Send(r, request) for r in relays]
            self._probe = None
            missed = probe.nacks < probe.nacks_expected
            self._set_health(self.health + (2 if missed else 1))
            member = self.members.get(probe.target.id)
            if member is not None and member.state in ("alive", "suspect"):
                # failing to reach a suspect too confirms the others' suspicion (Lifeguard)
                suspect = Suspect(member.record.id, member.incarnation, self.record.id)
                return self._declare(now, suspect)
            return []
        if probe is not None or now < self._next_probe:
            return []
        self._next_probe = now + cfg.probe_interval * scale
        target = self._next_target()
        if target is None:
            return []
        self._seq += 1
        self._probe = _Probe(self._seq, target, now + cfg.probe_timeout * scale)
        return [Send(target, Ping(self._seq, target.id, self._piggyback()))]

    def _next_target(self) -> PeerRecord | None:
        """The next member to probe: randomized round-robin over the members (with
        :attr:`neighbors`, over those that are still neighbors), reshuffled each pass."""
        listed = None if self.neighbors is None else list(self.neighbors())
        among = None if listed is None else set(listed)
        for _ in range(2):
            while self._order:
                peer_id = self._order.pop()
                member = self.members.get(peer_id)
                if (
                    member is not None
                    and member.state in ("alive", "suspect")
                    and (among is None or peer_id in among)
                ):
                    return member.record
            self._order = [
                i
                for i in (self.members if listed is None else listed)
                if i in self.members and self.members[i].state in ("alive", "suspect")
            ]
            self._rng.shuffle(self._order)
        return None

    def _on_ack(self, now: float, seq: int) -> list[Action]:
        relay = self._relays.pop(seq, None)
        if relay is not None:
            return [Send(self._record_of(relay.requester), Ack(relay.seq))]
        if self._probe is not None and self._probe.seq == seq:
            self._probe = None
            self._set_health(self.health - 1)
        return []

    def _set_health(self, value: int) -> None:
        self.health = max(0, min(self.config.awareness_max - 1, value))

    # -- membership state ----------------------------------------------------------------------

    def _suspicion_deadline(self, member: _Member) -> float:
        cfg = self.config
        n = max(self.size(), 1)
        low = cfg.suspicion_mult * max(1.0, math.log10(n)) * cfg.probe_interval
        high = cfg.suspicion_max_mult * low
        k = max(cfg.suspicion_mult - 2, 1)
        confirmations = max(len(member.suspecters) - 1, 0)
        timeout = high - (high - low) * math.log(confirmations + 1) / math.log(k + 1)
        return member.since + max(low, timeout)

    def _apply(self, now: float, delta: Delta) -> list[Action]:
        if isinstance(delta, Alive):
            known = self.members.get(delta.record.id)
            if known is not None and delta.record.seq <= known.record.seq:
                return []  # the common case in a busy swarm: old news
            if delta.record.id == self.record.id:
                return []
            if self.verify is not None and not self.verify(delta.record):
                self.ignored += 1
                return []
        elif delta.id == self.record.id:
            if isinstance(delta, Dead) and delta.by == self.record.id:
                return []
            if delta.incarnation >= self.record.seq:  # refute: a higher incarnation of us
                self.record = replace(self.record, seq=delta.incarnation + 1)
                self._set_health(self.health + 1)
                self._enqueue(Alive(self.record))
            return []
        return self._declare(now, delta)

    def _declare(self, now: float, delta: Delta) -> list[Action]:
        """Apply a delta about another member (ours or heard); queue it on if it is news."""
        member = self.members.get(delta.id)
        if isinstance(delta, Alive):
            record = delta.record
            if member is None:
                if len(self.members) >= self.config.max_members:
                    return []
                self.members[record.id] = _Member(record, "alive", now)
                self._index[record.id] = len(self._ids)
                self._ids.append(record.id)
                # memberlist: a new member goes to a random place in this round's probe order
                self._order.insert(self._rng.randint(0, len(self._order)), record.id)
                self._enqueue(delta)
                return [MemberUp(record)]
            if record.seq <= member.incarnation:
                return []
            was = member.state
            member.record, member.state, member.since = record, "alive", now
            member.suspecters.clear()
            self._suspects.discard(record.id)
            self._gone.discard(record.id)
            self._enqueue(delta)
            return [MemberUp(record)] if was in ("dead", "left") else []
        if member is None or delta.incarnation < member.incarnation:
            return []
        if member.state in ("dead", "left"):
            return []
        if isinstance(delta, Suspect):
            if member.state == "suspect" and delta.incarnation == member.incarnation:
                if delta.by not in member.suspecters:
                    member.suspecters.add(delta.by)
                    self._enqueue(delta)
                return []
            member.state, member.since, member.suspecters = "suspect", now, {delta.by}
            self._suspects.add(delta.id)
            if delta.incarnation > member.incarnation:
                member.record = replace(member.record, seq=delta.incarnation)
            self._enqueue(delta)
            return []
        member.state = "left" if delta.by == delta.id else "dead"
        member.since = now
        self._suspects.discard(delta.id)
        self._gone.add(delta.id)
        if delta.incarnation > member.incarnation:
            member.record = replace(member.record, seq=delta.incarnation)
        self._enqueue(delta)
        return [MemberDown(member.record, "left" if member.state == "left" else "dead")]

    def _state(self) -> tuple[Delta, ...]:
        state: list[Delta] = [Alive(self.record)]
        for m in self.members.values():
            if m.state == "alive":
                state.append(Alive(m.record))
            elif m.state == "suspect":
                state += [Alive(replace(m.record, seq=max(m.incarnation - 1, 0)))]
                state.append(Suspect(m.record.id, m.incarnation, self.record.id))
            else:
                by = m.record.id if m.state == "left" else self.record.id
                state.append(Dead(m.record.id, m.incarnation, by))
        return tuple(state)

    def _forget(self, peer_id: str) -> None:
        del self.members[peer_id]
        self._gone.discard(peer_id)
        index = self._index.pop(peer_id)
        last = self._ids.pop()
        if last != peer_id:
            self._ids[index] = last
            self._index[last] = index

    def _random_members(
        self, k: int, *, exclude: str = "", suspects: bool = False
    ) -> list[PeerRecord]:
        """Up to ``k`` distinct random live members (suspects too if asked), by rejection;
        with :attr:`neighbors`, among those only."""
        if self.neighbors is not None:
            return self._random_neighbors(k, exclude, suspects)
        picked: dict[str, PeerRecord] = {}
        ids = self._ids
        for _ in range(4 * k + 8):
            if len(picked) >= k or not ids:
                break
            member = self.members[ids[self._rng.randrange(len(ids))]]
            ok = member.state == "alive" or (suspects and member.state == "suspect")
            if ok and member.record.id != exclude:
                picked[member.record.id] = member.record
        return list(picked.values())

    def _random_neighbors(self, k: int, exclude: str, suspects: bool) -> list[PeerRecord]:
        assert self.neighbors is not None
        states = ("alive", "suspect") if suspects else ("alive",)
        pool = []
        for peer_id in self.neighbors():
            member = self.members.get(peer_id)
            if member is not None and member.state in states and peer_id != exclude:
                pool.append(member.record)
        if len(pool) <= k:
            return pool
        return self._rng.sample(pool, k)

    def _record_of(self, peer_id: str) -> PeerRecord:
        member = self.members.get(peer_id)
        return member.record if member is not None else PeerRecord(peer_id, "", 0)

    # -- the transmit-limited queue ------------------------------------------------------------

    def _enqueue(self, delta: Delta) -> None:
        old = self._queued_at.pop(delta.id, None)
        if old is not None:
            self._queue[old].pop(delta.id, None)
        if not self._queue:
            self._queue.append({})
        self._queue[0][delta.id] = delta
        self._queued_at[delta.id] = 0

    def _transmit_limit(self) -> int:
        return self.config.retransmit_mult * math.ceil(math.log10(self.size() + 1))

    def _piggyback(self) -> tuple[Delta, ...]:
        """Up to ``max_piggyback`` queued deltas, fewest-sent first; each counts one send."""
        taken: list[Delta] = []
        limit = self._transmit_limit()
        room = self.config.max_piggyback
        moves: list[tuple[int, str, Delta]] = []
        for count, bucket in enumerate(self._queue):
            for key, delta in bucket.items():
                taken.append(delta)
                moves.append((count, key, delta))
                if len(taken) >= room:
                    break
            if len(taken) >= room:
                break
        for count, key, delta in moves:
            del self._queue[count][key]
            if count + 1 >= limit:
                del self._queued_at[key]
                continue
            if count + 1 >= len(self._queue):
                self._queue.append({})
            self._queue[count + 1][key] = delta
            self._queued_at[key] = count + 1
        while self._queue and not self._queue[-1]:
            self._queue.pop()
        return tuple(taken)

    def _gossip(self) -> list[Action]:
        if not self._queued_at:
            return []
        cfg = self.config
        actions: list[Action] = []
        for target in self._random_members(cfg.gossip_nodes, suspects=True):
            deltas = self._piggyback()
            if not deltas:
                break
            actions.append(Send(target, Gossip(deltas)))
        return actions
