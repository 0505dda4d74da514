"""The secure channel under RPC: how a node (or a client) dials and accepts connections.

* :class:`SecureDialer` opens a connection and runs the initiator's handshake. A peer that
  answers in plaintext (synapse-p2p 2.5.0) is dialed again in plaintext when the
  :class:`~._stream.SecurityPolicy` allows it (no secret, and neither the address nor the
  expected node id was ever seen verified); such addresses are remembered for
  ``plaintext_ttl`` seconds so each call costs one connection, as 2.5.0 expects.
* :class:`SecureAcceptor` answers an accepted connection: the secure handshake, or plaintext
  when the policy allows it and the connection is not a WebSocket (no synapse-p2p 2.5.0 peer
  speaks WebSocket, so plaintext there could only come from elsewhere, a web page for one).
  Handshakes run under their own cap (``max_handshakes`` at once, ``per_address`` from one
  IP address); a connection over either is closed at once, before any byte of it is read.
  Each must finish within ``timeout`` seconds.

Both return the stream RPC runs over and the peer's verified node id (``None`` for plaintext).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import anyio
from anyio.abc import ByteStream

from .._bounded import put_newest
from ..errors import FrameTooLarge, HandshakeError, PlaintextPeer
from ..identity import Identity
from ..transport import Transport, WebSocketStream, remote_address
from ..wire import DEFAULT_MAX_FRAME_SIZE
from ._stream import (
    DEFAULT_HANDSHAKE_TIMEOUT,
    SecurityPolicy,
    accept_maybe_secure,
    secure_connect,
)

__all__ = ["HandshakeStatistics", "SecureAcceptor", "SecureDialer"]

log = logging.getLogger(__name__)

#: Addresses remembered as plaintext (2.5.0) or as secure; least recently used forgotten first
#: (an eighth at a time: see :mod:`synapse_p2p._bounded`).
_REMEMBER = 4096


class SecureDialer:
    """Dials with the secure channel; see the module documentation.

    ``connect`` raises :class:`~synapse_p2p.errors.ConnectError` (unreachable),
    :class:`~synapse_p2p.errors.HandshakeError` (refused secret, wrong node id, a plaintext
    peer where plaintext is not allowed) or
    :class:`~synapse_p2p.errors.HandshakeTimeout`.
    """

    def __init__(
        self,
        transport: Transport,
        identity: Identity,
        policy: SecurityPolicy,
        *,
        handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
        plaintext_ttl: float = 300.0,
        clock: Callable[[], float] = anyio.current_time,
    ) -> None:
        self.transport = transport
        self.identity = identity
        self.policy = policy
        self.handshake_timeout = handshake_timeout
        self.plaintext_ttl = plaintext_ttl
        self._clock = clock
        #: (host, port) -> until when it is known to speak plaintext only.
        self._plaintext: dict[tuple[str, int], float] = {}  # (see synapse_p2p._bounded)
        #: (host, port) -> the node id it proved (never dialed in plaintext afterwards).
        self._secure: dict[tuple[str, int], str] = {}

    def known_id(self, host: str, port: int) -> str | None:
        """The node id ``host:port`` last proved, if remembered."""
        return self._secure.get((host, port))

    def _is_plaintext(self, key: tuple[str, int]) -> bool:
        until = self._plaintext.get(key)
        if until is None:
            return False
        if until < self._clock():
            del self._plaintext[key]
            return False
        return True

    def _may_use_plaintext(self, key: tuple[str, int], expected: str | None) -> bool:
        return self.policy.may_use_plaintext(expected) and key not in self._secure

    async def connect(
        self,
        host: str,
        port: int,
        *,
        timeout: float,
        expected_node_id: str | None = None,
    ) -> tuple[ByteStream, str | None]:
        """A connected stream to ``host:port`` and the peer's verified node id (``None``:
        plaintext). ``timeout`` bounds the TCP connect; the handshake has its own."""
        key = (host, port)
        if self._is_plaintext(key) and self._may_use_plaintext(key, expected_node_id):
            return await self.transport.connect(host, port, timeout=timeout), None
        stream = await self.transport.connect(host, port, timeout=timeout)
        try:
            secure, node_id = await secure_connect(
                stream,
                self.identity,
                secret=self.policy.keyring,
                expected_node_id=expected_node_id,
                timeout=self.handshake_timeout,
            )
        except PlaintextPeer as exc:
            if exc.speaks_text():  # not synapse-p2p at all: say so (as a plaintext call would)
                size = int.from_bytes(exc.sample[:4], "big")
                raise FrameTooLarge(size, DEFAULT_MAX_FRAME_SIZE, exc.sample) from None
            if not self._may_use_plaintext(key, expected_node_id):
                why = (
                    "this node requires the swarm secret"
                    if self.policy.requires_secure
                    else "it proved a node id over the secure channel before (downgrade refused)"
                )
                raise HandshakeError(
                    f"{host}:{port} answered in plaintext (synapse-p2p 2.5.0?); not using "
                    f"plaintext: {why}"
                ) from None
            put_newest(self._plaintext, key, self._clock() + self.plaintext_ttl, _REMEMBER)
            log.debug("%s:%s speaks plaintext (synapse-p2p 2.5.0); using plaintext", host, port)
            return await self.transport.connect(host, port, timeout=timeout), None
        self._plaintext.pop(key, None)
        put_newest(self._secure, key, node_id, _REMEMBER)
        self.policy.note_verified(node_id)
        return secure, node_id


@dataclass(frozen=True, slots=True)
class HandshakeStatistics:
    """A snapshot of an acceptor's counters: ``secure`` handshakes completed, ``plaintext``
    connections served (2.5.0), ``failed`` (bad secret, bad key, timeout, plaintext refused),
    ``refused`` (over the handshake caps, closed unread), ``pending`` now."""

    secure: int
    plaintext: int
    failed: int
    refused: int
    pending: int


class SecureAcceptor:
    """Answers accepted connections; see the module documentation.

    :meth:`accept` returns ``(stream, node_id)`` or raises
    :class:`~synapse_p2p.errors.HandshakeError` (the stream is then closed; the peer got a
    status or error frame where the protocol has one).
    """

    def __init__(
        self,
        identity: Identity,
        policy: SecurityPolicy,
        *,
        timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
        max_handshakes: int = 256,
        per_address: int = 64,
    ) -> None:
        self.identity = identity
        self.policy = policy
        self.timeout = timeout
        self.max_handshakes = max_handshakes
        self.per_address = per_address
        self._pending = 0
        self._per_ip: dict[str, int] = {}
        self._last_report = -math.inf
        self.handshakes = 0
        self.plaintext = 0
        self.refused = 0
        self.failed = 0

    @property
    def pending(self) -> int:
        """Handshakes in progress."""
        return self._pending

    def statistics(self) -> HandshakeStatistics:
        return HandshakeStatistics(
            self.handshakes, self.plaintext, self.failed, self.refused, self._pending
        )

    async def accept(self, stream: ByteStream) -> tuple[ByteStream, str | None]:
        ip, _ = remote_address(stream)
        if self._pending >= self.max_handshakes or self._per_ip.get(ip, 0) >= self.per_address:
            self.refused += 1
            with anyio.CancelScope(shield=True), anyio.move_on_after(0.5):
                await stream.aclose()
            raise HandshakeError(
                f"too many handshakes in progress (from {ip or 'this address'}): closed"
            )
        self._pending += 1
        self._per_ip[ip] = self._per_ip.get(ip, 0) + 1
        try:
            accepted = await accept_maybe_secure(
                stream,
                self.identity,
                self.policy,
                timeout=self.timeout,
                plaintext=not isinstance(stream, WebSocketStream),
            )
        except HandshakeError as exc:
            self.failed += 1
            self._report(ip, exc)
            raise
        finally:
            self._pending -= 1
            left = self._per_ip[ip] - 1
            if left:
                self._per_ip[ip] = left
            else:
                del self._per_ip[ip]
        peer = accepted.peer
        if peer is None:
            self.plaintext += 1
            return accepted.stream, None
        self.handshakes += 1
        return accepted.stream, peer.node_id

    def _report(self, ip: str, exc: HandshakeError) -> None:
        """Refused handshakes are logged at INFO at most every 10 s (they are what a
        non-member or a scanner causes), the rest at DEBUG."""
        now = anyio.current_time()
        if now - self._last_report >= 10:
            self._last_report = now
            log.info("refused a connection from %s: %s (%d refused so far)", ip, exc, self.failed)
        else:
            log.debug("refused a connection from %s: %s", ip, exc)
