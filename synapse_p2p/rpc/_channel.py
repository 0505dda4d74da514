"""A framed, full-duplex channel over one byte stream.

One reader (whoever calls :meth:`FrameChannel.receive_payload`) and one writer at a time: the
first sender to find the channel idle writes in its own task (no task hand-off on the fast
path), and frames sent meanwhile are queued and leave with it in one batch (many small
responses, one ``send``). The queue is bounded in bytes, so a peer that stops reading cannot
make us buffer without limit.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable

import anyio
import anyio.lowlevel
from anyio.abc import ByteStream

from ..errors import ConnectionLost
from ..wire import FrameDecoder, Message, decode_message, encode_frame, unpack_payload

__all__ = ["FrameChannel", "ReadTimeout", "decode_payload"]

log = logging.getLogger(__name__)

RECEIVE_SIZE = 64 * 1024  # below malloc's mmap threshold: no mmap/munmap per receive
#: Payloads above this size are decoded in a worker thread (one at a time, process-wide), with
#: hooks that let the event loop run while a pathological frame is being decoded.
OFFLOAD_THRESHOLD = 64 * 1024
_big_decode_limiter: anyio.lowlevel.RunVar[anyio.CapacityLimiter] = anyio.lowlevel.RunVar(
    "synapse_p2p_big_decode_limiter"
)


class ReadTimeout(Exception):
    """No frame arrived before the idle deadline, or a frame was not completed in time."""

    def __init__(self, mid_frame: bool) -> None:
        super().__init__("timed out in the middle of a frame" if mid_frame else "idle timeout")
        self.mid_frame = mid_frame


async def decode_payload(payload: bytes) -> Message:
    """Unpack and validate one payload; large ones off the event loop."""
    if len(payload) <= OFFLOAD_THRESHOLD:
        return decode_message(unpack_payload(payload))
    try:
        limiter = _big_decode_limiter.get()
    except LookupError:  # one per event loop
        limiter = anyio.CapacityLimiter(1)
        _big_decode_limiter.set(limiter)
    obj = await anyio.to_thread.run_sync(
        lambda: unpack_payload(payload, yielding=True), limiter=limiter
    )
    return decode_message(obj)


class FrameChannel:
    """Frames in both directions over ``stream``, with its timeouts.

    Timeouts are enforced by :meth:`watchdog`, one task per channel that sleeps until the next
    deadline (no timer per frame or per write):

    * idle: no frame started before the owner's idle deadline (:meth:`set_idle_deadline`);
    * read: a started frame not complete within ``read_timeout`` of its first byte;
    * write: a write making no progress for ``write_timeout`` (checked at least every
      ``min(read_timeout, write_timeout)`` while the channel is active, so detected within
      twice that).

    On expiry the watchdog calls ``on_timeout`` (which may still :meth:`send`, e.g. an error
    frame) and closes the stream; a pending :meth:`receive_payload` then raises
    ``ConnectionLost`` and :attr:`timed_out` says why. When the channel breaks (see
    :meth:`send`), ``on_broken`` is called once with the reason so the owner can tear the
    connection down; the owner closes the stream with :meth:`aclose`.
    """

    def __init__(
        self,
        stream: ByteStream,
        *,
        max_frame_size: int,
        read_timeout: float = math.inf,
        write_timeout: float = 30.0,
        high_water: int = 1024 * 1024,
        on_broken: Callable[[BaseException], None] | None = None,
        on_timeout: Callable[[ReadTimeout], Awaitable[None]] | None = None,
    ) -> None:
        self.stream = stream
        self.decoder = FrameDecoder(max_frame_size)
        self._ready: deque[bytes] = deque()
        self._outbox: list[bytes] = []
        self._outbox_bytes = 0
        self._high_water = high_water
        self._write_timeout = write_timeout
        self._read_timeout = read_timeout
        self._check_interval = max(1.0, min(read_timeout, write_timeout))
        self._idle_deadline = math.inf
        self._frame_started = 0.0
        self._write_started = 0.0
        self._watch_scope: anyio.CancelScope | None = None
        self._watch_target = math.inf
        self._writing = False
        self._drained: anyio.Event | None = None
        self._on_broken = on_broken
        self._on_timeout = on_timeout
        self.broken: BaseException | None = None
        self.timed_out: ReadTimeout | None = None

    # -- timeouts ---------------------------------------------------------------------------

    def set_idle_deadline(self, deadline: float) -> None:
        """Close the channel if no frame starts before ``deadline`` (``inf``: never)."""
        self._idle_deadline = deadline
        if deadline < self._watch_target:
            self._replan()

    def _replan(self) -> None:
        if self._watch_scope is not None:
            self._watch_scope.cancel()

    def _plan(self, now: float) -> float:
        target = self._frame_started + self._read_timeout if self.mid_frame else self._idle_deadline
        if self._writing:
            target = min(target, self._write_started + self._write_timeout)
        if self._idle_deadline == math.inf:  # active: look at writes now and then
            target = min(target, now + self._check_interval)
        return target

    def _expired(self, now: float) -> BaseException | None:
        if self._writing and now - self._write_started >= self._write_timeout:
            return ConnectionLost(f"peer did not read for {self._write_timeout:g} s")
        if self.mid_frame:
            if now - self._frame_started >= self._read_timeout:
                return ReadTimeout(mid_frame=True)
        elif now >= self._idle_deadline:
            return ReadTimeout(mid_frame=False)
        return None

    async def watchdog(self) -> None:
        """Enforce the channel's timeouts until one expires (then close) or cancellation."""
        expired: BaseException | None = None
        while True:
            now = anyio.current_time()
            expired = self._expired(now)
            if expired is not None:
                break
            self._watch_target = self._plan(now)
            with anyio.CancelScope() as scope:
                self._watch_scope = scope
                if self._watch_target == math.inf:
                    await anyio.sleep_forever()
                else:
                    await anyio.sleep_until(self._watch_target)
            self._watch_scope = None
        self._watch_target = -math.inf
        if isinstance(expired, ReadTimeout):
            self.timed_out = expired
            if self._on_timeout is not None:
                await self._on_timeout(expired)
        else:
            self._fail(expired)
        await self.aclose()

    # -- receiving --------------------------------------------------------------------------

    @property
    def mid_frame(self) -> bool:
        """True while part of a frame has been received but not all of it."""
        return self.decoder.buffered > 0

    async def receive_payload(self) -> bytes | None:
        """Next complete payload, or ``None`` at a clean end of stream.

        Raises ``FrameTooLarge``/``IncompleteFrame`` on bad framing and ``ConnectionLost`` if
        the stream breaks or is closed (by the watchdog, see :attr:`timed_out`). Cancellation
        loses no data.
        """
        while not self._ready:
            if self.decoder.failed is not None:
                raise self.decoder.failed
            try:
                data = await self.stream.receive(RECEIVE_SIZE)
            except anyio.EndOfStream:
                self.decoder.eof()
                return None
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
                raise ConnectionLost(f"connection broken: {exc or type(exc).__name__}") from None
            was_mid_frame = self.mid_frame
            self._ready.extend(self.decoder.feed(data))
            if self.mid_frame and (not was_mid_frame or self._ready):
                # A new frame started in this chunk and is not complete yet.
                self._frame_started = anyio.current_time()
                if self._frame_started + self._read_timeout < self._watch_target:
                    self._replan()
        return self._ready.popleft()

    # -- sending ----------------------------------------------------------------------------

    async def send(self, payload: bytes) -> None:
        """Write one payload as a frame.

        Whoever finds the channel idle writes, in its own task (no hand-off); frames sent while
        a write is in progress are queued and the writing task sends them in one batch, so the
        call returns as soon as its frame is written or queued. The queue is bounded by
        ``high_water`` bytes: past it, senders wait. A write that makes no progress for
        ``write_timeout`` seconds, a broken stream, or cancellation in the middle of a write
        (the stream cannot be resynchronised) breaks the channel: this and later sends raise
        ``ConnectionLost`` and the owner's ``on_broken`` callback runs. Cancellation before
        the write starts leaves the channel intact.
        """
        await anyio.lowlevel.checkpoint_if_cancelled()
        if self.broken is not None:
            raise ConnectionLost(f"connection broken: {self.broken}")
        frame = encode_frame(payload)
        while self._writing:
            if self._outbox_bytes < self._high_water:
                self._outbox.append(frame)
                self._outbox_bytes += len(frame)
                return
            if self._drained is None:
                self._drained = anyio.Event()
            await self._drained.wait()
            if self.broken is not None:
                raise ConnectionLost(f"connection broken: {self.broken}")
        self._writing = True
        try:
            data = frame
            while True:
                self._write_started = anyio.current_time()
                await self.stream.send(data)
                if not self._outbox:
                    break
                batch, self._outbox = self._outbox, []
                self._outbox_bytes = 0
                self._wake_senders()
                data = b"".join(batch)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            failure = ConnectionLost(f"connection broken: {exc or type(exc).__name__}")
            self._fail(failure)
            raise failure from None
        except ConnectionLost as exc:
            self._fail(exc)
            raise
        except BaseException:  # cancelled mid-write
            self._fail(ConnectionLost("a write was cancelled midway; connection closed"))
            raise
        finally:
            self._writing = False
            self._wake_senders()

    def _wake_senders(self) -> None:
        if self._drained is not None:
            self._drained.set()
            self._drained = None

    def _fail(self, exc: BaseException) -> None:
        if self.broken is None:
            self.broken = exc
            self._outbox.clear()
            self._outbox_bytes = 0
            self._wake_senders()
            if self._on_broken is not None:
                self._on_broken(exc)

    async def aclose(self, grace: float = 1.0) -> None:
        """Close the stream (bounded, shielded from cancellation)."""
        with anyio.CancelScope(shield=True), anyio.move_on_after(grace):
            await self.stream.aclose()
