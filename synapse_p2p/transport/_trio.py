"""Lean TCP streams for the trio backend (backend-specific, like :mod:`._asyncio`).

anyio's trio socket stream goes through three layers (anyio's stream, trio's socket wrapper
and its non-blocking helper) and several objects per connection. These streams work on the
socket directly: ``send`` writes at once and waits for writability only when the socket
buffer is full; ``receive`` waits for readability only when nothing is there. Like trio's
own streams, both are schedule points (they yield once after a successful call, shielded,
so no data is lost to cancellation): while one task's send yields, frames other tasks send
queue up in the channel and leave together.
Closing the stream wakes a task waiting on it with ``ClosedResourceError``.

Imported only under trio. Connections are still set up by anyio (name resolution, happy
eyeballs, ``TCP_NODELAY``); the stream then takes the connected socket over.
"""

from __future__ import annotations

import socket
from typing import Any

import anyio
import trio
from anyio.abc import SocketAttribute, SocketStream

from ._backend import WrappedListener

__all__ = ["TrioListener", "TrioSocketStream", "connect_trio"]


class TrioSocketStream(SocketStream):
    """A TCP stream over a connected non-blocking socket (see the module documentation)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._closed = False
        self._receiving = False
        self._sending = False

    @property
    def _raw_socket(self) -> socket.socket:
        return self._sock

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if max_bytes < 1:
            raise ValueError("max_bytes must be a positive integer")
        if self._receiving:
            raise anyio.BusyResourceError("reading from")
        self._receiving = True
        try:
            while True:
                if self._closed:
                    raise anyio.ClosedResourceError
                try:
                    data = self._sock.recv(max_bytes)
                    break
                except BlockingIOError:
                    pass  # (waited for outside the handler: an idle stream holds no exception)
                except OSError as exc:
                    raise anyio.BrokenResourceError from exc
                try:
                    await trio.lowlevel.wait_readable(self._sock)
                except trio.ClosedResourceError:
                    raise anyio.ClosedResourceError from None
        finally:
            self._receiving = False
        if not data:
            raise anyio.EndOfStream
        await trio.lowlevel.cancel_shielded_checkpoint()
        return data

    async def send(self, item: bytes) -> None:
        if self._closed:
            raise anyio.ClosedResourceError
        if self._sending:
            raise anyio.BusyResourceError("writing to")
        try:
            sent = self._sock.send(item)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            raise anyio.BrokenResourceError from exc
        if sent == len(item):
            # A schedule point, as trio's streams: frames other tasks send meanwhile queue up
            # behind this one and leave together (fewer, larger writes under load).
            await trio.lowlevel.cancel_shielded_checkpoint()
            return
        self._sending = True
        try:
            rest = memoryview(item)[sent:]
            while rest:
                try:
                    await trio.lowlevel.wait_writable(self._sock)
                except trio.ClosedResourceError:
                    raise anyio.ClosedResourceError from None
                if self._closed:
                    raise anyio.ClosedResourceError
                try:
                    rest = rest[self._sock.send(rest) :]
                except BlockingIOError:
                    pass
                except OSError as exc:
                    raise anyio.BrokenResourceError from exc
        finally:
            self._sending = False

    def send_nowait(self, data: bytes) -> int:
        """Write what the socket takes right now, without waiting or yielding; return how
        many bytes that was (the rest is the caller's to :meth:`send`)."""
        if self._closed:
            raise anyio.ClosedResourceError
        if self._sending:
            return 0
        try:
            return self._sock.send(data)
        except BlockingIOError:
            return 0
        except OSError as exc:
            raise anyio.BrokenResourceError from exc

    async def send_eof(self) -> None:
        if self._closed:
            raise anyio.ClosedResourceError
        try:
            self._sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            if self._sock.fileno() >= 0:
                trio.lowlevel.notify_closing(self._sock)
            self._sock.close()
        await trio.lowlevel.checkpoint()


def _take_over(stream: Any) -> TrioSocketStream:
    """The lean stream for the socket of a connected anyio stream (which is then dropped)."""
    sock: socket.socket = stream.extra(SocketAttribute.raw_socket)
    return TrioSocketStream(sock)


async def connect_trio(host: str, port: int) -> TrioSocketStream:
    """Connect to ``host:port`` (resolution and ``TCP_NODELAY`` by anyio); raises ``OSError``."""
    return _take_over(await anyio.connect_tcp(host, port))


class TrioListener(WrappedListener):
    """Accepts :class:`TrioSocketStream` objects through an anyio listener."""

    async def accept(self) -> TrioSocketStream:
        return _take_over(await self._listener.accept())
