"""The WebSocket driver for every backend but trio: wsproto (sans-IO) on an anyio byte stream.

wsproto does the opening handshake (and answers a request that is not one with an HTTP
error); the data phase is framed by :mod:`._ws_frames`. No background task: ``receive_message``
reads the stream and decodes frames in the caller's task, answering pings as it goes;
``send_message`` frames and writes under a lock that also orders the pongs and the close
frame. Used under asyncio, where trio-websocket cannot run (:mod:`._ws_trio` is the trio
driver; both share :mod:`._ws_stream`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

import anyio
from anyio.abc import ByteStream
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.utilities import RemoteProtocolError

from ._asyncio import AsyncioSocketStream
from ._ws_frames import (
    BINARY,
    CLOSE,
    CONTINUATION,
    PING,
    PONG,
    TEXT,
    FrameError,
    FrameReader,
    close_payload,
    encode_frame,
    parse_close,
)
from ._ws_stream import NORMAL_CLOSE_CODES
from ._ws_url import WebSocketUrl

__all__ = [
    "MAX_FRAGMENTS",
    "WebSocketRejected",
    "WsprotoConnection",
    "http_response",
    "path_refusal",
    "refusal_for",
    "wsproto_client",
    "wsproto_server",
]

_RECEIVE = 65536
_REASONS = {400: "Bad Request", 403: "Forbidden", 404: "Not Found", 426: "Upgrade Required"}
#: Frames one message may come in: more closes the connection with 1009 (each fragment costs
#: memory even when empty; our peers, trio-websocket and browsers send one frame a message).
MAX_FRAGMENTS = 1024
NOT_WEBSOCKET = (
    b"this port serves synapse-p2p over WebSocket only: send a WebSocket upgrade request\n"
)


class WebSocketRejected(Exception):
    """The server answered the WebSocket handshake with an HTTP error."""

    def __init__(self, status: int, body: bytes) -> None:
        text = body.decode("utf-8", "replace").strip()[:200]
        super().__init__(f"HTTP {status}" + (f": {text}" if text else ""))
        self.status = status


def path_refusal(expected: str, target: str) -> bytes | None:
    """The 404 body for a request to ``target`` when ``expected`` is served, else ``None``."""
    if target.split("?", 1)[0] == expected:
        return None
    return b"no WebSocket endpoint at this path\n"


def refusal_for(
    target: str,
    headers: Sequence[tuple[bytes, bytes]],
    expected: str,
    origins: frozenset[str],
) -> tuple[int, bytes] | None:
    """The HTTP status and body refusing an upgrade request for ``target`` with ``headers``,
    or ``None`` to accept it: 404 for a path other than ``expected``, 403 for a request with an
    ``Origin`` header (a web page's) whose value is not in ``origins`` (lower case)."""
    refusal = path_refusal(expected, target)
    if refusal is not None:
        return 404, refusal
    for name, value in headers:
        if name.lower() == b"origin":
            origin = value.decode("latin-1").strip()
            if origin.lower() not in origins:
                return (
                    403,
                    f"WebSocket connections from Origin {origin[:100]} are refused\n".encode(),
                )
    return None


def http_response(status: int, body: bytes, headers: Sequence[tuple[bytes, bytes]] = ()) -> bytes:
    """A complete HTTP/1.1 error response (the connection is closed after it)."""
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}".encode()]
    lines += [name + b": " + value for name, value in headers]
    lines += [
        b"Content-Type: text/plain; charset=utf-8",
        f"Content-Length: {len(body)}".encode(),
        b"Connection: close",
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def _new_lock() -> anyio.Lock:
    try:
        return anyio.Lock(fast_acquire=True)
    except TypeError:  # pragma: no cover - anyio < 4.5
        return anyio.Lock()


class WsprotoConnection:
    """An open WebSocket (see the module documentation); a :class:`MessageConnection`.

    ``ws`` did the opening handshake; frames it decoded along with the handshake answer are
    handed over with :meth:`handle`, everything after goes through a
    :class:`~._ws_frames.FrameReader`.
    """

    def __init__(self, stream: ByteStream, ws: WSConnection, *, max_message_size: int) -> None:
        self._stream = stream
        self._client = ws.client
        self._max = max_message_size
        self._reader = FrameReader(masked=not ws.client, max_payload=max_message_size)
        self._lock = _new_lock()
        self._messages: deque[bytes] = deque()
        self._parts: list[bytes] = []
        self._size = 0
        self._fragments = 0
        self._ended: tuple[type[Exception], str] | None = None
        self._close_sent = False
        self._closed = False

    # -- receiving ----------------------------------------------------------------------------

    async def receive_message(self) -> bytes:
        while not self._messages:
            if self._closed:
                raise anyio.ClosedResourceError
            if self._ended is not None:
                kind, reason = self._ended
                raise kind(reason) if reason else kind()
            try:
                data = await self._stream.receive(_RECEIVE)
            except anyio.EndOfStream:
                self._end(anyio.BrokenResourceError, "connection dropped without a close frame")
                continue
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
                if self._closed:
                    raise anyio.ClosedResourceError from None
                raise anyio.BrokenResourceError from exc
            await self._feed(data)
        return self._messages.popleft()

    async def _feed(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        while self._ended is None:
            try:
                frame = reader.next_frame()
            except FrameError as exc:
                await self._fail(exc.code, exc.reason)
                return
            if frame is None:
                return
            opcode, fin, payload = frame
            if opcode in (BINARY, CONTINUATION):
                await self._data(payload, fin, first=opcode == BINARY)
            elif opcode == PING:
                await self._write(encode_frame(PONG, payload, masked=self._client))
            elif opcode == CLOSE:
                try:
                    code = parse_close(payload)
                except FrameError as exc:
                    await self._fail(exc.code, exc.reason)
                    return
                await self._closed_by_peer(code)
            elif opcode == TEXT:
                await self._fail(1003, "text messages are not accepted")

    async def _data(self, payload: bytes, fin: bool, *, first: bool) -> None:
        if first == bool(self._parts or self._size):
            await self._fail(1002, "a message fragment out of order")
            return
        if fin and first:
            self._messages.append(payload)
            return
        self._size += len(payload)
        self._fragments += 1
        if self._size > self._max:
            await self._fail(1009, f"message larger than {self._max} bytes")
            return
        if self._fragments > MAX_FRAGMENTS:
            await self._fail(1009, f"message in more than {MAX_FRAGMENTS} fragments")
            return
        self._parts.append(payload)
        if fin:
            parts, self._parts, self._size, self._fragments = self._parts, [], 0, 0
            self._messages.append(b"".join(parts))

    async def handle(self, event: Event) -> None:
        """A frame wsproto decoded with the handshake answer."""
        if isinstance(event, BytesMessage):
            await self._data(bytes(event.data), event.message_finished, first=not self._parts)
        elif isinstance(event, TextMessage):
            await self._fail(1003, "text messages are not accepted")
        elif isinstance(event, Ping):
            await self._write(encode_frame(PONG, bytes(event.payload), masked=self._client))
        elif isinstance(event, CloseConnection):
            await self._closed_by_peer(event.code)

    async def _closed_by_peer(self, code: int) -> None:
        if not self._close_sent:
            self._close_sent = True
            reply = close_payload(code if code not in (1005, 1006) else 1000)
            try:
                await self._write(encode_frame(CLOSE, reply, masked=self._client))
            except anyio.BrokenResourceError:
                pass
        if code in NORMAL_CLOSE_CODES or code == 1005:
            self._end(anyio.EndOfStream, "")
        else:
            self._end(anyio.BrokenResourceError, f"closed by the peer ({code})")

    def _end(self, kind: type[Exception], reason: str) -> None:
        if self._ended is None:
            self._ended = (kind, reason)

    async def _fail(self, code: int, reason: str) -> None:
        """Close with ``code`` (the peer broke the protocol or a limit) and end receiving."""
        self._parts, self._size, self._fragments = [], 0, 0
        self._end(anyio.BrokenResourceError, f"{reason} ({code})")
        if not self._close_sent:
            self._close_sent = True
            frame = encode_frame(CLOSE, close_payload(code, reason), masked=self._client)
            try:
                await self._write(frame)
            except anyio.BrokenResourceError:
                pass

    # -- sending ------------------------------------------------------------------------------

    async def _write(self, data: bytes) -> None:
        try:
            try:
                self._lock.acquire_nowait()  # uncontended (the usual case): no checkpoint
            except anyio.WouldBlock:
                await self._lock.acquire()
            try:
                await self._stream.send(data)
            finally:
                self._lock.release()
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            if self._closed:
                raise anyio.ClosedResourceError from None
            self._end(anyio.BrokenResourceError, "connection dropped")
            raise anyio.BrokenResourceError from exc

    async def send_message(self, data: bytes) -> None:
        if self._closed:
            raise anyio.ClosedResourceError
        if self._close_sent or self._ended is not None:
            raise anyio.BrokenResourceError("the WebSocket is closing")
        await self._write(encode_frame(BINARY, data, masked=self._client))

    def nowait_writer(self) -> Callable[[bytes], int] | None:
        """:meth:`send_nowait` where the stream under it writes all or nothing without waiting
        (the lean asyncio TCP stream), else ``None``."""
        return self.send_nowait if isinstance(self._stream, AsyncioSocketStream) else None

    def send_nowait(self, data: bytes) -> int:
        """Send ``data`` as one message if the TCP stream takes the whole frame now, without
        yielding; return ``len(data)``, or 0 (nothing sent: :meth:`send_message` it)."""
        stream = self._stream
        if self._closed or self._close_sent or self._ended is not None or self._lock.locked():
            return 0
        assert isinstance(stream, AsyncioSocketStream)
        try:
            taken = stream.send_nowait(encode_frame(BINARY, data, masked=self._client))
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            if self._closed:
                raise anyio.ClosedResourceError from None
            self._end(anyio.BrokenResourceError, "connection dropped")
            raise anyio.BrokenResourceError from exc
        return len(data) if taken else 0

    async def close(self) -> None:
        if not self._close_sent and not self._closed:
            self._close_sent = True
            with anyio.move_on_after(1):
                await self._write(encode_frame(CLOSE, close_payload(1000), masked=self._client))

    async def aclose(self) -> None:
        if self._closed:
            await anyio.lowlevel.checkpoint()
            return
        self._closed = True
        with anyio.CancelScope(shield=True), anyio.move_on_after(1):
            if not self._close_sent and not self._lock.locked():
                self._close_sent = True
                frame = encode_frame(CLOSE, close_payload(1000), masked=self._client)
                try:
                    async with self._lock:
                        await self._stream.send(frame)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                    pass
        await self._stream.aclose()


async def wsproto_client(
    stream: ByteStream, url: WebSocketUrl, *, max_message_size: int
) -> WsprotoConnection:
    """Do the client's opening handshake on ``stream``. Raises :class:`WebSocketRejected` (an
    HTTP error answer) or ``BrokenResourceError``; the caller closes the stream on error."""
    ws = WSConnection(ConnectionType.CLIENT)
    connection = WsprotoConnection(stream, ws, max_message_size=max_message_size)
    await stream.send(ws.send(Request(host=url.host_header, target=url.path)))
    status = 0
    body = b""
    while True:
        try:
            data = await stream.receive(_RECEIVE)
        except anyio.EndOfStream:
            raise anyio.BrokenResourceError("closed during the WebSocket handshake") from None
        try:
            ws.receive_data(data)
        except RemoteProtocolError as exc:
            raise anyio.BrokenResourceError(f"bad WebSocket handshake answer: {exc}") from None
        events = ws.events()
        for event in events:
            if isinstance(event, AcceptConnection):
                for later in events:  # messages that came with the answer
                    await connection.handle(later)
                return connection
            if isinstance(event, RejectConnection):
                status = event.status_code
                if not event.has_body:
                    raise WebSocketRejected(status, b"")
            elif isinstance(event, RejectData):
                body += event.data
                if event.body_finished or len(body) > 4096:
                    raise WebSocketRejected(status, body)


@asynccontextmanager
async def wsproto_server(
    stream: ByteStream,
    path: str,
    *,
    timeout: float,
    max_message_size: int,
    origins: frozenset[str] = frozenset(),
) -> AsyncIterator[WsprotoConnection | None]:
    """Do the server's opening handshake within ``timeout`` seconds and yield the connection;
    yield ``None`` (having answered with an HTTP error where there was a request: 400 for a
    request that is not a WebSocket upgrade, 404 for another path, 403 for an ``Origin`` not
    in ``origins``) if it failed, also when the client went away before the answer."""
    ws = WSConnection(ConnectionType.SERVER)
    connection = WsprotoConnection(stream, ws, max_message_size=max_message_size)
    accepted = False
    with anyio.move_on_after(timeout):
        try:
            accepted = await _accept(stream, ws, connection, path, origins)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            accepted = False  # the client went away before (or while) it was answered
    yield connection if accepted else None


async def _accept(
    stream: ByteStream,
    ws: WSConnection,
    connection: WsprotoConnection,
    path: str,
    origins: frozenset[str],
) -> bool:
    while True:
        try:
            data = await stream.receive(_RECEIVE)
        except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
            return False
        try:
            ws.receive_data(data)
        except RemoteProtocolError as exc:
            hint = exc.event_hint
            status = hint.status_code if isinstance(hint, RejectConnection) else 400
            headers = list(hint.headers) if isinstance(hint, RejectConnection) else []
            await _refuse(stream, status, NOT_WEBSOCKET, headers)
            return False
        events = ws.events()
        for event in events:
            if not isinstance(event, Request):
                continue
            refusal = refusal_for(event.target, event.extra_headers, path, origins)
            if refusal is not None:
                await _refuse(stream, *refusal)
                return False
            await stream.send(ws.send(AcceptConnection()))
            for later in events:
                await connection.handle(later)
            return True


async def _refuse(
    stream: ByteStream, status: int, body: bytes, headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    try:
        await stream.send(http_response(status, body, headers))
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        pass
