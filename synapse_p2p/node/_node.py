"""The Node: the composition root that owns every child task of a swarm member."""

from __future__ import annotations

import hashlib
import inspect
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from types import TracebackType
from typing import Any, Literal, Protocol, TypeVar, overload

import anyio
from anyio.abc import TaskGroup, TaskStatus

from .._service_group import close_service_group, open_service_group
from ..conversations import ConversationLog, MemoryConversationLog
from ..conversations._service import Conversations
from ..discovery import MdnsDiscovery, MdnsError, MdnsRecord
from ..errors import BAD_REQUEST, INTERNAL_ERROR, RemoteError
from ..membership import Membership
from ..rpc import (
    ConnectionPool,
    EndpointMetadata,
    EndpointRegistry,
    RpcServer,
    ServerLimits,
)
from ..schedules import Schedule, Scheduler
from ..transport import TcpTransport, Transport
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
from . import _config as cfg
from ._artifacts import build_artifact
from ._builtins import register_builtins
from ._events import EventBus, EventHandler

__all__ = ["AskHandler", "Node"]

log = logging.getLogger(__name__)

AskHandler = Callable[[str, dict[str, Any]], Awaitable[Any]]
F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


class _Decorator(Protocol):
    def __call__(self, fn: F, /) -> F: ...


