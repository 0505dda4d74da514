"""Typed node events: ordered subscriptions, counted overflow, the user's @node.on names."""

from __future__ import annotations

import gc
import logging
import warnings
from typing import Any

import anyio
import pytest

from synapse_p2p import ConversationEvent, Node, Peer
from synapse_p2p._hub import EventHub, NodeEvent
from synapse_p2p.events import EventStored, PeerJoined, PeerLeft, PeerOffline
from synapse_p2p.testing import open_swarm

pytestmark = pytest.mark.anyio

PEER = Peer("p", "10.0.0.1", 1)


def stored(i: int, kind: str = "message") -> EventStored:
    return EventStored(ConversationEvent("c", f"e{i}", kind, PEER))


async def test_subscriptions_get_their_types_in_order(anyio_backend: str) -> None:
    sink: list[tuple[str, Any]] = []
    hub = EventHub(lambda name, payload: sink.append((name, payload)))
    with hub.subscribe(EventStored) as events, hub.subscribe(PeerJoined) as joins:
        for i in range(50):
            hub.publish(stored(i, "ack" if i % 2 else "message"))
        hub.publish(PeerJoined(PEER))
        got = [events.receive_nowait() for _ in range(50)]
        assert [e.event.event_id for e in got if isinstance(e, EventStored)] == [
            f"e{i}" for i in range(50)
        ]
        assert isinstance(await joins.receive(), PeerJoined)
        with pytest.raises(anyio.WouldBlock):
            events.receive_nowait()
    # The user's handlers see the public names; a stored event under two names.
    assert sink[0][0] == "conversation.event"
    assert sink[1][0] == "conversation.message"
    assert sink[3][0] == "conversation.ack"
    assert sink[-1] == ("peer.joined", PEER)
    assert hub.subscriptions == 0


