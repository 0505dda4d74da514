"""The Node: the composition root that builds a swarm member's services and runs them.

A node is a list of services (:class:`~synapse_p2p._seams.Service`), each built from what it
uses: the frozen :class:`~synapse_p2p._config.NodeConfig`, the :class:`LocalNode` record, the
endpoint registry, a :class:`PeerCaller` over the connection pool and the typed
:class:`~synapse_p2p._hub.EventHub`. :meth:`Node.serve` binds the port, then starts them in
order (the pool, lifecycle handlers, the scheduler, membership, conversations, broadcasts,
mDNS, services added with :meth:`Node.start_service` such as teams and workers, and last the
RPC server) and stops them one by one in reverse. The public methods here are a facade over
those services.
"""

from __future__ import annotations

import functools
import inspect
import ipaddress
import logging
import os
import signal
import ssl
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Protocol, TypeVar, overload

import anyio
from anyio.abc import TaskGroup, TaskStatus

from .._config import NodeConfig, resolve_advertise
from .._hub import EventHub, NodeEvent, Subscription
from .._logging import configure_console_logging
from .._quotas import Quotas
from .._seams import LocalNode, Service
from .._service_group import ServiceGroup, close_service_group, open_service_group
from .._spawn import start_soon
from .._validate import check_str, format_address
from ..conversations import ConversationLog, MemoryConversationLog
from ..conversations._broadcasting import Broadcasts
from ..conversations._broadcasts import BroadcastStatus
from ..conversations._delivery import DeliveryStatistics
from ..conversations._service import Conversations
from ..conversations._tree import TreeStatistics
from ..discovery import MdnsDiscovery, MdnsError, MdnsRecord
from ..identity import Identity
from ..membership import Membership
from ..relay import NodeRelay, ReachabilityState, RelayLimits
from ..rpc import (
    Allow,
    Connection,
    ConnectionPool,
    EndpointMetadata,
    EndpointRegistry,
    PoolStatistics,
    RpcServer,
    ServerLimits,
    ServerStatistics,
)
from ..schedules import Schedule, Scheduler
from ..secure import (
    HandshakeStatistics,
    Keyring,
    SecureAcceptor,
    SecureDialer,
    SecurityPolicy,
)
from ..transport import TcpTransport, Transport, WebSocketListener, WebSocketTransport
from ..transport._websocket import bind_websockets, websocket_routes
from ..types import (
    Broadcast,
    BroadcastReply,
    Capability,
    ConversationEvent,
    NodeKind,
    Peer,
    ServedArtifact,
)
from ..wire import DEFAULT_MAX_FRAME_SIZE
from ._artifacts import build_artifact
from ._builtins import register_builtins
from ._caller import PoolCaller
from ._events import EventBus, EventHandler

__all__ = ["AskHandler", "Node", "NodeStatistics"]

log = logging.getLogger(__name__)

AskHandler = Callable[[str, dict[str, Any]], Awaitable[Any]]
F = TypeVar("F", bound=Callable[..., Awaitable[Any]])
E = TypeVar("E", bound=NodeEvent)


class _Decorator(Protocol):
    def __call__(self, fn: F, /) -> F: ...


def _identity(value: Any) -> Identity:
    if value is None:
        return Identity.generate()
    if isinstance(value, Identity):
        return value
    if isinstance(value, str | os.PathLike):
        return Identity.load_or_create(value)
    raise TypeError(f"identity must be an Identity, a key file path or None, got {value!r}")


def _capabilities(value: Iterable[str | Capability] | None) -> list[Capability]:
    if value is None:
        return []
    if isinstance(value, str | Capability):
        raise TypeError("capabilities must be a list of strings or Capability objects")
    result: list[Capability] = []
    for item in value:
        if isinstance(item, Capability):
            result.append(item)
        elif isinstance(item, str) and item:
            result.append(Capability(name=item))
        else:
            raise TypeError(
                f"capabilities entries must be non-empty strings or Capability, got {item!r}"
            )
    return result


@dataclass(frozen=True, slots=True)
class NodeStatistics:
    """A snapshot of a node's counters (``None`` for the parts that only exist while it
    runs)."""

    peers: int
    conversations: int
    broadcasts: int
    gossip_sent: int
    gossip_received: int
    subscriptions: int
    hub_dropped: int
    lifecycle_dropped: int
    server: ServerStatistics | None
    pool: PoolStatistics | None
    delivery: DeliveryStatistics
    #: The secure channel's accepted connections (``None`` while not running).
    handshakes: HandshakeStatistics | None = None
    #: The broadcast tree conversation events travel on (``None`` without partial views).
    tree: TreeStatistics | None = None


