"""The peer table, driven directly (sans-IO): claims, verification, liveness, limits."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from synapse_p2p import Peer
from synapse_p2p.membership import PeerTable
from synapse_p2p.membership._signing import RecordProof

ME = "me"


def peer(pid: str, port: int = 1000, address: str = "10.0.0.1", **fields: object) -> Peer:
    return Peer(id=pid, address=address, port=port, **fields)  # type: ignore[arg-type]


def test_a_claim_is_only_a_candidate_until_verified() -> None:
    table = PeerTable(ME, peer_timeout=20)
    assert table.claim(peer("a"), 0.0, direct=True) == "candidate"
    assert table.alive() == []
    [candidate] = table.next_candidates(0.0, 8, set())
    assert candidate.peer.id == "a"
    assert candidate.direct
    assert table.verified(candidate.peer, 0.1, legacy=False) == "joined"
    assert [s.peer.id for s in table.alive()] == ["a"]


def test_our_own_id_is_ignored() -> None:
    table = PeerTable(ME, peer_timeout=20)
    assert table.claim(peer(ME), 0.0, direct=True) == "ignored"
    assert table.verified(peer(ME), 0.0, legacy=False) == "ignored"
    assert not table.peers
    assert not table.candidates


def test_direct_claims_at_the_known_address_are_heartbeats_and_refresh_fields() -> None:
    table = PeerTable(ME, peer_timeout=20)
    table.verified(peer("a", name="old"), 0.0, legacy=False)
    assert table.claim(peer("a", name="new", capabilities=["x"]), 5.0, direct=True) == "heartbeat"
    state = table.get("a")
    assert state is not None
    assert state.peer.name == "new"
    assert state.peer.capabilities == ["x"]
    assert state.heard == 5.0
    # Second-hand claims about a live member change nothing.
    assert table.claim(peer("a", name="forged"), 6.0, direct=False) == "ignored"
    assert state.peer.name == "new"


def test_a_move_is_only_a_candidate_and_the_address_never_changes_on_a_claim() -> None:
    table = PeerTable(ME, peer_timeout=20)
    table.verified(peer("a"), 0.0, legacy=False)
    assert table.claim(peer("a", port=2000), 1.0, direct=True) == "candidate"
    state = table.get("a")
    assert state is not None
    assert state.peer.port == 1000
    assert table.verified(peer("a", port=2000), 2.0, legacy=False) == "joined"  # moved
    assert state.peer.port == 2000


def test_silence_expires_a_member_and_a_direct_claim_revives_it() -> None:
    table = PeerTable(ME, peer_timeout=20)
    table.verified(peer("a"), 0.0, legacy=False)
    assert table.expire(19.0) == []
    table.heard_indirectly("a", 10.0)  # somebody heard it at 10
    assert table.expire(29.0) == []
    [gone] = table.expire(31.0)
    assert gone.id == "a"
    assert table.alive() == []
    assert [s.peer.id for s in table.offline()] == ["a"]
    assert table.claim(peer("a"), 32.0, direct=True) == "joined"
    assert [s.peer.id for s in table.alive()] == ["a"]


def test_indirect_news_never_moves_heard_backwards() -> None:
    table = PeerTable(ME, peer_timeout=20)
    table.verified(peer("a"), 10.0, legacy=False)
    table.heard_indirectly("a", 5.0)
    state = table.get("a")
    assert state is not None
    assert state.heard == 10.0


def test_the_table_and_the_candidates_are_bounded() -> None:
    table = PeerTable(ME, peer_timeout=20, max_peers=2, max_candidates=3)
    table.verified(peer("a"), 0.0, legacy=False)
    table.verified(peer("b"), 0.0, legacy=False)
    assert table.verified(peer("c"), 0.0, legacy=False) == "full"
    assert table.claim(peer("c"), 0.0, direct=True) == "full"
    table = PeerTable(ME, peer_timeout=20, max_candidates=3)
    table.claim(peer("d0"), 0.0, direct=True)
    for i in range(1, 10):
        table.claim(peer(f"i{i}"), float(i), direct=False)
    assert len(table.candidates) == 3
    # Direct claims are kept over indirect ones.
    assert any(c.peer.id == "d0" for c in table.candidates.values())


def test_failed_verifications_back_off_per_address() -> None:
    table = PeerTable(ME, peer_timeout=20)
    table.claim(peer("a"), 0.0, direct=False)
    [candidate] = table.next_candidates(0.0, 8, set())
    table.verification_failed(("10.0.0.1", 1000), 0.0)
    table.claim(peer("a"), 0.1, direct=False)
    assert table.next_candidates(0.1, 8, set()) == []  # backing off
    assert len(table.next_candidates(1.0, 8, set())) == 1
    # Busy addresses are skipped, one verification per address at a time.
    table.claim(peer("b", port=7), 2.0, direct=False)
    assert table.next_candidates(2.0, 8, {("10.0.0.1", 7)}) == []
    assert candidate.peer.id == "a"


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["claim", "verify", "expire", "heard"]),
            st.sampled_from(["a", "b", "c", ME]),
            st.integers(1000, 1002),
            st.floats(0, 100),
            st.booleans(),
        ),
        max_size=60,
    )
)
def test_invariants_hold_under_any_sequence(ops: list[tuple[str, str, int, float, bool]]) -> None:
    table = PeerTable(ME, peer_timeout=20, max_peers=2, max_candidates=4)
    now = 0.0
    for op, pid, port, dt, flag in ops:
        now += dt
        if op == "claim":
            table.claim(peer(pid, port), now, direct=flag)
        elif op == "verify":
            table.verified(peer(pid, port), now, legacy=flag)
        elif op == "expire":
            table.expire(now)
        else:
            table.heard_indirectly(pid, now - dt)
        assert ME not in table.peers
        assert len(table.peers) <= 2
        assert len(table.candidates) <= 4
        for state in table.peers.values():
            assert state.alive == math.isnan(state.offline_since)


def test_a_suspicion_names_the_record_held_and_a_newer_record_lifts_it() -> None:
    def proof(seq: int) -> RecordProof:
        return RecordProof(seq, b"k" * 32, b"s" * 64)

    table = PeerTable(ME, peer_timeout=20)
    table.verified(peer("a"), 0.0, legacy=False, proof=proof(3))
    assert table.suspect("a", 2, 1.0) is None  # an older record: refuted already
    assert table.suspect("a", 4, 1.0) is None  # a newer one: not ours to judge
    assert table.suspect("nobody", 3, 1.0) is None
    state = table.suspect("a", 3, 1.0)
    assert state is not None
    assert state.suspected
    assert state.suspect_since == 1.0
    assert [s.peer.id for s in table.alive()] == ["a"]  # still listed
    assert table.suspect("a", 3, 2.0) is None  # once
    assert state.suspect_since == 1.0
    assert table.refreshed("a", proof(5), 3.0, now=3.0) == "heartbeat"
    state = table.get("a")
    assert state is not None
    assert not state.suspected
    # A newer re-signing a trusted member relayed (seen, unchecked) refutes it too.
    state.seen = 6
    assert table.suspect("a", 5, 4.0) is None
    assert table.declared_dead("a", 5, 4.0) is None
    assert state.alive


def test_a_member_back_from_the_dead_with_the_same_record_is_not_left_suspected() -> None:
    """Suspected, dead, then back by its own contact (same record): it can be suspected
    again (a stale suspicion would hide it from the silence checks for good)."""
    table = PeerTable(ME, peer_timeout=20)
    table.verified(peer("a"), 0.0, legacy=False, proof=RecordProof(3, b"k" * 32, b"s" * 64))
    assert table.suspect("a", 3, 1.0) is not None
    assert table.declared_dead("a", 3, 6.0) is not None
    assert table.contact("a", 7.0) == "joined"
    state = table.get("a")
    assert state is not None
    assert state.alive
    assert not state.suspected
    assert table.suspect("a", 3, 8.0) is state
