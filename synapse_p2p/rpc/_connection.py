"""Client side of one connection: one-shot calls and multiplexed sessions."""

from __future__ import annotations

import itertools
import logging
import math
import secrets
from collections import deque
from collections.abc import Callable
from typing import Any

import anyio
from anyio.abc import ByteStream, TaskStatus

from ..errors import (
    BAD_REQUEST,
    CallTimeout,
    ConnectionLost,
    FrameTooLarge,
    ProtocolError,
    RemoteError,
)
from ..wire import Request, Response, encode_frame, encode_request
from ._channel import OFFLOAD_THRESHOLD, FrameChannel, decode_payload
from ._session import PROTOCOL_VERSION, SESSION_ENDPOINT
from ._watchdog import Watchdog

__all__ = ["LegacyServer", "MuxConnection", "call_once", "response_value"]

log = logging.getLogger(__name__)


class LegacyServer(Exception):
    """The server does not speak the session protocol (synapse-p2p 2.5.0): one call per
    connection."""


def response_value(response: Response, endpoint: str) -> Any:
    """The result of a response, or raise ``RemoteError``."""
    if response.ok:
        return response.result
    error = response.error
    if error is None:
        raise RemoteError("internal_error", "RPC call failed", endpoint=endpoint)
    raise RemoteError(error.code, error.message, endpoint=endpoint, type=error.type)


async def call_once(
    stream: ByteStream,
    endpoint: str,
    args: list[Any],
    kwargs: dict[str, Any],
    *,
    max_frame_size: int,
    target: str,
) -> Any:
    """One request on ``stream`` (which the caller closes), reference style.

    Raises ``RemoteError``, ``ConnectionLost`` or ``ProtocolError``; the caller applies the
    timeout.
    """
    request_id = secrets.token_hex(8)
    frame = encode_frame(encode_request(Request(endpoint, request_id, args, kwargs)))
    channel = FrameChannel(stream, max_frame_size=max_frame_size)
    send_error: BaseException | None = None
    try:
        await stream.send(frame)
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
        # The server may have answered (e.g. "frame too large") and closed: read it.
        send_error = exc
    while True:
        try:
            payload = await channel.receive_payload()
        except ConnectionLost:
            payload = None
        if payload is None:
            reason = f" ({send_error})" if send_error else ""
            raise ConnectionLost(f"{target} closed the connection without answering{reason}")
        message = await decode_payload(payload)
        if not isinstance(message, Response):
            raise ProtocolError("node returned a non-response message")
        if message.id not in (request_id, ""):
            log.debug("ignoring response with unexpected id %r from %s", message.id, target)
            continue
        return response_value(message, endpoint)


_QUEUED, _SENDING, _AWAITING = 0, 1, 2


class _Slot:
    """One call: its deadline, where its caller is, and its outcome."""

    __slots__ = ("deadline", "done", "error", "event", "phase", "response", "timed_out")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.phase = _QUEUED
        self.done = False
        self.timed_out = False
        self.event: anyio.Event | None = None  # set while the caller waits
        self.response: Response | None = None
        self.error: BaseException | None = None

    def finish(self) -> None:
        self.done = True
        if self.event is not None:
            self.event.set()


