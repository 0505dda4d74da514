"""The teams vocabulary on the wire, and the offering side's task record.

Each task is a conversation whose id is the task id. The kinds and payloads are those of
synapse-p2p 2.5.0, with a few added keys that 2.5.0 nodes ignore:

=================  ============  =============================================================
kind               author        payload (``parent_id``)
=================  ============  =============================================================
``task.offer``     team          ``{task_id, title, spec, requires, attempt}``
``task.claim``     worker        ``{task_id, attempt, capabilities}`` (the offer's id)
``task.grant``     team          ``{task_id, worker_id, worker_name}`` + ``attempt``, ``lease``
                                 (the claim's id)
``task.progress``  assignee      ``{task_id, message, ...}`` + ``attempt``; lease renewals add
                                 ``heartbeat: true``
``task.done``      assignee      ``{task_id, result}`` + ``attempt``
``task.failed``    assignee      ``{task_id, error}`` + ``attempt``
``task.release``   assignee      ``{task_id, attempt, reason}``: ours only; a worker that stops
                                 hands its attempt back so the team re-offers at once
``task.state``     team          the offer's payload + ``status`` (+ ``worker_id``,
                                 ``worker_name`` when claimed): ours only; a checkpoint the
                                 team writes when its node compacts an unfinished task's
                                 conversation, so ``restore()`` still finds the task
=================  ============  =============================================================

synapse-p2p 2.5.0 nodes store and show the two kinds of ours and otherwise ignore them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Final

from ..types import ConversationEvent, Peer

__all__ = [
    "FINISHED",
    "TASK_CLAIM",
    "TASK_DONE",
    "TASK_FAILED",
    "TASK_GRANT",
    "TASK_OFFER",
    "TASK_PROGRESS",
    "TASK_RELEASE",
    "TASK_STATE",
    "TeamTask",
    "attempt_of",
    "task_id_of",
]

TASK_OFFER: Final = "task.offer"
TASK_CLAIM: Final = "task.claim"
TASK_GRANT: Final = "task.grant"
TASK_PROGRESS: Final = "task.progress"
TASK_DONE: Final = "task.done"
TASK_FAILED: Final = "task.failed"
TASK_RELEASE: Final = "task.release"
TASK_STATE: Final = "task.state"

#: The statuses a task never leaves.
FINISHED: Final = frozenset({"done", "failed"})

#: How many progress payloads a :class:`TeamTask` keeps (the most recent ones).
PROGRESS_LIMIT: Final = 1000


@dataclass(slots=True)
class TeamTask:
    """The offering side's record of one unit of work (``team.tasks[id]``), updated in place.

    ``status`` goes ``"offered"`` -> ``"claimed"`` -> ``"done"`` or ``"failed"`` (a re-offer
    takes a claimed task back to ``"offered"``). ``attempts`` is the current attempt number,
    1 for the first offer and one more for each re-offer after a lease expired, an assignee
    went offline or handed the task back; re-announcing an unclaimed offer keeps its number.
    ``assignee`` is the worker granted the current attempt. ``progress`` holds the last
    :data:`PROGRESS_LIMIT` non-heartbeat progress payloads. Times are the node's wall clock
    (epoch seconds). ``lease_expires`` is when the current assignee's lease runs out.
    """

    id: str
    title: str
    spec: dict[str, Any] = field(default_factory=dict)
    requires: list[str] = field(default_factory=list)
    status: str = "offered"
    assignee: Peer | None = None
    result: Any = None
    error: str | None = None
    #: The class name of the worker's exception (``"KeyError"``) for a failed task, when the
    #: worker said (workers of this package do).
    error_type: str | None = None
    progress: list[dict[str, Any]] = field(default_factory=list)
    attempts: int = 1
    last_activity: float = field(default_factory=time.time)
    finished_at: float | None = None
    lease_expires: float | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


def attempt_of(payload: dict[str, Any]) -> int | None:
    """The payload's ``attempt`` if it is a positive int, else None."""
    value = payload.get("attempt")
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    return None


def task_id_of(event: ConversationEvent) -> str | None:
    """The task an event is about: its conversation, when the payload agrees (or is silent)."""
    named = event.payload.get("task_id")
    if named is not None and named != event.conversation_id:
        return None
    return event.conversation_id


def str_list(value: Any) -> list[str]:
    """``value`` if it is a list of strings, else an empty list."""
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return list(value)
    return []
