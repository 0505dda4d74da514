"""A node's settings, validated once and frozen; seed parsing and the advertised address.

:class:`NodeConfig` is what every service of a node reads its settings from. ``Node``
builds it from its constructor keywords (a bad value raises ``TypeError``/``ValueError``
naming the parameter) and hands it to each service, so no service needs the ``Node``.
It also holds the one rule of who may be a member: :meth:`NodeConfig.admits`.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

from ._quotas import Quotas
from ._validate import (
    check_bool,
    check_int,
    check_optional_seconds,
    check_optional_str,
    check_seconds,
    check_str,
    check_swarm_name,
    format_address,
)
from .errors import BAD_REQUEST, RemoteError
from .secure._keyring import NO_SECRET, Keyring
from .transport._ws_url import WebSocketUrl, is_websocket_url
from .wire import DEFAULT_MAX_FRAME_SIZE

if TYPE_CHECKING:
    from .types import Peer

__all__ = [
    "DEFAULT_SEED_PORT",
    "NodeConfig",
    "accepts",
    "check_bool",
    "check_int",
    "check_optional_seconds",
    "check_optional_str",
    "check_seconds",
    "check_str",
    "format_address",
    "parse_seed",
    "parse_seeds",
    "resolve_advertise",
    "websocket_seeds",
]

DEFAULT_SEED_PORT = 9999
_WILDCARDS = {"0.0.0.0", "::", "", "*"}


def parse_seed(seed: Any) -> tuple[str, int]:
    """``"host:port"``, ``"host"`` (port 9999), ``(host, port)``, ``"[v6]:port"``, a bare
    IPv6 literal or a ``ws://``/``wss://`` URL (its host and port: the node dials it over
    WebSocket) -> ``(host, port)``; raises ``ValueError`` naming the seed."""
    if is_websocket_url(seed):
        return WebSocketUrl.parse(seed).address
    if isinstance(seed, tuple | list):
        if len(seed) != 2:
            raise ValueError(f"seed {seed!r} must be a (host, port) pair")
        host, port = seed
        if not isinstance(host, str) or not host:
            raise ValueError(f"seed {seed!r}: host must be a non-empty string")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise ValueError(f"seed {seed!r}: port must be an int in 1..65535")
        return host.strip("[]"), port
    if not isinstance(seed, str):
        raise TypeError(f"seed must be a string or a (host, port) tuple, got {type(seed).__name__}")
    text = seed.strip()
    if not text:
        raise ValueError("seed must not be empty")
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not host:
            raise ValueError(f"seed {seed!r}: unterminated IPv6 literal")
        if not rest:
            return host, DEFAULT_SEED_PORT
        if not rest.startswith(":"):
            raise ValueError(f"seed {seed!r}: expected ':port' after ']'")
        port_text = rest[1:]
    elif text.count(":") > 1:  # bare IPv6 literal, no port
        try:
            ipaddress.IPv6Address(text)
        except ValueError:
            raise ValueError(f"seed {seed!r}: write IPv6 with a port as '[addr]:port'") from None
        return text, DEFAULT_SEED_PORT
    elif ":" in text:
        host, _, port_text = text.partition(":")
        if not host:
            raise ValueError(f"seed {seed!r}: missing host")
    else:
        return text, DEFAULT_SEED_PORT
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"seed {seed!r}: port {port_text!r} is not a number") from None
    if not 0 < port < 65536:
        raise ValueError(f"seed {seed!r}: port must be in 1..65535")
    return host, port


def websocket_seeds(seeds: Iterable[Any] | None) -> tuple[WebSocketUrl, ...]:
    """The seeds given as ``ws://``/``wss://`` URLs, parsed."""
    if seeds is None or isinstance(seeds, tuple):
        return ()
    if isinstance(seeds, str):
        seeds = [seeds]
    return tuple(WebSocketUrl.parse(seed) for seed in seeds if is_websocket_url(seed))


