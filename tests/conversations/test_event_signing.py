"""The signed encoding of conversation events and the checking and replay rules, without a
network: what survives a synapse-p2p 2.5.0 node's decode and re-encode, what tampering is
caught, which unsigned events are kept, and the bounded replay state."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import msgpack
import pytest

from synapse_p2p import ConversationEvent, Identity, Peer, SqliteConversationLog
from synapse_p2p._config import NodeConfig
from synapse_p2p._seams import LocalNode
from synapse_p2p.conversations._signing import (
    MAX_FUTURE,
    SEQ_WINDOW,
    EventRefused,
    EventTrust,
    may_move,
    sign_event,
    signed_message,
    verify_event,
)
from synapse_p2p.secure import SecurityPolicy
from synapse_p2p.wire import pack, unpack_payload

NOW = 1_800_000_000.0


@pytest.fixture(autouse=True)
def _no_secret_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests say which secret they use (``./dev test`` sets ``SYNAPSE_SECRET``)."""
    monkeypatch.delenv("SYNAPSE_SECRET", raising=False)


def author(identity: Identity, name: str = "alice") -> Peer:
    return Peer(id=identity.node_id, address="127.0.0.1", port=7000, name=name, last_seen=NOW)


def an_event(identity: Identity, **changes: Any) -> ConversationEvent:
    event = ConversationEvent(
        conversation_id="c1",
        event_id="e1",
        kind="note",
        peer=author(identity),
        payload={"text": "hello", "n": 3, "x": 1.5, "whole": 2.0, "nested": {"b": [1, {"z": 0}]}},
        parent_id="p0",
        created_at=NOW,
        metadata={"trace": "t-1"},
    )
    return sign_event(identity, replace(event, **changes), seq=7)


def shuffled(value: Any, rng: random.Random) -> Any:
    if isinstance(value, dict):
        keys = list(value)
        rng.shuffle(keys)
        return {k: shuffled(value[k], rng) for k in keys}
    if isinstance(value, list):
        return [shuffled(v, rng) for v in value]
    return value


def trust(*, secret: str | None = None, identity: Identity | None = None) -> EventTrust:
    me = identity or Identity.generate()
    config = NodeConfig.build(wall_clock=lambda: NOW, secret=secret)
    local = LocalNode(me.node_id, identity=me)
    return EventTrust(config, local, SecurityPolicy(secret))


def test_a_signed_event_is_verified_and_marked() -> None:
    alice = Identity.generate()
    event = an_event(alice)
    assert event.verified
    sig = event.metadata["sig"]
    assert sig["v"] == 1
    assert sig["seq"] == 7
    assert sig["key"] == alice.public_key.hex()
    assert len(sig["sig"]) == 128
    assert event.metadata["trace"] == "t-1"
    assert verify_event(event)


def test_the_signature_survives_every_re_encoding_of_a_2_5_0_node() -> None:
    """MsgPack through the wire, to_dict/from_dict, the JSON of 2.5.0's SQLite log, and maps
    re-ordered at every level."""
    alice = Identity.generate()
    event = an_event(alice)
    rng = random.Random(5)
    copies = [
        ConversationEvent.from_dict(unpack_payload(pack(event.to_dict()))),
        ConversationEvent.from_dict(msgpack.unpackb(msgpack.packb(event.to_dict()), raw=False)),
        ConversationEvent.from_dict(json.loads(json.dumps(event.to_dict(), default=str))),
        ConversationEvent.from_dict(shuffled(event.to_dict(), rng)),
    ]
    for copy in copies:
        assert not copy.verified  # never read from the wire
        assert verify_event(copy)
    assert signed_message(copies[3], 7) == signed_message(event, 7)


@pytest.mark.parametrize(
    "change",
    [
        {"payload": {"text": "HELLO"}},
        {"kind": "reply"},
        {"created_at": NOW + 1e-6},
        {"event_id": "e2"},
        {"conversation_id": "c2"},
        {"parent_id": None},
    ],
    ids=lambda c: next(iter(c)),
)
def test_tampering_breaks_the_signature(change: dict[str, Any]) -> None:
    alice = Identity.generate()
    event = an_event(alice)
    tampered = replace(event, **change)
    assert not verify_event(tampered)
    with pytest.raises(EventRefused, match="bad event signature"):
        trust().check(tampered)


