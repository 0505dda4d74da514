"""Dialing a relay: the secure channel to it, and circuits through it.

:func:`open_relay` opens a connection to a relay and runs the secure handshake with it (the
relay learns our verified node id; with a swarm secret, only members get past this).
:func:`open_circuit` then asks for a circuit to a reserved node and returns the
:class:`~._circuit.CircuitStream`. :class:`RelayTransport` is a
:class:`~synapse_p2p.transport.Transport` that dials the addresses it has a route for through
their relay (the same seam as the WebSocket transport): the secure dialer above it then runs
the end-to-end handshake with the target inside the circuit.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

import anyio
from anyio.abc import ByteStream, Listener

from .._config import parse_seed
from .._validate import format_address
from ..errors import (
    ConnectError,
    ConnectionLost,
    HandshakeError,
    PlaintextPeer,
    ProtocolError,
    RelayRefused,
)
from ..identity import Identity
from ..secure import Keyring, secure_connect
from ..secure._stream import DEFAULT_HANDSHAKE_TIMEOUT
from ..transport import TcpTransport, Transport, WebSocketUrl, is_websocket_url
from ..transport._direct import DirectFirst
from ..transport._websocket import websocket_routes
from ._circuit import CircuitStream, ControlStream
from ._protocol import PREAMBLE

__all__ = ["RelayRoute", "RelayTransport", "open_circuit", "open_relay"]

log = logging.getLogger(__name__)


async def open_relay(
    transport: Transport,
    relay: tuple[str, int],
    identity: Identity,
    keyring: Keyring,
    *,
    timeout: float,
    relay_node_id: str | None = None,
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
) -> tuple[ControlStream, str]:
    """A control connection to ``relay`` and the relay's verified node id. Raises
    ``ConnectError`` (unreachable), ``RelayRefused`` with code ``not_relay`` (the node there
    does not serve as a relay, or speaks plaintext), ``HandshakeError`` (a secret it does not
    hold, another node id than ``relay_node_id``)."""
    where = format_address(*relay)
    stream = await transport.connect(relay[0], relay[1], timeout=timeout)
    try:
        with anyio.fail_after(timeout):
            await stream.send(PREAMBLE)
    except BaseException as exc:
        with anyio.CancelScope(shield=True), anyio.move_on_after(1):
            await stream.aclose()
        if isinstance(exc, TimeoutError | anyio.BrokenResourceError | OSError):
            raise ConnectError(f"could not reach relay {where}") from None
        raise
    try:
        secure, node_id = await secure_connect(
            stream,
            identity,
            secret=keyring,
            expected_node_id=relay_node_id,
            timeout=handshake_timeout,
        )
    except PlaintextPeer:
        raise RelayRefused(
            "not_relay",
            f"{where} is not a relay (relay=True not set, or an older node)",
            relay=where,
        ) from None
    except HandshakeError as exc:
        if "closed" in str(exc) and not keyring:
            raise RelayRefused(
                "not_relay", f"{where} refused the relay connection ({exc})", relay=where
            ) from None
        raise
    return ControlStream(secure), node_id


def _refused(reply: dict[str, object], where: str, what: str) -> RelayRefused:
    code = str(reply.get("code") or "bad_request")
    error = str(reply.get("error") or "refused")
    return RelayRefused(code, f"relay {where} refused {what}: {error}", relay=where)


async def open_circuit(
    transport: Transport,
    relay: tuple[str, int],
    target: str,
    identity: Identity,
    keyring: Keyring,
    *,
    timeout: float,
    relay_node_id: str | None = None,
) -> CircuitStream:
    """A circuit through ``relay`` to the node ``target`` (reserved there). ``timeout`` bounds
    the connect and then the relay's answer separately (the relay waits a few seconds for
    the target). Raises as :func:`open_relay`, and ``RelayRefused`` for the relay's refusals
    (``unknown_target``, ``too_many_circuits``, ``target_unreachable``, ...). On any failure
    (cancellation included) the connection is closed."""
    where = format_address(*relay)
    control, relay_id = await open_relay(
        transport, relay, identity, keyring, timeout=timeout, relay_node_id=relay_node_id
    )
    try:
        await control.send({"op": "connect", "to": target})
        with anyio.fail_after(timeout):
            reply = await control.receive()
        if reply.get("ok") is not True:
            raise _refused(reply, where, f"a circuit to {target[:16]}")
        leg = control.raw()
    except BaseException as exc:
        await control.aclose()
        if isinstance(exc, TimeoutError):
            raise ConnectError(f"relay {where} did not answer within {timeout:g} s") from None
        if isinstance(exc, ConnectionLost | ProtocolError):
            raise ConnectError(f"relay {where}: {exc}") from None
        raise
    return CircuitStream(leg, relay_id)


@dataclass(frozen=True, slots=True)
class RelayRoute:
    """Reach ``node_id`` through the relay at ``relay`` (whose node id, if given, is checked);
    ``fallbacks``: more ``(relay, relay_node_id)`` to try, in order, when it cannot be
    reached or no longer holds the node's reservation."""

    relay: tuple[str, int]
    node_id: str
    relay_node_id: str | None = None
    fallbacks: tuple[tuple[tuple[str, int], str | None], ...] = ()
    #: Try the address itself first (a route learned from a peer record, which proves who
    #: signed it, not that nobody else answers at that address); see ``RelayTransport``.
    direct_first: bool = False