def _origins(value: Any) -> tuple[str, ...]:
    """``websocket_origins``: a list of origins as browsers send them (``https://host:port``)."""
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise TypeError("websocket_origins must be a list of origins (scheme://host[:port])")
    origins = tuple(value)
    for origin in origins:
        if not isinstance(origin, str) or "://" not in origin or origin.endswith("/"):
            raise ValueError(
                f"websocket_origins: {origin!r} is not an origin (scheme://host[:port])"
            )
    return origins


def _websocket_listen(value: Any) -> tuple[WebSocketUrl, ...]:
    if value is None:
        return ()
    if isinstance(value, str | WebSocketUrl):
        value = [value]
    try:
        items = list(value)
    except TypeError:
        raise TypeError("websocket must be a ws:// or wss:// URL, a list of them or None") from None
    try:
        return tuple(
            item if isinstance(item, WebSocketUrl) else WebSocketUrl.parse(item, listen=True)
            for item in items
        )
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"websocket: {exc}") from None


def _tls_context(name: str, value: Any) -> ssl.SSLContext | None:
    if value is not None and not isinstance(value, ssl.SSLContext):
        raise TypeError(f"{name} must be an ssl.SSLContext or None, got {type(value).__name__}")
    return value


def parse_seeds(seeds: Iterable[Any] | None) -> list[tuple[str, int]]:
    if seeds is None:
        return []
    if isinstance(seeds, str | tuple):
        seeds = [seeds]
    return [parse_seed(seed) for seed in seeds]


def _route_ip(family: socket.AddressFamily, probe: str) -> str | None:
    # A UDP connect() only asks the kernel for a route; no packet is sent.
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect((probe, 9))
            return str(sock.getsockname()[0])
    except OSError:
        return None


def _lan_ip(ipv6: bool) -> str:
    if ipv6:
        found = _route_ip(socket.AF_INET6, "2001:db8::1")
        if found:
            return found
    found = _route_ip(socket.AF_INET, "192.0.2.1")  # TEST-NET-1: selects the default route
    if not found:
        try:
            found = socket.gethostbyname(socket.gethostname())
        except OSError:
            found = "127.0.0.1"
    return "127.0.0.1" if found.startswith("127.") else found


async def resolve_advertise(advertise: str | None, bind: str) -> str:
    """The address published to peers: ``advertise`` verbatim unless ``"auto"``/``None``;
    then the LAN address for a wildcard bind, else ``bind``."""
    if advertise not in (None, "auto"):
        return advertise
    if bind in _WILDCARDS:
        return await anyio.to_thread.run_sync(_lan_ip, bind == "::")
    return bind


