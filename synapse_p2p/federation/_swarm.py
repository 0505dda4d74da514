"""The live swarm as an agent registry, and a client that runs prompts on a peer's ask handler.

::

    async with Node(bind="127.0.0.1", seeds=["127.0.0.1:9999"]) as node:
        registry = SwarmAgentRegistry(node)
        async with anyio.create_task_group() as tg:
            await tg.start(registry.run)  # card fetches run in the background
            federation = AgentFederation(registry=registry)
            print(await federation.run("What is 42 * 1337?", tags=["math"]))
            tg.cancel_scope.cancel()

**Agents.** Every peer in ``node.peers`` (alive, verified members; never the local node) is an
:class:`AgentMetadata`: ``id`` is the peer id, ``endpoint`` its ``"host:port"``,
``last_heartbeat`` its ``last_seen`` (informational), and the rest comes from its agent card,
a JSON artifact (``card=``, default ``"agent-card"``) fetched in the background::

    {"model": "gpt-4o-mini",          # non-empty str; default: default_model
     "tools": ["calculator"],         # str or list of str; default []
     "tags": ["math"],                # str or list of str; default []
     "capabilities": ["code-review"], # str, or list of str or {"name": str}: added to tags
     "capacity": 4,                   # int >= 0 (or an integral number); default 1
     "cost_multiplier": 0.5}          # number >= 0 ("cost" is an alias); default 1.0

Other keys (``name``, ``description``, ...) are ignored, and ``id`` and ``endpoint`` never come
from a card (identity and address come from membership). An invalid field gets its default and
invalid list items are dropped (logged at debug level); lists keep at most 256 names of at most
256 characters. A card that is not a JSON object (or a string holding one) counts as no card.
With ``capabilities_as_tags`` (default) the capabilities a peer advertises to the membership
are added to its tags, so peers without cards can be routed by tag too.

**Health.** An agent is listed exactly while membership says its peer is alive: a peer that
goes offline (silent for ``peer_timeout``) disappears from ``list``/``get``/``discover`` at
once (``is_healthy`` turns False, ``run(agent_id=...)`` raises :class:`UnknownAgentError`) and
comes back, its card fetched again, when it rejoins. Listed agents are healthy, so
``healthy_only`` changes nothing; ``stale_timeout`` is the node's ``peer_timeout``, for
information. ``discover`` never blocks: it reads ``node.peers`` and the cached cards.

**Local changes** stay in this registry (nothing is sent to the swarm): :meth:`register` sets
an override, :meth:`unregister` hides a peer, :meth:`reset` undoes both; :meth:`heartbeat` has
no effect (liveness belongs to membership) and :meth:`prune_stale` removes nothing.

**Clients.** :meth:`client_for` gives :class:`AgentFederation` a :class:`NodeAgentClient` per
listed peer, so ``AgentFederation(registry=SwarmAgentRegistry(node))`` routes prompts across
the swarm with no extra server; clients attached to the federation by id or endpoint win.
"""

from __future__ import annotations

import builtins
import logging
import threading
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from .._hub import PeerJoined, PeerLeft, PeerOffline, Subscription
from .._validate import format_address
from ..errors import BAD_REQUEST, ConnectError, ProtocolError, RemoteError, UnknownAgentError
from ..types import Peer
from ._cards import AgentCard, valid_name
from ._metadata import AgentMetadata, Filters, Labels, check_time, check_timeout

if TYPE_CHECKING:
    from ..node import Node

__all__ = ["AgentCard", "NodeAgentClient", "SwarmAgentRegistry"]

logger = logging.getLogger(__name__)


def _seconds(value: object, name: str) -> float:
    seconds = check_timeout(value, name)
    if seconds <= 0:
        raise ValueError(f"{name} must be positive, not {seconds}.")
    return seconds


