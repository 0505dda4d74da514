"""The public :class:`Client` and the node's internal connection pool."""

from __future__ import annotations

import logging
import math
import os
import ssl
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

import anyio
from anyio.abc import ByteStream, TaskGroup, TaskStatus

from .._validate import check_int, check_seconds, format_address
from ..errors import CallTimeout, ConnectionLost
from ..identity import Identity
from ..secure import Keyring, SecureDialer, SecurityPolicy
from ..transport import TcpTransport, Transport, WebSocketTransport, WebSocketUrl, is_websocket_url
from ..transport._direct import DirectFirst
from ..wire import DEFAULT_MAX_FRAME_SIZE
from ._aliases import Aliases
from ._channel import Unsent
from ._connection import LegacyServer, MuxConnection, call_once
from ._watchdog import Watchdog

if TYPE_CHECKING:
    from ..types import Peer

__all__ = ["Client", "ConnectionPool", "Dialer", "PlainDialer", "PoolStatistics"]

log = logging.getLogger(__name__)


class Dialer(Protocol):
    """How connections are opened: :class:`PlainDialer`, or
    :class:`~synapse_p2p.secure.SecureDialer` (the secure channel)."""

    async def connect(
        self, host: str, port: int, *, timeout: float, expected_node_id: str | None = None
    ) -> tuple[ByteStream, str | None]:
        """A connected stream and the peer's verified node id (``None``: unverified)."""
        ...


