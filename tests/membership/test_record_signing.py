"""Signed peer records, sans-IO: canonical bytes, signing once per change, cached checks, and
how gossip weighs signed and unsigned entries."""

from __future__ import annotations

import gc
import threading
import weakref
from dataclasses import replace
from typing import Any

import msgpack
import pytest

from synapse_p2p import Identity, Peer
from synapse_p2p.identity import DOMAIN_PEER_RECORD
from synapse_p2p.membership import PeerTable, _signing
from synapse_p2p.membership._gossip import (
    Claim,
    Heard,
    Refreshed,
    Rejected,
    Update,
    Verified,
    digest_entry,
    read_digest,
)
from synapse_p2p.membership._records import PeerRecord
from synapse_p2p.membership._signing import (
    RecordProof,
    RecordSigner,
    RecordVerifier,
    SignatureMemo,
    proof_in,
    signed_bytes,
)
from synapse_p2p.wire import pack


def record(identity: Identity, *, port: int = 1000, name: str = "a", caps: Any = ()) -> Peer:
    return Peer(identity.node_id, "10.0.0.1", port, swarm="s", team="default", name=name,
                capabilities=list(caps), last_seen=5.0)  # fmt: skip


def sign(identity: Identity, peer: Peer, seq: int) -> RecordProof:
    sig = identity.sign(DOMAIN_PEER_RECORD, signed_bytes(peer, seq))
    return RecordProof(seq, identity.public_key, sig)


def test_the_signature_survives_re_encoding_and_ignores_last_seen() -> None:
    me = Identity.generate()
    peer = record(me, caps=["b", "a"])
    proof = sign(me, peer, 7)
    wire = {**peer.to_dict(), **proof.to_wire()}
    again = msgpack.unpackb(pack(msgpack.unpackb(pack(wire), raw=False)), raw=False)
    back, back_proof = Peer.from_dict(again), proof_in(again)
    assert back_proof == proof
    verifier = RecordVerifier()
    assert verifier.check(replace(back, last_seen=99.0), proof)


@pytest.mark.parametrize(
    "change",
    [
        {"address": "10.6.6.6"},
        {"port": 1001},
        {"name": "evil"},
        {"capabilities": ["a", "b"]},  # order is signed too
        {"swarm": "t"},
        {"team": "red"},
        {"kind": "bootstrap"},
    ],
)
def test_any_change_of_signed_content_fails(change: dict[str, Any]) -> None:
    me = Identity.generate()
    peer = record(me, caps=["b", "a"])
    proof = sign(me, peer, 7)
    verifier = RecordVerifier()
    assert verifier.check(peer, proof)  # cached now: the hit must still compare the content
    assert not verifier.check(replace(peer, **change), proof)
    assert not RecordVerifier().check(replace(peer, **change), proof)


def test_another_key_a_bumped_seq_or_another_id_fails() -> None:
    me, other = Identity.generate(), Identity.generate()
    peer = record(me)
    proof = sign(me, peer, 7)
    verifier = RecordVerifier()
    assert not verifier.check(peer, RecordProof(8, proof.key, proof.sig))
    assert not verifier.check(peer, sign(other, peer, 7))  # key does not hash to the id
    theirs = replace(peer, id=other.node_id)
    assert not verifier.check(theirs, RecordProof(7, other.public_key, proof.sig))
    assert verifier.failed == 3


def test_each_distinct_record_is_verified_once() -> None:
    me = Identity.generate()
    peer = record(me)
    proof = sign(me, peer, 7)
    verifier = RecordVerifier()
    for _ in range(100):
        assert verifier.check(peer, proof)
    assert verifier.checked == 1


def test_malformed_proofs_are_refused_and_absent_ones_are_none() -> None:
    assert proof_in({"id": "x"}) is None
    assert proof_in("not a map") is None
    for bad in (
        {"sig": b"x" * 64, "seq": -1, "key": b"k" * 32},
        {"sig": b"x" * 64, "seq": True, "key": b"k" * 32},
        {"sig": b"x" * 64, "seq": 1, "key": "k" * 32},
        {"sig": b"x" * 63, "seq": 1, "key": b"k" * 32},
    ):
        with pytest.raises(ValueError, match="peer record"):
            proof_in(bad)


