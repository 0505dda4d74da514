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
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import ByteStream, TaskStatus

from .._config import parse_seed
from .._record_extras import MAX_RELAY_HINTS, RecordExtras, RelayHint
from .._seams import LocalNode
from ..errors import HandshakeError, SynapseError
from ..identity import Identity
from ..rpc._server import Upgrade
from ..secure import PrefixedStream, SecureAcceptor, SecurityPolicy
from ..secure._stream import read_first_bytes
from ..transport import Transport, WebSocketUrl, is_websocket_url
from ..transport._websocket import websocket_routes
from ._advertised import AdvertisedRoutes
from ._circuit import CircuitStream
from ._dial import RelayRoute, RelayTransport
from ._protocol import PREAMBLE, RelayLimits, is_relay_preamble
from ._reserve import Reservations, ReservationState, Serve
from ._service import RelayService, RelayStatistics

if TYPE_CHECKING:
    from ..membership import Membership

__all__ = ["NodeRelay"]

log = logging.getLogger(__name__)


class _TakenOver(SynapseError):
    """Tells the RPC server a connection was served by the relay, not RPC (it then just
    counts the connection out: see ``RpcServer.upgrade``)."""


class NodeRelay:
    """A node's relay parts: serving as a relay (``enabled``), reservations on ``relays``,
    and routes to nodes reachable through a relay (:meth:`add_route`).

    ``inner`` is the transport relays are dialed over (the node's TCP/WebSocket one).
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
        #: The reservations kept (``None`` without ``relays=``).
        self.reservations = (
            Reservations(
                addresses,
                transport=inner,
                identity=identity,
                keyring=policy.keyring,
                connect_timeout=connect_timeout,
            )
            if addresses
            else None
        )
        if self.reservations is not None:
            self.reservations.on_change = self._update_record
        self.local = local or LocalNode(identity.node_id)
        #: Routes learned from members' signed records (:mod:`._advertised`).
        self.advertised = AdvertisedRoutes(
            self.transport, self.local.node_id, lambda: (self.local.address, self.local.port)
        )
        self._update_record()

    def watch(self, membership: Membership) -> None:
        """Take routes from the signed records ``membership`` checks (and drop them when
        their node leaves)."""
        membership.watch_records(self.advertised.learned, self.advertised.forgotten)
        self.advertised.members = membership.peers

    def hints(self) -> tuple[RelayHint, ...]:
        """The relays this node is reserved on now, as its record advertises them."""
        return tuple(
            RelayHint(state.relay[0], state.relay[1], state.relay_node_id)
            for state in self.states()
            if state.reserved
            and state.relay_node_id is not None
            and state.relay not in self._websocket
        )[:MAX_RELAY_HINTS]

    def _update_record(self) -> None:
        """Put the relays reserved on (and whether this node is one) in its record; the
        membership re-signs it and members learn it in the next rounds."""
        extras = RecordExtras(self.hints(), self.enabled)
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
        """This node's reservations, one per relay in ``relays=``."""
        return [] if self.reservations is None else self.reservations.states()

    async def wait_reserved(self, count: int | None = None) -> None:
        """Wait until ``count`` of the ``relays=`` (default: all) hold a reservation."""
        if self.reservations is not None:
            await self.reservations.wait_reserved(count)

    async def run(
        self, serve: Serve, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Keep the reservations (circuits go to ``serve``) until cancelled."""
        if self.reservations is None:
            task_status.started()
            await anyio.sleep_forever()
        else:
            await self.reservations.run(serve, task_status=task_status)

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