class PlainDialer:
    """Plaintext connections over a transport (the peer is never verified)."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    async def connect(
        self, host: str, port: int, *, timeout: float, expected_node_id: str | None = None
    ) -> tuple[ByteStream, str | None]:
        return await self.transport.connect(host, port, timeout=timeout), None


async def _one_shot(
    dialer: Dialer,
    host: str,
    port: int,
    endpoint: str,
    args: list[Any],
    kwargs: dict[str, Any],
    *,
    timeout: float,
    connect_timeout: float,
    max_frame_size: int,
    on_connect: Callable[[str | None], None] | None = None,
) -> Any:
    target = format_address(host, port)
    stream, node_id = await dialer.connect(host, port, timeout=min(connect_timeout, timeout))
    if on_connect is not None:
        on_connect(node_id)
    try:
        with anyio.fail_after(timeout):
            return await call_once(
                stream, endpoint, args, kwargs, max_frame_size=max_frame_size, target=target
            )
    except TimeoutError:
        raise CallTimeout(
            f"no response to {endpoint!r} from {target} within {timeout:g} s"
        ) from None
    finally:
        with anyio.CancelScope(shield=True), anyio.move_on_after(1):
            await stream.aclose()


def _client_identity(value: Identity | str | os.PathLike[str] | None) -> Identity:
    if value is None:
        return Identity.generate()
    if isinstance(value, Identity):
        return value
    if isinstance(value, str | os.PathLike):
        return Identity.load_or_create(value)
    raise TypeError(f"identity must be an Identity, a key file path or None, got {value!r}")


class Client:
    """Calls endpoints on one node.

    ``await Client(host, port).call("sum", 1, 2)`` makes one call on its own connection (the
    reference's model, understood by every node). ``async with Client(host, port) as client``
    keeps one connection open and multiplexes concurrent calls over it; if the server is a
    synapse-p2p 2.5.0 node (no session support) the client transparently uses one connection
    per call instead, and if the connection drops it reconnects on the next call.

    Connections use the secure channel (Noise XX; XXpsk3 with a swarm secret), signed with
    ``identity`` (a key file path or an :class:`~synapse_p2p.Identity`; a fresh key when
    ``None``). ``secret``: a swarm secret or a list of them (the first is used), or ``None`` to
    read ``SYNAPSE_SECRET``. Without a secret a synapse-p2p 2.5.0 node, which answers in
    plaintext, is called in plaintext; with one, never. :attr:`peer_node_id` is the node id
    the server proved.

    ``address`` may be a ``ws://`` or ``wss://`` URL (a node's ``websocket=`` listener, or
    a reverse proxy in front of it; ``port`` is then ignored): ``Client("wss://example.com/
    synapse")``. ``tls`` is the client TLS context for ``wss`` (default: the system's CAs).

    ``timeout`` bounds each call (connect included), ``connect_timeout`` the connect (the
    TCP connect, and for a URL the TLS and WebSocket handshakes).
    Failures raise :class:`~synapse_p2p.errors.RemoteError` (the node answered with an error),
    :class:`~synapse_p2p.errors.ConnectError`, :class:`~synapse_p2p.errors.HandshakeError`
    (a secret the node does not hold, or plaintext where it is not allowed),
    :class:`~synapse_p2p.errors.ConnectionLost`, :class:`~synapse_p2p.errors.CallTimeout` or
    :class:`~synapse_p2p.errors.ProtocolError`. Cancelling a call abandons it (the node may
    still run it).
    """

    def __init__(
        self,
        address: str = "127.0.0.1",
        port: int = 9999,
        *,
        max_download_size: int = DEFAULT_MAX_FRAME_SIZE,
        timeout: float = 30.0,
        connect_timeout: float = 10.0,
        transport: Transport | None = None,
        secret: str | bytes | Iterable[str | bytes] | Keyring | None = None,
        identity: Identity | str | os.PathLike[str] | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        if not isinstance(address, str) or not address:
            raise TypeError("address must be a non-empty string")
        #: The WebSocket URL called (``None``: plain TCP to ``address:port``).
        self.url: WebSocketUrl | None = None
        if is_websocket_url(address):
            self.url = WebSocketUrl.parse(address)
            address, port = self.url.address
            transport = WebSocketTransport(transport, urls=[self.url], tls=tls)
        elif tls is not None:
            raise ValueError("tls applies to wss:// URLs only")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise ValueError(f"port must be an int in 1..65535, got {port!r}")
        self.address = address.strip("[]") if address.startswith("[") else address
        self.port = port
        self.max_download_size = check_int("max_download_size", max_download_size, minimum=1)
        self.timeout = check_seconds("timeout", timeout, allow_inf=True)
        self.connect_timeout = check_seconds("connect_timeout", connect_timeout, allow_inf=True)
        self.transport: Transport = transport or TcpTransport()
        #: The swarm secrets (``SYNAPSE_SECRET`` when ``secret`` is ``None``).
        self.keyring = Keyring.from_value(secret)
        #: This client's key (a fresh one when ``identity`` is ``None``).
        self.identity = _client_identity(identity)
        self.dialer: Dialer = SecureDialer(
            self.transport, self.identity, SecurityPolicy(self.keyring)
        )
        #: The node id the server proved in the secure handshake of the last connection
        #: (``None`` before the first call, or over plaintext: a 2.5.0 node).
        self.peer_node_id: str | None = None
        self._task_group: TaskGroup | None = None
        self._watchdog: Watchdog | None = None
        self._connection: MuxConnection | None = None
        self._legacy = False
        self._lock: anyio.Lock | None = None

    @classmethod
    def from_peer(cls, peer: Peer, **kwargs: Any) -> Client:
        """A client for ``peer.address:peer.port``."""
        return cls(peer.address, peer.port, **kwargs)

    @property
    def target(self) -> str:
        if self.url is not None:
            return str(self.url)
        return format_address(self.address, self.port)

    async def __aenter__(self) -> Client:
        self._lock = anyio.Lock()
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._task_group = tg
        try:
            self._watchdog = Watchdog()
            await tg.start(self._watchdog.run)
            await self._open_session()
        except BaseException:
            await self._close_task_group()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the persistent connection (no-op for a client used without ``async with``)."""
        if self._connection is not None:
            await self._connection.aclose()
            self._connection = None
        await self._close_task_group()

    async def _close_task_group(self) -> None:
        tg, self._task_group = self._task_group, None
        if tg is not None:
            tg.cancel_scope.cancel()
            await tg.__aexit__(None, None, None)

    async def _open_session(self) -> None:
        assert self._watchdog is not None
        stream, node_id = await self.dialer.connect(
            self.address, self.port, timeout=min(self.connect_timeout, self.timeout)
        )
        self.peer_node_id = node_id
        connection = MuxConnection(
            stream, target=self.target, max_frame_size=self.max_download_size, node_id=node_id
        )
        try:
            await connection.open(self._watchdog)
        except LegacyServer:
            log.debug("%s does not support sessions; using one connection per call", self.target)
            self._legacy = True
            return
        self._connection = connection

    async def call(
        self, endpoint: str, *args: Any, timeout: float | None = None, **kwargs: Any
    ) -> Any:
        """Call ``endpoint(*args, **kwargs)`` on the node and return its result.

        ``timeout`` is this call's timeout in seconds (default: the client's), as with
        ``node.call_peer``; it is not sent to the endpoint. To pass the endpoint a keyword
        argument that is itself named ``timeout``, use :meth:`request`.
        """
        limit = self.timeout if timeout is None else check_seconds("timeout", timeout)
        return await self._call(endpoint, list(args), kwargs, limit)

    async def request(
        self,
        endpoint: str,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> Any:
        """Call ``endpoint`` with ``args`` and ``kwargs`` given as a sequence and a mapping
        (any keyword names, ``timeout`` included); ``timeout`` is the call's own."""
        limit = self.timeout if timeout is None else check_seconds("timeout", timeout)
        return await self._call(endpoint, list(args), dict(kwargs or {}), limit)

    async def _call(
        self, endpoint: str, args: list[Any], kwargs: dict[str, Any], limit: float
    ) -> Any:
        if self._task_group is not None and not self._legacy:
            connection = self._connection
            if connection is None or connection.closed:
                assert self._lock is not None
                async with self._lock:
                    if self._connection is None or self._connection.closed:
                        self._connection = None
                        await self._open_session()
                    connection = self._connection
            if connection is not None:
                return await connection.call(endpoint, args, kwargs, limit)
        return await _one_shot(
            self.dialer,
            self.address,
            self.port,
            endpoint,
            args,
            kwargs,
            timeout=limit,
            connect_timeout=self.connect_timeout,
            max_frame_size=self.max_download_size,
            on_connect=self._proved,
        )

    def _proved(self, node_id: str | None) -> None:
        self.peer_node_id = node_id

    async def peers(self) -> list[Peer]:
        """The node's peer table (``_synapse.peers``) as :class:`~synapse_p2p.Peer` objects."""
        from ..errors import ProtocolError
        from ..types import Peer

        result = await self.call("_synapse.peers")
        if not isinstance(result, list):
            raise ProtocolError("node returned an invalid peer list")
        return [Peer.from_dict(item) for item in result]


@dataclass(frozen=True, slots=True)
class PoolStatistics:
    """A snapshot of the connection pool."""

    open_connections: int
    legacy_targets: int
    connects: int
    calls: int
    #: Calls sent again on a new connection because the pooled one had broken while idle
    #: (nothing of the request had left: see :class:`~._channel.Unsent`).
    stale: int = 0
    #: Connections opened after every call waiting on them had given up (they wait in the
    #: pool for the next call; see :meth:`ConnectionPool.call`).
    opened_late: int = 0


@dataclass(eq=False)
class _Opening:
    """A connection being opened by the pool: its outcome, and how many calls wait on it."""

    done: anyio.Event = field(default_factory=anyio.Event)
    connection: MuxConnection | None = None
    error: Exception | None = None
    waiting: int = 0


#: The shortest sleep of a pool's sweep (seconds): connections due together close together.
MIN_SWEEP = 0.05


class ConnectionPool:
    """Persistent, multiplexed connections to many nodes, for node-to-node traffic.

    One session connection per ``(host, port)``, opened on first use and closed after
    ``idle_timeout`` seconds without calls; targets that turn out to be synapse-p2p 2.5.0 nodes
    are remembered for ``legacy_ttl`` seconds and get one connection per call. Run it with
    ``await task_group.start(pool.run)``; cancelling ``run`` closes every connection.

    :meth:`retain` narrows who keeps a connection that long: once called with a set of
    addresses, connections to every other address close after ``brief_idle_timeout`` seconds
    without calls (a node keeps connections to its active view only).
    """

    def __init__(
        self,
        *,
        transport: Transport | None = None,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        connect_timeout: float = 5.0,
        idle_timeout: float = 60.0,
        max_connections: int = 512,
        legacy_ttl: float = 300.0,
        dialer: Dialer | None = None,
        brief_idle_timeout: float = 5.0,
    ) -> None:
        self.transport: Transport = transport or TcpTransport()
        #: How connections are opened (plaintext over ``transport`` unless given).
        self.dialer: Dialer = dialer or PlainDialer(self.transport)
        self.max_frame_size = max_frame_size
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        self.brief_idle_timeout = min(brief_idle_timeout, idle_timeout)
        self._retained: frozenset[tuple[str, int]] | None = None
        self.max_connections = max_connections
        self.legacy_ttl = legacy_ttl
        self._connections: OrderedDict[tuple[str, int], MuxConnection] = OrderedDict()
        self._legacy: dict[tuple[str, int], float] = {}
        #: Connections being opened, by address: every call to that address waits on the
        #: one opening (see :meth:`_get`).
        self._opening: dict[tuple[str, int], _Opening] = {}
        self.opened_late = 0
        self.aliases = Aliases()
        self._direct = DirectFirst()
        self._task_group: TaskGroup | None = None
        self._resweep: anyio.Event | None = None  # set: the sweep sleeps too long (_sooner)
        self._wake_at = math.inf
        self._watchdog = Watchdog()
        self._connects = 0
        self._calls = 0
        self.stale = 0

    @property
    def watchdog(self) -> Watchdog:
        """The watchdog that enforces this pool's timeouts while :meth:`run` runs (a server
        of the same node may share it: ``RpcServer(watchdog=...)``)."""
        return self._watchdog

    def statistics(self) -> PoolStatistics:
        return PoolStatistics(
            sum(not connection.closed for connection in self._connections.values()),
            len(self._legacy),
            self._connects,
            self._calls,
            self.stale,
            self.opened_late,
        )

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        try:
            async with anyio.create_task_group() as tg:
                await tg.start(self._watchdog.run)
                self._task_group = tg
                task_status.started()
                while True:
                    await self._until_due()
                    self._reap()
        finally:
            self._task_group = None
            self._resweep = None
            for connection in list(self._connections.values()):
                await connection.aclose()
            self._connections.clear()

    def retain(self, addresses: Iterable[tuple[str, int]] | None) -> None:
        """Keep idle connections ``idle_timeout`` seconds only to ``addresses``; connections to
        any other address close after ``brief_idle_timeout`` seconds without calls (the sweep
        wakes when one may be due). ``None`` (the start) keeps every connection
        ``idle_timeout``.
        Calls in flight are never cut: only an idle connection is closed."""
        retained = None if addresses is None else frozenset(addresses)
        if retained != self._retained:
            self._retained = retained
            self._sooner(-math.inf)  # a connection may be due sooner now

    def _due(self, now: float) -> float:
        """When the next connection may be closed (or a legacy mark forgotten). A connection
        used since is due later: the sweep then only finds the next time. One with calls in
        flight is looked at again a quarter of the brief timeout from now at the soonest (a
        long call does not make the sweep spin)."""
        due = now + self.idle_timeout
        retained = self._retained
        for key, connection in self._connections.items():
            if connection.closed:
                return now
            kept = retained is None or key in retained
            idle = self.idle_timeout if kept else self.brief_idle_timeout
            when = connection.last_used + idle
            if connection.in_flight:
                when = max(when, now + self.brief_idle_timeout / 4)
            due = min(due, when)
        for expiry in self._legacy.values():
            due = min(due, expiry)
        return due

    async def _until_due(self) -> None:
        """Sleep until :meth:`_due` (at least :data:`MIN_SWEEP`), or until :meth:`_sooner`
        says a connection may be due before: the pool wakes when there may be something to
        close, not on a period."""
        now = anyio.current_time()
        due = self._due(now)
        self._wake_at = due
        self._resweep = anyio.Event()
        with anyio.move_on_after(max(due - now, MIN_SWEEP)):
            await self._resweep.wait()

    def _closed(self) -> None:
        self._sooner(-math.inf)  # (swept at once: no closed connection stays listed)

    def _sooner(self, due: float) -> None:
        """A connection may be due at ``due``: wake the sweep if it sleeps past that."""
        if self._resweep is not None and due < self._wake_at:
            self._resweep.set()

    def _reap(self) -> None:
        now = anyio.current_time()
        retained = self._retained
        for key, connection in list(self._connections.items()):
            kept = retained is None or key in retained
            idle = self.idle_timeout if kept else self.brief_idle_timeout
            if connection.closed or (
                connection.in_flight == 0 and now - connection.last_used >= idle
            ):
                del self._connections[key]
                self._task_group_close(connection)
        for key, expiry in list(self._legacy.items()):
            if expiry < now:
                del self._legacy[key]

    def _task_group_close(self, connection: MuxConnection) -> None:
        connection.on_closed = None  # (no longer listed: nothing to sweep)
        if self._task_group is not None:
            self._task_group.start_soon(connection.aclose)

    def is_legacy(self, host: str, port: int) -> bool:
        expiry = self._legacy.get((host, port))
        return expiry is not None and expiry >= anyio.current_time()

    async def _get(self, host: str, port: int) -> MuxConnection | None:
        """The open connection to ``host:port``, opened if need be (``None``: a 2.5.0 node
        that speaks one call per connection).

        A connection is opened in the pool's own task, and every call to the address waits
        on that one opening: a caller that gives up (its timeout ran out, it was cancelled)
        leaves it to finish, and the connection joins the pool for the next call. So calls
        with short deadlines (a gossip push, a probe) over a link slower to open than they
        allow still get a connection, and a handshake already half made is never thrown
        away. Each step of an opening is bounded (``connect_timeout``, then the handshakes'
        own timeouts).
        """
        key = (host, port)
        connection = self._connections.get(key)
        if connection is not None and not connection.closed:
            self._connections.move_to_end(key)
            return connection
        if self.is_legacy(host, port):
            return None
        opening = self._opening.get(key)
        if opening is None:
            group = self._task_group
            if group is None or group.cancel_scope.cancel_called:
                raise RuntimeError("ConnectionPool is not running")
            opening = self._opening[key] = _Opening()
            group.start_soon(self._open_for, key, opening)
        opening.waiting += 1
        try:
            await opening.done.wait()
        finally:
            opening.waiting -= 1
        if opening.error is not None:
            raise opening.error.with_traceback(None)
        return opening.connection

    async def _open_for(self, key: tuple[str, int], opening: _Opening) -> None:
        """Open the connection to ``key`` for whoever waits on ``opening`` (see :meth:`_get`)."""
        try:
            opening.connection = await self._open(*key)
        except Exception as exc:
            opening.error = exc
        except BaseException:  # the pool is closing
            opening.error = ConnectionLost(f"connection to {format_address(*key)} not opened: "
                                           "the connection pool closed")  # fmt: skip
            raise
        finally:
            if self._opening.get(key) is opening:
                del self._opening[key]
            if opening.waiting == 0 and opening.connection is not None:
                self.opened_late += 1  # every caller gave up; the connection waits for the next
            opening.done.set()

    async def _open(self, host: str, port: int) -> MuxConnection | None:
        self._evict()
        stream, node_id = await self._dial(host, port)
        self._connects += 1
        connection = MuxConnection(
            stream,
            target=format_address(host, port),
            max_frame_size=self.max_frame_size,
            node_id=node_id,
        )
        try:
            await connection.open(self._watchdog)
        except LegacyServer:
            self._legacy[(host, port)] = anyio.current_time() + self.legacy_ttl
            return None
        self._connections[(host, port)] = connection
        connection.on_closed = self._closed
        self._sooner(connection.last_used + self.brief_idle_timeout)
        return connection

    def alias(self, address: tuple[str, int], via: tuple[str, int], node_id: str) -> None:
        """``node_id``, which advertises ``address``, proved itself at ``via``: when
        ``address`` cannot be connected to, dial ``via`` (expecting ``node_id``) instead.
        See :mod:`._aliases`."""
        self.aliases.add((address[0], int(address[1])), (via[0], int(via[1])), node_id)

    def connected(self, host: str, port: int) -> bool:
        """Whether a connection to ``host:port`` is open now (a call would need no dial)."""
        connection = self._connections.get((host, port))
        return connection is not None and not connection.closed

    def proven_id(self, host: str, port: int) -> str | None:
        """The node id the open connection to ``host:port`` proved (``None``: no connection,
        or plaintext)."""
        connection = self._connections.get((host, port))
        return None if connection is None or connection.closed else connection.node_id

    async def _dial(self, host: str, port: int) -> tuple[ByteStream, str | None]:
        alias = self.aliases.get((host, port))
        if alias is None:
            return await self.dialer.connect(host, port, timeout=self.connect_timeout)
        # the advertised address itself first: a node answering there wins over the alias
        direct = await self._direct.attempt(
            (host, port),
            lambda: self.dialer.connect(host, port, timeout=self.connect_timeout),
        )
        if direct is not None:
            return direct
        via_host, via_port = alias.via
        return await self.dialer.connect(
            via_host, via_port, timeout=self.connect_timeout, expected_node_id=alias.node_id
        )

    def _evict(self) -> None:
        if len(self._connections) < self.max_connections:
            return
        for key, connection in list(self._connections.items()):  # least recently used first
            if connection.in_flight == 0:
                del self._connections[key]
                self._task_group_close(connection)
                if len(self._connections) < self.max_connections:
                    return

    async def call(
        self,
        host: str,
        port: int,
        endpoint: str,
        args: list[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        *,
        timeout: float = 30.0,
    ) -> Any:
        """Call ``endpoint`` on ``host:port`` over a pooled connection.

        Raises like :meth:`Client.call`. ``timeout`` covers connecting and the call; a
        connection still being opened when it runs out goes on opening, for the next call
        (:attr:`PoolStatistics.opened_late`). A pooled
        connection found broken before the request was written whole (its peer went away
        while it sat idle) is replaced, and the call made once more on the new connection
        (counted in ``statistics().stale``).
        """
        self._calls += 1
        args = args or []
        kwargs = kwargs or {}
        key = (host, port)
        connection = self._connections.get(key)
        if connection is not None and not connection.closed:  # the common case: no scope
            self._connections.move_to_end(key)
            start = anyio.current_time()
            try:
                return await connection.call(endpoint, args, kwargs, timeout)
            except Unsent as exc:
                # The pooled connection broke before the request was written whole: its peer
                # went away while it sat idle (a restart, a relay's circuit gone). The peer
                # cannot have read it: once more, on a new connection, in the time left.
                self.stale += 1
                log.debug("pooled connection to %s was stale (%s): calling %r on a new one",
                          format_address(host, port), exc, endpoint)  # fmt: skip
                timeout -= anyio.current_time() - start
        deadline = anyio.current_time() + timeout
        try:
            with anyio.fail_at(deadline):
                connection = await self._get(host, port)
                if connection is None:
                    return await _one_shot(
                        self.dialer,
                        host,
                        port,
                        endpoint,
                        args,
                        kwargs,
                        timeout=math.inf,
                        connect_timeout=self.connect_timeout,
                        max_frame_size=self.max_frame_size,
                    )
        except TimeoutError:
            where = format_address(host, port)
            raise CallTimeout(
                f"no response to {endpoint!r} from {where} within {timeout:g} s"
            ) from None
        # The call itself outside the scope, under its deadline: a cancel scope firing while
        # its frame is being written would break the connection for every call on it.
        left = deadline - anyio.current_time()
        try:
            if left <= 0:  # connecting took it all: the request is not sent
                raise CallTimeout
            return await connection.call(endpoint, args, kwargs, left)
        except CallTimeout:
            where = format_address(host, port)
            raise CallTimeout(
                f"no response to {endpoint!r} from {where} within {timeout:g} s"
            ) from None

    async def session_info(self, host: str, port: int, *, timeout: float = 5.0) -> dict[str, Any]:
        """The session handshake answer of ``host:port`` (``{}`` for a 2.5.0 node)."""
        with anyio.fail_after(timeout):
            connection = await self._get(host, port)
        return dict(connection.server_info) if connection is not None else {}

    async def discard(self, host: str, port: int) -> None:
        """Close the pooled connection to ``host:port``, if any."""
        connection = self._connections.pop((host, port), None)
        if connection is not None:
            await connection.aclose()
