"""The wire protocol, sans-IO: framing, MsgPack codec and message shapes.

Nothing here performs I/O or reads a clock; the transport and RPC layers drive it.
"""

from __future__ import annotations

from ._framing import DEFAULT_MAX_FRAME_SIZE, HEADER_SIZE, FrameDecoder, encode_frame
from ._messages import (
    ErrorInfo,
    Message,
    MessageError,
    Request,
    Response,
    decode_message,
    encode_request,
    encode_response,
    pack,
    unpack_payload,
)

__all__ = [
    "DEFAULT_MAX_FRAME_SIZE",
    "HEADER_SIZE",
    "ErrorInfo",
    "FrameDecoder",
    "Message",
    "MessageError",
    "Request",
    "Response",
    "decode_message",
    "encode_frame",
    "encode_request",
    "encode_response",
    "pack",
    "unpack_payload",
]
