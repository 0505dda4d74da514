"""Gossip, sans-IO: digest entries, reading a digest, and the choice of gossip partners.

A *digest* lists members and how long ago the sender last heard from each one directly
(``age``, seconds). :func:`read_digest` turns a received digest into decisions for the peer
table, given what the table knows; :class:`PartnerRotation` picks the next gossip partners.
Nothing here does I/O or reads a clock: times are the caller's ``now``.

An entry of a member that signs its record carries the proof (``seq``, ``key``, ``sig``, see
:mod:`._signing`). Third-party news is weighed by it: a signed entry changes or adds a member
only if its signature checks and its ``seq`` is newer than the record held. An entry that is
not newer is news of life only within the table's window after the newest record reached us
(:attr:`._table.PeerTable.indirect_window`): a dead member's last record cannot keep it alive.
Unsigned entries never touch a member held signed, and are used at all only where the caller
allows (no swarm secret, an id never seen verified).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import ProtocolError, RemoteError
from ..types import NodeKind, Peer
from ._signing import MalformedProof, RecordProof, proof_in
from ._table import PeerState

__all__ = [
    "MAX_COMPACT",
    "MAX_DIGEST",
    "Claim",
    "CompactReading",
    "Heard",
    "PartnerRotation",
    "Refreshed",
    "Rejected",
    "Update",
    "Verified",
    "compact_entry",
    "digest_entry",
    "read_compact",
    "read_digest",
]

#: At most this many members in one digest (sampled when there are more).
MAX_DIGEST = 256
#: At most this many compact entries in one message (sampled when there are more).
MAX_COMPACT = 1024

_KIND_VALUES: dict[Any, str] = {kind: kind.value for kind in NodeKind}


def digest_entry(
    peer: Peer, age: float, legacy: bool, proof: RecordProof | None = None
) -> dict[str, Any]:
    """A digest entry: the peer dict without ``last_seen``, plus ``age`` and ``legacy`` and,
    for a signed record, ``seq``/``key``/``sig`` (built directly, in ``Peer.to_dict``'s key
    order: digests are built for every gossip message)."""
    entry = {
        "id": peer.id,
        "address": peer.address,
        "port": peer.port,
        "swarm": peer.swarm,
        "team": peer.team,
        "name": peer.name,
        "kind": _KIND_VALUES.get(peer.kind) or str(peer.kind),
        "capabilities": list(peer.capabilities),
        "age": round(age, 3) if age > 0.0 else 0.0,
        "legacy": legacy,
    }
    if proof is not None:
        entry["seq"] = proof.seq
        entry["key"] = proof.key
        entry["sig"] = proof.sig
        if proof.extras:
            entry.update(proof.extras.to_wire())
    return entry


def build_digest(
    states: list[PeerState],
    now: float,
    rng: random.Random,
    limit: int = MAX_DIGEST,
    first: Collection[str] = (),
) -> list[dict[str, Any]]:
    """Entries for ``states`` (sampled down to ``limit``: the ids in ``first`` before a
    random sample of the rest), ages computed at ``now``: a cached age would make a silent
    member look recently heard."""
    states = sample_states(states, rng, limit, first)
    return [digest_entry(s.peer, now - s.heard, s.legacy, s.proof) for s in states]


def sample_states(
    states: list[PeerState], rng: random.Random, limit: int, first: Collection[str] = ()
) -> list[PeerState]:
    """``states`` if there are at most ``limit``, else the ids in ``first`` before a random
    sample of the rest."""
    if len(states) <= limit:
        return states
    if not first:
        return rng.sample(states, limit)
    chosen = [s for s in states if s.peer.id in first][:limit]
    rest = [s for s in states if s.peer.id not in first]
    return chosen + rng.sample(rest, min(len(rest), limit - len(chosen)))


def named_seq(state: PeerState, now: float, recheck_after: float) -> int:
    """The ``seq`` a compact entry names for a member held signed: the record held, or
    within ``recheck_after`` of its arrival the newer re-signing seen (:attr:`PeerState.seen`),
    which partners then need not send; past it, the record held, so that they send the
    newer one, which is then checked."""
    held = -1 if state.proof is None else state.proof.seq
    if state.seen > held and now - state.record_at < recheck_after:
        return state.seen
    return held


def compact_entry(state: PeerState, now: float, recheck_after: float = 0.0) -> list[Any]:
    """A compact digest entry of a member held signed: ``[id, seq, age]``. It names the
    record by its ``seq`` (:func:`named_seq`): a receiver holding that record takes it as news
    of life, one holding an older one (or none) asks for the full entry."""
    age = now - state.heard
    return [state.peer.id, named_seq(state, now, recheck_after), age if age > 0.0 else 0.0]


@dataclass(slots=True)
class CompactReading:
    """What a list of compact entries says (:func:`read_compact`)."""

    #: News of life of records we hold (the table caps it, as for full entries).
    heard: list[Heard]
    #: Ids the sender holds a newer record of, or that we do not hold signed (heard by the
    #: sender within ``peer_timeout``; at most :data:`MAX_DIGEST`).
    want: list[str]
    #: Every well-formed entry's id and ``seq``: what the sender holds.
    listed: dict[str, int]
    #: How many members listed (once each, the sender and us aside) are alive here, held
    #: signed, and named by the ``seq`` we would name (:func:`named_seq`); how many were
    #: listed (once each, the sender and us aside; -1: one was listed twice by different
    #: ``seq``). All of them, with nothing wanted: the sender holds what we hold of them
    #: (see ``Membership.in_step``).
    matched: int = 0
    distinct: int = 0
    #: With ``fresh_within``: compact entries of the members listed that we heard from later
    #: than the sender did, whose record reached us within ``fresh_within`` seconds (news of
    #: life the sender's table would take: see ``PeerTable.indirect_window``).
    fresher: list[list[Any]] = field(default_factory=list)


def read_compact(
    entries: Any,
    *,
    now: float,
    skip: Iterable[str],
    known: Mapping[str, PeerState],
    peer_timeout: float,
    trusted: bool,
    limit: int = MAX_COMPACT,
    recheck_after: float = 0.0,
    fresh_within: float | None = None,
) -> CompactReading:
    """Read compact entries (``[id, seq, age]``, see :func:`compact_entry`; malformed ones
    are skipped, at most ``limit`` are read).

    An entry of a member held signed is news of life, as a full entry's (:func:`read_digest`;
    the table caps it within its window after the newest record reached us): of an alive
    member from anyone, whatever record the sender holds (members re-sign all the time, so
    neighbors often hold different ones), of an offline one only from a ``trusted`` sender
    that holds the same record and heard it within ``peer_timeout``. Nothing else changes by
    a compact entry (it carries no signature): a newer record, or a member we do not hold
    signed, is *wanted*, and travels in full later."""
    reading = CompactReading([], [], {})
    if not isinstance(entries, list):
        return reading
    skipped = set(skip)
    heard, want, listed, fresher = reading.heard, reading.want, reading.listed, reading.fresher
    matched = distinct = 0
    conflict = False
    for item in entries[:limit]:
        if type(item) is not list or len(item) != 3:
            continue
        node_id, seq, age = item
        if type(node_id) is not str or type(seq) is not int or seq < 0:
            continue
        if type(age) not in (float, int) or not 0 <= age < 1e9:  # bool is not int here
            continue
        first = (before := listed.get(node_id)) is None
        listed[node_id] = seq
        if node_id in skipped:
            continue
        if first:
            distinct += 1
        elif before != seq:
            conflict = True  # (listed twice, by different records: never in step)
        state = known.get(node_id)
        if state is None or state.proof is None:
            if age < peer_timeout and len(want) < MAX_DIGEST:
                want.append(node_id)
            continue
        when = now - age
        if when > state.heard and (  # else old news: the table would ignore it
            state.alive or (trusted and seq == state.proof.seq and age < peer_timeout)
        ):
            heard.append(Heard(node_id, when))
        named = named_seq(state, now, recheck_after)  # the record held, or one seen lately
        if seq > named and age < peer_timeout and len(want) < MAX_DIGEST:
            want.append(node_id)
        elif seq == named and first and state.alive and not state.legacy:
            matched += 1
        if (
            fresh_within is not None
            and state.alive
            and not state.legacy
            and state.heard > when
            and now - state.record_at < fresh_within
            and len(fresher) < MAX_DIGEST
        ):
            fresher.append(compact_entry(state, now, recheck_after))
    reading.matched = matched
    reading.distinct = -1 if conflict else distinct
    return reading


@dataclass(frozen=True, slots=True)
class Heard:
    """A known member at its known address was heard by the sender at ``when`` (an offline
    one only from a trusted sender: it may be back)."""

    node_id: str
    when: float
    #: A trusted sender relayed a re-signing with this ``seq`` (not checked; -1: none).
    seen: int = -1


@dataclass(frozen=True, slots=True)
class Verified:
    """A member new to us (or offline here), vouched for by a trusted sender."""

    peer: Peer
    when: float
    legacy: bool
    proof: RecordProof | None = None


@dataclass(frozen=True, slots=True)
class Claim:
    """A member to verify ourselves before trusting it."""

    peer: Peer
    proof: RecordProof | None = None


@dataclass(frozen=True, slots=True)
class Update:
    """A newer signed record of an alive member we hold: its content (maybe a new address),
    and news that it was alive at ``when``."""

    peer: Peer
    proof: RecordProof
    when: float


@dataclass(frozen=True, slots=True)
class Refreshed:
    """A newer signed record of an alive member with the content held (a periodic
    re-signing), its signature checked over the record held: only the proof changes, and news
    that it was alive at ``when``."""

    node_id: str
    proof: RecordProof
    when: float


@dataclass(frozen=True, slots=True)
class Rejected:
    """An entry refused for a bad signature (counted and logged by the caller)."""

    node_id: str
    reason: str


Decision = Heard | Verified | Claim | Update | Refreshed | Rejected


def _never(peer: Peer, proof: RecordProof) -> bool:
    return False


def _always(node_id: str) -> bool:
    return True


def read_digest(
    members: Any,
    *,
    now: float,
    skip: Iterable[str],
    known: Mapping[str, PeerState],
    peer_timeout: float,
    admits: Callable[[Peer], bool],
    trusted: bool,
    check: Callable[[Peer, RecordProof], bool] = _never,
    unsigned: Callable[[str], bool] = _always,
    recheck_after: float = 0.0,
) -> list[Decision]:
    """Decisions for a received digest (malformed entries are skipped, at most
    :data:`MAX_DIGEST` are read).

    From a ``trusted`` sender (one we dialed at its verified address, or that called us from
    it) a member new to us is taken as verified: that is how news spreads without every node
    dialing every newcomer. From anyone else members are only claims to verify. Entries for
    ``skip`` ids (the sender, ourselves), members not :func:`admits`, and members the sender
    has not heard from within ``peer_timeout`` are ignored.

    Signed entries are checked with ``check(peer, proof)`` (only when newer than the record
    held); a bad one becomes :class:`Rejected`. A newer record with the content already held
    (a periodic re-signing) is checked only if the held one arrived ``recheck_after`` seconds
    ago or more (``PeerState.record_at``), or if the member is suspected (it refutes the
    suspicion); until then it is only news of life, which the table caps. Unsigned entries are
    ignored for members held signed and for ids where ``unsigned(id)`` is false.
    """
    if not isinstance(members, list):
        return []
    skipped = set(skip)
    out: list[Decision] = []
    for item in members[:MAX_DIGEST]:
        if type(item) is not dict:
            continue
        node_id, age = item.get("id"), item.get("age", 0.0)
        if type(node_id) is not str or node_id in skipped:
            continue
        if type(age) not in (float, int) or not 0 <= age < 1e9:  # bool is not int here
            continue
        state = known.get(node_id)
        if (
            state is not None
            and (state.alive or (trusted and state.proof is not None and age < peer_timeout))
            and item.get("address") == state.peer.address
            and item.get("port") == state.peer.port
        ):  # the common case, news of life of a member at its address, without building a Peer
            held, seq = state.proof, item.get("seq")
            if held is not None and type(seq) is int and "sig" in item:
                if seq <= held.seq or (
                    state.alive
                    and not state.suspected  # (a newer record refutes: it is checked)
                    and now - state.record_at < recheck_after
                    and _same_content(item, state.peer, held_extras(state))
                ):
                    seen = seq if trusted and seq > max(held.seq, state.seen) else -1
                    if now - age > state.heard or seen >= 0:  # else old news (ignored)
                        out.append(Heard(node_id, now - age, seen))  # the table caps it
                    continue
            elif held is None and "sig" not in item:
                if unsigned(node_id):
                    out.append(Heard(node_id, now - age))
                continue
        try:
            proof = proof_in(item)
        except MalformedProof as exc:
            out.append(Rejected(node_id, str(exc)))
            continue
        if proof is not None:
            if age >= peer_timeout and (state is None or not state.alive):
                continue
            decision: Decision | None
            if (
                state is not None
                and proof.seq > state.seq
                and _same_content(item, state.peer, held_extras(state))
            ):  # a re-signing
                if not state.alive:  # back (a refuted death notice): the record decides
                    decision = _signed_entry(
                        item, node_id, proof, state, now - age, check, admits, trusted=trusted
                    )
                elif now - state.record_at < recheck_after and not state.suspected:
                    seen = proof.seq if trusted and proof.seq > state.seen else -1
                    decision = Heard(node_id, now - age, seen)
                elif check(state.peer, proof):  # the content held is the content signed
                    decision = Refreshed(node_id, proof, now - age)
                else:
                    decision = Rejected(node_id, "bad signature")
            else:
                decision = _signed_entry(
                    item, node_id, proof, state, now - age, check, admits, trusted=trusted
                )
            if decision is not None:
                out.append(decision)
            continue
        if state is not None and state.proof is not None:
            continue  # held signed: an unsigned entry says nothing about it
        if not unsigned(node_id):
            continue
        if (
            state is not None
            and state.alive
            and item.get("address") == state.peer.address
            and item.get("port") == state.peer.port
        ):  # the common case, without building a Peer
            out.append(Heard(node_id, now - age))
            continue
        if age >= peer_timeout:
            continue
        peer = _peer(item)
        if peer is None or not admits(peer):
            continue
        if trusted and (state is None or not state.alive):
            out.append(Verified(peer, now - age, item.get("legacy") is True))
        else:
            out.append(Claim(peer))
    return out


def held_extras(state: PeerState) -> dict[str, Any]:
    """The extras (relays) of the record held for ``state``, as they travel."""
    return {} if state.proof is None else state.proof.extras.to_wire()


def _same_content(item: dict[str, Any], peer: Peer, extras: dict[str, Any]) -> bool:
    """Whether digest entry ``item`` describes ``peer`` with ``extras`` exactly (the signed
    fields)."""
    return (
        item.get("relays", []) == extras.get("relays", [])
        and item.get("relay", False) == extras.get("relay", False)
        and item.get("address") == peer.address
        and item.get("port") == peer.port
        and item.get("name", "") == peer.name
        and item.get("swarm") == peer.swarm
        and item.get("team") == peer.team
        and item.get("kind", "node") == peer.kind.value
        and item.get("capabilities", []) == peer.capabilities
    )


def _peer(item: dict[str, Any]) -> Peer | None:
    try:
        return Peer.from_dict(item)
    except (ProtocolError, RemoteError, ValueError, TypeError):
        return None


def _signed_entry(
    item: dict[str, Any],
    node_id: str,
    proof: RecordProof,
    state: PeerState | None,
    when: float,
    check: Callable[[Peer, RecordProof], bool],
    admits: Callable[[Peer], bool],
    *,
    trusted: bool,
) -> Decision | None:
    if state is not None and proof.seq <= state.seq:
        # Not news of the record; news of life at its known address, which the table takes
        # only within its window after the newest record reached us.
        if (
            state.alive
            and item.get("address") == state.peer.address
            and (item.get("port") == state.peer.port)
        ):
            return Heard(node_id, when)
        return None
    peer = _peer(item)
    if peer is None or not admits(peer):
        return None
    if not check(peer, proof):
        return Rejected(node_id, "bad signature")
    if state is None:
        return Verified(peer, when, False, proof) if trusted else Claim(peer, proof)
    same_address = state.peer.address == peer.address and state.peer.port == peer.port
    if not same_address:
        return Claim(peer, proof)  # a move (or a signed address not held): dial it first
    if not state.alive and not trusted:
        return Claim(peer, proof)  # back, by an untrusted word: dial it
    return Update(peer, proof, when)  # at its address (back: vouched for by a trusted member)


class PartnerRotation:
    """The next gossip partners, round-robin through a shuffled member list (reshuffled each
    pass, as SWIM does): every member is contacted once per pass, so a dead member is probed
    within ``members / fanout`` rounds and a pooled connection to a partner is reused instead
    of reopened."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._order: list[str] = []  # partners still to visit in this pass

    def pick(
        self, count: int, candidates: Callable[[], list[str]], usable: Callable[[str], bool]
    ) -> list[str]:
        """Up to ``count`` distinct ids: ``candidates()`` lists the members to visit (called
        when a pass starts), ``usable(id)`` says whether one can be picked now."""
        picked: list[str] = []
        refilled = False
        while len(picked) < count:
            if not self._order:
                if refilled:
                    break
                self._order = candidates()
                self._rng.shuffle(self._order)
                refilled = True
                if not self._order:
                    break
            node_id = self._order.pop()
            if usable(node_id) and node_id not in picked:
                picked.append(node_id)
        return picked
