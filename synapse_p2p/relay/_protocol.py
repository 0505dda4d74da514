"""The relay protocol's bytes, sans-IO: the preamble, control messages and circuit frames.

A relay connection starts with :data:`PREAMBLE` (its first byte, 0xF4, can start neither a
secure handshake, 0xF3, nor a plaintext frame of any size a node accepts), then the secure
handshake with the relay, then control messages inside the secure channel: a 2-byte
big-endian length and a JSON object (at most :data:`MAX_MESSAGE` bytes).

Once a circuit is open, its two legs leave the secure channel with the relay and carry
the bytes of the connection under it (TCP, WebSocket): the ends run their own secure channel
through the circuit, so nothing is encrypted twice. Each end writes its bytes as they are (its
end of file ends its direction) and reads :func:`frame` s from the relay: a 1-byte kind, a
3-byte big-endian length, the payload. ``D``: data; ``E``: the other end has finished sending;
``X``: the relay closed the circuit (a JSON ``{"code", "error"}`` payload says why). The
relay writes nothing on a leg before that end has written on it, so no byte of a frame can
arrive mixed with the last encrypted answer: the asker writes first anyway (its handshake),
and the node taking a circuit writes :data:`READY` as soon as it has read the relay's answer.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

from ..errors import ProtocolError

__all__ = [
    "DATA",
    "END",
    "ERROR",
    "HEADER",
    "MAX_MESSAGE",
    "PREAMBLE",
    "READY",
    "MessageBuffer",
    "RelayLimits",
    "decode_header",
    "encode_message",
    "error_reply",
    "frame",
    "is_relay_preamble",
]

#: The first bytes of a connection to a relay: a magic and the protocol version.
PREAMBLE = b"\xf4SR\x01"
#: What the node taking a circuit writes first on the circuit's leg.
READY = b"\x06"
MAX_MESSAGE = 4096
HEADER = 4
DATA = ord("D")
END = ord("E")
ERROR = ord("X")
#: Largest frame payload (the 3-byte length).
MAX_FRAME = (1 << 24) - 1

_LENGTH = struct.Struct(">H")


def is_relay_preamble(first: bytes) -> bool:
    return first[: len(PREAMBLE)] == PREAMBLE


def encode_message(message: dict[str, Any]) -> bytes:
    """A control message's bytes (raises ``ValueError`` if it is too large)."""
    body = json.dumps(message, separators=(",", ":")).encode()
    if len(body) > MAX_MESSAGE:
        raise ValueError(f"relay message of {len(body)} bytes > {MAX_MESSAGE}")
    return _LENGTH.pack(len(body)) + body


def error_reply(code: str, error: str) -> dict[str, Any]:
    return {"ok": False, "code": code, "error": error}


class MessageBuffer:
    """Splits received bytes into control messages; bytes past the last whole message stay
    in :attr:`rest` (the start of a circuit's data, if one follows)."""

    def __init__(self) -> None:
        self.rest = bytearray()

    def feed(self, data: bytes) -> None:
        self.rest += data

    def next(self) -> dict[str, Any] | None:
        """The next whole message, or ``None`` if more bytes are needed. Raises
        ``ProtocolError`` for an oversize, non-JSON or non-object message."""
        if len(self.rest) < 2:
            return None
        (size,) = _LENGTH.unpack_from(self.rest)
        if size > MAX_MESSAGE:
            raise ProtocolError(f"relay message of {size} bytes > {MAX_MESSAGE}")
        if len(self.rest) < 2 + size:
            return None
        body = bytes(self.rest[2 : 2 + size])
        del self.rest[: 2 + size]
        try:
            message = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ProtocolError("relay message is not JSON") from None
        if not isinstance(message, dict):
            raise ProtocolError("relay message is not a JSON object")
        return message


def frame(kind: int, payload: bytes = b"") -> bytes:
    if len(payload) > MAX_FRAME:
        raise ValueError(f"frame payload of {len(payload)} bytes > {MAX_FRAME}")
    return bytes((kind,)) + len(payload).to_bytes(3, "big") + payload


def decode_header(header: bytes | bytearray) -> tuple[int, int]:
    """``(kind, length)`` of a frame header; ``ProtocolError`` for an unknown kind."""
    kind = header[0]
    if kind not in (DATA, END, ERROR):
        raise ProtocolError(f"unknown relay frame kind {kind:#x}")
    return kind, int.from_bytes(header[1:4], "big")


@dataclass(frozen=True, slots=True)
class RelayLimits:
    """What a relay allows (``Node(relay=True, relay_limits=...)``).

    ``max_reservations``: nodes reserved at once (past it: ``reservations_full``).
    ``max_circuits``: circuits open at once; ``max_circuits_per_peer``: circuits one node
    takes part in at once, at either end (past either: ``too_many_circuits``).
    ``max_circuit_bytes`` / ``max_circuit_seconds``: per circuit, both directions together
    (``None``: no limit); past them the circuit closes and both ends get ``byte_limit`` or
    ``time_limit``. ``reservation_ttl``: a reservation not renewed for that long ends (nodes
    renew every third of it). ``accept_timeout``: how long a reserved node has to take a
    circuit (past it the asker gets ``target_unreachable``).
    """

    max_reservations: int = 128
    max_circuits: int = 1024
    max_circuits_per_peer: int = 16
    max_circuit_bytes: int | None = None
    max_circuit_seconds: float | None = None
    reservation_ttl: float = 60.0
    accept_timeout: float = 5.0

    def __post_init__(self) -> None:
        for name in ("max_reservations", "max_circuits", "max_circuits_per_peer"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        value = self.max_circuit_bytes
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value <= 0
        ):
            raise ValueError(f"max_circuit_bytes must be a positive integer or None, got {value!r}")
        for name in ("max_circuit_seconds", "reservation_ttl", "accept_timeout"):
            value = getattr(self, name)
            if value is None and name == "max_circuit_seconds":
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
