"""Length-prefixed framing, sans-IO.

A frame is a 4-byte unsigned big-endian payload length followed by that many payload bytes
(the header is not counted). :class:`FrameDecoder` is fed arbitrary chunks of a byte stream and
returns the complete payloads; it never buffers more than one frame's worth of data beyond what
it was fed, and it refuses a header that declares more than ``max_frame_size`` bytes before any
of that payload is buffered.
"""

from __future__ import annotations

import struct

from ..errors import FrameTooLarge, IncompleteFrame

__all__ = ["DEFAULT_MAX_FRAME_SIZE", "HEADER_SIZE", "FrameDecoder", "encode_frame"]

#: Default largest payload accepted: 4 MiB, as synapse-p2p 2.5.0 (exactly 4 MiB is accepted).
DEFAULT_MAX_FRAME_SIZE = 4 * 1024 * 1024
_HEADER = struct.Struct("!I")
HEADER_SIZE = _HEADER.size
_MAX_ENCODABLE = 0xFFFFFFFF


def encode_frame(payload: bytes) -> bytes:
    """Return ``payload`` with its 4-byte length header."""
    size = len(payload)
    if size > _MAX_ENCODABLE:
        raise FrameTooLarge(size, _MAX_ENCODABLE)
    return _HEADER.pack(size) + payload


class FrameDecoder:
    """Incremental frame decoder.

    ``feed(chunk)`` returns the payloads completed by that chunk (possibly none, possibly many).
    It raises :class:`~synapse_p2p.errors.FrameTooLarge` as soon as a header declares more than
    ``max_frame_size`` bytes, before buffering any of that payload; after that the decoder is
    unusable (the stream cannot be resynchronised). If the same chunk completed frames before
    the bad header, those are returned first, :attr:`failed` is set, and the next ``feed``
    raises. At end of stream call :meth:`eof`, which raises
    :class:`~synapse_p2p.errors.IncompleteFrame` if a frame was cut short.
    """

    __slots__ = ("_buffer", "_failed", "max_frame_size")

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        if max_frame_size < 0:
            raise ValueError("max_frame_size must be >= 0")
        self.max_frame_size = max_frame_size
        self._buffer = bytearray()
        self._failed: FrameTooLarge | None = None

    @property
    def failed(self) -> FrameTooLarge | None:
        """The oversize-header error, once seen; the stream cannot be resynchronised."""
        return self._failed

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete frame held by the decoder (0 at a frame boundary)."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        if self._failed is not None:
            raise self._failed
        if not self._buffer:
            # Fast path: parse straight from the chunk, buffer only the remainder.
            frames, consumed = self._split(data)
            if self._failed is None and consumed < len(data):
                self._buffer += memoryview(data)[consumed:]
            return frames
        self._buffer += data
        frames, consumed = self._split(self._buffer)
        if consumed and self._failed is None:
            del self._buffer[:consumed]
        return frames

    def _split(self, data: bytes | bytearray) -> tuple[list[bytes], int]:
        frames: list[bytes] = []
        pos = 0
        end = len(data)
        limit = self.max_frame_size
        with memoryview(data) as view:
            while end - pos >= HEADER_SIZE:
                (size,) = _HEADER.unpack_from(data, pos)
                if size > limit:
                    self._failed = FrameTooLarge(size, limit, bytes(view[pos : pos + 48]))
                    break
                start = pos + HEADER_SIZE
                if end - start < size:
                    break
                frames.append(view[start : start + size].tobytes())
                pos = start + size
        if self._failed is not None:
            self._buffer.clear()
            if not frames:
                raise self._failed
            # Hand out the frames completed before the bad header; the next feed() raises.
            return frames, 0
        return frames, pos

    def eof(self) -> None:
        """Signal end of stream; raises ``IncompleteFrame`` if a frame was cut short."""
        if self._buffer:
            self._buffer.clear()
            raise IncompleteFrame()
