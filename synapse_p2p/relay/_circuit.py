"""The two ends' view of a relay connection: control messages, then a circuit's byte stream.

:class:`ControlStream` wraps the secure channel to a relay (or, on the relay, from a node) and
exchanges control messages. :class:`CircuitStream` is what an end gets once a circuit is
open: an :class:`anyio.abc.ByteStream` carrying the other end's bytes (the secure channel
between the two ends then runs inside it, so the relay sees only ciphertext).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import anyio.lowlevel
from anyio.abc import ByteStream

from ..errors import ConnectionLost, ProtocolError, RelayClosed
from ..secure import SecureAttribute
from ._protocol import DATA, END, HEADER, MessageBuffer, decode_header, encode_message

__all__ = ["CircuitStream", "ControlStream", "RelayAttribute"]

_RECEIVE = 256 * 1024
_RELAY_SECURE_KEYS = (
    SecureAttribute.peer_node_id,
    SecureAttribute.peer_public_key,
    SecureAttribute.secret_index,
)
_STREAM_ERRORS = (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)


class RelayAttribute(anyio.TypedAttributeSet):
    """``stream.extra(RelayAttribute.relay_node_id)``: the node id of the relay a
    :class:`CircuitStream` runs through."""

    relay_node_id: str = anyio.typed_attribute()


class ControlStream:
    """Control messages over ``stream`` (the secure channel to or from a relay).

    :meth:`receive` raises ``ConnectionLost`` when the stream ends or breaks and
    ``ProtocolError`` for a malformed message; :meth:`send` raises ``ConnectionLost``.
    Concurrent sends are serialised. Cancellation during a receive loses no message.
    """

    def __init__(self, stream: ByteStream) -> None:
        self.stream = stream
        self._buffer = MessageBuffer()
        self._lock = anyio.Lock()

    async def send(self, message: dict[str, Any]) -> None:
        data = encode_message(message)
        async with self._lock:
            try:
                await self.stream.send(data)
            except _STREAM_ERRORS as exc:
                raise ConnectionLost(
                    f"relay connection lost: {exc or type(exc).__name__}"
                ) from None

    async def receive(self) -> dict[str, Any]:
        while True:
            message = self._buffer.next()
            if message is not None:
                return message
            try:
                data = await self.stream.receive(_RECEIVE)
            except anyio.EndOfStream:
                raise ConnectionLost("relay connection closed") from None
            except _STREAM_ERRORS as exc:
                raise ConnectionLost(
                    f"relay connection lost: {exc or type(exc).__name__}"
                ) from None
            self._buffer.feed(data)

    def raw(self) -> ByteStream:
        """The stream under the secure channel, for a circuit's leg (see
        :mod:`._protocol`). Raises ``ProtocolError`` if bytes past the last message were
        received in the secure channel (the peer broke the protocol)."""
        if self._buffer.rest:
            raise ProtocolError("bytes after the last relay message")
        stream = self.stream
        return getattr(stream, "transport_stream", stream)

    def leftover(self) -> bytes:
        """Bytes received past the last message (taken: the buffer is emptied)."""
        rest = bytes(self._buffer.rest)
        self._buffer.rest.clear()
        return rest

    async def aclose(self) -> None:
        with anyio.CancelScope(shield=True), anyio.move_on_after(1):
            try:
                await self.stream.aclose()
            except _STREAM_ERRORS:
                pass


class CircuitStream(ByteStream):
    """One end of a circuit (see the module documentation).

    ``receive`` returns the other end's bytes, raises ``anyio.EndOfStream`` once it has
    finished sending, and :class:`~synapse_p2p.errors.RelayClosed` (an
    ``anyio.BrokenResourceError``) when the relay closed the circuit (a limit, the other end
    gone) or the connection to the relay broke. ``send`` writes to the relay as is; a
    ``send_nowait`` fast path is offered when the stream to the relay has one.
    """

    def __init__(self, stream: ByteStream, relay_node_id: str, first: bytes = b"") -> None:
        self.transport_stream = stream
        self.relay_node_id = relay_node_id
        self._in = bytearray(first)
        self._remaining = 0  # data bytes of the current D frame not yet returned
        self._eof = False
        send_nowait = getattr(stream, "send_nowait", None)
        if send_nowait is not None:
            self.send_nowait = send_nowait

    async def receive(self, max_bytes: int = 65536) -> bytes:
        buf = self._in
        while True:
            if self._remaining:
                if buf:
                    size = min(self._remaining, len(buf), max_bytes)
                    out = bytes(buf[:size])
                    del buf[:size]
                    self._remaining -= size
                    return out
            elif len(buf) >= HEADER:
                try:
                    kind, length = decode_header(buf)
                except ProtocolError as exc:
                    await self._abort()
                    raise RelayClosed("bad_request", f"relay sent a bad frame: {exc}") from None
                if kind == DATA:
                    del buf[:HEADER]
                    self._remaining = length
                    continue
                if kind == END:
                    del buf[:HEADER]
                    self._eof = True
                elif len(buf) >= HEADER + length:
                    raise self._closed(bytes(buf[HEADER : HEADER + length]))
            if self._eof:
                raise anyio.EndOfStream
            try:
                data = await self.transport_stream.receive(_RECEIVE)
            except anyio.EndOfStream:
                raise RelayClosed("peer_gone", "the relay closed the circuit") from None
            except RelayClosed:
                raise
            except _STREAM_ERRORS as exc:
                raise RelayClosed(
                    "peer_gone", f"the connection to the relay broke: {exc or type(exc).__name__}"
                ) from None
            if not buf and not self._remaining and len(data) > HEADER and data[0] == DATA:
                # the common case: whole D frames
                length = int.from_bytes(data[1:4], "big")
                if len(data) == HEADER + length and length <= max_bytes:
                    await anyio.lowlevel.checkpoint_if_cancelled()
                    return data[HEADER:]
            buf += data

    def _closed(self, payload: bytes) -> RelayClosed:
        try:
            why = json.loads(payload)
            code, error = str(why["code"]), str(why["error"])
        except (ValueError, KeyError, TypeError):
            code, error = "peer_gone", "the relay closed the circuit"
        return RelayClosed(code, f"relay closed the circuit: {error}")

    async def send(self, item: bytes) -> None:
        try:
            await self.transport_stream.send(item)
        except RelayClosed:
            raise
        except _STREAM_ERRORS as exc:
            raise RelayClosed(
                "peer_gone", f"the connection to the relay broke: {exc or type(exc).__name__}"
            ) from None

    async def send_eof(self) -> None:
        await self.transport_stream.send_eof()

    async def aclose(self) -> None:
        await self.transport_stream.aclose()

    async def _abort(self) -> None:
        with anyio.CancelScope(shield=True), anyio.move_on_after(1):
            try:
                await self.transport_stream.aclose()
            except _STREAM_ERRORS:
                pass

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        # The relay's own secure-channel attributes are not the other end's: left out.
        inner: dict[Any, Callable[[], Any]] = {
            key: value
            for key, value in self.transport_stream.extra_attributes.items()
            if key not in _RELAY_SECURE_KEYS
        }
        inner[RelayAttribute.relay_node_id] = lambda: self.relay_node_id
        return inner
