"""The lifecycle event queue (``node.on`` / ``node.emit_event``): order, a full queue, events
queued while stopped, and nothing left open by a node dropped without stopping."""

from __future__ import annotations

import gc
import warnings
from typing import Any

import anyio
import pytest

from synapse_p2p import Node
from synapse_p2p.node._events import EventBus


@pytest.mark.anyio
async def test_events_reach_their_handlers_in_order(anyio_backend: str) -> None:
    bus = EventBus()
    seen: list[Any] = []
    done = anyio.Event()

    async def handler(payload: Any) -> None:
        seen.append(payload)
        if payload == 2:
            done.set()

    bus.on("e", handler)
    bus.emit_nowait("other", "no handler: not queued")
    async with anyio.create_task_group() as tg:
        await tg.start(bus.run)
        for i in range(3):
            bus.emit_nowait("e", i)
        with anyio.fail_after(5):
            await done.wait()
        tg.cancel_scope.cancel()
    assert seen == [0, 1, 2]
    assert bus.dropped == 0


@pytest.mark.anyio
async def test_a_full_queue_drops_emit_nowait_and_holds_emit(anyio_backend: str) -> None:
    bus = EventBus(buffer=2)
    seen: list[Any] = []
    three = anyio.Event()

    async def handler(payload: Any) -> None:
        seen.append(payload)
        if len(seen) == 3:
            three.set()

    bus.on("e", handler)
    bus.emit_nowait("e", 1)
    bus.emit_nowait("e", 2)
    bus.emit_nowait("e", 3)  # full: dropped
    assert bus.dropped == 1
    sent = anyio.Event()

    async def emit_when_room() -> None:
        await bus.emit("e", 4)
        sent.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(emit_when_room)
        await anyio.wait_all_tasks_blocked()
        assert not sent.is_set()  # waits for room: nothing runs the queue yet
        await tg.start(bus.run)
        with anyio.fail_after(5):
            await sent.wait()
            await three.wait()
        tg.cancel_scope.cancel()
    assert seen == [1, 2, 4]


@pytest.mark.anyio
async def test_events_queued_while_stopped_come_at_the_next_run(anyio_backend: str) -> None:
    bus = EventBus()
    seen: list[Any] = []
    arrived: anyio.Event | None = None

    async def handler(payload: Any) -> None:
        seen.append(payload)
        assert arrived is not None
        arrived.set()

    bus.on("e", handler)
    for run in range(2):
        bus.emit_nowait("e", run)  # the bus is not running
        arrived = anyio.Event()
        async with anyio.create_task_group() as tg:
            await tg.start(bus.run)
            with anyio.fail_after(5):
                await arrived.wait()
            tg.cancel_scope.cancel()
    assert seen == [0, 1]


@pytest.mark.anyio
async def test_a_node_dropped_leaves_nothing_unclosed(anyio_backend: str) -> None:
    """The queue was a memory object stream pair that nothing closed: every node, dropped
    after it stopped (or never started), warned ``Unclosed <MemoryObjectSendStream>`` and
    ``<MemoryObjectReceiveStream>`` when collected (an error under ``-W error``)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        node = Node(bind="127.0.0.1", mdns=False, heartbeat_interval=None)

        @node.on("custom")
        async def handler(payload: Any) -> None:
            pass

        async with node:
            node.emit_event("custom", 1)
        never_started = Node(bind="127.0.0.1", mdns=False)
        del node, never_started, handler
        gc.collect()
    unclosed = [w for w in caught if issubclass(w.category, ResourceWarning)]
    assert unclosed == [], [str(w.message) for w in unclosed]
