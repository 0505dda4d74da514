"""Gossip decisions, driven directly (sans-IO): reading digests and choosing partners."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from synapse_p2p import Peer
from synapse_p2p.membership import PeerTable
from synapse_p2p.membership._gossip import (
    MAX_DIGEST,
    Claim,
    Heard,
    PartnerRotation,
    Verified,
    build_digest,
    read_digest,
)


def entry(
    pid: str, *, age: float = 0.0, port: int = 1000, swarm: str | None = "s"
) -> dict[str, Any]:
    return {"id": pid, "address": "10.0.0.1", "port": port, "swarm": swarm, "team": "default",
            "name": pid, "kind": "node", "capabilities": [], "age": age, "legacy": False}  # fmt: skip


def admits(p: Peer) -> bool:
    return p.swarm == "s"


def read(members: Any, table: PeerTable, *, trusted: bool) -> list[Any]:
    return read_digest(members, now=100.0, skip=("sender", "me"), known=table.peers,
                       peer_timeout=20, admits=admits, trusted=trusted)  # fmt: skip


def test_a_trusted_sender_vouches_for_new_members_an_untrusted_one_only_claims() -> None:
    table = PeerTable("me", peer_timeout=20)
    [verified] = read([entry("a", age=2.0)], table, trusted=True)
    assert isinstance(verified, Verified)
    assert verified.when == 98.0
    [claim] = read([entry("a")], table, trusted=False)
    assert isinstance(claim, Claim)
    assert claim.peer.id == "a"


def test_known_members_at_their_address_are_news_of_life() -> None:
    table = PeerTable("me", peer_timeout=20)
    table.verified(Peer("a", "10.0.0.1", 1000, swarm="s"), 0.0, legacy=False)
    [heard] = read([entry("a", age=3.0)], table, trusted=False)
    assert heard == Heard("a", 97.0)
    # A different address is a claim to verify, even from a trusted sender.
    [moved] = read([entry("a", port=2)], table, trusted=True)
    assert isinstance(moved, Claim)


def test_stale_foreign_skipped_and_malformed_entries_are_ignored() -> None:
    table = PeerTable("me", peer_timeout=20)
    members = [
        entry("old", age=25.0),  # not heard within peer_timeout
        entry("other", swarm="x"),  # another swarm
        entry("sender"),
        entry("me"),
        {"id": 5},
        {"id": "bad-age", "age": True},
        {"id": "neg", "age": -1},
        "not a map",
        {**entry("bad-port"), "port": "x"},
    ]
    assert read(members, table, trusted=True) == []
    assert read("not a list", table, trusted=True) == []


def test_at_most_max_digest_entries_are_read() -> None:
    table = PeerTable("me", peer_timeout=20)
    members = [entry(f"p{i}") for i in range(MAX_DIGEST + 50)]
    assert len(read(members, table, trusted=True)) == MAX_DIGEST


@given(st.lists(st.one_of(st.none(), st.integers(), st.text(), st.dictionaries(
    st.sampled_from(["id", "address", "port", "age", "swarm", "team", "kind", "legacy"]),
    st.one_of(st.none(), st.booleans(), st.integers(-5, 70000), st.floats(), st.text(max_size=8)),
)), max_size=20))  # fmt: skip
def test_any_digest_is_read_without_error(members: list[Any]) -> None:
    table = PeerTable("me", peer_timeout=20)
    for decision in read(members, table, trusted=True):
        if isinstance(decision, Verified | Claim):
            assert decision.peer.id not in ("sender", "me")
            assert admits(decision.peer)


def test_build_digest_samples_down_and_computes_ages() -> None:
    table = PeerTable("me", peer_timeout=20)
    for i in range(300):
        table.verified(Peer(f"p{i}", "10.0.0.1", i + 1), float(i % 10), legacy=False)
    digest = build_digest(table.alive(), 10.0, random.Random(1))
    assert len(digest) == MAX_DIGEST
    assert all(0.0 <= e["age"] <= 10.0 for e in digest)
    assert len({e["id"] for e in digest}) == MAX_DIGEST


@given(st.integers(1, 30), st.integers(1, 5), st.integers(0, 2**32))
def test_rotation_visits_every_member_once_per_pass(members: int, fanout: int, seed: int) -> None:
    rotation = PartnerRotation(random.Random(seed))
    ids = [f"p{i}" for i in range(members)]
    seen: list[str] = []
    rounds = -(-members // fanout)
    for _ in range(rounds):
        picked = rotation.pick(fanout, lambda: list(ids), lambda _: True)
        assert len(picked) == len(set(picked)) <= fanout
        seen += picked
    # One pass visits everyone (a pass may end inside the last round and start the next).
    assert set(ids) <= set(seen)


def test_rotation_skips_unusable_members() -> None:
    rotation = PartnerRotation(random.Random(0))
    picked = rotation.pick(3, lambda: ["a", "b", "c"], lambda pid: pid != "b")
    assert sorted(picked) == ["a", "c"]
    assert rotation.pick(3, list, lambda _: True) == []
