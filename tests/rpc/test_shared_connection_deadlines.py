"""One call's timeout never fails the other calls multiplexed on its pooled connection.

A node's calls to a peer share one connection: gossip with a 0.5 s timeout travels beside
asks and conversation events with 30 s ones. When a busy event loop (or a slow peer) keeps the
short call writing past its deadline, cutting its write short would break the connection and
fail every call on it; instead the write goes on, that call alone times out, and the others
get their answers.
"""

from __future__ import annotations

import math
from typing import Any

import anyio
import pytest
from anyio.abc import ByteStream

from synapse_p2p.errors import CallTimeout
from synapse_p2p.rpc import ConnectionPool, EndpointRegistry, RpcServer
from synapse_p2p.transport import MemoryNetwork, MemoryTransport

pytestmark = pytest.mark.anyio

SERVER = ("10.0.0.1", 7000)
SLOW_WRITE = 0.5  # how long a write takes while writes are slow
SHORT = 0.1  # a call timeout shorter than that


class SlowWrites(ByteStream):
    """A stream whose writes, after the first ``fast`` ones, take ``SLOW_WRITE`` s each (and
    still go through whole unless the stream is closed meanwhile): a peer that reads slowly,
    or an event loop too busy to run the writer. ``writing`` events are set when a slow write
    starts."""

    def __init__(self, inner: ByteStream, fast: float, writing: list[anyio.Event]) -> None:
        self.inner = inner
        self.fast = fast
        self.writing = writing
        self.closed = anyio.Event()

    async def receive(self, max_bytes: int = 65536) -> bytes:
        return await self.inner.receive(max_bytes)

    async def send(self, item: bytes) -> None:
        if self.fast > 0:
            self.fast -= 1
        else:
            while self.writing:
                self.writing.pop().set()
            with anyio.move_on_after(SLOW_WRITE):
                await self.closed.wait()
            if self.closed.is_set():  # closed meanwhile, as a socket would be
                raise anyio.ClosedResourceError
        await self.inner.send(item)

    async def send_eof(self) -> None:
        await self.inner.send_eof()

    async def aclose(self) -> None:
        self.closed.set()
        await self.inner.aclose()

    @property
    def extra_attributes(self) -> Any:
        return self.inner.extra_attributes


class SlowDialer:
    """Plaintext connections over the memory network, each a :class:`SlowWrites` whose first
    ``fast`` writes are not slowed."""

    def __init__(self, transport: MemoryTransport, fast: float = math.inf) -> None:
        self.transport = transport
        self.fast = fast
        self.streams: list[SlowWrites] = []
        self.writing: list[anyio.Event] = []

    async def connect(
        self, host: str, port: int, *, timeout: float, expected_node_id: str | None = None
    ) -> tuple[ByteStream, str | None]:
        inner = await self.transport.connect(host, port, timeout=timeout)
        stream = SlowWrites(inner, self.fast, self.writing)
        self.streams.append(stream)
        return stream, None


async def _serving(registry: EndpointRegistry, network: MemoryNetwork, tg: Any) -> RpcServer:
    server = RpcServer(registry, transport=network.transport(SERVER[0]))
    await tg.start(server.serve, SERVER[0], SERVER[1])
    return server


def _registry(started: anyio.Event, release: anyio.Event) -> EndpointRegistry:
    registry = EndpointRegistry()

    async def wait() -> str:
        started.set()
        await release.wait()
        return "done"

    async def echo(value: Any) -> Any:
        return value

    registry.add(wait, "wait")
    registry.add(echo, "echo")
    return registry


async def test_a_call_timing_out_mid_write_leaves_the_others_on_the_connection(
    anyio_backend: str,
) -> None:
    network = MemoryNetwork()
    started, release = anyio.Event(), anyio.Event()
    dialer = SlowDialer(network.transport("10.0.0.2"))
    pool = ConnectionPool(dialer=dialer, transport=dialer.transport)
    outcome: dict[str, Any] = {}
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            await _serving(_registry(started, release), network, tg)
            await tg.start(pool.run)

            async def long_call() -> None:
                outcome["long"] = await pool.call(*SERVER, "wait", timeout=30)
                done.set()

            done = anyio.Event()
            tg.start_soon(long_call)
            await started.wait()  # in flight on the pooled connection
            (stream,) = dialer.streams
            stream.fast = 0
            with pytest.raises(CallTimeout):  # its write outlasts its deadline
                await pool.call(*SERVER, "echo", ["x"], timeout=SHORT)
            stream.fast = math.inf
            release.set()
            await done.wait()
            assert outcome["long"] == "done"  # the other call was not lost
            assert await pool.call(*SERVER, "echo", ["y"], timeout=5) == "y"
            assert pool.statistics().connects == 1  # the same connection all along
            tg.cancel_scope.cancel()


