"""A round's census (``Membership._census``: the members a round heartbeats, retries, ages) is
kept while the table does not change in a way it depends on (``PeerTable.changes``): an idle
round of a large swarm does not visit every member's state. Every change that moves a member
between its lists makes the next census a new one."""

from __future__ import annotations

import pytest

from synapse_p2p import Peer
from synapse_p2p.membership import PeerTable
from synapse_p2p.membership._signing import RecordProof
from synapse_p2p.membership._table import record_hash
from tests.membership.test_record_rules import swarm


@pytest.fixture(autouse=True)
def _secret_said(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests say which secret they use (``./dev test`` sets ``SYNAPSE_SECRET``)."""
    monkeypatch.delenv("SYNAPSE_SECRET", raising=False)


def ids(states: list) -> set[str]:  # type: ignore[type-arg]
    return {s.peer.id for s in states}


@pytest.mark.anyio
async def test_the_census_is_kept_until_the_table_changes(anyio_backend: str) -> None:
    async with swarm("a", "b", "c", "d", partial_views=True) as (a, b, c, d):
        m = a.membership
        assert m.views is not None
        table = m.table
        first = m._census()
        assert m._census() is first  # nothing changed: the same census, no pass
        assert first.signed == 3
        assert not first.offline
        assert not first.aging
        now = m._now()
        # Offline (silenced, declared dead), back, forgotten: each a new census that says so.
        assert table.silenced(b.node_id, now) is not None
        census = m._census()
        assert census is not first
        assert ids(census.offline) == {b.node_id}
        assert census.signed == 2
        assert table.contact(b.node_id, now) == "joined"
        census = m._census()
        assert not census.offline
        assert census.signed == 3
        assert table.declared_dead(c.node_id, table.peers[c.node_id].seq, now) is not None
        assert ids(m._census().offline) == {c.node_id}
        assert table.left(d.node_id) is not None
        census = m._census()
        assert census.signed == 1
        assert ids(census.offline) == {c.node_id}
        # A member that does not take view messages ages by silence: in ``aging`` at once.
        kept = m._census()
        m.views.unsupported.add(b.node_id)
        census = m._census()
        assert census is not kept
        assert ids(census.aging) == {b.node_id}
        # A round's expiry takes a member the kept census lists as aging offline.
        table.peers[b.node_id].heard = now - 2 * m.config.peer_timeout
        m._expire(m._census())
        assert not table.peers[b.node_id].alive
        assert ids(m._census().offline) == {b.node_id, c.node_id}


def test_every_change_a_census_depends_on_is_counted() -> None:
    """``PeerTable.changes`` moves when a member is added, signs its first record (through
    ``signed``, ``refreshed`` or ``verified``), changes kind, goes offline, comes back or is
    forgotten; not when it is only heard from. The table's summary of the records held
    (``PeerTable.summary``) follows every change, re-signings too."""
    table = PeerTable("me", peer_timeout=20)
    counted = table.changes

    def changed() -> bool:
        nonlocal counted
        moved, counted = table.changes != counted, table.changes
        # The records summed up as they change: what a pass over the table would sum.
        held = [s for s in table.peers.values() if s.alive and s.proof and not s.legacy]
        total = sum(record_hash(s.peer.id, s.proof.seq) for s in held if s.proof)
        assert table.summary() == (len(held), total % (1 << 128))
        return moved

    def peer(name: str, port: int = 1000) -> Peer:
        return Peer(name, "10.0.0.1", port, swarm="s")

    assert table.verified(peer("a"), 0.0, legacy=False) == "joined"  # unsigned
    assert changed()
    assert table.contact("a", 1.0) == "heartbeat"
    assert table.heard_indirectly("a", 2.0) == "heartbeat"
    assert not changed()  # (news of life only)
    assert table.signed(peer("a"), RecordProof(1, b"k" * 32, b"s" * 64), 3.0, now=3.0) != "ignored"
    assert changed()  # its first signed record
    assert table.verified(peer("b"), 0.0, legacy=False) == "joined"
    assert changed()
    assert table.refreshed("b", RecordProof(1, b"k" * 32, b"s" * 64), 4.0, now=4.0) == "heartbeat"
    assert changed()
    assert table.refreshed("b", RecordProof(2, b"k" * 32, b"s" * 64), 4.0, now=4.0) == "heartbeat"
    assert not changed()  # (a re-signing)
    assert table.verified(peer("c"), 0.0, legacy=True) == "joined"
    assert changed()
    assert table.verified(peer("c"), 1.0, legacy=False) == "heartbeat"
    assert changed()  # no longer a 2.5.0 node
    assert table.silenced("c", 5.0) is not None
    assert changed()
    assert table.verified(peer("c"), 6.0, legacy=False) == "joined"
    assert changed()
    assert [p.id for p in table.expire(100.0)] == ["a", "b", "c"]
    assert changed()
    assert table.expire(800.0) == []  # forgotten
    assert not table.peers
    assert changed()
    assert table.verified(peer("d"), 0.0, legacy=False) == "joined"
    assert table.left("d") is not None
    assert table.changes == counted + 2
    assert table.verified(peer("e"), 0.0, legacy=False, proof=RecordProof(7, b"k" * 32, b"s" * 64))
    assert changed()
    assert table.summary(leave_out="e") == (0, 0)
    assert table.summary() == (1, record_hash("e", 7))
    # A newer record at another address, a death notice, a silence, a revival by a trusted
    # third party: the summary follows each (no census change for the first).
    proof8 = RecordProof(8, b"k" * 32, b"s" * 64)
    assert table.verified(peer("e", 1001), 1.0, legacy=False, proof=proof8) == "joined"
    assert not changed()
    assert table.summary() == (1, record_hash("e", 8))
    assert table.declared_dead("e", 8, 2.0) is not None
    assert changed()
    assert table.summary() == (0, 0)
    assert table.heard_indirectly("e", 3.0, now=3.0, revive=True) == "ignored"  # (a tombstone)
    assert table.verified(peer("f"), 0.0, legacy=False, proof=proof8) == "joined"
    assert table.silenced("f", 1.0) is not None
    assert changed()
    assert table.heard_indirectly("f", 2.0, now=2.0, revive=True) == "joined"
    assert changed()
    assert table.summary() == (1, record_hash("f", 8))
    assert table.left("f") is not None
    assert table.summary() == (0, 0)
