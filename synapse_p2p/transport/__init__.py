"""Byte-stream transports under the RPC layer.

The RPC layer only needs :class:`anyio.abc.ByteStream` objects: a transport knows how to open
one to ``(host, port)`` and how to listen for them. TCP is the default (with lean streams of
its own for asyncio and trio, see ``_asyncio.py`` and ``_trio.py``); an authenticated,
encrypted channel or a relay can be slotted in by implementing :class:`Transport` (wrapping
streams like ``anyio.streams.tls.TLSStream`` does) without touching the RPC code.

WebSocket (``_websocket.py``): :class:`WebSocketTransport` dials the ``(host, port)``
addresses it knows as ``ws://``/``wss://`` URLs over WebSocket and the rest over the transport
it wraps; :func:`listen_websocket` makes listeners the RPC server serves beside TCP. Binary
messages carry the byte stream (:class:`WebSocketStream`); the driver is trio-websocket under
trio and wsproto on anyio streams elsewhere.
"""

from __future__ import annotations

from ._base import Transport
from ._memory import MemoryNetwork, MemoryTransport
from ._tcp import TcpTransport, remote_address
from ._websocket import WebSocketListener, WebSocketTransport, listen_websocket, open_websocket
from ._ws_stream import WebSocketStream
from ._ws_url import WebSocketUrl, is_websocket_url

__all__ = [
    "MemoryNetwork",
    "MemoryTransport",
    "TcpTransport",
    "Transport",
    "WebSocketListener",
    "WebSocketStream",
    "WebSocketTransport",
    "WebSocketUrl",
    "is_websocket_url",
    "listen_websocket",
    "open_websocket",
    "remote_address",
]
