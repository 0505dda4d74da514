"""Exceptions raised by the federation package.

Every class derives from :class:`synapse_p2p.errors.SynapseError` (through
:class:`FederationError`) *and* from the built-in exception that synapsekit 2.0.1 raised in the
same situation, so existing ``except KeyError`` / ``except LookupError`` /
``except RuntimeError`` / ``except TimeoutError`` handlers keep working:

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
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from synapse_p2p.errors import SynapseError

__all__ = [
    "AgentAttempt",
    "AgentTimeoutError",
    "AllAgentsFailedError",
    "FederationError",
    "NoAgentAvailableError",
    "NoClientError",
    "RegistryError",
    "UnknownAgentError",
]


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
