"""Timeouts enforced by one shared watchdog per server or pool, on virtual time (trio's
MockClock over the in-memory transport): read, idle and call deadlines, idle workers let go."""

from __future__ import annotations

import struct
from typing import Any

import anyio
import msgpack
import pytest
import trio.testing
from anyio.abc import ByteStream

from synapse_p2p import Client
from synapse_p2p.errors import CallTimeout, ConnectionLost
from synapse_p2p.rpc import (
    ConnectionPool,
    EndpointRegistry,
    PlainDialer,
    RpcServer,
    ServerLimits,
)
from synapse_p2p.transport import MemoryNetwork
from tests.helpers import request_frame

pytestmark = pytest.mark.anyio

SERVER = ("10.0.0.1", 7000)


@pytest.fixture
def anyio_backend() -> Any:
    return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})


class FrameReader:
    """Frames from a memory stream (whose chunks need not follow frame boundaries)."""

    def __init__(self, stream: ByteStream) -> None:
        self.stream = stream
        self.buffer = b""

    async def next(self) -> dict[str, Any] | None:
        """The next message, or None once the server has closed the stream."""
        while True:
            if len(self.buffer) >= 4:
                (size,) = struct.unpack_from("!I", self.buffer)
                if len(self.buffer) >= 4 + size:
                    body, self.buffer = self.buffer[4 : 4 + size], self.buffer[4 + size :]
                    message: dict[str, Any] = msgpack.unpackb(body, raw=False)
                    return message
            try:
                self.buffer += await self.stream.receive()
            except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
                return None


def registry_with(**handlers: Any) -> EndpointRegistry:
    registry = EndpointRegistry()
    for name, handler in handlers.items():
        registry.add(handler, name)
    return registry


async def echo(value: Any) -> Any:
    return value


async def slow() -> None:
    await anyio.sleep_forever()


async def test_one_watchdog_keeps_the_read_and_idle_deadlines_of_every_connection(
    anyio_backend: Any,
) -> None:
    network = MemoryNetwork()
    server = RpcServer(
        registry_with(echo=echo),
        limits=ServerLimits(read_timeout=5, idle_timeout=60),
        transport=network.transport(SERVER[0]),
    )
    client = network.transport("10.0.0.2")
    closed: dict[str, tuple[float, list[dict[str, Any]]]] = {}
    async with anyio.create_task_group() as tg:
        await tg.start(server.serve, *SERVER)
        start = anyio.current_time()

        async def until_closed(name: str, stream: ByteStream) -> None:
            reader, got = FrameReader(stream), []
            while (message := await reader.next()) is not None:
                got.append(message)
            closed[name] = (anyio.current_time() - start, got)

        half = await client.connect(*SERVER, timeout=1)
        idle = await client.connect(*SERVER, timeout=1)
        busy = await client.connect(*SERVER, timeout=1)
        tg.start_soon(until_closed, "half", half)
        tg.start_soon(until_closed, "idle", idle)
        await half.send(b"\x00\x00\x00\x10abc")  # declares 16 bytes, sends 3
        busy_reader = FrameReader(busy)
        for i in range(5):  # a request every 20 s keeps this one open
            await anyio.sleep(20)
            await busy.send(request_frame("echo", i, id=str(i)))
            answer = await busy_reader.next()
            assert answer is not None
            assert answer["result"] == i
        assert anyio.current_time() - start == pytest.approx(100)
        tg.cancel_scope.cancel()
    half_closed_at, half_got = closed["half"]
    assert half_closed_at == pytest.approx(5)
    assert len(half_got) == 1
    assert "waiting for the rest of a frame" in half_got[0]["error"]["message"]
    idle_closed_at, idle_got = closed["idle"]
    assert idle_closed_at == pytest.approx(60)
    assert idle_got == []


