"""Membership driver: gossip rounds and the evidence they bring (endpoints in
:mod:`._endpoints`, address checks in :mod:`._verifier`, seeds in :mod:`._seeds`).

Wire behaviour towards synapse-p2p 2.5.0 peers is theirs exactly: ``_synapse.join(peer)`` and
``_synapse.heartbeat(peer)`` with 9-key peer dicts, and a heartbeat to each of them every
``heartbeat_interval`` (they drop peers silent for 20 s). Among our own nodes, each round sends
``_synapse.gossip`` to a few random peers only (``fanout``), carrying a digest of the members
the sender knows and how long ago each was last heard from directly; liveness spreads through
those digests, so a node's message rate does not grow with the swarm. A round's digest is
compact (``[id, seq, age]`` per member held signed, see :func:`._gossip.read_compact`): records
travel in full only to whoever lacks them. News of a member spreads at once: a node that
verifies a new member pushes it to its peers (with views, its active neighbors) right away.

Peer records are signed by their node (:mod:`._signing`) and weighed by :mod:`._trust`: a
member's address and descriptive fields change only through a newer record it signed, and
third-party gossip keeps a member alive only within ``3 * peer_timeout`` of its newest record
reaching us (nodes re-sign every ``peer_timeout / 2``). Towards 2.5.0 peers the 9-key dicts
are unchanged; the proof travels beside them (a ``record`` keyword to our join endpoint,
``records`` in the join reply) or inline in our own messages (gossip and its answer, digests,
goodbyes, ``_synapse.record``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import re
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
from anyio.abc import TaskGroup, TaskStatus

from .._hub import EventHub, PeerHeartbeat, PeerJoined, PeerLeft, PeerOffline
from .._random import SHARED
from .._spawn import start_soon
from .._validate import format_address
from ..errors import BAD_REQUEST, ConnectError, JoinError, ProtocolError, RemoteError, SynapseError
from ..secure import SecurityPolicy
from ..types import Peer
from ._endpoints import (
    GOSSIP_ENDPOINT,
    GOSSIP_VERSION,
    GRAFT_VERSION,
    LEAVE_ENDPOINT,
    PARTIAL_VERSION,
    SLIM_VERSION,
    SUMMARY_VERSION,
    register,
)
from ._gossip import (
    MAX_COMPACT,
    MAX_DIGEST,
    Claim,
    CompactReading,
    Heard,
    PartnerRotation,
    Refreshed,
    Rejected,
    Update,
    build_digest,
    compact_entry,
    digest_entry,
    read_compact,
    read_digest,
    sample_states,
)
from ._live_views import LiveViews
from ._members import Members, as_heard
from ._observed import AddressLearner
from ._seeds import SeedJoiner
from ._signing import (
    RECORD_ENDPOINT,
    MalformedProof,
    RecordProof,
    RecordSigner,
    node_running,
    proof_in,
)
from ._table import Census, PeerState, PeerTable, Verdict, same_address
from ._trust import Evidence, TrustGate
from ._verifier import AddressVerifier
from ._views_endpoint import register_views

if TYPE_CHECKING:
    from .._config import NodeConfig
    from .._seams import LocalNode, PeerCaller
    from ..rpc import Connection, EndpointRegistry

__all__ = [
    "GOSSIP_ENDPOINT",
    "LEAVE_ENDPOINT",
    "MAX_DIGEST",
    "RECORD_ENDPOINT",
    "JoinError",
    "Membership",
]

log = logging.getLogger(__name__)

#: How long a stopping node spends saying goodbye, at most.
LEAVE_GRACE = 0.5
#: With views, the chance per round of one extra gossip to a random member outside them
#: (it joins parts of the overlay that split), in a swarm of up to ``REPAIR_MEMBERS``
#: members; in a larger one ``REPAIR_CHANCE * REPAIR_MEMBERS / members``: the swarm makes
#: about four a round whatever its size, each a connection opened with a handshake at each
#: end (at N = 200, a third of the connections an idle swarm opened).
REPAIR_CHANCE = 0.1
REPAIR_MEMBERS = 40
#: Seconds between two pushes of news at most: first-hand news (``PUSH_GAP``), and with views
#: news relayed from a neighbor (``RELAY_GAP``: a starting swarm relays news all the time, in
#: batches).
PUSH_GAP = 0.05
RELAY_GAP = 0.5
#: With views, a neighbor that answered a push of news with ``lazy`` (it held every record
#: already: it had them from another neighbor) gets no pushes of news from this node for this
#: many heartbeat intervals; notices still go to it, and so do the rounds' compact digests,
#: which repair what it misses. News then flows along the first links to deliver it (a tree,
#: as in Plumtree), each node receiving each record about once, instead of from every
#: neighbor. A node whose active view loses a neighbor that pushed news to it, leaving fewer
#: than :data:`MIN_EAGER` such neighbors, asks the neighbors it told ``lazy`` to push to it
#: again at once (a probe with ``graft: true``, see :meth:`Membership.neighbor_down`); the
#: lapse re-tries every link all the same. Twelve rounds (tried) cut the pushes of a swarm
#: grown ten at a time by a third, but a push on a link after its lapse then found the
#: pusher's connection closed: half as many handshakes again, and no less CPU.
LAZY_ROUNDS = 2
#: Members that joined within this many rounds "joined lately": they come first in digests,
#: and between the digests of every member (see :data:`DIGEST_MEMBERS`) the rounds' digests
#: name them only (``partial``), so that a member some node missed while it was news is
#: found for a while yet, at a cost that follows the joins, not the swarm's size.
FRESH_ROUNDS = 6
#: With views, a node in its first :data:`FRESH_ROUNDS` rounds sends a round's digest at once to
#: its first this many new active neighbors: news pushed before it had a link (fellow joiners
#: of a swarm that grows by several at a time) never reached it, and the rounds' digests go
#: over the links each node owns, every ``heartbeat_interval``, so it would wait for its own
#: next round. What its neighbors learn afterwards reaches it pushed along the new link.
CATCH_UP_LINKS = 2
#: With views, this node keeps its own connection open to an active neighbor it pushed news
#: to in the last this many heartbeat intervals, even on a link the neighbor owns (see
#: :meth:`~._live_views.LiveViews.keep_also`): while the swarm changes, news goes both ways on
#: a link, and a push after the pool's brief idle timeout would open a connection (a handshake
#: at both ends) for each batch. A quiet swarm keeps one connection per link again.
KEEP_PUSHED_ROUNDS = 6
#: A node answers ``lazy`` only while at least this many other active neighbors still push
#: news to it: two neighbors whose pushes cross (each one's batch first for some record)
#: would otherwise both be pruned, cutting the node off the tree until the lapse.
MIN_EAGER = 2
#: Gossip partners whose wanted records (see :meth:`Membership._owe`) are remembered at most.
MAX_OWED = 64
#: Death (and suspicion) notices one gossip message carries at most (more wait for the next
#: push).
MAX_DEAD = 256
#: With views, a round's gossip over the links carries a compact digest once every
#: ``ceil(members / DIGEST_MEMBERS)`` rounds (and in the others, while members joined lately, a
#: digest of those only): the other rounds only probe the links, so a round's cost does not
#: grow with the swarm, nor with a swarm that keeps growing.
DIGEST_MEMBERS = 32
#: A quiet node (see :meth:`Membership._quiet`) sends a summary of its records in place of
#: a round's whole digest, but every ``SUMMARY_WHOLE``-th whole digest goes whole all the
#: same: two different sets of records with one summary (a collision, which members choosing
#: their ids and ``seq``s could seek) delay the swarm's repair at most that many digests.
SUMMARY_WHOLE = 4
#: A partner that answered a summary ``differ`` gets whole digests for this many of our
#: whole-digest rounds: a difference that lasts (a member one of us holds dead, a partner
#: not quiet) costs a summary and a digest only now and then, not every time.
DIFFER_DIGESTS = 4
#: With views, the owner of a link probes it once it has not heard from the neighbor, or
#: not called it, for this fraction of ``peer_timeout`` (``PROBE_OWNED``); the other end
#: probes only past ``PROBE_AFTER`` (it is called by the owner: a call of its own would open
#: a second connection), and so does a node watching a member whose call failed.
PROBE_OWNED = 0.3
PROBE_AFTER = 0.5
#: With views (SWIM's suspicion): a watched member silent for ``(1 - SUSPECT_SHARE) *
#: peer_timeout`` is suspected, and the suspicion is told to the neighbors (each relays it
#: once, the member hears it and refutes it with a new record); unrefuted for ``SUSPECT_SHARE
#: * peer_timeout * max(1, log10(members))`` (longer on a larger swarm, where news travels
#: further) it is dead. Both are multiplied by ``1 + health``.
SUSPECT_SHARE = 0.25
#: With views, the node's health score (Lifeguard's local health) at most: +1 for each call of
#: ours that failed without an answer (timed out, connection lost), -1 for each answered. The
#: silence before a suspicion and the suspicion's time are multiplied by ``1 + score``, and a
#: node suspects nobody until the score is back at 0: a node too busy to hear its neighbors in
#: time accuses them later, or not at all.
HEALTH_MAX = 8
#: With views: the rounds waking this many seconds later than due is a stall of this node's
#: own (a long collection, a paused machine, a loop too busy to keep time). Nothing could be
#: heard meanwhile, so a stall counts neither as a member's silence nor toward a suspicion's
#: time, and the health score goes up by 1 (see :meth:`Membership._woke`).
STALL_MIN = 0.5
#: Stalls remembered apart, to take them out of silences; past it the two oldest are merged
#: into one (as if one stall had ended with the later: a silence that began between them is
#: then credited a little more than its stalls, never less).
STALLS_KEPT = 64


class Membership:
    """Owns the node's view of its members (:attr:`peers`); see the module documentation.

    Built from the node's settings (``config``), its own record (``local``), the endpoint
    registry it serves ``_synapse.join``/``heartbeat``/``gossip`` on, a ``caller`` to reach
    peers and the ``hub`` it publishes ``PeerJoined``/``PeerHeartbeat``/``PeerOffline`` to.
    ``policy`` is the node's :class:`~synapse_p2p.secure.SecurityPolicy` (which ids were seen
    verified on a channel). Each :meth:`run` starts from an empty table.
    """

    def __init__(
        self,
        config: NodeConfig,
        local: LocalNode,
        *,
        registry: EndpointRegistry,
        caller: PeerCaller,
        hub: EventHub,
        verify_concurrency: int = 8,
        rng: random.Random | None = None,
        policy: SecurityPolicy | None = None,
    ) -> None:
        self.config = config
        #: The record rules and their counters (``trust.refused``).
        self.trust = TrustGate(
            secured=config.secured,
            policy=policy if policy is not None else SecurityPolicy(config.keyring),
            clock=lambda: self._now(),
        )
        self._signer = (
            None
            if local.identity is None
            else RecordSigner(
                local.identity, wall_clock=config.wall_clock, refresh=config.peer_timeout / 2
            )
        )
        self.local = local
        self.caller = caller
        self.hub = hub
        self.fanout = config.gossip_fanout
        self._peers: dict[str, Peer] = {}
        #: The verified, alive members by id (a read-only live view; ``last_seen``: the
        #: latest news of the member's life, :mod:`._members`).
        self._members = Members(self._peers, lambda: self.table, config.wall_clock)
        self.peers: Mapping[str, Peer] = self._members
        #: The same members as held (a read-only live mapping; ``last_seen``: when the record
        #: was first taken in this process, see :meth:`PeerState.hold`): for going over the
        #: members where ``last_seen`` does not matter, without a copy made for each (see
        #: :mod:`._members`).
        self.records: Mapping[str, Peer] = self._peers
        self.table = self._new_table()
        #: Learns the address to advertise from peers, if auto-detection found none
        #: (:mod:`._observed`).
        self.addresses = AddressLearner(advertise=config.advertise, bind=config.bind)
        #: Checks claimed members' addresses (:mod:`._verifier`).
        self.verifier = AddressVerifier(self, verify_concurrency)
        #: Joins the seeds (:mod:`._seeds`).
        self.seeds = SeedJoiner(self)
        self._rng = rng or SHARED
        self._rotation = PartnerRotation(self._rng)
        self._view_rotation = PartnerRotation(self._rng)
        #: The live partial views (``config.partial_views``), else ``None``.
        self.views = LiveViews(self, self._rng) if config.partial_views else None
        self._fresh: dict[str, float] = {}  # members joined lately: first in digests
        self._push = anyio.Event()
        self._last_push = -math.inf
        self._full_logged = -math.inf
        self._outstanding: set[str] = set()
        self._news: dict[str, bool] = {}  # members to push: id -> first-hand
        #: Of the members to push, the neighbors known to hold the record (they sent it to
        #: us, or named it in a digest): id -> neighbor ids (not sent back to them).
        self._holders: dict[str, set[str]] = {}
        #: Neighbors that answered a push ``lazy``: id -> until when no news is pushed to
        #: them (see :data:`LAZY_ROUNDS`).
        self._lazy: dict[str, float] = {}
        #: Neighbors we answered ``lazy``: id -> until when they push no news to us.
        self._told: dict[str, float] = {}
        #: Neighbors we pushed news to: id -> when, last (see :data:`KEEP_PUSHED_ROUNDS`).
        self._pushed_to: dict[str, float] = {}
        #: Members whose gossip answers say they answer partial digests (PARTIAL_VERSION).
        self._partial_ok: set[str] = set()
        #: Members whose gossip answers say they read summaries (SUMMARY_VERSION).
        self._summary_ok: set[str] = set()
        #: Partner -> the round until which it gets whole digests (it answered ``differ``).
        self._differed: dict[str, int] = {}
        #: Members whose answers say we may probe them by id (``slim``, SLIM_VERSION) -> the
        #: ``seq`` of our record they took then (a newer one of ours goes whole first).
        self._slim_ok: dict[str, int] = {}
        #: Owned links -> when we last called them (a probe is due when either end has not
        #: heard the other first-hand: the other end must not need a connection of its own).
        self._called: dict[str, float] = {}
        #: Members learned or updated here so far (a push that adds none is a duplicate).
        self.news_taken = 0
        #: With views, pushes along a tree: ``pruned`` (pushes of ours answered lazy),
        #: ``told`` (pushes we answered lazy), ``skipped`` (pushes of news not sent to a lazy
        #: neighbor), ``grafted`` (a lazy neighbor lacked records: pushed to again at once),
        #: ``busy`` (neighbors with a call outstanding left out of a push of news).
        self.tree: Counter[str] = Counter()
        #: Records a gossip partner wanted (its answer's ``want``): partner id -> member ids,
        #: sent in full in our next gossip to it.
        self._owed: dict[str, list[str]] = {}
        #: Death and suspicion notices to push (member id -> (seq, first-hand)); members
        #: suspected here (id -> (the seq named, first-hand)); members watched after a failed
        #: call (id -> since); whether to push our record (a refutation).
        self._dead: dict[str, tuple[int, bool]] = {}
        self._suspicions: dict[str, tuple[int, bool]] = {}
        self._suspects: dict[str, tuple[int, bool]] = {}
        self._watch: dict[str, float] = {}
        self._refute = False
        #: Of the members to push, those back from a death notice or out of a suspicion: a
        #: push carrying one goes to every active neighbor, as the notice did.
        self._revived: set[str] = set()
        #: Members held offline here by a death notice (:meth:`_kill`): the next time one is
        #: back, it is ``revived`` news.
        self._noticed: set[str] = set()
        #: Member id -> when a call of ours to it last failed (see :meth:`_watch_silence`).
        self._failed_at: dict[str, float] = {}
        #: The last census (:meth:`_census`): the table, its changes, the count of members
        #: that do not take view messages, and the census.
        self._census_kept: tuple[PeerTable, int, int, Census] | None = None
        #: Silent members a node with failing calls of its own has not suspected yet.
        self._deferred: set[str] = set()
        #: This node's own stalls, ``(end, seconds)``, oldest first (:data:`STALLS_KEPT`).
        self._stalls: deque[tuple[float, float]] = deque()
        #: Stalls seen, and their seconds in all.
        self.stalls = 0
        self.stalled = 0.0
        self._stall_logged = -math.inf
        #: Rounds since the start, from a random phase: nodes started together do not send
        #: their digests in the same round (see :meth:`_view_round`).
        self._rounds = self._rng.randrange(1 << 20)
        self._calls: TaskGroup | None = None
        #: New neighbors still to catch up with (:data:`CATCH_UP_LINKS`), until ``_young_until``.
        self._catch_up = 0
        self._young_until = -math.inf
        #: Local health (:data:`HEALTH_MAX`): 0 when this node's calls are answered in time.
        self.health = 0
        #: With views: members ``suspected`` here (first-hand), suspicions ``relayed`` (a
        #: notice taken), suspicions ``lifted`` (a newer record came), deaths ``announced``
        #: (a suspicion of ours timed out, or the member refused connections), ``expired`` (a
        #: suspicion relayed to us timed out), ``heard`` (a death notice taken), ``refuted``
        #: (of this node), ``deferred`` (see :meth:`_watch_silence`), ``unheard`` (ditto),
        #: ``malformed`` notices.
        self.deaths: Counter[str] = Counter()
        self.messages_sent = 0
        self.messages_received = 0
        #: Whole compact digests of ours answered ``same`` (gossip version 6): the partner
        #: held every record we named.
        self.answered_same = 0
        #: Summaries of ours answered ``differ`` (a whole compact digest followed).
        self.answered_differ = 0
        #: Whether stopping tells the members (``_synapse.leave``); a test that simulates a
        #: crash turns it off.
        self.say_goodbye = True
        self._learned: list[Callable[[Peer, RecordProof], bool]] = []
        self._forgotten: list[Callable[[str], None]] = []
        #: Called when this node starts advertising another address (:meth:`_advertise`).
        self.on_moved: list[Callable[[], None]] = []
        self._lost: anyio.Event | None = None  # set when a member goes offline or leaves
        self.trust.on_checked = self._checked
        register(self, registry)
        if self.views is not None:
            register_views(self.views, registry)

    def _new_table(self) -> PeerTable:
        config = self.config
        table = PeerTable(
            self.local.node_id,
            config.peer_timeout,
            max_peers=config.max_peers,
            wall_clock=config.wall_clock,
        )
        if config.partial_views:
            table.ages = self._ages
        return table

    def _ages(self, state: PeerState) -> bool:
        """Whether the table's ``peer_timeout`` of silence makes ``state`` offline here: with
        views, not for a member in views (signed, of ours: it stays until declared dead, see
        :meth:`_watch_silence`)."""
        views = self.views
        if views is None or state.proof is None or state.legacy:
            return True
        return state.peer.id in views.unsupported  # (else in views)

    def watch_records(
        self, learned: Callable[[Peer, RecordProof], bool], forgotten: Callable[[str], None]
    ) -> None:
        """Call ``learned(peer, proof)`` with every peer record whose signature checks (before
        it is acted on: a candidate's address is dialed after it), and ``forgotten(id)`` when
        a member leaves. ``learned`` returns True when it changed how the record's address is
        reached (then a failed dial of that address is retried at once). Both must be quick
        and must not raise."""
        self._learned.append(learned)
        self._forgotten.append(forgotten)

    def _checked(self, peer: Peer, proof: RecordProof) -> None:
        changed = False
        for learned in self._learned:
            changed = learned(peer, proof) or changed
        if changed:
            self.table.forgive((peer.address, peer.port))

    def _gone(self, node_id: str) -> None:
        for forgotten in self._forgotten:
            forgotten(node_id)
        state = self.table.get(node_id)
        heard = None if state is None else state.heard
        peer = self.table.left(node_id)
        if peer is None:
            return
        self._peers.pop(node_id, None)
        self._lose()
        log.info("peer %s (%s) left", peer.name or node_id[:8], _fmt(peer))
        self.hub.publish(PeerLeft(self._last_heard(peer, heard)))
        if self.views is not None:
            self.views.member_down(node_id)

    async def _say_goodbye(self) -> None:
        """Tell every member of ours that this node is leaving (best effort, bounded)."""
        members = self._reachable_members()
        if not members:
            return
        record = [self._signed_record()]

        async def one(peer: Peer) -> None:
            try:
                await self.caller.call(
                    peer.address, peer.port, LEAVE_ENDPOINT, record, {}, timeout=LEAVE_GRACE
                )
            except (SynapseError, OSError, RuntimeError):
                pass

        with anyio.CancelScope(shield=True), anyio.move_on_after(LEAVE_GRACE):
            async with anyio.create_task_group() as tg:
                for peer in members:
                    tg.start_soon(one, peer)

    def _reachable_members(self) -> list[Peer]:
        return [s.peer for s in self.table.alive() if not s.legacy]

    def _record(self) -> Peer:
        return self.local.record(self.config.wall_clock())

    def _proof(self, record: Peer | None = None) -> RecordProof | None:
        """This node's signature over its current record (``None`` for an unverified node)."""
        if self._signer is None:
            return None
        return self._signer.proof(record or self._record(), self._now(), self.local.extras)

    def _signed_record(self) -> dict[str, Any]:
        """This node's peer dict with the proof inline (for our own nodes only)."""
        record = self._record()
        data = record.to_dict()
        proof = self._proof(record)
        if proof is not None:
            data.update(proof.to_wire())
        return data

    def _proofs(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        """``{id: proof}`` for those of ``ids`` (this node included) held signed."""
        out: dict[str, dict[str, Any]] = {}
        for node_id in ids:
            if node_id == self.local.node_id:
                proof = self._proof()
            else:
                state = self.table.get(node_id)
                proof = state.proof if state is not None else None
            if proof is not None:
                out[node_id] = proof.to_wire()
        return out

    def _reset(self) -> None:
        self._peers.clear()
        self._members.restart(self._now(), self.config.wall_clock())  # (this loop's offset)
        self._lost = None  # (an event of an earlier run may belong to another event loop)
        self.table = self._new_table()
        self.verifier.reset()
        self.seeds.joined.clear()
        self._push = anyio.Event()
        self._last_push = -math.inf
        self._outstanding.clear()
        self._news.clear()
        self._holders.clear()
        self._owed.clear()
        self._rotation = PartnerRotation(self._rng)
        self._view_rotation = PartnerRotation(self._rng)
        self._fresh.clear()
        self._dead.clear()
        self._suspicions.clear()
        self._suspects.clear()
        self._lazy.clear()
        self._told.clear()
        self._pushed_to.clear()
        self._partial_ok.clear()
        self._summary_ok.clear()
        self._differed.clear()
        self._slim_ok.clear()
        self._called.clear()
        self.tree.clear()
        self._watch.clear()
        self._refute = False
        self._revived.clear()
        self._noticed.clear()
        self._failed_at.clear()
        self._deferred.clear()
        self._stalls.clear()
        self.stalls = 0
        self.stalled = 0.0
        self._stall_logged = -math.inf
        self._rounds = self._rng.randrange(1 << 20)
        self._catch_up, self._young_until = 0, -math.inf
        self.joining_views()  # (young from the start too)
        self.health = 0
        self.deaths.clear()
        self.messages_sent = self.messages_received = 0
        self.answered_same = self.answered_differ = 0
        self._census_kept = None

    # -- evidence ---------------------------------------------------------------------------

    def _now(self) -> float:
        return anyio.current_time()

    def _claim(self, peer: Peer, *, direct: bool) -> None:
        verdict = self.table.claim(peer, self._now(), direct=direct)
        self._after(verdict, peer.id, peer)

    def direct(
        self, peer: Peer, carrier: Any, connection: Connection | None, what: str
    ) -> Evidence:
        """A direct claim of ``peer`` by the caller (a join, heartbeat or gossip; its proof in
        map ``carrier``): ``RemoteError(bad_request)`` if the rules of :mod:`._trust` refuse
        it, else taken as first-hand evidence (see :meth:`_take_direct`)."""
        evidence = self.trust.direct(peer, carrier, connection, what)
        self._take_direct(peer, evidence)
        return evidence

    def _take_direct(self, peer: Peer, evidence: Evidence) -> None:
        """Apply a direct claim the trust rules let through. First-hand (the claimant's own
        channel, or in process): proof of life, and a newer record at the held address is
        taken at once. Otherwise a signed record is only news: its content if newer, a dial
        to verify an address not held; never life (a replayed copy of a dead member's
        record keeps nobody alive). A record moving a member elsewhere is always dialed
        first (see :mod:`._trust`)."""
        now = self._now()
        state = self.table.get(peer.id)
        proof = evidence.proof
        first_hand = evidence.first_hand
        if state is not None and state.proof is not None:  # held signed
            if proof is not None and proof.seq > state.seq:
                if not same_address(state.peer, peer):
                    verdict = self.table.claim_signed(peer, proof, now, direct=True)
                else:
                    verdict = self.table.signed(peer, proof, now if first_hand else None, now=now)
            elif first_hand:
                if evidence.channel and not state.verified:
                    state.verified = True
                    state.publish()
                verdict = self.table.contact(peer.id, now)
            else:
                verdict = "ignored"  # a copy of a held record, or older: not proof of life
        elif proof is not None:
            if first_hand and state is not None and same_address(state.peer, peer):
                verdict = self.table.signed(peer, proof, now, now=now)
            else:
                verdict = self.table.claim_signed(peer, proof, now, direct=True)
        else:
            verdict = self.table.claim(peer, now, direct=True)
            state = self.table.get(peer.id)
            if evidence.channel and state is not None and not state.verified:
                state.verified = True
                state.publish()
                if state.alive:
                    self._peers[peer.id] = state.peer
        self._after(verdict, peer.id, peer)

    def _after(
        self, verdict: Verdict, node_id: str, claimed: Peer, *, first_hand: bool = True
    ) -> None:
        """Act on a table verdict. ``first_hand``: we witnessed the peer ourselves (it called
        us, or answered at its address). First-hand news of a member is pushed to every peer
        at once (with views, to the active neighbors); with views, second-hand news (a member
        new here, or back) is relayed to the active neighbors too, batched
        (:data:`RELAY_GAP`): news floods the views, each node relays it once. Without views
        second-hand news waits for the rounds."""
        if node_id in self._suspects:
            self._lift(node_id)
        state = self.table.get(node_id)
        if verdict in ("joined", "updated", "candidate"):
            self.news_taken += 1
        if verdict == "updated" and state is not None and state.alive:
            self._peers[node_id] = state.peer
        elif verdict == "heartbeat" and state is not None:
            self._contact(state)
        elif verdict == "joined" and state is not None:
            # Listed as held (shared with the other nodes of this process, if they hold it:
            # node.peers shows this node's last_seen, from the table's news of life).
            self._peers[node_id] = state.peer
            log.info("peer %s (%s) joined", state.peer.name or node_id[:8], _fmt(state.peer))
            self.hub.publish(PeerJoined(self._seen_now(state)))
            if self.views is not None:
                # With views, news goes to the active neighbors (first-hand news at once,
                # below), then on in every round's digest, members that joined lately first.
                self.views.member_up(node_id)
                self._fresh[node_id] = self._now()
            if node_id in self._noticed:
                self._noticed.discard(node_id)
                self._revived.add(node_id)  # back from a death notice: as the notice went
            if first_hand:
                self._news[node_id] = True
                self.push_soon()
            elif self.views is not None:
                self._relay(node_id)
        elif verdict == "candidate":
            self.verifier.wake()
        elif verdict == "full":
            now = self._now()
            if now - self._full_logged > 60:
                self._full_logged = now
                log.warning(
                    "peer table full (max_peers=%d): ignoring new peer %s at %s",
                    self.table.max_peers,
                    node_id[:16],
                    _fmt(claimed),
                )

    def take_push(self, members: Any, sender_id: str, *, trusted: bool) -> tuple[int, bool]:
        """Take a neighbor's push of news (a digest, see :meth:`_apply_digest`): how many
        entries were refused for a bad signature, and whether the push was a duplicate (with
        views, from a trusted sender: every record it names, another push brought here
        first; the sender is told ``lazy``). A record learned otherwise (a compact digest, a
        view message, the member itself) does not make a push a duplicate: the link it came
        on may be this node's only one on the tree."""
        named: list[tuple[str, int]] = []
        if self.views is not None and trusted and isinstance(members, list):
            for entry in members[:MAX_DIGEST]:  # (what read_digest reads)
                if isinstance(entry, dict):
                    node_id, seq = entry.get("id"), entry.get("seq")
                    if isinstance(node_id, str) and type(seq) is int:
                        named.append((node_id, seq))
        taken = self.news_taken
        refused = self._apply_digest(members, sender_id, trusted=trusted)
        if refused or not named:
            return refused, False
        duplicate = self.news_taken == taken
        held = self.table.peers
        for node_id, seq in named:  # (a member not held: nothing of it kept, no news here)
            state = held.get(node_id)
            if state is not None and state.pushed < seq:
                held_seq = state.seq
                state.pushed = held_seq if held_seq == seq else seq  # (the record's own int)
                duplicate = False  # the first push of this record here
        return refused, duplicate

    def _apply_digest(self, members: Any, sender_id: str, *, trusted: bool) -> int:
        """Take a member digest (see :func:`._gossip.read_digest`); returns how many entries
        were refused for a bad signature."""
        refused = 0
        now = self._now()
        decisions = read_digest(
            members,
            now=now,
            skip=(sender_id, self.local.node_id),
            known=self.table.peers,
            peer_timeout=self.config.peer_timeout,
            admits=self.config.admits,
            trusted=trusted,
            check=self.trust.check,
            unsigned=self.trust.allows_unsigned,
            # A re-signed record with unchanged content is checked once per peer_timeout at
            # most (the table's window, 3 x peer_timeout, still moves in time).
            recheck_after=self.config.peer_timeout,
        )
        for decision in decisions:
            if isinstance(decision, Heard):
                self._heard(decision, now, trusted=trusted)
            elif isinstance(decision, Claim):
                if decision.proof is None:
                    self._claim(decision.peer, direct=False)
                else:
                    verdict = self.table.claim_signed(
                        decision.peer, decision.proof, now, direct=False
                    )
                    self._after(verdict, decision.peer.id, decision.peer)
            elif isinstance(decision, Update):
                verdict = self.table.signed(
                    decision.peer, decision.proof, min(decision.when, now), now=now
                )
                self._after(verdict, decision.peer.id, decision.peer, first_hand=False)
            elif isinstance(decision, Refreshed):
                verdict = self.table.refreshed(
                    decision.node_id, decision.proof, min(decision.when, now), now=now
                )
                state = self.table.peers.get(decision.node_id)
                if state is not None:
                    self._after(verdict, decision.node_id, state.peer, first_hand=False)
            elif isinstance(decision, Rejected):
                refused += 1
                self.trust.note(
                    "third_party",
                    f"gossip from {sender_id[:16]} about {decision.node_id[:16]}: "
                    f"{decision.reason}",
                )
            else:
                verdict = self.table.verified(
                    decision.peer, decision.when, legacy=decision.legacy, proof=decision.proof
                )
                self._after(verdict, decision.peer.id, decision.peer, first_hand=False)
        if self._news and isinstance(members, list):
            self._held_by(
                sender_id,
                ((m.get("id"), m.get("seq")) for m in members[:MAX_DIGEST] if type(m) is dict),
            )
        return refused

    def _held_by(self, sender_id: str, listed: Iterable[tuple[Any, Any]]) -> None:
        """``sender_id`` holds these records (``(id, seq)``): with views, news of them (the
        records held here, or older) is not pushed back to it."""
        news, peers = self._news, self.table.peers
        if not news or self.views is None:
            return
        for node_id, seq in listed:
            if node_id in news and type(seq) is int:
                state = peers.get(node_id)
                if state is not None and seq >= state.seq:
                    self._holders.setdefault(node_id, set()).add(sender_id)

    def _heard(self, heard: Heard, now: float, *, trusted: bool) -> None:
        if heard.seen >= 0:
            state = self.table.peers.get(heard.node_id)
            if state is not None and heard.seen > state.seen:
                state.seen = heard.seen
        verdict = self.table.heard_indirectly(heard.node_id, heard.when, now=now, revive=trusted)
        if verdict == "joined":  # an offline member is back, by a trusted member's word
            self._after(verdict, heard.node_id, self.table.peers[heard.node_id].peer,
                        first_hand=False)  # fmt: skip

    def _apply_compact(
        self, entries: Any, sender_id: str, *, trusted: bool, same: bool = False
    ) -> CompactReading:
        """Take compact digest entries (see :func:`._gossip.read_compact`): news of life of
        the records held; returns the reading (what the sender holds, what we want of it).
        ``same``: the sender may be answered ``same`` (see :meth:`in_step`): the reading also
        gives the entries of ours that would be news of life to it (``fresher``)."""
        now = self._now()
        reading = read_compact(
            entries,
            now=now,
            skip=(sender_id, self.local.node_id),
            known=self.table.peers,
            peer_timeout=self.config.peer_timeout,
            trusted=trusted,
            recheck_after=self.config.peer_timeout,
            fresh_within=self.table.news_window if same else None,
        )
        for heard in reading.heard:
            self._heard(heard, now, trusted=trusted)
        if self._news:
            self._held_by(sender_id, reading.listed.items())
        return reading

    def _compact_digest(
        self, partial: bool = False
    ) -> tuple[list[list[Any]], list[dict[str, Any]]]:
        """A round's digest, compact (see :func:`._gossip.compact_entry`): ``[id, seq, age]``
        for the members held signed, full entries for the others (unsigned, 2.5.0). Past
        :data:`MAX_COMPACT` members: those that joined lately first, then a random sample.
        ``partial``: the members that joined lately only."""
        now = self._now()
        compact: list[list[Any]] = []
        full: list[dict[str, Any]] = []
        states = self._fresh_states() if partial else self.table.alive()
        for state in sample_states(states, self._rng, MAX_COMPACT, self._fresh):
            if state.proof is not None and not state.legacy:
                compact.append(compact_entry(state, now, self.config.peer_timeout))
            elif len(full) < MAX_DIGEST:
                full.append(digest_entry(state.peer, now - state.heard, state.legacy, None))
        return compact, full

    def _fresh_states(self) -> list[PeerState]:
        """The alive members that joined lately (``_fresh``)."""
        peers = self.table.peers
        return [s for i in self._fresh if (s := peers.get(i)) is not None and s.alive]

    def _answer_compact(
        self, listed: Mapping[str, int], caller_id: str, *, partial: bool = False
    ) -> tuple[list[dict[str, Any]], list[list[Any]], bool]:
        """The answer to a compact digest whose sender holds ``listed`` (id to ``seq``): full
        entries of the members it lacks or holds an older record of (at most
        :data:`MAX_DIGEST`, those that joined lately first), compact entries of the others
        (news of life, whatever record it holds), and whether it held one it listed older.
        ``partial`` (the digest lists the members that joined lately at the sender): only
        the members listed, and those that joined lately here."""
        now = self._now()
        behind: list[PeerState] = []
        compact: list[list[Any]] = []
        older = False
        if partial:
            peers = self.table.peers
            states = self._fresh_states()
            states += [
                s
                for i in listed
                if i not in self._fresh and (s := peers.get(i)) is not None and s.alive
            ]
        else:
            states = self.table.alive()
        for state in states:
            node_id = state.peer.id
            if node_id == caller_id:
                continue
            theirs = listed.get(node_id)
            if state.proof is None or state.legacy or theirs is None or theirs < state.proof.seq:
                behind.append(state)
                older = older or theirs is not None
            else:
                compact.append(compact_entry(state, now, self.config.peer_timeout))
        return build_digest(behind, now, self._rng, first=self._fresh), compact, older

    def in_step(self, reading: CompactReading, caller_id: str) -> bool:
        """Whether the caller of a whole compact digest (``reading``) holds what this node
        holds: every alive member here is held signed (no 2.5.0 or unsigned member) and was
        listed by the ``seq`` we would name, every member listed is one of those (once), and
        nothing listed is wanted. Then the answer would carry no record, only compact entries
        naming what the caller listed: a caller that asked ``same`` (gossip version 6) is
        answered so instead, with the entries that are news of life to it
        (``reading.fresher``)."""
        if reading.want:
            return False
        census = self._census()
        state = self.table.peers.get(caller_id)  # (the answer leaves the caller out)
        others, signed = len(self.table.peers) - len(census.offline), census.signed
        if state is not None and state.alive:
            others -= 1
            if state.proof is not None and not state.legacy:
                signed -= 1
        return signed == others and reading.matched == signed == reading.distinct

    def _quiet(self, census: Census | None = None) -> bool:
        """Whether a summary of the records held (gossip version 7) says all a whole compact
        digest would: every alive member is held signed (no 2.5.0 or unsigned member), none
        ages by silence, and the newest record held was taken more than the table's
        ``indirect_window`` and ``peer_timeout`` ago. The table takes third parties' news of
        a member's life only up to the window past its record, so the ages of a digest's
        entries could only say a member was heard more than ``peer_timeout`` ago, here and
        at a partner as quiet: nothing a round or the table decides on."""
        table = self.table
        census = census if census is not None else self._census()
        if census.aging or census.signed != len(table.peers) - len(census.offline):
            return False
        return self._now() - table.newest_record > table.news_window + table.peer_timeout

    def summary_answer(self, caller_id: str, summary: Any) -> bool | None:
        """Whether ``summary`` (a caller's ``[count, sum]``, see :meth:`PeerTable.summary`)
        names the records we hold, the caller's aside, while we are quiet too (:meth:`_quiet`):
        then the caller's whole digest would be answered ``same``. ``None``: malformed."""
        if type(summary) is not list or len(summary) != 2:
            return None
        count, total = summary
        if type(count) is not int or count < 0 or type(total) is not str:
            return None
        if _HEX_SUM.fullmatch(total) is None:
            return None
        held = self.table.summary(leave_out=caller_id)
        return self._quiet() and held == (count, int(total, 16))

    def _entries(self, ids: list[str]) -> list[dict[str, Any]]:
        """Full entries of the alive members among ``ids``."""
        now = self._now()
        out = []
        for node_id in ids:
            state = self.table.peers.get(node_id)
            if state is not None and state.alive:
                out.append(digest_entry(state.peer, now - state.heard, state.legacy, state.proof))
        return out

    def _owe(self, partner_id: str, want: Any, listed: Mapping[str, int]) -> None:
        """Remember the records gossip partner ``partner_id`` wanted (at most
        :data:`MAX_DIGEST`, for at most :data:`MAX_OWED` partners: the oldest are forgotten,
        the partner pulls them in its own rounds anyway): those we hold newer than the record
        its answer named (``listed``; a re-signing we only saw is not ours to send)."""
        self._owed.pop(partner_id, None)
        if not isinstance(want, list):
            return
        peers = self.table.peers
        ids = []
        for node_id in want[:MAX_DIGEST]:
            state = peers.get(node_id) if type(node_id) is str else None
            if state is not None and state.alive and state.seq > listed.get(node_id, -1):
                ids.append(node_id)
        if ids:
            self._owed[partner_id] = ids
            while len(self._owed) > MAX_OWED:
                del self._owed[next(iter(self._owed))]

    def _digest(self) -> list[dict[str, Any]]:
        """Alive members and how long ago each was last heard from directly (past
        :data:`MAX_DIGEST` members: those that joined lately first, then a random sample)."""
        return build_digest(self.table.alive(), self._now(), self._rng, first=self._fresh)

    def _news_digest(self) -> list[dict[str, Any]]:
        """Only the members verified since the last push (what a push carries)."""
        news, self._news = self._news, {}
        return self._entries(list(news))

    @property
    def settling(self) -> bool:
        """True while claimed peers wait to be verified (queued or being dialed)."""
        return bool(self.table.candidates or self.verifier.busy)

    def is_legacy(self, node_id: str) -> bool:
        """True if ``node_id`` is a verified synapse-p2p 2.5.0 peer (no gossip, no paging)."""
        state = self.table.get(node_id)
        return state is not None and state.legacy

    def discovered(self, peer: Peer) -> None:
        """A peer announced itself on the LAN (mDNS): like a direct claim, but its address
        is verified before it is dialed for anything else. An mDNS record is unsigned: for a
        member held signed, an id seen verified, or in a swarm with a secret it is only a
        hint to dial that address and fetch the signed record there."""
        if not self.config.admits(peer):
            return
        state = self.table.get(peer.id)
        if state is not None and state.proof is not None:
            if not state.alive and same_address(state.peer, peer):
                self._after(self.table.hint(state.peer, self._now(), state.proof), peer.id, peer)
        elif not self.trust.allows_unsigned(peer.id):
            self._after(self.table.hint(peer, self._now()), peer.id, peer)
        else:
            self._claim(peer, direct=True)

    def dialable(self, peer: Peer) -> Peer | None:
        """Where to reach ``peer``, a node named in a message (a broadcast origin, an event
        author), or ``None``: never dialed on the message's word.

        A live member: its own record (with a secret, only if verified); a node whose checked
        signed record is waiting to be verified (an asker that just joined): that record's
        address. Without a secret, a node we hold no signed record of is dialed at the claimed
        address as 2.5.0 does (the secure channel, if it speaks one, still proves who answers);
        one we hold a signed record of, only at that record's address."""
        state = self.table.get(peer.id)
        if state is not None and state.alive and (state.verified or not self.config.secured):
            return state.peer
        signed = self.table.signed_candidate(peer.id) or self.verifier.checking.get(peer.id)
        if (
            signed is not None
            and signed.proof is not None
            and signed.proof.seq > (-1 if state is None else state.seq)
        ):
            return signed.peer  # its own signed record, still being verified (a new asker)
        if self.config.secured:
            return None
        if state is not None and state.proof is not None:
            return state.peer if same_address(state.peer, peer) else None
        return peer

    def observed(self, connection: Connection | None) -> None:
        """A peer called us over ``connection``: perhaps learn the address it reached us at
        (:meth:`._observed.AddressLearner.seen_locally`)."""
        if connection is not None and self.addresses.enabled:
            address = self.local.address
            self._advertise(
                self.addresses.seen_locally(address, connection.local_ip, connection.ip)
            )

    def reported(self, observed: Any) -> None:
        """A seed saw our join come from ``observed``
        (:meth:`._observed.AddressLearner.reported`)."""
        if self.addresses.enabled:
            self._advertise(self.addresses.reported(self.local.address, observed))

    def _advertise(self, address: str | None) -> None:
        if address is None:
            return
        log.info(
            "advertising %s from now on: peers reach this node there (auto-detection found no "
            "route; pass advertise= to choose)",
            format_address(address, self.local.port),
        )
        self.local.address = address  # our next record (re-signed) carries it to the members
        self.push_soon()
        if self.views is not None:
            self.views.moved()
        for moved in self.on_moved:
            moved()

    def _relay(self, node_id: str) -> None:
        """Relay news of ``node_id`` to the active neighbors with the next push."""
        self._news.setdefault(node_id, False)
        self.push_soon()

    def push_soon(self) -> None:
        """Spread first-hand news of members to every peer now, batched (one push at most
        every 50 ms), instead of waiting for the rounds."""
        self._push.set()

    # -- running ------------------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Rounds, verification and seeds until cancelled (from an empty table)."""
        self._reset()
        node_running(self, True)
        try:
            async with anyio.create_task_group() as tg:
                if self.views is not None:
                    self.views.start()
                    start_soon(tg, self.views.run)
                self.verifier.attach(tg)  # its checks in this group: no task of its own
                try:
                    if self.config.seeds:
                        start_soon(tg, self.seeds.run)
                    task_status.started()
                    if self.config.heartbeat_interval is not None:  # in this task: none of its own
                        await self._round_loop(self.config.heartbeat_interval)
                    else:
                        await anyio.sleep_forever()
                finally:
                    # Under trio the group takes no new task once this body and its tasks are
                    # done, before anyio marks it inactive: no check may start from here.
                    self.verifier.attach(None)
        finally:
            node_running(self, False)
            self.verifier.attach(None)
            if self.say_goodbye:
                await self._say_goodbye()

    async def _round_loop(self, interval: float) -> None:
        """Every ``interval``: gossip to ``fanout`` random peers, heartbeat 2.5.0 peers, retry
        one silent peer, expire. Calls run in the background with a timeout, so a slow peer
        never delays a round; a peer with a call still outstanding is skipped, so calls never
        pile up."""
        next_round = self._now()
        try:
            async with anyio.create_task_group() as calls:
                self._calls = calls
                try:
                    await self._rounds_in(calls, interval, next_round)
                finally:
                    self._calls = None  # (the group winds down: it takes no new calls)
        finally:
            self._calls = None

    async def _rounds_in(self, calls: TaskGroup, interval: float, next_round: float) -> None:
        while True:
            census = self._census()
            self._round(calls, interval, census)
            self._expire(census)
            next_round += interval
            if next_round < self._now():  # a stalled loop: skip missed rounds
                next_round = self._now() + interval
            while True:  # until the next round, serve pushes (see _next_push)
                wake = min(next_round, self._suspicion_due())
                if not await self._next_push(wake):
                    if self._now() < next_round:  # a suspicion is due
                        self._end_suspicions()
                        await anyio.lowlevel.checkpoint()  # (never a loop without one)
                        continue
                    break
                self._last_push = self._now()
                news_ids = set(self._news)
                first_hand = self._first_hand()
                news = self._news_digest()
                holders, self._holders = self._holders, {}
                dead = self._notices(self._dead)
                suspect = self._notices(self._suspicions)
                refute, self._refute = self._refute, False
                revived = any(entry["id"] in self._revived for entry in news)
                self._revived.clear()
                if news or dead or suspect or refute:  # first-hand news: to every peer, at once
                    # Members back from a notice (``revived``) go where notices go, to every
                    # neighbor: a false notice floods, so must what undoes it, and on the tree
                    # it would wait for the rounds' digests wherever a link was lazy or busy.
                    notices = bool(dead or suspect or refute or revived)
                    targets = self._push_targets(first_hand, notices)
                    old = [p for p in targets if p.id not in news_ids]
                    if not notices:
                        old = self._eager(old)
                    new = [p for p in targets if p.id in news_ids]
                    self._gossip_to(
                        calls, old, interval, news, dead=dead, suspect=suspect, holders=holders,
                        keep=refute, revived=revived,
                    )  # fmt: skip
                    # newcomers: all
                    self._gossip_to(calls, new, interval, full=True, dead=dead, suspect=suspect)
            self._push = anyio.Event()

    def _census(self) -> Census:
        """The table's members by what a round does with them (one pass; see
        :class:`~._table.Census`). ``aging`` is what :meth:`_ages` says, inline. The last
        census is kept while nothing it depends on changed (:attr:`PeerTable.changes`, the
        members that do not take view messages): an idle round of a large swarm does not
        touch every member's state."""
        views = self.views
        unsupported = None if views is None else views.unsupported
        table = self.table
        kept = self._census_kept
        count = -1 if unsupported is None else len(unsupported)  # (it only grows, till reset)
        if kept is not None and kept[0] is table and kept[1] == table.changes and kept[2] == count:
            return kept[3]
        census = self._take_census(unsupported)
        self._census_kept = (table, table.changes, count, census)
        return census

    def _take_census(self, unsupported: set[str] | None) -> Census:
        legacy: list[PeerState] = []
        offline: list[PeerState] = []
        aging: list[PeerState] = []
        unsigned = 0
        peers = self.table.peers
        for state in peers.values():
            if not state.alive:
                offline.append(state)
            elif state.legacy:
                legacy.append(state)
                aging.append(state)
            elif state.proof is None:
                unsigned += 1
                aging.append(state)
            elif unsupported is None or (unsupported and state.peer.id in unsupported):
                aging.append(state)
        signed = len(peers) - len(offline) - len(legacy) - unsigned
        return Census(legacy, offline, aging, signed=signed)

    def _expire(self, census: Census | None = None) -> None:
        """Members silent for too long are offline here (with views, members outside them;
        watched members are suspected: see :meth:`_watch_silence`)."""
        now = self._now()
        for peer in self.table.expire(now, census):
            self._offline(peer, "is offline")
        if self.views is not None:
            self._watch_silence(now, self.views)
        self._end_suspicions()
        if self._noticed:  # (forgotten members: no longer back as news)
            self._noticed.intersection_update(self.table.peers)
        if self._failed_at:  # (forgotten members; failures before the member was last heard)
            peers = self.table.peers
            for node_id, at in list(self._failed_at.items()):
                state = peers.get(node_id)
                if state is None or at < state.heard:
                    del self._failed_at[node_id]

    async def member_lost(self) -> None:
        """Return when a member goes offline or leaves here (what the seeds' joiner waits
        for while members are alive, instead of looking every few seconds)."""
        if self._lost is None:
            self._lost = anyio.Event()
        await self._lost.wait()

    def _lose(self) -> None:
        if self._lost is not None:
            self._lost.set()
            self._lost = None

    def _offline(self, peer: Peer, how: str) -> None:
        """Alive member ``peer`` just went offline here: tell the application."""
        self._peers.pop(peer.id, None)
        self._watch.pop(peer.id, None)
        self._suspects.pop(peer.id, None)
        self._lazy.pop(peer.id, None)
        self._lose()
        log.info("peer %s (%s) %s", peer.name or peer.id[:8], _fmt(peer), how)
        state = self.table.get(peer.id)
        self.hub.publish(
            PeerOffline(self._last_heard(peer, None if state is None else state.heard))
        )
        if self.views is not None:
            self.views.member_down(peer.id)

    def _watch_silence(self, now: float, views: LiveViews) -> None:
        """Watched members (active neighbors, members whose call failed) silent for ``(1 -
        SUSPECT_SHARE) * peer_timeout * (1 + health)`` are suspected here and the suspicion
        is told (:meth:`_suspect`), by a healthy node only (a node whose own calls fail waits,
        ``deferred``: the silence may be its own). When half the watched links or more are
        silent at once, the silence is most likely this node's (it cannot hear): they are
        offline here, told to nobody (``unheard``). A member with a call of ours outstanding,
        none of which failed since it was last heard, is not suspected yet (``awaited``; it
        counts as silent for deafness): the call's answer is contact, its failure confirms the
        silence (SWIM suspects after a failed probe). A suspicion costs the swarm a flood of
        notices and of the refutation, and on a loop too busy to answer in time the silence is
        the loop's."""
        watched = [*views.active_ids(), *(i for i in self._watch if not views.is_active(i))]
        window = (1 - SUSPECT_SHARE) * self.config.peer_timeout * (1 + self.health)
        silent: list[PeerState] = []
        awaited: set[str] = set()
        for node_id in watched:
            state = self.table.get(node_id)
            if (
                state is not None
                and state.alive
                and state.proof is not None
                and not state.legacy
                and not state.suspected
                and node_id not in views.unsupported
                and self._awake_since(state.heard, now) > window
            ):
                silent.append(state)
                if (
                    node_id in self._outstanding
                    and self._failed_at.get(node_id, -math.inf) < state.heard
                ):
                    awaited.add(node_id)
        deaf = len(silent) >= 2 and 2 * len(silent) >= len(watched)
        for state in silent:
            node_id = state.peer.id
            if node_id in awaited and not deaf:
                self.deaths["awaited"] += 1
            elif deaf:
                peer = self.table.silenced(node_id, now)
                if peer is not None:
                    self.deaths["unheard"] += 1
                    self._offline(peer, "is offline (silent, with most of our links)")
            elif self.health > 0:
                if node_id not in self._deferred:
                    self._deferred.add(node_id)
                    self.deaths["deferred"] += 1
            else:
                self._deferred.discard(node_id)
                self._suspect(node_id, state.seq, first_hand=True)

    async def _next_push(self, deadline: float) -> bool:
        """Wait until news is due to be pushed: ``PUSH_GAP`` after the last push if any of it
        is first-hand, ``RELAY_GAP`` if it is all relayed; False if ``deadline`` (the next
        round) comes first."""
        while True:
            pending = bool(self._news or self._dead or self._suspicions or self._refute)
            if pending:
                gap = PUSH_GAP if self._first_hand() else RELAY_GAP
                due = self._last_push + gap
            else:
                due = deadline
            target = min(due, deadline)
            wait = target - self._now()
            if wait <= 0:
                return self._now() < deadline and pending
            with anyio.move_on_after(wait) as timer:
                await self._push.wait()
            if timer.cancelled_caught:
                self._woke(target)
            self._push = anyio.Event()

    def _first_hand(self) -> bool:
        """Whether news waiting to be pushed is first-hand (pushed at once, to every member
        when the view is empty): a member verified here, a death seen here, a refutation."""
        return (
            self._refute
            or any(self._news.values())
            or any(first for _, first in self._dead.values())
            or any(first for _, first in self._suspicions.values())
        )

    @staticmethod
    def _notices(pending: dict[str, tuple[int, bool]]) -> list[list[Any]]:
        """The notices to push now from ``pending`` (``[id, seq]``, at most
        :data:`MAX_DEAD`; taken out of it)."""
        out: list[list[Any]] = []
        for node_id in list(pending)[:MAX_DEAD]:
            seq, _ = pending.pop(node_id)
            out.append([node_id, seq])
        return out

    # -- suspicions and deaths (with views) ----------------------------------------------------

    def _suspect(self, node_id: str, seq: int, *, first_hand: bool) -> None:
        """Suspect member ``node_id`` at record ``seq`` (``first_hand``: silent on a link of
        ours; else a member's notice): it stays listed, no event; the notice goes to the
        neighbors with the next push (the member among them, which refutes it), once."""
        state = self.table.suspect(node_id, seq, self._now())
        if state is None:
            return
        self._suspects[node_id] = (seq, first_hand)
        self._suspicions.setdefault(node_id, (seq, first_hand))
        self.deaths["suspected" if first_hand else "relayed"] += 1
        log.info(
            "peer %s (%s) is suspected%s",
            state.peer.name or node_id[:8],
            _fmt(state.peer),
            " (silent)" if first_hand else "",
        )
        self.push_soon()

    def _suspicion_time(self) -> float:
        """How long a suspicion lasts here unrefuted (see :data:`SUSPECT_SHARE`)."""
        members = max(10, len(self._peers))
        return SUSPECT_SHARE * self.config.peer_timeout * math.log10(members) * (1 + self.health)

    def _suspicion_due(self) -> float:
        """When the oldest suspicion held here times out (``inf``: none; stalls of ours
        since it began do not count toward its time)."""
        if not self._suspects:
            return math.inf
        peers = self.table.peers
        since = min(
            (peers[i].suspect_since for i in self._suspects if i in peers), default=math.inf
        )
        # (the oldest suspicion ends first: stalls credit a later start no more than it)
        return since if since == math.inf else self._suspicion_end(since, self._suspicion_time())

    def _suspicion_end(self, since: float, time: float) -> float:
        """When a suspicion held since ``since`` times out, lasting ``time`` (stalls of ours
        after ``since`` added). :meth:`_suspicion_due` and :meth:`_end_suspicions` both use
        it: computed two ways, a due time could fall a rounding error short of the end, and
        the rounds would wake for it again and again."""
        return since + time + self._stalled_since(since)

    def _woke(self, due: float) -> None:
        """The rounds woke now for a timer due at ``due``: later than :data:`STALL_MIN` is
        a stall of this node's own, taken out of every silence and suspicion it falls in,
        and the health score goes up by 1 (Lifeguard: a node that cannot keep time should
        not judge others by it)."""
        now = self._now()
        late = now - due
        if late > STALL_MIN:
            if len(self._stalls) >= STALLS_KEPT:  # the two oldest as one (never forgotten:
                _, length = self._stalls.popleft()  # a silence may span them all)
                later, more = self._stalls.popleft()
                self._stalls.appendleft((later, length + more))
            self._stalls.append((now, late))
            self.stalls += 1
            self.stalled += late
            self.health = min(HEALTH_MAX, self.health + 1)
            level = logging.DEBUG  # (INFO once a minute: an overloaded node stalls often)
            if now - self._stall_logged >= 60:
                self._stall_logged, level = now, logging.INFO
            log.log(
                level,
                "membership woke %.1f s late: a stall of this node's own (%d so far); "
                "silences and suspicions do not count it",
                late,
                self.stalls,
            )

    def _stalled_since(self, since: float) -> float:
        """Seconds of this node's own stalls after ``since``."""
        return sum(min(length, end - since) for end, length in self._stalls if end > since)

    def _awake_since(self, since: float, now: float) -> float:
        """Seconds from ``since`` to ``now`` that this node was awake to hear in."""
        return now - since - self._stalled_since(since)

    def _end_suspicions(self) -> None:
        """Suspicions held here for :meth:`_suspicion_time` unrefuted: the member is dead
        (see :meth:`_kill`; ``announced`` by the node that suspected it first-hand,
        ``expired`` at the others, whose notice waits for the next batch)."""
        if not self._suspects:
            return
        now = self._now()
        time = self._suspicion_time()
        for node_id, (seq, first_hand) in list(self._suspects.items()):
            state = self.table.get(node_id)
            if state is None or not state.suspected or state.seq != seq:
                del self._suspects[node_id]  # lifted, or gone
            elif self._suspicion_end(state.suspect_since, time) <= now and not self._kill(
                node_id, seq, first_hand=first_hand, how="announced" if first_hand else "expired"
            ):  # (a newer record was seen since: refuted)
                del self._suspects[node_id]
                state.lift_suspicion()

    def _lift(self, node_id: str) -> None:
        """A record of suspected member ``node_id`` was taken: if it is newer than the one
        suspected, the suspicion is over here, and the record goes on to the neighbors (the
        refutation floods as the suspicion did)."""
        state = self.table.get(node_id)
        seq, _ = self._suspects[node_id]
        if state is None or not state.alive:
            del self._suspects[node_id]
        elif state.seq != seq:
            del self._suspects[node_id]
            self._suspicions.pop(node_id, None)
            self._deferred.discard(node_id)
            self.deaths["lifted"] += 1
            log.info("peer %s is no longer suspected (refuted)", state.peer.name or node_id[:8])
            self._revived.add(node_id)  # the refutation goes where the suspicion went
            self._relay(node_id)

    def _kill(self, node_id: str, seq: int, *, first_hand: bool, how: str) -> bool:
        """Member ``node_id`` at record ``seq`` is dead here (``first_hand``: this node found
        it silent or refusing; ``how`` is the counter: ``announced``, ``expired``, ``heard``):
        offline, a tombstone on that record, and the death notice goes to the neighbors,
        once. False if that is not the record held alive here."""
        peer = self.table.declared_dead(node_id, seq, self._now())
        if peer is None:
            return False
        self.deaths[how] += 1
        self._deferred.discard(node_id)
        self._suspicions.pop(node_id, None)
        self._offline(peer, "is offline (dead)" if how != "heard" else "is offline (announced)")
        self._dead.setdefault(node_id, (seq, first_hand))
        self._noticed.add(node_id)
        self.push_soon()
        return True

    def _declare(self, node_id: str) -> None:
        """A member in views refused our calls twice: nothing listens at its address, it is
        dead without a suspicion."""
        state = self.table.get(node_id)
        if state is not None and state.alive:
            self._kill(node_id, state.seq, first_hand=True, how="announced")

    def _read_notices(self, entries: Any) -> list[tuple[str, int]]:
        """``[[id, seq], ...]`` (at most :data:`MAX_DEAD`); malformed entries are skipped and
        counted."""
        out: list[tuple[str, int]] = []
        if not isinstance(entries, list):
            self.deaths["malformed"] += 1
            return out
        for entry in entries[:MAX_DEAD]:
            if (
                type(entry) is list
                and len(entry) == 2
                and type(entry[0]) is str
                and type(entry[1]) is int
            ):
                out.append((entry[0], entry[1]))
            else:
                self.deaths["malformed"] += 1
        return out

    def _take_suspicions(self, entries: Any, sender_id: str) -> None:
        """Suspicion notices (``[[id, seq], ...]``) from a trusted member: each alive member
        whose held record is the one named is suspected here (see :meth:`_suspect`); one
        naming this node is refuted."""
        if self.views is None:
            return
        me = self.local.node_id
        for node_id, seq in self._read_notices(entries):
            if node_id == me:
                self._refute_notice(seq)
            elif node_id != sender_id:
                self._suspect(node_id, seq, first_hand=False)

    def _take_deaths(self, entries: Any, sender_id: str) -> None:
        """Death notices (``[[id, seq], ...]``) from a trusted member: each alive member
        whose held record is the one named is dead here (see :meth:`_kill`), and told so if
        it is our neighbor (it refutes a false notice); one naming this node is refuted. A
        notice of a record declared dead here already, whose member spoke to us since, makes
        it suspected only."""
        views = self.views
        if views is None:
            return
        me = self.local.node_id
        for node_id, seq in self._read_notices(entries):
            if node_id == me:
                self._refute_notice(seq)
                continue
            if node_id == sender_id:
                continue
            state = self.table.get(node_id)
            if state is not None and state.alive and state.seq == seq <= state.dead_seq:
                # Another copy of a notice taken already, and the member spoke to us since:
                # its word against the notice's. Suspect it: it refutes, or it is dead when
                # the suspicion ends (no offline/online flapping while the notice floods).
                self._suspect(node_id, seq, first_hand=False)
                continue
            neighbor = views.is_active(node_id) and state is not None
            if not self._kill(node_id, seq, first_hand=False, how="heard"):
                continue
            log.debug("death of %s announced by %s", node_id[:8], sender_id[:8])
            if neighbor and state is not None and self._calls is not None:
                # Tell it too (it is no longer among the push's targets), so that a live
                # member hears the notice and refutes it.
                with contextlib.suppress(RuntimeError):
                    interval = self.config.heartbeat_interval or 5.0
                    self._gossip_to(self._calls, [state.peer], interval, [], dead=[[node_id, seq]])

    def _refute_notice(self, seq: int) -> None:
        """A notice says this node is suspected or dead, naming its record ``seq``: if that
        is the current record, sign a new one; push it at once. A notice naming an older
        record is answered with the current one (the members that hold the older record may
        not have taken it yet); one naming a record newer than ours is forged, and ignored."""
        proof = self._proof()
        if proof is None or self._signer is None or seq > proof.seq:
            return
        if seq == proof.seq:
            self._signer.renew()
            self.deaths["refuted"] += 1
        self._refute = True
        self.push_soon()

    def _call_failed(self, peer: Peer, exc: BaseException) -> None:
        """A call of ours to member ``peer`` failed. With views, a member in views is
        watched from now on (silence makes it offline here, and announced); a second
        refused connection in a row (nothing listens at its address) declares it dead at
        once. A remote error is an answer: it is alive."""
        if not isinstance(exc, RemoteError):
            self._failed_at[peer.id] = self._now()
        views = self.views
        state = self.table.get(peer.id)
        if (
            views is None
            or self._calls is None  # not running (or stopping)
            or state is None
            or not state.alive
            or isinstance(exc, RemoteError)
            or not views.in_views(peer.id)
        ):
            return
        refused = isinstance(exc, ConnectError) and exc.refused  # nothing listens there
        now = self._now()
        if peer.id in self._watch:
            if refused:
                self._declare(peer.id)
            return
        self._watch[peer.id] = now
        if not views.is_active(peer.id):  # not aged until now: peer_timeout to show life
            state.heard = max(state.heard, now)
        if refused and self._calls is not None and peer.id not in self._outstanding:
            with contextlib.suppress(RuntimeError):  # (stopping: the rounds are over)
                self._gossip_to(self._calls, [peer], self.config.heartbeat_interval or 5.0, [])

    def _sick(self, node_id: str, exc: BaseException) -> None:
        """A call of ours to ``node_id`` failed. The failure may be ours (a busy node times
        out): health score +1, unless the peer answered (an error), nothing listened at its
        address, or it was silent already (not heard from for ``PROBE_OWNED *
        peer_timeout``, or calls to it failed before: the silence is most likely its own)."""
        state = self.table.get(node_id)
        if (
            state is not None
            and node_id not in self._watch
            and state.heard >= self._now() - PROBE_OWNED * self.config.peer_timeout
            and not isinstance(exc, RemoteError)
            and not (isinstance(exc, ConnectError) and exc.refused)
        ):
            self.health = min(HEALTH_MAX, self.health + 1)

    def link_failed(self, node_id: str, exc: BaseException) -> None:
        """A view message to ``node_id`` failed (see :meth:`_call_failed`)."""
        self._sick(node_id, exc)
        state = self.table.get(node_id)
        if state is not None:
            self._call_failed(state.peer, exc)

    def _reachable(self) -> list[Peer]:
        """Alive members of ours (not 2.5.0) without a call outstanding."""
        return [
            s.peer
            for s in self.table.alive()
            if not s.legacy and s.peer.id not in self._outstanding
        ]

    def _pick(self, count: int) -> list[Peer]:
        """The next ``count`` gossip partners (see :class:`._gossip.PartnerRotation`)."""

        ids = self._rotation.pick(count, lambda: [p.id for p in self._reachable()], self._usable)
        return [self.table.peers[node_id].peer for node_id in ids]

    def neighbors(self) -> list[Peer]:
        """The members to pick from for periodic exchanges (conversation anti-entropy): with
        partial views the active links this node keeps open (else the whole active view),
        else every alive member of ours (not 2.5.0)."""
        views = self.views
        if views is not None:  # (the links looked up, not every member scanned)
            peers = self._peers
            for ids in (views.owned(), views.active_ids()):
                links = [
                    p for i in ids if (p := peers.get(i)) is not None and not self.is_legacy(i)
                ]
                if links:
                    return links
        return [p for p in self._peers.values() if not self.is_legacy(p.id)]

    def _push_targets(self, first_hand: bool, notices: bool = False) -> list[Peer]:
        """Where news goes: every member of ours, or with views the active neighbors (and
        members that take no part in views); with an empty view, first-hand news to every
        member, other news nowhere (others may not know us yet and would have to verify
        every member it names). With views, ``notices`` (suspicions, deaths, a refutation:
        small, and lost if not sent now; members back from a notice go as notices do) go to
        the neighbors with a call outstanding too, and with an empty view to ``fanout``
        members."""
        views = self.views
        if views is None:
            return self._reachable()
        active = set(views.active_ids())
        if not active:
            if first_hand:
                return self._reachable()
            return self._pick(self.fanout) if notices else []
        # The active neighbors, and the members that take no part in views (see
        # LiveViews.in_views), in one pass over the table: this runs for every push.
        unsupported = views.unsupported
        outstanding = self._outstanding
        targets = []
        for state in self.table.peers.values():
            if not state.alive or state.legacy:
                continue
            node_id = state.peer.id
            if node_id in active or state.proof is None or node_id in unsupported:
                if notices or node_id not in outstanding:
                    targets.append(state.peer)
                else:
                    self.tree["busy"] += 1
        return targets

    def _lazy_until(self) -> float:
        """When a link pruned now carries news again (see :data:`LAZY_ROUNDS`)."""
        return self._now() + LAZY_ROUNDS * (self.config.heartbeat_interval or 5.0)

    def _lapse(self, links: dict[str, float]) -> None:
        """Forget the pruned links (``_lazy``, ``_told``) whose time is up."""
        now = self._now()
        for node_id, until in list(links.items()):
            if until <= now:
                del links[node_id]

    def _eager(self, peers: list[Peer]) -> list[Peer]:
        """Of ``peers``, those news is pushed to: not the neighbors that said ``lazy`` within
        the last :data:`LAZY_ROUNDS` heartbeat intervals."""
        if not self._lazy:
            return peers
        self._lapse(self._lazy)
        out = [p for p in peers if p.id not in self._lazy]
        self.tree["skipped"] += len(peers) - len(out)
        return out

    def prune(self, node_id: str) -> bool:
        """A duplicate push came from neighbor ``node_id``: whether to answer it ``lazy``
        (yes while :data:`MIN_EAGER` other active neighbors still push news to us)."""
        views = self.views
        if views is None:
            return False
        told = self._told
        self._lapse(told)
        eager = [i for i in views.active_ids() if i != node_id and i not in told]
        if len(eager) < MIN_EAGER:
            return False
        told[node_id] = self._lazy_until()
        self.tree["told"] += 1
        return True

    def graft(self, node_id: str) -> None:
        """Neighbor ``node_id`` lacked records we hold: push news to it again at once."""
        if self._lazy.pop(node_id, None) is not None:
            self.tree["grafted"] += 1

    def _usable(self, node_id: str) -> bool:
        state = self.table.get(node_id)
        return (
            state is not None
            and state.alive
            and not state.legacy
            and node_id not in self._outstanding
        )

    def _round(self, calls: TaskGroup, interval: float, census: Census | None = None) -> None:
        if census is None:
            census = self._census()
        if self._fresh:
            old = self._now() - FRESH_ROUNDS * interval
            self._fresh = {i: t for i, t in self._fresh.items() if t > old}
        self._rounds += 1
        self._members.shift(self._now(), self.config.wall_clock())  # (for reads off the loop)
        if len(self._partial_ok) > len(self.table.peers) + MAX_DIGEST:
            self._partial_ok = {i for i in self._partial_ok if i in self.table.peers}
        if len(self._summary_ok) > len(self.table.peers) + MAX_DIGEST:
            self._summary_ok = {i for i in self._summary_ok if i in self.table.peers}
        if self._differed:
            self._differed = {i: r for i, r in self._differed.items() if r > self._rounds}
        if len(self._slim_ok) > len(self.table.peers) + MAX_DIGEST:
            self._slim_ok = {i: q for i, q in self._slim_ok.items() if i in self.table.peers}
        if self.views is not None and self.views.active_ids():
            self._view_round(calls, interval, self.views, census)
        else:
            self._gossip_to(calls, self._pick(self.fanout), interval)  # round-robin
        for state in census.legacy:
            if state.peer.id not in self._outstanding:
                self._outstanding.add(state.peer.id)
                start_soon(calls, self._heartbeat, state.peer, interval)
        offline = census.offline
        if offline:  # try one silent peer per round: partitions heal by themselves
            state = self._rng.choice(offline)
            if state.proof is None:
                self._claim(state.peer, direct=False)
            else:
                self.table.hint(state.peer, self._now(), state.proof)
                self.verifier.wake()

    def _view_round(
        self, calls: TaskGroup, interval: float, views: LiveViews, census: Census | None = None
    ) -> None:
        """A round with views: a compact digest to ``fanout`` of the links this node owns
        (round-robin) every ``ceil(members / DIGEST_MEMBERS)`` rounds, and in the others, while
        members joined lately, a compact digest of those only; a probe (an empty
        push) to the other owned links not heard from lately (:data:`PROBE_OWNED`), and to the
        other neighbors and watched members not heard from for longer (:data:`PROBE_AFTER`); a
        digest to one member outside views (if any) and now and then (:data:`REPAIR_CHANCE`) to
        a random member. This node re-signs its record only while members outside views age it
        by its records."""
        if self._pushed_to:
            self._keep_pushed()  # (the neighbors not pushed to lately are let go)
        now = self._now()
        peers = self.table.peers
        for node_id, since in list(self._watch.items()):
            state = peers.get(node_id)
            if state is None or not state.alive or state.heard > since:
                del self._watch[node_id]  # it showed life (or is gone)
        owned = [i for i in views.owned() if self._usable(i)]
        if census is None:
            census = self._census()
        outsiders = [s.peer.id for s in census.aging if not s.legacy]
        if self._signer is not None:
            self._signer.refresh = (
                self.config.peer_timeout / 2 if outsiders or not self._peers else math.inf
            )
        every = self._digest_every()
        digest: list[str] = []
        regular = self._rounds % every == 0
        if self._fresh or regular:
            digest = self._view_rotation.pick(self.fanout, lambda: list(owned), self._usable)
        chosen = set(digest)
        if digest and not regular:  # members joined lately: a digest of those only
            partial = [i for i in digest if i in self._partial_ok]  # (else: a whole one)
            self._gossip_to(calls, [peers[i].peer for i in partial], interval, partial=True)
            digest = [i for i in digest if i not in self._partial_ok]
        due = now - PROBE_OWNED * self.config.peer_timeout
        called = self._called = {
            i: t for i in views.owned() if (t := self._called.get(i)) is not None
        }
        probes = [
            i
            for i in owned
            if i not in chosen and (peers[i].heard < due or called.get(i, -math.inf) < due)
        ]  # (heard of it lately through others, it has not heard of us: a probe all the same)
        chosen.update(owned)
        timeout = self.config.peer_timeout
        stale = now - PROBE_AFTER * timeout
        # A link the other end owns is called at least every round past PROBE_OWNED: probe it
        # only past that and half a round more (else a call a little late makes it probe).
        cadence = (math.floor(PROBE_OWNED * timeout / interval) + 1.5) * interval
        stale_link = now - max(PROBE_AFTER * timeout, cadence)
        for node_id in [*views.active_ids(), *self._watch]:
            due_here = stale_link if node_id not in self._watch else stale
            if node_id not in chosen and self._usable(node_id) and peers[node_id].heard < due_here:
                probes.append(node_id)
                chosen.add(node_id)
        if outsiders:
            digest += self._rotation.pick(1, lambda: outsiders, self._usable)
        repair = REPAIR_CHANCE * min(1.0, REPAIR_MEMBERS / max(1, len(self._peers)))
        if self._rng.random() < repair:
            others = [p.id for p in self._reachable() if p.id not in chosen and p.id not in digest]
            if others:
                digest.append(self._rng.choice(others))
        # (with no member aging here, a partner that holds what we hold answers ``same``;
        # when no record reached us lately, a summary of them is enough to tell)
        if not outsiders and (self._rounds // every) % SUMMARY_WHOLE and self._quiet(census):
            differed = self._differed
            summary = [
                i for i in digest if i in self._summary_ok and differed.get(i, -1) < self._rounds
            ]
            digest = [i for i in digest if i not in summary]
            self._gossip_to(calls, [peers[i].peer for i in summary], interval, summary=True)
        self._gossip_to(calls, [peers[i].peer for i in digest], interval, same=not outsiders)
        self._probe(calls, [peers[i].peer for i in probes], interval)

    def _digest_every(self) -> int:
        """With views, a round's whole digest goes every this many rounds."""
        return max(1, math.ceil(len(self._peers) / DIGEST_MEMBERS))

    def _call_timeout(self, interval: float) -> float:
        return min(self.config.call_timeout, max(interval, 0.5))

    def _gossip_to(
        self,
        calls: TaskGroup,
        peers: list[Peer],
        interval: float,
        members: list[dict[str, Any]] | None = None,
        *,
        full: bool = False,
        dead: list[list[Any]] | None = None,
        suspect: list[list[Any]] | None = None,
        holders: Mapping[str, set[str]] | None = None,
        keep: bool = False,
        partial: bool = False,
        revived: bool = False,
        graft: bool = False,
        same: bool = False,
        summary: bool = False,
    ) -> None:
        """Gossip to ``peers``: a push of news (``members``, answered without a digest), the
        full digest (``full``: for members new to us, which hold nothing we could name by
        ``seq``), else the compact digest of a round (push-pull, see :mod:`._endpoints`), of
        the members that joined lately only if ``partial``.
        A push leaves out the members a peer is known to hold (``holders``: member id ->
        peer ids), and is not sent to a peer left with nothing (unless ``keep``: the push
        carries our renewed record). ``revived``: the push carries members back from a death
        notice or a suspicion (the receiver never answers it ``lazy``: it goes to every
        neighbor, duplicates are expected). ``graft``: the receivers are asked to push news
        to this node again (see :meth:`neighbor_down`). ``same``: a whole compact digest may
        be answered ``same`` (gossip version 6) by a receiver that holds what we hold: ask so
        only when no member here ages by silence (the answer's ages would be news of life).
        ``summary``: instead of a whole compact digest, the summary of the records held
        (gossip version 7, see :meth:`_quiet`), answered ``same`` or ``differ``."""
        if not peers:
            return
        message: dict[str, Any] = {"v": GOSSIP_VERSION, "from": self._signed_record()}
        if graft:
            message["graft"] = True
        if revived and members:
            message["revived"] = True
        if dead:
            message["dead"] = dead  # death notices (views): relayed once by each node
        if suspect:
            message["suspect"] = suspect  # suspicions (views): ditto
        if members is not None:
            message["members"] = members
            message["push"] = True  # news only: answered without a digest
        elif full:
            message["members"] = self._digest()
        elif summary:
            message["members"] = []
        else:
            message["compact"], message["members"] = self._compact_digest(partial)
            if partial:
                message["partial"] = True
            elif same:
                message["same"] = True
        bare = members and holders and not dead and not suspect and not keep
        pushed = False
        for peer in peers:
            own = message
            if summary:  # (it leaves out the callee: its own record is not ours to name)
                count, total = self.table.summary(leave_out=peer.id)
                own = {**message, "summary": [count, f"{total:032x}"]}
            if members and holders:
                mine = [e for e in members if peer.id not in holders.get(e["id"], ())]
                if len(mine) < len(members):
                    if not mine and bare:
                        continue  # it holds all of it
                    own = {**message, "members": mine}
            if members and self.views is not None:
                self._pushed_to[peer.id] = self._now()
                pushed = True
            round_digest = "compact" in message or summary
            owed = self._owed.pop(peer.id, None) if round_digest else None
            if owed:  # a round's digest carries the records this partner wanted last time
                own = {**own, "members": message["members"] + self._entries(owed)}
            self._outstanding.add(peer.id)
            start_soon(calls, self._gossip_one, peer, own, interval)
        if pushed:
            self._keep_pushed()

    def _probe(self, calls: TaskGroup, peers: list[Peer], interval: float) -> None:
        """Probe ``peers``: by id (gossip version 4, see :data:`._endpoints.SLIM_VERSION`)
        those that said ``slim`` and took our current record then, the others with our whole
        record (an empty push)."""
        proof = self._proof()
        slim = self._slim_ok
        seq = None if proof is None else proof.seq
        by_id = [p for p in peers if seq is not None and slim.get(p.id) == seq]
        whole = [p for p in peers if seq is None or slim.get(p.id) != seq]
        if by_id and seq is not None:
            self._probe_by_id(calls, by_id, interval, seq)
        self._gossip_to(calls, whole, interval, [])

    def _probe_by_id(self, calls: TaskGroup, peers: list[Peer], interval: float, seq: int) -> None:
        """Probe ``peers`` naming this node by id and ``seq`` (our record's) only: no record
        is sent or read (nor checked) unless one side holds an older record of the other."""
        caller = {"id": self.local.node_id, "seq": seq}
        for peer in peers:
            state = self.table.get(peer.id)
            message = {"v": GOSSIP_VERSION, "from": caller, "members": [], "push": True}
            if state is not None and state.proof is not None:
                message["have"] = state.proof.seq
            self._outstanding.add(peer.id)
            start_soon(calls, self._gossip_one, peer, message, interval)

    def _probe_message(self) -> dict[str, Any]:
        """A probe with this node's whole record (what :meth:`_gossip_to` sends with an
        empty ``members``)."""
        return {"v": GOSSIP_VERSION, "from": self._signed_record(), "members": [], "push": True}

    def probed(
        self, caller: dict[str, Any], message: dict[str, Any], connection: Connection | None
    ) -> dict[str, Any]:
        """Serve a probe by id (see :meth:`_probe_by_id`): contact, as the caller's own
        record held would be, if it comes on the caller's own secure channel and names that
        record; else the caller is asked for its whole record (``full``)."""
        node_id, seq = caller.get("id"), caller.get("seq")
        if not isinstance(node_id, str) or type(seq) is not int:
            raise RemoteError(BAD_REQUEST, "gossip: a probe by id needs 'id' (str), 'seq' (int)")
        state = self.table.get(node_id)
        if (
            connection is None
            or connection.node_id != node_id  # (not proved here: its record must say)
            or state is None
            or not state.alive
            or state.seq != seq  # (a record we do not hold)
            or message.get("dead") is not None
            or message.get("suspect") is not None
            or message.get("members")
        ):
            return {"v": GOSSIP_VERSION, "full": True}
        now = self._now()
        if not state.verified:  # (as a direct claim on its own channel)
            state.verified = True
            state.publish()
        self._after(self.table.contact(node_id, now), node_id, state.peer)
        self.observed(connection)
        answer: dict[str, Any] = {"v": GOSSIP_VERSION}
        proof = self._proof()
        if proof is None or message.get("have") != proof.seq:
            answer["self"] = self._signed_record()
        return answer

    def _keep_pushed(self) -> None:
        """Keep our own connections to the active neighbors pushed news to lately (see
        :data:`KEEP_PUSHED_ROUNDS`), and forget the others."""
        views = self.views
        if views is None:
            return
        since = self._now() - KEEP_PUSHED_ROUNDS * (self.config.heartbeat_interval or 5.0)
        active = set(views.active_ids())
        self._pushed_to = {i: t for i, t in self._pushed_to.items() if t > since and i in active}
        views.keep_also(self._pushed_to, user="news")

    async def _gossip_one(self, peer: Peer, message: dict[str, Any], interval: float) -> None:
        self.messages_sent += 1
        self._called[peer.id] = self._now()
        try:
            reply = await self.caller.call(
                peer.address,
                peer.port,
                GOSSIP_ENDPOINT,
                [message],
                {},
                timeout=self._call_timeout(interval),
            )
        except (SynapseError, OSError) as exc:
            self._outstanding.discard(peer.id)
            by_id = "address" not in message.get("from", {})
            refused = isinstance(exc, RemoteError) and exc.code == BAD_REQUEST
            if by_id and refused and self._slim_ok.pop(peer.id, None) is not None:
                # it no longer reads probes by id (an earlier version now): whole from now on
                self._outstanding.add(peer.id)
                await self._gossip_one(peer, self._probe_message(), interval)
                return
            log.debug("gossip to %s failed: %s", _fmt(peer), exc)
            if message.get("graft"):  # (not taken: it still holds us lazy)
                self._told[peer.id] = self._lazy_until()
            self._sick(peer.id, exc)
            self._call_failed(peer, exc)
            return
        finally:
            self._outstanding.discard(peer.id)
        self.health = max(0, self.health - 1)
        self.table.responded(peer.id, self._now())
        if self.views is not None:
            self._answered(peer.id)
        if not isinstance(reply, dict):
            return
        version = reply.get("v")
        if message.get("graft") and not (type(version) is int and version >= GRAFT_VERSION):
            self._told[peer.id] = self._lazy_until()  # (an earlier version: it ignored it)
        if type(version) is int and version >= PARTIAL_VERSION:
            self._partial_ok.add(peer.id)
        if type(version) is int and version >= SUMMARY_VERSION:
            self._summary_ok.add(peer.id)
        else:
            self._summary_ok.discard(peer.id)
        sent = message.get("from", {})
        if message.get("push") and "address" in sent:  # our whole record went: may we by id?
            if type(version) is int and version >= SLIM_VERSION and reply.get("slim") is True:
                if type(sent.get("seq")) is int:
                    self._slim_ok[peer.id] = sent["seq"]
            else:
                self._slim_ok.pop(peer.id, None)  # (an earlier version, or not proved to it)
        if reply.get("full") is True and "address" not in sent:
            # our probe by id was not taken (it lacks our record, or our channel does not
            # prove us): probe again with the whole record, and so until it says ``slim``
            self._slim_ok.pop(peer.id, None)
            self._outstanding.add(peer.id)
            await self._gossip_one(peer, self._probe_message(), interval)
            return
        if reply.get("lazy") is True and message.get("push") and self.views is not None:
            # It had every record of this push from another neighbor: a link off the tree.
            self.tree["pruned"] += 1
            self._lazy[peer.id] = self._lazy_until()
        if reply.get("want"):
            self.graft(peer.id)
        self._take_answer_record(peer, reply.get("self"))
        self._apply_digest(reply.get("members"), peer.id, trusted=True)
        listed: Mapping[str, int] = {}
        if "compact" in reply:  # (with ``same``: news of life only)
            listed = self._apply_compact(reply["compact"], peer.id, trusted=True).listed
        if reply.get("differ") is True and "summary" in message and self._calls is not None:
            self.answered_differ += 1  # our records differ: the whole digest, at once
            self._differed[peer.id] = self._rounds + DIFFER_DIGESTS * self._digest_every()
            self._gossip_to(self._calls, [peer], interval, same=not self._census().aging)
            return
        if reply.get("same") is True and "summary" in message:
            self.answered_same += 1
        elif reply.get("same") is True and message.get("same") is True:
            self.answered_same += 1  # it holds what we listed: the records of our news too
            if self._news and isinstance(message.get("compact"), list):
                news = self._news
                self._held_by(peer.id, [(e[0], e[1]) for e in message["compact"] if e[0] in news])
        self._owe(peer.id, reply.get("want"), listed)

    def neighbor_up(self, node_id: str) -> None:
        """A new active link to ``node_id`` (views): a young node catches up with it (see
        :data:`CATCH_UP_LINKS`), with a round's compact digest, answered with the records
        it lacks. Young: in the first :data:`FRESH_ROUNDS` rounds after its start or its last
        views JOIN (:meth:`joining_views`). (Its digest lists every member it holds, as the
        seed's answer did: O(members), twice per join.)"""
        self._told.pop(node_id, None)  # (a new link: it pushes news to us until it is told)
        calls, interval = self._calls, self.config.heartbeat_interval
        if self._catch_up <= 0 or calls is None or interval is None:
            return
        if self._now() > self._young_until:
            self._catch_up = 0
            return
        if not self._usable(node_id):
            return  # (gone, or a call to it outstanding: its answer brings news too)
        self._catch_up -= 1
        self.tree["caught_up"] += 1
        with contextlib.suppress(RuntimeError):  # (stopping: the rounds are over)
            self._gossip_to(calls, [self.table.peers[node_id].peer], interval)

    def neighbor_down(self, node_id: str) -> None:
        """``node_id`` left the active view (views): this node no longer counts it as told
        ``lazy``, and if fewer than :data:`MIN_EAGER` active neighbors still push news to
        this node, those it told ``lazy`` are asked to push to it again (a probe with
        ``graft: true``), enough of them to make up :data:`MIN_EAGER`: the link that fed it
        news is gone, and the rounds' digests or the lapse would come seconds later."""
        self._told.pop(node_id, None)
        views, calls, interval = self.views, self._calls, self.config.heartbeat_interval
        if views is None or calls is None or interval is None or not self._told:
            return
        self._lapse(self._told)
        active = [i for i in views.active_ids() if i != node_id]
        eager = [i for i in active if i not in self._told]
        short = MIN_EAGER - len(eager)
        if short <= 0:
            return
        peers = self.table.peers
        ask = [i for i in active if i in self._told and i in peers and peers[i].alive][:short]
        for i in ask:
            del self._told[i]
        self.tree["regrafted"] += len(ask)
        with contextlib.suppress(RuntimeError):  # (stopping: the rounds are over)
            self._gossip_to(calls, [peers[i].peer for i in ask], interval, [], graft=True)

    def joining_views(self) -> None:
        """This node sends its views JOIN (it has no link): young again for the catch-up (a
        join after seeds answered late, or after every member was lost)."""
        interval = self.config.heartbeat_interval
        if interval is not None:
            self._catch_up = CATCH_UP_LINKS
            self._young_until = self._now() + FRESH_ROUNDS * interval

    def _answered(self, node_id: str) -> None:
        """With views, member ``node_id`` answered our gossip: contact, as its own call would
        be. On a link only the owner calls, so without this the owner would never see its
        neighbor's ``last_seen`` move."""
        state = self.table.get(node_id)
        if state is not None and state.alive and node_id in self._peers:
            self._contact(state)

    def _contact(self, state: PeerState) -> None:
        """The member of ``state`` was in contact now: listed as held (a contact may have
        brought a new record), ``peer.heartbeat`` with ``last_seen`` now (a copy: the record
        held may be shared, see :meth:`PeerState.hold`). ``node.peers`` shows ``last_seen``
        from the table's ``heard``, which the contact moved: the listing keeps no copy (that
        would be one ``Peer`` more per member ever in contact, about 150 per node after a
        start of 200)."""
        self._peers[state.peer.id] = state.peer
        self.hub.publish(PeerHeartbeat(self._seen_now(state)))

    def _last_heard(self, peer: Peer, heard: float | None) -> Peer:
        """``peer`` with ``last_seen`` the latest news of its life here (the table's
        ``heard``), as ``node.peers`` showed it: the record held may be the copy the nodes of
        this process share, with the time the first of them took it."""
        if heard is None:
            return peer
        wall = self.config.wall_clock()
        return as_heard(peer, heard, self._members.shift(self._now(), wall), wall)

    def _seen_now(self, state: PeerState) -> Peer:
        """The member of ``state`` as ``node.peers`` shows it now (``last_seen`` now)."""
        return replace(state.peer, last_seen=self.config.wall_clock())

    def _take_answer_record(self, dialed: Peer, data: Any) -> None:
        """The record a gossip partner answered with: taken if it is the partner's, newer than
        the one held, and checks (it may move or rename the partner)."""
        state = self.table.get(dialed.id)
        try:
            proof = proof_in(data)
            if proof is None or state is None or proof.seq <= state.seq:
                return
            peer = Peer.from_dict(data)
        except (ProtocolError, MalformedProof):
            return
        if peer.id != dialed.id or not self.config.admits(peer):
            return
        if not self.trust.check(peer, proof):
            self.trust.note("bad_signature", f"{_fmt(dialed)} answered a bad peer record")
            return
        now = self._now()
        if not same_address(peer, dialed):  # it moved: verify the new address first
            self._after(self.table.claim_signed(peer, proof, now, direct=True), peer.id, peer)
            return
        self._after(self.table.signed(peer, proof, now, now=now), peer.id, peer)

    async def _heartbeat(self, peer: Peer, interval: float) -> None:
        self.messages_sent += 1
        try:
            await self.caller.call(
                peer.address,
                peer.port,
                "_synapse.heartbeat",
                [self._record().to_dict()],
                {},
                timeout=self._call_timeout(interval),
            )
        except (SynapseError, OSError) as exc:
            log.debug("heartbeat to %s failed: %s", _fmt(peer), exc)
            return
        finally:
            self._outstanding.discard(peer.id)
        self.table.responded(peer.id, self._now())

    async def join(self) -> None:
        """Join every seed now (concurrently); raise :class:`JoinError` if none answered."""
        await self.seeds.join()


_HEX_SUM = re.compile("[0-9a-f]{32}")


def _fmt(peer: Peer) -> str:
    return format_address(peer.address, peer.port)
