"""The team board, sans-IO: a task's card (a JSON-ready dict) from its conversation events.

The state of a task is :class:`synapse_p2p.teams.TaskFold`'s (the rules the team applies);
this module keeps one fold per task and renders its card in the board's words: a card moves
``offered`` -> ``claimed`` -> ``granted`` -> ``in progress`` -> ``done`` or ``failed``; an offer
of a later attempt (or a task handed back) puts it in ``re-offered``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..teams import TaskFold
from ..types import ConversationEvent
from ._text import clip

__all__ = ["apply_task_event"]

#: ``link(source, target, kind, conversation_id)``: two nodes worked together on a task.
Link = Callable[[str, str, str, str], None]

_LABELS = {"working": "in progress", "released": "re-offered"}


def apply_task_event(
    tasks: dict[str, dict[str, Any]],
    folds: dict[str, TaskFold],
    event: ConversationEvent,
    link: Link,
) -> None:
    """Update (or create) the card of the task ``event`` is about."""
    cid = event.conversation_id
    fold = folds.get(cid)
    if fold is None:
        fold = folds[cid] = TaskFold(cid)
    made = fold.apply(event)
    if made == "grant" and fold.team and fold.worker:
        link(fold.team, fold.worker, "grant", cid)
    elif made is not None and fold.team:
        link(event.peer.id, fold.team, made, cid)
    status = _LABELS.get(fold.status, fold.status)
    if fold.status == "offered" and fold.reoffered:
        status = "re-offered"
    tasks[cid] = {
        "id": cid,
        "title": clip(fold.title, 120),
        "status": status,
        "attempt": fold.attempt,
        "worker": fold.worker,
        "worker_name": clip(fold.worker_name, 80) if fold.worker else None,
        "team": fold.team,
        "claims": fold.claims,
        "progress": None if fold.progress is None else clip(fold.progress, 200),
        "lease_until": fold.lease_until,
        "lease": fold.lease,
        "result": clip(fold.result, 200) if fold.status == "done" else None,
        "error": clip(fold.error, 200) if fold.status == "failed" else None,
        "updated": fold.updated,
    }
