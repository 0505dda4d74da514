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
* :class:`JoinError` (``ConnectionError``): no seed could be joined.
* :class:`MdnsError` (``OSError``): zeroconf could not start, register or update the service.
* :class:`ConversationLogError` (``RuntimeError``): a conversation log operation failed;
  :class:`ConversationLogClosed` (used after closing), :class:`UnknownCursorError` (also a
  ``LookupError``: a paging cursor that was compacted away).
* :class:`DroppedCall`: a queued call to a peer was dropped because that peer's queue was full.
* :class:`FederationError` and its subclasses, raised by :mod:`synapse_p2p.federation`. Each
  also derives from the built-in exception synapsekit 2.0.1 raised in the same situation:

  ========================  ====================  ==============================================
  class                     built-in base         raised when
  ========================  ====================  ==============================================
  UnknownAgentError         ``KeyError``          an agent id is not in the registry
  NoClientError             ``KeyError``          no :class:`AgentClient` is attached to an agent
  NoAgentAvailableError     ``LookupError``       nothing matches the filters, or the named agent
                                                  is unhealthy or has no capacity
  AgentTimeoutError         ``TimeoutError``      an attempt, or the wait for a free slot, ran
                                                  out of time
  AllAgentsFailedError      ``RuntimeError`` and  every attempt of a routed ``run()`` failed; it
                            ``ExceptionGroup``    carries every attempt's error
  RegistryError             ``RuntimeError``      a registry backend is misconfigured or broken
  ========================  ====================  ==============================================

Arguments of the wrong type or value given to constructors raise plain ``TypeError`` /
``ValueError`` with a message naming the parameter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import anyio

__all__ = [
    "BAD_REQUEST",
    "FORBIDDEN",
    "INTERNAL_ERROR",
    "OVERLOADED",
    "A2AAgentError",
    "AgentAttempt",
    "AgentTimeoutError",
    "AllAgentsFailedError",
    "CallTimeout",
    "ConnectError",
    "ConnectionLost",
    "ConversationLogClosed",
    "ConversationLogError",
    "DroppedCall",
    "FederationError",
    "FrameTooLarge",
    "HandshakeError",
    "HandshakeTimeout",
    "IdentityError",
    "IncompleteFrame",
    "InvalidMessageError",
    "JoinError",
    "MdnsError",
    "NoAgentAvailableError",
    "NoClientError",
    "PlaintextPeer",
    "ProtocolError",
    "RecordError",
    "RegistryError",
    "RelayClosed",
    "RelayRefused",
    "RemoteError",
    "SynapseConnectionError",
    "SynapseError",
    "TeamTaskError",
    "UnknownAgentError",
    "UnknownCursorError",
]

#: Wire error code for malformed requests, unknown endpoints, bad arguments, membership
#: mismatches and unknown artifacts (as in synapse-p2p 2.5.0).
BAD_REQUEST = "bad_request"
#: Wire error code for an exception raised by a handler (as in synapse-p2p 2.5.0).
INTERNAL_ERROR = "internal_error"
#: Wire error code sent by our nodes when a connection exceeds its concurrent-request limit or
#: the node its connection limit. The request was not executed and may be retried.
OVERLOADED = "overloaded"
#: Wire error code sent by our nodes when the caller is not allowed to call the endpoint
#: (``@node.endpoint(allow=...)``, or a members-only built-in of a secured swarm).
FORBIDDEN = "forbidden"


class SynapseError(Exception):
    """Base class of every exception raised by synapse-p2p."""


class RemoteError(SynapseError, RuntimeError):
    """The remote node answered a call with an error response.

    ``code`` is the wire error code and ``message`` the remote's message; ``str(exc)`` is the
    message, as with the reference client's ``RuntimeError``. ``type`` is the class name of
    the exception the remote handler raised (``"KeyError"``...) when the remote node is one
    of ours, else ``None``.
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        endpoint: str | None = None,
        type: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.endpoint = endpoint
        self.type = type

    def __repr__(self) -> str:
        return f"RemoteError(code={self.code!r}, message={self.message!r})"


class ProtocolError(SynapseError, ValueError):
    """Bytes received from a peer are not a valid frame or message."""


#: The reference implementation's name for :class:`ProtocolError`.
InvalidMessageError = ProtocolError


class FrameTooLarge(ProtocolError):
    """A frame's declared payload length is larger than the allowed maximum."""

    def __init__(self, size: int, limit: int, sample: bytes = b"") -> None:
        message = f"frame too large: {size} > {limit}"
        text = _printable(sample)
        if text:  # a text protocol (SSH, HTTP, SMTP...) answered, not synapse-p2p
            message += f" (the peer sent {text!r}: it does not speak synapse-p2p)"
        super().__init__(message)
        self.size = size
        self.limit = limit
        self.sample = sample


