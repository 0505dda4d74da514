"""The worker side's driver: :class:`Worker` claims offers and runs granted tasks."""

from __future__ import annotations

import inspect
import logging
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskGroup, TaskStatus

from .._hub import EventStored
from .._logging import FailureLog
from .._service_group import ServiceGroup, close_service_group, open_service_group
from .._validate import check_seconds
from ..types import ConversationEvent
from ._protocol import (
    TASK_CLAIM,
    TASK_DONE,
    TASK_FAILED,
    TASK_GRANT,
    TASK_OFFER,
    TASK_PROGRESS,
    TASK_RELEASE,
)
from ._state import Cancel, Claim, ClaimBook, Start
from ._team import MAX_SLEEP

if TYPE_CHECKING:
    from ..node import Node

__all__ = ["Assignment", "TaskHandler", "Worker", "WorkerStatistics"]

log = logging.getLogger(__name__)

RELEASE_GRACE = 2.0  # seconds a stopping worker spends handing its attempts back
_RESERVED = frozenset({"task_id", "message", "attempt"})
_open_workers: weakref.WeakKeyDictionary[Node, Worker] = weakref.WeakKeyDictionary()


@dataclass(slots=True)
class Assignment:
    """A granted task as the worker's handler sees it.

    ``id``, ``title`` and ``spec`` come from the offer; ``attempt`` is the attempt granted to
    this worker (``None`` only with a team that numbers none), ``team_id`` the offering node.
    """

    id: str
    title: str
    spec: dict[str, Any]
    node: Node
    attempt: int | None = None
    requires: list[str] = field(default_factory=list)
    team_id: str = ""

    async def progress(self, message: str, **data: Any) -> None:
        """Tell the team how it goes (a ``task.progress`` event; it also renews the lease).

        ``data`` adds keys to the payload; ``task_id``, ``message`` and ``attempt`` are set by
        the worker, and passing them raises ``TypeError``. Returns once the event is stored and
        queued for every peer; raises like :meth:`Node.emit_conversation_event`
        (``ValueError`` for data too large to send, ``RuntimeError`` if the node stopped). If
        cancelled, the event may or may not have been sent.
        """
        clash = _RESERVED & data.keys()
        if clash:
            raise TypeError(f"progress data may not set {', '.join(sorted(clash))}")
        payload = {**data, "task_id": self.id, "message": str(message)}
        if self.attempt is not None:
            payload["attempt"] = self.attempt
        await self.node.emit_conversation_event(self.id, TASK_PROGRESS, payload)


