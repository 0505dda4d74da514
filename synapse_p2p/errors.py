"""The exceptions synapse-p2p raises.

Everything a caller can see from this package derives from :class:`SynapseError`, and each
class also derives from the closest built-in exception so that ``except ConnectionError`` or
``except TimeoutError`` keep working:

* :class:`RemoteError` (``RuntimeError``): the remote node answered with an error response; it
  carries the wire ``code`` (``"bad_request"``, ``"internal_error"``, ...) and ``message``.
* :class:`ProtocolError` (``ValueError``): bytes on the wire that are not a valid frame or
  message (also available as :data:`InvalidMessageError`, the reference implementation's name).

  * :class:`FrameTooLarge`: a frame's declared length exceeds the configured maximum.
  * :class:`IncompleteFrame`: the stream ended in the middle of a frame.

* :class:`SynapseConnectionError` (``ConnectionError``): the transport failed.

  * :class:`ConnectError`: the peer could not be reached (refused, unreachable, connect timeout).
  * :class:`ConnectionLost`: the connection closed before the response arrived.
  * :class:`HandshakeError`: the secure channel's handshake failed (wrong or missing swarm
    secret, a bad identity signature, an unexpected node id, a malformed message).

    * :class:`HandshakeTimeout` (also ``TimeoutError``): the handshake did not finish in time.
    * :class:`PlaintextPeer`: the peer does not speak the secure channel (synapse-p2p 2.5.0).

* :class:`RecordError` (a ``ProtocolError``, and anyio's ``BrokenResourceError`` so stream
  users see a broken stream): a secure-channel record was tampered with, replayed, reordered,
  truncated or oversize; the connection is closed.
* :class:`IdentityError` (``ValueError``): a key file is corrupt, has unsafe permissions, or
  would overwrite a different key.

* :class:`CallTimeout` (``TimeoutError``): no response within the call's timeout.
* :class:`TeamTaskError` (``RuntimeError``): a team task failed or could not be awaited.

Arguments of the wrong type or value given to constructors raise plain ``TypeError`` /
``ValueError`` with a message naming the parameter.
"""

from __future__ import annotations

import anyio

__all__ = [
    "BAD_REQUEST",
    "INTERNAL_ERROR",
    "OVERLOADED",
    "CallTimeout",
    "ConnectError",
    "ConnectionLost",
    "FrameTooLarge",
    "HandshakeError",
    "HandshakeTimeout",
    "IdentityError",
    "IncompleteFrame",
    "InvalidMessageError",
    "PlaintextPeer",
    "ProtocolError",
    "RecordError",
    "RemoteError",
    "SynapseConnectionError",
    "SynapseError",
    "TeamTaskError",
]

#: Wire error code for malformed requests, unknown endpoints, bad arguments, membership
#: mismatches and unknown artifacts (as in synapse-p2p 2.5.0).
BAD_REQUEST = "bad_request"
#: Wire error code for an exception raised by a handler (as in synapse-p2p 2.5.0).
INTERNAL_ERROR = "internal_error"
#: Wire error code sent by our nodes when a connection exceeds its concurrent-request limit or
#: the node its connection limit. The request was not executed and may be retried.
OVERLOADED = "overloaded"


class SynapseError(Exception):
    """Base class of every exception raised by synapse-p2p."""


class RemoteError(SynapseError, RuntimeError):
    """The remote node answered a call with an error response.

    ``code`` is the wire error code and ``message`` the remote's message; ``str(exc)`` is the
    message, as with the reference client's ``RuntimeError``.
    """

    def __init__(self, code: str, message: str, *, endpoint: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.endpoint = endpoint

    def __repr__(self) -> str:
        return f"RemoteError(code={self.code!r}, message={self.message!r})"


class ProtocolError(SynapseError, ValueError):
    """Bytes received from a peer are not a valid frame or message."""


#: The reference implementation's name for :class:`ProtocolError`.
InvalidMessageError = ProtocolError


class FrameTooLarge(ProtocolError):
    """A frame's declared payload length is larger than the allowed maximum."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"frame too large: {size} > {limit}")
        self.size = size
        self.limit = limit


class IncompleteFrame(ProtocolError):
    """The stream ended in the middle of a frame."""

    def __init__(self, message: str = "incomplete frame") -> None:
        super().__init__(message)


class SynapseConnectionError(SynapseError, ConnectionError):
    """The connection to a peer failed."""


class ConnectError(SynapseConnectionError):
    """The peer could not be reached: refused, unreachable, or the connect timeout passed."""


class ConnectionLost(SynapseConnectionError):
    """The connection closed before a response arrived.

    The request may or may not have been executed by the remote node.
    """


class HandshakeError(SynapseConnectionError):
    """The secure channel's handshake failed; the connection is closed."""


class HandshakeTimeout(HandshakeError, TimeoutError):
    """The secure channel's handshake did not finish within its timeout."""


class PlaintextPeer(HandshakeError):
    """The peer answered a secure handshake in plaintext (synapse-p2p 2.5.0, or any server
    without the secure channel). Whether to retry in plaintext is the caller's policy."""


class RecordError(ProtocolError, anyio.BrokenResourceError):
    """A record of the secure channel failed authentication (tampered, replayed, reordered),
    was cut short or declared an oversize length. The stream cannot go on and is closed."""


class IdentityError(SynapseError, ValueError):
    """A node identity key file is corrupt, not a private Ed25519 key, readable by other
    users, or would overwrite a different key."""


class CallTimeout(SynapseError, TimeoutError):
    """No response arrived within the call's timeout. The remote may still execute it."""


class TeamTaskError(SynapseError, RuntimeError):
    """A team task failed, timed out, or is not known to the team."""
