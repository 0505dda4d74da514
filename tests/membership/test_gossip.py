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
    Refreshed,
    Rejected,
    Update,
    Verified,
    build_digest,
    read_digest,
)
from synapse_p2p.membership._signing import RecordProof


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


def test_a_re_signing_is_checked_over_the_record_held_and_changes_only_the_proof() -> None:
    table = PeerTable("me", peer_timeout=20)
    table.verified(Peer("a", "10.0.0.1", 1000, swarm="s", team="default", name="a"), 0.0,
                   legacy=False, proof=RecordProof(5, b"k" * 32, b"s" * 64))  # fmt: skip
    state = table.peers["a"]
    state.record_at = 50.0  # arrived 50 s before now (100): past recheck_after (20 s)
    checked: list[tuple[Peer, int]] = []

    def check(peer: Peer, proof: RecordProof) -> bool:
        checked.append((peer, proof.seq))
        return proof.sig == b"g" * 64

    def read_signed(item: dict[str, Any]) -> list[Any]:
        return read_digest([item], now=100.0, skip=("me",), known=table.peers, peer_timeout=20,
                           admits=admits, trusted=True, check=check, recheck_after=20)  # fmt: skip

    resigned = {**entry("a", age=1.0), "seq": 6, "key": b"k" * 32, "sig": b"g" * 64}
    [refreshed] = read_signed(resigned)
    assert refreshed == Refreshed("a", RecordProof(6, b"k" * 32, b"g" * 64), 99.0)
    assert checked == [(state.peer, 6)]  # the signature is checked over the record held
    held = state.peer
    assert table.refreshed("a", refreshed.proof, refreshed.when, now=100.0) == "heartbeat"
    assert state.peer is held  # no new Peer: only the proof changed
    assert (state.seq, state.record_at, state.heard) == (6, 100.0, 99.0)
    assert table.refreshed("a", refreshed.proof, 99.5, now=100.0) == "ignored"  # not newer
    # A bad signature is refused; within recheck_after a re-signing is news of life, unchecked.
    state.record_at = 50.0
    [rejected] = read_signed({**resigned, "seq": 7, "sig": b"x" * 64})
    assert isinstance(rejected, Rejected)
    state.record_at = 90.0
    assert read_signed({**resigned, "seq": 7, "age": 0.5}) == [Heard("a", 99.5, seen=7)]
    assert len(checked) == 2
    # Only a trusted sender's re-signing is remembered as seen (it is named in compact digests).
    untrusted = read_digest([{**resigned, "seq": 8, "age": 0.2}], now=100.0, skip=("me",),
                            known=table.peers, peer_timeout=20, admits=admits, trusted=False,
                            check=check, recheck_after=20)  # fmt: skip
    assert untrusted == [Heard("a", 99.8)]
    # Changed content is an update (a new Peer), checked over the new content.
    state.record_at = 50.0
    [update] = read_signed({**resigned, "seq": 7, "name": "renamed"})
    assert isinstance(update, Update)
    assert update.peer.name == "renamed"
    assert checked[-1][0].name == "renamed"
