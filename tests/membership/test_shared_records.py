"""The nodes of one process share a member's ``Peer`` (``PeerState.hold``): one object, each
node's own ``last_seen``."""

from __future__ import annotations

import time

import anyio
import pytest

from synapse_p2p import Peer
from synapse_p2p.membership import PeerTable, _signing
from synapse_p2p.membership._members import Members
from synapse_p2p.membership._signing import RecordProof

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
def two_nodes_running(monkeypatch: pytest.MonkeyPatch) -> None:
    """As while two nodes or more run in this process (the map is used only then)."""
    monkeypatch.setattr(_signing, "_NODES", {1, 2})
    monkeypatch.setattr(_signing, "_HELD", type(_signing._HELD)())


def member(**fields: object) -> Peer:
    values: dict[str, object] = {"id": "x" * 8, "address": "10.0.0.9", "port": 7000, "name": "x"}
    return Peer(**{**values, **fields})  # type: ignore[arg-type]


def proof(seq: int) -> RecordProof:
    return RecordProof(seq, b"k" * 32, seq.to_bytes(8, "big") * 8)


def table(clock_offset: float = 0.0) -> PeerTable:
    return PeerTable("me", peer_timeout=20, wall_clock=lambda: time.time() + clock_offset)


def test_tables_taking_one_record_hold_one_peer_stamped_by_the_first() -> None:
    first, second = table(), table()
    sent = member(last_seen=time.time() + 600)  # as the member's own clock put it
    first.verified(sent, 0.0, legacy=False, proof=proof(5))
    second.verified(member(), 0.0, legacy=False, proof=proof(5))
    held = first.peers[sent.id].peer
    assert second.peers[sent.id].peer is held
    assert held.last_seen <= time.time() + 1  # stamped here, never by the member's clock


def test_other_content_or_another_record_is_not_shared() -> None:
    first, second, third = table(), table(), table()
    first.verified(member(), 0.0, legacy=False, proof=proof(5))
    second.verified(member(name="other"), 0.0, legacy=False, proof=proof(5))
    third.verified(member(), 0.0, legacy=False, proof=proof(6))
    held = {id(t.peers["x" * 8].peer) for t in (first, second, third)}
    assert len(held) == 3
    assert second.peers["x" * 8].peer.name == "other"


def test_a_re_signed_record_stays_shared_with_the_tables_that_take_it_next() -> None:
    first, second, late = table(), table(), table()
    for t in (first, second):
        t.verified(member(), 0.0, legacy=False, proof=proof(5))
    for t in (first, second):
        assert t.refreshed("x" * 8, proof(6), 1.0, now=1.0) == "heartbeat"
    late.verified(member(), 1.0, legacy=False, proof=proof(6))
    assert late.peers["x" * 8].peer is first.peers["x" * 8].peer is second.peers["x" * 8].peer


async def test_a_peer_stamped_by_another_node_s_clock_is_listed_with_this_one_s() -> None:
    ahead, here = table(clock_offset=600), table()
    now = anyio.current_time()
    ahead.verified(member(), now, legacy=False, proof=proof(5))
    here.verified(member(), now, legacy=False, proof=proof(5))
    assert here.peers["x" * 8].peer.last_seen > time.time() + 500  # the shared copy
    listed = Members({"x" * 8: here.peers["x" * 8].peer}, lambda: here, time.time)
    assert abs(listed["x" * 8].last_seen - time.time()) < 2
