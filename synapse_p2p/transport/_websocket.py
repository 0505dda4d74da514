"""The WebSocket transport: dialing ``ws://``/``wss://`` URLs and serving WebSocket listeners.

The seam: everything above the transport names peers by ``(host, port)``. A
:class:`WebSocketTransport` is a :class:`~._base.Transport` that knows some of those addresses
as WebSocket URLs (seeds, later relays: :meth:`WebSocketTransport.add`) and dials them over
WebSocket; every other address goes to the transport it wraps (TCP). A
:class:`WebSocketListener` accepts WebSocket connections on a TCP port and hands each to the
RPC server as a plain byte stream (it has no ``accept``: it drives the server's handler, so a
slow handshake never holds up the next connection). The secure channel and the RPC layer run
unchanged on the :class:`~._ws_stream.WebSocketStream` either side gets.

Only the protocol driver differs by backend: trio-websocket under trio (:mod:`._ws_trio`),
wsproto on anyio streams elsewhere (:mod:`._ws_wsproto`). TCP (the lean streams), TLS
(``anyio.streams.tls``), timeouts, URLs and the byte stream are shared.
"""

from __future__ import annotations

import functools
import logging
import ssl
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

import anyio
from anyio.abc import ByteStream, Listener, SocketAttribute, TaskGroup
from anyio.streams.tls import TLSStream

from ..errors import ConnectError
from ._backend import current_library
from ._base import Transport
from ._tcp import TcpTransport
from ._ws_stream import DEFAULT_MAX_MESSAGE_SIZE, MessageConnection, WebSocketStream
from ._ws_url import WebSocketUrl
from ._ws_wsproto import WebSocketRejected, wsproto_client, wsproto_server

__all__ = [
    "WebSocketListener",
    "WebSocketTransport",
    "bind_websockets",
    "listen_websocket",
    "open_websocket",
    "websocket_routes",
]

log = logging.getLogger(__name__)

_STREAM_ERRORS = (
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    anyio.EndOfStream,
    ssl.SSLError,
    OSError,
)


#: Under trio, trio-websocket drives the protocol; ``False`` uses the wsproto driver there too
#: (private: ``benchmarks/websocket.py --trio-driver shared`` compares the two).
_TRIO_WEBSOCKET = True


def _client_driver() -> Callable[..., Awaitable[MessageConnection]]:
    if _TRIO_WEBSOCKET and current_library() == "trio":
        from ._ws_trio import trio_client

        return trio_client
    return wsproto_client


def _server_driver() -> Callable[..., AbstractAsyncContextManager[MessageConnection | None]]:
    if _TRIO_WEBSOCKET and current_library() == "trio":
        from ._ws_trio import trio_server

        return trio_server
    return wsproto_server


@functools.cache
def _system_tls() -> ssl.SSLContext:
    """The default client context for ``wss`` (the system's CAs), made once."""
    return ssl.create_default_context()


async def _close(stream: ByteStream) -> None:
    with anyio.CancelScope(shield=True), anyio.move_on_after(1):
        try:
            await stream.aclose()
        except _STREAM_ERRORS:
            pass


async def open_websocket(
    url: WebSocketUrl,
    *,
    timeout: float,
    tls: ssl.SSLContext | None = None,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
) -> WebSocketStream:
    """Connect to ``url`` (TCP, TLS for ``wss``, the WebSocket handshake) within ``timeout``
    seconds; raise :class:`~synapse_p2p.errors.ConnectError` saying what failed (refused,
    unreachable, timed out, a certificate not trusted by ``tls`` (default: the system's CAs),
    an HTTP error answer). Cancellation closes what was opened."""
    deadline = anyio.current_time() + timeout
    try:
        tcp = await TcpTransport().connect(url.host, url.port, timeout=timeout)
    except ConnectError as exc:
        raise ConnectError(f"could not open a WebSocket to {url} ({exc})") from None
    stream: ByteStream = tcp
    remote = tcp.extra(SocketAttribute.remote_address, None)
    local = tcp.extra(SocketAttribute.local_address, None)
    try:
        with anyio.fail_after(max(0.0, deadline - anyio.current_time())):
            if url.secure:
                stream = await TLSStream.wrap(
                    tcp,
                    hostname=url.host,
                    ssl_context=tls or _system_tls(),
                    standard_compatible=False,
                )
            connection = await _client_driver()(stream, url, max_message_size=max_message_size)
    except BaseException as exc:
        await _close(stream)
        if isinstance(exc, TimeoutError):
            raise ConnectError(
                f"could not open a WebSocket to {url} within {timeout:g} s"
            ) from None
        if isinstance(exc, WebSocketRejected):
            raise ConnectError(f"{url} refused the WebSocket connection ({exc})") from None
        if isinstance(exc, _STREAM_ERRORS):
            cause = exc.__cause__ if isinstance(exc.__cause__, ssl.SSLError) else exc
            reason = str(cause) or type(cause).__name__
            raise ConnectError(f"could not open a WebSocket to {url}: {reason}") from None
        raise
    return WebSocketStream.over(connection, remote_address=remote, local_address=local)


class WebSocketTransport:
    """A :class:`~._base.Transport` that dials the addresses it knows as WebSocket URLs over
    WebSocket and every other address over ``inner`` (default: TCP).

    ``urls``: ``ws://``/``wss://`` URLs (strings or :class:`WebSocketUrl`), each known by its
    ``(host, port)``; :meth:`add` adds more later. ``tls``: the client TLS context for
    ``wss`` (default: ``ssl.create_default_context()``, the system's CAs). ``listen`` binds
    ``inner`` (WebSocket listeners are made by :func:`listen_websocket`).
    """

    def __init__(
        self,
        inner: Transport | None = None,
        *,
        urls: Iterable[str | WebSocketUrl] = (),
        tls: ssl.SSLContext | None = None,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    ) -> None:
        if tls is not None and not isinstance(tls, ssl.SSLContext):
            raise TypeError(f"tls must be an ssl.SSLContext, got {type(tls).__name__}")
        self.inner: Transport = inner or TcpTransport()
        self.tls = tls
        self.max_message_size = max_message_size
        self._urls: dict[tuple[str, int], WebSocketUrl] = {}
        for url in urls:
            self.add(url)

    def add(
        self, url: str | WebSocketUrl, *, address: tuple[str, int] | None = None
    ) -> tuple[str, int]:
        """Dial ``address`` (default: ``url``'s own host and port) over WebSocket to ``url``
        from now on; return that address. Naming another address maps a peer known by its
        advertised TCP address to a URL it is reachable at (a reverse proxy, a ws-only
        listener)."""
        parsed = url if isinstance(url, WebSocketUrl) else WebSocketUrl.parse(url)
        key = parsed.address if address is None else (address[0], int(address[1]))
        self._urls[key] = parsed
        return key

    def remove(self, address: tuple[str, int]) -> None:
        """Dial ``address`` over ``inner`` again (no-op if unknown)."""
        self._urls.pop((address[0], int(address[1])), None)

    def url_for(self, host: str, port: int) -> WebSocketUrl | None:
        """The WebSocket URL dialed for ``(host, port)``, or ``None`` (``inner`` is used)."""
        return self._urls.get((host, port))

    @property
    def urls(self) -> list[WebSocketUrl]:
        return list(self._urls.values())

    async def connect(self, host: str, port: int, *, timeout: float) -> ByteStream:
        url = self._urls.get((host, port))
        if url is None:
            return await self.inner.connect(host, port, timeout=timeout)
        return await open_websocket(
            url, timeout=timeout, tls=self.tls, max_message_size=self.max_message_size
        )

    async def listen(self, host: str | None, port: int) -> list[Listener[ByteStream]]:
        return await self.inner.listen(host, port)