class RelayTransport:
    """A :class:`~synapse_p2p.transport.Transport` that dials the ``(host, port)`` addresses
    it has a route for (:meth:`add_route`) through a relay, and every other address over
    ``inner`` (default: TCP). ``identity`` and ``secret`` are what the relay sees (a fresh key
    when ``identity`` is ``None``; with a swarm secret only members get a circuit).

    ``Client(host, port, transport=RelayTransport(...))`` calls a node reachable only through
    a relay; a node's own is :attr:`Node.relay.transport <synapse_p2p.relay.NodeRelay>`.
    ``listen`` binds ``inner``.
    """

    def __init__(
        self,
        inner: Transport | None = None,
        *,
        identity: Identity | None = None,
        secret: str | bytes | Iterable[str | bytes] | Keyring | None = None,
    ) -> None:
        self.inner: Transport = inner or TcpTransport()
        self.identity = identity or Identity.generate()
        self.keyring = Keyring.from_value(secret)
        self._routes: dict[tuple[str, int], RelayRoute] = {}
        self._direct = DirectFirst()  # the direct attempts of ``direct_first`` routes

    def add_route(
        self,
        address: str | tuple[str, int],
        *,
        relay: str | tuple[str, int],
        node_id: str,
        relay_node_id: str | None = None,
        fallbacks: Iterable[tuple[tuple[str, int], str | None]] = (),
        direct_first: bool = False,
    ) -> tuple[str, int]:
        """Dial ``address`` (the target's advertised ``host:port``) through ``relay`` (a
        ``host:port``, or a ``ws://``/``wss://`` URL: then the relay is dialed over WebSocket)
        to the node ``node_id`` from now on, then through ``fallbacks`` (``((host, port),
        relay_node_id)``, TCP) if that fails; return the address. Replaces an earlier route.
        With ``direct_first``, the address itself is tried first (see
        :class:`~synapse_p2p.transport._direct.DirectFirst`): a node answering there
        directly wins over the route."""
        if not isinstance(node_id, str) or not node_id:
            raise ValueError("node_id must be a non-empty string")
        key = parse_seed(address)
        if is_websocket_url(relay):
            self.inner = websocket_routes(self.inner, [WebSocketUrl.parse(relay)], None)
        self._routes[key] = RelayRoute(
            parse_seed(relay), node_id, relay_node_id, tuple(fallbacks), direct_first
        )
        self._direct.forget(key)
        return key

    def remove_route(self, address: str | tuple[str, int]) -> None:
        """Dial ``address`` directly again (no-op if unknown)."""
        self._routes.pop(parse_seed(address), None)

    def route_for(self, host: str, port: int) -> RelayRoute | None:
        return self._routes.get((host, port))

    @property
    def routes(self) -> dict[tuple[str, int], RelayRoute]:
        return dict(self._routes)

    async def connect(self, host: str, port: int, *, timeout: float) -> ByteStream:
        route = self._routes.get((host, port))
        if route is None:
            return await self.inner.connect(host, port, timeout=timeout)
        if route.direct_first:
            direct = await self._direct.attempt(
                (host, port), lambda: self.inner.connect(host, port, timeout=timeout)
            )
            if direct is not None:
                return direct
        relays = [(route.relay, route.relay_node_id), *route.fallbacks]
        for i, (relay, relay_node_id) in enumerate(relays):
            try:
                return await open_circuit(
                    self.inner,
                    relay,
                    route.node_id,
                    self.identity,
                    self.keyring,
                    timeout=timeout,
                    relay_node_id=relay_node_id,
                )
            except (ConnectError, HandshakeError) as exc:
                if i == len(relays) - 1 or not _next_relay_may_help(exc):
                    raise
                log.debug("relay %s failed (%s): trying the next", format_address(*relay), exc)
        raise AssertionError("unreachable")  # pragma: no cover

    async def listen(self, host: str | None, port: int) -> list[Listener[ByteStream]]:
        return await self.inner.listen(host, port)


def _next_relay_may_help(exc: Exception) -> bool:
    """Whether another relay of the route may work where this one failed: it could not be
    reached, is someone else now, no longer holds the target's reservation, or is full (not
    a malformed request, which would be refused everywhere)."""
    return not (isinstance(exc, RelayRefused) and exc.code == "bad_request")