def test_the_signer_signs_once_per_change_and_on_refresh_with_a_rising_seq() -> None:
    me = Identity.generate()
    wall = [1000.0]
    signer = RecordSigner(me, wall_clock=lambda: wall[0], refresh=5.0)
    peer = record(me)
    first = signer.proof(peer, now=0.0)
    assert first.seq == 1_000_000
    assert signer.proof(replace(peer, last_seen=9.0), now=1.0) is first  # last_seen is not signed
    renamed = signer.proof(replace(peer, name="b"), now=2.0)
    assert renamed.seq == first.seq + 1  # same millisecond: still strictly newer
    wall[0] = 1003.0
    assert signer.proof(replace(peer, name="b"), now=6.9) is renamed
    refreshed = signer.proof(replace(peer, name="b"), now=7.0)
    assert refreshed.seq == 1_003_000
    wall[0] = 900.0  # the wall clock stepped back: seq still rises
    assert signer.proof(peer, now=8.0).seq == refreshed.seq + 1
    assert signer.signed == 4


# -- gossip ---------------------------------------------------------------------------------


def read(members: Any, table: PeerTable, *, trusted: bool = True, secured: bool = False) -> Any:
    verifier = RecordVerifier()
    return read_digest(members, now=100.0, skip=("sender", "me"), known=table.peers,
                       peer_timeout=20, admits=lambda p: p.swarm == "s", trusted=trusted,
                       check=verifier.check, unsigned=lambda _: not secured)  # fmt: skip


def test_signed_news_is_taken_only_when_newer_and_valid() -> None:
    a = Identity.generate()
    peer = record(a)
    table = PeerTable("me", peer_timeout=20)
    old = sign(a, peer, 1)
    [verified] = read([digest_entry(peer, 2.0, False, old)], table)
    assert isinstance(verified, Verified)
    assert verified.proof == old
    table.verified(peer, 98.0, legacy=False, proof=old)
    # The record we hold, relayed again: news of life only (the table caps it, below).
    assert read([digest_entry(peer, 1.0, False, old)], table) == [Heard(a.node_id, 99.0)]
    # A newer record: its content, and news of life.
    renamed = replace(peer, name="b")
    new = sign(a, renamed, 2)
    [update] = read([digest_entry(renamed, 1.0, False, new)], table)
    assert isinstance(update, Update)
    assert (update.peer.name, update.proof, update.when) == ("b", new, 99)
    # A newer record at another address: a claim, dialed before it moves the member.
    moved = replace(peer, name="b", port=1001)
    elsewhere = sign(a, moved, 3)
    [claim] = read([digest_entry(moved, 1.0, False, elsewhere)], table)
    assert isinstance(claim, Claim)
    assert (claim.peer.port, claim.proof) == (1001, elsewhere)
    # A forged one (content changed under a valid signature): rejected, counted by the caller.
    forged = replace(renamed, name="evil")
    [rejected] = read([digest_entry(forged, 0.0, False, new)], table)
    assert isinstance(rejected, Rejected)
    assert rejected.node_id == a.node_id


def test_unsigned_entries_never_touch_a_member_held_signed() -> None:
    a = Identity.generate()
    peer = record(a)
    table = PeerTable("me", peer_timeout=20)
    table.verified(peer, 90.0, legacy=False, proof=sign(a, peer, 1))
    renamed = digest_entry(replace(peer, name="evil"), 0.0, False)
    moved = digest_entry(replace(peer, port=6666), 0.0, False)
    alive = digest_entry(peer, 0.0, False)  # "heard it just now": not believed unsigned
    assert read([renamed, moved, alive], table) == []
    assert table.claim(replace(peer, name="evil"), 100.0, direct=True) == "ignored"
    assert table.peers[a.node_id].peer.name == "a"


def test_unsigned_entries_are_used_only_where_allowed() -> None:
    table = PeerTable("me", peer_timeout=20)
    entry = digest_entry(Peer("b", "10.0.0.2", 1000, swarm="s", team="default"), 1.0, False)
    [verified] = read([entry], table)
    assert isinstance(verified, Verified)
    assert verified.proof is None
    assert read([entry], table, secured=True) == []
    table.verified(Peer("b", "10.0.0.2", 1000, swarm="s"), 90.0, legacy=False)
    assert read([entry], table) == [Heard("b", 99.0)]  # unsigned member, no secret: as 2.5.0


def test_an_offline_member_s_newer_record_is_dialed_unless_a_trusted_member_vouches() -> None:
    a = Identity.generate()
    peer = record(a)
    table = PeerTable("me", peer_timeout=20)
    table.verified(peer, 0.0, legacy=False, proof=sign(a, peer, 1))
    table.expire(50.0)
    newer = sign(a, peer, 2)
    [back] = read([digest_entry(peer, 1.0, False, newer)], table)
    assert isinstance(back, Update)
    assert back.when == 99.0
    [claim] = read([digest_entry(peer, 0.0, False, newer)], table, trusted=False)
    assert isinstance(claim, Claim)
    assert claim.proof == newer