def _printable(sample: bytes) -> str:
    """``sample`` as text if it starts like a line of a text protocol, else ``""``."""
    head = sample.split(b"\r", 1)[0].split(b"\n", 1)[0][:40]
    if len(head) < 4 or not all(32 <= b < 127 for b in head):
        return ""
    return head.decode("ascii")


class IncompleteFrame(ProtocolError):
    """The stream ended in the middle of a frame."""

    def __init__(self, message: str = "incomplete frame") -> None:
        super().__init__(message)


class SynapseConnectionError(SynapseError, ConnectionError):
    """The connection to a peer failed."""


class ConnectError(SynapseConnectionError):
    """The peer could not be reached: refused, unreachable, or the connect timeout passed.

    ``refused`` is True when the peer's host answered that nothing listens there (a node that
    stopped or crashed), as opposed to no answer in time or no route."""

    def __init__(self, message: str, *, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused


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
    without the secure channel). Whether to retry in plaintext is the caller's policy.
    ``sample``: the first bytes the peer sent (empty if it closed without a word)."""

    def __init__(self, message: str, sample: bytes = b"") -> None:
        super().__init__(message)
        self.sample = sample

    def speaks_text(self) -> bool:
        """Whether the peer answered with a line of a text protocol (SSH, HTTP, SMTP...)."""
        return bool(_printable(self.sample))


class RecordError(ProtocolError, anyio.BrokenResourceError):
    """A record of the secure channel failed authentication (tampered, replayed, reordered),
    was cut short or declared an oversize length. The stream cannot go on and is closed."""


class RelayRefused(ConnectError):
    """A relay refused a reservation or a circuit (``code``: ``"reservations_full"``,
    ``"unknown_target"``, ``"too_many_circuits"``, ``"target_unreachable"``, ``"bad_request"``,
    ``"not_relay"``); ``relay`` is its ``host:port``. Nothing was relayed."""

    def __init__(self, code: str, message: str, *, relay: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.relay = relay


class RelayClosed(SynapseConnectionError, anyio.BrokenResourceError):
    """A relay closed a circuit while it was in use: a limit of the relay was reached
    (``code``: ``"byte_limit"``, ``"time_limit"``) or the other party went away
    (``"peer_gone"``). Raised by the circuit's stream, so the layers above see a broken
    connection."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class IdentityError(SynapseError, ValueError):
    """A node identity key file is corrupt, not a private Ed25519 key, readable by other
    users, or would overwrite a different key."""


class CallTimeout(SynapseError, TimeoutError):
    """No response arrived within the call's timeout. The remote may still execute it."""


class TeamTaskError(SynapseError, RuntimeError):
    """A team task failed, timed out, or is not known to the team.

    ``type`` is the class name of the worker's exception for a failed task (``"KeyError"``)
    when the worker said, else ``None``.
    """

    def __init__(self, message: str, *, type: str | None = None) -> None:
        super().__init__(message)
        self.type = type


class JoinError(SynapseError, ConnectionError):
    """No seed could be joined; ``reasons`` maps each ``host:port`` to what went wrong."""

    def __init__(self, reasons: dict[str, str]) -> None:
        detail = "; ".join(f"{seed}: {reason}" for seed, reason in reasons.items())
        super().__init__(f"could not join any seed ({detail})")
        self.reasons = reasons


class MdnsError(SynapseError, OSError):
    """zeroconf could not start, register or update the service (wraps zeroconf's error)."""


class ConversationLogError(SynapseError, RuntimeError):
    """A conversation log operation failed; a failed write stored nothing."""


