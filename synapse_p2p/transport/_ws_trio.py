"""The WebSocket driver under trio: trio-websocket over the shared anyio byte stream.

trio-websocket reads in a background task per connection. On the accepting side that task
runs in a nursery the connection's own task holds open while the connection is served
(:func:`trio_server`); on the dialing side, where the connection outlives the task that
opened it, it is a trio system task (the one task in the package without an owning task
group) that belongs to the connection: it ends when the connection is closed, when the peer
goes away (closing the stream wakes it) or when the connection is garbage-collected without
being closed (a finalizer cancels it, and it closes the socket); whatever it raises is kept
for the connection, never escapes to the event loop. Imported only under trio.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar, cast

import anyio
import trio
from anyio.abc import ByteStream
from trio_websocket import (
    CloseReason,
    ConnectionClosed,
    ConnectionRejected,
    WebSocketConnection,
    wrap_client_stream,
    wrap_server_stream,
)
from wsproto.events import CloseConnection

from ._ws_stream import NORMAL_CLOSE_CODES
from ._ws_url import WebSocketUrl
from ._ws_wsproto import MAX_FRAGMENTS, WebSocketRejected, refusal_for

__all__ = ["TrioConnection", "trio_client", "trio_server"]

log = logging.getLogger(__name__)
T = TypeVar("T")
#: What answering a client that went away raises.
_GONE = (
    ConnectionClosed,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    OSError,
)
#: Bytes read at a time (trio-websocket's default, 4 KiB, takes 256 reads per MiB).
_RECEIVE = 65536


class _TrioStream(trio.abc.HalfCloseableStream):
    """An anyio byte stream seen as a trio stream (what trio-websocket reads and writes)."""

    def __init__(self, stream: ByteStream) -> None:
        self.stream = stream

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        try:
            await self.stream.send(bytes(data))
        except anyio.ClosedResourceError:
            raise trio.ClosedResourceError from None
        except (anyio.BrokenResourceError, OSError) as exc:
            raise trio.BrokenResourceError from exc

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        try:
            return await self.stream.receive(max_bytes or 65536)
        except anyio.EndOfStream:
            return b""
        except anyio.ClosedResourceError:
            raise trio.ClosedResourceError from None
        except (anyio.BrokenResourceError, OSError) as exc:
            raise trio.BrokenResourceError from exc

    async def send_eof(self) -> None:
        await self.stream.send_eof()

    async def aclose(self) -> None:
        await self.stream.aclose()


class _ReaderSlot:
    """Stands in for the nursery trio-websocket starts its reader task in: runs the task with
    ``spawn``, keeps what it raised in :attr:`error` and sets :attr:`done` when it ends.

    :meth:`abandon` (safe from a finalizer: it only schedules) cancels the task, which then
    runs ``on_abandon`` (closing the stream), shielded and bounded."""

    def __init__(
        self,
        spawn: Callable[..., object],
        on_abandon: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        self._spawn = spawn
        self._on_abandon = on_abandon
        self._scope = trio.CancelScope()
        self._token = trio.lowlevel.current_trio_token()
        self.done = trio.Event()
        self.error: Exception | None = None

    def abandon(self) -> None:
        """Cancel the reader (its connection was dropped without being closed)."""
        try:
            self._token.run_sync_soon(self._scope.cancel)
        except trio.RunFinishedError:
            pass

    def start_soon(
        self, fn: Callable[..., Awaitable[object]], *args: Any, name: object = None
    ) -> None:
        owner = getattr(fn, "__self__", None)
        if isinstance(owner, WebSocketConnection):
            _bound_fragments(owner)
        self._spawn(self._run, fn, *args)

    async def _run(self, fn: Callable[..., Awaitable[object]], *args: Any) -> None:
        try:
            with self._scope:
                await fn(*args)
            if self._scope.cancelled_caught and self._on_abandon is not None:
                with trio.CancelScope(shield=True), trio.move_on_after(1):
                    await self._on_abandon()
        except Exception as exc:  # kept for the connection (a rejected handshake, ...)
            self.error = exc
        finally:
            self.done.set()


def _bound_fragments(ws: WebSocketConnection) -> None:
    """Close ``ws`` with 1009 when a message comes in more than ``MAX_FRAGMENTS`` frames.

    trio-websocket counts only the bytes of a fragmented message, so empty fragments would
    pile up without end. Its reader task looks up its message handler when it starts; this
    wraps that handler (before the task starts) and, past the limit, ends the connection the
    way trio-websocket ends an oversize message, then drops the rest of what was read.
    """
    inner = cast(Any, ws)
    handle = inner._handle_message_event
    fragments = 0
    over = False

    async def bounded(event: Any) -> None:
        nonlocal fragments, over
        if over:
            return
        fragments += 1
        if fragments > MAX_FRAGMENTS:
            over = True
            reason = f"message in more than {MAX_FRAGMENTS} fragments"
            inner._message_parts, inner._message_size = [], 0
            inner._close_reason = CloseReason(1009, reason)
            inner._reader_running = False
            await inner._send(CloseConnection(code=1009, reason=reason))
            await inner._recv_channel.aclose()
            return
        if event.message_finished:
            fragments = 0
        await handle(event)

    inner._handle_message_event = bounded


async def _unless_reader_ends(
    slot: _ReaderSlot, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any
) -> T | None:
    """``await fn(...)``, or ``None`` if the reader task ends first (the handshake failed)."""
    result: T | None = None
    async with trio.open_nursery() as nursery:

        async def watch() -> None:
            await slot.done.wait()
            nursery.cancel_scope.cancel()

        nursery.start_soon(watch)
        result = await fn(*args, **kwargs)
        nursery.cancel_scope.cancel()
    return result


class TrioConnection:
    """A trio-websocket connection as a :class:`~._ws_stream.MessageConnection`."""

    def __init__(
        self, ws: WebSocketConnection, stream: ByteStream, reader: _ReaderSlot | None = None
    ) -> None:
        self._ws = ws
        self._stream = stream
        self._closed = False
        #: The dialing side's reader task (a system task): cancelled if this connection is
        #: garbage-collected without being closed.
        self._reader = reader
        if reader is not None:
            weakref.finalize(self, reader.abandon)

    def _mapped(self, exc: ConnectionClosed, *, sending: bool = False) -> Exception:
        if self._closed:
            return anyio.ClosedResourceError()
        reason = exc.reason
        code = reason.code if reason is not None else 1006
        if code in NORMAL_CLOSE_CODES:
            if sending:
                return anyio.BrokenResourceError(f"the WebSocket was closed ({code})")
            return anyio.EndOfStream()
        detail = f": {reason.reason}" if reason is not None and reason.reason else ""
        return anyio.BrokenResourceError(f"WebSocket closed ({code}{detail})")

    async def send_message(self, data: bytes) -> None:
        if self._closed:
            raise anyio.ClosedResourceError
        try:
            await self._ws.send_message(data)
        except ConnectionClosed as exc:
            raise self._mapped(exc, sending=True) from None

    async def receive_message(self) -> bytes:
        try:
            message = await self._ws.get_message()
        except ConnectionClosed as exc:
            raise self._mapped(exc) from None
        if isinstance(message, str):
            with anyio.move_on_after(1):
                await self._ws.aclose(1003, "text messages are not accepted")
            raise anyio.BrokenResourceError("text messages are not accepted")
        return message

    async def close(self) -> None:
        with anyio.move_on_after(1):
            await self._ws.aclose()

    async def aclose(self) -> None:
        if self._closed:
            await trio.lowlevel.checkpoint()
            return
        self._closed = True
        with trio.CancelScope(shield=True):
            with trio.move_on_after(1):
                await self._ws.aclose()
            await self._stream.aclose()


async def trio_client(
    stream: ByteStream, url: WebSocketUrl, *, max_message_size: int
) -> TrioConnection:
    """Do the client's opening handshake on ``stream``; raises :class:`WebSocketRejected` or
    ``BrokenResourceError`` (the caller closes the stream on error)."""
    slot = _ReaderSlot(trio.lowlevel.spawn_system_task, on_abandon=stream.aclose)
    ws = await _unless_reader_ends(
        slot,
        wrap_client_stream,
        cast(Any, slot),
        cast(Any, _TrioStream(stream)),
        url.host_header,
        url.path,
        max_message_size=max_message_size,
        receive_buffer_size=_RECEIVE,
    )
    if ws is None:
        error = slot.error
        if isinstance(error, ConnectionRejected):
            raise WebSocketRejected(error.status_code, error.body or b"")
        raise anyio.BrokenResourceError(f"WebSocket handshake failed: {error or 'closed'}")
    return TrioConnection(ws, stream, slot)


@asynccontextmanager
async def trio_server(
    stream: ByteStream,
    path: str,
    *,
    timeout: float,
    max_message_size: int,
    origins: frozenset[str] = frozenset(),
) -> AsyncIterator[TrioConnection | None]:
    """Do the server's opening handshake within ``timeout`` seconds and yield the connection
    (its reader task runs in a nursery held open meanwhile), or ``None`` if it failed: a
    request that is not a WebSocket upgrade is answered 400 (by wsproto), another path 404,
    an ``Origin`` not in ``origins`` 403 (:func:`~._ws_wsproto.refusal_for`); a client that
    goes away before the answer is ``None`` too (never an error)."""
    async with trio.open_nursery() as nursery:
        slot = _ReaderSlot(nursery.start_soon)
        connection: TrioConnection | None = None
        with trio.move_on_after(timeout):
            request = await _unless_reader_ends(
                slot,
                wrap_server_stream,
                cast(Any, slot),
                _TrioStream(stream),
                max_message_size=max_message_size,
                receive_buffer_size=_RECEIVE,
            )
            if request is not None:
                refusal = refusal_for(request.path, request.headers, path, origins)
                try:
                    if refusal is None:
                        connection = TrioConnection(await request.accept(), stream)
                    else:
                        await request.reject(refusal[0], body=refusal[1])
                except _GONE as exc:  # the client went away before the answer
                    log.debug("WebSocket client gone during the handshake: %r", exc)
        try:
            yield connection
        finally:
            with trio.CancelScope(shield=True):
                if connection is not None:
                    await connection.aclose()
                else:
                    await stream.aclose()
            nursery.cancel_scope.cancel()