def test_third_parties_keep_a_signed_member_alive_only_near_its_newest_record() -> None:
    a = Identity.generate()
    peer = record(a)
    table = PeerTable("me", peer_timeout=20)
    table.verified(peer, 100.0, legacy=False, proof=sign(a, peer, 1))  # its record arrives
    table.heard_indirectly(a.node_id, 130.0)
    assert table.peers[a.node_id].heard == 130.0
    table.heard_indirectly(a.node_id, 500.0)  # "heard it just now", long after: capped
    assert table.peers[a.node_id].heard == 160.0  # the record's arrival + 3 x peer_timeout
    assert [p.id for p in table.expire(180.1)] == [a.node_id]
    # A newer record moves the window on.
    table2 = PeerTable("me", peer_timeout=20)
    table2.verified(peer, 100.0, legacy=False, proof=sign(a, peer, 1))
    table2.signed(peer, sign(a, peer, 2), 150.0, now=150.0)
    table2.heard_indirectly(a.node_id, 205.0)
    assert table2.peers[a.node_id].heard == 205.0


def test_a_re_signed_record_with_the_same_content_is_checked_once_per_interval() -> None:
    a = Identity.generate()
    peer = record(a)
    table = PeerTable("me", peer_timeout=20)
    table.verified(peer, 95.0, legacy=False, proof=sign(a, peer, 1))
    verifier = RecordVerifier()

    def read_at(members: Any, now: float) -> Any:
        return read_digest(members, now=now, skip=(), known=table.peers, peer_timeout=20,
                           admits=lambda p: True, trusted=True, check=verifier.check,
                           recheck_after=20.0)  # fmt: skip

    refreshed = digest_entry(peer, 0.0, False, sign(a, peer, 2))
    # The held one is recent: news of life, and the re-signing is remembered as seen.
    assert read_at([refreshed], 100.0) == [Heard(a.node_id, 100.0, seen=2)]
    assert verifier.checked == 0
    renamed = replace(peer, name="b")
    [update] = read_at([digest_entry(renamed, 0.0, False, sign(a, renamed, 3))], 100.0)
    assert isinstance(update, Update)  # new content: checked at once
    assert verifier.checked == 1
    assert read_at([refreshed], 114.0) == [Heard(a.node_id, 114.0, seen=2)]
    [later] = read_at([refreshed], 116.0)  # the held record arrived 21 s ago: checked now
    assert isinstance(later, Refreshed)
    assert verifier.checked == 2


def test_a_trusted_member_may_bring_an_offline_one_back_only_within_the_window() -> None:
    a = Identity.generate()
    peer = record(a)
    table = PeerTable("me", peer_timeout=20)
    table.verified(peer, 100.0, legacy=False, proof=sign(a, peer, 1))
    table.expire(121.0)  # offline
    assert table.heard_indirectly(a.node_id, 130.0, now=130.0) == "ignored"  # not trusted
    assert table.heard_indirectly(a.node_id, 130.0, now=130.0, revive=True) == "joined"
    table.expire(151.0)
    # Long after its last record: capped at 160 (arrival + 3 x peer_timeout), and 160 is
    # not within peer_timeout of now.
    assert table.heard_indirectly(a.node_id, 200.0, now=200.0, revive=True) == "ignored"
    assert not table.peers[a.node_id].alive


def test_the_cache_is_bounded_and_an_evicted_record_is_verified_again() -> None:
    me = Identity.generate()
    peer = record(me)
    proofs = [sign(me, peer, seq) for seq in range(1, 4)]
    verifier = RecordVerifier(cache_size=2)
    for proof in proofs:
        assert verifier.check(peer, proof)
    assert verifier.checked == 3
    assert verifier.check(peer, proofs[2])
    assert verifier.check(peer, proofs[1])
    assert verifier.checked == 3  # both still cached
    assert verifier.check(peer, proofs[0])  # evicted first: checked again, and good
    assert verifier.checked == 4


def test_verifiers_sharing_a_memo_check_each_record_once() -> None:
    """The nodes of one process share :data:`SHARED_MEMO`: a record one of them checked is
    not checked again by the others, and is held once."""
    me = Identity.generate()
    peer = record(me)
    proof = sign(me, peer, 7)
    memo = SignatureMemo(16)
    first, second = RecordVerifier(memo=memo), RecordVerifier(memo=memo)
    assert first.check(peer, proof)
    assert second.check(peer, proof)
    assert (first.checked, second.checked, len(memo)) == (1, 0, 1)
    assert not second.check(replace(peer, name="changed"), proof)  # a hit on changed content
    assert second.failed == 1


