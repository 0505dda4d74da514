"""RFC 6455 frames after the opening handshake: a small sans-IO codec for the data phase.

The wsproto driver (:mod:`._ws_wsproto`) lets wsproto do the opening handshake (HTTP/1.1 by
h11) and frames the data phase here: wsproto's per-frame cost (several dozen Python calls
each way) halved the rate of small sequential calls, and this codec only needs what the
transport uses: binary messages (fragmented ones are reassembled), pings answered with pongs,
close frames, and refusal of text, reserved bits, unmasked frames from a client (or masked
ones from a server) and frames larger than the message limit, before they are buffered.
"""

from __future__ import annotations

import os
import struct

__all__ = [
    "BINARY",
    "CLOSE",
    "CONTINUATION",
    "PING",
    "PONG",
    "TEXT",
    "FrameError",
    "FrameReader",
    "close_payload",
    "encode_frame",
    "mask",
    "parse_close",
]

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_U16 = struct.Struct("!H")
_U64 = struct.Struct("!Q")


class FrameError(Exception):
    """The peer broke the protocol or a limit: close with :attr:`code`."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def mask(payload: bytes, key: bytes) -> bytes:
    """``payload`` XOR the repeated 4-byte ``key`` (masking and unmasking alike)."""
    n = len(payload)
    if not n:
        return b""
    repeated = (key * ((n + 3) // 4))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(repeated, "little")).to_bytes(
        n, "little"
    )


def encode_frame(opcode: int, payload: bytes, *, masked: bool) -> bytes:
    """One final frame (clients mask, servers do not)."""
    n = len(payload)
    first = 0x80 | opcode
    bit = 0x80 if masked else 0
    if n < 126:
        header = bytes((first, bit | n))
    elif n < 65536:
        header = bytes((first, bit | 126)) + _U16.pack(n)
    else:
        header = bytes((first, bit | 127)) + _U64.pack(n)
    if not masked:
        return header + payload
    key = os.urandom(4)
    return header + key + mask(payload, key)


def close_payload(code: int, reason: str = "") -> bytes:
    return _U16.pack(code) + reason.encode("utf-8")[:120]


def parse_close(payload: bytes) -> int:
    """The code of a close frame (1005: none given); raises :class:`FrameError` if invalid."""
    if not payload:
        return 1005
    if len(payload) == 1:
        raise FrameError(1002, "a close frame with a one-byte payload")
    return int(_U16.unpack_from(payload)[0])


class FrameReader:
    """Splits received bytes into ``(opcode, fin, payload)`` frames (payload unmasked).

    ``masked``: whether the peer must mask (it is a client). ``max_payload`` bounds a frame's
    declared length, checked before its payload is buffered.
    """

    def __init__(self, *, masked: bool, max_payload: int) -> None:
        self._masked = masked
        self._max = max_payload
        self._buffer = bytearray()

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def next_frame(self) -> tuple[int, bool, bytes] | None:
        """The next complete frame, or ``None`` until more bytes arrive; raises
        :class:`FrameError`."""
        buffer = self._buffer
        available = len(buffer)
        if available < 2:
            return None
        first, second = buffer[0], buffer[1]
        if first & 0x70:
            raise FrameError(1002, "reserved bits set (no extension was agreed)")
        opcode = first & 0x0F
        fin = bool(first & 0x80)
        if bool(second & 0x80) != self._masked:
            raise FrameError(1002, "masked frame from a server or unmasked from a client")
        length = second & 0x7F
        position = 2
        if length == 126:
            if available < 4:
                return None
            length = _U16.unpack_from(buffer, 2)[0]
            position = 4
        elif length == 127:
            if available < 10:
                return None
            length = _U64.unpack_from(buffer, 2)[0]
            position = 10
        if opcode >= CLOSE:
            if opcode > PONG:
                raise FrameError(1002, f"unknown opcode {opcode}")
            if length > 125 or not fin:
                raise FrameError(1002, "a control frame longer than 125 bytes or fragmented")
        elif opcode not in (CONTINUATION, TEXT, BINARY):
            raise FrameError(1002, f"unknown opcode {opcode}")
        elif length > self._max:
            raise FrameError(1009, f"message larger than {self._max} bytes")
        key = b""
        if self._masked:
            key = bytes(buffer[position : position + 4])
            position += 4
        end = position + length
        if available < end:
            return None
        payload = bytes(buffer[position:end])
        del buffer[:end]
        if key:
            payload = mask(payload, key)
        return opcode, fin, payload
