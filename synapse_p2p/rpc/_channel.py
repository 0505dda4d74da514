"""A framed, full-duplex channel over one byte stream.

One reader (whoever calls :meth:`FrameChannel.receive_payload`) and one writer task
(:meth:`FrameChannel.run_writer`) per stream. Senders never touch the stream: they append
encoded frames to an outbox, which the writer drains in batches (many small responses leave in
one ``send``). The outbox is bounded by bytes: :meth:`send` waits while it is above its high
water mark, so a peer that stops reading cannot make us buffer without limit.
"""

from __future__ import annotations

import logging
import math
from collections import deque

import anyio
from anyio.abc import ByteStream

from ..errors import ConnectionLost
from ..wire import FrameDecoder, Message, decode_message, encode_frame, unpack_payload

__all__ = ["FrameChannel", "ReadTimeout", "decode_payload"]

log = logging.getLogger(__name__)

RECEIVE_SIZE = 256 * 1024
#: Payloads above this size are decoded in a worker thread (one at a time, process-wide), with
#: hooks that let the event loop run while a pathological frame is being decoded.
OFFLOAD_THRESHOLD = 64 * 1024
_big_decode_limiter: anyio.CapacityLimiter | None = None


class ReadTimeout(Exception):
    """No frame arrived before the idle deadline, or a frame was not completed in time."""

    def __init__(self, mid_frame: bool) -> None:
        super().__init__("timed out in the middle of a frame" if mid_frame else "idle timeout")
        self.mid_frame = mid_frame


async def decode_payload(payload: bytes) -> Message:
    """Unpack and validate one payload; large ones off the event loop."""
    if len(payload) <= OFFLOAD_THRESHOLD:
        return decode_message(unpack_payload(payload))
    global _big_decode_limiter
    if _big_decode_limiter is None:
        _big_decode_limiter = anyio.CapacityLimiter(1)
    obj = await anyio.to_thread.run_sync(
        lambda: unpack_payload(payload, yielding=True), limiter=_big_decode_limiter
    )
    return decode_message(obj)


class FrameChannel:
    """Frames in both directions over ``stream``.

    The owner runs :meth:`run_writer` in a task group for the channel's lifetime and calls
    :meth:`close_outbox` when no more frames will be sent; the writer then flushes what is
    queued and returns. A send that does not complete within ``write_timeout`` seconds (the
    peer stopped reading) breaks the channel: the writer raises ``ConnectionLost``.
    """

    def __init__(
        self,
        stream: ByteStream,
        *,
        max_frame_size: int,
        read_timeout: float = math.inf,
        write_timeout: float = 30.0,
        high_water: int = 1024 * 1024,
    ) -> None:
        self.stream = stream
        self.decoder = FrameDecoder(max_frame_size)
        self._ready: deque[bytes] = deque()
        self._outbox: list[bytes] = []
        self._outbox_bytes = 0
        self._high_water = high_water
        self._write_timeout = write_timeout
        self._read_timeout = read_timeout
        self._idle_deadline = math.inf
        self._frame_started = 0.0
        self._read_scope: anyio.CancelScope | None = None
        self._wake = anyio.Event()
        self._drained: anyio.Event | None = None
        self._closing = False
        self.broken: BaseException | None = None

    # -- receiving --------------------------------------------------------------------------

    @property
    def mid_frame(self) -> bool:
        """True while part of a frame has been received but not all of it."""
        return self.decoder.buffered > 0

    def set_idle_deadline(self, deadline: float) -> None:
        """Move the idle deadline of a pending :meth:`receive_payload` (between frames)."""
        self._idle_deadline = deadline
        scope = self._read_scope
        if scope is not None and not self.mid_frame:
            scope.deadline = deadline

    async def receive_payload(self) -> bytes | None:
        """Next complete payload, or ``None`` at a clean end of stream.

        Raises ``ReadTimeout`` when no frame starts before the idle deadline (see
        :meth:`set_idle_deadline`) or a started frame is not complete within ``read_timeout``
        of its first byte; ``FrameTooLarge``/``IncompleteFrame`` on bad framing;
        ``ConnectionLost`` if the stream breaks. Cancellation loses no data.
        """
        while not self._ready:
            if self.decoder.failed is not None:
                raise self.decoder.failed
            if self.mid_frame:
                deadline = self._frame_started + self._read_timeout
            else:
                deadline = self._idle_deadline
            with anyio.CancelScope(deadline=deadline) as scope:
                self._read_scope = scope
                try:
                    data = await self.stream.receive(RECEIVE_SIZE)
                except anyio.EndOfStream:
                    self.decoder.eof()
                    return None
                except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
                    raise ConnectionLost(
                        f"connection broken: {exc or type(exc).__name__}"
                    ) from None
                finally:
                    self._read_scope = None
            if scope.cancelled_caught:
                raise ReadTimeout(self.mid_frame)
            was_mid_frame = self.mid_frame
            self._ready.extend(self.decoder.feed(data))
            if self.mid_frame and (not was_mid_frame or self._ready):
                # A new frame started in this chunk.
                self._frame_started = anyio.current_time()
        return self._ready.popleft()

    # -- sending ----------------------------------------------------------------------------

    def send_nowait(self, payload: bytes) -> None:
        """Queue one payload for the writer without waiting (callers bound their own volume)."""
        if self.broken is not None:
            raise ConnectionLost(f"connection broken: {self.broken}")
        if self._closing:
            raise ConnectionLost("connection closing")
        frame = encode_frame(payload)
        self._outbox.append(frame)
        self._outbox_bytes += len(frame)
        self._wake.set()

    async def send(self, payload: bytes) -> None:
        """Queue one payload, waiting first while the outbox is above its high water mark."""
        while self._outbox_bytes >= self._high_water and self.broken is None:
            if self._drained is None:
                self._drained = anyio.Event()
            await self._drained.wait()
        self.send_nowait(payload)

    def close_outbox(self) -> None:
        """No more frames will be queued; the writer flushes and returns."""
        self._closing = True
        self._wake.set()

    async def run_writer(self) -> None:
        """Drain the outbox until :meth:`close_outbox`; raise ``ConnectionLost`` on failure."""
        try:
            while True:
                await self._wake.wait()
                self._wake = anyio.Event()
                while self._outbox:
                    batch, self._outbox = self._outbox, []
                    self._outbox_bytes = 0
                    if self._drained is not None:
                        self._drained.set()
                        self._drained = None
                    data = batch[0] if len(batch) == 1 else b"".join(batch)
                    with anyio.move_on_after(self._write_timeout) as scope:
                        await self.stream.send(data)
                    if scope.cancelled_caught:
                        raise ConnectionLost(
                            f"peer did not read for {self._write_timeout:g} s; closing"
                        )
                if self._closing:
                    return
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            self._fail(ConnectionLost(f"connection broken: {exc or type(exc).__name__}"))
            raise self.broken from None  # type: ignore[misc]
        except ConnectionLost as exc:
            self._fail(exc)
            raise

    def _fail(self, exc: BaseException) -> None:
        self.broken = exc
        self._outbox.clear()
        self._outbox_bytes = 0
        if self._drained is not None:
            self._drained.set()
            self._drained = None

    async def aclose(self, grace: float = 1.0) -> None:
        """Close the stream (bounded, shielded from cancellation)."""
        with anyio.CancelScope(shield=True), anyio.move_on_after(grace):
            await self.stream.aclose()
