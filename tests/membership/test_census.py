"""A round's census (``Membership._census``: the members a round heartbeats, retries, ages) is
kept while the table does not change in a way it depends on (``PeerTable.changes``): an idle
round of a large swarm does not visit every member's state. Every change that moves a member
between its lists makes the next census a new one."""

from __future__ import annotations

import pytest

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
