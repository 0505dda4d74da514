"""The offering side's driver: :class:`Team` runs a :class:`~._state.TaskTable` on a node."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskStatus

from .._hub import ConversationCompacted, EventStored, PeerJoined, PeerLeft, PeerOffline
from .._service_group import ServiceGroup, close_service_group, open_service_group
from .._validate import check_optional_seconds, check_seconds
from ..conversations import new_nonce
from ..errors import TeamTaskError
from ..types import ConversationEvent, Peer
from ._protocol import TASK_CLAIM, TASK_DONE, TASK_FAILED, TASK_PROGRESS, TASK_RELEASE, TeamTask
from ._state import Emit, Finished, TaskTable

if TYPE_CHECKING:
    from ..node import Node

__all__ = ["Team", "TeamStatistics"]

log = logging.getLogger(__name__)

MAX_SLEEP = 60.0  # the service loop looks at its table at least this often
_TEAM_KINDS = frozenset((TASK_CLAIM, TASK_PROGRESS, TASK_DONE, TASK_FAILED, TASK_RELEASE))


@dataclass(frozen=True, slots=True)
class TeamStatistics:
    """A snapshot of a team's counters.

    ``grants`` issued (one per attempt), ``reoffers`` (attempts after the first),
    ``announcements`` (unclaimed offers announced again), ``finished`` (tasks this team saw
    finish, each counted once; restored results are not counted), ``open`` tasks and the
    ``tasks`` it knows.
    """

    grants: int
    reoffers: int
    announcements: int
    finished: int
    open: int
    tasks: int


class Team:
    """Offer tasks to the swarm; each attempt of a task is granted to exactly one worker.

    ``lease`` (seconds): how long an assignee may stay silent before its attempt is re-offered
    (workers renew it automatically while their handler runs). An assignee that membership
    declares offline, or that hands its attempt back, is re-offered at once. ``max_attempts``
    caps the attempts (a re-offer past it fails the task); unclaimed offers are re-announced
    (after 2 s, doubling up to ``lease``, and 0.2 s after any peer joins) without using up an
    attempt. ``task_retention`` (seconds) forgets finished tasks that long after they finished.

    Two ways to run it, both on a node of your own:

    * ``team = Team(node)`` (as in the seed): its background service is a service of the node
      (``node.start_service``) and stops with the node;
    * ``async with Team(node) as team:``: the service runs in the block's own task group; leaving
      the block cancels it and closes the team (handlers ignore further events, waiters get
      :class:`~synapse_p2p.errors.TeamTaskError`). :meth:`aclose` closes a seed-style team.

    Fencing: a claim counts only for the current attempt; progress, results and failures only
    from the current attempt's assignee (by peer id); the first valid ``task.done`` or
    ``task.failed`` wins. A ``task.failed`` fails the task (it is not retried).
    """

    def __init__(
        self,
        node: Node,
        *,
        lease: float = 300,
        max_attempts: int | None = None,
        task_retention: float | None = None,
    ) -> None:
        check_seconds("lease", lease)
        check_optional_seconds("task_retention", task_retention)
        if max_attempts is not None and (
            isinstance(max_attempts, bool) or not isinstance(max_attempts, int)
        ):
            raise TypeError(f"max_attempts must be an int or None, got {max_attempts!r}")
        if max_attempts is not None and max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        self.node = node
        self.lease = float(lease)
        self.max_attempts = max_attempts
        self.task_retention = task_retention
        self._table = TaskTable(
            node.node_id, lease=self.lease, max_attempts=max_attempts, task_retention=task_retention
        )
        self._waiters: dict[str, anyio.Event] = {}
        self._wake: anyio.Event | None = None
        self._sleep_until = -math.inf
        self._closed = False
        self._entered = False
        self._task_group: ServiceGroup | None = None
        # Subscribed now, so nothing that happens before the service runs is missed.
        self._events = node.subscribe(
            EventStored, PeerJoined, PeerOffline, PeerLeft, ConversationCompacted
        )
        node.start_service(self)

    def __repr__(self) -> str:
        return f"<Team of {self.node!r}: {len(self._table.tasks)} tasks>"

    # -- public API -----------------------------------------------------------------------

    @property
    def tasks(self) -> Mapping[str, TeamTask]:
        """The tasks by id (a read-only live view; finished ones stay until ``task_retention``)."""
        return MappingProxyType(self._table.tasks)

    def statistics(self) -> TeamStatistics:
        """A frozen snapshot of the team's counters."""
        table = self._table
        return TeamStatistics(
            grants=table.grants,
            reoffers=table.reoffers,
            announcements=table.announcements,
            finished=table.finished,
            open=sum(not t.finished for t in table.tasks.values()),
            tasks=len(table.tasks),
        )

    async def offer(
        self,
        title: str,
        *,
        spec: dict[str, Any] | None = None,
        requires: list[str] | None = None,
    ) -> TeamTask:
        """Offer a task (its id is a new UUIDv7) to every worker whose capabilities cover
        ``requires``; returns the task's record once the offer is stored and queued for every
        peer.

        ``TypeError`` for arguments of the wrong type, ``RuntimeError`` if the team is closed or
        the node not running, ``ValueError`` if the offer is too large for peers: the task is
        then not kept. If cancelled, the task stays in :attr:`tasks` and is (re-)announced by
        the service.
        """
        if self._closed:
            raise RuntimeError("the team is closed")
        if not isinstance(title, str):
            raise TypeError(f"title must be a str, got {type(title).__name__}")
        if spec is not None and not isinstance(spec, dict):
            raise TypeError(f"spec must be a dict or None, got {type(spec).__name__}")
        if isinstance(requires, str) or not all(isinstance(r, str) for r in requires or ()):
            raise TypeError("requires must be a list of capability names")
        task, emit = self._table.offer(
            self._now(), new_nonce(), title, dict(spec or {}), list(requires or [])
        )
        try:
            await self._emit(emit)
        except Exception:
            self._table.withdraw(task.id)
            raise
        self._poke()
        return task

    async def wait(self, task: TeamTask | str, *, timeout: float | None = None) -> Any:
        """Wait until ``task`` (a record or an id) finishes; return its result.

        Raises :class:`~synapse_p2p.errors.TeamTaskError` if the task failed (the message is
        its error), if ``timeout`` seconds pass first (the task goes on), if the team is closed
        before it finishes, or if the task is unknown (an id this team never had or has
        forgotten after ``task_retention``). A finished record is answered from itself, so
        waiting on it works after the team forgot it. Cancellation leaves the task alone.
        """
        record = self._record(task)
        if not record.finished:
            if self._closed:
                raise TeamTaskError(f"the team is closed; task {record.id} is unfinished")
            waiter = self._waiters.get(record.id)
            if waiter is None:
                waiter = self._waiters[record.id] = anyio.Event()
            with anyio.move_on_after(math.inf if timeout is None else timeout):
                await waiter.wait()
            if not record.finished:
                if self._closed:
                    raise TeamTaskError(f"the team closed before task {record.id} finished")
                raise TeamTaskError(f"task {record.id} timed out: {record.title}")
        if record.status == "failed":
            raise TeamTaskError(record.error or f"task {record.id} failed", type=record.error_type)
        return record.result

    def restore(self) -> int:
        """Rebuild the task table from the node's conversation log (sync: the log's reads are).

        Adopts every task whose offer was authored by this node's ``node_id``: a team that must
        survive restarts needs a durable log (``SqliteConversationLog``) **and** a fixed
        identity (``Node(identity="architect.key")``: the default key, and so the id, is new
        at every start; names are not trusted).
        Finished tasks come back with their results; unclaimed ones are re-announced at once;
        claimed ones keep their assignee until its lease (counted from its last accepted event)
        runs out, then are re-offered. Returns how many tasks were adopted. Errors of the log
        (``ConversationLogError``) propagate; every task adopted before one stays adopted.
        Several teams on one node would each adopt the same tasks: restore with one.
        """
        log_ = self.node.conversation_log
        conversations = ((cid, log_.events(cid)) for cid in log_.conversations())
        adopted = self._table.restore(self._now(), conversations)
        self._poke()
        return adopted

    async def aclose(self) -> None:
        """Close the team: stop its service, ignore further events, fail pending waits with
        :class:`~synapse_p2p.errors.TeamTaskError`. Idempotent; tasks are kept in
        :attr:`tasks` (and in the conversation log)."""
        self._closed = True
        self.node.stop_service(self)
        self._events.close(discard=True)
        if self._task_group is not None:
            self._task_group.cancel_scope.cancel()
        for waiter in self._waiters.values():
            waiter.set()
        self._waiters.clear()

    def _take_over(self) -> None:
        """The caller runs the service from now on, not the node."""
        if self._entered or self._closed:
            raise RuntimeError("this Team's service already runs (or the team is closed)")
        self._entered = True
        self.node.stop_service(self)

    async def __aenter__(self) -> Team:
        self._take_over()
        self._task_group = await open_service_group(self._serve)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        task_group, self._task_group = self._task_group, None
        await self.aclose()
        if task_group is not None:
            await close_service_group(task_group)

    # -- the service ------------------------------------------------------------------------

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run the team's service in your own task group (``await tg.start(team.serve)``)
        instead of the node: lease expiry, re-announcements, retention. Runs until
        cancelled, which closes the team (as leaving ``async with`` does). ``RuntimeError`` if
        the service already runs in a block or another ``serve``, or the team is closed."""
        self._take_over()
        try:
            await self._serve(task_status=task_status)
        finally:
            await self.aclose()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """The service as the node runs it (``Team(node)``): see :meth:`serve` to run it in a
        task group of your own instead."""
        if self._entered or self._closed:  # taken over (or closed) before it started
            task_status.started()
            return
        await self._serve(task_status=task_status)

    async def _serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._take_events)
            task_status.started()
            await self._tick_loop()
            tg.cancel_scope.cancel()

    async def _take_events(self) -> None:
        """The node's events, in order, while the service runs."""
        async for item in self._events:
            if self._closed:
                return
            if isinstance(item, EventStored):
                if item.event.kind in _TEAM_KINDS:
                    await self._on_task_event(item.event)
            elif isinstance(item, PeerJoined):
                await self._on_peer_joined(item.peer)
            elif isinstance(item, PeerOffline | PeerLeft):
                await self._on_peer_offline(item.peer)
            elif isinstance(item, ConversationCompacted):
                await self._on_compacted(item.summary)

    async def _tick_loop(self) -> None:
        while not self._closed:
            actions = self._table.tick(self._now(), self.node.conversation)
            await self._apply(actions)
            deadline = self._table.next_deadline()
            delay = MAX_SLEEP if deadline is None else deadline - self._now()
            delay = min(max(delay, 0.0), MAX_SLEEP)
            self._sleep_until = self._now() + delay
            self._wake = anyio.Event()
            with anyio.move_on_after(delay):
                await self._wake.wait()

    def _now(self) -> float:
        return self.node.wall_clock()

    def _poke(self) -> None:
        """Wake the service if the table now has something due before it planned to look."""
        deadline = self._table.next_deadline()
        if self._wake is not None and deadline is not None and deadline < self._sleep_until:
            self._wake.set()

    async def _emit(self, action: Emit) -> ConversationEvent:
        return await self.node.emit_conversation_event(
            action.task_id, action.kind, action.payload, parent_id=action.parent_id
        )

    async def _apply(self, actions: list[Emit | Finished]) -> None:
        for action in actions:
            if isinstance(action, Finished):
                waiter = self._waiters.pop(action.task.id, None)
                if waiter is not None:
                    waiter.set()
                continue
            try:
                await self._emit(action)
            except (RuntimeError, TypeError, ValueError) as exc:
                log.warning("could not emit %s for task %s: %s", action.kind, action.task_id, exc)

    # -- node events ------------------------------------------------------------------------

    def _record(self, task: TeamTask | str) -> TeamTask:
        if isinstance(task, TeamTask):
            known = self._table.tasks.get(task.id)
            if known is None and not task.finished:
                raise TeamTaskError(f"task {task.id} is not known to this team")
            return task if known is None else known
        if isinstance(task, str):
            known = self._table.tasks.get(task)
            if known is not None:
                return known
            raise TeamTaskError(f"task {task} is not known to this team (or was forgotten)")
        raise TypeError(f"task must be a TeamTask or a task id, got {type(task).__name__}")

    async def _on_task_event(self, event: ConversationEvent) -> None:
        if self._closed:
            return
        actions = self._table.handle(self._now(), event)
        if actions:
            await self._apply(actions)
            self._poke()

    async def _on_peer_joined(self, peer: Peer) -> None:
        if not self._closed:
            self._table.peer_joined(self._now())
            self._poke()

    async def _on_compacted(self, summary: ConversationEvent) -> None:
        """The node folded part of a task's conversation into a summary: write a checkpoint,
        so that :meth:`restore` still finds the task if its offer and grant were folded."""
        checkpoint = self._table.checkpoint(summary.conversation_id)
        if checkpoint is not None and not self._closed:
            await self._apply([checkpoint])

    async def _on_peer_offline(self, peer: Peer) -> None:
        if not self._closed:
            await self._apply(self._table.peer_offline(self._now(), peer.id))
            self._poke()
