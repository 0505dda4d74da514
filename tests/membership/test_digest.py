"""Digest entries: the peer dict without ``last_seen``, plus ``age`` and ``legacy``."""

from __future__ import annotations

from typing import Any

import pytest

from synapse_p2p import Peer
from synapse_p2p.membership._gossip import digest_entry as _entry
from synapse_p2p.types import NodeKind


def reference_entry(peer: Peer, age: float, legacy: bool) -> dict[str, Any]:
    entry = peer.to_dict()
    del entry["last_seen"]
    entry["age"] = round(max(age, 0.0), 3)
    entry["legacy"] = legacy
    return entry


@pytest.mark.parametrize("age", [0.0, -1.5, 0.0004, 2.71828, 19.9999])
@pytest.mark.parametrize("legacy", [False, True])
def test_entry_is_the_peer_dict_with_age_and_legacy(age: float, legacy: bool) -> None:
    peers = [
        Peer(id="a" * 64, address="10.0.0.1", port=7000),
        Peer(
            id="b",
            address="::1",
            port=1,
            swarm="s",
            team=None,
            name="n",
            kind=NodeKind.BOOTSTRAP,
            capabilities=["x", "y"],
        ),
    ]
    for peer in peers:
        entry = _entry(peer, age, legacy)
        expected = reference_entry(peer, age, legacy)
        assert entry == expected
        assert list(entry) == list(expected)  # same key order on the wire
        assert type(entry["kind"]) is str
        assert entry["capabilities"] is not peer.capabilities