async def test_call_timeout_of_the_caller_reading_for_everyone(anyio_backend: Any) -> None:
    network = MemoryNetwork()
    released = anyio.Event()

    async def later() -> str:
        await released.wait()
        return "done"

    server = RpcServer(
        registry_with(slow=slow, later=later, echo=echo),
        transport=network.transport(SERVER[0]),
    )
    pool = ConnectionPool(transport=network.transport("10.0.0.2"))
    results: dict[str, Any] = {}
    async with anyio.create_task_group() as tg:
        await tg.start(server.serve, *SERVER)
        await tg.start(pool.run)
        assert await pool.call(*SERVER, "echo", [1]) == 1  # the connection exists
        start = anyio.current_time()

        async def call(name: str, endpoint: str, timeout: float) -> None:
            try:
                results[name] = await pool.call(*SERVER, endpoint, timeout=timeout)
            except CallTimeout as exc:
                results[name] = exc
            results[name + "_at"] = anyio.current_time() - start

        async with anyio.create_task_group() as calls:
            calls.start_soon(call, "slow", "slow", 3.0)  # first: it reads for everyone
            await anyio.sleep(0)
            calls.start_soon(call, "later", "later", 20.0)
            await anyio.sleep(10)
            released.set()
        tg.cancel_scope.cancel()
    assert isinstance(results["slow"], CallTimeout)
    assert results["slow_at"] == pytest.approx(3)
    assert results["later"] == "done"
    assert results["later_at"] == pytest.approx(10)
    assert network.connections == 1  # timed out, and the connection went on serving


async def test_call_timeout_of_a_caller_waiting_for_its_response(anyio_backend: Any) -> None:
    network = MemoryNetwork()
    released = anyio.Event()

    async def later() -> str:
        await released.wait()
        return "done"

    server = RpcServer(
        registry_with(slow=slow, later=later, echo=echo),
        transport=network.transport(SERVER[0]),
    )
    results: dict[str, Any] = {}
    async with anyio.create_task_group() as tg:
        await tg.start(server.serve, *SERVER)
        client = Client(*SERVER, transport=network.transport("10.0.0.2"), timeout=3)
        client.dialer = PlainDialer(client.transport)  # a bare (plaintext) RpcServer
        async with client:
            start = anyio.current_time()

            async def call(name: str, endpoint: str) -> None:
                try:
                    results[name] = await client.call(endpoint)
                except CallTimeout as exc:
                    results[name] = exc
                results[name + "_at"] = anyio.current_time() - start

            async with anyio.create_task_group() as calls:
                calls.start_soon(call, "later", "later")  # first: it reads for everyone
                await anyio.sleep(0)
                calls.start_soon(call, "slow", "slow")
                await anyio.sleep(1)
                released.set()
            assert await client.call("echo", 7) == 7  # the same connection still serves
        tg.cancel_scope.cancel()
    assert results["later"] == "done"
    assert results["later_at"] == pytest.approx(1)
    assert isinstance(results["slow"], CallTimeout)
    assert results["slow_at"] == pytest.approx(3)
    assert network.connections == 1


async def test_a_quiet_connection_lets_its_idle_workers_go(anyio_backend: Any) -> None:
    network = MemoryNetwork()
    released = anyio.Event()

    async def wait() -> str:
        await released.wait()
        return "done"

    server = RpcServer(
        registry_with(wait=wait, echo=echo),
        limits=ServerLimits(read_timeout=30, write_timeout=30, idle_timeout=3600),
        transport=network.transport(SERVER[0]),
    )
    async with anyio.create_task_group() as tg:
        await tg.start(server.serve, *SERVER)
        async with Client(*SERVER, transport=network.transport("10.0.0.2")) as client:
            async with anyio.create_task_group() as calls:
                for _ in range(8):
                    calls.start_soon(client.call, "wait")
                await anyio.sleep(1)
                (state,) = server._connections
                assert state.workers >= 8  # each waiting request has a worker of its own
                released.set()
            assert len(state.idle) > 1  # they wait for more work...
            await anyio.sleep(70)  # ...until a sweep finds the connection quiet
            assert state.idle == []
            assert state.workers == 1
            assert await client.call("echo", 1) == 1
            assert server.statistics().open_connections == 1
        tg.cancel_scope.cancel()


