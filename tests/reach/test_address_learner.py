"""The rules of ``membership/_observed.py`` (which address a node advertises once its peers
reach it), without a network."""

from __future__ import annotations

from synapse_p2p.membership._observed import AddressLearner, is_host_address


def learner(*, advertise: str | None = "auto", bind: str = "0.0.0.0") -> AddressLearner:
    return AddressLearner(advertise=advertise, bind=bind, is_local=lambda ip: ip == "10.1.0.2")


def test_a_loopback_address_is_replaced_by_the_one_a_peer_reached() -> None:
    rules = learner()
    assert rules.seen_locally("127.0.0.1", "10.1.0.2", "10.1.0.9") == "10.1.0.2"
    assert rules.learned == "10.1.0.2"
    # only once: later observations do not move it
    assert rules.seen_locally("10.1.0.2", "10.2.0.2", "10.2.0.9") is None
    assert rules.seen_locally("127.0.0.1", "10.2.0.2", "10.2.0.9") is None


def test_what_is_never_taken() -> None:
    assert learner().seen_locally("192.0.2.7", "10.1.0.2", "10.1.0.9") is None  # not loopback
    assert learner().seen_locally("127.0.0.1", "127.0.0.1", "127.0.0.1") is None  # local peer
    assert learner().seen_locally("127.0.0.1", "10.1.0.2", "127.0.0.1") is None
    assert learner().seen_locally("127.0.0.1", "fe80::1", "fe80::2") is None  # link-local
    assert learner().seen_locally("127.0.0.1", "", "10.1.0.9") is None  # not a socket
    pinned = learner(advertise="127.0.0.1")
    assert not pinned.enabled
    assert pinned.seen_locally("127.0.0.1", "10.1.0.2", "10.1.0.9") is None
    assert not learner(bind="127.0.0.1").enabled


def test_a_reported_address_is_taken_only_if_it_is_this_hosts() -> None:
    assert learner().reported("127.0.0.1", "198.51.100.4") is None  # a NAT's outside address
    assert learner().reported("127.0.0.1", 42) is None  # malformed
    assert learner().reported("127.0.0.1", "10.1.0.2") == "10.1.0.2"


def test_host_addresses_are_the_ones_that_bind() -> None:
    assert is_host_address("127.0.0.1")
    assert not is_host_address("192.0.2.1")  # TEST-NET-1, never ours
    assert not is_host_address("not an address")
