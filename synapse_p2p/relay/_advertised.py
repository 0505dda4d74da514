"""Routes learned from signed peer records: :class:`AdvertisedRoutes`, sans-IO.

A node reserved on relays says so in its signed record (``relays``, see
:mod:`synapse_p2p._record_extras`). Membership hands every record whose signature checked to
:meth:`AdvertisedRoutes.learned` (never one that failed: a forged ``relays`` breaks the
signature, so it never gets here), and this keeps the node's
:class:`~._dial.RelayTransport` in step: a route from the record's address through its first
relay (then the others, if it fails) to its node id, replaced by a newer record, removed when
a newer record drops its relays or the member leaves (:meth:`forgotten`).

Rules that keep a record from redirecting traffic meant for someone else:

* a route is only ever to the record's own node id (the relay knows the node by its verified
  id, and the end-to-end handshake through the circuit proves it again);
* only a record newer (``seq``) than the last one taken for that node counts (records are
  held from the first with extras on, see :data:`MAX_HELD`: a node's older record with relays
  read after a newer one without, and no extras ever before, installs a route, always to that
  node's id and tried after its address; its newer record removes it when next read, and
  the node's records are held from then on);
* an address already routed to another node, or where another live member is known
  (``members``), or this node's own address, is not routed (first come, until that node
  moves, drops its route or leaves; a warning is logged).

It also keeps which members serve as relays (``relay: true``), for automatic reservations.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .._record_extras import RelayHint
from .._validate import format_address
from ..membership._signing import RecordProof
from ..types import Peer
from ._dial import RelayTransport

__all__ = ["AdvertisedRoutes", "RelayMember"]

log = logging.getLogger(__name__)

#: Records remembered (their ``seq``, so an older copy changes nothing), at most: records that
#: name relays (routed or refused) or serve as one, and every newer record of those nodes. A
#: node whose records never had extras is not held: nothing is kept for most members.
MAX_HELD = 65536
#: Routes at most for nodes that are not live members (records heard of, not yet checked):
#: past it a record of such a node installs no route until the node is a member.
MAX_UNCHECKED_ROUTES = 256


@dataclass(frozen=True, slots=True)
class RelayMember:
    """A member whose signed record says it serves as a relay, at ``address:port``."""

    node_id: str
    address: str
    port: int


@dataclass(frozen=True, slots=True)
class _Held:
    seq: int
    address: tuple[str, int]
    relays: tuple[RelayHint, ...]  # the route installed for it (first, then fallbacks)

    @property
    def relay(self) -> RelayHint | None:
        return self.relays[0] if self.relays else None


class AdvertisedRoutes:
    """See the module documentation. ``own_id`` and ``own_address`` (a callable: the node's
    advertised address changes while it runs) are never routed; ``members`` (membership's
    live members by id) tells which addresses other members hold."""

    def __init__(
        self,
        transport: RelayTransport,
        own_id: str,
        own_address: Callable[[], tuple[str, int]],
        members: Mapping[str, Peer] | None = None,
    ) -> None:
        self.transport = transport
        self.own_id = own_id
        self.own_address = own_address
        self.members: Mapping[str, Peer] = members if members is not None else {}
        self._held: dict[str, _Held] = {}
        #: Members that serve as relays, by node id.
        self.relay_members: dict[str, RelayMember] = {}
        self.refused = 0  # routes refused (an address held by another node)

    def routed(self) -> dict[str, RelayHint]:
        """The routes installed from records: node id -> the relay tried first."""
        return {node_id: h.relays[0] for node_id, h in self._held.items() if h.relays}

    def learned(self, peer: Peer, proof: RecordProof) -> bool:
        """A record of ``peer`` whose signature checked: update its route. Returns True if
        the route to its address changed."""
        if peer.id == self.own_id:
            return False
        held = self._held.get(peer.id)
        if held is not None and proof.seq <= held.seq:
            return False
        extras = proof.extras
        if extras.relay:
            self.relay_members[peer.id] = RelayMember(peer.id, peer.address, peer.port)
        else:
            self.relay_members.pop(peer.id, None)
        address = (peer.address, peer.port)
        changed = False
        if held is not None and held.relay is not None and held.address != address:
            self._remove(held.address, peer.id)  # it moved
            changed = True
        hints = self._usable(extras.relays, peer.id, address)
        if (
            hints
            and peer.id not in self.members
            and self._unchecked_routes() >= MAX_UNCHECKED_ROUTES
        ):
            self._refuse(peer.id, address, "one of too many routes for nodes not yet members")
            hints = ()
        if not hints:
            if held is not None or extras:  # (see MAX_HELD: most members have no extras)
                if held is not None and held.relay is not None and held.address == address:
                    self._remove(address, peer.id)
                    log.info("node %s: no relay in its record any more", peer.id[:16])
                    changed = True
                self._hold(peer.id, _Held(proof.seq, address, ()))
            return changed
        self._hold(peer.id, _Held(proof.seq, address, hints))
        if held is not None and held.relays == hints and held.address == address:
            return changed
        hint = hints[0]
        self.transport.add_route(
            address,
            relay=(hint.address, hint.port),
            node_id=peer.id,
            relay_node_id=hint.node_id,
            fallbacks=[((h.address, h.port), h.node_id) for h in hints[1:]],
            direct_first=True,  # a record proves who signed it, not who answers there
        )
        log.info(
            "node %s at %s: reached through relay %s (its signed record)",
            peer.id[:16],
            format_address(*address),
            format_address(hint.address, hint.port),
        )
        return True

    def _unchecked_routes(self) -> int:
        members = self.members
        return sum(1 for nid, h in self._held.items() if h.relays and nid not in members)

    def _hold(self, node_id: str, held: _Held) -> None:
        self._held.pop(node_id, None)
        self._held[node_id] = held  # newest last
        if len(self._held) > MAX_HELD:  # forget the oldest record without a route
            for other, old in self._held.items():
                if old.relay is None:
                    del self._held[other]
                    break

    def forgotten(self, node_id: str) -> None:
        """``node_id`` left: its route goes."""
        self.relay_members.pop(node_id, None)
        held = self._held.pop(node_id, None)
        if held is not None and held.relay is not None:
            self._remove(held.address, node_id)

    def _usable(
        self, hints: tuple[RelayHint, ...], node_id: str, address: tuple[str, int]
    ) -> tuple[RelayHint, ...]:
        """The record's relays to route ``address`` through (none if it may not be)."""
        usable = tuple(h for h in hints if h.node_id != node_id)  # (a relay uses itself)
        if not usable:
            return ()
        if address == self.own_address():
            self._refuse(node_id, address, "this node's own address")
            return ()
        route = self.transport.route_for(*address)
        if route is not None and route.node_id != node_id:
            self._refuse(node_id, address, f"routed to node {route.node_id[:16]}")
            return ()
        for other in self.members.values():
            if other.id != node_id and (other.address, other.port) == address:
                self._refuse(node_id, address, f"the address of member {other.id[:16]}")
                return ()
        return usable

    def _refuse(self, node_id: str, address: tuple[str, int], why: str) -> None:
        self.refused += 1
        log.warning(
            "not routing %s through a relay for node %s: it is %s",
            format_address(*address),
            node_id[:16],
            why,
        )

    def _remove(self, address: tuple[str, int], node_id: str) -> None:
        route = self.transport.route_for(*address)
        if route is not None and route.node_id == node_id:
            self.transport.remove_route(address)
