"""The peer table, sans-IO: who is alive, by what evidence, and what to do about it.

Times are the caller's monotonic clock (``now`` parameters); nothing here does I/O.

A peer enters the table as an unverified *candidate* when someone claims it exists (a join, a
heartbeat, a seed's peer list, a gossip digest, mDNS). It is dialed only to be *verified*: its
claimed address must answer with its claimed node id. Only verified peers are alive, listed,
heartbeated and gossiped to. A claim that a known peer moved to another address is verified the
same way before the record moves (a newer signed record at another address too: it becomes a
candidate, and :meth:`PeerTable.verified` applies it once the address answers). Candidates
are bounded and verifications rate-limited per address, so forged claims cannot turn the node
into a reflector.

A member whose record arrived signed (:mod:`._signing`) is *locked*: its ``proof`` is kept, and
its address and descriptive fields change only through :meth:`PeerTable.signed` with a newer
``seq``; proven contact may still show it alive (:meth:`PeerTable.contact`) but never rewrite
it. ``verified`` says the member proved its key (a signature, or its secure channel).
Third parties' news of a locked member's life counts only within ``indirect_window`` seconds
of its newest record reaching us: members re-sign often, so a member whose records stopped
(dead) goes offline whatever others keep saying.

With partial views a member need not re-sign to stay listed (``ages``): it stays alive until
it is *declared dead* (:meth:`PeerTable.declared_dead`, a neighbor watching its link announced
it) naming the record held; only a newer record it signs brings it back (a tombstone:
third parties' news of the dead record's life is ignored).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal

from ..types import Peer
from ._signing import RecordProof, held_peer

__all__ = ["Candidate", "PeerState", "PeerTable", "Verdict"]

Verdict = Literal["heartbeat", "joined", "candidate", "ignored", "full", "updated"]


@dataclass(slots=True)
class PeerState:
    """What the table knows about one verified peer."""

    peer: Peer
    heard: float  # monotonic time of the last evidence that it is alive
    legacy: bool  # speaks only the synapse-p2p 2.5.0 protocol (no gossip)
    alive: bool = True
    offline_since: float = math.nan
    proof: RecordProof | None = None  # the member's signature over ``peer`` (locked)
    verified: bool = False  # it proved its key: a valid signature or its secure channel
    record_at: float = -math.inf  # when the record held (``proof``) reached us
    #: The newest ``seq`` of a re-signing with the content held that a trusted sender relayed
    #: and that was not checked (it came within ``recheck_after`` of the record held): what
    #: compact digests name, so that partners do not send it again (-1: none).
    seen: int = -1
    #: The ``seq`` of the record a death notice named (:meth:`PeerTable.declared_dead`): only
    #: a newer record, or the member itself, brings it back (-1: none).
    dead_seq: int = -1
    #: The ``seq`` of the record a suspicion named (:meth:`PeerTable.suspect`): the member is
    #: suspected while that is the record held; a newer record lifts it (-1: none).
    suspect_seq: int = -1
    #: When the suspicion began here (local monotonic time).
    suspect_since: float = math.nan
    #: The ``seq`` this member counts by in :attr:`PeerTable.records_sum` (-1: not counted).
    tallied: int = -1
    #: With views, the newest ``seq`` of this member's record a push brought here (see
    #: ``Membership.take_push``; -1: none).
    pushed: int = -1

    @property
    def seq(self) -> int:
        """The sequence number of the signed record held (-1: none)."""
        return -1 if self.proof is None else self.proof.seq

    @property
    def suspected(self) -> bool:
        """Alive, and a suspicion names the record held (see :meth:`PeerTable.suspect`)."""
        return self.alive and self.suspect_seq >= 0 and self.suspect_seq == self.seq

    def went_offline(self, now: float) -> None:
        """Offline from ``now`` (back alive, it starts unsuspected). A table's member goes
        offline through :meth:`PeerTable._went_offline`, which counts the change."""
        self.alive = False
        self.lift_suspicion()
        self.offline_since = now

    def lift_suspicion(self) -> None:
        """No suspicion names its record any more."""
        self.suspect_seq = -1

    def publish(self) -> None:
        """Keep ``peer.verified`` in step with :attr:`verified`."""
        if self.peer.verified != self.verified:
            self.peer = replace(self.peer, verified=self.verified)

    def hold(self, seen: float) -> None:
        """:meth:`publish` a peer just taken, with ``last_seen`` ``seen`` (the wall clock
        now: never the sender's), or, taken with its signed record, the copy the nodes of
        this process share if another holds it (:func:`~._signing.held_peer`: its
        ``last_seen`` is when that node took it)."""
        self.publish()
        if self.proof is not None:
            self.peer = held_peer(self.peer, self.proof, seen)
        elif self.peer.last_seen != seen:
            self.peer = replace(self.peer, last_seen=seen)


@dataclass(slots=True)
class Candidate:
    """A peer someone claimed exists, waiting for verification."""

    peer: Peer
    since: float
    direct: bool  # the claim came from the peer itself (join, heartbeat, gossip sender)
    proof: RecordProof | None = None  # the claimed record is signed by the peer (checked)


@dataclass(frozen=True, slots=True)
class SignedCandidate:
    peer: Peer
    proof: RecordProof


@dataclass
class PeerTable:
    """Verified peers plus bounded candidates; see the module documentation."""

    self_id: str
    peer_timeout: float
    max_peers: int = 1024
    max_candidates: int = 256
    offline_retention: float = 600.0
    retry_after: float = 30.0
    #: Seconds after a locked member's newest record arrived during which third parties may
    #: still report it alive (``None``: three times ``peer_timeout``).
    indirect_window: float | None = None
    peers: dict[str, PeerState] = field(default_factory=dict)
    candidates: dict[tuple[str, str, int], Candidate] = field(default_factory=dict)
    _address_backoff: dict[tuple[str, int], float] = field(default_factory=dict)
    _failures: dict[tuple[str, int], int] = field(default_factory=dict)
    full_warned: bool = False
    #: Which alive members go offline after ``peer_timeout`` of silence (``None``: all). With
    #: partial views, members in views that no link of ours watches stay until declared dead.
    ages: Callable[[PeerState], bool] | None = None
    #: Counts the changes a round's census (``Membership._census``) depends on: members added
    #: or forgotten, gone offline or back, their record first signed or their kind changed.
    #: A census taken at the same count still holds (its lists name the same states).
    changes: int = 0
    #: The alive members held signed (not 2.5.0 nodes), summed up as they change: how many,
    #: and the sum of :func:`record_hash` of each one's id and ``seq`` (see :meth:`summary`).
    records_count: int = 0
    records_sum: int = 0
    #: The wall clock (epoch seconds) that stamps a peer's ``last_seen`` as it is taken.
    wall_clock: Callable[[], float] = time.time
    #: When the newest record held reached us (local monotonic time).
    newest_record: float = -math.inf

    # -- queries ------------------------------------------------------------------------------

    def _back(self, state: PeerState) -> None:
        state.alive = True
        state.offline_since = math.nan
        self.changes += 1
        self._retally(state)

    def _went_offline(self, state: PeerState, now: float) -> None:
        state.went_offline(now)
        self.changes += 1
        self._retally(state)

    def _retally(self, state: PeerState) -> None:
        """Count ``state`` in :attr:`records_sum` by the record it holds now (or not)."""
        proof = state.proof
        seq = proof.seq if proof is not None and state.alive and not state.legacy else -1
        old = state.tallied
        if seq == old:
            return
        node_id = state.peer.id
        if old >= 0:
            self.records_sum -= record_hash(node_id, old)
            self.records_count -= 1
        if seq >= 0:
            self.records_sum += record_hash(node_id, seq)
            self.records_count += 1
        state.tallied = seq

    def _forget(self, state: PeerState) -> None:
        """``state`` leaves the table."""
        del self.peers[state.peer.id]
        self.changes += 1
        if state.tallied >= 0:
            self.records_sum -= record_hash(state.peer.id, state.tallied)
            self.records_count -= 1
            state.tallied = -1

    def summary(self, *, leave_out: str | None = None) -> tuple[int, int]:
        """How many alive members are held signed (not 2.5.0 nodes), and the sum of their
        :func:`record_hash` modulo 2**128: two tables that give the same summary hold the
        same records of the same members (but by a collision). ``leave_out``: without that
        member."""
        count, total = self.records_count, self.records_sum
        state = self.peers.get(leave_out) if leave_out is not None else None
        if state is not None and state.tallied >= 0:
            count -= 1
            total -= record_hash(state.peer.id, state.tallied)
        return count, total % (1 << 128)

    @property
    def news_window(self) -> float:
        """Seconds after a locked member's newest record arrived during which third parties'
        news of its life counts (``indirect_window``, or three times ``peer_timeout``)."""
        window = self.indirect_window
        return 3 * self.peer_timeout if window is None else window

    def alive(self) -> list[PeerState]:
        return [s for s in self.peers.values() if s.alive]

    def get(self, node_id: str) -> PeerState | None:
        return self.peers.get(node_id)

    def signed_candidate(self, node_id: str) -> SignedCandidate | None:
        """The newest candidate of ``node_id`` that carries its checked signature, if any."""
        best: SignedCandidate | None = None
        for candidate in self.candidates.values():
            proof = candidate.proof
            if (
                candidate.peer.id == node_id
                and proof is not None
                and (best is None or proof.seq > best.proof.seq)
            ):
                best = SignedCandidate(candidate.peer, proof)
        return best

    # -- evidence -------------------------------------------------------------------------------

    def claim(self, peer: Peer, now: float, *, direct: bool) -> Verdict:
        """Someone says ``peer`` exists at ``peer.address:peer.port``.

        ``direct`` claims come from the peer itself (it called us), so for a known peer at its
        known address they count as evidence of life. Returns what happened: ``heartbeat``
        (known, refreshed), ``joined`` (a known offline peer is back, at the same address),
        ``candidate`` (needs verification), ``ignored`` or ``full``.
        """
        if peer.id == self.self_id:
            return "ignored"
        state = self.peers.get(peer.id)
        if state is not None and state.proof is not None:
            return "ignored"  # locked: only signed records (or proven contact) touch it
        if state is not None and same_address(state.peer, peer):
            if not direct:
                if state.alive:
                    return "ignored"
                return self._add_candidate(peer, now, direct=False)  # maybe back: verify
            state.peer = _refresh(state.peer, peer)
            state.heard = now
            if state.alive:
                return "heartbeat"
            self._back(state)
            return "joined"
        if state is None and len(self.peers) >= self.max_peers:
            return "full"
        return self._add_candidate(peer, now, direct=direct)

    def contact(self, node_id: str, now: float) -> Verdict:
        """Proven direct contact from known member ``node_id`` (its secure channel, or its
        current signed record): alive at ``now``, content untouched. ``heartbeat``,
        ``joined`` (it was offline) or ``ignored`` (unknown)."""
        state = self.peers.get(node_id)
        if state is None:
            return "ignored"
        state.heard = max(state.heard, now)
        if state.alive:
            return "heartbeat"
        self._back(state)
        return "joined"

    def signed(self, peer: Peer, proof: RecordProof, heard: float | None, *, now: float) -> Verdict:
        """A checked signed record of a known member, newer than the one held (else
        ``ignored``): take its content and address. ``heard`` is when it was last known alive
        (``None``: the record says nothing of liveness: ``updated``). An offline member stays
        offline unless ``heard`` is given; ``joined`` if it moved or came back."""
        state = self.peers.get(peer.id)
        if state is None or proof.seq <= state.seq:
            return "ignored"
        moved = not same_address(state.peer, peer)
        state.peer = peer
        if state.proof is None:
            self.changes += 1
        state.proof = proof
        state.record_at = now
        self.newest_record = max(self.newest_record, now)
        self._retally(state)
        state.verified = True
        state.hold(self.wall_clock())
        if heard is None:
            return "updated"
        state.heard = max(state.heard, heard) if state.alive else heard
        if not state.alive:
            self._back(state)
            return "joined"
        return "joined" if moved else "heartbeat"

    def refreshed(self, node_id: str, proof: RecordProof, heard: float, *, now: float) -> Verdict:
        """A checked newer record of alive member ``node_id`` with the content held (a
        periodic re-signing): the proof changes, not the peer; news of life at ``heard``.
        ``heartbeat``, or ``ignored`` (unknown, offline, or not newer)."""
        state = self.peers.get(node_id)
        if state is None or not state.alive or proof.seq <= state.seq:
            return "ignored"
        if state.proof is None:
            self.changes += 1
        state.proof = proof
        state.record_at = now
        self.newest_record = max(self.newest_record, now)
        self._retally(state)
        if not state.verified:
            state.verified = True
            state.publish()
        # The same peer under the new signature: shared with the nodes that take it next.
        state.peer = held_peer(state.peer, proof)
        state.heard = max(state.heard, heard)
        return "heartbeat"

    def _add_candidate(
        self, peer: Peer, now: float, *, direct: bool, proof: RecordProof | None = None
    ) -> Verdict:
        key = (peer.id, peer.address, peer.port)
        if key in self.candidates:
            if direct:
                self.candidates[key].direct = True
            if proof is not None:
                old = self.candidates[key]
                if old.proof is None or old.proof.seq < proof.seq:
                    old.peer, old.proof = peer, proof
            return "candidate"
        if len(self.candidates) >= self.max_candidates:
            # Drop the oldest indirect claim to make room; direct ones are worth more.
            victims = [k for k, c in self.candidates.items() if not c.direct] or list(
                self.candidates
            )
            del self.candidates[victims[0]]
        self.candidates[key] = Candidate(peer, now, direct, proof)
        return "candidate"

    def hint(self, peer: Peer, now: float, proof: RecordProof | None = None) -> Verdict:
        """Dial ``peer``'s address to learn who answers there (an mDNS sighting, or a retry of
        an offline member with the record we hold): a candidate even for a member held
        signed; verification decides what to believe."""
        if peer.id == self.self_id:
            return "ignored"
        if peer.id not in self.peers and len(self.peers) >= self.max_peers:
            return "full"
        return self._add_candidate(peer, now, direct=False, proof=proof)

    def claim_signed(self, peer: Peer, proof: RecordProof, now: float, *, direct: bool) -> Verdict:
        """A checked signed record of a member we do not hold signed (unknown, unsigned so
        far, or offline at another address): verify its address by dialing it first."""
        if peer.id == self.self_id:
            return "ignored"
        state = self.peers.get(peer.id)
        if state is not None and proof.seq <= state.seq:
            return "ignored"
        if state is None and len(self.peers) >= self.max_peers:
            return "full"
        return self._add_candidate(peer, now, direct=direct, proof=proof)

    def heard_indirectly(
        self, node_id: str, heard: float, *, now: float = math.inf, revive: bool = False
    ) -> Verdict:
        """Another peer reports direct contact with ``node_id`` at local time ``heard`` (for a
        locked member, capped at ``indirect_window`` after its newest record arrived). With
        ``revive`` (a trusted sender), an offline locked member heard within ``peer_timeout``
        of ``now`` is alive again: ``joined``."""
        state = self.peers.get(node_id)
        if state is None or not (state.alive or (revive and state.proof is not None)):
            return "ignored"
        if not state.alive and state.dead_seq >= state.seq:
            return "ignored"  # declared dead: only a newer record (or itself) revives it
        if state.proof is not None:
            window = self.news_window
            heard = min(heard, state.record_at + window)
        if heard <= state.heard:
            return "ignored"
        if state.alive:
            state.heard = heard
            return "heartbeat"
        if now - heard >= self.peer_timeout:
            return "ignored"
        state.heard = heard
        self._back(state)
        return "joined"

    def responded(self, node_id: str, now: float) -> None:
        """A call we made to ``node_id`` at its verified address succeeded."""
        state = self.peers.get(node_id)
        if state is not None and state.alive:
            state.heard = now

    # -- verification -----------------------------------------------------------------------

    def next_candidates(
        self, now: float, limit: int, busy: set[tuple[str, int]]
    ) -> list[Candidate]:
        """Up to ``limit`` candidates to verify now (one per address, honouring back-off)."""
        out: list[Candidate] = []
        for key, candidate in list(self.candidates.items()):
            address = (candidate.peer.address, candidate.peer.port)
            if address in busy or self._address_backoff.get(address, -math.inf) > now:
                continue
            del self.candidates[key]
            busy.add(address)
            out.append(candidate)
            if len(out) >= limit:
                break
        return out

    def verified(
        self,
        peer: Peer,
        now: float,
        *,
        legacy: bool,
        proof: RecordProof | None = None,
        proven: bool = False,
    ) -> Verdict:
        """``peer``'s address answered with its id (at ``now``, or a trusted peer heard from it
        then): add it, move it, or revive it. ``proof``: its checked signature over ``peer``;
        ``proven``: it proved its key otherwise (its secure channel). A locked member's record
        is replaced only by a newer signed one; otherwise it is only marked alive."""
        self._address_backoff.pop((peer.address, peer.port), None)
        self._failures.pop((peer.address, peer.port), None)
        if peer.id == self.self_id:
            return "ignored"
        state = self.peers.get(peer.id)
        if state is None:
            if len(self.peers) >= self.max_peers:
                return "full"
            state = PeerState(peer, now, legacy, proof=proof, verified=proven or bool(proof))
            if proof is not None:
                state.record_at = now
                self.newest_record = max(self.newest_record, now)
            state.hold(self.wall_clock())
            self.peers[peer.id] = state
            self.changes += 1
            self._retally(state)
            return "joined"
        if state.proof is not None and (proof is None or proof.seq <= state.seq):
            if not same_address(state.peer, peer):
                return "ignored"
            state.verified = state.verified or proven
            state.publish()
            return self.contact(peer.id, now)
        moved = not same_address(state.peer, peer)
        state.peer = peer
        state.heard = now
        if state.legacy != legacy or (state.proof is None) != (proof is None):
            self.changes += 1
        state.legacy = legacy
        state.proof = proof
        if proof is not None:
            state.record_at = now
            self.newest_record = max(self.newest_record, now)
        self._retally(state)
        state.verified = state.verified or proven or proof is not None
        state.hold(self.wall_clock())
        if not state.alive:
            self._back(state)
            return "joined"
        return "joined" if moved else "heartbeat"

    def forgive(self, address: tuple[str, int]) -> None:
        """Dial ``address`` again at once (a new way to reach it was learned)."""
        self._address_backoff.pop(address, None)
        self._failures.pop(address, None)

    def verification_failed(self, address: tuple[str, int], now: float) -> None:
        # Back off per address: 0.5 s, 1 s, 2 s, ... up to ``retry_after``.
        failures = self._failures.get(address, 0) + 1
        self._failures[address] = failures
        self._address_backoff[address] = now + min(self.retry_after, 0.25 * 2**failures)

    # -- time -----------------------------------------------------------------------------------

    def declared_dead(self, node_id: str, seq: int, now: float) -> Peer | None:
        """A trusted member announced that alive member ``node_id`` is dead, naming its
        record ``seq``: offline if that is the record held (returned), else ``None`` (a notice
        of an older record was refuted already; one of a newer record is not ours to judge).
        Only a newer record, or the member's own contact, brings it back."""
        state = self.peers.get(node_id)
        if state is None or state.proof is None or state.seq != seq or state.seen > seq:
            return None  # (``seen``: the member signed a newer record since, it is refuted)
        state.dead_seq = max(state.dead_seq, seq)
        if not state.alive:
            return None
        self._went_offline(state, now)
        return state.peer

    def suspect(self, node_id: str, seq: int, now: float) -> PeerState | None:
        """A member (or this node) suspects alive member ``node_id``, naming its record
        ``seq``: suspected from ``now`` if that is the record held (returned), else ``None``
        (already suspected, or refuted: the record held, or one a trusted member relayed, is
        newer; a notice of a newer record is not ours to judge). A suspected member stays
        alive; a newer record lifts the suspicion."""
        state = self.peers.get(node_id)
        if (
            state is None
            or not state.alive
            or state.proof is None
            or state.seq != seq
            or state.seen > seq
            or state.suspect_seq == seq
        ):
            return None
        state.suspect_seq = seq
        state.suspect_since = now
        return state

    def silenced(self, node_id: str, now: float) -> Peer | None:
        """Alive member ``node_id`` is offline here, for silence this node cannot blame on it
        (no tombstone: third parties' news of life brings it back)."""
        state = self.peers.get(node_id)
        if state is None or not state.alive:
            return None
        self._went_offline(state, now)
        return state.peer

    def expire(self, now: float, census: Census | None = None) -> list[Peer]:
        """Mark peers silent for longer than ``peer_timeout`` offline (those ``ages`` says
        age); forget old ones. With ``census`` (taken this round, see :class:`Census`), only
        the members it lists are looked at: one pass over the table a round, not several."""
        gone: list[Peer] = []
        if census is None:
            ages = self.ages
            aging = [s for s in self.peers.values() if s.alive and (ages is None or ages(s))]
            offline = self.offline()
        else:
            aging, offline = census.aging, census.offline
        for state in aging:
            if state.alive and now - state.heard > self.peer_timeout:
                self._went_offline(state, now)
                gone.append(state.peer)
        for state in offline:
            if not state.alive and now - state.offline_since > self.offline_retention:
                node_id = state.peer.id
                if self.peers.get(node_id) is state:
                    self._forget(state)
        for address, until in list(self._address_backoff.items()):
            if until <= now - self.retry_after:  # long expired: forget the failure count
                del self._address_backoff[address]
                self._failures.pop(address, None)
        for key, candidate in list(self.candidates.items()):
            if now - candidate.since > self.offline_retention:
                del self.candidates[key]
        return gone

    def left(self, node_id: str) -> Peer | None:
        """``node_id`` said goodbye: forget it at once (it is not retried as an offline peer).
        Returns its record, or ``None`` if it was not a live member."""
        state = self.peers.get(node_id)
        if state is None or not state.alive:
            return None
        self._forget(state)
        return state.peer

    def offline(self) -> list[PeerState]:
        return [s for s in self.peers.values() if not s.alive]