def test_tampered_metadata_or_sequence_breaks_the_signature() -> None:
    alice = Identity.generate()
    event = an_event(alice)
    meta = {**event.metadata, "trace": "t-2"}
    assert not verify_event(replace(event, metadata=meta))
    sig = {**event.metadata["sig"], "seq": 8}
    assert not verify_event(replace(event, metadata={**event.metadata, "sig": sig}))


def test_the_author_id_must_be_the_hash_of_the_signing_key() -> None:
    alice, mallory = Identity.generate(), Identity.generate()
    own = an_event(mallory)
    forged = replace(own, peer=author(alice))  # mallory's signature, alice's id
    assert not verify_event(forged)
    with pytest.raises(EventRefused, match="not the author's"):
        trust().check(forged)
    with pytest.raises(ValueError, match="signed by its author"):
        sign_event(mallory, replace(own, peer=author(alice)), seq=1)


@pytest.mark.parametrize(
    "sig",
    [
        "not a map",
        {"v": 2, "key": "00" * 32, "sig": "00" * 64, "seq": 1},
        {"v": 1, "key": "zz" * 32, "sig": "00" * 64, "seq": 1},
        {"v": 1, "key": "00" * 32, "sig": "00" * 63, "seq": 1},
        {"v": 1, "key": "00" * 32, "sig": "00" * 64, "seq": -1},
        {"v": 1, "key": "00" * 32, "sig": "00" * 64, "seq": True},
    ],
)
def test_malformed_signatures_are_refused(sig: Any) -> None:
    alice = Identity.generate()
    event = replace(an_event(alice), metadata={"sig": sig})
    with pytest.raises(EventRefused) as info:
        trust().check(event)
    assert info.value.code == "bad_request"


def test_unsigned_events_are_kept_unverified_only_from_unknown_authors_without_a_secret() -> None:
    alice, bob = Identity.generate(), Identity.generate()
    checker = trust()
    unsigned = replace(an_event(alice), metadata={}, verified=False)
    assert checker.check(unsigned).verified is False  # a 2.5.0 author
    with pytest.raises(EventRefused, match="requires signatures"):
        trust(secret="s3cret").check(unsigned)
    # Once alice's signed event is accepted, her id needs signatures.
    checker.accepted(checker.check(an_event(alice)))
    with pytest.raises(EventRefused, match="verified author"):
        checker.check(unsigned)
    # An id seen verified in a handshake, and this node's own id, need them too.
    checker.policy.note_verified(bob.node_id)
    with pytest.raises(EventRefused, match="verified author"):
        checker.check(replace(an_event(bob), metadata={}))
    me = Identity.generate()
    mine = trust(identity=me)
    with pytest.raises(EventRefused, match="verified author"):
        mine.check(replace(an_event(me), metadata={}))
    assert checker.dropped["unsigned"] == 2


def test_events_dated_more_than_five_minutes_ahead_are_refused() -> None:
    alice = Identity.generate()
    checker = trust()
    assert checker.check(an_event(alice, created_at=NOW + MAX_FUTURE - 1)).verified
    with pytest.raises(EventRefused, match="ahead"):
        checker.check(an_event(alice, created_at=NOW + 600))
    assert checker.dropped["future"] == 1


def test_a_checked_signature_is_not_verified_again(monkeypatch: pytest.MonkeyPatch) -> None:
    from synapse_p2p.conversations import _signing

    alice = Identity.generate()
    event = an_event(alice)
    calls = []
    real = _signing.verify  # type: ignore[attr-defined]

    def counting(*args: Any) -> bool:
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(_signing, "verify", counting)
    monkeypatch.setattr(_signing, "CHECKED", _signing.CheckedSignatures())  # as if signed afar
    checker = trust()
    for _ in range(3):
        assert checker.check(ConversationEvent.from_dict(event.to_dict())).verified
    assert trust().check(event).verified  # another node of this process
    assert len(calls) == 1
    # The same signature on other contents is checked (and refused).
    with pytest.raises(EventRefused):
        checker.check(replace(event, payload={"text": "other"}))
    assert len(calls) == 2
    # What this process signs is known valid: no verification at all.
    assert trust().check(an_event(alice, event_id="mine")).verified
    assert len(calls) == 2