class NodeAgentClient:
    """An :class:`AgentClient` that runs prompts on a peer's ask handler (``@node.ask``).

    ``run(prompt, **kwargs)`` calls the peer's ``_node.ask`` through ``node.call_peer`` with
    ``task=prompt, context=kwargs``: each keyword argument that :meth:`AgentFederation.run`
    passes on becomes a context key (``run("q", user="ann")`` gives the handler
    ``("q", {"user": "ann"})``); values must be msgpack-serializable. ``peer`` is a
    :class:`Peer` or a peer id, looked up in ``node.peers`` at each call (a given ``Peer`` is
    used as is once gone). ``timeout`` bounds each call (default: the node's
    ``call_timeout``); a federation ``timeout`` applies too, and the shorter one wins.

    Errors propagate unchanged, for the federation's failover: :class:`RemoteError` (the
    handler raised: ``internal_error``; no handler or a bad request), :class:`CallTimeout`,
    :class:`ConnectError` (also raised, before any I/O, for a peer id that is not a live
    member), :class:`ConnectionLost` (all in :mod:`synapse_p2p.errors`), and
    :class:`RuntimeError` if the node is not running. The call carries a *lease* of the same
    length as its timeout: a peer of this package cancels its handler when the lease ends, so
    a timed-out call does not keep running there (a synapse-p2p 2.5.0 peer gets no lease and
    runs on). A federation ``timeout`` shorter than the client's cancels only the waiting:
    give the client the timeout you mean, and the peer holds no more calls than you count.
    """

    def __init__(self, node: Node, peer: Peer | str, *, timeout: float | None = None) -> None:
        if not isinstance(peer, Peer | str) or not peer:
            raise TypeError("peer must be a Peer or a non-empty peer id.")
        self._peer: Peer | None = peer if isinstance(peer, Peer) else None
        self.peer_id: str = peer.id if isinstance(peer, Peer) else peer
        self.node = node
        self.timeout = None if timeout is None else _seconds(timeout, "timeout")

    async def run(self, prompt: str, **kwargs: Any) -> Any:
        """What the peer's ask handler returns for ``prompt`` (see the class docs)."""
        peer = self.node.peers.get(self.peer_id, self._peer)
        if peer is None:
            raise ConnectError(f"peer {self.peer_id} is not a live member of the swarm")
        timeout = self.node.call_timeout if self.timeout is None else self.timeout
        lease: dict[str, float] = {}
        if not self.node.membership.is_legacy(peer.id):
            lease["lease"] = timeout  # the peer cancels the handler when we stop waiting
        return await self.node.call_peer(
            peer, "_node.ask", task=prompt, context=dict(kwargs), timeout=timeout, **lease
        )

    def __repr__(self) -> str:
        return f"NodeAgentClient({self.peer_id[:12]!r})"


_Template = tuple[tuple[Any, ...], AgentMetadata, frozenset[str], frozenset[str]]


