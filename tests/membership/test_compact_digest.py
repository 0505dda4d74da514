"""Compact digests: a round names each signed record by its ``seq`` (``[id, seq, age]``), the
answer carries in full only what the caller lacks, and what the answerer lacks travels in full
in the caller's next round (``want``)."""

from __future__ import annotations

import math
from typing import Any

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from synapse_p2p import Client, Peer
from synapse_p2p.errors import RemoteError
from synapse_p2p.membership import PeerTable, _service
from synapse_p2p.membership._gossip import MAX_DIGEST, Heard, compact_entry, read_compact
from synapse_p2p.membership._signing import RecordProof
from synapse_p2p.membership._table import record_hash
from tests.membership.test_record_rules import swarm


@pytest.fixture(autouse=True)
def _secret_said(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests say which secret they use (``./dev test`` sets ``SYNAPSE_SECRET``)."""
    monkeypatch.delenv("SYNAPSE_SECRET", raising=False)


def proof(seq: int) -> RecordProof:
    return RecordProof(seq, b"k" * 32, b"s" * 64)  # read_compact never checks signatures


def table_of(**members: tuple[int, bool]) -> PeerTable:
    """Members held signed: name -> (seq, alive)."""
    table = PeerTable("me", peer_timeout=20)
    for name, (seq, alive) in members.items():
        table.verified(Peer(name, "10.0.0.1", 1000, swarm="s"), 0.0, legacy=False,
                       proof=proof(seq))  # fmt: skip
        if not alive:
            table.peers[name].alive = False
    return table


def read(entries: Any, table: PeerTable, *, trusted: bool) -> Any:
    return read_compact(entries, now=100.0, skip=("sender", "me"), known=table.peers,
                        peer_timeout=20, trusted=trusted)  # fmt: skip


def test_an_entry_of_the_record_held_is_news_of_life_a_newer_or_unknown_one_is_wanted() -> None:
    table = table_of(a=(5, True), b=(5, True), c=(5, False))
    entries = [["a", 5, 2.0], ["b", 7, 1.0], ["b", 4, 0.0], ["z", 3, 1.0], ["y", 1, 25.0],
               ["c", 5, 1.0], ["sender", 9, 0.0]]  # fmt: skip
    untrusted = read(entries, table, trusted=False)
    # Whatever record the sender holds of an alive member, it heard it (b: 1 s and 0 s ago).
    assert untrusted.heard == [Heard("a", 98.0), Heard("b", 99.0), Heard("b", 100.0)]
    assert untrusted.want == ["b", "z"]  # not y: the sender has not heard it for 25 s
    assert untrusted.listed == {"a": 5, "b": 4, "z": 3, "y": 1, "c": 5, "sender": 9}
    # An offline member is back only by a trusted sender's word, heard within peer_timeout.
    trusted = read(entries, table, trusted=True)
    assert trusted.heard[-1] == Heard("c", 99.0)
    assert read([["c", 5, 30.0]], table, trusted=True).heard == []
    assert read([["c", 6, 1.0]], table, trusted=True).heard == []  # another record: dial it


def test_a_compact_entry_is_id_seq_and_age() -> None:
    table = table_of(a=(5, True))
    state = table.peers["a"]
    state.heard = 96.5
    assert compact_entry(state, 100.0) == ["a", 5, 3.5]
    state.heard = 101.0  # heard after now (a clock step): age 0, never negative
    assert compact_entry(state, 100.0) == ["a", 5, 0.0]


def test_malformed_compact_entries_are_skipped() -> None:
    table = table_of(a=(5, True))
    bad = [None, "a", {"id": "a"}, ["a", 5], ["a", 5, 1.0, 0], [1, 5, 1.0], ["a", "5", 1.0],
           ["a", True, 1.0], ["a", -1, 1.0], ["a", 5, -1.0], ["a", 5, math.nan],
           ["a", 5, math.inf], ["a", 5, False], ["a", 5.0, 1.0]]  # fmt: skip
    reading = read(bad, table, trusted=True)
    assert (reading.heard, reading.want, reading.listed) == ([], [], {})
    assert read({"a": 5}, table, trusted=True).listed == {}


def test_compact_reading_is_bounded() -> None:
    table = table_of()
    many = [[f"m{i}", 1, 0.0] for i in range(5000)]
    reading = read(many, table, trusted=True)
    assert len(reading.listed) == 1024  # MAX_COMPACT
    assert len(reading.want) == MAX_DIGEST


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=4),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner),
        max_leaves=20,
    )
)
def test_any_input_reads_without_raising(data: Any) -> None:
    read(data, table_of(a=(5, True)), trusted=True)
    read([data, ["a", 5, 1.0]], table_of(a=(5, True)), trusted=False)


# -- on the wire ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_compact_digest_is_answered_with_what_the_caller_lacks(anyio_backend: str) -> None:
    async with swarm("a", "b", "c", "d") as (a, b, c, d):
        held = {n.node_id: a.membership.table.peers[n.node_id].seq for n in (c, d)}
        me = await Client("127.0.0.1", b.port).call("_synapse.record")
        caller = Client("127.0.0.1", a.port, identity=b.identity)  # b, on its own channel
        compact = [[c.node_id, held[c.node_id], 0.5]]  # b holds c's record, not d's
        answer = await caller.call("_synapse.gossip", {"v": 2, "from": me, "members": [],
                                                       "compact": compact})  # fmt: skip
        assert [e["id"] for e in answer["members"]] == [d.node_id]  # what b lacks, in full
        assert answer["members"][0]["seq"] == held[d.node_id]
        assert [e[:2] for e in answer["compact"]] == [[c.node_id, held[c.node_id]]]
        assert "want" not in answer
        # b holds an older record of c, and a newer one of d: c in full, d wanted.
        compact = [[c.node_id, held[c.node_id] - 1, 0.5], [d.node_id, held[d.node_id] + 1, 0.5]]
        answer = await caller.call("_synapse.gossip", {"v": 2, "from": me, "members": [],
                                                       "compact": compact})  # fmt: skip
        assert [e["id"] for e in answer["members"]] == [c.node_id]
        # d compact all the same: our record is older, but we heard d (news of life).
        assert [e[:2] for e in answer["compact"]] == [[d.node_id, held[d.node_id]]]
        assert answer["want"] == [d.node_id]
        # A digest in full (a node of an earlier version) is answered in full, as before.
        answer = await caller.call("_synapse.gossip", {"v": 1, "from": me, "members": []})
        assert {e["id"] for e in answer["members"]} >= {c.node_id, d.node_id}
        assert "compact" not in answer
        assert await caller.call("_synapse.ping") == "pong"


def test_a_reading_counts_the_members_listed_as_held_here() -> None:
    """``matched``: members listed once, alive here, held signed, named by the ``seq`` we
    name; ``distinct``: members listed (-1 if one is listed twice by different records);
    with ``fresh_within``, ``fresher``: the entries of members we heard from later than the
    sender, whose record reached us within that window (news of life to it)."""
    table = table_of(a=(5, True), b=(3, True), c=(2, False))
    reading = read([["a", 5, 1.0], ["b", 3, 1.0]], table, trusted=True)
    assert (reading.matched, reading.distinct) == (2, 2)
    reading = read([["a", 5, 1.0], ["b", 2, 1.0], ["c", 2, 1.0], ["sender", 1, 0.0]], table,
                   trusted=False)  # fmt: skip
    assert (reading.matched, reading.distinct) == (1, 3)  # b older, c offline here, sender skipped
    reading = read([["a", 5, 1.0], ["x", 9, 50.0]], table, trusted=True)  # x unknown, old
    assert (reading.matched, reading.distinct, reading.want) == (1, 2, [])
    reading = read([["a", 5, 1.0], ["a", 5, 2.0], ["b", 3, 1.0]], table, trusted=True)
    assert (reading.matched, reading.distinct) == (2, 2)  # (a copy of an entry)
    reading = read([["a", 5, 1.0], ["a", 4, 1.0], ["b", 3, 1.0]], table, trusted=True)
    assert reading.distinct == -1  # a named by two records
    assert reading.fresher == []  # (not asked for)
    state = table.peers["a"]
    state.heard, state.record_at = 99.0, 90.0
    table.peers["b"].heard = 99.0  # (its record reached us at 0: old)

    def fresher(entries: Any) -> list[Any]:
        return read_compact(entries, now=100.0, skip=("sender", "me"), known=table.peers,
                            peer_timeout=20, trusted=True, fresh_within=60.0).fresher  # fmt: skip

    assert fresher([["a", 5, 5.0], ["b", 3, 5.0]]) == [["a", 5, 1.0]]  # heard 4 s after it
    assert fresher([["a", 5, 0.5], ["b", 3, 5.0]]) == []  # it heard a after us


@pytest.mark.anyio
async def test_a_whole_digest_naming_every_record_held_is_answered_same(anyio_backend: str) -> None:
    """A whole compact digest that asks ``same`` (gossip version 6) and names every member
    the callee holds, by the ``seq`` it would name, with nothing newer, is answered ``same``:
    no entries naming the caller's records back to it. Anything else is answered in full."""
    async with swarm("a", "b", "c", "d") as (a, b, c, d):
        for node in (b, c, d):  # no more re-signings: the records held stay put
            assert node.membership._signer is not None
            node.membership._signer.refresh = math.inf
        own = {n.node_id: n.membership._signed_record()["seq"] for n in (c, d)}
        with anyio.fail_after(10):
            while any(a.membership.table.peers[i].seq != own[i] for i in own):
                await anyio.sleep(0.05)
        me = await Client("127.0.0.1", b.port).call("_synapse.record")
        caller = Client("127.0.0.1", a.port, identity=b.identity)  # b, on its own channel

        async def gossip(compact: list[list[Any]], **extra: Any) -> Any:
            message = {"v": 6, "from": me, "members": [], "compact": compact, **extra}
            return await caller.call("_synapse.gossip", message)

        both = [[c.node_id, own[c.node_id], 0.0], [d.node_id, own[d.node_id], 0.0]]  # heard now
        answer = await gossip(both, same=True)
        assert answer["same"] is True
        assert answer["v"] >= 6
        assert "members" not in answer
        assert "want" not in answer
        assert answer.get("compact", []) == []  # (b heard them last: no news of life to it)
        assert answer["self"]["id"] == a.node_id  # (its record all the same)
        # Without ``same`` (an earlier caller): answered as before.
        answer = await gossip(both)
        assert "same" not in answer
        assert sorted(e[0] for e in answer["compact"]) == sorted(own)
        # d left out (b lacks it), or listed twice in its place: d in full.
        for compact in (both[:1], [both[0], both[0]], [both[0], [c.node_id, own[c.node_id], 1]]):
            answer = await gossip(compact, same=True)
            assert "same" not in answer
            assert [e["id"] for e in answer["members"]] == [d.node_id]
        # An older record of c: c in full. A newer record of d: wanted. c by two records.
        older = [[c.node_id, own[c.node_id] - 1, 0.5], both[1]]
        answer = await gossip(older, same=True)
        assert [e["id"] for e in answer["members"]] == [c.node_id]
        newer = [both[0], [d.node_id, own[d.node_id] + 1, 0.5]]
        answer = await gossip(newer, same=True)
        assert "same" not in answer
        assert answer["want"] == [d.node_id]
        answer = await gossip([*both, [c.node_id, own[c.node_id] - 1, 0.5]], same=True)
        assert "same" not in answer
        # A member a does not hold (heard too long ago to be wanted): not the same.
        stranger = [f"{7:064x}", 1, 100.0]
        answer = await gossip([*both, stranger], same=True)
        assert "same" not in answer
        assert "want" not in answer
        # A partial digest is never answered ``same``.
        answer = await gossip(both, same=True, partial=True)
        assert "same" not in answer
        assert await caller.call("_synapse.ping") == "pong"


@pytest.mark.anyio
async def test_a_summary_of_the_records_held_is_answered_same_or_differ(anyio_backend: str) -> None:
    """A round's digest may be a summary of the records held (gossip version 7: how many, and
    the sum of their hashes, the callee's aside): answered ``same`` when the callee holds the
    same records of the same members (the caller's aside) and no record reached it lately,
    ``differ`` otherwise, an error if malformed; on ``differ`` the caller sends its whole
    compact digest at once."""
    async with swarm("a", "b", "c", "d") as (a, b, c, d):
        for node in (a, b, c, d):  # no more re-signings: the records held stay put
            assert node.membership._signer is not None
            node.membership._signer.refresh = math.inf
        own = {n.node_id: n.membership._signed_record()["seq"] for n in (b, c, d)}
        table = a.membership.table
        with anyio.fail_after(10):
            while any(table.peers[i].seq != own[i] for i in own):
                await anyio.sleep(0.05)
        me = await Client("127.0.0.1", b.port).call("_synapse.record")
        caller = Client("127.0.0.1", a.port, identity=b.identity)  # b, on its own channel

        async def gossip(summary: Any) -> Any:
            message = {"v": 7, "from": me, "members": [], "summary": summary}
            return await caller.call("_synapse.gossip", message)

        def summed(*records: tuple[str, int]) -> list[Any]:
            total = sum(record_hash(i, seq) for i, seq in records) % (1 << 128)
            return [len(records), f"{total:032x}"]

        held = summed((c.node_id, own[c.node_id]), (d.node_id, own[d.node_id]))
        assert [*table.summary(leave_out=b.node_id)] == [2, int(held[1], 16)]
        table.newest_record = -math.inf  # (quiet: no record reached a lately)
        answer = await gossip(held)
        assert answer["same"] is True
        assert answer["v"] >= 7
        assert answer["self"]["id"] == a.node_id
        assert "compact" not in answer
        assert "members" not in answer
        for other in (
            summed((c.node_id, own[c.node_id]), (d.node_id, own[d.node_id] - 1)),  # d older
            summed((c.node_id, own[c.node_id])),  # d missing
            [3, held[1]],
            summed((c.node_id, own[c.node_id]), (d.node_id, own[d.node_id]), ("x" * 64, 1)),
        ):
            answer = await gossip(other)
            assert answer["differ"] is True
            assert "same" not in answer
        table.newest_record = a.membership._now()  # a record reached a just now
        assert (await gossip(held))["differ"] is True
        table.newest_record = -math.inf
        for malformed in ([2], [2, "zz" * 16], [-1, held[1]], [2, held[1][:31]], "x", None):
            with pytest.raises(RemoteError) as caught:
                await gossip(malformed)
            assert caught.value.code == "bad_request"
        assert (await gossip(held))["same"] is True  # it still serves

        # The caller's side: a summary answered ``differ`` is followed by the whole digest.
        m = d.membership
        followed: list[tuple[list[str], dict[str, Any]]] = []
        m._gossip_to = lambda calls, peers, interval, *args, **kw: followed.append(  # type: ignore[method-assign]
            ([p.id for p in peers], kw)
        )  # (its own rounds' gossip too, while this lasts)
        peer = m.table.peers[a.node_id].peer
        wrong = {"v": 7, "from": m._signed_record(), "members": [], "summary": [9, "0" * 32]}
        differ = m.answered_differ
        await m._gossip_one(peer, wrong, 0.3)
        assert m.answered_differ == differ + 1
        assert ([a.node_id], {"same": True}) in followed  # the whole digest, at once
        assert m._differed[a.node_id] > m._rounds  # and whole digests to a for a while
        same = m.answered_same
        table.newest_record = -math.inf
        count, total = m.table.summary(leave_out=a.node_id)
        right = {**wrong, "summary": [count, f"{total:032x}"]}
        await m._gossip_one(peer, right, 0.3)
        assert m.answered_same == same + 1
        assert m.answered_differ == differ + 1
        del m._gossip_to


@pytest.mark.anyio
async def test_a_quiet_round_sends_summaries_to_partners_that_read_them(anyio_backend: str) -> None:
    """A round's whole digest goes as a summary only when the node is quiet, only to partners
    whose answers said gossip version 7, not to one that answered ``differ`` lately, and never
    in every ``SUMMARY_WHOLE``-th whole-digest round."""
    async with swarm("a", "b", "c", "d", partial_views=True) as nodes:
        a = min(nodes, key=lambda n: n.node_id)  # it owns its links (the lower id does)
        m = a.membership
        assert m.views is not None
        owned = set(m.views.owned())
        assert owned
        sent: list[tuple[str, dict[str, Any]]] = []

        class Calls:  # the round's calls over the links a owns, taken down and not made
            def start_soon(self, call: Any, peer: Peer, message: Any, interval: float) -> None:
                if peer.id in owned and "from" in message and "push" not in message:
                    sent.append((peer.id, message))

        def round_(number: int, *, quiet: bool) -> dict[str, str]:
            """What a's whole-digest round ``number`` sends each owned link: kind by id."""
            sent.clear()
            m._rounds = number
            m._fresh.clear()
            m._outstanding.clear()
            m.table.newest_record = -math.inf if quiet else m._now()
            m._view_round(Calls(), 5.0, m.views)  # type: ignore[arg-type]
            return {i: "summary" if "summary" in x else "compact" for i, x in sent}

        m.fanout = len(owned)
        m._summary_ok = set(owned)
        assert set(round_(1, quiet=True).values()) == {"summary"}
        assert set(round_(1, quiet=False).values()) == {"compact"}
        assert set(round_(_service.SUMMARY_WHOLE, quiet=True).values()) == {"compact"}
        earlier = sorted(owned)[0]
        m._summary_ok.discard(earlier)  # (its answers said version 6)
        kinds = round_(1, quiet=True)
        assert kinds[earlier] == "compact"
        assert all(kinds[i] == "summary" for i in owned - {earlier})
        m._summary_ok.add(earlier)
        m._differed[earlier] = 2  # (it answered ``differ``: whole digests until round 2)
        assert round_(1, quiet=True)[earlier] == "compact"
        assert round_(3, quiet=True)[earlier] == "summary"


@pytest.mark.anyio
async def test_a_partial_digest_is_answered_about_the_members_that_joined_lately(
    anyio_backend: str,
) -> None:
    """A digest flagged ``partial`` (the members that joined lately at its sender) is
    answered about those and about the members that joined lately at the answerer, not
    about every member: a swarm that keeps growing does not make every round's digest as
    long as the swarm."""
    async with swarm("a", "b", "c", "d", "e") as (a, b, c, d, e):
        m = a.membership
        held = {n.node_id: m.table.peers[n.node_id].seq for n in (c, d, e)}
        me = await Client("127.0.0.1", b.port).call("_synapse.record")
        caller = Client("127.0.0.1", a.port, identity=b.identity)  # b, on its own channel

        async def gossip(compact: list[list[Any]], **extra: Any) -> Any:
            message = {"v": 2, "from": me, "members": [], "compact": compact, **extra}
            return await caller.call("_synapse.gossip", message)

        m._fresh.clear()
        m._fresh[e.node_id] = m._now()  # only e joined lately at a
        listed = [[c.node_id, held[c.node_id], 0.5]]  # b names c, joined lately at b
        answer = await gossip(listed, partial=True)
        assert answer["v"] >= 3  # (it reads partial digests)
        assert [x["id"] for x in answer["members"]] == [e.node_id]  # new to b, maybe
        assert [x[:2] for x in answer["compact"]] == [[c.node_id, held[c.node_id]]]
        # The same digest, whole: d and e are missing from it, so b lacks them.
        answer = await gossip(listed)
        assert {x["id"] for x in answer["members"]} == {d.node_id, e.node_id}
        # Partial, b's record of c older, d's newer: c in full, d wanted, e as before.
        listed = [[c.node_id, held[c.node_id] - 1, 0.5], [d.node_id, held[d.node_id] + 1, 0.5]]
        answer = await gossip(listed, partial=True)
        assert {x["id"] for x in answer["members"]} == {c.node_id, e.node_id}
        assert [x[:2] for x in answer["compact"]] == [[d.node_id, held[d.node_id]]]
        assert answer["want"] == [d.node_id]


@pytest.mark.anyio
async def test_a_round_with_members_joined_lately_names_only_those(anyio_backend: str) -> None:
    """Between the rounds whose digest names every member, a round while members joined
    lately sends a digest of those only, flagged ``partial``, to the members whose answers
    said they read one (``v`` 3); a node of an earlier version gets the whole digest."""
    async with swarm("a", "b", "c", "d", partial_views=True) as nodes:
        a = min(nodes, key=lambda n: n.node_id)  # it owns its links (the lower id does)
        m = a.membership
        assert m.views is not None
        assert m.views.owned()
        sent: list[dict[str, Any]] = []
        owned = set(m.views.owned())

        class Calls:  # the round's calls over the links a owns, taken down and not made
            def start_soon(self, call: Any, peer: Peer, message: Any, interval: float) -> None:
                if peer.id in owned:  # (not a digest to a random member now and then)
                    sent.append(message)

        others = sorted(n.node_id for n in nodes if n is not a)
        with anyio.fail_after(5):  # their answers to a's rounds say they read partial digests
            while not owned <= m._partial_ok:
                await anyio.sleep(0.05)
        m._fresh.clear()
        m._fresh[others[0]] = m._now()
        padding = {f"{i:064x}": m._peers[others[0]] for i in range(40)}  # every = 2
        m._peers.update(padding)
        try:
            for regular, readers in ((False, owned), (True, owned), (False, set())):
                sent.clear()
                m._rounds = 2 if regular else 1
                m._outstanding.clear()
                m._partial_ok = set(readers)
                m._view_round(Calls(), 5.0, m.views)  # type: ignore[arg-type]
                digests = [x for x in sent if "compact" in x]
                assert digests, "a digest goes to an owned link"
                for x in digests:
                    named = {entry[0] for entry in x["compact"]}
                    if regular or not readers:
                        assert "partial" not in x
                        assert named == set(others)
                    else:
                        assert x["partial"] is True
                        assert named == {others[0]}
        finally:
            for node_id in padding:
                del m._peers[node_id]


def test_a_re_signing_seen_lately_is_named_and_not_wanted_again() -> None:
    """A node that saw a re-signing with the content it holds (not checked: it came within
    ``recheck_after`` of the record held) names it in its compact entries, so partners do not
    send it again; past ``recheck_after`` it names the record held, and gets the newer one."""
    table = table_of(a=(5, True))
    state = table.peers["a"]
    state.record_at, state.seen, state.heard = 90.0, 7, 99.0
    assert compact_entry(state, 100.0, recheck_after=20) == ["a", 7, 1.0]
    assert compact_entry(state, 111.0, recheck_after=20) == ["a", 5, 12.0]

    def wanted(seq: int, now: float) -> list[str]:
        return read_compact([["a", seq, 0.5]], now=now, skip=(), known=table.peers,
                            peer_timeout=20, trusted=True, recheck_after=20).want  # fmt: skip

    assert (wanted(6, 100.0), wanted(7, 100.0), wanted(8, 100.0)) == ([], [], ["a"])
    assert wanted(6, 111.0) == ["a"]  # past recheck_after: anything newer than the record held
