"""The A2A request handler: A2A messages become swarm asks or team tasks.

It implements the a2a-sdk's :class:`~a2a.server.request_handlers.RequestHandler` on anyio
(no asyncio queues), so the SDK's JSON-RPC routes run on it under trio and under asyncio.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
from a2a.server.context import ServerCallContext
from a2a.server.events.event_queue import Event
from a2a.server.request_handlers.request_handler import RequestHandler
from a2a.types import (
    AgentCard,
    CancelTaskRequest,
    DeleteTaskPushNotificationConfigRequest,
    GetExtendedAgentCardRequest,
    GetTaskPushNotificationConfigRequest,
    GetTaskRequest,
    ListTaskPushNotificationConfigsRequest,
    ListTaskPushNotificationConfigsResponse,
    ListTasksRequest,
    ListTasksResponse,
    Message,
    SendMessageRequest,
    SubscribeToTaskRequest,
    Task,
    TaskPushNotificationConfig,
    TaskState,
)
from a2a.utils.errors import (
    ExtendedAgentCardNotConfiguredError,
    InvalidParamsError,
    PushNotificationNotSupportedError,
    TaskNotCancelableError,
    TaskNotFoundError,
    UnsupportedOperationError,
)
from google.protobuf.json_format import MessageToDict

from ..federation import NoAgentAvailableError
from ..teams import TeamTaskError
from ._tasks import TaskLog, TaskRecord, to_part

if TYPE_CHECKING:
    from ._swarm import SwarmRouter

__all__ = ["SwarmRequestHandler", "message_text"]

logger = logging.getLogger(__name__)

PROGRESS_POLL = 0.2


def message_text(message: Message) -> str:
    """The text of a message: its text parts, then its data parts as JSON, one per line."""
    lines: list[str] = []
    for part in message.parts:
        if part.HasField("text"):
            lines.append(part.text)
        elif part.HasField("data"):
            lines.append(json.dumps(MessageToDict(part.data), sort_keys=True))
    return "\n".join(lines)


def _options(params: SendMessageRequest) -> dict[str, Any]:
    options: dict[str, Any] = MessageToDict(params.metadata) if params.HasField("metadata") else {}
    if params.message.HasField("metadata"):
        options.update(MessageToDict(params.message.metadata))
    return options


class SwarmRequestHandler(RequestHandler):
    """Answers A2A requests from a swarm (see :func:`synapse_p2p.a2a.serve_a2a`).

    ``task_group`` owns every task's runner; cancelling it cancels them all. The skill of a
    message is ``metadata["skill"]`` (of the request or of the message); ``metadata["timeout"]``
    may shorten the server's ``timeout`` for that task.
    """

    def __init__(
        self,
        router: SwarmRouter,
        task_group: anyio.abc.TaskGroup,
        *,
        timeout: float = 300.0,
        max_tasks: int = 1000,
    ) -> None:
        self.router = router
        self.task_group = task_group
        self.timeout = timeout
        self.tasks = TaskLog(max_tasks)
        self.closed = False

    def _closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        """End every open stream (the server is stopping); tasks are not touched."""
        self.closed = True
        for record in self.tasks.records():
            record.wake()

    # -- messages ---------------------------------------------------------------------

    def _start(self, params: SendMessageRequest, context: ServerCallContext) -> TaskRecord:
        message = params.message
        if message.task_id:
            if self.tasks.get(message.task_id) is None:
                raise TaskNotFoundError(message=f"unknown task {message.task_id!r}")
            raise UnsupportedOperationError(message="a task takes one message; send a new one")
        text = message_text(message)
        if not text:
            raise InvalidParamsError(message="the message has no text or data part")
        options = _options(params)
        skill = options.get("skill")
        if skill is not None and (not isinstance(skill, str) or not skill):
            raise InvalidParamsError(message="metadata 'skill' must be a non-empty string")
        timeout = self.timeout
        if "timeout" in options:
            asked = options["timeout"]
            if isinstance(asked, bool) or not isinstance(asked, int | float) or not asked > 0:
                raise InvalidParamsError(message="metadata 'timeout' must be a positive number")
            timeout = min(timeout, float(asked))
        node_id = context.state.get("node_id")
        self.router.check(skill, node_id)  # unknown skill or node: InvalidParamsError
        record = self.tasks.create(message)
        if record is None:
            raise UnsupportedOperationError(message="too many unfinished tasks; try again later")
        self.task_group.start_soon(self._run, record, text, skill, node_id, timeout)
        return record

    async def _run(
        self, record: TaskRecord, text: str, skill: str | None, node_id: str | None, timeout: float
    ) -> None:
        with anyio.CancelScope() as scope:
            record.scope = scope
            record.set_state(TaskState.TASK_STATE_WORKING)
            try:
                with anyio.fail_after(timeout):
                    if self.router.is_team_skill(skill) and node_id is None:
                        await self._run_team(record, text, skill or "")
                    else:
                        reply = await self.router.ask(text, skill, node_id, record.task.id)
                        record.add_artifact("reply", [to_part(reply)], {"skill": skill or ""})
            except TimeoutError:
                record.set_state(TaskState.TASK_STATE_FAILED, f"timed out after {timeout:g} s")
            except NoAgentAvailableError as exc:
                record.set_state(TaskState.TASK_STATE_FAILED, f"no agent available: {exc}")
            except Exception as exc:
                logger.debug("A2A task %s failed", record.task.id, exc_info=True)
                record.set_state(TaskState.TASK_STATE_FAILED, f"{type(exc).__name__}: {exc}")
            else:
                record.set_state(TaskState.TASK_STATE_COMPLETED)
        record.scope = None

    async def _run_team(self, record: TaskRecord, text: str, skill: str) -> None:
        team = self.router.team
        task = await team.offer(text, spec={"a2a_task": record.task.id}, requires=[skill])
        outcome: list[Any] = []
        done = anyio.Event()

        async def wait() -> None:
            try:
                outcome.append(await team.wait(task))
            except TeamTaskError as exc:
                outcome.append(exc)
            done.set()

        seen = 0
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            while True:
                finished = done.is_set()
                for item in task.progress[seen:]:
                    note = item.get("message") if isinstance(item, dict) else None
                    if isinstance(note, str) and note:
                        record.set_state(TaskState.TASK_STATE_WORKING, note)
                seen = len(task.progress)
                if finished:
                    break
                with anyio.move_on_after(PROGRESS_POLL):
                    await done.wait()
        (result,) = outcome
        if isinstance(result, TeamTaskError):
            raise result
        worker = task.assignee.id if task.assignee is not None else ""
        record.add_artifact("result", [to_part(result)], {"skill": skill, "worker": worker})

    async def on_message_send(
        self, params: SendMessageRequest, context: ServerCallContext
    ) -> Task | Message:
        """Start a task; answer it when finished (at once with ``return_immediately``)."""
        record = self._start(params, context)
        if not params.configuration.return_immediately:
            while not record.finished:
                await record.changed.wait()
        history = params.configuration.history_length
        return record.snapshot(history if params.configuration.HasField("history_length")
                               else None)[0]  # fmt: skip

    async def on_message_send_stream(
        self, params: SendMessageRequest, context: ServerCallContext
    ) -> AsyncGenerator[Event]:
        """Start a task; stream it (the task, then each status and artifact event)."""
        record = self._start(params, context)
        task, position = record.snapshot()
        yield task
        async for event in record.follow(position, self._closing):
            yield event

    async def on_subscribe_to_task(
        self, params: SubscribeToTaskRequest, context: ServerCallContext
    ) -> AsyncGenerator[Event]:
        """The task as it is now, then every later event until it finishes: a client whose
        stream dropped gets everything it missed (in the task) and nothing twice (event
        ``metadata["sequence"]`` numbers above the task's own)."""
        record = self._record(params.id)
        task, position = record.snapshot()
        yield task
        async for event in record.follow(position, self._closing):
            yield event

    # -- tasks ------------------------------------------------------------------------

    def _record(self, task_id: str) -> TaskRecord:
        record = self.tasks.get(task_id)
        if record is None:
            raise TaskNotFoundError(message=f"unknown task {task_id!r}")
        return record

    async def on_get_task(self, params: GetTaskRequest, context: ServerCallContext) -> Task:
        history = params.history_length if params.HasField("history_length") else None
        return self._record(params.id).snapshot(history)[0]

    async def on_cancel_task(self, params: CancelTaskRequest, context: ServerCallContext) -> Task:
        """Cancel a running task: its ask is abandoned (a team task's offer stays with the
        team); a finished task gives ``TaskNotCancelableError``."""
        record = self._record(params.id)
        if record.finished:
            raise TaskNotCancelableError(message=f"task {params.id!r} is already finished")
        record.set_state(TaskState.TASK_STATE_CANCELED, "canceled by the client")
        if record.scope is not None:
            record.scope.cancel()
        return record.snapshot()[0]

    async def on_list_tasks(
        self, params: ListTasksRequest, context: ServerCallContext
    ) -> ListTasksResponse:
        records = [
            r
            for r in self.tasks.records()
            if not params.context_id or r.task.context_id == params.context_id
        ]
        size = params.page_size if params.HasField("page_size") and params.page_size > 0 else 50
        tasks = [r.snapshot(0)[0] for r in records[-size:]]
        return ListTasksResponse(tasks=tasks, page_size=size, total_size=len(records))

    # -- not supported ----------------------------------------------------------------

    async def on_create_task_push_notification_config(
        self, params: TaskPushNotificationConfig, context: ServerCallContext
    ) -> TaskPushNotificationConfig:
        raise PushNotificationNotSupportedError

    async def on_get_task_push_notification_config(
        self, params: GetTaskPushNotificationConfigRequest, context: ServerCallContext
    ) -> TaskPushNotificationConfig:
        raise PushNotificationNotSupportedError

    async def on_list_task_push_notification_configs(
        self, params: ListTaskPushNotificationConfigsRequest, context: ServerCallContext
    ) -> ListTaskPushNotificationConfigsResponse:
        raise PushNotificationNotSupportedError

    async def on_delete_task_push_notification_config(
        self, params: DeleteTaskPushNotificationConfigRequest, context: ServerCallContext
    ) -> None:
        raise PushNotificationNotSupportedError

    async def on_get_extended_agent_card(
        self, params: GetExtendedAgentCardRequest, context: ServerCallContext
    ) -> AgentCard:
        raise ExtendedAgentCardNotConfiguredError
