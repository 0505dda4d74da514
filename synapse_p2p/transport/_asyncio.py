"""Lean TCP streams for the asyncio backend (the one backend-specific piece of the transport).

anyio's asyncio socket stream pays, on every call, for what a framed RPC connection does not
need: a checkpoint (one event-loop turn) before each send, pausing and resuming the transport's
reading around each wait (two ``epoll_ctl`` calls), and two events per connection. These
streams write straight to the asyncio transport and wait only when it asks for backpressure,
keep reading registered until ``READ_HIGH_WATER`` bytes are buffered, and allocate a future
only while a receive or a send actually waits. The first send in a turn of the event loop is
written at once; sends made later in the same turn (many tasks answering or calling at the
same time) are joined and written in one system call at the start of the next turn. Received
data is kept across a cancelled ``receive``; ``receive`` and ``send`` return without yielding
to the event loop when they need not wait (like asyncio's own streams), so callers checkpoint
elsewhere.

They are :class:`anyio.abc.SocketStream` objects, so socket attributes
(``SocketAttribute.remote_address``, ...) work as usual. Under trio, anyio's streams are used.
"""

from __future__ import annotations

import asyncio
import socket
import weakref

import anyio
from anyio.abc import SocketAttribute, SocketListener, SocketStream

from ._backend import WrappedListener

__all__ = ["AsyncioListener", "AsyncioSocketStream", "connect_asyncio"]

#: Reading pauses while more than this many received bytes wait to be read, and resumes once
#: the reader has taken them down to ``READ_LOW_WATER``.
READ_HIGH_WATER = 1024 * 1024
READ_LOW_WATER = 256 * 1024


class _Protocol(asyncio.Protocol):
    __slots__ = (
        "buffered",
        "chunks",
        "closed",
        "drain_waiter",
        "eof",
        "exception",
        "flusher",
        "outgoing",
        "outgoing_bytes",
        "read_paused",
        "read_waiter",
        "transport",
        "write_paused",
        "wrote",
    )

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.chunks: list[bytes] = []
        self.buffered = 0
        self.eof = False
        self.closed = False  # closed on our side (aclose)
        self.exception: BaseException | None = None
        self.read_paused = False
        self.write_paused = False
        self.read_waiter: asyncio.Future[None] | None = None
        self.drain_waiter: asyncio.Future[None] | None = None
        #: Something was written in this turn of the loop: later writes in the turn wait in
        #: ``outgoing`` until the loop's flusher runs, at the start of the next turn.
        self.wrote = False
        self.outgoing: list[bytes] = []
        self.outgoing_bytes = 0
        self.flusher = _flusher(asyncio.get_running_loop())

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        self.buffered += len(data)
        if self.buffered > READ_HIGH_WATER and not self.read_paused:
            assert self.transport is not None
            self.read_paused = True
            self.transport.pause_reading()
        self.wake_reader()

    def eof_received(self) -> bool:
        self.eof = True
        self.wake_reader()
        return True  # keep the transport open for writing: the peer may only have half-closed

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        if exc is not None:
            self.exception = exc
        self.wake_reader()
        self.wake_writer()

    def write(self, data: bytes) -> None:
        if not self.wrote:
            assert self.transport is not None
            self.transport.write(data)
            self.wrote = True
            self.flusher.touch(self)
        else:
            self.outgoing.append(data)
            self.outgoing_bytes += len(data)

    def flush(self) -> None:
        """Write what waits in ``outgoing`` (a new turn has started)."""
        self.wrote = False
        if self.outgoing:
            data = b"".join(self.outgoing)
            self.outgoing.clear()
            self.outgoing_bytes = 0
            assert self.transport is not None
            if not self.transport.is_closing():
                self.write(data)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self.wake_writer()

    def wake_reader(self) -> None:
        waiter = self.read_waiter
        if waiter is not None:
            self.read_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def wake_writer(self) -> None:
        waiter = self.drain_waiter
        if waiter is not None:
            self.drain_waiter = None
            if not waiter.done():
                waiter.set_result(None)