def test_replay_window_and_tombstones() -> None:
    alice = Identity.generate()
    checker = trust()
    events = [sign_event(alice, an_event(alice, event_id=f"e{i}"), seq=i) for i in range(5)]
    for event in events:
        event = checker.check(event)
        assert not checker.replayed(event)
        checker.accepted(event)
    assert all(checker.replayed(checker.check(e)) for e in events)
    # Past the window, the lowest sequence numbers are forgotten (the log's dedup remains).
    for i in range(5, 5 + SEQ_WINDOW):
        checker.accepted(sign_event(alice, an_event(alice, event_id=f"e{i}"), seq=i))
    assert not checker.replayed(checker.check(events[0]))
    assert checker.replayed(checker.check(events[-1])) is False  # seq 4 fell out too
    newest = sign_event(alice, an_event(alice, event_id="new"), seq=4 + SEQ_WINDOW)
    assert checker.replayed(checker.check(newest))
    # A pruned conversation refuses events up to its last one, not newer ones.
    checker.bury("c1", NOW)
    assert checker.replayed(checker.check(an_event(alice, event_id="old")))
    later = sign_event(alice, an_event(alice, event_id="later", created_at=NOW + 1), seq=10**9)
    assert not checker.replayed(checker.check(later))


def test_sequence_numbers_grow_across_restarts() -> None:
    me = Identity.generate()
    first = trust(identity=me)
    seqs = [first.next_seq() for _ in range(3)]
    assert seqs == sorted(set(seqs))
    again = trust(identity=me)  # a restarted node: the clock carries the order
    assert again.next_seq() >= seqs[0]


def test_the_one_rule_for_parties() -> None:
    alice = Identity.generate()
    signed = an_event(alice)
    unsigned = replace(signed, metadata={}, verified=False)
    assert may_move(signed, holder_verified=True)
    assert may_move(signed, holder_verified=False)
    assert may_move(unsigned, holder_verified=False)
    assert not may_move(unsigned, holder_verified=True)


@pytest.mark.anyio
async def test_the_sqlite_log_knows_which_stored_events_were_verified(
    anyio_backend: str, tmp_path: Path
) -> None:
    alice = Identity.generate()
    signed = an_event(alice)
    unsigned = replace(an_event(alice, event_id="e2"), metadata={}, verified=False)
    path = tmp_path / "log.db"
    async with SqliteConversationLog(path) as log:
        assert await log.append_many([signed, unsigned]) == [True, True]
    async with SqliteConversationLog(path) as log:
        got = {e.event_id: e.verified for e in log.events("c1")}
    assert got == {"e1": True, "e2": False}


def test_an_unverified_event_never_moves_a_task_of_a_verified_party() -> None:
    """The teams' state machines apply :func:`may_move` (sans-IO, events by hand)."""
    from synapse_p2p.teams._claims import ClaimBook, Start
    from synapse_p2p.teams._state import Finished, TaskTable

    worker, boss = Identity.generate(), Identity.generate()

    def ev(who: Identity, kind: str, signed: bool, **payload: Any) -> ConversationEvent:
        event = ConversationEvent("t1", f"{kind}-{signed}", kind, author(who), {"task_id": "t1",
                                  **payload}, created_at=NOW)  # fmt: skip
        return sign_event(who, event, 1) if signed else event

    table = TaskTable(boss.node_id, lease=30.0)
    table.offer(NOW, "t1", "job", {}, [])
    assert table.handle(NOW, ev(worker, "task.claim", True, attempt=1))
    task = table.tasks["t1"]
    assert task.assignee is not None
    assert task.assignee.verified
    assert table.handle(NOW, ev(worker, "task.done", False, result="FORGED")) == []
    assert task.status == "claimed"
    assert isinstance(table.handle(NOW, ev(worker, "task.done", True, result="REAL"))[0], Finished)
    assert task.result == "REAL"

    book = ClaimBook(worker.node_id)
    book.offer(NOW, ev(boss, "task.offer", True, attempt=1, title="job"), capable=True)
    grant = {"worker_id": worker.node_id, "attempt": 1}
    assert book.grant(NOW, ev(boss, "task.grant", False, **grant)) == []
    assert isinstance(book.grant(NOW, ev(boss, "task.grant", True, **grant))[0], Start)


def test_deeply_nested_payloads_sign_and_verify() -> None:
    """The encoding does not recurse: a reply nested deeper than Python's recursion limit
    (a peer may send one) signs and verifies like any other."""
    alice = Identity.generate()
    nested: list[Any] = []
    for _ in range(3000):
        nested = [nested, {"k": 1}]
    event = an_event(alice, payload={"result": nested})
    assert verify_event(event)
    assert not verify_event(replace(event, payload={"result": [nested]}))
