"""Gossip, sans-IO: digest entries, reading a digest, and the choice of gossip partners.

A *digest* lists members and how long ago the sender last heard from each one directly
(``age``, seconds). :func:`read_digest` turns a received digest into decisions for the peer
table, given what the table knows; :class:`PartnerRotation` picks the next gossip partners.
Nothing here does I/O or reads a clock: times are the caller's ``now``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ProtocolError, RemoteError
from ..types import NodeKind, Peer
from ._table import PeerState

__all__ = [
    "MAX_DIGEST",
    "Claim",
    "Heard",
    "PartnerRotation",
    "Verified",
    "digest_entry",
    "read_digest",
]

#: At most this many members in one digest (sampled when there are more).
MAX_DIGEST = 256

_KIND_VALUES: dict[Any, str] = {kind: kind.value for kind in NodeKind}


def digest_entry(peer: Peer, age: float, legacy: bool) -> dict[str, Any]:
    """A digest entry: the peer dict without ``last_seen``, plus ``age`` and ``legacy``
    (built directly, in ``Peer.to_dict``'s key order: digests are built for every gossip
    message)."""
    return {
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


def build_digest(
    states: list[PeerState], now: float, rng: random.Random, limit: int = MAX_DIGEST
) -> list[dict[str, Any]]:
    """Entries for ``states`` (sampled down to ``limit``), ages computed at ``now``: a cached
    age would make a silent member look recently heard."""
    if len(states) > limit:
        states = rng.sample(states, limit)
    return [digest_entry(s.peer, now - s.heard, s.legacy) for s in states]


@dataclass(frozen=True, slots=True)
class Heard:
    """A known, alive member at its known address was heard by the sender at ``when``."""

    node_id: str
    when: float


@dataclass(frozen=True, slots=True)
class Verified:
    """A member new to us (or offline here), vouched for by a trusted sender."""

    peer: Peer
    when: float
    legacy: bool


@dataclass(frozen=True, slots=True)
class Claim:
    """A member to verify ourselves before trusting it."""

    peer: Peer


Decision = Heard | Verified | Claim


def read_digest(
    members: Any,
    *,
    now: float,
    skip: Iterable[str],
    known: Mapping[str, PeerState],
    peer_timeout: float,
    admits: Callable[[Peer], bool],
    trusted: bool,
) -> list[Decision]:
    """Decisions for a received digest (malformed entries are skipped, at most
    :data:`MAX_DIGEST` are read).

    From a ``trusted`` sender (one we dialed at its verified address, or that called us from
    it) a member new to us is taken as verified: that is how news spreads without every node
    dialing every newcomer. From anyone else members are only claims to verify. Entries for
    ``skip`` ids (the sender, ourselves), members not :func:`admits`, and members the sender
    has not heard from within ``peer_timeout`` are ignored.
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
            and state.alive
            and item.get("address") == state.peer.address
            and item.get("port") == state.peer.port
        ):  # the common case, without building a Peer
            out.append(Heard(node_id, now - age))
            continue
        if age >= peer_timeout:
            continue
        try:
            peer = Peer.from_dict(item)
        except (ProtocolError, RemoteError, ValueError, TypeError):
            continue
        if not admits(peer):
            continue
        if trusted and (state is None or not state.alive):
            out.append(Verified(peer, now - age, item.get("legacy") is True))
        else:
            out.append(Claim(peer))
    return out


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