def accepts(peer: Peer, *, swarm: str | None, team: str | None) -> bool:
    """The membership rule (the reference's), the one place it is written: a local swarm
    (team) that is not ``None`` must equal the peer's."""
    return (swarm is None or peer.swarm == swarm) and (team is None or peer.team == team)


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """Every setting of a node that does not change while it runs (see ``Node``'s keywords).

    Build it with :meth:`build`, which validates; the dataclass constructor does not.
    ``limits`` are the RPC server's; ``wall_clock`` gives epoch seconds for timestamps
    (events, peer records, retention) and is replaced by tests on virtual time.
    """

    bind: str = "0.0.0.0"
    port: int = 0
    advertise: str | None = "auto"
    max_upload_size: int = DEFAULT_MAX_FRAME_SIZE
    swarm: str | None = None
    team: str | None = "default"
    seeds: tuple[tuple[str, int], ...] = ()
    mdns: bool = False
    mdns_interfaces: tuple[str, ...] | None = None
    heartbeat_interval: float | None = 5.0
    peer_timeout: float = 20.0
    conversation_max_events: int | None = None
    conversation_keep_recent: int = 25
    conversation_retention: float | None = None
    conversation_max_conversations: int | None = 10_000
    max_connections: int = 1024
    max_connections_per_peer: int = 128
    max_concurrent_requests: int = 64
    idle_timeout: float = 300.0
    read_timeout: float = 30.0
    call_timeout: float = 30.0
    connect_timeout: float = 5.0
    max_peers: int = 1024
    gossip_fanout: int = 3
    #: Membership over HyParView partial views (the default): gossip and kept connections go
    #: to the active view only; ``False``: the full mesh, every member gossiped with and
    #: connected to in turn (``docs/scale.md``).
    partial_views: bool = True
    #: Conversation events on a broadcast tree of the active views (Plumtree) in swarms of
    #: 20 members or more, instead of one call from the author to each member; needs
    #: ``partial_views`` (``docs/scale.md``, "Events on the broadcast tree"). Off by default:
    #: in one process it costs more than the author's calls for bursts of events.
    event_tree: bool = False
    #: Seconds a secure-channel handshake may take (each side).
    handshake_timeout: float = 5.0
    wall_clock: Callable[[], float] = field(default=time.time, compare=False)
    #: The swarm secrets (first primary); empty: no secret. Never printed.
    keyring: Keyring = field(default=NO_SECRET, repr=False)
    #: What one caller may ask of this node (events, new conversations, deferred asks).
    quotas: Quotas = field(default_factory=Quotas)
    #: The WebSocket URLs to listen on beside TCP (``Node(websocket=...)``).
    websocket: tuple[WebSocketUrl, ...] = ()
    #: The server TLS context for ``wss://`` listen URLs.
    websocket_tls: ssl.SSLContext | None = field(default=None, repr=False, compare=False)
    #: The client TLS context for dialing ``wss://`` (``None``: the system's CAs).
    tls_client: ssl.SSLContext | None = field(default=None, repr=False, compare=False)
    #: The seeds given as ``ws://``/``wss://`` URLs (also in :attr:`seeds` as host and port).
    websocket_seeds: tuple[WebSocketUrl, ...] = ()
    #: The web page origins allowed to open the WebSocket listeners (an upgrade request with
    #: another ``Origin`` header gets HTTP 403; our nodes and clients send none).
    websocket_origins: tuple[str, ...] = ()

    @property
    def secured(self) -> bool:
        """Whether a swarm secret is set: only members may connect, plaintext is refused."""
        return bool(self.keyring)

    @classmethod
    def build(
        cls,
        *,
        bind: Any = "0.0.0.0",
        port: Any = 0,
        advertise: Any = "auto",
        max_upload_size: Any = DEFAULT_MAX_FRAME_SIZE,
        swarm: Any = None,
        team: Any = "default",
        seeds: Any = None,
        mdns: Any = False,
        mdns_interfaces: Any = None,
        heartbeat_interval: Any = 5.0,
        peer_timeout: Any = 20.0,
        conversation_max_events: Any = None,
        conversation_keep_recent: Any = 25,
        conversation_retention: Any = None,
        conversation_max_conversations: Any = 10_000,
        max_connections: Any = 1024,
        max_connections_per_peer: Any = 128,
        max_concurrent_requests: Any = 64,
        idle_timeout: Any = 300.0,
        read_timeout: Any = 30.0,
        call_timeout: Any = 30.0,
        connect_timeout: Any = 5.0,
        max_peers: Any = 1024,
        gossip_fanout: Any = 3,
        partial_views: Any = True,
        event_tree: Any = False,
        wall_clock: Any = time.time,
        secret: Any = None,
        quotas: Any = None,
        websocket: Any = None,
        websocket_tls: Any = None,
        tls_client: Any = None,
        websocket_origins: Any = (),
    ) -> NodeConfig:
        """Validate every setting; ``TypeError``/``ValueError`` name the bad parameter."""
        if advertise is not None:
            check_str("advertise", advertise)
        if isinstance(mdns_interfaces, str):
            raise TypeError("mdns_interfaces must be a list of interface names or addresses")
        if conversation_max_events is not None:
            check_int("conversation_max_events", conversation_max_events, minimum=1)
        keep = check_int("conversation_keep_recent", conversation_keep_recent, minimum=0)
        if conversation_max_events is not None and keep >= conversation_max_events:
            raise ValueError(
                f"conversation_keep_recent ({keep}) must be less than "
                f"conversation_max_events ({conversation_max_events}), or compaction could "
                "never shrink a conversation"
            )
        if conversation_max_conversations is not None:
            check_int("conversation_max_conversations", conversation_max_conversations, minimum=1)
        if not callable(wall_clock):
            raise TypeError("wall_clock must be a callable returning epoch seconds")
        for name, value in (("max_connections", max_connections),
                            ("max_connections_per_peer", max_connections_per_peer),
                            ("max_concurrent_requests", max_concurrent_requests)):  # fmt: skip
            check_int(name, value, minimum=1)
        if event_tree is True and partial_views is False:
            raise ValueError(
                "event_tree needs partial_views: the broadcast tree is built over the active views"
            )
        listen_urls = _websocket_listen(websocket)
        server_tls = _tls_context("websocket_tls", websocket_tls)
        if server_tls is None and any(url.secure for url in listen_urls):
            raise ValueError("websocket: a wss:// URL needs websocket_tls (a server SSLContext)")
        if server_tls is not None and not any(url.secure for url in listen_urls):
            raise ValueError("websocket_tls is set but websocket has no wss:// URL to serve")
        return cls(
            bind=check_str("bind", bind),
            port=check_int("port", port, minimum=0, maximum=65535),
            advertise=advertise,
            max_upload_size=check_int("max_upload_size", max_upload_size, minimum=1),
            swarm=check_swarm_name("swarm", swarm),
            team=check_swarm_name("team", team),
            seeds=tuple(parse_seeds(seeds)),
            mdns=check_bool("mdns", mdns),
            mdns_interfaces=None if mdns_interfaces is None else tuple(mdns_interfaces),
            heartbeat_interval=check_optional_seconds("heartbeat_interval", heartbeat_interval),
            peer_timeout=check_seconds("peer_timeout", peer_timeout),
            conversation_max_events=conversation_max_events,
            conversation_keep_recent=keep,
            conversation_retention=check_optional_seconds(
                "conversation_retention", conversation_retention
            ),
            conversation_max_conversations=conversation_max_conversations,
            max_connections=max_connections,
            max_connections_per_peer=max_connections_per_peer,
            max_concurrent_requests=max_concurrent_requests,
            idle_timeout=check_seconds("idle_timeout", idle_timeout),
            read_timeout=check_seconds("read_timeout", read_timeout),
            call_timeout=check_seconds("call_timeout", call_timeout),
            connect_timeout=check_seconds("connect_timeout", connect_timeout),
            max_peers=check_int("max_peers", max_peers, minimum=1),
            gossip_fanout=check_int("gossip_fanout", gossip_fanout, minimum=1),
            partial_views=check_bool("partial_views", partial_views),
            event_tree=check_bool("event_tree", event_tree),
            wall_clock=wall_clock,
            keyring=Keyring.from_value(secret),
            quotas=_quotas(quotas),
            websocket=listen_urls,
            websocket_tls=server_tls,
            tls_client=_tls_context("tls_client", tls_client),
            websocket_seeds=websocket_seeds(seeds),
            websocket_origins=_origins(websocket_origins),
        )

    def admits(self, peer: Peer) -> bool:
        """The membership rule (the reference's): swarm and team must be equal, unless ours
        is ``None`` (then any)."""
        return accepts(peer, swarm=self.swarm, team=self.team)

    def check_member(self, peer: Peer) -> None:
        """:meth:`admits`, raising ``RemoteError(bad_request)`` with the reference's message
        (and which swarm or team the peer is in)."""
        if accepts(peer, swarm=self.swarm, team=self.team):
            return
        if self.swarm is not None and peer.swarm != self.swarm:
            raise RemoteError(
                BAD_REQUEST,
                "peer requested a different swarm "
                f"({peer.swarm!r}; this node is in {self.swarm!r})",
            )
        raise RemoteError(
            BAD_REQUEST,
            f"peer requested a different team ({peer.team!r}; this node is in {self.team!r})",
        )


def _quotas(value: Any) -> Quotas:
    if value is None:
        return Quotas()
    if not isinstance(value, Quotas):
        raise TypeError(f"quotas must be a synapse_p2p.Quotas, got {type(value).__name__}")
    return value