class MuxConnection:
    """A persistent connection carrying concurrent requests matched by ``id``.

    Open it with ``await conn.open(watchdog)``, which performs the session handshake (raising
    :class:`LegacyServer` if the server is a synapse-p2p 2.5.0 node) in the caller's task and
    gives the connection's timeouts to a running :class:`~._watchdog.Watchdog` shared with other
    connections; the connection then needs no task of its own and lasts until :meth:`aclose`.
    ``await task_group.start(conn.run)`` does the same with a watchdog of its own and keeps
    running until :meth:`aclose` or cancellation. Callers write their own requests and read
    the responses themselves: one waiting caller at a time reads and hands each response to
    its caller, then passes reading on (no reader task, no hand-off on the sequential path).
    When the connection breaks, every pending call fails with ``ConnectionLost``,
    :attr:`closed` becomes true and the stream is closed. Calls beyond the server's
    ``max_concurrent`` wait for a slot.

    Call timeouts are deadlines kept by the watchdog, not a cancel scope per call: when a call's
    deadline passes, a caller waiting for its response is woken, the caller that is reading
    for everyone has its read cancelled (a cancel scope exists only while a caller with a
    deadline reads). A caller still writing (its own request, or others' queued behind it)
    cuts its write short, which breaks the connection, only if no other call is in flight or
    waiting on it (one call's timeout must not fail the others); beside other calls it
    finishes the chunk it is writing (a peer that stops reading for ``write_timeout`` breaks
    the connection for everyone), leaves what is queued behind it to a task of the watchdog,
    and raises ``CallTimeout`` without waiting for its response. Callers waiting for a free
    slot or for room to queue their request wait under a scope of their own.
    """

    def __init__(
        self,
        stream: ByteStream,
        *,
        target: str,
        max_frame_size: int,
        write_timeout: float = 30.0,
        handshake_timeout: float = 10.0,
        node_id: str | None = None,
    ) -> None:
        self.target = target
        #: The server's node id as proved by the secure channel (``None``: plaintext).
        self.node_id = node_id
        self._channel = FrameChannel(
            stream,
            max_frame_size=max_frame_size,
            write_timeout=write_timeout,
            on_broken=self._broken,
            on_wakeup=self._expire_calls,
        )
        self._max_frame_size = max_frame_size
        self._handshake_timeout = handshake_timeout
        self._ids = itertools.count(1)
        self._pending: dict[str, _Slot] = {}
        self._failure: BaseException | None = None
        self._cancel_scope: anyio.CancelScope | None = None
        self._watchdog: Watchdog | None = None
        self._reading = False
        self._reader: _Slot | None = None  # the call whose caller reads for everyone
        self._read_scope: anyio.CancelScope | None = None
        self._due = math.inf  # no call's deadline is earlier (may be earlier than any)
        self._max_concurrent = 64
        self._waiting: deque[anyio.Event] | None = None  # calls waiting for a free slot
        self.server_info: dict[str, Any] = {}
        self.server_max_frame = max_frame_size
        self.last_used = anyio.current_time()
        #: Called once when the connection closes or breaks (a pool sweeps it then).
        self.on_closed: Callable[[], None] | None = None

    @property
    def closed(self) -> bool:
        return self._failure is not None

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    async def open(self, watchdog: Watchdog) -> None:
        """Hand the timeouts to ``watchdog`` and perform the session handshake.

        Raises :class:`LegacyServer`, ``CallTimeout``, ``RemoteError``, ``ConnectionLost`` or
        ``ProtocolError``; on any failure or cancellation the stream is closed.
        """
        self._watchdog = watchdog
        watchdog.watch(self._channel)
        try:
            await self._handshake()
        except BaseException:
            self._fail(ConnectionLost(f"connection to {self.target} closed"))
            await self._channel.aclose()
            raise

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Open with a watchdog of its own; run until :meth:`aclose` or cancellation."""
        handshake_error: Exception | None = None
        try:
            with anyio.CancelScope() as scope:
                self._cancel_scope = scope
                async with anyio.create_task_group() as tg:
                    watchdog = Watchdog()
                    await tg.start(watchdog.run)
                    try:
                        await self.open(watchdog)
                    except Exception as exc:
                        handshake_error = exc
                        scope.cancel()
                    else:
                        task_status.started()
                        await anyio.sleep_forever()
        finally:
            self._fail(ConnectionLost(f"connection to {self.target} closed"))
            await self._channel.aclose()
        if handshake_error is not None:
            raise handshake_error

    async def _handshake(self) -> None:
        try:
            info = await self.call(
                SESSION_ENDPOINT,
                [{"protocol": PROTOCOL_VERSION, "max_frame": self._max_frame_size}],
                {},
                self._handshake_timeout,
            )
        except RemoteError as exc:
            if exc.code == BAD_REQUEST:
                raise LegacyServer(self.target) from None
            raise
        except CallTimeout:
            raise CallTimeout(f"no session handshake from {self.target}") from None
        if not isinstance(info, dict):
            raise ProtocolError(f"invalid session handshake from {self.target}")
        self.server_info = info
        max_concurrent = info.get("max_concurrent")
        if isinstance(max_concurrent, int) and max_concurrent > 0:
            self._max_concurrent = max_concurrent
        max_frame = info.get("max_frame")
        if isinstance(max_frame, int) and max_frame > 0:
            self.server_max_frame = max_frame

    def _broken(self, exc: BaseException) -> None:
        self._fail(exc)
        if self._cancel_scope is not None:
            self._cancel_scope.cancel()
        elif self._watchdog is not None:
            self._watchdog.close_soon(self._channel)

    async def _await_response(self, slot: _Slot) -> None:
        while not slot.done:
            if self._reading:
                slot.event = anyio.Event()
                try:
                    await slot.event.wait()
                finally:
                    slot.event = None
                continue  # answered, timed out, or handed the reading role
            self._reading = True
            self._reader = slot
            try:
                if slot.deadline == math.inf:
                    await self._read_until(slot)
                else:
                    with anyio.CancelScope() as scope:  # cancelled at the deadline
                        self._read_scope = scope
                        await self._read_until(slot)
            finally:
                self._reading = False
                self._reader = self._read_scope = None
                for other in self._pending.values():  # pass reading on to a waiting caller
                    if other.event is not None and not other.done:
                        other.event.set()
                        break

    def _expire_calls(self, now: float) -> None:
        """Time out the calls whose deadline has passed (called by the watchdog)."""
        due = math.inf
        others = bool(self._waiting)  # calls that stay in flight or wait for a free slot
        sending: list[_Slot] = []
        for slot in self._pending.values():
            if slot.done:
                continue
            if slot.deadline > now:
                due = min(due, slot.deadline)
                others = True
                continue
            slot.timed_out = True
            if slot.phase == _SENDING:
                # Writing (see below), or waiting for room to queue its frame (under a scope
                # of its own: left alone).
                sending.append(slot)
            elif slot is self._reader:
                slot.done = True
                if self._read_scope is not None:
                    self._read_scope.cancel()
            else:
                slot.finish()
        for slot in sending:
            if not others:
                # No other call is in flight or waiting: nothing else is lost if the write is
                # cut short (the connection cannot go on after that).
                self._channel.abort_write(
                    slot, ConnectionLost(f"a call to {self.target} timed out mid-write")
                )
            else:  # the chunk in progress is finished, the rest of the queue handed over
                self._channel.release_writer(slot)
        self._due = due
        if due < math.inf:
            self._channel.wake_owner_at(due)

    async def _read_until(self, slot: _Slot) -> None:
        channel = self._channel
        failure: BaseException
        try:
            while not slot.done:
                payload = await channel.receive_payload()
                if payload is None:
                    failure = ConnectionLost(f"{self.target} closed the connection")
                    break
                if len(payload) > OFFLOAD_THRESHOLD:  # decoded in a thread: never lose it
                    with anyio.CancelScope(shield=True):
                        message = await decode_payload(payload)
                else:  # decoded inline, no checkpoint
                    message = await decode_payload(payload)
                if not isinstance(message, Response):
                    log.debug("ignoring non-response message from %s", self.target)
                    continue
                other = self._pending.pop(message.id, None)
                if other is None:
                    # An error without a usable id (e.g. "too many connections") ends the
                    # session for everyone waiting.
                    if message.id == "" and not message.ok:
                        try:
                            response_value(message, "")
                        except RemoteError as exc:
                            failure = exc
                            break
                    continue
                other.response = message
                other.finish()
            else:
                return
        except (ConnectionLost, ProtocolError) as exc:
            failure = exc
        except Exception as exc:  # a bug must not take the caller down with a strange error
            log.exception("unexpected error reading from %s", self.target)
            failure = ConnectionLost(f"connection to {self.target} failed: {exc!r}")
        self._broken(failure)

    def _fail(self, exc: BaseException) -> None:
        if self._failure is None:
            self._failure = exc
            if self.on_closed is not None:
                self.on_closed()
        pending, self._pending = self._pending, {}
        for slot in pending.values():
            slot.error = self._failure
            slot.finish()
        while self._waiting:
            self._waiting.popleft().set()

    async def call(
        self,
        endpoint: str,
        args: list[Any],
        kwargs: dict[str, Any],
        timeout: float = math.inf,
    ) -> Any:
        """Send one request and wait for its response.

        Raises ``RemoteError``, ``CallTimeout`` (the request may still run remotely),
        ``ConnectionLost`` or ``FrameTooLarge`` (the request exceeds the server's limit; nothing
        was sent). On cancellation the request is abandoned; a late response is dropped.
        """
        if self._failure is not None:
            raise ConnectionLost(f"connection to {self.target} is closed: {self._failure}")
        now = self.last_used = self._channel.clock()
        request_id = str(next(self._ids))
        payload = encode_request(Request(endpoint, request_id, args, kwargs))
        if len(payload) > self.server_max_frame:
            raise FrameTooLarge(len(payload), self.server_max_frame)
        slot = _Slot(now + timeout)
        try:
            await self._exchange(request_id, payload, slot)
        except TimeoutError:
            slot.timed_out = True
        except ConnectionLost:
            if not slot.timed_out:
                raise
        if slot.timed_out:
            raise CallTimeout(
                f"no response to {endpoint!r} from {self.target} within {timeout:g} s"
            )
        self.last_used = self._channel.clock()
        if slot.error is not None:
            if isinstance(slot.error, RemoteError):
                raise RemoteError(slot.error.code, slot.error.message, endpoint=endpoint)
            raise ConnectionLost(
                f"connection to {self.target} lost during {endpoint!r}: {slot.error}"
            )
        assert slot.response is not None
        return response_value(slot.response, endpoint)

    async def _exchange(self, request_id: str, payload: bytes, slot: _Slot) -> None:
        if len(self._pending) >= self._max_concurrent and self._failure is None:
            with anyio.fail_at(slot.deadline):
                await self._wait_for_room()
        if self._failure is not None:
            raise ConnectionLost(f"connection to {self.target} is closed: {self._failure}")
        self._pending[request_id] = slot
        if slot.deadline < self._due:
            self._due = slot.deadline
            self._channel.wake_owner_at(slot.deadline)
        try:
            slot.phase = _SENDING
            # Alone on the connection, write at once; with other calls in flight, let theirs
            # join this write (a schedule point on trio).
            await self._channel.send(
                payload, deadline=slot.deadline, writer=slot, immediate=len(self._pending) == 1
            )
            slot.phase = _AWAITING
            if not slot.timed_out:  # timed out while writing: the caller leaves now
                await self._await_response(slot)
        finally:
            self._pending.pop(request_id, None)
            self._wake_next()

    async def _wait_for_room(self) -> None:
        while len(self._pending) >= self._max_concurrent and self._failure is None:
            event = anyio.Event()
            if self._waiting is None:
                self._waiting = deque()
            self._waiting.append(event)
            try:
                await event.wait()
            except BaseException:
                if event.is_set():  # handed a free slot but leaving: pass it on
                    self._wake_next()
                else:
                    assert self._waiting is not None
                    self._waiting.remove(event)
                raise

    def _wake_next(self) -> None:
        if self._waiting and len(self._pending) < self._max_concurrent:
            self._waiting.popleft().set()

    async def aclose(self) -> None:
        """Close the connection; pending calls fail with ``ConnectionLost``."""
        self._fail(ConnectionLost(f"connection to {self.target} closed"))
        if self._cancel_scope is not None:
            self._cancel_scope.cancel()
        else:
            await self._channel.aclose()