class SwarmAgentRegistry:
    """An :class:`AgentRegistryBackend` fed by the node's live membership (see module docs).

    Run :meth:`run` beside the node (``await tg.start(registry.run)``): it fetches cards, at
    most ``max_concurrent_fetches`` at once and each within ``fetch_timeout``, when a peer
    joins and every ``refresh`` seconds. Until a peer's card is in, it is listed with default
    fields (not at all with ``require_card``). ``call_timeout`` is the timeout of the clients
    from :meth:`client_for`. The sync methods never do I/O (``blocking = False``) and are
    thread-safe. It has no ``revision``, so the federation discovers afresh for every routing
    decision and membership changes apply at once. ``ValueError``/``TypeError`` name a bad
    constructor argument.
    """

    blocking = False

    def __init__(
        self,
        node: Node,
        *,
        default_model: str = "unknown",
        card: str = "agent-card",
        refresh: float = 30.0,
        require_card: bool = False,
        capabilities_as_tags: bool = True,
        fetch_timeout: float = 10.0,
        max_concurrent_fetches: int = 8,
        call_timeout: float | None = None,
    ) -> None:
        for name, text in (("default_model", default_model), ("card", card)):
            if not valid_name(text):
                raise TypeError(f"{name} must be a non-empty string of at most 256 characters.")
        count = max_concurrent_fetches
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError("max_concurrent_fetches must be a positive int.")
        self.node = node
        self.default_model, self.card, self.max_concurrent_fetches = default_model, card, count
        self.refresh_interval = _seconds(refresh, "refresh")
        self.fetch_timeout = _seconds(fetch_timeout, "fetch_timeout")
        self.call_timeout = None if call_timeout is None else _seconds(call_timeout, "call_timeout")
        self.require_card = bool(require_card)
        self.capabilities_as_tags = bool(capabilities_as_tags)
        #: The node's ``peer_timeout`` (informational: health comes from membership).
        self.stale_timeout: float = node.peer_timeout
        self._lock = threading.Lock()
        self._cards: dict[str, AgentCard | None] = {}  # absent: not fetched yet
        self._card_seq: dict[str, int] = {}
        self._seq = 0
        self._overrides: dict[str, AgentMetadata] = {}
        self._hidden: set[str] = set()
        self._templates: dict[str, _Template] = {}
        self._clients: dict[str, NodeAgentClient] = {}
        self._pending: dict[str, None] = {}  # peers whose card to fetch (bounded by the peers)
        self._wake: anyio.Event | None = None
        self._limiter: anyio.Semaphore | None = None  # shared by every fetch
        self._running = False

    # -- the registry protocol ------------------------------------------------------------

    def now(self) -> float:
        """The node's wall clock (Unix seconds)."""
        return float(self.node.wall_clock())

    def register(self, agent: AgentMetadata) -> AgentMetadata:
        """Use ``agent``'s model, tools, tags, capacity, cost (and endpoint, when set) for the
        peer ``agent.id`` instead of its card's, and un-hide it; kept until :meth:`reset`,
        applied while that peer is alive. Returns the agent as listed (the stored copy while
        the peer is not alive); invalid metadata raises ``TypeError``/``ValueError``."""
        if not isinstance(agent, AgentMetadata):
            raise TypeError(f"agent must be an AgentMetadata, not {type(agent).__name__}.")
        stored = agent.validated()
        with self._lock:
            self._overrides[stored.id] = stored
            self._hidden.discard(stored.id)
            self._templates.pop(stored.id, None)
        return self.get(stored.id) or stored.copy()

    def unregister(self, agent_id: str) -> bool:
        """Hide the peer (alive now or later) until :meth:`register` or :meth:`reset`; True if
        it was listed."""
        listed = self.get(agent_id) is not None
        with self._lock:
            self._hidden.add(agent_id)
        return listed

    def reset(self, agent_id: str) -> None:
        """Forget the override and the hiding of ``agent_id``."""
        with self._lock:
            self._overrides.pop(agent_id, None)
            self._hidden.discard(agent_id)
            self._templates.pop(agent_id, None)

    def get(self, agent_id: str) -> AgentMetadata | None:
        """A copy of the agent for a listed peer, or ``None``."""
        peer = self.node.peers.get(agent_id)
        if peer is None:
            return None
        with self._lock:
            template = self._template(peer)
        return None if template is None else _copy(template[1], peer)

    def list(self) -> builtins.list[AgentMetadata]:
        """Copies of every listed agent, in membership (join) order."""
        return [_copy(t[1], peer) for peer, t in self._listed()]

    def heartbeat(self, agent_id: str, timestamp: float | None = None) -> AgentMetadata:
        """No effect (liveness comes from membership); returns the listed agent. Raises
        :class:`UnknownAgentError` if it is not listed, ``ValueError``/``TypeError`` for a
        timestamp that is not a finite number."""
        if timestamp is not None:
            check_time(timestamp)
        agent = self.get(agent_id)
        if agent is None:
            raise UnknownAgentError(agent_id)
        return agent

    def is_healthy(self, agent_id: str) -> bool:
        """True while the agent is listed (its peer alive in membership)."""
        return self.get(agent_id) is not None

    def discover(
        self,
        *,
        tools: Labels = None,
        tags: Labels = None,
        min_capacity: int | None = None,
        healthy_only: bool = True,
    ) -> builtins.list[AgentMetadata]:
        """Copies of the listed agents with every tool in ``tools``, every tag in ``tags`` and
        ``capacity >= min_capacity``, filtered as by :class:`InMemoryAgentRegistry`."""
        filters = Filters.make(tools, tags, min_capacity, healthy_only)
        return [
            _copy(t[1], peer)
            for peer, t in self._listed()
            if filters.matches_static(t[2], t[3], t[1].capacity)
        ]

    def prune_stale(self, *, stale_timeout: float | None = None) -> builtins.list[str]:
        """Returns ``[]`` (offline peers leave at once); drops what is cached for them."""
        if stale_timeout is not None:
            check_timeout(stale_timeout, "stale_timeout")
        self._sweep()
        return []

    def client_for(self, agent: AgentMetadata | str) -> NodeAgentClient | None:
        """The :class:`NodeAgentClient` of a live peer (one per peer), else ``None``.
        :class:`AgentFederation` calls this for agents it has no client for."""
        agent_id = agent.id if isinstance(agent, AgentMetadata) else str(agent)
        if agent_id not in self.node.peers:
            return None
        with self._lock:
            client = self._clients.get(agent_id)
            if client is None:
                client = NodeAgentClient(self.node, agent_id, timeout=self.call_timeout)
                self._clients[agent_id] = client
            return client

    def cards(self) -> dict[str, AgentCard | None]:
        """Peer id -> its parsed card (``None``: it has none), for the peers fetched so far."""
        with self._lock:
            return dict(self._cards)

    # -- card fetches ---------------------------------------------------------------------

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Keep the cards fresh until cancelled; start it with ``await tg.start(registry.run)``.

        ``started()`` fires once the cards of the peers known at the start are in (or failed,
        within ``fetch_timeout``). Then each ``peer.joined`` fetches that peer's card and every
        ``refresh`` seconds all cards are fetched again. A failed fetch is logged at debug
        level and keeps the previous card; a peer that says it has no such artifact has no
        card. Cancellation stops the fetches in flight and ends the subscription to
        membership events. Raises :class:`RuntimeError` if it is already running.
        """
        if self._running:
            raise RuntimeError("SwarmAgentRegistry.run() is already running.")
        self._running = True
        events = self.node.subscribe(PeerJoined, PeerOffline, PeerLeft)
        try:
            self._wake = anyio.Event()
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._take_events, events)
                await self.refresh()
                tg.start_soon(self._dispatch)
                task_status.started()
                while True:
                    await anyio.sleep(self.refresh_interval)
                    self._sweep()
                    for peer_id in builtins.list(self.node.peers):
                        self._request(peer_id)
        finally:
            events.close(discard=True)
            self._wake = None
            self._pending.clear()
            self._running = False

    async def refresh(self) -> None:
        """Fetch the card of every live peer now and wait for them all (they share the
        ``max_concurrent_fetches`` bound with the background fetches). A failed fetch never
        raises; cancellation abandons the fetches in flight."""
        async with anyio.create_task_group() as tg:
            for peer_id in builtins.list(self.node.peers):
                tg.start_soon(self._fetch, peer_id, await self._acquire())

    async def _dispatch(self) -> None:
        async with anyio.create_task_group() as tg:
            while True:
                if not self._pending:
                    self._wake = anyio.Event()
                    await self._wake.wait()
                    continue
                peer_id = next(iter(self._pending))
                del self._pending[peer_id]
                tg.start_soon(self._fetch, peer_id, await self._acquire())

    async def _acquire(self) -> anyio.Semaphore:
        if self._limiter is None:  # made here: it needs the running event loop
            self._limiter = anyio.Semaphore(self.max_concurrent_fetches)
        limiter = self._limiter
        await limiter.acquire()
        return limiter

    def _request(self, peer_id: str) -> None:
        if self._wake is not None:
            self._pending[peer_id] = None
            self._wake.set()

    async def _take_events(self, events: Subscription) -> None:
        async for event in events:
            if isinstance(event, PeerJoined):
                self._request(event.peer.id)
            else:
                self._sweep()

    async def _fetch(self, peer_id: str, limiter: anyio.Semaphore) -> None:
        """Fetch and store one card; releases the ``limiter`` slot the caller acquired."""
        try:
            peer = self.node.peers.get(peer_id)
            if peer is None:
                return
            with self._lock:
                self._seq += 1
                seq = self._seq  # the newest fetch started wins, whatever order they end in
            card: AgentCard | None = None
            try:
                with anyio.fail_after(self.fetch_timeout):
                    artifact = await self.node.fetch_artifact(peer, self.card)
                card = AgentCard.parse(artifact.content, source=peer_id)
            except RemoteError as exc:
                if exc.code != BAD_REQUEST:  # bad_request: no such artifact, so no card
                    logger.debug("agent card of %s unavailable: %r", peer_id, exc)
                    return
            except ProtocolError as exc:
                logger.debug("agent card of %s is malformed: %r", peer_id, exc)
            except Exception as exc:  # timeouts, connection errors, node not running
                logger.debug("agent card of %s unavailable: %r", peer_id, exc)
                return
            with self._lock:
                if seq > self._card_seq.get(peer_id, 0) and peer_id in self.node.peers:
                    self._cards[peer_id] = card
                    self._card_seq[peer_id] = seq
                    self._templates.pop(peer_id, None)
        finally:
            limiter.release()

    # -- listing --------------------------------------------------------------------------

    def _listed(self) -> builtins.list[tuple[Peer, _Template]]:
        peers = builtins.list(self.node.peers.values())
        with self._lock:
            found = [(peer, self._template(peer)) for peer in peers]
        return [(peer, template) for peer, template in found if template is not None]

    def _template(self, peer: Peer) -> _Template | None:
        """The cached agent of ``peer`` (lock held), rebuilt when its inputs changed."""
        card, override = self._cards.get(peer.id), self._overrides.get(peer.id)
        if peer.id in self._hidden or (override is None and self.require_card and not card):
            return None
        key = (peer.address, peer.port, tuple(peer.capabilities))
        cached = self._templates.get(peer.id)
        if cached is not None and cached[0] == key:
            return cached
        host = peer.address
        endpoint = format_address(host, peer.port)
        try:
            if override is not None:
                agent = override.copy()
                agent.endpoint = override.endpoint or endpoint
            else:
                card = card or AgentCard()
                extra = [n for n in peer.capabilities if valid_name(n)]
                agent = AgentMetadata(
                    id=peer.id,
                    model=card.model or self.default_model,
                    tools=builtins.list(card.tools),
                    capacity=card.capacity,
                    cost_multiplier=card.cost_multiplier,
                    tags=[*card.tags, *(extra if self.capabilities_as_tags else ())],
                    endpoint=endpoint,
                )
        except (TypeError, ValueError) as exc:
            logger.debug("peer %.80r cannot be listed as an agent: %s", peer.id, exc)
            return None
        template = (key, agent, frozenset(agent.tools), frozenset(agent.tags))
        self._templates[peer.id] = template
        return template

    def _sweep(self) -> None:
        """Forget the cards, templates and clients of peers that are no longer alive."""
        alive = self.node.peers
        with self._lock:
            for table in (self._cards, self._card_seq, self._templates, self._clients):
                for peer_id in [key for key in table if key not in alive]:
                    del table[peer_id]


def _copy(agent: AgentMetadata, peer: Peer) -> AgentMetadata:
    copy = agent.copy()
    copy.last_heartbeat = peer.last_seen
    return copy