def test_a_memo_shared_by_threads_stays_bounded_and_consistent() -> None:
    """Nodes in several threads of one process share the memo: lookups and evictions racing
    never raise, the memo stays within its size, and a good record still checks."""
    me = Identity.generate()
    peer = record(me)
    proofs = [sign(me, peer, seq) for seq in range(1, 41)]
    memo = SignatureMemo(8)
    errors: list[BaseException] = []

    def work() -> None:
        verifier = RecordVerifier(memo=memo)
        try:
            for _ in range(5):
                for proof in proofs:
                    assert verifier.check(peer, proof)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    assert len(memo) <= 8


def test_a_remembered_signature_under_another_key_is_refused() -> None:
    """A good signature already remembered, presented with another public key (the record's
    content unchanged): refused, so a node never holds, and passes on, a proof whose key does
    not match its id."""
    me, other = Identity.generate(), Identity.generate()
    peer = record(me)
    proof = sign(me, peer, 7)
    verifier = RecordVerifier()
    assert verifier.check(peer, proof)
    assert not verifier.check(peer, RecordProof(7, other.public_key, proof.sig))
    assert not verifier.check(peer, RecordProof(7, b"k" * 33, proof.sig))
    assert verifier.check(peer, proof)


def test_decoded_peer_strings_are_shared_between_decodings() -> None:
    me = Identity.generate()
    peer = replace(record(me, name="node-alpha", caps=["chat-x", "code-y"]), swarm="swarm-one")
    wire = pack({**peer.to_dict(), **sign(me, peer, 7).to_wire()})
    first, second = (Peer.from_dict(msgpack.unpackb(wire, raw=False)) for _ in range(2))
    assert first == second
    for field in ("id", "address", "name", "swarm", "team"):
        assert getattr(first, field) is getattr(second, field), field
    assert all(a is b for a, b in zip(first.capabilities, second.capabilities, strict=True))
    encoded = pack(PeerRecord.from_peer(first, 7).to_wire())
    again = PeerRecord.from_wire(msgpack.unpackb(encoded, raw=False))
    assert again.id is first.id
    assert again.address is first.address
    assert again.name is first.name
    assert again.capabilities[0] is first.capabilities[0]


def test_decoded_proofs_are_shared_while_held_and_only_when_equal() -> None:
    me = Identity.generate()
    proof = sign(me, record(me), 7)
    wire = pack(proof.to_wire())

    def decode() -> RecordProof:
        decoded = proof_in(msgpack.unpackb(wire, raw=False))
        assert decoded is not None
        return decoded

    running = set(_signing._NODES)  # (whatever earlier tests left: put back at the end)
    _signing._NODES.clear()
    a, b = object(), object()
    try:
        _signing.node_running(a, True)
        alone = decode(), decode()
        assert alone[0] is not alone[1]  # one node in the process: nothing to share
        _signing.node_running(b, True)
        first, second = decode(), decode()
        assert first is second  # one proof (key and signature bytes) for every holder
        assert first == proof
        copied = proof_in({**proof.to_wire(), "seq": 8})  # the signature on other content
        assert copied is not None
        assert copied is not first
        assert copied.seq == 8
        relayed = proof_in({**proof.to_wire(), "relay": True})
        assert relayed is not None
        assert relayed is not first
        assert relayed.extras.relay
        gone = weakref.ref(first)
        first = second = None  # type: ignore[assignment]
        gc.collect()
        assert gone() is None  # the map holds no proof alive
        again = decode()
        assert again == proof
        assert _signing._DECODED[proof.sig] is again
    finally:
        _signing._NODES.clear()
        _signing._NODES.update(running)


def test_the_trust_gate_remembers_signers_newest_last_and_forgets_the_oldest() -> None:
    from synapse_p2p.membership._trust import TrustGate
    from synapse_p2p.secure._stream import SecurityPolicy

    gate = TrustGate(secured=False, policy=SecurityPolicy(), clock=lambda: 0.0, remember=2)
    a, b, c = Identity.generate(), Identity.generate(), Identity.generate()
    for who in (a, b):
        assert gate.allows_unsigned(who.node_id)
        assert gate.check(record(who), sign(who, record(who), 1))
        assert not gate.allows_unsigned(who.node_id)  # it signs: unsigned records refused
    assert gate.check(record(a), sign(a, record(a), 2))  # a again: now the newest
    assert gate.check(record(c), sign(c, record(c), 1))  # one too many: b, the oldest, goes
    assert [gate.seen(x.node_id) for x in (a, b, c)] == [True, False, True]
    forged = sign(b, record(b), 1)
    assert not gate.check(record(a), forged)  # a bad signature is never remembered
    assert [gate.seen(x.node_id) for x in (a, b, c)] == [True, False, True]