class AsyncioSocketStream(SocketStream):
    """A TCP stream over an asyncio transport (see the module documentation)."""

    #: ``receive(max_bytes)`` costs the same whatever ``max_bytes`` is: the transport reads
    #: on its own, and a receive hands over what it read (split only past ``max_bytes``).
    #: Layers above (the secure channel) then ask for large chunks, never splitting one.
    receive_size_free = True

    def __init__(self, transport: asyncio.Transport, protocol: _Protocol) -> None:
        self._transport = transport
        self._protocol = protocol

    @property
    def _raw_socket(self) -> socket.socket:
        sock: socket.socket = self._transport.get_extra_info("socket")
        return sock

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if max_bytes < 1:
            raise ValueError("max_bytes must be a positive integer")
        protocol = self._protocol
        while not protocol.chunks:
            if protocol.closed:
                raise anyio.ClosedResourceError
            if protocol.eof:
                if protocol.exception is not None:
                    raise anyio.BrokenResourceError from protocol.exception
                raise anyio.EndOfStream
            if protocol.read_waiter is not None:
                raise anyio.BusyResourceError("reading from")
            waiter = protocol.read_waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                if protocol.read_waiter is waiter:
                    protocol.read_waiter = None
        chunk = protocol.chunks.pop(0)
        if len(chunk) > max_bytes:
            chunk, rest = chunk[:max_bytes], chunk[max_bytes:]
            protocol.chunks.insert(0, rest)
        protocol.buffered -= len(chunk)
        if protocol.read_paused and protocol.buffered <= READ_LOW_WATER:
            protocol.read_paused = False
            if not self._transport.is_closing():
                self._transport.resume_reading()
        return chunk

    async def send(self, item: bytes) -> None:
        """Hand ``item`` to the transport; if that leaves more buffered than the transport's
        high-water mark (the peer is not keeping up), wait until it has drained, like anyio's
        streams do, so a write stays in progress while the peer does not read."""
        protocol = self._protocol
        self._check_writable()
        protocol.write(item)
        if protocol.outgoing_bytes > self._transport.get_write_buffer_limits()[1]:
            # Writes of this turn waiting for the flusher are past the high-water mark: hand
            # them to the transport now, so the wait below applies to them too.
            protocol.flush()
        while protocol.write_paused:
            if protocol.drain_waiter is not None:
                raise anyio.BusyResourceError("writing to")
            waiter = protocol.drain_waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                if protocol.drain_waiter is waiter:
                    protocol.drain_waiter = None
            self._check_writable()

    def send_nowait(self, data: bytes) -> int:
        """Hand ``data`` to the transport, without yielding, if that keeps its buffer under
        the high-water mark (else nothing: :meth:`send` it, which waits for the peer to
        read); return how many bytes were taken (all or nothing)."""
        self._check_writable()
        protocol = self._protocol
        transport = self._transport
        if protocol.write_paused or (
            transport.get_write_buffer_size() + protocol.outgoing_bytes + len(data)
            > transport.get_write_buffer_limits()[1]
        ):
            return 0
        protocol.write(data)
        return len(data)

    def _check_writable(self) -> None:
        protocol = self._protocol
        if protocol.closed:
            raise anyio.ClosedResourceError
        if protocol.exception is not None:
            raise anyio.BrokenResourceError from protocol.exception
        if self._transport.is_closing():
            raise anyio.BrokenResourceError

    async def send_eof(self) -> None:
        if self._protocol.outgoing:
            self._protocol.flush()
        try:
            self._transport.write_eof()
        except OSError:
            pass

    async def aclose(self) -> None:
        protocol = self._protocol
        if not protocol.closed:
            protocol.closed = True
            if protocol.outgoing and not protocol.write_paused:
                protocol.flush()  # written data leaves (what the socket takes now), as on trio
            protocol.outgoing.clear()
            protocol.outgoing_bytes = 0
            self._transport.abort()
            for waiter in (protocol.read_waiter, protocol.drain_waiter):
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)  # the waiting call raises ClosedResourceError
            protocol.read_waiter = protocol.drain_waiter = None
        await anyio.lowlevel.checkpoint()


class _Flusher:
    """Per event loop: once per turn in which something was written, lets the streams that
    wrote write what they were given since (one call scheduled per turn, not per write)."""

    __slots__ = ("handle", "touched")

    def __init__(self) -> None:
        self.touched: list[_Protocol] = []
        self.handle: asyncio.Handle | None = None

    def touch(self, protocol: _Protocol) -> None:
        self.touched.append(protocol)
        if self.handle is None:
            self.handle = asyncio.get_running_loop().call_soon(self.run)

    def run(self) -> None:
        self.handle = None
        touched, self.touched = self.touched, []
        for protocol in touched:
            protocol.flush()


_flushers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Flusher] = (
    weakref.WeakKeyDictionary()
)


def _flusher(loop: asyncio.AbstractEventLoop) -> _Flusher:
    flusher = _flushers.get(loop)
    if flusher is None:
        flusher = _flushers[loop] = _Flusher()
    return flusher


async def connect_asyncio(host: str, port: int) -> AsyncioSocketStream:
    """Connect to ``host:port`` (``TCP_NODELAY`` set by asyncio); raises ``OSError``."""
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_connection(_Protocol, host, port)
    return AsyncioSocketStream(transport, protocol)


class AsyncioListener(WrappedListener):
    """Accepts :class:`AsyncioSocketStream` objects on the socket of an anyio listener (which
    keeps owning and closing it)."""

    def __init__(self, listener: SocketListener) -> None:
        super().__init__(listener)
        self._socket: socket.socket = listener.extra(SocketAttribute.raw_socket)

    async def accept(self) -> AsyncioSocketStream:
        client = await self._accept_socket()
        loop = asyncio.get_running_loop()
        try:
            if client.family in (socket.AF_INET, socket.AF_INET6):
                client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            transport, protocol = await loop.connect_accepted_socket(_Protocol, client)
        except BaseException:
            client.close()
            raise
        return AsyncioSocketStream(transport, protocol)

    async def _accept_socket(self) -> socket.socket:
        """The next connection on the (non-blocking) listening socket. Not
        ``loop.sock_accept``: on Python 3.11 its callback can complete a future that was just
        cancelled (``InvalidStateError`` in the loop, and the accepted socket leaked) when the
        server stops while a connection arrives."""
        loop = asyncio.get_running_loop()
        sock = self._socket
        while True:
            try:
                client, _ = sock.accept()
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                if sock.fileno() < 0:
                    raise anyio.ClosedResourceError from None
                raise
            else:
                client.setblocking(False)
                return client
            fd = sock.fileno()
            if fd < 0:
                raise anyio.ClosedResourceError
            ready = loop.create_future()

            def wake(ready: asyncio.Future[None] = ready) -> None:
                if not ready.done():
                    ready.set_result(None)

            loop.add_reader(fd, wake)
            try:
                await ready
            finally:
                loop.remove_reader(fd)