@dataclass(slots=True)
class Census:
    """The members of a table by what a round does with them, from one pass over it
    (``Membership._census``): ``legacy`` (alive 2.5.0 nodes: heartbeats), ``offline`` (one is
    retried a round; old ones are forgotten), ``aging`` (alive members whose silence makes
    them offline, :attr:`PeerTable.ages`); ``signed``: how many alive members are held signed
    (not 2.5.0 nodes), which compact digests name by ``seq``."""

    legacy: list[PeerState]
    offline: list[PeerState]
    aging: list[PeerState]
    signed: int = 0


def record_hash(node_id: str, seq: int) -> int:
    """A member's record as a 128-bit number (BLAKE2b of its id and ``seq``), what
    :meth:`PeerTable.summary` sums up."""
    digest = hashlib.blake2b(f"{node_id}:{seq}".encode(), digest_size=16).digest()
    return int.from_bytes(digest, "big")


def same_address(a: Peer, b: Peer) -> bool:
    return a.address == b.address and a.port == b.port


def _refresh(current: Peer, claim: Peer) -> Peer:
    """``current`` with the descriptive fields of a direct claim (never the address)."""
    return replace(
        current,
        name=claim.name,
        kind=claim.kind,
        capabilities=list(claim.capabilities),
        swarm=claim.swarm,
        team=claim.team,
    )
