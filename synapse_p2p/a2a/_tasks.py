"""A2A tasks kept by the server: state, artifacts and a numbered event log per task.

Every change to a task (a status update or an artifact) is appended to that task's log with
the next sequence number (``metadata["sequence"]`` on the event; the task's own
``metadata["sequence"]`` is the number of the last event it includes). Status notes (the
agent's messages) are also kept in the task's history, artifacts in its artifacts. A reader
that joins late, or comes back after a dropped stream, gets a snapshot of the task and then
every event after it: a snapshot and the log position are taken together, so nothing is lost
or repeated.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
from a2a.types import (
    Artifact,
    Message,
    Part,
    Role,
    Task,
    TaskArtifactUpdateEvent,
    TaskState,
    TaskStatus,
    TaskStatusUpdateEvent,
)
from google.protobuf import struct_pb2
from google.protobuf.json_format import ParseDict
from google.protobuf.timestamp_pb2 import Timestamp

__all__ = ["TERMINAL", "TaskLog", "TaskRecord", "to_part"]

TaskEvent = TaskStatusUpdateEvent | TaskArtifactUpdateEvent

#: States after which a task never changes.
TERMINAL = frozenset(
    {
        TaskState.TASK_STATE_COMPLETED,
        TaskState.TASK_STATE_FAILED,
        TaskState.TASK_STATE_CANCELED,
        TaskState.TASK_STATE_REJECTED,
    }
)

#: Most events kept per task (a task that exceeds it fails: readers could not resume).
MAX_EVENTS = 4096


def to_part(value: Any) -> Part:
    """A reply as an A2A part: text for a string, raw bytes for bytes, JSON data otherwise
    (values JSON cannot hold are written with ``str``)."""
    if isinstance(value, str):
        return Part(text=value)
    if isinstance(value, bytes | bytearray):
        return Part(raw=bytes(value), media_type="application/octet-stream")
    data = json.loads(json.dumps(value, default=str))
    return Part(data=ParseDict(data, struct_pb2.Value()), media_type="application/json")


def _status(state: TaskState, text: str | None, task: Task) -> TaskStatus:
    stamp = Timestamp()
    stamp.FromNanoseconds(time.time_ns())
    status = TaskStatus(state=state, timestamp=stamp)
    if text:
        status.message.CopyFrom(
            Message(
                message_id=str(uuid.uuid4()),
                role=Role.ROLE_AGENT,
                parts=[Part(text=text)],
                task_id=task.id,
                context_id=task.context_id,
            )
        )
    return status


@dataclass(eq=False)
class TaskRecord:
    """One task, its event log and the scope that runs it (owned by the server)."""

    task: Task
    events: list[TaskEvent] = field(default_factory=list)
    changed: anyio.Event = field(default_factory=anyio.Event)
    scope: anyio.CancelScope | None = None

    @property
    def state(self) -> TaskState:
        return self.task.status.state

    @property
    def finished(self) -> bool:
        return self.task.status.state in TERMINAL

    def snapshot(self, history_length: int | None = None) -> tuple[Task, int]:
        """A copy of the task and the log position it includes (taken together)."""
        copy = Task()
        copy.CopyFrom(self.task)
        if history_length is not None and history_length >= 0:
            keep = list(copy.history)[-history_length:] if history_length else []
            del copy.history[:]
            copy.history.extend(keep)
        return copy, len(self.events)

    def _append(self, event: TaskEvent) -> None:
        event.metadata.update({"sequence": len(self.events) + 1})
        self.events.append(event)
        self.task.metadata.update({"sequence": len(self.events)})
        self.wake()

    def set_state(self, state: TaskState, text: str | None = None) -> bool:
        """Move to ``state`` (with an agent message ``text``) unless already finished."""
        if self.finished:
            return False
        if len(self.events) >= MAX_EVENTS - 1 and state not in TERMINAL:
            return False  # keep the last slot for the final state
        status = _status(state, text, self.task)
        self.task.status.CopyFrom(status)
        if text:  # the history keeps every note, so a snapshot loses none of them
            self.task.history.append(status.message)
        self._append(
            TaskStatusUpdateEvent(task_id=self.task.id, context_id=self.task.context_id,
                                  status=status)
        )  # fmt: skip
        return True

    def add_artifact(self, name: str, parts: list[Part], metadata: dict[str, Any]) -> bool:
        """Add an artifact (one reply) unless the task is finished or its log is full."""
        if self.finished or len(self.events) >= MAX_EVENTS - 1:
            return False
        artifact = Artifact(artifact_id=str(uuid.uuid4()), name=name, parts=parts)
        artifact.metadata.update(metadata)
        self.task.artifacts.append(artifact)
        self._append(
            TaskArtifactUpdateEvent(task_id=self.task.id, context_id=self.task.context_id,
                                    artifact=artifact, last_chunk=True)
        )  # fmt: skip
        return True

    def wake(self) -> None:
        """Wake every reader (they check whether to stop)."""
        changed, self.changed = self.changed, anyio.Event()
        changed.set()

    async def follow(
        self, position: int, stopping: Callable[[], bool] = lambda: False
    ) -> AsyncIterator[TaskEvent]:
        """Every event after ``position``, as it is appended, until the task finishes (or
        ``stopping()`` is true when woken: the server is closing).

        Cancellation (a client that goes away) just stops the iteration."""
        while True:
            while position < len(self.events):
                position += 1
                yield self.events[position - 1]
            if self.finished or stopping():
                return
            await self.changed.wait()


class TaskLog:
    """The server's tasks by id, at most ``capacity`` of them: when full, the oldest finished
    task is forgotten; if none is finished, new tasks are refused (``None``)."""

    def __init__(self, capacity: int = 1000) -> None:
        self.capacity = capacity
        self._records: OrderedDict[str, TaskRecord] = OrderedDict()

    def __len__(self) -> int:
        return len(self._records)

    def get(self, task_id: str) -> TaskRecord | None:
        return self._records.get(task_id)

    def records(self) -> list[TaskRecord]:
        return list(self._records.values())

    def create(self, message: Message) -> TaskRecord | None:
        """A new task in the submitted state with ``message`` as its history."""
        if len(self._records) >= self.capacity:
            old = next((r for r in self._records.values() if r.finished), None)
            if old is None:
                return None
            del self._records[old.task.id]
        task_id = str(uuid.uuid4())
        context_id = message.context_id or str(uuid.uuid4())
        incoming = Message()
        incoming.CopyFrom(message)
        incoming.task_id, incoming.context_id = task_id, context_id
        task = Task(id=task_id, context_id=context_id, history=[incoming])
        record = TaskRecord(task)
        record.set_state(TaskState.TASK_STATE_SUBMITTED)
        self._records[task_id] = record
        return record
