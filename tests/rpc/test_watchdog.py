"""Timeouts enforced by one shared watchdog per server or pool, on real loopback sockets
under both backends (virtual-time tests are in test_watchdog_virtual.py)."""

from __future__ import annotations

import struct
from typing import Any

import anyio
import msgpack
import pytest

from synapse_p2p import Client, Node
from synapse_p2p.errors import CallTimeout
from synapse_p2p.rpc import PlainDialer
from synapse_p2p.rpc._inline import run_inline as _run_inline
from tests.helpers import read_frame, wait_closed

pytestmark = pytest.mark.anyio


async def test_shared_watchdog_on_real_sockets(anyio_backend: str) -> None:
    """Many connections under one watchdog: a half-sent frame is answered and closed, an
    idle connection is closed, a busy one keeps being served meanwhile."""
    async with Node(bind="127.0.0.1", read_timeout=0.3, idle_timeout=0.6) as node:
        port = node.port
        outcomes: dict[str, Any] = {}

        async def half() -> None:
            async with await anyio.connect_tcp("127.0.0.1", port) as stream:
                await stream.send(b"\x00\x00\x01")
                outcomes["half"] = await read_frame(stream)
                await wait_closed(stream)

        async def idle() -> None:
            async with await anyio.connect_tcp("127.0.0.1", port) as stream:
                await wait_closed(stream)
                outcomes["idle"] = "closed"

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(half)
                tg.start_soon(idle)
                async with Client("127.0.0.1", port) as client:
                    while len(outcomes) < 2:  # bounded by fail_after
                        assert await client.call("_synapse.ping") == "pong"
                        await anyio.sleep(0.05)
                    assert await client.call("_synapse.ping") == "pong"
        assert "waiting for the rest of a frame" in outcomes["half"]["error"]["message"]
        assert outcomes["idle"] == "closed"


async def test_call_timeout_in_the_middle_of_a_write_closes_the_connection(
    anyio_backend: str,
) -> None:
    """A peer that answers the handshake and then stops reading: the call times out while its
    frame is being written, and the connection (which cannot carry on) is closed."""
    accepted = 0

    async def handle(stream: Any) -> None:
        nonlocal accepted
        accepted += 1
        request = await read_frame(stream)
        assert request is not None
        body = msgpack.packb(
            {
                "id": request["id"],
                "ok": True,
                "result": {"protocol": 1, "max_frame": 1 << 30, "node_id": "x"},
                "error": None,
                "type": "response",
            }
        )
        await stream.send(struct.pack("!I", len(body)) + body)
        await anyio.sleep_forever()  # never reads again

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        client = Client("127.0.0.1", port, timeout=0.5, max_download_size=1 << 30)
        client.dialer = PlainDialer(client.transport)  # the fake server speaks plaintext
        async with client:
            with anyio.fail_after(10):
                with pytest.raises(CallTimeout):
                    await client.call("echo", b"x" * (64 * 1024 * 1024))
            connection = client._connection
            assert connection is not None
            assert connection.closed
        tg.cancel_scope.cancel()
    assert accepted == 1


async def test_run_inline_reports_whether_the_coroutine_waited(anyio_backend: str) -> None:
    suspended: list[str] = []

    async def quick() -> None:
        suspended.append("quick ran")

    async def waits() -> None:
        await anyio.sleep(0)
        suspended.append("waits ran")

    async def fails() -> None:
        await anyio.sleep(0)
        raise ValueError("boom")

    assert await _run_inline(quick(), lambda: suspended.append("quick suspended")) is False
    assert await _run_inline(waits(), lambda: suspended.append("waits suspended")) is True
    assert suspended == ["quick ran", "waits suspended", "waits ran"]
    with pytest.raises(ValueError, match="boom"):
        await _run_inline(fails(), lambda: None)

    cleaned = anyio.Event()

    async def forever() -> None:
        try:
            await anyio.sleep_forever()
        finally:
            cleaned.set()

    with anyio.move_on_after(0.01) as scope:
        await _run_inline(forever(), lambda: None)
    assert scope.cancelled_caught
    assert cleaned.is_set()


def test_cancelled_heap_entries_are_dropped_once_they_are_half_the_heap() -> None:
    from types import SimpleNamespace

    from synapse_p2p.rpc._watchdog import _MIN_STALE_TO_REBUILD, Watchdog

    watchdog = Watchdog()
    channels = [SimpleNamespace(_watch_entry=None, _watch_target=0.0) for _ in range(4)]
    deadline = 1e6
    for _ in range(200):
        for channel in channels:  # each re-filing cancels the channel's previous entry
            deadline -= 1.0
            watchdog.schedule(channel, deadline)  # type: ignore[arg-type]
        assert len(watchdog._heap) <= 2 * (_MIN_STALE_TO_REBUILD + 1) + len(channels)
    live = [entry for entry in watchdog._heap if entry[2] is not None]
    assert sorted(id(entry[2]) for entry in live) == sorted(id(c) for c in channels)
    assert min(entry[0] for entry in live) == deadline