def _new_node_id() -> str:
    return hashlib.sha256(os.urandom(16)).hexdigest()


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
    ``max_concurrent_requests`` (per connection), ``idle_timeout``, ``read_timeout``,
    ``call_timeout`` and ``connect_timeout`` (outbound calls to peers), ``max_peers``,
    ``gossip_fanout``, ``mdns_interfaces``, ``conversation_max_conversations`` (past it the
    least recently active conversation is pruned; ``None`` for no cap), ``transport`` and
    ``wall_clock``.
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
        max_concurrent_requests: int = 64,
        idle_timeout: float = 300.0,
        read_timeout: float = 30.0,
        call_timeout: float = 30.0,
        connect_timeout: float = 5.0,
        max_peers: int = 1024,
        gossip_fanout: int = 3,
        mdns_interfaces: Iterable[str] | None = None,
        conversation_max_conversations: int | None = 10_000,
        transport: Transport | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.bind = cfg.check_str("bind", bind)
        self._requested_port = cfg.check_int("port", port, minimum=0, maximum=65535)
        self.port = self._requested_port
        if advertise is not None:
            cfg.check_str("advertise", advertise)
        self.advertise = advertise
        self.address = advertise if advertise not in (None, "auto") else bind
        self.max_upload_size = cfg.check_int("max_upload_size", max_upload_size, minimum=1)
        if node_id is None:
            node_id = _new_node_id()
        self.node_id = cfg.check_str("node_id", node_id, allow_empty=False, max_length=256)
        self.name = cfg.check_str("name", name, max_length=256)
        self.role = cfg.check_str("role", role)
        self.description = cfg.check_str("description", description)
        self.capabilities = _capabilities(capabilities)
        try:
            self.kind = NodeKind.from_value(kind)
        except ValueError as exc:
            raise ValueError(f"kind: {exc}") from None
        self.swarm = cfg.check_optional_str("swarm", swarm)
        self.team = cfg.check_optional_str("team", team)
        self.seeds = cfg.parse_seeds(seeds)
        self.mdns_enabled = cfg.check_bool("mdns", mdns)
        if isinstance(mdns_interfaces, str):
            raise TypeError("mdns_interfaces must be a list of interface names or addresses")
        self.mdns_interfaces = None if mdns_interfaces is None else list(mdns_interfaces)
        self.mdns: MdnsDiscovery | None = None
        self.heartbeat_interval = cfg.check_optional_seconds(
            "heartbeat_interval", heartbeat_interval
        )
        self.peer_timeout = cfg.check_seconds("peer_timeout", peer_timeout)
        if conversation_log is None:
            conversation_log = MemoryConversationLog()
        elif not isinstance(conversation_log, ConversationLog):
            raise TypeError(
                "conversation_log must be a MemoryConversationLog, a SqliteConversationLog or "
                "another ConversationLog"
            )
        self.conversation_log: ConversationLog = conversation_log
        if conversation_max_events is not None:
            cfg.check_int("conversation_max_events", conversation_max_events, minimum=1)
        self.conversation_max_events = conversation_max_events
        self.conversation_keep_recent = cfg.check_int(
            "conversation_keep_recent", conversation_keep_recent, minimum=0
        )
        if conversation_max_events is not None and (
            self.conversation_keep_recent >= conversation_max_events
        ):
            raise ValueError(
                f"conversation_keep_recent ({self.conversation_keep_recent}) must be less than "
                f"conversation_max_events ({conversation_max_events}), or compaction could "
                "never shrink a conversation"
            )
        if conversation_max_conversations is not None:
            cfg.check_int("conversation_max_conversations", conversation_max_conversations,
                          minimum=1)  # fmt: skip
        self.conversation_max_conversations = conversation_max_conversations
        self.conversation_retention = cfg.check_optional_seconds(
            "conversation_retention", conversation_retention
        )
        if summarizer is not None and not inspect.iscoroutinefunction(summarizer):
            raise TypeError("summarizer must be an async function")
        self._summarizer = summarizer
        self.call_timeout = cfg.check_seconds("call_timeout", call_timeout)
        self.connect_timeout = cfg.check_seconds("connect_timeout", connect_timeout)
        self.limits = ServerLimits(
            max_frame_size=self.max_upload_size,
            max_connections=max_connections,
            max_concurrent_requests=max_concurrent_requests,
            idle_timeout=idle_timeout,
            read_timeout=read_timeout,
        )
        self.transport: Transport = transport or TcpTransport()
        if not callable(wall_clock):
            raise TypeError("wall_clock must be a callable returning epoch seconds")
        #: Epoch seconds for timestamps (events, peer records, retention); tests on virtual
        #: time replace it.
        self.wall_clock = wall_clock
        self.max_peers = cfg.check_int("max_peers", max_peers, minimum=1)
        self.gossip_fanout = cfg.check_int("gossip_fanout", gossip_fanout, minimum=1)

        self.peers: dict[str, Peer] = {}
        self.artifact_directory: dict[str, ServedArtifact] = {}
        self._registry = EndpointRegistry()
        self._events = EventBus()
        self._ask_handler: AskHandler | None = None
        self._server: RpcServer | None = None
        self._pool: ConnectionPool | None = None
        self._task_group: TaskGroup | None = None
        self._context_task_group: TaskGroup | None = None
        self._running = False
        self.scheduler = Scheduler(wall_clock=wall_clock)
        register_builtins(self)
        self._membership = self._new_membership()
        self._conversations = Conversations(self, self.conversation_log)

    def _new_membership(self) -> Membership:
        return Membership(self, fanout=self.gossip_fanout, max_peers=self.max_peers)

    # -- introspection --------------------------------------------------------------------

    def __repr__(self) -> str:
        state = f"{cfg.format_address(self.address, self.port)}" if self._running else "stopped"
        return f"<Node {self.name or self.node_id[:8]!r} {state}>"

    @property
    def running(self) -> bool:
        return self._running

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
        if self._pool is None:
            raise RuntimeError("the node is not running")
        return self._pool

    def node_info(self) -> dict[str, Any]:
        return {
            "id": self.node_id,
            "name": self.name,
            "kind": self.kind.value,
            "address": self.address,
            "port": self.port,
            "swarm": self.swarm,
            "team": self.team,
            "role": self.role,
            "description": self.description,
            "capabilities": [c.name for c in self.capabilities],
        }

    def self_peer(self) -> Peer:
        return Peer(
            id=self.node_id,
            address=self.address,
            port=self.port,
            swarm=self.swarm,
            team=self.team,
            name=self.name,
            kind=self.kind,
            capabilities=[c.name for c in self.capabilities],
            last_seen=self.wall_clock(),
        )

    # -- registration ---------------------------------------------------------------------

    @overload
    def endpoint(self, name: F, *, publish: bool = True, description: str = "") -> F: ...

    @overload
    def endpoint(
        self, name: str | None = None, *, publish: bool = True, description: str = ""
    ) -> _Decorator: ...

    def endpoint(
        self,
        name: str | Callable[..., Awaitable[Any]] | None = None,
        *,
        publish: bool = True,
        description: str = "",
    ) -> Any:
        """Register an async function as an RPC endpoint (usable before or while running).

        ``@node.endpoint``, ``@node.endpoint()`` and ``@node.endpoint("sum", description=...)``
        all work. The name defaults to the function's name, the description to its
        docstring. Parameters named ``rpc`` and ``connection`` are injected. Registering a
        name again replaces the handler (built-ins included).
        """
        if callable(name):
            self._registry.add(name, None, publish=publish, description=description or None)
            return name

        def decorator(fn: F) -> F:
            self._registry.add(fn, name, publish=publish, description=description or None)
            return fn

        return decorator

    def ask(self, fn: AskHandler) -> AskHandler:
        """Register the node's ask handler: ``async (task: str, context: dict) -> Any``."""
        if not inspect.iscoroutinefunction(fn):
            raise TypeError("ask handler must be an async function")
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
        cfg.check_str("name", name, allow_empty=False)
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
        if not isinstance(task, str):
            raise RemoteError(BAD_REQUEST, f"task must be a string, got {type(task).__name__}")
        if self._ask_handler is None:
            raise RemoteError(INTERNAL_ERROR, "node has no ask handler")
        return await self._ask_handler(task, context)

    async def _deferred_ask(self, task: Any, context: dict[str, Any], broadcast: Any) -> Any:
        if not isinstance(task, str):
            raise RemoteError(BAD_REQUEST, f"task must be a string, got {type(task).__name__}")
        if not isinstance(broadcast, Broadcast):
            raise RemoteError(BAD_REQUEST, "broadcast must be a broadcast map")
        return await self._conversations._deferred_ask(task, context, broadcast)

    # -- running ----------------------------------------------------------------------------

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run the node until cancelled; ``task_status.started()`` fires once the port is bound.

        On cancellation every child task is cancelled and every socket closed (bounded grace).
        Raises ``RuntimeError`` if the node is already running and ``OSError`` if the port
        cannot be bound.
        """
        if self._running:
            raise RuntimeError(f"{self!r} is already running")
        self._running = True
        try:
            server = RpcServer(
                self._registry,
                limits=self.limits,
                transport=self.transport,
                session_info=lambda: {"node_id": self.node_id},
            )
            pool = ConnectionPool(
                transport=self.transport,
                max_frame_size=self.max_upload_size,
                connect_timeout=self.connect_timeout,
                # Shorter than the server side's idle timeout, so the caller closes first;
                # long enough that gossip partners keep their connection between rounds.
                idle_timeout=max(1.0, self.limits.idle_timeout * 0.8),
            )
            listeners = await server.bind(self.bind or None, self._requested_port)
            async with anyio.create_task_group() as tg:
                self._task_group = tg
                self.port = await tg.start(server.serve_listeners, listeners)
                self._server = server
                self.address = await cfg.resolve_advertise(self.advertise, self.bind)
                await tg.start(pool.run)
                self._pool = pool
                await tg.start(self._events.run)
                await tg.start(self.scheduler.run)
                self.peers.clear()
                self._membership = self._new_membership()
                await tg.start(self._membership.run)
                await tg.start(self._conversations.run)
                if self.mdns_enabled:
                    tg.start_soon(self._run_mdns)
                log.info(
                    "node %s listening on %s (advertised %s)",
                    self.name or self.node_id[:8],
                    cfg.format_address(self.bind or "*", self.port),
                    cfg.format_address(self.address, self.port),
                )
                task_status.started()
        finally:
            self._task_group = None
            self._server = None
            self._pool = None
            self._running = False
            self.port = self._requested_port

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
        """Run the node until Ctrl+C or SIGTERM (blocking, for scripts); then stop cleanly."""
        if backend not in ("trio", "asyncio"):
            raise ValueError(f"backend must be 'trio' or 'asyncio', got {backend!r}")

        async def main() -> None:
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async with self:
                    print(
                        f"synapse-p2p node {self.name or self.node_id[:8]!r} listening on "
                        f"{cfg.format_address(self.bind or '*', self.port)} "
                        f"(advertised {cfg.format_address(self.address, self.port)}); "
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
        return await self._conversations.broadcast(endpoint, args, kwargs)

    def replies(self, broadcast: Broadcast | str) -> list[BroadcastReply]:
        """A snapshot of the replies received so far from other nodes, in arrival order."""
        return self._conversations.replies(broadcast)

    def iter_replies(
        self, broadcast: Broadcast | str, *, timeout: float | None = None
    ) -> AsyncIterator[BroadcastReply]:
        """Replies as they arrive (earlier ones first).

        Ends once the broadcast call to every peer has returned (a peer that takes the task
        ACKs) and every peer that ACKed has replied, failed (an ``error`` event) or gone
        offline, and no further ACK came within 0.25 s; when ``timeout`` seconds have
        passed; or on cancellation. With no ACK yet it
        keeps waiting, so give it a ``timeout`` or a cancel scope::

            async for reply in node.iter_replies(b, timeout=30):
                print(reply.peer.name, reply.result)
        """
        return self._conversations.iter_replies(broadcast, timeout=timeout)

    @property
    def broadcast_replies(self) -> dict[str, list[BroadcastReply]]:
        """Nonce -> replies received (a snapshot; bounded, most recent broadcasts)."""
        return {
            nonce: list(state.replies) for nonce, state in self._conversations.book._states.items()
        }

    async def reply(self, broadcast: Broadcast, result: Any) -> ConversationEvent:
        """Reply to a broadcast: a ``reply`` event every node stores under one id."""
        self._require_running()
        return await self._conversations.reply(broadcast, result)

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
        return await self._conversations.ack(
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

    def _require_running(self) -> None:
        if not self._running:
            raise RuntimeError("the node is not running")

    # -- mDNS -------------------------------------------------------------------------------

    def _mdns_record(self) -> MdnsRecord:
        return MdnsRecord(
            node_id=self.node_id,
            address=self.address,
            port=self.port,
            name=self.name,
            kind=self.kind.value,
            swarm=self.swarm,
            team=self.team,
            capabilities=tuple(c.name for c in self.capabilities),
        )

    async def _run_mdns(self) -> None:
        """Advertise and browse until the node stops. Registration takes a second or two, so
        it runs beside the node rather than delaying its start; if zeroconf cannot start (no
        usable interface, say), the error is logged and the node runs without mDNS."""
        discovery = MdnsDiscovery(
            record=self._mdns_record,
            interfaces=self.mdns_interfaces,
            swarm=self.swarm,
            team=self.team,
            on_found=self._membership.discovered,
            max_peers=self.max_peers,
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
        :class:`~synapse_p2p.membership.JoinError` if there are seeds and none of them could
        be joined (unreachable, or refused: a different swarm or team).
        """
        if not self._running:
            raise RuntimeError("the node is not running")
        if self.mdns_enabled and wait > 0:
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
        host, port = (peer.address, peer.port) if isinstance(peer, Peer) else peer
        return await self.pool.call(
            host,
            port,
            endpoint,
            list(args),
            kwargs,
            timeout=self.call_timeout if timeout is None else timeout,
        )

    def emit_event(self, event: str, payload: Any) -> None:
        """Queue a lifecycle event for the ``@node.on(event)`` handlers."""
        self._events.emit_nowait(event, payload)
