"""Agent clients: the protocol the federation calls, and the adapter for local agents."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import anyio
import anyio.to_thread

__all__ = ["AgentClient", "LocalAgentClient", "coerce_client"]

logger = logging.getLogger(__name__)

_METHODS = ("arun", "run", "aexecute", "execute", "ainvoke", "invoke")


@runtime_checkable
class AgentClient(Protocol):
    """What :class:`AgentFederation` calls to run a prompt on one agent.

    ``run`` is a coroutine; it receives the prompt and every keyword argument of
    ``AgentFederation.run`` that the federation does not consume. It is cancelled when the
    attempt times out or the caller is cancelled, and should let ``Cancelled`` propagate.
    A client that dispatches to a remote node's ask handler implements this protocol.
    """

    async def run(self, prompt: str, **kwargs: Any) -> Any: ...


def _is_coroutine_function(func: object) -> bool:
    if inspect.iscoroutinefunction(func):
        return True
    call = getattr(type(func), "__call__", None)  # noqa: B004 - the class's, not the instance's
    return not inspect.isroutine(func) and inspect.iscoroutinefunction(call)


def _boxed(func: Callable[..., Any], prompt: str, kwargs: dict[str, Any]) -> tuple[Any]:
    return (func(prompt, **kwargs),)


def _target(executor: object) -> Callable[..., Any]:
    if callable(executor) and not any(hasattr(executor, name) for name in _METHODS):
        return executor
    for name in _METHODS:
        method = getattr(executor, name, None)
        if method is not None and callable(method):
            return method  # type: ignore[no-any-return]
    raise TypeError(
        "LocalAgentClient requires an executor with run/arun, execute/aexecute, "
        "invoke/ainvoke, or a callable executor."
    )


class LocalAgentClient:
    """Adapts an in-process agent (an executor object or a callable) to :class:`AgentClient`.

    Dispatch, checked at construction (an unusable executor raises :class:`TypeError` at
    once) and resolved again on each call: a callable with none of the method names below is
    called directly; otherwise the first callable of ``arun``, ``run``, ``aexecute``,
    ``execute``, ``ainvoke``, ``invoke`` is called with ``(prompt, **kwargs)``.

    ``async def`` targets run on the event loop. Sync targets run in a worker thread
    (:func:`anyio.to_thread.run_sync`, optionally bounded by ``limiter``), so they never block
    the loop and timeouts and cancellation take effect at once; the abandoned thread finishes
    its call in the background and its result is dropped. A sync target that returns an
    awaitable has it awaited on the loop. ``sync_in_thread=False`` calls sync targets on the
    loop thread instead (only for trivial, non-blocking functions).
    """

    def __init__(
        self,
        executor: Any,
        *,
        sync_in_thread: bool = True,
        limiter: anyio.CapacityLimiter | None = None,
    ) -> None:
        _target(executor)
        self.executor = executor
        self.sync_in_thread = sync_in_thread
        self.limiter = limiter

    async def run(self, prompt: str, **kwargs: Any) -> Any:
        """Run the executor on ``prompt``; its exceptions propagate unchanged."""
        target = _target(self.executor)
        if _is_coroutine_function(target) or not self.sync_in_thread:
            result = target(prompt, **kwargs)
        else:
            # boxed: trio refuses a thread result that is a coroutine
            (result,) = await anyio.to_thread.run_sync(
                functools.partial(_boxed, target, prompt, kwargs),
                abandon_on_cancel=True,
                limiter=self.limiter,
            )
        if inspect.isawaitable(result):
            result = await result
        return result

    def __repr__(self) -> str:
        return f"LocalAgentClient({self.executor!r})"


def coerce_client(client: Any) -> AgentClient:
    """Use ``client`` as is when its ``run`` is a coroutine function (or it is a
    :class:`LocalAgentClient`); wrap anything else in :class:`LocalAgentClient`, which prefers
    an async ``arun`` over a sync ``run`` and runs sync code in a worker thread.

    Raises :class:`TypeError` when ``client`` has nothing that can be called.
    """
    if isinstance(client, LocalAgentClient):
        return client
    run = getattr(client, "run", None)
    if run is not None and _is_coroutine_function(run):
        return client  # type: ignore[no-any-return]
    return LocalAgentClient(client)
