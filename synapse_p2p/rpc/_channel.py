"""A framed, full-duplex channel over one byte stream.

One reader (whoever calls :meth:`FrameChannel.receive_payload`) and one writer at a time: the
first sender to find the channel idle writes in its own task (no task hand-off on the fast
path), and frames sent meanwhile are queued and leave with it in one batch (many small
responses, one ``send``); a sender that knows more frames follow at once can also queue its
frame explicitly (:meth:`FrameChannel.queue`). The queue is bounded in bytes, so a peer that
stops reading cannot make us buffer without limit. Timeouts are kept by a shared
:class:`~._watchdog.Watchdog`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
from anyio.abc import ByteStream

from ..errors import ConnectionLost
from ..transport._backend import current_clock
from ..wire import FrameDecoder, Message, decode_message, encode_frame, unpack_payload

if TYPE_CHECKING:
    from ._watchdog import Watchdog

__all__ = ["FrameChannel", "ReadTimeout", "decode_payload"]

log = logging.getLogger(__name__)


class Unsent(ConnectionLost):
    """The connection broke before the frame of the sender's own :meth:`FrameChannel.send` was
    written whole: the peer cannot have read that request, so it may be sent again on another
    connection (a stale pooled connection, whose peer went away while it was idle, fails this
    way)."""


#: At most this many frames (or bytes) wait in the queue of :meth:`FrameChannel.queue`: a
#: batch of responses leaves in a few writes, not one write at the very end, so the peer can
#: start on the first ones while the rest are being computed.
QUEUE_FRAMES = 16
QUEUE_BYTES = 64 * 1024
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

    Timeouts are enforced by the :class:`~._watchdog.Watchdog` that the owner gives the channel
    to (:meth:`Watchdog.watch`), one task for many channels (no task or timer per channel, per
    frame or per write):

    * idle: no frame started before the owner's idle deadline (:meth:`set_idle_deadline`);
    * read: a started frame not complete within ``read_timeout`` of its first byte;
    * write: a write making no progress for ``write_timeout`` (checked at least every
      ``max(1, min(read_timeout, write_timeout))`` seconds, so detected within
      ``write_timeout`` plus that).

    The watchdog also calls ``on_sweep`` (if given) every ``check_interval`` or so, for the
    owner's housekeeping, and ``on_wakeup(now)`` once the time given to :meth:`wake_owner_at`
    has come (the owner's own deadlines, such as call timeouts). On expiry it calls
    ``on_timeout`` (which may still :meth:`send`, e.g. an error frame) and closes the stream;
    a pending :meth:`receive_payload` then raises ``ConnectionLost`` and :attr:`timed_out`
    says why. When the channel breaks (see :meth:`send`), ``on_broken`` is called once with
    the reason so the owner can tear the connection down; the owner closes the stream with
    :meth:`aclose`. A channel given to no watchdog enforces no timeout.
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
        on_sweep: Callable[[], None] | None = None,
        on_wakeup: Callable[[float], None] | None = None,
    ) -> None:
        self.stream = stream
        #: The event loop's clock (``anyio.current_time``, cheaper).
        self.clock = current_clock()
        self.decoder = FrameDecoder(max_frame_size)
        self._ready: list[bytes] = []  # complete payloads not yet returned, last first
        self._outbox: list[bytes] = []
        self._outbox_bytes = 0
        self._high_water = high_water
        self._write_timeout = write_timeout
        self._read_timeout = read_timeout
        self._check_interval = max(1.0, min(read_timeout, write_timeout))
        self._idle_deadline = math.inf
        self._frame_started = 0.0
        self._write_started = 0.0
        self._watchdog: Watchdog | None = None
        self._watch_entry: list[Any] | None = None
        #: When the watchdog looks at this channel next (``inf``: not filed; ``-inf``: never
        #: again). Deadlines later than this need no action: they are seen when it comes due.
        self._watch_target = math.inf
        self._writing = False
        self._drained: anyio.Event | None = None
        self._on_broken = on_broken
        self._on_timeout = on_timeout
        self._on_sweep = on_sweep
        self._on_wakeup = on_wakeup
        self._wakeup = math.inf
        self._writer: object = None
        self._released = False  # the writer's caller has left: hand the queue over
        #: ``stream.send_nowait(data) -> bytes written``, for streams that have it (the lean
        #: streams of :mod:`synapse_p2p.transport`): a write that never yields.
        self._send_nowait: Callable[[bytes], int] | None = getattr(stream, "send_nowait", None)
        self.broken: BaseException | None = None
        self.timed_out: ReadTimeout | None = None

    # -- timeouts ---------------------------------------------------------------------------

    def set_idle_deadline(self, deadline: float) -> None:
        """Close the channel if no frame starts before ``deadline`` (``inf``: never)."""
        self._idle_deadline = deadline
        if deadline < self._watch_target:
            self._refile(deadline)

    def wake_owner_at(self, when: float) -> None:
        """Have the watchdog call ``on_wakeup`` at ``when`` (replacing a later request)."""
        if when < self._wakeup:
            self._wakeup = when
            if when < self._watch_target:
                self._refile(when)

    def _refile(self, deadline: float) -> None:
        if self._watchdog is not None:
            self._watchdog.schedule(self, deadline)

    def _deadline(self) -> float:
        """The next read, idle or owner's deadline (``inf``: none)."""
        if self.mid_frame:
            deadline = self._frame_started + self._read_timeout
        else:
            deadline = self._idle_deadline
        return deadline if deadline < self._wakeup else self._wakeup

    def _wake_owner(self, now: float) -> None:
        if self._wakeup <= now:
            self._wakeup = math.inf
            if self._on_wakeup is not None:
                self._on_wakeup(now)

    def _expired(self, now: float) -> BaseException | None:
        if self._writing and now - self._write_started >= self._write_timeout:
            return ConnectionLost(f"peer did not read for {self._write_timeout:g} s")
        if self.mid_frame:
            if now - self._frame_started >= self._read_timeout:
                return ReadTimeout(mid_frame=True)
        elif now >= self._idle_deadline:
            return ReadTimeout(mid_frame=False)
        return None

    async def _expire(self, expired: BaseException) -> None:
        """Act on an expired timeout (in a task of the watchdog), then close."""
        with anyio.move_on_after(self._write_timeout):
            if isinstance(expired, ReadTimeout):
                self.timed_out = expired
                if self._on_timeout is not None:
                    await self._on_timeout(expired)
            else:
                self._fail(expired)
        await self.aclose()

    # -- receiving --------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """True if a complete payload has been received and not returned yet (the next
        :meth:`receive_payload` returns at once)."""
        return bool(self._ready)

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
            ready = self.decoder.feed(data)
            if len(ready) > 1:
                ready.reverse()
            self._ready = ready
            if self.mid_frame and (not was_mid_frame or ready):
                # A new frame started in this chunk and is not complete yet.
                self._frame_started = self.clock()
                deadline = self._frame_started + self._read_timeout
                if deadline < self._watch_target:
                    self._refile(deadline)
        return self._ready.pop()

    # -- sending ----------------------------------------------------------------------------

    async def send(
        self,
        payload: bytes,
        *,
        deadline: float = math.inf,
        writer: object = None,
        immediate: bool = False,
    ) -> None:
        """Write one payload as a frame.

        Whoever finds the channel idle writes, in its own task (no hand-off); frames sent while
        a write is in progress are queued and the writing task sends them in one batch, so the
        call returns as soon as its frame is written or queued. The queue is bounded by
        ``high_water`` bytes: past it, senders wait. A write that makes no progress for
        ``write_timeout`` seconds, a broken stream, or cancellation in the middle of a write
        (the stream cannot be resynchronised) breaks the channel: this and later sends raise
        ``ConnectionLost`` and the owner's ``on_broken`` callback runs. Cancellation before
        the write starts leaves the channel intact. A sender that has to wait for room in the
        queue waits until ``deadline`` at most (then ``TimeoutError``); ``writer`` names the
        sender for :meth:`abort_write`. With ``immediate``, a frame that the stream takes at
        once (nothing else is being written and its buffer has room) is written without a
        schedule point; otherwise, or if it is not taken whole, the send goes on as usual.
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
            if deadline == math.inf:
                await self._drained.wait()
            else:
                with anyio.fail_at(deadline):
                    await self._drained.wait()
            if self.broken is not None:
                raise ConnectionLost(f"connection broken: {self.broken}")
        if self._outbox:  # queued frames leave first, in the same write
            self._outbox.append(frame)
            frame = b"".join(self._outbox)
            self._outbox = []
            self._outbox_bytes = 0
        if immediate and self._send_nowait is not None:
            try:
                sent = self._send_nowait(frame)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
                failure = Unsent(f"connection broken: {exc or type(exc).__name__}")
                self._fail(failure)
                raise failure from None
            if sent == len(frame):
                return
            if sent:
                frame = frame[sent:]
        await self._write(frame, writer)

    async def _write(self, data: bytes, writer: object, *, own: bool = True) -> None:
        """Write ``data``, then whatever was queued meanwhile, as the channel's one writer.
        With ``own``, ``data`` ends with the writer's own frame: if writing it fails,
        :class:`Unsent`."""
        self._writing = True
        self._writer = writer
        try:
            while True:
                self._write_started = self.clock()
                await self.stream.send(data)
                own = False
                if not self._outbox or (self._released and self._hand_over()):
                    break
                batch, self._outbox = self._outbox, []
                self._outbox_bytes = 0
                self._wake_senders()
                data = b"".join(batch)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            kind = Unsent if own else ConnectionLost
            failure = kind(f"connection broken: {exc or type(exc).__name__}")
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
            self._writer = None
            self._released = False
            self._wake_senders()

    def queue(self, payload: bytes) -> bool:
        """Queue a frame to leave with the next write, without writing now; ``False`` (and
        nothing queued) if the queue is full, in which case :meth:`send` it. Whoever queues
        must make sure a :meth:`send` or :meth:`flush` follows."""
        if self.broken is not None:
            raise ConnectionLost(f"connection broken: {self.broken}")
        if len(self._outbox) >= QUEUE_FRAMES or self._outbox_bytes >= QUEUE_BYTES:
            return False
        frame = encode_frame(payload)
        self._outbox.append(frame)
        self._outbox_bytes += len(frame)
        return True

    async def flush(self) -> None:
        """Write the queued frames, if any (and no write is in progress to take them)."""
        if self._outbox and not self._writing and self.broken is None:
            batch, self._outbox = self._outbox, []
            self._outbox_bytes = 0
            await self._write(b"".join(batch), None, own=False)

    def release_writer(self, writer: object) -> None:
        """If ``writer`` is the sender writing right now, let it go once the chunk in progress
        is written: the frames queued behind it are then written by a task of the watchdog
        (its caller has given up waiting, and more frames may keep arriving)."""
        if self._writing and writer is not None and self._writer is writer:
            self._released = True

    def _hand_over(self) -> bool:
        """Have a task of the watchdog write the queue (``False``: no watchdog runs)."""
        watchdog = self._watchdog
        if watchdog is None or not watchdog.running:
            return False
        watchdog.spawn(self._flush_queue)
        return True

    async def _flush_queue(self) -> None:
        try:
            await self.flush()
        except ConnectionLost:  # the owner was told (on_broken)
            pass

    def abort_write(self, writer: object, reason: BaseException) -> None:
        """Break the channel if ``writer`` is the sender writing right now (its frame will be
        cut short, so the stream cannot go on); otherwise do nothing."""
        if self._writing and writer is not None and self._writer is writer:
            self._fail(reason)

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
        """Stop the timeouts and close the stream (bounded, shielded from cancellation)."""
        if self._watchdog is not None:
            self._watchdog.unwatch(self)
        with anyio.CancelScope(shield=True), anyio.move_on_after(grace):
            await self.stream.aclose()
