"""Teams: offer work to the swarm and have exactly one worker run each attempt.

::

    from synapse_p2p.teams import Team, Worker, Assignment

    team = Team(node)                                   # the architect's node
    task = await team.offer("implement the parser", spec={"file": "parser.py"},
                            requires=["python"])
    result = await team.wait(task, timeout=600)

    worker = Worker(node)                               # a node with capabilities=["python"]

    @worker.task
    async def implement(assignment: Assignment) -> dict:
        await assignment.progress("starting")
        return {"diff": ...}

Each task is a conversation (its id is the task id): ``task.offer``, ``task.claim``,
``task.grant``, ``task.progress``, ``task.done`` / ``task.failed``, as synapse-p2p 2.5.0 speaks
them (both implementations serve each other's teams). Delivery is at least once; each attempt
is granted to one claimant; results count only from the current attempt's assignee and the
first one wins. The protocol state is sans-IO (:mod:`._state`); :class:`Team` and
:class:`Worker` drive it on a node, either as in the seed (``Team(node)``, ``Worker(node)``
before ``node.run()``: their services run as services of the node) or as nursery-scoped
context managers (``async with Team(node) as team:``) that own their tasks.

Choices, documented on the classes:

* **Attempts.** ``TeamTask.attempts`` is the current attempt number. A new attempt starts only
  when a lease expires, the assignee goes offline (membership's ``peer.offline``) or hands the
  attempt back (``task.release``); re-announcing an unclaimed offer (2 s after the offer,
  doubling up to the lease, and 0.2 s after any peer joins) keeps the number, so
  ``max_attempts`` counts executions, not announcements. Grants carry ``attempt`` and
  ``lease``; 2.5.0 workers ignore both.
* **Fencing** is by the author's peer id and, when a report names one, the attempt: it stops
  stale and foreign results, not a peer that forges the assignee's own id (there are no signed
  identities yet). A ``task.failed`` from the assignee fails the task; it is not retried.
* **Leaving a Worker** (its block, ``aclose()``, or its node stopping) cancels the running
  handlers and hands each attempt back; ``await worker.drain()`` first lets them finish. One
  open ``Worker`` per node.
* **Restore** adopts by node identity only: run the restarted team with the same
  ``Node(node_id=...)`` and a durable log. When the node compacts an unfinished task's
  conversation, the team writes a ``task.state`` checkpoint so the task survives compaction.
* **Waiting** never raises ``KeyError``: a finished record answers from itself after
  ``task_retention`` forgot it; an unknown id raises ``TeamTaskError``.
"""

from __future__ import annotations

from ..errors import TeamTaskError
from ._board import TaskFold, TaskView, task_view
from ._protocol import (
    FINISHED,
    TASK_CLAIM,
    TASK_DONE,
    TASK_FAILED,
    TASK_GRANT,
    TASK_OFFER,
    TASK_PROGRESS,
    TASK_RELEASE,
    TASK_STATE,
    TeamTask,
)
from ._team import Team, TeamStatistics
from ._worker import Assignment, TaskHandler, Worker, WorkerStatistics

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
    "Assignment",
    "TaskFold",
    "TaskHandler",
    "TaskView",
    "Team",
    "TeamStatistics",
    "TeamTask",
    "TeamTaskError",
    "Worker",
    "WorkerStatistics",
    "task_view",
]
