"""The RPC server: accept loop, per-connection reader, request dispatch, limits.

Every connection is served the same way, which covers both kinds of client:

* synapse-p2p 2.5.0 clients send one request per connection and close after the response;
* our clients keep the connection and send many requests concurrently, matched by ``id``, after
  a ``_synapse.session`` handshake that tells them our limits (the reference answers that
  endpoint with ``bad_request``, which is how our client knows to fall back).

Limits (:class:`ServerLimits`) and what happens past them:

* ``max_connections``: a connection over the limit gets an ``overloaded`` error response and is
  closed at once;
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
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio
from anyio.abc import ByteStream, Listener, SocketAttribute, TaskGroup, TaskStatus

from ..errors import BAD_REQUEST, INTERNAL_ERROR, OVERLOADED, ConnectionLost, ProtocolError
from ..transport import TcpTransport, Transport, remote_address
from ..wire import DEFAULT_MAX_FRAME_SIZE, HEADER_SIZE, MessageError, Request, encode_frame
from ._channel import FrameChannel, ReadTimeout, decode_payload
from ._endpoints import Connection, EndpointRegistry, error_payload
from ._session import PROTOCOL_VERSION, SESSION_ENDPOINT

__all__ = ["RpcServer", "ServerLimits", "ServerStatistics"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """Server-side limits; see the module documentation for the behaviour past each one."""

    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
    max_connections: int = 1024
    max_concurrent_requests: int = 64
    idle_timeout: float = 120.0
    read_timeout: float = 30.0
    write_timeout: float = 30.0

    def __post_init__(self) -> None:
        for name in ("max_frame_size", "max_connections", "max_concurrent_requests"):
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


#: Idle worker tasks kept per connection, waiting to take over reading.
MAX_IDLE_WORKERS = 4


class _ConnState:
    """Per-connection state of the leader/follower workers.

    Exactly one worker reads at a time. When it has read a request, it hands reading over to
    an idle worker (or a new one) and runs the request itself, in the same task, so a request
    is handled without waiting for a new task to be scheduled; afterwards it waits, idle, to
    read again (at most ``MAX_IDLE_WORKERS`` wait; the others end).
    """

    __slots__ = ("channel", "connection", "done", "idle", "in_flight", "peer_max_frame", "tg")

    def __init__(self, channel: FrameChannel, connection: Connection, tg: TaskGroup) -> None:
        self.channel = channel
        self.connection = connection
        self.tg = tg
        self.in_flight = 0
        self.peer_max_frame: int | None = None
        self.done = False
        self.idle: deque[anyio.Event] = deque()


class RpcServer:
    """Serves an :class:`EndpointRegistry` on one or more listeners."""

    def __init__(
        self,
        registry: EndpointRegistry,
        *,
        limits: ServerLimits | None = None,
        transport: Transport | None = None,
        session_info: Callable[[], Mapping[str, Any]] | None = None,
    ) -> None:
        self.registry = registry
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
        try:
            async with anyio.create_task_group() as tg:
                for listener in listeners:
                    tg.start_soon(self._accept_loop, listener, tg)
                task_status.started(self.port)
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(1):
                for listener in listeners:
                    await listener.aclose()

    async def serve_stream(self, stream: ByteStream) -> None:
        """Serve one already-accepted stream until it closes (for custom transports)."""
        self._open += 1
        self._accepted += 1
        await self._serve_connection(stream)

    async def _accept_loop(self, listener: Listener[ByteStream], tg: TaskGroup) -> None:
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
            tg.start_soon(self._serve_connection, stream)

    async def _reject(self, stream: ByteStream) -> None:
        frame = encode_frame(
            error_payload(
                "", OVERLOADED, f"too many connections (limit {self.limits.max_connections})"
            )
        )
        with anyio.move_on_after(0.05):
            try:
                await stream.send(frame)
            except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass
        with anyio.CancelScope(shield=True), anyio.move_on_after(0.5):
            await stream.aclose()
        now = anyio.current_time()
        if now - self._last_accept_error > 10:
            log.warning(
                "connection limit reached (%d): rejecting new connections",
                self.limits.max_connections,
            )
            self._last_accept_error = now

    async def _serve_connection(self, stream: ByteStream) -> None:
        limits = self.limits
        ip, port = remote_address(stream)
        connection = Connection.from_address(ip, port)
        scope = anyio.CancelScope()

        def broken(exc: BaseException) -> None:
            # The peer is gone or stopped reading: stop reading and cancel its handlers.
            log.debug("connection from %s:%s lost while writing: %s", ip, port, exc)
            scope.cancel()

        async def timed_out(exc: ReadTimeout) -> None:
            if exc.mid_frame:
                await self._send_error(
                    channel,
                    "",
                    BAD_REQUEST,
                    f"timed out after {limits.read_timeout:g} s waiting for the rest of a frame",
                )
            else:
                log.debug("closing idle connection from %s:%s", ip, port)

        channel = FrameChannel(
            stream,
            max_frame_size=limits.max_frame_size,
            read_timeout=limits.read_timeout,
            write_timeout=limits.write_timeout,
            on_broken=broken,
            on_timeout=timed_out,
        )
        try:
            with scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(channel.watchdog)
                    async with anyio.create_task_group() as workers:
                        state = _ConnState(channel, connection, workers)
                        channel.set_idle_deadline(anyio.current_time() + limits.idle_timeout)
                        workers.start_soon(self._worker, state)
                    tg.cancel_scope.cancel()
        finally:
            self._open -= 1
            await channel.aclose()

    async def _send_error(
        self, channel: FrameChannel, request_id: str, code: str, message: str
    ) -> None:
        self._errors += 1
        try:
            await channel.send(error_payload(request_id, code, message))
        except ConnectionLost:
            pass

    async def _worker(self, state: _ConnState) -> None:
        while not state.done:
            request = await self._next_request(state)
            if request is None:  # end of stream or unusable stream: stop every worker
                state.done = True
                while state.idle:
                    state.idle.popleft().set()
                return
            if state.idle:  # hand reading over
                state.idle.popleft().set()
            else:
                state.tg.start_soon(self._worker, state)
            await self._run_request(request, state)
            if state.done or len(state.idle) >= MAX_IDLE_WORKERS:
                return
            turn = anyio.Event()
            state.idle.append(turn)
            await turn.wait()  # until it is this worker's turn to read, or reading ended

    async def _next_request(self, state: _ConnState) -> Request | None:
        """Read until a request is admitted (counted in flight); ``None`` when reading ends.

        Bad messages and requests over the concurrency limit are answered on the way.
        """
        channel = state.channel
        limits = self.limits
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
            if state.in_flight >= limits.max_concurrent_requests:
                await self._send_error(
                    channel,
                    message.id,
                    OVERLOADED,
                    "too many concurrent requests on this connection "
                    f"(limit {limits.max_concurrent_requests})",
                )
                continue
            state.in_flight += 1
            self._in_flight += 1
            channel.set_idle_deadline(math.inf)
            return message

    async def _run_request(self, request: Request, state: _ConnState) -> None:
        channel = state.channel
        try:
            if request.endpoint == SESSION_ENDPOINT:
                payload = self._session(request, state)
            else:
                payload = await self.registry.dispatch(request, state.connection)
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
            state.in_flight -= 1
            self._in_flight -= 1
            if state.in_flight == 0:
                channel.set_idle_deadline(anyio.current_time() + self.limits.idle_timeout)
        try:
            await channel.send(payload)
        except ConnectionLost:
            pass

    def _session(self, request: Request, state: _ConnState) -> bytes:
        from ..wire import Response, encode_response

        offer = request.args[0] if request.args else {}
        if isinstance(offer, dict):
            peer_max = offer.get("max_frame")
            if isinstance(peer_max, int) and not isinstance(peer_max, bool) and peer_max > 0:
                state.peer_max_frame = max(peer_max, HEADER_SIZE)
        limits = self.limits
        info: dict[str, Any] = {
            "protocol": PROTOCOL_VERSION,
            "max_frame": limits.max_frame_size,
            "max_concurrent": limits.max_concurrent_requests,
            "idle_timeout": limits.idle_timeout,
        }
        if self._session_info is not None:
            info.update(self._session_info())
        return encode_response(Response(request.id, True, info, None))


def _local_address(listener: Listener[Any]) -> tuple[str, int]:
    addr = listener.extra(SocketAttribute.local_address, None)
    if isinstance(addr, tuple) and len(addr) >= 2:
        return str(addr[0]), int(addr[1])
    return "", 0