class ConversationLogClosed(ConversationLogError):
    """The conversation log was used after ``aclose()``/``close()``."""


class UnknownCursorError(ConversationLogError, LookupError):
    """``events(after=...)`` named an event this conversation does not hold (any more).

    The event was compacted away or pruned since the previous page was read; restart the
    listing (for example from ``since=horizon(cid)``).
    """


class DroppedCall(SynapseError):
    """A queued call was dropped because its peer's queue was full."""


# -- federation -------------------------------------------------------------------------------


class FederationError(SynapseError):
    """Base class of every exception raised by :mod:`synapse_p2p.federation`."""


class _KeyMessage(KeyError):
    # KeyError's str() quotes its argument; these carry sentences, not keys.
    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class UnknownAgentError(FederationError, _KeyMessage):
    """The agent id is not registered (``str(exc)`` is ``"Unknown agent id: <id>"``)."""

    def __init__(self, agent_id: str) -> None:
        super().__init__(f"Unknown agent id: {agent_id}")
        self.agent_id = agent_id


class NoClientError(FederationError, _KeyMessage):
    """No client is attached to the agent, neither under its id nor under its endpoint."""

    def __init__(self, agent_id: str) -> None:
        super().__init__(f"No AgentClient registered for agent: {agent_id}")
        self.agent_id = agent_id


class NoAgentAvailableError(FederationError, LookupError):
    """No agent can take the call: nothing matches, or the named agent is unusable."""


class AgentTimeoutError(FederationError, TimeoutError):
    """An attempt did not finish within ``timeout`` seconds, or no slot freed up in time.

    ``agent_id`` is the agent that timed out, or ``None`` when the run timed out waiting for
    any matching agent to have a free slot. The agent's work may still be going on (a sync
    agent keeps its worker thread until it returns).
    """

    def __init__(self, message: str, *, agent_id: str | None, timeout: float | None) -> None:
        super().__init__(message)
        self.agent_id = agent_id
        self.timeout = timeout


class RegistryError(FederationError, RuntimeError):
    """A registry backend is unusable (for example a Redis key of the wrong type)."""


@dataclass(frozen=True, slots=True)
class AgentAttempt:
    """One failed attempt of a routed :meth:`AgentFederation.run`.

    ``agent_id`` is ``None`` for a wait for a free slot that timed out; ``elapsed`` is in
    seconds.
    """

    agent_id: str | None
    error: Exception
    elapsed: float


class AllAgentsFailedError(FederationError, ExceptionGroup[Exception], RuntimeError):
    """Every attempt of a routed run failed.

    ``attempts`` lists every attempt in order (agent id, error, elapsed seconds) and
    ``exceptions`` holds the same errors, so ``except* TimeoutError`` works; ``__cause__`` is
    the last error, as in synapsekit. ``str(exc)`` starts with
    ``"All N candidate agents failed for the task."``.
    """

    attempts: tuple[AgentAttempt, ...]

    def __new__(cls, attempts: Sequence[AgentAttempt]) -> AllAgentsFailedError:
        errors = [attempt.error for attempt in attempts]
        self = super().__new__(cls, _summary(attempts), errors)
        self.attempts = tuple(attempts)
        return self

    def __init__(self, attempts: Sequence[AgentAttempt]) -> None:
        super().__init__(_summary(attempts), [attempt.error for attempt in attempts])

    def derive(self, excs: Sequence[Exception]) -> ExceptionGroup[Exception]:  # type: ignore[override]
        return ExceptionGroup(self.message, excs)


def _summary(attempts: Sequence[AgentAttempt]) -> str:
    lines = [f"All {len(attempts)} candidate agents failed for the task."]
    for attempt in attempts:
        who = attempt.agent_id if attempt.agent_id is not None else "<waiting for a slot>"
        lines.append(f"  {who}: {type(attempt.error).__name__}: {attempt.error}")
    return "\n".join(lines)


class A2AAgentError(FederationError, RuntimeError):
    """An A2A agent could not be reached, refused the request, or its task did not complete
    (``state`` is the A2A task state name when there was a task)."""

    def __init__(self, message: str, *, state: str | None = None) -> None:
        super().__init__(message)
        self.state = state
