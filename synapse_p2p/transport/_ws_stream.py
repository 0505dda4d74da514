"""A plain anyio byte stream over WebSocket binary messages (shared by both drivers).

The WebSocket transport carries a byte stream: each :meth:`WebSocketStream.send` leaves as one
or more binary messages (at most :data:`SEND_CHUNK` bytes each) and :meth:`receive` hands out
the received messages' bytes in order, in pieces of at most ``max_bytes``. Message boundaries
mean nothing to the layers above (RPC frames, secure-channel records), as with TCP segments.

A *driver* (:class:`MessageConnection`) speaks the protocol: :mod:`._ws_trio` (trio-websocket,
under trio) or :mod:`._ws_wsproto` (wsproto on anyio streams, every other backend). Drivers
raise anyio's exceptions, as the TCP streams do: ``EndOfStream`` once the peer closed normally
(close code 1000 or 1001), ``BrokenResourceError`` for an abnormal end (the TCP connection
dropped, a protocol error, an oversize or text message, any other close code),
``ClosedResourceError`` after this side closed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

import anyio
from anyio.abc import ByteStream, SocketAttribute

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "NORMAL_CLOSE_CODES",
    "SEND_CHUNK",
    "MessageConnection",
    "WebSocketStream",
]

#: Received messages larger than this close the connection (code 1009).
DEFAULT_MAX_MESSAGE_SIZE = 1024 * 1024
#: Sends larger than this are split into several messages (well under every peer's limit).
SEND_CHUNK = 256 * 1024
#: Close codes that end the stream with ``EndOfStream`` (others: ``BrokenResourceError``).
NORMAL_CLOSE_CODES = frozenset({1000, 1001})


class MessageConnection(Protocol):
    """What a driver offers: an open WebSocket connection carrying binary messages."""

    async def send_message(self, data: bytes) -> None:
        """Send one binary message (sends are serialized by the caller)."""
        ...

    async def receive_message(self) -> bytes:
        """The next binary message (answering pings meanwhile)."""
        ...

    async def close(self) -> None:
        """Close the WebSocket gracefully (close code 1000), bounded in time."""
        ...

    async def aclose(self) -> None:
        """Close (code 1000, best effort and bounded) and drop the TCP connection; idempotent;
        a task waiting on the connection gets ``ClosedResourceError``."""
        ...


class WebSocketStream(ByteStream):
    """An anyio ``ByteStream`` over a :class:`MessageConnection` (see the module documentation).

    ``send_eof`` closes the WebSocket gracefully: the protocol has no half-close, so data the
    peer sends afterwards is not received (``receive`` ends with ``EndOfStream``). Socket
    attributes (``SocketAttribute.remote_address`` and ``local_address``) are those of the
    TCP connection under it (behind a reverse proxy: the proxy's address).
    """

    def __init__(
        self,
        connection: MessageConnection,
        *,
        remote_address: Any = None,
        local_address: Any = None,
    ) -> None:
        self.connection = connection
        self._remote = remote_address
        self._local = local_address
        self._pending = b""
        self._offset = 0
        self._eof_sent = False

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if max_bytes < 1:
            raise ValueError("max_bytes must be a positive integer")
        while self._offset >= len(self._pending):
            self._pending = await self.connection.receive_message()
            self._offset = 0
        start = self._offset
        if start == 0 and len(self._pending) <= max_bytes:
            self._offset = len(self._pending)
            return self._pending
        end = min(len(self._pending), start + max_bytes)
        self._offset = end
        return self._pending[start:end]

    async def send(self, item: bytes) -> None:
        if self._eof_sent:
            raise anyio.ClosedResourceError
        if len(item) <= SEND_CHUNK:
            if item:
                await self.connection.send_message(bytes(item))
            return
        view = memoryview(item)
        for start in range(0, len(view), SEND_CHUNK):
            await self.connection.send_message(bytes(view[start : start + SEND_CHUNK]))

    async def send_eof(self) -> None:
        self._eof_sent = True
        await self.connection.close()

    async def aclose(self) -> None:
        await self.connection.aclose()

    @classmethod
    def over(
        cls, connection: MessageConnection, *, remote_address: Any = None, local_address: Any = None
    ) -> WebSocketStream:
        """The stream for ``connection``: one with ``send_nowait`` (the lean TCP streams' fast
        path, see :mod:`synapse_p2p.rpc`) when the driver offers it (``nowait_writer``)."""
        writer = getattr(connection, "nowait_writer", None)
        nowait = writer() if writer is not None else None
        if nowait is None:
            return cls(connection, remote_address=remote_address, local_address=local_address)
        stream = _NowaitWebSocketStream(
            connection, remote_address=remote_address, local_address=local_address
        )
        stream._nowait = nowait
        return stream

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        attributes: dict[Any, Callable[[], Any]] = {}
        if self._remote is not None:
            remote = self._remote
            attributes[SocketAttribute.remote_address] = lambda: remote
        if self._local is not None:
            local = self._local
            attributes[SocketAttribute.local_address] = lambda: local
        return attributes


class _NowaitWebSocketStream(WebSocketStream):
    """A :class:`WebSocketStream` whose driver can send a message without yielding."""

    _nowait: Callable[[bytes], int]

    def send_nowait(self, data: bytes) -> int:
        """Send ``data`` as one message if the TCP stream takes it all now; return how many
        bytes were taken (all or nothing; the rest is the caller's to :meth:`send`)."""
        if self._eof_sent or not data or len(data) > SEND_CHUNK:
            return 0
        return self._nowait(bytes(data))
