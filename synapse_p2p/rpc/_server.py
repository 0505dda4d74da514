"""The RPC server: accept loop, per-connection reader, request dispatch, limits.

Every connection is served the same way, which covers both kinds of client:

* synapse-p2p 2.5.0 clients send one request per connection and close after the response;
* our clients keep the connection and send many requests concurrently, matched by ``id``, after
  a ``_synapse.session`` handshake that tells them our limits (the reference answers that
  endpoint with ``bad_request``, which is how our client knows to fall back).

Limits (:class:`ServerLimits`) and what happens past them:

* ``max_connections``: a connection over the limit gets an ``overloaded`` error response and is
  closed at once; so does one over ``max_connections_per_peer`` (counted per verified node id,
  or per IP address for plaintext callers);
* ``max_concurrent_requests`` per connection: extra requests get an ``overloaded`` error
  response (they are not executed);
* ``idle_timeout``: a connection with no request in flight and no byte received for that long
  is closed;
* ``read_timeout``: a frame must arrive whole within that many seconds of its first byte, else
  the connection gets a ``bad_request`` error and is closed (no slow-loris);
* ``write_timeout``: a peer that does not read our responses for that long is disconnected;
* ``max_frame_size``: a larger header gets ``bad_request`` ``"frame too large: n > max"`` and
  the connection is closed (the stream cannot be resynchronised).

Requests in flight when the client half-closes still get their responses. When the peer goes
away entirely, its in-flight handlers are cancelled.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio
from anyio.abc import ByteStream, Listener, SocketAttribute, TaskGroup, TaskStatus

from .._spawn import start_soon
from ..errors import (
    BAD_REQUEST,
    INTERNAL_ERROR,
    OVERLOADED,
    ConnectionLost,
    ProtocolError,
    SynapseError,
)
from ..transport import TcpTransport, Transport, remote_address
from ..transport._tcp import local_address
from ..wire import DEFAULT_MAX_FRAME_SIZE, MessageError, Request, encode_frame
from ._channel import FrameChannel, ReadTimeout, decode_payload
from ._endpoints import Connection, EndpointRegistry, error_payload
from ._inline import run_inline
from ._session import SESSION_ENDPOINT, Admission, session_answer
from ._watchdog import Watchdog

__all__ = ["RpcServer", "ServerLimits", "ServerStatistics", "Upgrade"]

log = logging.getLogger(__name__)

#: ``async (accepted stream) -> (stream to serve, caller's verified node id or None)``.
Upgrade = Callable[[ByteStream], Awaitable[tuple[ByteStream, str | None]]]


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """Server-side limits; see the module documentation for the behaviour past each one."""

    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
    max_connections: int = 1024
    #: Open connections per caller: per verified node id, or per IP address for plaintext
    #: callers. Past it a new connection gets ``overloaded`` and is closed.
    max_connections_per_peer: int = 128
    max_concurrent_requests: int = 64
    idle_timeout: float = 120.0
    read_timeout: float = 30.0
    write_timeout: float = 30.0

    def __post_init__(self) -> None:
        for name in (
            "max_frame_size",
            "max_connections",
            "max_connections_per_peer",
            "max_concurrent_requests",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("idle_timeout", "read_timeout", "write_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")


@dataclass(frozen=True, slots=True)
class ServerStatistics:
    """A snapshot of server counters."""

    open_connections: int
    accepted_connections: int
    rejected_connections: int
    requests: int
    in_flight: int
    error_responses: int


#: Idle worker tasks kept per connection while requests are in flight (also bounded by
#: ``max_concurrent_requests``), so bursts of pipelined requests start without new tasks; a
#: quiet connection keeps one (its next request is read without starting a task), and none
#: once it has been quiet for a watchdog sweep.
MAX_IDLE_WORKERS = 64
#: After this many requests answered inline in a row, a worker yields to the event loop once.
INLINE_STREAK = 64


class _Turn:
    """How an idle worker is woken: to read (it is then ``_ConnState.reader``) or to end."""

    __slots__ = ("event",)

    def __init__(self) -> None:
        self.event = anyio.Event()


class _ConnState:
    """Per-connection state of the leader/follower workers.

    Exactly one worker reads at a time, and runs each request it reads right away, in its own
    task: a request that completes without waiting (most do) costs no task switch, and the
    reader goes on reading; while more requests are already buffered (pipelined calls), their
    responses wait in the channel's queue and leave together. When a request has to wait,
    reading passes at that moment to an idle worker (or a new one) and this worker carries on
    with the request; afterwards it waits, idle, to read again (at most ``MAX_IDLE_WORKERS``
    wait while requests are in flight, one when the connection is quiet; the others end). A
    connection that stays quiet for a watchdog sweep interval lets its idle worker go too, so
    it holds one task: its reader.

    Workers belong to the server's task group, not to a task group of the connection (whose
    host task would wait idle for the connection's whole life); each runs in its own cancel
    scope, listed here, so the connection can cancel its handlers when the peer goes away.
    The last worker to end closes the connection.
    """

    __slots__ = (
        "admission",
        "cancelled",
        "channel",
        "connection",
        "done",
        "finished",
        "idle",
        "inline",
        "max_idle",
        "peer_key",
        "peer_max_frame",
        "reader",
        "requests",
        "requests_at_sweep",
        "scopes",
        "server",
        "session",
        "tg",
        "workers",
    )

    def __init__(
        self, server: RpcServer, stream: ByteStream, connection: Connection, tg: TaskGroup
    ) -> None:
        limits = server.limits
        self.server = server
        self.connection = connection
        self.tg = tg
        self.channel = FrameChannel(
            stream,
            max_frame_size=limits.max_frame_size,
            read_timeout=limits.read_timeout,
            write_timeout=limits.write_timeout,
            on_broken=self.broken,
            on_timeout=self.timed_out,
            on_sweep=self.swept,
        )
        self.admission = Admission(limits.max_concurrent_requests)
        self.peer_max_frame: int | None = None
        self.session = False  # one of our clients: errors may carry their type
        self.done = False  # reading has ended
        self.cancelled = False  # the peer is gone: handlers are cancelled
        self.finished = False  # closed and counted out
        self.peer_key = ""  # what the per-peer connection quota counts it under
        self.idle: list[_Turn] = []  # the idle workers
        self.reader: _Turn | None = None  # the idle worker handed the reading role last
        self.scopes: list[anyio.CancelScope] = []
        self.workers = 0
        self.requests = 0
        self.requests_at_sweep = 0
        self.max_idle = min(MAX_IDLE_WORKERS, limits.max_concurrent_requests)
        #: The reader is running a request inline and it has not waited yet: its response may
        #: be queued while more requests are already here (they all leave in one write).
        self.inline = False

    def spawn_worker(self) -> None:
        self.workers += 1
        start_soon(self.tg, self.server._worker, self)

    def hand_reading_over(self) -> None:
        """Give the reading role to an idle worker, or to a new one."""
        if self.idle:
            turn = self.idle.pop()
            self.reader = turn
            turn.event.set()
        else:
            self.reader = None
            self.spawn_worker()

    def stop_inline(self) -> None:
        """The request the reader runs inline has to wait: reading passes on."""
        self.inline = False
        self.hand_reading_over()

    def release_idle(self) -> None:
        idle, self.idle = self.idle, []
        for turn in idle:  # not the reader: they end
            turn.event.set()

    def broken(self, exc: BaseException) -> None:
        # The peer is gone or stopped reading: stop reading and cancel its handlers.
        conn = self.connection
        log.debug("connection from %s:%s lost while writing: %s", conn.ip, conn.port, exc)
        self.cancelled = True
        for scope in self.scopes:
            scope.cancel()

    async def timed_out(self, exc: ReadTimeout) -> None:
        if exc.mid_frame:
            await self.server._send_error(
                self.channel,
                "",
                BAD_REQUEST,
                f"timed out after {self.server.limits.read_timeout:g} s waiting for the rest "
                "of a frame",
            )
        else:
            log.debug(
                "closing idle connection from %s:%s", self.connection.ip, self.connection.port
            )

    def swept(self) -> None:
        """Called by the watchdog every sweep: a quiet connection keeps no idle worker."""
        if self.requests == self.requests_at_sweep and not self.admission.in_flight:
            self.release_idle()
        self.requests_at_sweep = self.requests


class RpcServer:
    """Serves an :class:`EndpointRegistry` on one or more listeners."""

    def __init__(
        self,
        registry: EndpointRegistry,
        *,
        limits: ServerLimits | None = None,
        transport: Transport | None = None,
        session_info: Callable[[], Mapping[str, Any]] | None = None,
        upgrade: Upgrade | None = None,
        watchdog: Watchdog | None = None,
    ) -> None:
        self.registry = registry
        #: A watchdog run by someone else (the node's connection pool's) that enforces this
        #: server's timeouts too, while it runs: then the server runs none of its own.
        self.shared_watchdog = watchdog
        #: Runs on each accepted connection before any request is read (the secure channel:
        #: :class:`~synapse_p2p.secure.SecureAcceptor`): returns the stream to serve and the
        #: caller's verified node id, or raises (having closed the stream) to drop it.
        self.upgrade = upgrade
        self.limits = limits or ServerLimits()
        self.transport: Transport = transport or TcpTransport()
        self._session_info = session_info
        self.port = 0
        self.listen_addresses: list[tuple[str, int]] = []
        self._open = 0
        self._accepted = 0
        self._rejected = 0
        self._requests = 0
        self._in_flight = 0
        self._errors = 0
        self._last_accept_error = -math.inf
        self._watchdog: Watchdog | None = None
        self._connections: set[_ConnState] = set()
        self._per_peer: dict[str, int] = {}

    def statistics(self) -> ServerStatistics:
        return ServerStatistics(
            self._open,
            self._accepted,
            self._rejected,
            self._requests,
            self._in_flight,
            self._errors,
        )

    async def bind(self, host: str | None, port: int) -> list[Listener[ByteStream]]:
        """Bind the listening sockets (raises ``OSError`` if the address is taken)."""
        listeners = await self.transport.listen(host, port)
        self.listen_addresses = [_local_address(lst) for lst in listeners]
        self.port = self.listen_addresses[0][1] if self.listen_addresses else port
        return listeners

    async def serve(
        self,
        host: str | None,
        port: int,
        *,
        task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Bind, report the bound port through ``task_status``, then serve until cancelled."""
        listeners = await self.bind(host, port)
        await self.serve_listeners(listeners, task_status=task_status)

    async def serve_listeners(
        self,
        listeners: list[Listener[ByteStream]],
        *,
        task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve already-bound listeners until cancelled (then closes them).

        On cancellation every listener and connection is closed and in-flight handlers are
        cancelled.
        """
        shared = self.shared_watchdog
        watchdog = shared if shared is not None and shared.running else Watchdog()
        try:
            async with anyio.create_task_group() as tg:
                if watchdog is not shared:
                    await tg.start(watchdog.run)
                if self._watchdog is None:
                    self._watchdog = watchdog
                for listener in listeners:
                    start_soon(tg, self._accept_loop, listener, tg, watchdog)
                task_status.started(self.port)
        finally:
            if self._watchdog is watchdog:
                self._watchdog = None
            await self._finish_all(tg)
            with anyio.CancelScope(shield=True), anyio.move_on_after(1):
                for listener in listeners:
                    await listener.aclose()

    async def serve_stream(self, stream: ByteStream) -> None:
        """Serve one already-accepted stream until it closes (for custom transports and
        listeners that drive the server, as the WebSocket one does); past ``max_connections``
        the stream gets an ``overloaded`` error frame and is closed."""
        if self._open >= self.limits.max_connections:
            self._rejected += 1
            await self._reject(stream)
            return
        self._open += 1
        self._accepted += 1
        async with anyio.create_task_group() as tg:
            watchdog = self._watchdog
            if watchdog is None or not watchdog.running:  # not under serve_listeners
                watchdog = Watchdog()
                await tg.start(watchdog.run)
            try:
                async with anyio.create_task_group() as workers:
                    await self._serve_connection(stream, watchdog, workers)
            finally:
                await self._finish_all(workers)
            tg.cancel_scope.cancel()

    async def _accept_loop(
        self, listener: Listener[ByteStream], tg: TaskGroup, watchdog: Watchdog
    ) -> None:
        accept = getattr(listener, "accept", None)
        if accept is None:  # a listener without accept(): let it drive the handler
            await listener.serve(self.serve_stream, tg)
            return
        backoff = 0.01
        while True:
            try:
                stream: ByteStream = await accept()
            except (OSError, anyio.BrokenResourceError) as exc:
                now = anyio.current_time()
                if now - self._last_accept_error > 10:
                    log.warning("accept() failed (%s); retrying", exc)
                    self._last_accept_error = now
                await anyio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)
                continue
            backoff = 0.01
            if self._open >= self.limits.max_connections:
                self._rejected += 1
                await self._reject(stream)
                continue
            self._open += 1
            self._accepted += 1
            start_soon(tg, self._serve_connection, stream, watchdog, tg)

    async def _reject(self, stream: ByteStream, reason: str | None = None) -> None:
        if reason is None:
            reason = f"too many connections (limit {self.limits.max_connections})"
        frame = encode_frame(error_payload("", OVERLOADED, reason))
        try:
            with anyio.move_on_after(0.05):
                try:
                    await stream.send(frame)
                except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
                    pass
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(0.5):
                await stream.aclose()
        now = anyio.current_time()
        if now - self._last_accept_error > 10:
            log.warning("rejecting new connections: %s", reason)
            self._last_accept_error = now

    async def _serve_connection(
        self, stream: ByteStream, watchdog: Watchdog, tg: TaskGroup
    ) -> None:
        """Set the connection up and be its first worker (workers are spawned in ``tg``)."""
        node_id: str | None = None
        if self.upgrade is not None:
            try:
                stream, node_id = await self.upgrade(stream)
            except (SynapseError, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                self._open -= 1  # refused (the upgrade logged why and closed the stream)
                return
            except BaseException:
                self._open -= 1
                raise
        ip, port = remote_address(stream)
        key = node_id if node_id is not None else f"ip:{ip}"
        if self._per_peer.get(key, 0) >= self.limits.max_connections_per_peer:
            self._open -= 1
            self._rejected += 1
            await self._reject(
                stream,
                f"too many connections from this peer "
                f"(limit {self.limits.max_connections_per_peer})",
            )
            return
        try:
            connection = Connection.from_address(ip, port, node_id, local_ip=local_address(stream))
            state = _ConnState(self, stream, connection, tg)
        except BaseException:
            self._open -= 1
            with anyio.CancelScope(shield=True), anyio.move_on_after(1):
                await stream.aclose()
            raise
        state.peer_key = key
        self._per_peer[key] = self._per_peer.get(key, 0) + 1
        self._connections.add(state)
        state.channel.set_idle_deadline(anyio.current_time() + self.limits.idle_timeout)
        watchdog.watch(state.channel)
        state.workers = 1
        await self._worker(state)

    async def _finish_all(self, tg: TaskGroup) -> None:
        """Close the connections whose workers ran in ``tg`` and are all gone: normally none
        are left, but a worker cancelled before it ever ran cannot close its connection."""
        with anyio.CancelScope(shield=True):
            for state in [s for s in self._connections if s.tg is tg]:
                await self._finish(state)

    async def _finish(self, state: _ConnState) -> None:
        """Close the connection and count it out (once)."""
        if state.finished:
            return
        state.finished = True
        self._connections.discard(state)
        self._open -= 1
        left = self._per_peer.get(state.peer_key, 1) - 1
        if left > 0:
            self._per_peer[state.peer_key] = left
        else:
            self._per_peer.pop(state.peer_key, None)
        await state.channel.aclose()

    async def _send_error(
        self, channel: FrameChannel, request_id: str, code: str, message: str
    ) -> None:
        self._errors += 1
        try:
            await channel.send(error_payload(request_id, code, message))
        except ConnectionLost:
            pass

    async def _worker(self, state: _ConnState) -> None:
        """One worker of a connection (see ``_ConnState``)."""
        try:
            with anyio.CancelScope() as scope:
                if state.cancelled:
                    scope.cancel()
                state.scopes.append(scope)
                try:
                    await self._work(state)
                finally:
                    state.scopes.remove(scope)
        finally:
            state.workers -= 1
            if not state.workers:
                await self._finish(state)

    async def _work(self, state: _ConnState) -> None:
        turn: _Turn | None = None
        streak = 0  # requests run inline in a row without a schedule point
        while not state.done:
            if streak >= INLINE_STREAK:
                # Buffered requests can be read and answered without waiting (the asyncio
                # streams do not yield when data is at hand): let other tasks run now and then,
                # so one flooding connection cannot hold the event loop.
                streak = 0
                await anyio.lowlevel.checkpoint()
            request = await self._next_request(state)
            if request is None:  # end of stream or unusable stream: stop every worker
                state.done = True
                state.release_idle()
                try:
                    await state.channel.flush()  # responses queued by this reader
                except ConnectionLost:
                    pass
                return
            # Run it right here; only if it has to wait does reading pass to another worker
            # (then this one carries on with the request).
            state.inline = True
            try:
                suspended = await run_inline(self._run_request(request, state), state.stop_inline)
            finally:
                state.inline = False
            del request  # an idle worker holds no request
            if not suspended:
                streak += 1
                continue  # still the reader
            streak = 0
            if state.done or len(state.idle) >= (
                state.max_idle if state.admission.in_flight else 1
            ):
                return
            if turn is None:
                turn = _Turn()
            else:
                turn.event = anyio.Event()
            state.idle.append(turn)
            await turn.event.wait()  # handed reading, released, or reading ended
            if state.reader is not turn:
                return

    async def _next_request(self, state: _ConnState) -> Request | None:
        """Read until a request is admitted (counted in flight); ``None`` when reading ends.

        Bad messages and requests over the concurrency limit are answered on the way.
        """
        channel = state.channel
        while True:
            try:
                payload = await channel.receive_payload()
            except ProtocolError as exc:  # FrameTooLarge, IncompleteFrame
                await self._send_error(channel, "", BAD_REQUEST, str(exc))
                return None
            except ConnectionLost:  # gone, or closed by the watchdog (channel.timed_out)
                return None
            if payload is None:
                return None
            try:
                message = await decode_payload(payload)
            except MessageError as exc:
                await self._send_error(channel, exc.request_id, exc.code, str(exc))
                continue
            except ProtocolError as exc:
                await self._send_error(channel, "", BAD_REQUEST, str(exc))
                continue
            if not isinstance(message, Request):
                await self._send_error(channel, message.id, BAD_REQUEST, "expected request message")
                continue
            self._requests += 1
            state.requests += 1
            refused = state.admission.admit()
            if refused is not None:
                await self._send_error(channel, message.id, OVERLOADED, refused)
                continue
            self._in_flight += 1
            channel.set_idle_deadline(math.inf)
            return message

    async def _run_request(self, request: Request, state: _ConnState) -> None:
        channel = state.channel
        try:
            if request.endpoint == SESSION_ENDPOINT:
                payload = self._session(request, state)
            else:
                payload = await self.registry.dispatch(
                    request, state.connection, error_types=state.session
                )
            limit = state.peer_max_frame
            if limit is None:
                limit = 0xFFFFFFFF
            if len(payload) > limit:
                payload = error_payload(
                    request.id,
                    INTERNAL_ERROR,
                    f"response to {request.endpoint!r} is {len(payload)} bytes, "
                    f"larger than the caller's limit of {limit}",
                )
        finally:
            state.admission.finished()
            self._in_flight -= 1
            if state.admission.in_flight == 0:
                channel.set_idle_deadline(channel.clock() + self.limits.idle_timeout)
        try:
            if state.inline:  # the reader: no schedule point, so no hand-over of reading
                if channel.ready and channel.queue(payload):
                    return  # it goes on with the next request; one write for all
                await channel.send(payload, immediate=True)
            else:
                await channel.send(payload)
        except ConnectionLost:
            pass

    def _session(self, request: Request, state: _ConnState) -> bytes:
        from ..wire import Response, encode_response

        limits = self.limits
        info, peer_max = session_answer(
            request.args[0] if request.args else {},
            max_frame=limits.max_frame_size,
            max_concurrent=limits.max_concurrent_requests,
            idle_timeout=limits.idle_timeout,
            extra=self._session_info() if self._session_info is not None else None,
        )
        if peer_max is not None:
            state.peer_max_frame = peer_max
        state.session = True
        return encode_response(Response(request.id, True, info, None))


def _local_address(listener: Listener[Any]) -> tuple[str, int]:
    addr = listener.extra(SocketAttribute.local_address, None)
    if isinstance(addr, tuple) and len(addr) >= 2:
        return str(addr[0]), int(addr[1])
    return "", 0
