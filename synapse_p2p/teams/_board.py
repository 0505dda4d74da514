"""A read-only view of team tasks from their conversations (sans-IO), for any observer.

A :class:`~synapse_p2p.teams.Team` knows its own tasks; anyone else (``sn tasks``, a
dashboard) can read a task's state off its conversation: :func:`task_view` folds the events
of one conversation into a :class:`TaskView`, or returns ``None`` if it is not a team task.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..types import ConversationEvent
from ._protocol import (
    TASK_CLAIM,
    TASK_DONE,
    TASK_FAILED,
    TASK_GRANT,
    TASK_OFFER,
    TASK_PROGRESS,
    TASK_RELEASE,
    TASK_STATE,
)

__all__ = ["TaskView", "task_view"]


@dataclass(frozen=True, slots=True)
class TaskView:
    """One team task as its conversation shows it.

    ``status``: ``offered``, ``claimed`` (claims, no grant yet), ``granted``, ``working``
    (progress from the assignee), ``done``, ``failed`` or ``released`` (handed back, waiting
    for a re-offer). ``attempt`` is the current attempt; ``lease_deadline`` (epoch seconds)
    is the last grant or the assignee's last report plus the lease the grant named.
    """

    id: str
    title: str
    team: str
    status: str
    attempt: int
    assignee: str | None
    requires: list[str]
    claims: int
    last_progress: str | None
    lease_deadline: float | None
    result: Any
    error: str | None
    updated_at: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "team": self.team,
            "status": self.status,
            "attempt": self.attempt,
            "assignee": self.assignee,
            "requires": list(self.requires),
            "claims": self.claims,
            "last_progress": self.last_progress,
            "lease_deadline": self.lease_deadline,
            "result": self.result,
            "error": self.error,
            "updated_at": self.updated_at,
        }


def _attempt(payload: dict[str, Any], default: int) -> int:
    value = payload.get("attempt")
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def task_view(events: Sequence[ConversationEvent]) -> TaskView | None:
    """Fold one conversation (oldest first) into a :class:`TaskView`; ``None`` if its first
    event is not a ``task.offer`` or a ``task.state`` checkpoint."""
    if not events or events[0].kind not in (TASK_OFFER, TASK_STATE):
        return None
    first = events[0]
    offer = first.payload
    title = str(offer.get("title", ""))
    requires = [str(r) for r in offer.get("requires") or [] if isinstance(r, str)]
    team = first.peer.name or first.peer.id[:8]
    status = str(offer.get("status", "offered")) if first.kind == TASK_STATE else "offered"
    attempt = _attempt(offer, 1)
    assignee: str | None = None
    claims = 0
    progress: str | None = None
    lease: float | None = None
    deadline: float | None = None
    result: Any = None
    error: str | None = None
    for event in events[1:]:
        payload, kind = event.payload, event.kind
        if kind == TASK_OFFER:
            attempt, status, assignee, deadline = (
                _attempt(payload, attempt + 1),
                "offered",
                None,
                None,
            )
        elif kind == TASK_CLAIM and status in ("offered", "claimed"):
            claims += 1
            status = "claimed"
        elif kind == TASK_GRANT:
            attempt = _attempt(payload, attempt)
            assignee = str(payload.get("worker_name") or str(payload.get("worker_id", ""))[:8])
            value = payload.get("lease")
            lease = float(value) if isinstance(value, int | float) and value > 0 else lease
            deadline = event.created_at + lease if lease else None
            status = "granted"
        elif kind == TASK_PROGRESS and status in ("granted", "working"):
            if lease:
                deadline = event.created_at + lease
            if not payload.get("heartbeat"):
                progress = str(payload.get("message", ""))
                status = "working"
        elif kind == TASK_DONE and status not in ("done", "failed"):
            status, result, deadline = "done", payload.get("result"), None
        elif kind == TASK_FAILED and status not in ("done", "failed"):
            status, error, deadline = "failed", str(payload.get("error", "")), None
        elif kind == TASK_RELEASE and status in ("granted", "working"):
            status, deadline = "released", None
    return TaskView(
        id=first.conversation_id,
        title=title,
        team=team,
        status=status,
        attempt=attempt,
        assignee=assignee,
        requires=requires,
        claims=claims,
        last_progress=progress,
        lease_deadline=deadline,
        result=result,
        error=error,
        updated_at=events[-1].created_at,
    )