async def test_a_consumer_that_falls_behind_is_counted_and_logged(
    anyio_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    hub = EventHub()
    with caplog.at_level(logging.ERROR, logger="synapse_p2p._hub"):
        with hub.subscribe(EventStored, buffer=3, owner="slow reader") as events:
            for i in range(10):
                hub.publish(stored(i))
            assert events.dropped == 7
            assert hub.dropped == 7
            kept = [events.receive_nowait() for _ in range(3)]
    assert [e.event.event_id for e in kept if isinstance(e, EventStored)] == ["e0", "e1", "e2"]
    assert "slow reader fell behind" in caplog.text


async def test_a_closed_subscription_ends_iteration(anyio_backend: str) -> None:
    hub = EventHub()
    events = hub.subscribe(PeerJoined)
    hub.publish(PeerJoined(PEER))
    events.close()
    hub.publish(PeerJoined(PEER))  # not delivered any more
    assert [type(e) async for e in events] == [PeerJoined]
    with pytest.raises(TypeError):
        hub.subscribe()


async def test_node_subscriptions_see_members_join_and_leave(anyio_backend: str) -> None:
    async with open_swarm(2, transport="tcp", heartbeat_interval=0.2, peer_timeout=1) as swarm:
        a, b = swarm.nodes
        before = a.statistics().subscriptions
        with a.subscribe(PeerJoined, PeerOffline, PeerLeft) as events:
            async with Node(bind="127.0.0.1", name="late", swarm="test", seeds=[f"127.0.0.1:{a.port}"],
                            heartbeat_interval=0.2, peer_timeout=1) as late:  # fmt: skip
                with anyio.fail_after(10):
                    async for event in events:
                        if isinstance(event, PeerJoined) and event.peer.id == late.node_id:
                            break
            with anyio.fail_after(10):
                async for event in events:
                    if isinstance(event, PeerLeft) and event.peer.id == late.node_id:
                        break
        assert a.statistics().subscriptions == before
        assert b.node_id in a.peers


@pytest.mark.parametrize("by", ["async for", "receive_nowait"])
async def test_a_drained_subscription_leaves_nothing_unclosed(anyio_backend: str, by: str) -> None:
    """Closed and read to its end, a subscription leaves nothing open (its memory object
    streams warned ``Unclosed <MemoryObjectReceiveStream>`` when collected); reading on ends
    the same way."""
    hub = EventHub()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        events = hub.subscribe(PeerJoined)
        hub.publish(PeerJoined(PEER))
        events.close()
        if by == "async for":
            assert [type(e) async for e in events] == [PeerJoined]
            with pytest.raises(anyio.EndOfStream):
                await events.receive()
        else:
            assert isinstance(events.receive_nowait(), PeerJoined)
            with pytest.raises(anyio.EndOfStream):
                events.receive_nowait()
        del events
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []


@pytest.mark.parametrize("discard", [False, True])
async def test_a_reader_waiting_when_its_subscription_closes_gets_end_of_stream(
    anyio_backend: str, discard: bool
) -> None:
    hub = EventHub()
    events = hub.subscribe(PeerJoined)
    ended: list[type[BaseException]] = []

    async def read() -> None:
        try:
            await events.receive()
        except Exception as exc:
            ended.append(type(exc))

    async with anyio.create_task_group() as tg:
        tg.start_soon(read)
        await anyio.wait_all_tasks_blocked()
        events.close(discard=discard)
    assert ended == [anyio.EndOfStream]
    with pytest.raises(anyio.EndOfStream):
        events.receive_nowait()


async def test_a_subscription_dropped_unclosed_warns_nothing(anyio_backend: str) -> None:
    """A consumer built and dropped without running (``Team(node).restore()``) leaves its
    subscription unclosed, with events in it: collected, it warns nothing."""
    hub = EventHub()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        events = hub.subscribe(PeerJoined)
        hub.publish(PeerJoined(PEER))
        del events, hub
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []


async def test_two_readers_share_a_subscriptions_events(anyio_backend: str) -> None:
    hub = EventHub()
    events = hub.subscribe(EventStored)
    got: list[str] = []

    async def read() -> None:
        async for event in events:
            assert isinstance(event, EventStored)
            got.append(event.event.event_id)

    async with anyio.create_task_group() as tg:
        tg.start_soon(read)
        tg.start_soon(read)
        await anyio.wait_all_tasks_blocked()
        for i in range(20):
            hub.publish(stored(i))
            if i % 7 == 0:
                await anyio.wait_all_tasks_blocked()
        events.close()
    assert sorted(got, key=lambda e: int(e[1:])) == [f"e{i}" for i in range(20)]


async def test_a_buffer_of_zero_hands_events_to_a_waiting_reader(anyio_backend: str) -> None:
    """As a memory stream of size 0 did: an event goes to a reader waiting for it; with none
    waiting it is dropped (and counted)."""
    hub = EventHub()
    events = hub.subscribe(PeerJoined, buffer=0)
    got: list[NodeEvent] = []

    async def read() -> None:
        got.append(await events.receive())

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(read)
            await anyio.wait_all_tasks_blocked()
            hub.publish(PeerJoined(PEER))
            hub.publish(PeerJoined(PEER))  # the reader took one already: no room
    assert len(got) == 1
    assert events.dropped == 1
    with pytest.raises(ValueError, match="negative"):
        hub.subscribe(PeerJoined, buffer=-1)
    with pytest.raises(ValueError, match="int"):
        hub.subscribe(PeerJoined, buffer=2.5)  # type: ignore[arg-type]


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_read_cancelled_in_one_event_loop_does_not_hold_the_next(backend: str) -> None:
    """A consumer run again in a new event loop (a node run twice) reads its subscription
    there: the event a cancelled read waited on is not kept for the next."""
    hub = EventHub()
    events = hub.subscribe(PeerJoined)

    async def cancelled_read() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(events.receive)
            await anyio.wait_all_tasks_blocked()
            tg.cancel_scope.cancel()

    got: list[NodeEvent] = []

    async def take() -> None:
        got.append(await events.receive())

    async def read() -> None:
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(take)
                await anyio.wait_all_tasks_blocked()
                hub.publish(PeerJoined(PEER))

    anyio.run(cancelled_read, backend=backend)
    anyio.run(read, backend=backend)
    assert len(got) == 1
