"""Thin async drivers of the secure channel over any anyio byte stream.

* :func:`secure_connect` / :func:`secure_accept` run the handshake on a connected stream and
  return a :class:`SecureStream` (an :class:`anyio.abc.ByteStream`, so RPC runs over it
  unchanged) and the peer's verified node id.
* :func:`accept_maybe_secure` peeks the first 4 bytes of an accepted stream: the secure
  preamble runs the handshake; anything else is a plaintext (synapse-p2p 2.5.0) frame, returned
  unconsumed in a :class:`PrefixedStream` if the :class:`SecurityPolicy` allows plaintext.
* :class:`SecurityPolicy` holds the keyring and the downgrade rules.

Every driver closes the stream it was given when it fails (errors, timeout, cancellation),
so the caller owns the stream only when a driver returns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import anyio
from anyio.abc import ByteStream

from .._bounded import put_newest
from ..errors import BAD_REQUEST, HandshakeError, HandshakeTimeout, PlaintextPeer
from ..identity import Identity
from ..wire import ErrorInfo, Response, encode_frame, encode_response
from ._channel import MAGIC, PREAMBLE_SIZE, PeerIdentity, SecureHandshake, is_secure_preamble
from ._keyring import Keyring
from ._secure_stream import PrefixedStream, SecureStream

__all__ = [
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "Accepted",
    "PrefixedStream",
    "SecureStream",
    "SecurityPolicy",
    "accept_maybe_secure",
    "read_first_bytes",
    "secure_accept",
    "secure_connect",
]

DEFAULT_HANDSHAKE_TIMEOUT = 5.0
_RECEIVE = 65536
SecretArg = str | bytes | Iterable[str | bytes] | Keyring | None


class SecurityPolicy:
    """The keyring and the downgrade rules.

    * With a secret (a non-empty keyring), plaintext is neither accepted nor attempted.
    * Without one, plaintext (synapse-p2p 2.5.0) peers are allowed but unverified, except that
      a node id once seen verified is never accepted again over plaintext, nor dialed in
      plaintext. Up to ``remember`` verified ids are kept, the least recently seen forgotten
      first (an eighth at a time: see :mod:`synapse_p2p._bounded`).
    """

    def __init__(self, secret: SecretArg = None, *, remember: int = 65536) -> None:
        self.keyring = Keyring.from_value(secret)
        self._verified: dict[str, None] = {}  # (see synapse_p2p._bounded)
        self._remember = remember

    @property
    def requires_secure(self) -> bool:
        return bool(self.keyring)

    @property
    def accepts_plaintext(self) -> bool:
        """Whether an inbound plaintext connection may be served at all."""
        return not self.keyring

    def note_verified(self, node_id: str) -> None:
        put_newest(self._verified, node_id, None, self._remember)

    def seen_verified(self, node_id: str) -> bool:
        return node_id in self._verified

    def may_use_plaintext(self, node_id: str | None) -> bool:
        """Whether plaintext may carry traffic claimed by (or dialed to) ``node_id``."""
        if self.keyring:
            return False
        return node_id is None or node_id not in self._verified


@dataclass(frozen=True, slots=True)
class Accepted:
    """An accepted connection: ``stream`` to serve, ``peer`` (``None`` for plaintext)."""

    stream: ByteStream
    peer: PeerIdentity | None

    @property
    def secure(self) -> bool:
        return self.peer is not None


async def _close(stream: ByteStream) -> None:
    with anyio.CancelScope(shield=True), anyio.move_on_after(1):
        await stream.aclose()


async def read_first_bytes(
    stream: ByteStream, *, timeout: float, more: Callable[[bytes], bool]
) -> bytes:
    """Read an accepted connection's first bytes while ``more(first)`` says they cannot tell
    yet what the connection speaks (the acceptors' preambles). On end of stream
    (``HandshakeError``), after ``timeout`` seconds (``HandshakeTimeout``), cancellation or
    any error the stream is closed."""
    first = b""
    try:
        with anyio.fail_after(timeout):
            while more(first):
                try:
                    first += await stream.receive(_RECEIVE)
                except anyio.EndOfStream:
                    raise HandshakeError("the connection closed before its first bytes") from None
    except TimeoutError:
        await _close(stream)
        raise HandshakeTimeout(f"no data within {timeout:g} s of accepting") from None
    except BaseException:
        await _close(stream)
        raise
    return first


async def _drive(
    stream: ByteStream, handshake: SecureHandshake, timeout: float, first: bytes = b""
) -> SecureStream:
    """Run ``handshake`` over ``stream`` (``first``: bytes already read from it), closing the
    stream on any failure."""
    replied = False
    data = first
    try:
        with anyio.fail_after(timeout):
            while True:
                if data:
                    try:
                        handshake.receive_data(data)
                    except HandshakeError:
                        out = handshake.data_to_send()  # a status reply for the peer, if any
                        if out:
                            with anyio.move_on_after(0.2):
                                await stream.send(out)
                        raise
                out = handshake.data_to_send()
                if out:
                    try:
                        await stream.send(out)
                    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
                        reason = exc or type(exc).__name__
                        raise HandshakeError(
                            f"connection broken during the handshake: {reason}"
                        ) from None
                if handshake.complete:
                    break
                try:
                    data = await stream.receive(_RECEIVE)
                except anyio.EndOfStream:
                    raise _closed_error(handshake, replied) from None
                except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
                    if handshake.initiator and not replied:
                        raise _closed_error(handshake, replied) from None
                    reason = exc or type(exc).__name__
                    raise HandshakeError(
                        f"connection broken during the handshake: {reason}"
                    ) from None
                replied = True
    except TimeoutError:
        await _close(stream)
        raise HandshakeTimeout(f"secure handshake did not finish within {timeout:g} s") from None
    except BaseException:
        await _close(stream)
        raise
    assert handshake.session is not None
    assert handshake.peer is not None
    return SecureStream(stream, handshake.session, handshake.peer, handshake.early_data)


def _closed_error(handshake: SecureHandshake, replied: bool) -> HandshakeError:
    if handshake.initiator and not replied:
        return PlaintextPeer(
            "the peer closed the connection without answering the secure handshake "
            "(synapse-p2p 2.5.0?)"
        )
    if handshake.initiator and handshake.session is not None:
        return HandshakeError(
            "the peer closed the connection during the handshake: our swarm secret is not "
            "in its keyring, or it refused our identity"
        )
    return HandshakeError("the peer closed the connection during the handshake")


async def secure_connect(
    stream: ByteStream,
    identity: Identity,
    *,
    secret: SecretArg = (),
    expected_node_id: str | None = None,
    timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
) -> tuple[SecureStream, str]:
    """Open the secure channel as the initiator; return it and the peer's verified node id.

    ``secret``: a keyring (or what :meth:`Keyring.from_value` takes; the default ``()`` means
    no secret, ``None`` reads ``SYNAPSE_SECRET``); the primary secret is used. Raises
    :class:`~synapse_p2p.errors.PlaintextPeer` if the peer answers in plaintext,
    :class:`~synapse_p2p.errors.HandshakeTimeout` after ``timeout`` seconds, and
    :class:`~synapse_p2p.errors.HandshakeError` for a refused secret, a bad signature or a
    node id other than ``expected_node_id``. On any failure, cancellation included, ``stream``
    is closed.
    """
    handshake = SecureHandshake.initiate(identity, Keyring.from_value(secret), expected_node_id)
    secure = await _drive(stream, handshake, timeout)
    return secure, secure.peer.node_id


async def secure_accept(
    stream: ByteStream,
    identity: Identity,
    *,
    secret: SecretArg = (),
    timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
) -> tuple[SecureStream, str]:
    """Answer the secure channel as the responder (the stream must start with the preamble);
    return it and the peer's verified node id. Any secret of the keyring is accepted.
    Errors as :func:`secure_connect`; on any failure ``stream`` is closed."""
    handshake = SecureHandshake.respond(identity, Keyring.from_value(secret))
    secure = await _drive(stream, handshake, timeout)
    return secure, secure.peer.node_id


async def accept_maybe_secure(
    stream: ByteStream,
    identity: Identity,
    policy: SecurityPolicy,
    *,
    timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
    plaintext: bool = True,
) -> Accepted:
    """Serve the secure channel or plaintext on an accepted stream, by its first bytes.

    The first byte decides: the secure preamble's (then its 4 bytes are read) or anything
    else (plaintext). A secure handshake returns ``Accepted(SecureStream, peer)`` and records
    the peer in ``policy`` as seen verified. Plaintext returns
    ``Accepted(PrefixedStream, None)`` (no byte consumed) if ``policy.accepts_plaintext``;
    otherwise the peer gets a 2.5.0-style ``bad_request`` error frame, the stream is closed
    and ``HandshakeError`` is raised; the same with ``plaintext=False`` (a stream over which
    no 2.5.0 peer can come, such as a WebSocket), whatever the policy.
    Whether a plaintext connection's claimed node id may be believed is
    ``policy.may_use_plaintext(node_id)``, for the caller to check. On any failure (including
    a timeout waiting for the first bytes) the stream is closed.
    """
    deadline = anyio.current_time() + timeout
    # A plaintext frame's length starts with a byte other than the magic's first (any length
    # up to 4 GB - 200 MB): that one byte decides, so a plaintext peer that sends less than 4
    # bytes is handed to the server's own timeouts at once.
    first = await read_first_bytes(
        stream,
        timeout=timeout,
        more=lambda b: len(b) < PREAMBLE_SIZE and (not b or b[0] == MAGIC[0]),
    )
    if is_secure_preamble(first):
        handshake = SecureHandshake.respond(identity, policy.keyring)
        remaining = max(0.0, deadline - anyio.current_time())
        try:
            secure = await _drive(stream, handshake, remaining, first)
        except HandshakeTimeout:
            raise HandshakeTimeout(
                f"secure handshake did not finish within {timeout:g} s"
            ) from None
        policy.note_verified(secure.peer.node_id)
        return Accepted(secure, secure.peer)
    if policy.accepts_plaintext and plaintext:
        return Accepted(PrefixedStream(stream, first), None)
    if policy.accepts_plaintext:
        message = "this endpoint accepts only the secure channel (plaintext is TCP only)"
    else:
        message = "this node accepts only the secure channel of its swarm (a secret is required)"
    reply = encode_frame(
        encode_response(Response("", False, None, ErrorInfo(BAD_REQUEST, message)))
    )
    with anyio.move_on_after(0.2):
        try:
            await stream.send(reply)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass
    await _close(stream)
    if policy.accepts_plaintext:
        raise HandshakeError("plaintext connection refused: not over this transport")
    raise HandshakeError("plaintext connection refused: this node requires the swarm secret")
