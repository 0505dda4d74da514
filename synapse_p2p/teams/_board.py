"""A read-only view of team tasks from their conversations (sans-IO), for any observer.

A :class:`~synapse_p2p.teams.Team` knows its own tasks; anyone else (``sn tasks``, the
dashboard, an MCP client) reads a task's state off its conversation. :class:`TaskFold` folds
one task's events, one at a time (constant work per event), with the rules the team itself
applies: events of an older attempt are ignored, and so are progress and results from anyone
but the current assignee; a finished task never moves again, except for a ``task.state``
checkpoint. :func:`task_view` folds a whole conversation into a :class:`TaskView`, or returns
``None`` if it is not a team task.
"""

from __future__ import annotations

import math
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

__all__ = ["TaskFold", "TaskView", "task_view"]

_FINISHED = ("done", "failed")


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


def _attempt(payload: dict[str, Any]) -> int | None:
    value = payload.get("attempt")
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    return None


def _time(event: ConversationEvent) -> float:
    at = event.created_at
    return float(at) if isinstance(at, int | float) and math.isfinite(at) else 0.0


class TaskFold:
    """One task's state, updated by :meth:`apply` with each of its events in order.

    ``status`` is one of :class:`TaskView`'s; ``team`` and ``worker`` are node ids (the
    offering node, the assignee), ``team_name`` and ``worker_name`` what they call
    themselves; ``lease_until`` is epoch seconds; ``started`` is false until an offer or a
    checkpoint was seen (a conversation that never has one is not a task).
    """

    __slots__ = (
        "attempt",
        "claims",
        "error",
        "id",
        "lease",
        "lease_until",
        "progress",
        "reoffered",
        "requires",
        "result",
        "started",
        "status",
        "team",
        "team_name",
        "title",
        "updated",
        "worker",
        "worker_name",
    )

    def __init__(self, task_id: str) -> None:
        self.id = task_id
        self.title = ""
        self.team: str | None = None
        self.team_name = ""
        self.requires: list[str] = []
        self.status = "offered"
        self.attempt = 1
        self.worker: str | None = None
        self.worker_name = ""
        self.claims = 0
        self.progress: str | None = None
        self.lease: float | None = None
        self.lease_until: float | None = None
        self.result: Any = None
        self.error: str | None = None
        self.updated = 0.0
        self.started = False
        #: The task is offered again (a later attempt, or after it was handed back).
        self.reoffered = False

    def apply(self, event: ConversationEvent) -> str | None:
        """Fold ``event`` in. Returns the kind of work link it shows between two nodes
        (``"grant"``: team to worker; ``"task.done"``/``"task.failed"``: worker to team), or
        ``None``. Events naming another task (``task_id``) are ignored."""
        payload, kind = event.payload, event.kind
        named = payload.get("task_id")
        if named is not None and named != self.id:
            return None
        at = _time(event)
        self.updated = max(self.updated, at)
        if self.status in _FINISHED and kind != TASK_STATE:
            return None  # a finished task never moves again
        attempt = _attempt(payload)
        current = attempt is None or attempt == self.attempt
        author = event.peer.id
        if kind in (TASK_OFFER, TASK_STATE):
            if attempt is not None and attempt < self.attempt:
                return None
            self.started = True
            title = payload.get("title")
            if isinstance(title, str):
                self.title = title
            requires = payload.get("requires")
            if isinstance(requires, list):
                self.requires = [r for r in requires if isinstance(r, str)]
            self.team, self.team_name = author, event.peer.name
            if kind == TASK_STATE:
                status = payload.get("status")
                if status in ("offered", "claimed", "done", "failed"):
                    self.status = "granted" if status == "claimed" else status
                self.reoffered = False
            elif (attempt is not None and attempt > self.attempt) or self.status == "released":
                self.status, self.worker, self.worker_name = "offered", None, ""
                self.claims, self.progress, self.lease_until = 0, None, None
                self.reoffered = True
            self.attempt = attempt or self.attempt
        elif kind == TASK_CLAIM and current:
            self.claims += 1
            if self.status == "offered":
                self.status, self.reoffered = "claimed", False
        elif kind == TASK_GRANT and current:
            self.status, self.reoffered = "granted", False
            worker = payload.get("worker_id")
            self.worker = worker if isinstance(worker, str) else None
            name = payload.get("worker_name")
            self.worker_name = name if isinstance(name, str) else ""
            lease = payload.get("lease")
            if isinstance(lease, int | float) and not isinstance(lease, bool) and lease > 0:
                self.lease = float(lease)
                self.lease_until = at + float(lease)
            return "grant" if self.worker and self.team else None
        elif kind == TASK_PROGRESS and current and author == self.worker:
            if self.lease is not None:
                self.lease_until = at + self.lease
            if not payload.get("heartbeat"):
                self.status = "working"
                message = payload.get("message", "")
                self.progress = message if isinstance(message, str) else str(message)
        elif (
            kind in (TASK_DONE, TASK_FAILED)
            and current
            and (self.worker is None or author == self.worker)
        ):
            self.status = "done" if kind == TASK_DONE else "failed"
            self.result = payload.get("result") if kind == TASK_DONE else None
            error = payload.get("error")
            self.error = (None if error is None else str(error)) if kind == TASK_FAILED else None
            self.lease_until = None
            return kind if self.team and author != self.team else None
        elif kind == TASK_RELEASE and current and author == self.worker:
            self.status, self.lease_until = "released", None
            reason = payload.get("reason", "")
            self.progress = f"released: {reason}"
        return None

    def view(self) -> TaskView:
        team = self.team_name or (self.team or "")[:8]
        assignee = self.worker_name or ((self.worker or "")[:8] or None)
        return TaskView(
            id=self.id,
            title=self.title,
            team=team,
            status=self.status,
            attempt=self.attempt,
            assignee=assignee,
            requires=list(self.requires),
            claims=self.claims,
            last_progress=self.progress,
            lease_deadline=self.lease_until,
            result=self.result,
            error=self.error,
            updated_at=self.updated,
        )


def task_view(events: Sequence[ConversationEvent]) -> TaskView | None:
    """Fold one conversation (oldest first) into a :class:`TaskView`; ``None`` if its first
    event is not a ``task.offer`` or a ``task.state`` checkpoint."""
    if not events or events[0].kind not in (TASK_OFFER, TASK_STATE):
        return None
    fold = TaskFold(events[0].conversation_id)
    for event in events:
        fold.apply(event)
    return fold.view()