class Node:
    """A swarm member: a name, an RPC server, peers, capabilities, artifacts and events.

    Run it in one of three ways:

    * ``async with Node(...) as node:`` binds the listener and starts every child task;
      ``node.port`` and ``node.address`` are real inside the block; leaving the block stops
      everything, closes every socket and returns promptly;
    * ``node.run()`` blocks until Ctrl+C (trio by default, ``backend="asyncio"`` too);
    * ``await task_group.start(node.serve)`` embeds it in an existing trio or anyio service.

    Constructor arguments are validated at once: a bad value raises ``TypeError`` or
    ``ValueError`` naming the parameter. Keywords beyond the reference's: ``max_connections``,
    ``max_connections_per_peer`` (per verified node id, or per IP address for plaintext
    callers),
    ``max_concurrent_requests`` (per connection), ``idle_timeout``, ``read_timeout``,
    ``call_timeout`` and ``connect_timeout`` (outbound calls to peers), ``max_peers``,
    ``gossip_fanout``, ``partial_views`` (membership over partial views, on by default;
    ``False`` for the full mesh, see ``docs/scale.md``), ``event_tree`` (conversation events
    on a broadcast tree of the active views in swarms of 20 members or more; off by default,
    see ``docs/scale.md``), ``mdns_interfaces``,
    ``conversation_max_conversations`` (past it the least recently active conversation is
    pruned; ``None`` for no cap), ``transport``,
    ``wall_clock`` and ``identity``. The validated settings are :attr:`config` (frozen).

    ``identity``: the node's Ed25519 key, an :class:`~synapse_p2p.Identity` or the path of a
    key file (loaded, or created with mode 0600 if missing, so a restarted node keeps its id);
    ``None`` makes a new key for this run. ``node.node_id`` is the SHA-256 of its public key
    (64 hex characters). A ``node_id=`` that is not that hash makes an *unverified* node
    (:attr:`verifiable` is false): peers cannot check it is who it says; refused with a
    secret.

    ``secret``: the swarm secret (``str`` or ``bytes``), or a list of them (a keyring: the
    first is used to connect, all are accepted, for rotation). ``None`` reads the
    ``SYNAPSE_SECRET`` environment variable (comma-separated). With a secret only nodes holding
    one of the keyring's secrets can connect, plaintext (synapse-p2p 2.5.0) is refused, and
    the built-in endpoints other than ``_synapse.ping`` are members-only.

    ``quotas``: a :class:`~synapse_p2p.Quotas`, what one caller may ask of this node (events
    per second, new conversations, ask handlers at once); past it the caller gets
    ``overloaded``.

    ``websocket``: a ``ws://HOST:PORT/PATH`` URL or a list of them to listen on beside TCP
    (port 0: any; :attr:`websocket_urls` has the bound ones); ``wss://`` needs
    ``websocket_tls``, a server ``ssl.SSLContext``; ``websocket_origins``: web page origins
    allowed to connect (from any other page a browser's request gets HTTP 403). Seeds may be
    ``ws://``/``wss://`` URLs; ``tls_client`` is the context ``wss`` seeds are checked with
    (default: the system's CAs).
    See :mod:`synapse_p2p.transport`.

    ``relay=True`` makes the node a relay for nodes that cannot be dialed (``relay_limits``:
    a :class:`~synapse_p2p.relay.RelayLimits`); ``relays``: relays (``"host:port"``) this
    node keeps a reservation on, to be reachable through them. :attr:`relay` holds both and
    the routes to nodes reached through a relay. See ``docs/relay.md``.
    """

    def __init__(
        self,
        bind: str = "0.0.0.0",
        port: int = 0,
        advertise: str | None = "auto",
        max_upload_size: int = DEFAULT_MAX_FRAME_SIZE,
        node_id: str | None = None,
        name: str = "",
        role: str = "",
        description: str = "",
        capabilities: Iterable[str | Capability] | None = None,
        kind: NodeKind | str = NodeKind.NODE,
        swarm: str | None = None,
        team: str | None = "default",
        seeds: Iterable[str | tuple[str, int]] | None = None,
        mdns: bool = False,
        heartbeat_interval: float | None = 5,
        peer_timeout: float = 20,
        conversation_log: Any = None,
        conversation_max_events: int | None = None,
        conversation_keep_recent: int = 25,
        conversation_retention: float | None = None,
        summarizer: Callable[..., Awaitable[str]] | None = None,
        *,
        max_connections: int = 1024,
        max_connections_per_peer: int = 128,
        max_concurrent_requests: int = 64,
        idle_timeout: float = 300.0,
        read_timeout: float = 30.0,
        call_timeout: float = 30.0,
        connect_timeout: float = 5.0,
        max_peers: int = 1024,
        gossip_fanout: int = 3,
        partial_views: bool = True,
        event_tree: bool = False,
        mdns_interfaces: Iterable[str] | None = None,
        conversation_max_conversations: int | None = 10_000,
        transport: Transport | None = None,
        wall_clock: Callable[[], float] = time.time,
        identity: Identity | str | os.PathLike[str] | None = None,
        secret: str | bytes | Iterable[str | bytes] | None = None,
        quotas: Quotas | None = None,
        websocket: str | Iterable[str] | None = None,
        websocket_tls: ssl.SSLContext | None = None,
        tls_client: ssl.SSLContext | None = None,
        websocket_origins: Iterable[str] = (),
        relay: bool = False,
        relay_limits: RelayLimits | None = None,
        relays: Iterable[str | tuple[str, int]] | None = None,
    ) -> None:
        #: The validated settings (frozen): what every service of the node reads.
        self.config = NodeConfig.build(
            bind=bind,
            port=port,
            advertise=advertise,
            max_upload_size=max_upload_size,
            swarm=swarm,
            team=team,
            seeds=seeds,
            mdns=mdns,
            mdns_interfaces=mdns_interfaces,
            heartbeat_interval=heartbeat_interval,
            peer_timeout=peer_timeout,
            conversation_max_events=conversation_max_events,
            conversation_keep_recent=conversation_keep_recent,
            conversation_retention=conversation_retention,
            conversation_max_conversations=conversation_max_conversations,
            max_connections=max_connections,
            max_connections_per_peer=max_connections_per_peer,
            max_concurrent_requests=max_concurrent_requests,
            idle_timeout=idle_timeout,
            read_timeout=read_timeout,
            call_timeout=call_timeout,
            connect_timeout=connect_timeout,
            max_peers=max_peers,
            gossip_fanout=gossip_fanout,
            partial_views=partial_views,
            event_tree=event_tree,
            wall_clock=wall_clock,
            secret=secret,
            quotas=quotas,
            websocket=websocket,
            websocket_tls=websocket_tls,
            tls_client=tls_client,
            websocket_origins=websocket_origins,
        )
        config = self.config
        try:
            node_kind = NodeKind.from_value(kind)
        except ValueError as exc:
            raise ValueError(f"kind: {exc}") from None
        #: This node's Ed25519 key (:class:`~synapse_p2p.Identity`): loaded or created from a
        #: path, given, or new for this run.
        self.identity: Identity = _identity(identity)
        if node_id is None:
            node_id = self.identity.node_id
        else:
            check_str("node_id", node_id, allow_empty=False, max_length=256)
        #: True when ``node_id`` is the hash of this node's identity key (the default); a
        #: ``node_id=`` of your own makes an *unverified* node.
        self.verifiable = node_id == self.identity.node_id
        if config.secured and not self.verifiable:
            raise ValueError(
                "node_id: a node of a secured swarm (secret set) must use the id of its "
                "identity key; pass identity= instead of node_id="
            )
        self._local = LocalNode(
            node_id,
            name=check_str("name", name, max_length=256),
            role=check_str("role", role),
            description=check_str("description", description),
            kind=node_kind,
            swarm=config.swarm,
            team=config.team,
            capabilities=_capabilities(capabilities),
            address=advertise if advertise not in (None, "auto") else config.bind,
            port=config.port,
            identity=self.identity if self.verifiable else None,
        )
        if conversation_log is None:
            conversation_log = MemoryConversationLog()
        elif not isinstance(conversation_log, ConversationLog):
            raise TypeError(
                "conversation_log must be a MemoryConversationLog, a SqliteConversationLog or "
                "another ConversationLog"
            )
        self.conversation_log: ConversationLog = conversation_log
        if summarizer is not None and not inspect.iscoroutinefunction(summarizer):
            raise TypeError("summarizer must be an async function")
        self._summarizer = summarizer
        self.limits = ServerLimits(
            max_frame_size=config.max_upload_size,
            max_connections=config.max_connections,
            max_connections_per_peer=config.max_connections_per_peer,
            max_concurrent_requests=config.max_concurrent_requests,
            idle_timeout=config.idle_timeout,
            read_timeout=config.read_timeout,
        )
        self.transport: Transport = websocket_routes(
            transport or TcpTransport(), config.websocket_seeds, config.tls_client
        )
        self._websocket: list[WebSocketListener] = []
        self.mdns: MdnsDiscovery | None = None
        self.artifact_directory: dict[str, ServedArtifact] = {}
        self._ask_handler: AskHandler | None = None
        self._server: RpcServer | None = None
        self._acceptor: SecureAcceptor | None = None
        self._context_task_group: ServiceGroup | None = None
        self._extras_group: TaskGroup | None = None
        self._extras: dict[Service, anyio.CancelScope | None] = {}
        self._running = False

        #: The keyring and the downgrade rules; also which node ids were seen verified.
        self._policy = SecurityPolicy(config.keyring)
        #: Relays (:class:`~synapse_p2p.relay.NodeRelay`): serving as one, reservations, and
        #: the transport the node dials with (routes through relays, then ``transport``).
        self.relay = NodeRelay(
            self.identity,
            self._policy,
            self.transport,
            enabled=relay,
            limits=relay_limits,
            relays=relays,
            connect_timeout=config.connect_timeout,
            local=self._local,
        )

        # The services, each built from what it uses.
        self._registry = EndpointRegistry()
        self._events = EventBus()
        self._hub = EventHub(self._events.emit_nowait)
        self._caller = PoolCaller(config.call_timeout)
        self.scheduler = Scheduler(wall_clock=wall_clock)
        register_builtins(self)
        self._membership = Membership(
            config,
            self._local,
            registry=self._registry,
            caller=self._caller,
            hub=self._hub,
            policy=self._policy,
        )
        # routes from members' signed records, dial-backs, automatic relays
        self.relay.attach(self._membership, registry=self._registry, caller=self._caller)
        self._conversations = Conversations(
            config,
            self._local,
            self.conversation_log,
            registry=self._registry,
            members=self._membership,
            caller=self._caller,
            hub=self._hub,
            summarizer=lambda: self._summarizer,
            policy=self._policy,
        )
        self._broadcasts = Broadcasts(
            self._conversations,
            registry=self._registry,
            hub=self._hub,
            ask_handler=lambda: self._ask_handler,
        )

    # -- identity and settings ----------------------------------------------------------------

    @property
    def node_id(self) -> str:
        return self._local.node_id

    @property
    def secured(self) -> bool:
        """Whether this node has a swarm secret (only members connect, no plaintext)."""
        return self.config.secured

    @property
    def keyring(self) -> Keyring:
        """The swarm secrets in use (first primary; empty without a secret). Its ``repr``
        never shows them."""
        return self._policy.keyring

    def set_secret(self, secret: str | bytes | Iterable[str | bytes]) -> None:
        """Replace the keyring of a secured node while it runs, for rotation: new connections
        use the first secret and accept any of them; open connections stay up.

        Rotating a swarm with no failed call: on every node, add the new secret *second*
        (accepted); then, once all have it, put it *first* (used); then remove the old one.
        ``ValueError`` for an empty keyring or a node started without a secret (a node
        cannot switch between secured and open while it runs).
        """
        keyring = Keyring.from_value(secret)
        if not keyring:
            raise ValueError("secret: a secured node's keyring cannot be empty")
        if not self.config.secured:
            raise ValueError(
                "secret: this node was started without a swarm secret; give Node(secret=...) "
                "when creating it"
            )
        self._policy.keyring = keyring

    @property
    def name(self) -> str:
        return self._local.name

    @name.setter
    def name(self, value: str) -> None:
        self._local.name = check_str("name", value, max_length=256)

    @property
    def role(self) -> str:
        return self._local.role

    @role.setter
    def role(self, value: str) -> None:
        self._local.role = check_str("role", value)

    @property
    def description(self) -> str:
        return self._local.description

    @description.setter
    def description(self, value: str) -> None:
        self._local.description = check_str("description", value)

    @property
    def kind(self) -> NodeKind:
        return self._local.kind

    @property
    def capabilities(self) -> list[Capability]:
        """The node's capabilities (a live list: ``node.capability(...)`` appends)."""
        return self._local.capabilities

    @property
    def swarm(self) -> str | None:
        return self._local.swarm

    @property
    def team(self) -> str | None:
        return self._local.team

    @property
    def address(self) -> str:
        """The address published to peers (resolved when the node starts)."""
        return self._local.address

    @property
    def port(self) -> int:
        """The bound port while running (the requested one otherwise)."""
        return self._local.port

    @property
    def bind(self) -> str:
        """The address the listener binds."""
        return self.config.bind

    @property
    def advertise(self) -> str | None:
        """The ``advertise`` setting (``"auto"``, an address, or ``None``)."""
        return self.config.advertise

    @property
    def max_upload_size(self) -> int:
        """The largest frame accepted, in bytes."""
        return self.config.max_upload_size

    @property
    def websocket_urls(self) -> list[str]:
        """The WebSocket URLs the running node serves (bound ports filled in); empty when
        stopped or without ``websocket=``."""
        return [str(listener.url) for listener in self._websocket]

    @property
    def seeds(self) -> list[tuple[str, int]]:
        """The seeds, parsed to ``(host, port)`` pairs (a copy)."""
        return list(self.config.seeds)

    @property
    def mdns_enabled(self) -> bool:
        """Whether mDNS discovery runs."""
        return self.config.mdns

    @property
    def mdns_interfaces(self) -> tuple[str, ...] | None:
        """The interfaces mDNS uses (``None``: all)."""
        return self.config.mdns_interfaces

    @property
    def heartbeat_interval(self) -> float | None:
        """Seconds between membership rounds (``None``: none)."""
        return self.config.heartbeat_interval

    @property
    def peer_timeout(self) -> float:
        """Seconds of silence before a peer is offline."""
        return self.config.peer_timeout

    @property
    def conversation_max_events(self) -> int | None:
        """Events past which a conversation is compacted."""
        return self.config.conversation_max_events

    @property
    def conversation_keep_recent(self) -> int:
        """Events a compaction keeps verbatim."""
        return self.config.conversation_keep_recent

    @property
    def conversation_retention(self) -> float | None:
        """Seconds a quiet conversation is kept."""
        return self.config.conversation_retention

    @property
    def conversation_max_conversations(self) -> int | None:
        """Conversations kept at most."""
        return self.config.conversation_max_conversations

    @property
    def call_timeout(self) -> float:
        """Default timeout of calls to peers, in seconds."""
        return self.config.call_timeout

    @property
    def connect_timeout(self) -> float:
        """Timeout to connect to a peer, in seconds."""
        return self.config.connect_timeout

    @property
    def max_peers(self) -> int:
        """Members kept at most."""
        return self.config.max_peers

    @property
    def gossip_fanout(self) -> int:
        """Gossip partners per round."""
        return self.config.gossip_fanout

    @property
    def wall_clock(self) -> Callable[[], float]:
        """Epoch seconds for timestamps (events, records, retention)."""
        return self.config.wall_clock

    # -- introspection --------------------------------------------------------------------

    def __repr__(self) -> str:
        state = format_address(self.address, self.port) if self._running else "stopped"
        return f"<Node {self.name or self.node_id[:8]!r} {state}>"

    @property
    def running(self) -> bool:
        return self._running

    @property
    def peers(self) -> Mapping[str, Peer]:
        """The verified, alive members by id: a read-only live view, owned by membership."""
        return self._membership.peers

    @property
    def reachability(self) -> ReachabilityState:
        """Whether members can dial this node: ``"public"``, ``"private"`` or ``"unknown"``,
        from their dial-backs of its advertised address (see ``docs/relay.md``)."""
        return self.relay.reachability

    @property
    def endpoint_directory(self) -> dict[str, Callable[..., Awaitable[Any]]]:
        """Endpoint name -> handler (a snapshot)."""
        return self._registry.handlers()

    @property
    def endpoint_metadata(self) -> dict[str, EndpointMetadata]:
        """Endpoint name -> metadata (a snapshot)."""
        return {spec.name: spec.metadata for spec in self._registry}

    @property
    def lifecycle_handlers(self) -> dict[str, list[EventHandler]]:
        return self._events.handlers

    @property
    def pool(self) -> ConnectionPool:
        """The connection pool for calls to peers (only while running)."""
        return self._caller.require_pool()

    def node_info(self) -> dict[str, Any]:
        """What ``_synapse.info`` answers."""
        return self._local.info()

    def self_peer(self) -> Peer:
        """This node's peer record, stamped now."""
        return self._local.record(self.config.wall_clock())

    def statistics(self) -> NodeStatistics:
        """A snapshot of the node's counters."""
        server = self._server
        pool = self._caller.pool
        return NodeStatistics(
            peers=len(self.peers),
            conversations=len(self.conversation_log.conversations()),
            broadcasts=len(self._conversations.book),
            gossip_sent=self._membership.messages_sent,
            gossip_received=self._membership.messages_received,
            subscriptions=self._hub.subscriptions,
            hub_dropped=self._hub.dropped,
            lifecycle_dropped=self._events.dropped,
            server=server.statistics() if server is not None else None,
            pool=pool.statistics() if pool is not None else None,
            delivery=self._conversations.delivery.statistics(),
            handshakes=self._acceptor.statistics() if self._acceptor is not None else None,
            tree=None if self._membership.views is None else self._conversations.tree.statistics(),
        )

    def subscribe(self, *event_types: type[E], buffer: int = 4096) -> Subscription:
        """Typed events of this node, in order, for a consumer task of your own.

        ``event_types`` are classes from :mod:`synapse_p2p.events` (``PeerJoined``,
        ``EventStored``, ...). Use it as a context manager and iterate it::

            with node.subscribe(PeerJoined, PeerOffline) as events:
                async for event in events:
                    ...

        Unlike ``@node.on`` handlers, which run concurrently, a subscription delivers in
        publication order to one reader. Its buffer is bounded: a reader that falls
        ``buffer`` events behind loses the newer ones, and each loss is counted and logged
        at ERROR.
        """
        return self._hub.subscribe(*event_types, buffer=buffer, owner=f"subscriber of {self!r}")

    # -- registration ---------------------------------------------------------------------

    @overload
    def endpoint(
        self, name: F, *, publish: bool = True, description: str = "", allow: Allow = "anyone"
    ) -> F: ...

    @overload
    def endpoint(
        self,
        name: str | None = None,
        *,
        publish: bool = True,
        description: str = "",
        allow: Allow = "anyone",
    ) -> _Decorator: ...

    def endpoint(
        self,
        name: str | Callable[..., Awaitable[Any]] | None = None,
        *,
        publish: bool = True,
        description: str = "",
        allow: Allow = "anyone",
    ) -> Any:
        """Register an async function as an RPC endpoint (usable before or while running).

        ``@node.endpoint``, ``@node.endpoint()`` and ``@node.endpoint("sum", description=...)``
        all work. The name defaults to the function's name, the description to its
        docstring. Parameters named ``rpc`` and ``connection`` are injected
        (``connection.node_id`` is the caller's verified node id, ``None`` over plaintext).
        Registering a name again replaces the handler (built-ins included).

        ``allow``: who may call it: ``"anyone"`` (the default), ``"members"`` (a caller that
        proved its node id in the secure handshake; in a swarm with a secret, only holders of
        the secret can), a collection of node ids, or a callable taking the caller's verified
        node id (or ``None``) and returning whether to allow. Others get a ``forbidden``
        error and the endpoint does not run.
        """
        if callable(name):
            self._registry.add(
                name, None, publish=publish, description=description or None, allow=allow
            )
            return name

        def decorator(fn: F) -> F:
            self._registry.add(
                fn, name, publish=publish, description=description or None, allow=allow
            )
            return fn

        return decorator

    def ask(self, fn: AskHandler) -> AskHandler:
        """Register the node's ask handler: ``async (task: str, context: dict) -> Any``.

        ``TypeError`` at once if ``fn`` is not an async function or cannot be called with
        ``(task, context)`` (instead of every ask failing remotely later).
        """
        if not inspect.iscoroutinefunction(fn):
            raise TypeError("ask handler must be an async function")
        try:
            inspect.signature(fn).bind("task", {})
        except TypeError as exc:
            name = getattr(fn, "__qualname__", repr(fn))
            raise TypeError(
                f"ask handler {name} must accept (task, context), e.g. "
                f"'async def {getattr(fn, '__name__', 'handle')}(task: str, context: dict)': {exc}"
            ) from None
        except ValueError:  # no signature to inspect (a builtin): let it be
            pass
        self._ask_handler = fn
        return fn

    def periodic(
        self,
        schedule: Schedule | float,
        *,
        name: str | None = None,
        first_run: Literal["now", "after_interval"] = "after_interval",
    ) -> Callable[[F], F]:
        """Run an async function on a schedule, as a supervised child of the node.

        ``schedule`` is ``every(...)``, ``cron(...)``, ``solar(...)`` or a number of seconds.
        Cron and solar jobs never run at start-up; an interval job first runs one interval
        after the node starts (``first_run="now"`` runs it at start-up too). Missed
        occurrences are coalesced into one run, runs of one job never overlap (an occurrence
        that comes during a run is skipped), and an exception is logged and the schedule goes
        on. See :mod:`synapse_p2p.schedules`; per-job counters are in
        ``node.scheduler.statistics()``.
        """

        def decorator(fn: F) -> F:
            self.scheduler.add(fn, schedule, name=name, first_run=first_run)
            return fn

        return decorator

    def on(self, event: str) -> Callable[[EventHandler], EventHandler]:
        """Register an async lifecycle handler for ``event`` (several per event allowed)."""

        def decorator(fn: EventHandler) -> EventHandler:
            return self._events.on(event, fn)

        return decorator

    def summarizer(self, fn: Callable[..., Awaitable[str]]) -> Callable[..., Awaitable[str]]:
        """Replace the conversation summarizer: ``async (events) -> str``."""
        if not inspect.iscoroutinefunction(fn):
            raise TypeError("summarizer must be an async function")
        self._summarizer = fn
        return fn

    def capability(
        self,
        name: str,
        *,
        description: str = "",
        input_schema: dict[str, Any] | None = None,
        output_schema: dict[str, Any] | None = None,
    ) -> Capability:
        """Add a capability (shown by ``_node.capabilities`` and in the peer record)."""
        check_str("name", name, allow_empty=False)
        cap = Capability(name, description, dict(input_schema or {}), dict(output_schema or {}))
        self.capabilities.append(cap)
        return cap

    def artifact(
        self,
        name: str,
        content: Any,
        *,
        mime_type: str = "application/json",
        kind: str = "metadata",
        description: str = "",
        encoding: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> ServedArtifact:
        """Publish (or replace) an inline artifact peers can fetch with ``_synapse.artifact.get``.

        ``bytes`` are served base64-encoded, ``str`` as text, anything else as JSON; ``size``
        and ``sha256`` are computed as synapse-p2p 2.5.0 does. Raises ``TypeError`` for content
        that is not JSON-serializable.
        """
        artifact = build_artifact(
            name,
            content,
            mime_type=mime_type,
            kind=kind,
            description=description,
            encoding=encoding,
            metadata=metadata,
        )
        self.artifact_directory[name] = artifact
        return artifact

    # -- ask --------------------------------------------------------------------------------

    async def _run_ask(self, task: Any, context: dict[str, Any]) -> Any:
        return await self._broadcasts.run_ask(task, context)

    async def _deferred_ask(
        self,
        task: Any,
        context: dict[str, Any],
        broadcast: Any,
        connection: Connection | None = None,
    ) -> Any:
        return await self._broadcasts.deferred_ask(task, context, broadcast, connection)

    # -- running ----------------------------------------------------------------------------

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run the node until cancelled; ``task_status.started()`` fires once the port is bound
        and every service has started.

        The port is bound first; then services start in order (connection pool, lifecycle
        handlers, scheduler, membership, conversations, broadcasts, mDNS, those added with
        :meth:`start_service`, and last the RPC server serving the bound port) and stop one by
        one in reverse order. On cancellation every child task is cancelled and every socket
        closed (bounded grace). Raises ``RuntimeError`` if the node
        is already running and ``OSError`` if the port cannot be bound.
        """
        if self._running:
            raise RuntimeError(f"{self!r} is already running")
        self._running = True
        config = self.config
        local = self._local
        try:
            acceptor = SecureAcceptor(
                self.identity,
                self._policy,
                # (a connection idle from its start is closed by the idle timeout, if shorter)
                timeout=min(config.handshake_timeout, config.idle_timeout),
            )
            dialer = SecureDialer(
                self.relay.transport,
                self.identity,
                self._policy,
                handshake_timeout=config.handshake_timeout,
            )
            self._registry.members_only_builtins = config.secured
            pool = ConnectionPool(
                dialer=dialer,
                transport=self.relay.transport,
                max_frame_size=config.max_upload_size,
                connect_timeout=config.connect_timeout,
                # Shorter than the server side's idle timeout, so the caller closes first;
                # long enough that gossip partners keep their connection between rounds.
                idle_timeout=max(1.0, self.limits.idle_timeout * 0.8),
            )
            server = RpcServer(
                self._registry,
                limits=self.limits,
                transport=self.transport,
                session_info=lambda: {"node_id": local.node_id},
                upgrade=self.relay.upgrade(acceptor),
                watchdog=pool.watchdog,  # the pool runs before the server and stops after it
            )
            try:
                listeners = await server.bind(config.bind or None, config.port)
            except OSError as exc:
                where = format_address(config.bind or "*", config.port)
                reason = (exc.strerror or str(exc)).lower()
                raise OSError(exc.errno, f"cannot listen on {where}: {reason}") from None
            async with AsyncExitStack() as stack:
                # Closed last (serving them closes them too; closing twice is harmless).
                stack.push_async_callback(_close_listeners, listeners)
                self._websocket = await bind_websockets(
                    config.websocket,
                    tls=config.websocket_tls,
                    handshake_timeout=config.handshake_timeout,
                    origins=config.websocket_origins,
                )
                stack.push_async_callback(_close_listeners, self._websocket)
                local.port = server.port
                local.address = await resolve_advertise(config.advertise, config.bind)
                # Every service's task runs in this one group (see _Running).
                services = await stack.enter_async_context(anyio.create_task_group())
                await stack.enter_async_context(_Running(services, pool.run, "connection pool"))
                self._caller.pool = pool
                core: list[tuple[Service, str]] = [
                    (self._events, "lifecycle handlers"),
                    (self.scheduler, "scheduler"),
                    (self._membership, "membership"),
                    (self._conversations, "conversations"),
                    (self._broadcasts, "broadcasts"),
                ]
                for core_service, what in core:
                    await stack.enter_async_context(_Running(services, core_service.run, what))
                if config.mdns:
                    # Registration takes a second or two: it runs beside the node rather
                    # than delaying its start.
                    mdns = await stack.enter_async_context(_service_group("mdns"))
                    mdns.start_soon(self._run_mdns)
                self._extras_group = await stack.enter_async_context(_service_group("extras"))
                for service in list(self._extras):
                    self._launch(service)
                # Served last, so it stops first: a stopping node takes no new requests for
                # services that are going away (connections made meanwhile wait in the
                # listen backlog for the few milliseconds the services take to start).
                await stack.enter_async_context(
                    _Running(
                        services,
                        functools.partial(server.serve_listeners, [*listeners, *self._websocket]),
                        "rpc server",
                    )
                )
                await stack.enter_async_context(
                    _Running(
                        services, functools.partial(self.relay.run, server.serve_stream), "relays"
                    )
                )
                self._server = server
                self._acceptor = acceptor
                log.info(
                    "node %s listening on %s (advertised %s)%s",
                    self.name or self.node_id[:8],
                    format_address(config.bind or "*", local.port),
                    format_address(local.address, local.port),
                    ", swarm secret set" if config.secured else "",
                )
                exposed = _exposed(config, local.port)
                if (
                    not config.secured
                    and isinstance(self.transport, TcpTransport | WebSocketTransport)
                    and exposed
                ):
                    log.warning(
                        "node %s listens on %s without a swarm secret: anyone who can reach "
                        "it can join the swarm and call its endpoints; set "
                        "Node(secret=...) or SYNAPSE_SECRET (see SECURITY.md)",
                        self.name or self.node_id[:8],
                        ", ".join(exposed),
                    )
                task_status.started()
                await anyio.sleep_forever()
        finally:
            self._extras_group = None
            for service in self._extras:
                self._extras[service] = None
            self._server = None
            self._acceptor = None
            self._websocket = []
            self._caller.pool = None
            self._running = False
            local.port = config.port

    def start_service(self, service: Service) -> None:
        """Run ``service.run`` as a supervised child of this node: now if the node is running,
        else when it starts; it stops with the node, before the node's own services.

        This is how teams and workers run (``Team(node)``). An exception from the service is
        logged with its traceback and ends that service only. Adding a service twice is a
        no-op; :meth:`stop_service` cancels it.
        """
        if service in self._extras:
            return
        self._extras[service] = None
        if self._extras_group is not None:
            self._launch(service)

    def stop_service(self, service: Service) -> None:
        """Cancel a service added with :meth:`start_service` (no-op if unknown)."""
        scope = self._extras.pop(service, None)
        if scope is not None:
            scope.cancel()

    def _launch(self, service: Service) -> None:
        assert self._extras_group is not None
        scope = anyio.CancelScope()
        self._extras[service] = scope
        self._extras_group.start_soon(self._supervise, service, scope)

    async def _supervise(self, service: Service, scope: anyio.CancelScope) -> None:
        with scope:
            try:
                await service.run()
            except Exception:
                log.exception("service %r of %r failed", service, self)
        if self._extras.get(service) is scope:
            self._extras[service] = None

    async def __aenter__(self) -> Node:
        self._context_task_group = await open_service_group(self.serve)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        tg, self._context_task_group = self._context_task_group, None
        if tg is not None:
            await close_service_group(tg)

    def run(self, *, backend: Literal["trio", "asyncio"] = "trio") -> None:
        """Run the node until Ctrl+C or SIGTERM (blocking, for scripts); then stop cleanly.

        Unless the application configured logging already, the library's records from INFO
        up go to stderr (peers joining, unreachable seeds, failing handlers with their
        tracebacks), as servers such as uvicorn do. If the port cannot be bound, it exits
        with status 1 and one line naming the address.
        """
        if backend not in ("trio", "asyncio"):
            raise ValueError(f"backend must be 'trio' or 'asyncio', got {backend!r}")
        configure_console_logging(logging.INFO)

        async def main() -> None:
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async with self:
                    print(
                        f"synapse-p2p node {self.name or self.node_id[:8]!r} listening on "
                        f"{format_address(self.bind or '*', self.port)} "
                        f"(advertised {format_address(self.address, self.port)}); "
                        "Ctrl+C to stop",
                        file=sys.stderr,
                        flush=True,
                    )
                    async for _ in signals:
                        break

        try:
            anyio.run(main, backend=backend)
        except KeyboardInterrupt:
            pass
        except OSError as exc:
            if exc.strerror and exc.strerror.startswith("cannot listen on"):
                raise SystemExit(f"synapse-p2p: {exc.strerror}") from None
            raise
        except BaseExceptionGroup as group:
            rest = group.split(KeyboardInterrupt)[1]
            if rest is not None:
                raise rest from None

    # -- conversations ----------------------------------------------------------------------

    async def broadcast(self, endpoint: str, *args: Any, **kwargs: Any) -> Broadcast:
        """Call ``endpoint(*args, broadcast=..., **kwargs)`` on every live peer; one shared
        conversation (its id is the nonce).

        Returns as soon as the ``message`` event is stored locally and a call is queued for
        each peer (a slow or dead peer never delays it). Receivers that answer (``synapse.ask``
        handlers) ACK and reply later: see :meth:`replies` and :meth:`iter_replies`.
        """
        self._require_running()
        return await self._broadcasts.broadcast(endpoint, args, kwargs)

    def replies(self, broadcast: Broadcast | str) -> list[BroadcastReply]:
        """A snapshot of the replies received so far from other nodes, in arrival order."""
        return self._broadcasts.replies(broadcast)

    def iter_replies(
        self, broadcast: Broadcast | str, *, timeout: float | None = None, errors: bool = False
    ) -> AsyncIterator[BroadcastReply]:
        """Replies as they arrive (earlier ones first).

        Ends once the broadcast is over (:attr:`BroadcastStatus.over
        <synapse_p2p.conversations.BroadcastStatus.over>`: the broadcast call to every peer has
        returned, a peer that takes the task ACKs, and every peer that ACKed has replied,
        failed (an ``error`` event) or gone offline) and no further ACK came within 0.25 s;
        when ``timeout`` seconds have passed; or on cancellation. With no ACK yet it keeps
        waiting, so give it a ``timeout`` or a cancel scope::

            async for reply in node.iter_replies(b, timeout=30):
                print(reply.peer.name, reply.result)

        Peers whose handler failed answer with an ``error`` event, not a reply: with
        ``errors=True`` they come too, as replies whose ``error`` is the message (and
        ``failed`` is true). Without it, an iteration that ends with failures and no reply
        logs them at WARNING, so they are never silent.
        """
        return self._broadcasts.iter_replies(broadcast, timeout=timeout, errors=errors)

    @property
    def broadcast_replies(self) -> dict[str, list[BroadcastReply]]:
        """Nonce -> replies received (a snapshot; bounded, most recent broadcasts)."""
        book = self._conversations.book
        return {nonce: self._broadcasts.replies(nonce) for nonce in book.nonces()}

    async def reply(self, broadcast: Broadcast, result: Any) -> ConversationEvent:
        """Reply to a broadcast: a ``reply`` event every node stores under one id."""
        self._require_running()
        return await self._broadcasts.reply(broadcast, result)

    async def ack(
        self,
        conversation: Broadcast | str,
        payload: dict[str, Any] | None = None,
        *,
        parent_id: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> ConversationEvent:
        """Emit an ``ack`` event ("I saw this, I'm choosing to help")."""
        self._require_running()
        return await self._broadcasts.ack(
            conversation, payload, parent_id=parent_id, metadata=metadata
        )

    async def emit_conversation_event(
        self,
        conversation: Broadcast | str,
        kind: str,
        payload: dict[str, Any] | None = None,
        *,
        parent_id: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> ConversationEvent:
        """Append an event of your own ``kind`` to a conversation and deliver it to the swarm.

        Returns once the event is stored (durably, with a SQLite log) and queued for every
        peer. Raises ``ValueError`` if the event is too large for peers to accept.
        """
        self._require_running()
        return await self._conversations.emit(
            conversation, kind, payload, parent_id=parent_id, metadata=metadata
        )

    def conversation(self, conversation: Broadcast | str) -> list[ConversationEvent]:
        """The local log of one conversation, ordered by ``(created_at, event_id)``."""
        cid = conversation.nonce if isinstance(conversation, Broadcast) else conversation
        return self.conversation_log.events(cid)

    def conversations(self) -> list[str]:
        """Conversation ids known locally, most recently active first."""
        return self.conversation_log.conversations()

    async def sync_conversation(
        self, peer: Peer, conversation: Broadcast | str, *, since: float = 0.0
    ) -> int:
        """Pull a conversation from ``peer`` (paged); returns the number of new events."""
        self._require_running()
        return await self._conversations.sync(peer, conversation, since=since)

    async def compact_conversation(
        self, conversation: Broadcast | str, *, keep_recent: int | None = None
    ) -> ConversationEvent | None:
        """Fold all but the opening event and the last ``keep_recent`` events into one
        ``summary`` event (made by the summarizer). Returns it, or None if nothing to fold."""
        cid = conversation.nonce if isinstance(conversation, Broadcast) else conversation
        return await self._conversations.compact(cid, keep_recent=keep_recent)

    async def fetch_artifact(self, peer: Peer | tuple[str, int], name: str) -> ServedArtifact:
        """Fetch one of ``peer``'s artifacts (e.g. its ``"agent-card"``)."""
        self._require_running()
        return ServedArtifact.from_dict(await self.call_peer(peer, "_synapse.artifact.get", name))

    async def progress(self, message: str, **data: Any) -> ConversationEvent | None:
        """Say how an ask is going, from inside the ask handler (``@node.ask``) working on it.

        Emits a ``progress`` event (``{"message": ..., **data}``) into the ask's conversation,
        so the asker knows the handler is alive: ``sn ask`` prints it and keeps waiting, and
        ``@node.on("conversation.progress")`` handlers see it. A handler that works for
        minutes should call it now and then::

            @node.ask
            async def handle(task: str, context: dict) -> str:
                await node.progress("reading the diff")
                ...
                await node.progress("running the tests", done=3, total=10)

        Outside a handler run for a broadcast (a direct ``_node.ask`` call has no
        conversation) it does nothing and returns ``None``.
        """
        self._require_running()
        return await self._broadcasts.progress(message, data)

    def broadcast_status(self, broadcast: Broadcast | str) -> BroadcastStatus | None:
        """Where a broadcast stands on this node (who took it, replied, failed, whose call has
        not returned; :attr:`~synapse_p2p.conversations.BroadcastStatus.over`), or ``None``
        if this node knows nothing of it."""
        return self._broadcasts.status(broadcast)

    def broadcast_changes(self, broadcast: Broadcast | str) -> AsyncIterator[BroadcastStatus]:
        """The broadcast's status now, then after every change (no polling); ends if the
        broadcast is forgotten. For example, to wait until it is over::

            async for status in node.broadcast_changes(b):
                if status.over:
                    break
        """
        return self._broadcasts.changes(broadcast)

    def _require_running(self) -> None:
        if not self._running:
            raise RuntimeError("the node is not running")

    # -- mDNS -------------------------------------------------------------------------------

    def _mdns_record(self) -> MdnsRecord:
        local = self._local
        return MdnsRecord(
            node_id=local.node_id,
            address=local.address,
            port=local.port,
            name=local.name,
            kind=local.kind.value,
            swarm=local.swarm,
            team=local.team,
            capabilities=tuple(local.capability_names()),
        )

    async def _run_mdns(self) -> None:
        """Advertise and browse until the node stops; if zeroconf cannot start (no usable
        interface, say), the error is logged and the node runs without mDNS."""
        config = self.config
        discovery = MdnsDiscovery(
            record=self._mdns_record,
            interfaces=None if config.mdns_interfaces is None else list(config.mdns_interfaces),
            swarm=config.swarm,
            team=config.team,
            on_found=self._membership.discovered,
            max_peers=config.max_peers,
        )
        self.mdns = discovery
        try:
            await discovery.run()
        except MdnsError as exc:
            log.error("mDNS disabled: %s", exc)
        finally:
            self.mdns = None

    # -- swarm ----------------------------------------------------------------------------

    async def join(self, *, wait: float = 0) -> None:
        """Join the configured seeds now (the node also does this by itself when it starts).

        With mDNS enabled, first waits ``wait`` seconds for local discoveries. Raises
        :class:`~synapse_p2p.errors.JoinError` if there are seeds and none of them could
        be joined (unreachable, or refused: a different swarm or team).
        """
        self._require_running()
        if self.config.mdns and wait > 0:
            await anyio.sleep(wait)
        await self._membership.join()

    @property
    def membership(self) -> Membership:
        """The membership service (peer table and statistics)."""
        return self._membership

    # -- calling peers ----------------------------------------------------------------------

    async def call_peer(
        self,
        peer: Peer | tuple[str, int],
        endpoint: str,
        *args: Any,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> Any:
        """Call ``endpoint`` on a peer over the node's pooled connections.

        Raises like :meth:`synapse_p2p.Client.call`; ``timeout`` defaults to the node's
        ``call_timeout``.
        """
        if isinstance(peer, Peer):
            host, port = peer.address, peer.port
        elif isinstance(peer, tuple) and len(peer) == 2:
            host, port = peer
        else:
            raise TypeError(f"peer must be a Peer or a (host, port) pair, got {peer!r}")
        return await self._caller.call(host, port, endpoint, list(args), kwargs, timeout=timeout)

    def emit_event(self, event: str, payload: Any) -> None:
        """Queue a lifecycle event for the ``@node.on(event)`` handlers."""
        self._events.emit_nowait(event, payload)


def _exposed(config: NodeConfig, port: int) -> list[str]:
    """The listen addresses of ``config`` (TCP on ``port``, WebSocket URLs) beyond
    loopback: what the no-secret warning names."""
    tcp = [] if _loopback_only(config.bind) else [format_address(config.bind or "*", port)]
    return tcp + [str(url) for url in config.websocket if not _loopback_only(url.host)]


def _loopback_only(bind: str) -> bool:
    """Whether ``bind`` is a loopback address (``""``/``0.0.0.0``/``::`` are every
    interface)."""
    if bind == "localhost":
        return True
    try:
        return ipaddress.ip_address(bind).is_loopback
    except ValueError:
        return False


async def _close_listeners(listeners: list[Any]) -> None:
    with anyio.CancelScope(shield=True), anyio.move_on_after(1):
        for listener in listeners:
            await listener.aclose()


@asynccontextmanager
async def _service_group(what: str) -> AsyncIterator[TaskGroup]:
    """A task group that is cancelled (not awaited to completion) when the block ends."""
    async with anyio.create_task_group() as tg:
        try:
            yield tg
        finally:
            tg.cancel_scope.cancel()


class _Running:
    """``run`` (a service's ``run``, taking ``task_status``) started in ``services`` for the
    block, cancelled when the block ends and awaited: only then, not when the block's caller is
    cancelled (the service's scope is shielded), so an exit stack of these stops services one
    by one in reverse order (a service stopping can still use the ones started before it, e.g.
    to say goodbye). Entering returns what the service passed to ``task_status.started()``.
    The node's services share one task group (a group of its own cost each about 1.5 KiB); one
    that fails after it started cancels the group's block, so the node stops with its error.

    Until it starts, the service is the caller's: an error it raises is raised by ``async
    with`` as is, and a caller cancelled meanwhile cancels it and waits for it to end, even
    if it starts meanwhile (a start that never came used to hold the caller past its
    cancellation, the scope being shielded, and one that came afterwards left the service
    running). The task is started with ``start_soon`` and this object is its task status:
    under trio ``TaskGroup.start`` keeps a wrapper coroutine and two task statuses alive for
    the task's life (with the generator of the context manager this replaces, a service
    costs 2.9 KiB less under trio, 1.2 KiB under asyncio)."""

    __slots__ = (
        *("_began", "_called", "_done", "_ended", "_error", "_run", "_scope", "_services"),
        *("_value", "_what"),
    )

    def __init__(self, services: TaskGroup, run: Callable[..., Awaitable[Any]], what: str) -> None:
        self._services = services
        self._run = run
        self._what = what
        self._scope = anyio.CancelScope(shield=True)
        self._done = anyio.Event()
        self._called = False
        self._began = False
        self._ended = False
        self._value: Any = None
        self._error: BaseException | None = None

    def started(self, value: Any = None) -> None:
        """The service started (the task status it is given)."""
        if self._called:
            raise RuntimeError("called 'started' twice on the same task status")
        self._called = True
        self._value = value
        self._done.set()  # (the start is over; a new event waits for the end)
        self._done = anyio.Event()

    async def _host(self) -> None:
        self._began = True
        if self._scope.cancel_called:  # (stopped before it ran: see _stop)
            self._ended = True
            self._done.set()
            return
        try:
            with self._scope:
                await self._run(task_status=self)
        except BaseException as exc:
            if self._called:
                raise
            self._error = exc  # (before the start: raised by __aenter__, in the caller)
        finally:
            self._ended = True
            self._done.set()

    async def __aenter__(self) -> Any:
        waiting = self._done
        start_soon(self._services, self._host, name=self._what)
        try:
            await waiting.wait()
        except BaseException:  # the caller is cancelled: so is the start
            await self._stop()
            error, self._error = self._error, None
            if error is not None and not isinstance(error, anyio.get_cancelled_exc_class()):
                log.error("the %s failed as its start was cancelled", self._what, exc_info=error)
            raise
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        if not self._called:
            raise RuntimeError(f"the {self._what} ended without calling task_status.started()")
        return self._value

    async def __aexit__(self, *exc_info: object) -> None:
        await self._stop()

    async def _stop(self) -> None:
        self._scope.cancel()
        if not self._began:  # (its task never ran, or runs later and ends at once)
            return
        with anyio.CancelScope(shield=True):
            while not self._ended:  # (a start coming meanwhile renews the event)
                await self._done.wait()
