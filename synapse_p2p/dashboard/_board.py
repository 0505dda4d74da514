"""The team board, sans-IO: a task's card (a JSON-ready dict) from its conversation events.

The kinds and payloads are those of :mod:`synapse_p2p.teams._protocol`. A card moves
``offered`` -> ``claimed`` (someone claimed it) -> ``granted`` -> ``in progress`` (a progress
message from the assignee) -> ``done`` or ``failed``; an offer with a higher attempt number puts
it in ``re-offered``. Events of an older attempt, or progress and results from anyone but the
current assignee, are ignored, as the team itself ignores them; a finished card never moves
again (except for a ``task.state`` checkpoint).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..types import ConversationEvent
from ._text import clip, wall_time

__all__ = ["apply_task_event"]

#: ``link(source, target, kind, conversation_id)``: two nodes worked together on a task.
Link = Callable[[str, str, str, str], None]


def apply_task_event(
    tasks: dict[str, dict[str, Any]], event: ConversationEvent, link: Link
) -> None:
    """Update (or create) the card of the task ``event`` is about."""
    payload, kind, cid = event.payload, event.kind, event.conversation_id
    named = payload.get("task_id")
    if named is not None and named != cid:
        return
    task = tasks.get(cid)
    if task is None:
        task = tasks[cid] = {
            "id": cid,
            "title": "",
            "status": "offered",
            "attempt": 1,
            "worker": None,
            "worker_name": None,
            "team": None,
            "claims": 0,
            "progress": None,
            "lease_until": None,
            "lease": None,
            "result": None,
            "error": None,
            "updated": 0.0,
        }
    attempt = payload.get("attempt")
    if not (isinstance(attempt, int) and not isinstance(attempt, bool) and attempt >= 1):
        attempt = None
    at = wall_time(event)
    if task["status"] in ("done", "failed") and kind != "task.state":
        return  # a finished task never moves again
    current = attempt is None or attempt == task["attempt"]
    if kind in ("task.offer", "task.state"):
        if attempt is not None and attempt < task["attempt"]:
            return
        task["title"] = clip(payload.get("title", task["title"]), 120)
        task["team"] = event.peer.id
        if kind == "task.state":
            status = payload.get("status")
            if status in ("offered", "claimed", "done", "failed"):
                task["status"] = "granted" if status == "claimed" else status
        elif attempt is not None and attempt > task["attempt"]:
            task["status"], task["worker"], task["worker_name"] = "re-offered", None, None
            task["claims"], task["progress"], task["lease_until"] = 0, None, None
        task["attempt"] = attempt or task["attempt"]
    elif kind == "task.claim" and current:
        task["claims"] += 1
        if task["status"] in ("offered", "re-offered"):
            task["status"] = "claimed"
    elif kind == "task.grant" and current:
        task["status"] = "granted"
        task["worker"] = (
            payload.get("worker_id") if isinstance(payload.get("worker_id"), str) else None
        )
        task["worker_name"] = clip(payload.get("worker_name") or "", 80)
        lease = payload.get("lease")
        if isinstance(lease, int | float) and not isinstance(lease, bool) and lease > 0:
            task["lease"] = float(lease)
            task["lease_until"] = at + float(lease)
        if task["worker"] and task["team"]:
            link(task["team"], task["worker"], "grant", cid)
    elif kind == "task.progress" and current and event.peer.id == task["worker"]:
        if task["lease"] is not None:
            task["lease_until"] = at + task["lease"]
        if not payload.get("heartbeat"):
            task["status"] = "in progress"
            task["progress"] = clip(payload.get("message", ""), 200)
    elif (
        kind in ("task.done", "task.failed")
        and current
        and (task["worker"] is None or event.peer.id == task["worker"])
    ):
        task["status"] = "done" if kind == "task.done" else "failed"
        task["result"] = clip(payload.get("result"), 200) if kind == "task.done" else None
        task["error"] = clip(payload.get("error"), 200) if kind == "task.failed" else None
        task["lease_until"] = None
        if task["team"] and event.peer.id != task["team"]:
            link(event.peer.id, task["team"], kind, cid)
    elif kind == "task.release" and current:
        task["progress"] = f"released: {clip(payload.get('reason', ''), 160)}"
    task["updated"] = max(task["updated"], at)
