"""Digest entries: the peer dict without ``last_seen``, plus ``age`` and ``legacy``."""

from __future__ import annotations

import random
from typing import Any

import pytest

from synapse_p2p import Peer
from synapse_p2p.membership._gossip import MAX_DIGEST, build_digest
from synapse_p2p.membership._gossip import digest_entry as _entry
from synapse_p2p.membership._table import PeerState
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


def test_a_capped_digest_carries_the_members_joined_lately_first() -> None:
    """Past MAX_DIGEST members a digest is sampled: the ``first`` ids (news) always ride."""
    states = [PeerState(Peer(id=f"m{i}", address="10.0.0.1", port=i), 0.0, False)
              for i in range(600)]  # fmt: skip
    news = {f"m{i}" for i in range(590, 600)}
    for seed in range(20):
        digest = build_digest(states, 1.0, random.Random(seed), first=news)
        ids = [entry["id"] for entry in digest]
        assert len(ids) == len(set(ids)) == MAX_DIGEST
        assert news <= set(ids)
    plain = build_digest(states, 1.0, random.Random(0))
    assert len(plain) == MAX_DIGEST
    small = build_digest(states[:10], 1.0, random.Random(0), first=news)
    assert [entry["id"] for entry in small] == [f"m{i}" for i in range(10)]