class WebSocketListener(Listener[ByteStream]):
    """Serves WebSocket connections on one bound TCP listener (see the module documentation).

    Each connection is set up in its own task (TLS with ``tls`` for ``wss``, the opening
    handshake; together within ``handshake_timeout`` seconds) and then handed to the
    handler as a :class:`WebSocketStream`. A request that is not a WebSocket upgrade gets
    HTTP 400, another path 404, one with an ``Origin`` header (sent by web browsers) not in
    ``origins`` 403; beyond ``max_handshakes`` connections in their handshake, or
    ``max_handshakes_per_ip`` from one address, new ones are closed at once. None of this
    stops the listener: whatever a connection's task raises (a client that resets mid-
    handshake, the handler failing) ends that connection only and is logged at debug level;
    only cancellation goes through.
    """

    def __init__(
        self,
        tcp: Listener[ByteStream],
        url: WebSocketUrl,
        *,
        tls: ssl.SSLContext | None = None,
        handshake_timeout: float = 5.0,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        max_handshakes: int = 256,
        max_handshakes_per_ip: int = 64,
        origins: Iterable[str] = (),
    ) -> None:
        self._tcp = tcp
        #: The URL served (with the bound port).
        self.url = url
        self._tls = tls
        self._timeout = handshake_timeout
        self._max_message_size = max_message_size
        self._max_handshakes = max_handshakes
        self._max_per_ip = max_handshakes_per_ip
        self._origins = frozenset(origin.lower() for origin in origins)
        self._handshaking = 0
        self._by_ip: dict[str, int] = {}

    async def serve(
        self, handler: Callable[[ByteStream], Any], task_group: TaskGroup | None = None
    ) -> None:
        accept: Callable[[], Awaitable[ByteStream]] = self._tcp.accept  # type: ignore[attr-defined]
        backoff = 0.01
        async with anyio.create_task_group() as tg:
            group = task_group or tg
            while True:
                try:
                    stream = await accept()
                except (OSError, anyio.BrokenResourceError) as exc:
                    log.debug("accept() on %s failed (%s); retrying", self.url, exc)
                    await anyio.sleep(backoff)
                    backoff = min(backoff * 2, 1.0)
                    continue
                backoff = 0.01
                ip = _ip(stream)
                if self._handshaking >= self._max_handshakes:
                    log.debug("%s: too many handshakes at once; closing a connection", self.url)
                    await _close(stream)
                    continue
                if self._by_ip.get(ip, 0) >= self._max_per_ip:
                    log.debug("%s: too many handshakes from %s; closing one", self.url, ip)
                    await _close(stream)
                    continue
                self._handshaking += 1
                self._by_ip[ip] = self._by_ip.get(ip, 0) + 1
                group.start_soon(self._connection, stream, ip, handler)

    def _handshake_done(self, ip: str) -> None:
        self._handshaking -= 1
        left = self._by_ip.pop(ip, 1) - 1
        if left > 0:
            self._by_ip[ip] = left

    async def _connection(
        self, tcp: ByteStream, ip: str, handler: Callable[[ByteStream], Any]
    ) -> None:
        try:
            await self._serve_connection(tcp, ip, handler)
        except Exception as exc:  # this connection only; the listener goes on
            log.debug("%s: a connection failed: %r", self.url, exc)

    async def _serve_connection(
        self, tcp: ByteStream, ip: str, handler: Callable[[ByteStream], Any]
    ) -> None:
        remote = tcp.extra(SocketAttribute.remote_address, None)
        local = tcp.extra(SocketAttribute.local_address, None)
        stream: ByteStream = tcp
        counted = True
        try:
            deadline = anyio.current_time() + self._timeout
            if self._tls is not None:
                try:
                    with anyio.fail_after(self._timeout):
                        stream = await TLSStream.wrap(
                            tcp, server_side=True, ssl_context=self._tls, standard_compatible=False
                        )
                except (TimeoutError, *_STREAM_ERRORS) as exc:
                    log.debug("%s: TLS handshake from %s failed: %r", self.url, remote, exc)
                    return
            remaining = max(0.0, deadline - anyio.current_time())
            async with _server_driver()(
                stream,
                self.url.path,
                timeout=remaining,
                max_message_size=self._max_message_size,
                origins=self._origins,
            ) as connection:
                self._handshake_done(ip)
                counted = False
                if connection is None:
                    log.debug("%s: no WebSocket handshake from %s", self.url, remote)
                    return
                await handler(
                    WebSocketStream.over(connection, remote_address=remote, local_address=local)
                )
        finally:
            if counted:
                self._handshake_done(ip)
            await _close(stream)

    async def aclose(self) -> None:
        await self._tcp.aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return self._tcp.extra_attributes


