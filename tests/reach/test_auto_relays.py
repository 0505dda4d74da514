"""Choosing relays automatically (:class:`AutoRelays`), one decision at a time with the clock
given: relays only while private, at most two, a dead one replaced by a live relay member
(and not retried for a while), kept when there is no other."""

from __future__ import annotations

from typing import Any

from synapse_p2p import Peer
from synapse_p2p._seams import LocalNode
from synapse_p2p.identity import Identity
from synapse_p2p.relay import AdvertisedRoutes, AutoRelays, Reachability, RelayTransport
from synapse_p2p.relay._advertised import RelayMember
from synapse_p2p.relay._auto import AVOID_FOR, SWITCH_AFTER
from synapse_p2p.relay._reserve import Reservations
from synapse_p2p.secure import Keyring
from synapse_p2p.transport import TcpTransport


class _Caller:
    async def call(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("no calls in these tests")


def setup(relays: int) -> tuple[AutoRelays, Reservations, dict[str, Peer], Reachability]:
    members = {
        f"r{i}": Peer(id=f"r{i}", address="198.18.0.1", port=7000 + i) for i in range(relays)
    }
    advertised = AdvertisedRoutes(RelayTransport(), "me", lambda: ("10.1.0.2", 1))
    for peer in members.values():
        advertised.relay_members[peer.id] = RelayMember(peer.id, peer.address, peer.port)
    reservations = Reservations(
        [], transport=TcpTransport(), identity=Identity.generate(), keyring=Keyring()
    )
    reach = Reachability(LocalNode("me"), members, lambda _id: False, _Caller())  # type: ignore[arg-type]
    auto = AutoRelays(reservations, reach, advertised, lambda: members)
    return auto, reservations, members, reach


def kept(reservations: Reservations) -> set[int]:
    return {state.relay[1] - 7000 for state in reservations.states()}


def test_relays_are_reserved_only_while_private() -> None:
    auto, reservations, _, reach = setup(3)
    auto.step(0.0)
    assert reservations.states() == []  # unknown: nothing
    reach._state = "private"
    auto.step(0.0)
    assert len(kept(reservations)) == 2  # at most two of the three
    reach._state = "public"
    auto.step(1.0)
    assert reservations.states() == []


def test_an_unreserved_relay_is_replaced_by_another_member() -> None:
    auto, reservations, _, reach = setup(3)
    reach._state = "private"
    auto.step(0.0)
    first = kept(reservations)
    auto.step(SWITCH_AFTER - 0.1)
    assert kept(reservations) == first  # not yet
    auto.step(SWITCH_AFTER)
    # both were never reserved: one is replaced by the third, the other stays (only one spare)
    now = kept(reservations)
    assert len(now) == 2
    spare = ({0, 1, 2} - first).pop()
    assert spare in now
    given_up = first - now
    assert len(given_up) == 1
    # a relay given up is not picked again for a while
    auto.step(SWITCH_AFTER + 1)
    assert not given_up & kept(reservations)
    assert auto._avoid[("198.18.0.1", 7000 + given_up.pop())] == SWITCH_AFTER + AVOID_FOR


def test_with_no_other_relay_the_reservation_is_kept() -> None:
    auto, reservations, members, reach = setup(1)
    reach._state = "private"
    auto.step(0.0)
    auto.step(100.0)
    assert kept(reservations) == {0}
    # a relay member that left is not picked
    del members["r0"]
    auto2, reservations2, _, reach2 = setup(0)
    reach2._state = "private"
    auto2.step(0.0)
    assert reservations2.states() == []
