"""HyParView core when a swarm starts at once: JOIN walks, paced repair, few evictions."""

from __future__ import annotations

from synapse_p2p.membership._records import Action, PeerRecord, Send
from synapse_p2p.membership._views import HyParView, ViewConfig
from synapse_p2p.membership._views_wire import (
    ForwardJoin,
    Join,
    Neighbor,
    NeighborReply,
)

ME = PeerRecord("me", "10.0.0.1", 7000)


def rec(i: int) -> PeerRecord:
    return PeerRecord(f"p{i}", f"10.1.{i // 250}.{i % 250 + 1}", 7000)


def asked(actions: list[Action]) -> list[Send]:
    return [a for a in actions if isinstance(a, Send) and isinstance(a.message, Neighbor)]


def test_repair_is_paced_one_high_priority_request_at_a_time() -> None:
    view = HyParView(ME, seed=1)
    for i in range(1, 41):
        view.offer(rec(i))
    actions = view.tick(0.0)  # an empty view: one high-priority request, not the target's worth
    (first,) = asked(actions)
    assert first.message == Neighbor(ME, high=True)
    assert asked(view.tick(0.5)) == []  # still waiting on it
    # accepted: at once the next requests, low priority, at most max_requests outstanding
    actions = view.handle(0.6, first.peer.id, NeighborReply(first.peer, accepted=True))
    more = asked(actions)
    assert len(more) == view.config.max_requests
    assert all(s.message == Neighbor(ME, high=False) for s in more)
    assert len(view.pending) == view.config.max_requests


def test_a_refusal_waits_for_the_tick_and_then_asks_at_high_priority() -> None:
    view = HyParView(ME, ViewConfig(max_requests=1), seed=2)
    for i in range(1, 41):
        view.offer(rec(i))
    (first,) = asked(view.tick(0.0))
    view.handle(0.1, first.peer.id, NeighborReply(first.peer, accepted=True))
    (second,) = view.pending.values()
    assert second.record.id != first.peer.id
    # refused (full views everywhere): nothing more until the next tick...
    assert asked(view.handle(0.2, second.record.id, NeighborReply(second.record, False))) == []
    assert not view.pending
    # ...then one request at high priority: a late joiner is not locked out
    (third,) = asked(view.tick(1.0))
    assert third.message == Neighbor(ME, high=True)
    assert len(view.active) < view.target()


def test_no_repair_while_the_join_is_answered_or_its_walks_arrive() -> None:
    view = HyParView(ME, seed=3)
    contact = rec(1)
    for i in range(2, 41):
        view.offer(rec(i))
    actions = view.join(0.0, [contact])
    assert [a.message for a in actions if isinstance(a, Send)] == [Join(ME)]
    assert [view.joining] == [contact.id]
    assert asked(view.tick(0.5)) == []  # the contact has not answered
    view.handle(0.6, contact.id, NeighborReply(contact, accepted=True))
    assert view.joining is None
    assert asked(view.tick(0.6 + view.config.join_quiet / 2)) == []  # walks may still arrive
    assert asked(view.tick(0.6 + view.config.join_quiet + 0.1))  # then repair tops up


def test_a_contact_of_many_joiners_evicts_nobody_and_still_starts_walks() -> None:
    view = HyParView(ME, seed=4)
    view.size_estimate = 100
    room = min(view.config.active_max, view.target() + view.config.accept_slack)
    for i in range(1, 60):
        actions = view.handle(0.0, f"p{i}", Join(rec(i)))
        reply = [a.message for a in actions if isinstance(a, Send) and a.peer.id == f"p{i}"]
        assert reply == [NeighborReply(ME, accepted=i <= room)]
        walks = [a for a in actions if isinstance(a, Send) and isinstance(a.message, ForwardJoin)]
        assert len(walks) == min(i - 1, room)
    assert len(view.active) == room
    assert view.evictions == 0
    assert len(view.passive) == view.config.passive_max  # the refused ones, to repair with


def test_a_high_priority_request_evicts_only_past_the_room() -> None:
    view = HyParView(ME, seed=5)
    view.size_estimate = 100
    target = view.target()
    for i in range(1, target + 1):
        view.handle(0.0, f"p{i}", Neighbor(rec(i), high=False))
    assert len(view.active) == target
    view.handle(0.0, "p90", Neighbor(rec(90), high=True))
    assert len(view.active) == target + 1
    assert view.evictions == 0
    for i in range(91, 95):
        view.handle(0.0, f"p{i}", Neighbor(rec(i), high=True))
    assert len(view.active) == min(view.config.active_max, target + view.config.accept_slack)
    assert view.evictions == 4 - (view.config.accept_slack - 1)


def test_a_contact_that_sends_neighbor_first_does_not_block_repair() -> None:
    # The contact answers our JOIN by asking us to be its neighbor first (its NEIGHBOR settles
    # our pending request), and the JOIN's own reply never comes: the view still tops up.
    view = HyParView(ME, seed=6)
    contact = rec(1)
    for i in range(2, 41):
        view.offer(rec(i))
    view.join(0.0, [contact])
    view.handle(0.1, contact.id, Neighbor(contact, high=True))
    assert contact.id in view.active
    assert asked(view.tick(0.1 + view.config.join_quiet + 0.1))
    assert view.joining is None