def swept_pool(network: MemoryNetwork) -> tuple[ConnectionPool, list[float]]:
    """A pool (idle timeout 60 s, brief 5 s) and the times its sweep runs."""
    pool = ConnectionPool(
        transport=network.transport("10.0.0.2"), idle_timeout=60, brief_idle_timeout=5
    )
    sweeps: list[float] = []
    reap = pool._reap

    def counted() -> None:
        sweeps.append(anyio.current_time())
        reap()

    pool._reap = counted  # type: ignore[method-assign]
    return pool, sweeps


async def test_the_pool_closes_idle_connections_when_due_and_wakes_only_then(
    anyio_backend: Any,
) -> None:
    """A connection kept (``retain``) lasts ``idle_timeout`` without calls, any other one
    ``brief_idle_timeout``, each closed within ``MIN_SWEEP`` of its time, also when
    ``retain`` changes after the call; and an idle pool does not sweep on a period (it wakes
    when a connection may be due)."""
    network = MemoryNetwork()
    servers = [("10.0.0.1", 7000), ("10.0.0.3", 7000), ("10.0.0.4", 7000)]
    pool, sweeps = swept_pool(network)
    closed_at: dict[tuple[str, int], float] = {}
    async with anyio.create_task_group() as tg:
        for address in servers:
            server = RpcServer(registry_with(echo=echo), transport=network.transport(address[0]))
            await tg.start(server.serve, *address)
        await tg.start(pool.run)
        start = anyio.current_time()
        pool.retain([servers[0], servers[2]])
        for address in servers:
            assert await pool.call(*address, "echo", [1]) == 1

        async def watch(address: tuple[str, int]) -> None:
            while pool.connected(*address):
                await anyio.sleep(0.01)
            closed_at[address] = anyio.current_time() - start

        for address in servers:
            tg.start_soon(watch, address)
        await anyio.sleep(20)
        pool.retain([servers[0]])  # the third is let go: 5 s after its last call, so now
        await anyio.sleep(100)
        tg.cancel_scope.cancel()
    assert closed_at[servers[1]] == pytest.approx(5, abs=0.1)  # brief
    assert closed_at[servers[2]] == pytest.approx(20, abs=0.1)  # let go at 20 s
    assert closed_at[servers[0]] == pytest.approx(60, abs=0.1)  # kept
    assert pool.statistics().open_connections == 0
    assert len(sweeps) <= 10  # (every 1.25 s, a period, would be 96 in 120 s)


async def test_the_pool_sweep_neither_spins_on_a_long_call_nor_lists_a_broken_connection(
    anyio_backend: Any,
) -> None:
    """A call longer than the brief idle timeout keeps its connection (never cut) without the
    sweep waking more than every quarter of that timeout meanwhile; a connection found broken
    (its server went away mid-call) is swept at once: not counted open, not listed."""
    network = MemoryNetwork()

    async def long() -> str:
        await anyio.sleep(25)
        return "done"

    pool, sweeps = swept_pool(network)
    async with anyio.create_task_group() as tg:
        server = RpcServer(registry_with(long=long), transport=network.transport(SERVER[0]))
        server_scope = anyio.CancelScope()

        async def serve(*, task_status: Any) -> None:
            with server_scope:
                await server.serve(*SERVER, task_status=task_status)

        await tg.start(serve)
        await tg.start(pool.run)
        pool.retain([])  # (every connection brief)
        start = anyio.current_time()
        assert await pool.call(*SERVER, "long", timeout=60) == "done"
        assert anyio.current_time() - start == pytest.approx(25)
        assert len(sweeps) <= 25 / (5 / 4) + 3  # (a spinning sweep: about 500)
        pool.retain([SERVER])  # kept 60 s
        errors: list[BaseException] = []

        async def doomed() -> None:
            try:
                await pool.call(*SERVER, "long")
            except ConnectionLost as exc:
                errors.append(exc)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as calls:
                calls.start_soon(doomed)
                await anyio.sleep(1)
                server_scope.cancel()  # the server goes away mid-call
        assert errors
        await anyio.sleep(0.1)
        assert pool.statistics().open_connections == 0
        assert pool._connections == {}  # swept at once, not at the pool's 60 s
        tg.cancel_scope.cancel()