TaskHandler = Callable[[Assignment], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class WorkerStatistics:
    """A snapshot of a worker's counters: handler runs started (``executions``), tasks
    ``running`` now, and open ``claims`` (made, not yet granted or refused)."""

    executions: int
    running: int
    claims: int


class Worker:
    """Claim the offers this node can do and run the handler for each attempt granted to it.

    Offers whose ``requires`` are all among the node's capability names are claimed (at most
    ``max_concurrent`` claims plus runs at once, if set; offers seen while full are claimed
    when a slot frees). A grant counts only if it comes from the offer's author, names this
    node and is for the claimed attempt. While the handler runs, a heartbeat ``task.progress``
    renews the lease every ``renew_interval`` seconds (more often if the grant says the lease
    is shorter), so a task may take hours without calling :meth:`Assignment.progress`. A
    claim without a grant is forgotten after ``claim_timeout`` seconds. If the handler raises,
    a ``task.failed`` carries ``str(exc)``; if the team re-offers a task (a newer attempt)
    while this worker still runs it, the run is cancelled and its result is never sent.

    Two ways to run it:

    * ``worker = Worker(node)`` and ``@worker.task`` before ``node.run()`` (as in the seed):
      the worker's service is a service of the node (``node.start_service``) and stops
      with the node;
    * ``async with Worker(node) as worker:``: runs in the block's own task group.

    A node has at most one open worker (both would run each task granted to the node):
    constructing another raises ``RuntimeError`` until the first is closed. Offers from any
    team are served, this node's own included.

    Stopping (leaving the block, :meth:`aclose`, or the node stopping) stops claiming and
    **cancels the running handlers**; each cancelled attempt is handed back with a
    ``task.release`` event (best effort, at most 2 s), so a team of this package re-offers it
    at once (a synapse-p2p 2.5.0 team, which ignores that kind, after its lease). To let
    running tasks finish first, ``await worker.drain()`` before leaving.
    """

    def __init__(
        self,
        node: Node,
        *,
        claim_timeout: float = 60,
        renew_interval: float = 60,
        max_concurrent: int | None = None,
    ) -> None:
        other = _open_workers.get(node)
        if other is not None and not other.closed:
            raise RuntimeError(f"{node!r} already has a Worker; close it first (aclose)")
        check_seconds("claim_timeout", claim_timeout)
        check_seconds("renew_interval", renew_interval)
        if max_concurrent is not None and (
            isinstance(max_concurrent, bool) or not isinstance(max_concurrent, int)
        ):
            raise TypeError(f"max_concurrent must be an int or None, got {max_concurrent!r}")
        if max_concurrent is not None and max_concurrent < 1:
            raise ValueError(f"max_concurrent must be at least 1, got {max_concurrent}")
        self.node = node
        self.claim_timeout = float(claim_timeout)
        self.renew_interval = float(renew_interval)
        self.max_concurrent = max_concurrent
        self._book = ClaimBook(
            node.node_id, claim_timeout=self.claim_timeout, max_concurrent=max_concurrent
        )
        self._handler: TaskHandler | None = None
        self._runs: dict[tuple[str, int | None], anyio.CancelScope] = {}
        self._backlog: list[Start] = []  # grants that came before the service started
        self._task_group: TaskGroup | None = None
        self._context_group: ServiceGroup | None = None
        self._wake: anyio.Event | None = None
        self._idle: anyio.Event | None = None
        self._closed = False
        self._entered = False
        self._executions = 0
        self._failures = FailureLog(log)
        # Subscribed now, so nothing that happens before the service runs is missed.
        self._events = node.subscribe(EventStored)
        _open_workers[node] = self
        node.start_service(self)

    def __repr__(self) -> str:
        return f"<Worker of {self.node!r}: {len(self._runs)} running>"

    def task(self, wrapped: TaskHandler) -> TaskHandler:
        """Decorator registering the one handler: ``async (Assignment) -> result`` (the result
        must be serializable: msgpack types)."""
        if not inspect.iscoroutinefunction(wrapped):
            raise TypeError("the task handler must be an async function")
        self._handler = wrapped
        return wrapped

    @property
    def closed(self) -> bool:
        """Whether the worker has stopped (it claims nothing any more)."""
        return self._closed

    def statistics(self) -> WorkerStatistics:
        """A frozen snapshot of the worker's counters."""
        return WorkerStatistics(self._executions, len(self._runs), len(self._book.pending))

    @property
    def running(self) -> frozenset[str]:
        """Ids of the tasks this worker is running now."""
        return frozenset(task_id for task_id, _ in self._runs)

    async def drain(self) -> None:
        """Stop claiming and wait until the running handlers end (their results are sent).
        Cancellation only stops the waiting."""
        self._book.accepting = False
        while self._runs:
            self._idle = anyio.Event()
            await self._idle.wait()

    async def aclose(self) -> None:
        """Stop: no more claims; running handlers are cancelled and handed back (see the
        class documentation). Idempotent."""
        self._closed = True
        self._book.accepting = False
        self.node.stop_service(self)
        self._events.close(discard=True)
        group, self._context_group = self._context_group, None
        if group is not None:
            await close_service_group(group)

    def _take_over(self) -> None:
        """The caller runs the service from now on, not the node."""
        if self._entered or self._closed:
            raise RuntimeError("this Worker's service already runs (or the worker is closed)")
        self._entered = True
        self.node.stop_service(self)

    async def __aenter__(self) -> Worker:
        self._take_over()
        self._context_group = await open_service_group(self._serve)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- the service ------------------------------------------------------------------------

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run the worker's service in your own task group (``await tg.start(worker.serve)``)
        instead of the node: it hosts the handler runs. Runs until cancelled,
        which stops the worker as leaving ``async with`` does (running handlers are cancelled
        and handed back). ``RuntimeError`` if the service already runs elsewhere."""
        self._take_over()
        try:
            await self._serve(task_status=task_status)
        finally:
            self._closed = True
            self._book.accepting = False

    async def _serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        group = anyio.create_task_group()
        try:
            async with group:
                self._task_group = group
                for start in self._backlog:
                    group.start_soon(self._run, start)
                self._backlog.clear()
                group.start_soon(self._take_events)
                task_status.started()
                while True:
                    await self._apply(self._book.tick(self._now()))
                    deadline = self._book.next_deadline()
                    delay = MAX_SLEEP if deadline is None else deadline - self._now()
                    self._wake = anyio.Event()
                    with anyio.move_on_after(min(max(delay, 0.0), MAX_SLEEP)):
                        await self._wake.wait()
        finally:
            if self._task_group is group:  # not a service that took over meanwhile
                self._task_group = None

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """The service as the node runs it (``Worker(node)``): see :meth:`serve` to run it
        in a task group of your own instead."""
        if self._entered or self._closed:  # taken over (or closed) before it started
            task_status.started()
            return
        await self._serve(task_status=task_status)

    async def _take_events(self) -> None:
        """Offers and grants, in order, while the service runs."""
        async for item in self._events:
            if self._closed:
                return
            assert isinstance(item, EventStored)
            if item.event.kind == TASK_OFFER:
                await self._on_offer(item.event)
            elif item.event.kind == TASK_GRANT:
                await self._on_grant(item.event)

    def _now(self) -> float:
        return self.node.wall_clock()

    async def _apply(self, actions: list[Claim | Start | Cancel]) -> None:
        for action in actions:
            if isinstance(action, Claim):
                offer = action.offer
                payload = {
                    "task_id": offer.task_id,
                    "attempt": offer.attempt,
                    "capabilities": [c.name for c in self.node.capabilities],
                }
                try:
                    event = await self.node.emit_conversation_event(
                        offer.task_id, TASK_CLAIM, payload, parent_id=offer.offer_id
                    )
                except (RuntimeError, TypeError, ValueError) as exc:
                    log.warning("could not claim task %s: %s", offer.task_id, exc)
                    continue
                self._book.claimed(offer.task_id, event.event_id)
                if self._wake is not None:
                    self._wake.set()  # a new claim deadline
            elif isinstance(action, Cancel):
                scope = self._runs.get((action.task_id, action.attempt))
                if scope is not None:
                    log.info("task %s was re-offered; stopping its stale run", action.task_id)
                    scope.cancel()
            elif self._task_group is not None:
                self._task_group.start_soon(self._run, action)
            else:
                self._backlog.append(action)

    # -- node events ------------------------------------------------------------------------

    def _capable(self, event: ConversationEvent) -> bool:
        requires = event.payload.get("requires") or []
        if self._handler is None or not isinstance(requires, list):
            return False
        return set(requires) <= {c.name for c in self.node.capabilities}

    async def _on_offer(self, event: ConversationEvent) -> None:
        if not self._closed:
            await self._apply(self._book.offer(self._now(), event, capable=self._capable(event)))

    async def _on_grant(self, event: ConversationEvent) -> None:
        if not self._closed:
            await self._apply(self._book.grant(self._now(), event))

    # -- running a task ---------------------------------------------------------------------

    async def _emit(self, task_id: str, kind: str, payload: dict[str, Any]) -> None:
        try:
            await self.node.emit_conversation_event(task_id, kind, payload)
        except (RuntimeError, TypeError, ValueError) as exc:
            log.warning("could not emit %s for task %s: %s", kind, task_id, exc)

    async def _renew(self, assignment: Assignment, interval: float) -> None:
        payload: dict[str, Any] = {
            "task_id": assignment.id,
            "message": "working",
            "heartbeat": True,
        }
        if assignment.attempt is not None:
            payload["attempt"] = assignment.attempt
        while True:
            await anyio.sleep(interval)
            await self._emit(assignment.id, TASK_PROGRESS, payload)

    async def _run(self, start: Start) -> None:
        offer = start.offer
        key = (offer.task_id, offer.attempt)
        fence = {} if offer.attempt is None else {"attempt": offer.attempt}
        if key in self._runs:
            return  # a duplicate grant of the attempt being run
        if self._closed or self._handler is None:  # granted while stopping: hand it back
            release = {"task_id": offer.task_id, **fence, "reason": "worker stopping"}
            await self._emit(offer.task_id, TASK_RELEASE, release)
            self._book.finished(self._now(), offer.task_id, offer.attempt)
            return
        handler = self._handler
        spec, requires = dict(offer.spec), list(offer.requires)
        assignment = Assignment(offer.task_id, offer.title, spec, self.node, offer.attempt,
                                requires, offer.team_id)  # fmt: skip
        interval = self.renew_interval
        if start.lease is not None:
            interval = min(interval, max(start.lease / 3, 0.01))
        self._executions += 1
        outcome: tuple[str, dict[str, Any]] | None = None
        scope = self._runs[key] = anyio.CancelScope()
        try:
            with scope:
                async with anyio.create_task_group() as group:
                    group.start_soon(self._renew, assignment, interval)
                    try:
                        result = await handler(assignment)
                    except Exception as exc:
                        self._failures.report(
                            getattr(handler, "__qualname__", "task handler"),
                            f"task {offer.task_id} failed on this worker:",
                            exc,
                        )
                        error = str(exc) or type(exc).__name__
                        failure = {"task_id": offer.task_id, "error": error,
                                   "type": type(exc).__name__}  # fmt: skip
                        outcome = (TASK_FAILED, failure)
                    else:
                        outcome = (TASK_DONE, {"task_id": offer.task_id, "result": result})
                    group.cancel_scope.cancel()
            if outcome is not None:  # None: cancelled as stale, nothing to say
                kind, payload = outcome
                try:
                    await self.node.emit_conversation_event(
                        offer.task_id, kind, {**payload, **fence}
                    )
                except (TypeError, ValueError) as exc:  # a result that cannot be sent
                    error = f"the result could not be sent: {exc}"
                    failed = {"task_id": offer.task_id, "error": error, **fence}
                    await self._emit(offer.task_id, TASK_FAILED, failed)
                except RuntimeError as exc:
                    log.warning("could not report task %s: %s", offer.task_id, exc)
        except anyio.get_cancelled_exc_class():
            with anyio.move_on_after(RELEASE_GRACE, shield=True):  # hand the attempt back
                release = {"task_id": offer.task_id, **fence, "reason": "worker stopping"}
                await self._emit(offer.task_id, TASK_RELEASE, release)
            raise
        finally:
            del self._runs[key]
            actions = self._book.finished(self._now(), offer.task_id, offer.attempt)
            if self._idle is not None and not self._runs:
                self._idle.set()
        await self._apply(actions)
