"""What a :class:`~synapse_p2p.Node` holds of the relay: :class:`NodeRelay`.

The node builds one from ``relay=``, ``relay_limits=``, ``relays=`` and its
:class:`~synapse_p2p._seams.LocalNode`, and uses four things of it:
:attr:`NodeRelay.transport` (its transport, routing some addresses through relays),
:meth:`NodeRelay.upgrade` (wraps the secure acceptor of its RPC server),
:meth:`NodeRelay.watch` (membership hands it every signed record that checks: the routes
they advertise, :mod:`._advertised`) and :meth:`NodeRelay.run` (a service: the
reservations). It keeps ``local.extras`` (what the node's signed record says of relays) up to
date. Nothing here reads the node.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import ByteStream, TaskStatus

from .._config import parse_seed
from .._record_extras import MAX_RELAY_HINTS, RecordExtras, RelayHint
from .._seams import LocalNode
from .._spawn import start_soon
from ..errors import HandshakeError, SynapseError
from ..identity import Identity
from ..rpc._server import Upgrade
from ..secure import PrefixedStream, SecureAcceptor, SecurityPolicy
from ..secure._stream import read_first_bytes
from ..transport import Transport, WebSocketUrl, is_websocket_url
from ..transport._websocket import websocket_routes
from ._advertised import AdvertisedRoutes
from ._auto import AutoRelays
from ._circuit import CircuitStream
from ._dial import RelayRoute, RelayTransport
from ._protocol import PREAMBLE, RelayLimits, is_relay_preamble
from ._reach import Reachability, ReachabilityState, serve_dialback
from ._reserve import Reservations, ReservationState, Serve
from ._service import RelayService, RelayStatistics

if TYPE_CHECKING:
    from .._seams import PeerCaller
    from ..membership import Membership
    from ..rpc import EndpointRegistry

__all__ = ["NodeRelay"]

log = logging.getLogger(__name__)


class _TakenOver(SynapseError):
    """Tells the RPC server a connection was served by the relay, not RPC (it then just
    counts the connection out: see ``RpcServer.upgrade``)."""


class NodeRelay:
    """A node's relay parts: serving as a relay (``enabled``), reservations (on ``relays``,
    or chosen by :attr:`auto` while the node is private), routes to nodes reachable through a
    relay (:meth:`add_route`, and :attr:`advertised` from signed records) and
    :attr:`reachability`.

    ``inner`` is the transport relays are dialed over (the node's TCP/WebSocket one);
    ``local`` the node's record, whose ``extras`` this keeps up to date. Errors from the
    network never leave :meth:`run` (they are logged and retried); cancelling it ends the
    reservations and the circuits taken through them.
    """

    def __init__(
        self,
        identity: Identity,
        policy: SecurityPolicy,
        inner: Transport,
        *,
        enabled: bool = False,
        limits: RelayLimits | None = None,
        relays: Iterable[str | tuple[str, int]] | None = None,
        connect_timeout: float = 5.0,
        local: LocalNode | None = None,
    ) -> None:
        if not isinstance(enabled, bool):
            raise TypeError(f"relay must be True or False, got {enabled!r}")
        if limits is not None and not isinstance(limits, RelayLimits):
            raise TypeError("relay_limits must be a RelayLimits")
        if limits is not None and not enabled:
            raise ValueError("relay_limits applies only with relay=True")
        if isinstance(relays, str):
            relays = [relays]
        addresses = []
        urls = []
        for relay in relays or ():
            try:
                addresses.append(parse_seed(relay))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"relays: {exc}") from None
            if is_websocket_url(relay):
                urls.append(WebSocketUrl.parse(relay))
        # relays given as ws:// or wss:// URLs are dialed over WebSocket (and not advertised
        # in the record: members dial a record's relays over TCP)
        self._websocket = {(url.host, url.port) for url in urls}
        inner = websocket_routes(inner, urls, None)
        #: The node's transport: routes (:meth:`add_route`) go through relays, the rest over
        #: ``inner``.
        self.transport = RelayTransport(inner, identity=identity, secret=policy.keyring)
        #: The relay service (``None`` unless ``relay=True``).
        self.service = RelayService(limits) if enabled else None
        #: The reservations kept (on ``relays=``, or chosen automatically).
        self.reservations = Reservations(
            addresses,
            transport=inner,
            identity=identity,
            keyring=policy.keyring,
            connect_timeout=connect_timeout,
        )
        self.reservations.on_change = self._update_record
        #: Whether ``relays=`` named the relays (else they are chosen when private).
        self.explicit = bool(addresses)
        self.identity = identity
        self.keyring = policy.keyring
        self.connect_timeout = connect_timeout
        self.local = local or LocalNode(identity.node_id)
        #: Dial-backs and the verdict (:mod:`._reach`); set by :meth:`attach`.
        self.reach: Reachability | None = None
        #: Automatic reservations (:mod:`._auto`); set by :meth:`attach` without ``relays=``.
        self.auto: AutoRelays | None = None
        #: Routes learned from members' signed records (:mod:`._advertised`).
        self.advertised = AdvertisedRoutes(
            self.transport, self.local.node_id, lambda: (self.local.address, self.local.port)
        )
        self._update_record()

    def attach(
        self, membership: Membership, *, registry: EndpointRegistry, caller: PeerCaller
    ) -> None:
        """Take routes from the signed records ``membership`` checks (and drop them when
        their node leaves); serve dial-backs on ``registry`` and learn this node's
        reachability from its members' (calls through ``caller``); without ``relays=``,
        reserve on relay members automatically while private."""
        membership.watch_records(self.advertised.learned, self.advertised.forgotten)
        self.advertised.members = membership.records
        serve_dialback(
            registry,
            transport=lambda: self.transport.inner,  # never through a relay route
            identity=self.identity,
            keyring=self.keyring,
            timeout=self.connect_timeout,
        )
        self.reach = Reachability(
            self.local,
            membership.records,
            membership.is_legacy,
            caller,
            timeout=self.connect_timeout,
            move_check=math.inf,  # (membership calls moved() whenever it moves)
        )
        self.reach.on_change = lambda _state: self._update_record()
        membership.on_moved.append(self.reach.moved)
        if not self.explicit:
            self.auto = AutoRelays(
                self.reservations, self.reach, self.advertised, lambda: membership.records
            )

    @property
    def reachability(self) -> ReachabilityState:
        """``"public"``, ``"private"`` or ``"unknown"`` (see :mod:`._reach`)."""
        return "unknown" if self.reach is None else self.reach.state

    def hints(self) -> tuple[RelayHint, ...]:
        """The relays this node keeps a reservation on, as its record advertises them: those
        reserved at least once, the one being re-reserved included (a relay that restarts
        does not change the record; one given up does)."""
        return tuple(
            RelayHint(state.relay[0], state.relay[1], state.relay_node_id)
            for state in self.states()
            if state.relay_node_id is not None and state.relay not in self._websocket
        )[:MAX_RELAY_HINTS]

    def _update_record(self) -> None:
        """Put the relays reserved on (none once this node is known to be public) and
        whether this node is one in its record; the membership re-signs it and members
        learn it in the next rounds."""
        public = self.reachability == "public"
        extras = RecordExtras(() if public else self.hints(), self.enabled)
        if extras != self.local.extras:
            self.local.extras = extras

    @property
    def enabled(self) -> bool:
        """Whether this node serves as a relay."""
        return self.service is not None

    def add_route(
        self,
        address: str | tuple[str, int],
        *,
        relay: str | tuple[str, int],
        node_id: str,
        relay_node_id: str | None = None,
    ) -> tuple[str, int]:
        """Reach the node ``node_id``, advertised at ``address``, through ``relay`` (where it
        holds a reservation) from now on: calls, gossip, asks and syncs to it go through the
        relay. Returns the address."""
        return self.transport.add_route(
            address, relay=relay, node_id=node_id, relay_node_id=relay_node_id
        )

    def remove_route(self, address: str | tuple[str, int]) -> None:
        self.transport.remove_route(address)

    @property
    def routes(self) -> dict[tuple[str, int], RelayRoute]:
        return self.transport.routes

    def statistics(self) -> RelayStatistics | None:
        """The relay service's counters (``None`` unless ``relay=True``)."""
        return None if self.service is None else self.service.statistics()

    def states(self) -> list[ReservationState]:
        """This node's reservations, one per relay kept (``relays=``, or chosen)."""
        return self.reservations.states()

    async def wait_reserved(self, count: int | None = None) -> None:
        """Wait until ``count`` of the relays kept (default: all) hold a reservation."""
        await self.reservations.wait_reserved(count)

    async def run(
        self, serve: Serve, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Keep the reservations (circuits go to ``serve``), ask for dial-backs and choose
        relays when private, until cancelled."""
        async with anyio.create_task_group() as tg:
            with self.reservations.kept_in(tg, serve):  # in this group: no task of their own
                if self.auto is not None:
                    start_soon(tg, self.auto.run)
                task_status.started()
                if self.reach is not None:  # in this task: none of its own
                    await self.reach.run()
                await anyio.sleep_forever()  # relays may be added later

    def upgrade(self, acceptor: SecureAcceptor) -> Upgrade:
        """The RPC server's ``upgrade``: ``acceptor.accept``, except that circuits must
        carry the secure channel (never plaintext through a relay) and, on a relay,
        connections starting with the relay preamble are served by the relay service."""
        service = self.service

        async def upgrade(stream: ByteStream) -> tuple[ByteStream, str | None]:
            if isinstance(stream, CircuitStream):
                secure, node_id = await acceptor.accept(stream)
                if node_id is None:
                    await _close(secure)
                    raise HandshakeError("plaintext through a relay refused")
                return secure, node_id
            if service is None:
                return await acceptor.accept(stream)
            first = await read_first_bytes(  # enough to tell the relay preamble
                stream,
                timeout=acceptor.timeout,
                more=lambda b: len(b) < len(PREAMBLE) and PREAMBLE.startswith(b),
            )
            if not is_relay_preamble(first):
                return await acceptor.accept(PrefixedStream(stream, first))
            rest = first[len(PREAMBLE) :]
            secure, node_id = await acceptor.accept(
                PrefixedStream(stream, rest) if rest else stream
            )
            if node_id is None:
                await _close(secure)
                raise HandshakeError("relay connection without the secure channel refused")
            await service.handle(secure, node_id)
            raise _TakenOver("served by the relay")

        return upgrade


async def _close(stream: Any) -> None:
    with anyio.CancelScope(shield=True), anyio.move_on_after(1):
        try:
            await stream.aclose()
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass
