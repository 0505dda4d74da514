"""Team tasks granted to the node, held until the MCP client takes and finishes them.

A :class:`~synapse_p2p.teams.Worker` claims the offers the node's capabilities cover; its
handler does not run the task but puts the assignment on this desk and waits for the client:
``next_task`` takes it, ``progress`` reports, ``done`` or ``fail`` finish it (the worker then
emits ``task.done`` or ``task.failed``; while it waits, the worker renews the lease).

* The worker is opened by the first ``next_task`` call, so a client that never asks for tasks
  never claims any. At most ``capacity`` tasks are claimed or held at once.
* A task not taken within ``hold`` seconds, or taken and left without a report (progress,
  done or fail) for ``idle_timeout`` seconds, is **handed back** with a ``task.release``
  event: a team of this package re-offers it at once (as a new attempt). A synapse-p2p 2.5.0
  team ignores releases; if no re-offer cancels the run within :data:`RELEASE_WAIT` seconds,
  the task is failed with the reason, rather than held forever.
* If the team moves on (a re-offer, the node stopping), the held task is withdrawn; a later
  report about it is refused with the reason.
"""

from __future__ import annotations

import logging
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskGroup

from ..teams import TASK_RELEASE, Assignment, Worker
from ._inbox import GONE_LIMIT, InboxError

if TYPE_CHECKING:
    from ..node import Node

__all__ = ["HeldTask", "TaskDesk"]

log = logging.getLogger(__name__)

#: After handing a task back, how long to wait for the team's re-offer to cancel the run.
RELEASE_WAIT = 10.0


class _HandedBack(Exception):
    pass


@dataclass(eq=False)
class HeldTask:
    """A granted task waiting for (or taken by) the client."""

    assignment: Assignment
    received_at: float
    touched_at: float
    taken: anyio.Event = field(default_factory=anyio.Event)
    reported: anyio.Event = field(default_factory=anyio.Event)
    outcome: tuple[bool, Any] | None = None  # (ok, result or error text)

    @property
    def id(self) -> str:
        return self.assignment.id

    def describe(self) -> dict[str, Any]:
        a = self.assignment
        return {
            "task_id": a.id,
            "title": a.title,
            "spec": a.spec,
            "requires": a.requires,
            "attempt": a.attempt,
            "team_id": a.team_id,
        }


class TaskDesk:
    """The queue of team tasks for one node (see the module documentation)."""

    def __init__(
        self,
        node: Node,
        task_group: TaskGroup,
        *,
        capacity: int = 4,
        hold: float = 120.0,
        idle_timeout: float = 3600.0,
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.node = node
        self.capacity = capacity
        self.hold = float(hold)
        self.idle_timeout = float(idle_timeout)
        self._task_group = task_group
        self._worker: Worker | None = None
        self._queue: deque[HeldTask] = deque()
        self._taken: dict[str, HeldTask] = {}
        self._gone: OrderedDict[str, str] = OrderedDict()
        self._arrived = anyio.Event()

    @property
    def worker(self) -> Worker | None:
        """The worker, once the client asked for tasks."""
        return self._worker

    async def open_worker(self) -> None:
        """Start claiming tasks (idempotent). ``RuntimeError`` if the node has another open
        :class:`~synapse_p2p.teams.Worker`."""
        if self._worker is not None:
            return
        worker = Worker(self.node, max_concurrent=self.capacity)
        worker.task(self._handle)
        self._worker = worker
        await self._task_group.start(worker.serve)

    # -- the worker's handler -----------------------------------------------------------------

    async def _handle(self, assignment: Assignment) -> Any:
        now = anyio.current_time()
        held = HeldTask(assignment, received_at=now, touched_at=now)
        self._queue.append(held)
        self._arrived.set()
        try:
            with anyio.move_on_after(self.hold):
                await held.taken.wait()
            if not held.taken.is_set():
                await self._hand_back(held, f"no agent took it within {self.hold:g} s")
            while held.outcome is None:
                left = held.touched_at + self.idle_timeout - anyio.current_time()
                if left <= 0:
                    await self._hand_back(
                        held, f"the agent sent no report for {self.idle_timeout:g} s"
                    )
                with anyio.move_on_after(left):
                    await held.reported.wait()
                held.reported = anyio.Event()
            ok, value = held.outcome
            if ok:
                self._forget(held, "it is done")
                return value
            self._forget(held, "it failed")
            raise RuntimeError(str(value))
        finally:
            if held.id in self._taken or held in self._queue:
                self._forget(held, "the team moved on (re-offered, or this node is stopping)")

    async def _hand_back(self, held: HeldTask, reason: str) -> None:
        """Release the attempt; the team's re-offer cancels this run. Raises (failing the
        task) only if no re-offer comes within :data:`RELEASE_WAIT` seconds."""
        a = held.assignment
        log.info("handing task %s back: %s", a.id, reason)
        self._forget(held, f"handed back: {reason}")
        payload: dict[str, Any] = {"task_id": a.id, "reason": reason}
        if a.attempt is not None:
            payload["attempt"] = a.attempt
        await self.node.emit_conversation_event(a.id, TASK_RELEASE, payload)
        await anyio.sleep(RELEASE_WAIT)
        raise _HandedBack(f"{reason}; handed back, but the team did not re-offer it")

    # -- the client side ----------------------------------------------------------------------

    async def take(self, timeout: float) -> HeldTask | None:
        """The oldest waiting task, taken, or None after ``timeout`` seconds."""
        await self.open_worker()
        held: HeldTask | None = None
        with anyio.move_on_after(timeout):
            while held is None:
                if self._queue:
                    held = self._queue.popleft()
                    break
                if self._arrived.is_set():
                    self._arrived = anyio.Event()
                await self._arrived.wait()  # shared by every waiter: one set() wakes them all
        if held is None:
            return None
        held.touched_at = anyio.current_time()
        self._taken[held.id] = held
        held.taken.set()
        return held

    def _held(self, task_id: str) -> HeldTask:
        held = self._taken.get(task_id)
        if held is not None:
            return held
        if any(h.id == task_id for h in self._queue):
            raise InboxError(f"task {task_id} is not taken yet: take it with next_task first")
        reason = self._gone.get(task_id)
        if reason is not None:
            raise InboxError(f"task {task_id} is no longer this node's: {reason}")
        raise InboxError(f"no task {task_id!r} assigned to this node (ids come from next_task)")

    async def progress(self, task_id: str, message: str, data: dict[str, Any]) -> None:
        """Report progress (it renews the lease). Raises :class:`InboxError` for a task that
        is not taken, ``TypeError``/``ValueError`` for data that cannot be sent."""
        held = self._held(task_id)
        await held.assignment.progress(message, **data)
        held.touched_at = anyio.current_time()
        held.reported.set()

    def finish(self, task_id: str, *, result: Any = None, error: str | None = None) -> None:
        """Finish a taken task: the worker emits ``task.done`` with ``result``, or
        ``task.failed`` with ``error``."""
        held = self._held(task_id)
        held.outcome = (True, result) if error is None else (False, error)
        self._taken.pop(task_id, None)
        held.reported.set()

    def pending(self) -> int:
        return len(self._queue)

    def open_tasks(self) -> list[HeldTask]:
        return list(self._taken.values())

    def _forget(self, held: HeldTask, reason: str) -> None:
        self._taken.pop(held.id, None)
        try:
            self._queue.remove(held)
        except ValueError:
            pass
        self._gone[held.id] = reason
        self._gone.move_to_end(held.id)
        while len(self._gone) > GONE_LIMIT:
            self._gone.popitem(last=False)