def _ip(stream: ByteStream) -> str:
    """The remote IP address of ``stream`` ("" if unknown)."""
    remote = stream.extra(SocketAttribute.remote_address, None)
    return str(remote[0]) if isinstance(remote, tuple) else ""


async def listen_websocket(
    url: str | WebSocketUrl,
    *,
    tls: ssl.SSLContext | None = None,
    handshake_timeout: float = 5.0,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    origins: Iterable[str] = (),
) -> list[WebSocketListener]:
    """Bind ``url``'s host and port (port 0: any free port) and return its listeners (one per
    bound socket, each with its :attr:`~WebSocketListener.url`). ``wss`` needs ``tls`` (a
    server context with the certificate loaded). ``origins``: the web page origins (as
    browsers send them, ``https://host[:port]``) allowed to connect; requests with any other
    ``Origin`` header are refused. Raises ``OSError`` if the port is taken."""
    parsed = url if isinstance(url, WebSocketUrl) else WebSocketUrl.parse(url, listen=True)
    if parsed.secure and tls is None:
        raise ValueError(f"{parsed} needs a server TLS context (websocket_tls=)")
    tcp_listeners = await TcpTransport().listen(parsed.host, parsed.port)
    listeners = []
    for tcp in tcp_listeners:
        port = int(tcp.extra(SocketAttribute.local_port, parsed.port))
        listeners.append(
            WebSocketListener(
                tcp,
                parsed.with_port(port),
                tls=tls if parsed.secure else None,
                handshake_timeout=handshake_timeout,
                max_message_size=max_message_size,
                origins=origins,
            )
        )
    return listeners


def websocket_routes(
    transport: Transport, urls: Iterable[WebSocketUrl], tls: ssl.SSLContext | None
) -> Transport:
    """``transport`` itself, or wrapped in a :class:`WebSocketTransport` that dials ``urls``
    (the node's ``ws://``/``wss://`` seeds) over WebSocket when there are any."""
    urls = list(urls)
    if not urls:
        return transport
    if isinstance(transport, WebSocketTransport):
        for url in urls:
            transport.add(url)
        return transport
    return WebSocketTransport(transport, urls=urls, tls=tls)


async def bind_websockets(
    urls: Iterable[WebSocketUrl],
    *,
    tls: ssl.SSLContext | None,
    handshake_timeout: float,
    origins: Iterable[str] = (),
) -> list[WebSocketListener]:
    """Bind every URL (a node's ``websocket=``); raise ``OSError`` naming the URL that could not
    be bound (closing those already bound)."""
    listeners: list[WebSocketListener] = []
    try:
        for url in urls:
            try:
                listeners += await listen_websocket(
                    url, tls=tls, handshake_timeout=handshake_timeout, origins=origins
                )
            except OSError as exc:
                reason = (exc.strerror or str(exc)).lower()
                raise OSError(exc.errno, f"cannot listen on {url}: {reason}") from None
        for listener in listeners:
            log.info("serving WebSocket on %s", listener.url)
    except BaseException:
        with anyio.CancelScope(shield=True):
            for listener in listeners:
                await listener.aclose()
        raise
    return listeners