async def test_a_call_alone_on_its_connection_still_times_out_mid_write(
    anyio_backend: str,
) -> None:
    """With nothing else in flight, the write is cut short at the deadline (the caller does
    not wait for it) and the connection, which cannot go on, is replaced."""
    network = MemoryNetwork()
    started, release = anyio.Event(), anyio.Event()
    dialer = SlowDialer(network.transport("10.0.0.2"), fast=1)  # the handshake
    pool = ConnectionPool(dialer=dialer, transport=dialer.transport)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            await _serving(_registry(started, release), network, tg)
            await tg.start(pool.run)
            before = anyio.current_time()
            with pytest.raises(CallTimeout):
                await pool.call(*SERVER, "echo", ["x"], timeout=SHORT)
            assert anyio.current_time() - before < SLOW_WRITE
            dialer.fast = math.inf
            assert await pool.call(*SERVER, "echo", ["y"], timeout=5) == "y"
            assert pool.statistics().connects == 2
            tg.cancel_scope.cancel()


async def test_the_call_that_opens_the_connection_times_out_without_breaking_it(
    anyio_backend: str,
) -> None:
    """The first call to a peer opens the connection; a call joining the connection while
    that first call's write is slow is not failed when the first one times out."""
    network = MemoryNetwork()
    started, release = anyio.Event(), anyio.Event()
    dialer = SlowDialer(network.transport("10.0.0.2"), fast=1)  # the handshake
    pool = ConnectionPool(dialer=dialer, transport=dialer.transport)
    outcome: dict[str, Any] = {}
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            await _serving(_registry(started, release), network, tg)
            await tg.start(pool.run)

            async def first() -> None:
                with pytest.raises(CallTimeout):
                    await pool.call(*SERVER, "echo", ["first"], timeout=SHORT)
                outcome["first"] = "timed out"
                done.set()

            writing, done = anyio.Event(), anyio.Event()
            dialer.writing.append(writing)
            tg.start_soon(first)
            await writing.wait()  # the first call is writing, slowly
            (stream,) = dialer.streams
            stream.fast = math.inf
            # This one joins the connection while the first call writes: its frame leaves
            # with the first call's write.
            assert await pool.call(*SERVER, "echo", ["second"], timeout=5) == "second"
            await done.wait()
            assert outcome["first"] == "timed out"
            assert pool.statistics().connects == 1
            tg.cancel_scope.cancel()


async def test_a_call_timing_out_mid_write_does_not_stay_to_write_the_others_frames(
    anyio_backend: str,
) -> None:
    """While it writes, other calls keep queueing frames behind it: once its deadline has
    passed it leaves after the chunk in progress, and the queue is still written."""
    network = MemoryNetwork()
    started, release = anyio.Event(), anyio.Event()
    dialer = SlowDialer(network.transport("10.0.0.2"))
    pool = ConnectionPool(dialer=dialer, transport=dialer.transport)
    answers: list[Any] = []
    all_answered = anyio.Event()

    def answered(value: Any) -> None:
        answers.append(value)
        if len(answers) == 9:  # the long call and the 8 echoes
            all_answered.set()

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            await _serving(_registry(started, release), network, tg)
            await tg.start(pool.run)

            async def long_call() -> None:
                answered(await pool.call(*SERVER, "wait", timeout=30))

            async def chatter(writing: anyio.Event) -> None:
                await writing.wait()
                for i in range(8):  # a frame queued behind the writer every 0.1 s
                    tg.start_soon(echo_call, i)
                    await anyio.sleep(SLOW_WRITE / 3)

            async def echo_call(i: int) -> None:
                answered(await pool.call(*SERVER, "echo", [i], timeout=30))

            tg.start_soon(long_call)
            await started.wait()
            (stream,) = dialer.streams
            stream.fast = 0
            writing = anyio.Event()
            dialer.writing.append(writing)
            tg.start_soon(chatter, writing)
            before = anyio.current_time()
            with pytest.raises(CallTimeout):
                await pool.call(*SERVER, "echo", ["x"], timeout=SHORT)
            assert anyio.current_time() - before < 2 * SLOW_WRITE  # one chunk, not the queue
            stream.fast = math.inf
            release.set()
            await all_answered.wait()
            assert sorted(answers, key=str) == [*range(8), "done"]
            assert pool.statistics().connects == 1
            tg.cancel_scope.cancel()
