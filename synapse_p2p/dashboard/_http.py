"""HTTP and WebSocket over one anyio byte stream: h11 parses requests, wsproto frames messages.

Both are sans-IO (h11 for HTTP/1.1, wsproto for RFC 6455, the engine trio-websocket uses), so
this one driver runs unchanged under trio and asyncio. Limits: a request head of at most
:data:`MAX_HEAD` bytes read within :data:`REQUEST_TIMEOUT` seconds, at most
:data:`MAX_REQUESTS` requests per keep-alive connection, WebSocket messages of at most
:data:`MAX_MESSAGE` bytes from the browser.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import anyio
import h11
from anyio.abc import ByteStream
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Message,
    Ping,
    Request,
    TextMessage,
)

__all__ = [
    "MAX_REQUESTS",
    "HttpRequest",
    "WebSocket",
    "is_loopback_host",
    "read_request",
    "respond",
]

MAX_HEAD = 16 * 1024
MAX_MESSAGE = 64 * 1024
REQUEST_TIMEOUT = 15.0
MAX_REQUESTS = 100
CHUNK = 65536

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
]


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """One parsed request head (header names lower-cased)."""

    method: str
    target: str
    headers: list[tuple[bytes, bytes]]

    def header(self, name: str) -> str | None:
        key = name.lower().encode()
        for k, v in self.headers:
            if k == key:
                return v.decode("latin-1")
        return None

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def wants_websocket(self) -> bool:
        upgrade = (self.header("upgrade") or "").lower()
        return self.method == "GET" and upgrade == "websocket"


def is_loopback_host(host: str) -> bool:
    """``host`` (a Host header value, port allowed) names this machine's loopback."""
    name = host.strip()
    if name.startswith("["):
        name = name[1 : name.find("]")] if "]" in name else name
    elif name.count(":") == 1:
        name = name.split(":", 1)[0]
    if name.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


async def read_request(stream: ByteStream, conn: h11.Connection) -> HttpRequest | None:
    """The next request head, or None when the client closed, timed out or spoke garbage
    (a 400 is sent for garbage). Raises nothing else the caller must handle."""
    with anyio.move_on_after(REQUEST_TIMEOUT):
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError:
                await _send_error(stream, conn, 400)
                return None
            if isinstance(event, h11.Request):
                return HttpRequest(
                    event.method.decode("ascii", "replace"),
                    event.target.decode("ascii", "replace"),
                    [(k.lower(), v) for k, v in event.headers],
                )
            if event is h11.NEED_DATA:
                try:
                    data = await stream.receive(CHUNK)
                except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                    return None
                conn.receive_data(data)
                continue
            if isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return None
            # Data/EndOfMessage of a request body: a GET has none; skip what there is.
    return None


async def _send_error(stream: ByteStream, conn: h11.Connection, status: int) -> None:
    try:
        if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            await respond(stream, conn, status, b"", close=True)
    except (h11.LocalProtocolError, anyio.BrokenResourceError, OSError):
        pass


async def respond(
    stream: ByteStream,
    conn: h11.Connection,
    status: int,
    body: bytes,
    *,
    content_type: str = "text/plain; charset=utf-8",
    close: bool = False,
    head_only: bool = False,
) -> None:
    """Send a whole response; ``close`` asks the client to close the connection."""
    headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
        *SECURITY_HEADERS,
    ]
    if close:
        headers.append((b"connection", b"close"))
    if status == 405:
        headers.append((b"allow", b"GET, HEAD"))
    out = conn.send(h11.Response(status_code=status, headers=headers)) or b""
    if body and not head_only:
        out += conn.send(h11.Data(data=body)) or b""
    out += conn.send(h11.EndOfMessage()) or b""
    await stream.send(out)


class WebSocket:
    """A server WebSocket on ``stream`` once h11 has parsed the upgrade request.

    :meth:`receive` returns the next text message (None when the peer closed or broke the
    protocol); :meth:`send` sends one. Pings are answered inside :meth:`receive`. Sends are
    serialised by a lock (one writer per connection).
    """

    def __init__(self, stream: ByteStream, request: HttpRequest, trailing: bytes) -> None:
        self.stream = stream
        self.ws = WSConnection(ConnectionType.SERVER)
        self.ws.initiate_upgrade_connection(request.headers, request.target)
        if trailing:
            self.ws.receive_data(trailing)
        self._lock = anyio.Lock()
        self._pending: list[Event] = []
        self._text: list[str] = []
        self._size = 0
        self.closed = False

    async def accept(self) -> None:
        for event in self.ws.events():
            if isinstance(event, Request):
                await self._write(self.ws.send(AcceptConnection()))
            else:
                self._pending.append(event)

    async def _write(self, data: bytes) -> None:
        if data:
            async with self._lock:
                await self.stream.send(data)

    async def send(self, text: str) -> None:
        """Send one text message; raises ``anyio.BrokenResourceError``/``OSError`` if gone."""
        if self.closed:
            raise anyio.BrokenResourceError
        await self._write(self.ws.send(Message(data=text)))

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake (best effort; the caller then drops the stream)."""
        if self.closed:
            return
        self.closed = True
        try:
            await self._write(self.ws.send(CloseConnection(code=code, reason=reason)))
        except Exception:
            pass

    async def receive(self) -> str | None:
        while True:
            events, self._pending = [*self._pending, *self.ws.events()], []
            for event in events:
                result = await self._handle(event)
                if result is not None or self.closed:
                    return result
            try:
                data = await self.stream.receive(CHUNK)
            except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                data = None
            self.ws.receive_data(data)
            if data is None:
                self.closed = True
                return None

    async def _handle(self, event: Event) -> str | None:
        if isinstance(event, Ping):
            await self._write(self.ws.send(event.response()))
        elif isinstance(event, CloseConnection):
            if not self.closed:
                self.closed = True
                await self._write(self.ws.send(event.response()))
        elif isinstance(event, BytesMessage):
            await self.close(1003, "text messages only")
        elif isinstance(event, TextMessage):
            self._size += len(event.data)
            if self._size > MAX_MESSAGE:
                await self.close(1009, "message too big")
                return None
            self._text.append(event.data)
            if event.message_finished:
                text, self._text, self._size = "".join(self._text), [], 0
                return text
        return None
