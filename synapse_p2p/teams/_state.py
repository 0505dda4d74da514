"""The teams protocol as plain state machines (sans-IO): no clock, no network, no tasks.

:class:`TaskTable` is the offering side: it takes events and ``now`` and returns actions
(:class:`Emit` an event, a task has :class:`Finished`). :class:`ClaimBook` is the worker side:
it returns :class:`Claim`, :class:`Start` and :class:`Cancel`. The drivers in ``_team.py`` and
``_worker.py`` carry the actions out. The rules:

* **One grant per attempt.** A claim is granted only while its task is ``offered`` and only
  for the current attempt; the grant moves the task to ``claimed``, so later claims for that
  attempt are ignored. Re-announcing an unclaimed offer keeps the attempt number; a re-offer
  (lease expired, assignee offline, attempt handed back) starts a new attempt.
* **Fencing.** ``task.progress``, ``task.done``, ``task.failed`` and ``task.release`` count only
  when their author is the current assignee and, if they name an attempt, the current one. The
  first valid ``done``/``failed`` finishes the task for good.
* **Forged grants.** A worker acts on a grant only if its author is the author of the offer it
  claimed, and only for the attempt it claimed.

* **Signed parties.** An event's author is its peer id; the node refuses events forged under
  an id it knows to be verified (:mod:`synapse_p2p.conversations._signing`). On top of that, an
  unverified event (a synapse-p2p 2.5.0 author) never moves a task whose assignee is verified
  (:func:`~synapse_p2p.conversations._signing.may_move`): the assignee's ``Peer.verified`` is
  whether its claim was signed.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..conversations._signing import may_move
from ..types import ConversationEvent, Peer
from ._claims import Cancel, Claim, ClaimBook, OfferInfo, Start
from ._protocol import (
    PROGRESS_LIMIT,
    TASK_CLAIM,
    TASK_DONE,
    TASK_FAILED,
    TASK_GRANT,
    TASK_OFFER,
    TASK_PROGRESS,
    TASK_RELEASE,
    TASK_STATE,
    TeamTask,
    attempt_of,
    str_list,
    task_id_of,
)

__all__ = ["Cancel", "Claim", "ClaimBook", "Emit", "Finished", "OfferInfo", "Start", "TaskTable"]

#: First re-announcement of an unclaimed offer, in seconds; it doubles up to the lease.
REANNOUNCE_FIRST = 2.0
#: A peer joining re-announces the open offers this much later (joins close together coalesce).
JOIN_DELAY = 0.2

History = Callable[[str], Sequence[ConversationEvent]]


@dataclass(frozen=True, slots=True)
class Emit:
    """Append an event of ``kind`` to the task's conversation (the swarm gets it)."""

    task_id: str
    kind: str
    payload: dict[str, Any]
    parent_id: str | None = None


@dataclass(frozen=True, slots=True)
class Finished:
    """``task`` is done or failed: wake whoever waits for it."""

    task: TeamTask


@dataclass(slots=True)
class _Open:
    announce_at: float | None
    backoff: float = REANNOUNCE_FIRST


def _finish(task: TeamTask, now: float, status: str, result: Any, error: str | None) -> None:
    task.status, task.result, task.error = status, result, error
    task.finished_at = task.last_activity = now
    task.lease_expires = None


class TaskTable:
    """The offering side's tasks, keyed by id (``tasks``); see the module documentation."""

    def __init__(
        self,
        owner_id: str,
        *,
        lease: float,
        max_attempts: int | None = None,
        task_retention: float | None = None,
    ) -> None:
        self.owner_id = owner_id
        self.lease = lease
        self.max_attempts = max_attempts
        self.task_retention = task_retention
        self.tasks: dict[str, TeamTask] = {}
        self._open: dict[str, _Open] = {}
        self._due: dict[str, float] = {}  # the one live timer of each task
        self._timers: list[tuple[float, int, str]] = []  # a heap, with stale entries
        self._seq = itertools.count()
        self.grants = self.reoffers = self.announcements = self.finished = 0

    # -- timers ---------------------------------------------------------------------------

    def _refresh(self, task_id: str) -> None:
        task = self.tasks.get(task_id)
        due: float | None = None
        if task is None:
            pass
        elif task.finished:
            if self.task_retention is not None and task.finished_at is not None:
                due = task.finished_at + self.task_retention
        elif task.status == "claimed":
            due = task.lease_expires
        else:
            due = self._open[task_id].announce_at
        if due is None:
            self._due.pop(task_id, None)
        elif self._due.get(task_id) != due:
            self._due[task_id] = due
            heapq.heappush(self._timers, (due, next(self._seq), task_id))

    def next_deadline(self) -> float | None:
        """When :meth:`tick` has something to do next (it may find nothing to do then)."""
        while self._timers and self._due.get(self._timers[0][2]) != self._timers[0][0]:
            heapq.heappop(self._timers)
        return self._timers[0][0] if self._timers else None

    # -- offering -------------------------------------------------------------------------

    @staticmethod
    def offer_payload(task: TeamTask) -> dict[str, Any]:
        return {
            "task_id": task.id,
            "title": task.title,
            "spec": task.spec,
            "requires": task.requires,
            "attempt": task.attempts,
        }

    def offer(
        self, now: float, task_id: str, title: str, spec: dict[str, Any], requires: list[str]
    ) -> tuple[TeamTask, Emit]:
        """A new task, and the ``task.offer`` to emit. ``ValueError`` if the id is taken."""
        if task_id in self.tasks:
            raise ValueError(f"task {task_id} already exists")
        task = TeamTask(task_id, title, spec, requires, last_activity=now)
        self.tasks[task_id] = task
        self._open[task_id] = _Open(now + REANNOUNCE_FIRST)
        self._refresh(task_id)
        return task, Emit(task_id, TASK_OFFER, self.offer_payload(task))

    def withdraw(self, task_id: str) -> None:
        """Forget a task whose offer could not be emitted."""
        self.tasks.pop(task_id, None)
        self._open.pop(task_id, None)
        self._refresh(task_id)

    # -- events -----------------------------------------------------------------------------

    def handle(self, now: float, event: ConversationEvent) -> list[Emit | Finished]:
        """React to a task event from the swarm (other kinds and unknown tasks: nothing)."""
        if event.kind == TASK_CLAIM:
            return self._claim(now, event)
        if event.kind not in (TASK_PROGRESS, TASK_DONE, TASK_FAILED, TASK_RELEASE):
            return []
        task = self._fenced(event)
        if task is None:
            return []
        payload = event.payload
        if event.kind == TASK_PROGRESS:
            task.last_activity = now
            task.lease_expires = now + self.lease
            if not payload.get("heartbeat"):
                task.progress.append(dict(payload))
                del task.progress[:-PROGRESS_LIMIT]
            return []
        if event.kind == TASK_RELEASE:
            return self._reoffer(now, task)
        if event.kind == TASK_DONE:
            _finish(task, now, "done", payload.get("result"), None)
        else:
            _finish(task, now, "failed", None, str(payload.get("error", "unknown error")))
            kind = payload.get("type")
            task.error_type = kind if isinstance(kind, str) and kind else None
        self._open.pop(task.id, None)
        self._refresh(task.id)
        self.finished += 1
        return [Finished(task)]

    def _fenced(self, event: ConversationEvent) -> TeamTask | None:
        task = self.tasks.get(task_id_of(event) or "")
        if task is None or task.status != "claimed" or task.assignee is None:
            return None
        if event.peer.id != task.assignee.id or not may_move(event, task.assignee.verified):
            return None
        if event.payload.get("attempt") is not None and attempt_of(event.payload) != task.attempts:
            return None
        return task

    def _claim(self, now: float, event: ConversationEvent) -> list[Emit | Finished]:
        task = self.tasks.get(task_id_of(event) or "")
        if task is None or task.status != "offered":
            return []
        if attempt_of(event.payload) != task.attempts:
            return []  # a claim for another attempt (or none named)
        offered = set(str_list(event.payload.get("capabilities"))) | set(event.peer.capabilities)
        if not set(task.requires) <= offered:
            return []
        task.status, task.assignee = "claimed", replace(event.peer, verified=event.verified)
        task.last_activity = now
        task.lease_expires = now + self.lease
        self._refresh(task.id)
        self.grants += 1
        payload = {
            "task_id": task.id,
            "worker_id": event.peer.id,
            "worker_name": event.peer.name,
            "attempt": task.attempts,
            "lease": self.lease,
        }
        return [Emit(task.id, TASK_GRANT, payload, parent_id=event.event_id)]

    def _reoffer(self, now: float, task: TeamTask) -> list[Emit | Finished]:
        if self.max_attempts is not None and task.attempts >= self.max_attempts:
            error = f"no worker completed the task after {task.attempts} attempts"
            _finish(task, now, "failed", None, error)
            self._open.pop(task.id, None)
            self._refresh(task.id)
            self.finished += 1
            return [Finished(task)]
        task.attempts += 1
        task.status, task.assignee, task.lease_expires = "offered", None, None
        task.last_activity = now
        self._open[task.id] = _Open(now + REANNOUNCE_FIRST)
        self._refresh(task.id)
        self.reoffers += 1
        return [Emit(task.id, TASK_OFFER, self.offer_payload(task))]

    def checkpoint(self, task_id: str) -> Emit | None:
        """A ``task.state`` event recording an unfinished task (its offer and, if claimed, its
        assignee), for when the conversation's earlier events were compacted away."""
        task = self.tasks.get(task_id)
        if task is None or task.finished:
            return None
        payload = {**self.offer_payload(task), "status": task.status}
        if task.assignee is not None:
            payload.update(worker_id=task.assignee.id, worker_name=task.assignee.name,
                           worker_verified=task.assignee.verified)  # fmt: skip
        return Emit(task_id, TASK_STATE, payload)

    def peer_offline(self, now: float, peer_id: str) -> list[Emit | Finished]:
        """Re-offer (at once) every task whose assignee is ``peer_id``."""
        actions: list[Emit | Finished] = []
        for task_id in list(self._open):
            task = self.tasks[task_id]
            assignee = task.assignee
            if task.status == "claimed" and assignee is not None and assignee.id == peer_id:
                actions += self._reoffer(now, task)
        return actions

    def peer_joined(self, now: float) -> None:
        """Re-announce every unclaimed offer shortly (``JOIN_DELAY``), for the newcomer."""
        at = now + JOIN_DELAY
        for task_id, entry in self._open.items():
            if self.tasks[task_id].status != "offered":
                continue
            if entry.announce_at is None or entry.announce_at > at:
                entry.announce_at, entry.backoff = at, REANNOUNCE_FIRST
                self._refresh(task_id)

    def tick(self, now: float, history: History | None = None) -> list[Emit | Finished]:
        """Whatever is due at ``now``: expired leases (re-offer or, past ``max_attempts``,
        fail), re-announcements of unclaimed offers, pruning after ``task_retention``.

        ``history(task_id)`` (the conversation's stored events), if given, is read before a
        lease is declared expired, so a ``done`` whose lifecycle event was lost still counts.
        """
        actions: list[Emit | Finished] = []
        while self._timers and self._timers[0][0] <= now:
            at, _, task_id = heapq.heappop(self._timers)
            if self._due.get(task_id) != at:
                continue  # stale
            del self._due[task_id]
            task = self.tasks.get(task_id)
            if task is None:
                continue
            if task.finished:
                del self.tasks[task_id]  # its retention is over
                continue
            entry = self._open[task_id]
            if task.status == "claimed" and (task.lease_expires or 0.0) <= now:
                if history is not None:
                    for event in history(task_id):
                        if event.kind in (TASK_DONE, TASK_FAILED) and not task.finished:
                            actions += self.handle(now, event)
                if not task.finished:
                    actions += self._reoffer(now, task)
            elif task.status == "offered" and (entry.announce_at or 0.0) <= now:
                self.announcements += 1
                actions.append(Emit(task_id, TASK_OFFER, self.offer_payload(task)))
                entry.backoff = min(entry.backoff * 2, max(self.lease, REANNOUNCE_FIRST))
                entry.announce_at = now + entry.backoff
            self._refresh(task_id)
        return actions

    # -- restoring --------------------------------------------------------------------------

    def restore(
        self, now: float, conversations: Iterable[tuple[str, Sequence[ConversationEvent]]]
    ) -> int:
        """Adopt the tasks this node offered (an offer or checkpoint authored by ``owner_id``)
        from stored conversations: the latest one gives the task and its attempt, our grant
        (or checkpoint) for that attempt its assignee (whose lease runs from its last accepted
        event), and the assignee's events are replayed with the live fencing rules. Unclaimed
        offers are re-announced at the next tick; expired leases re-offered. Returns how many
        were adopted; tasks already in the table are left alone."""
        adopted, finished = 0, self.finished
        for cid, events in conversations:
            if cid in self.tasks:
                continue
            ours = [e for e in events if e.peer.id == self.owner_id and task_id_of(e) == cid]
            offers = [e for e in ours if e.kind in (TASK_OFFER, TASK_STATE)]
            if not offers:
                continue
            payload = offers[-1].payload
            task = TeamTask(
                cid,
                str(payload.get("title", "")),
                dict(payload["spec"]) if isinstance(payload.get("spec"), dict) else {},
                str_list(payload.get("requires")),
                attempts=max(attempt_of(e.payload) or 1 for e in offers),
                last_activity=max(e.created_at for e in events),
            )
            self.tasks[cid] = task
            self._open[cid] = _Open(now)
            claims = {
                e.event_id: replace(e.peer, verified=e.verified)
                for e in events
                if e.kind == TASK_CLAIM
            }
            for grant in ours:
                worker = grant.payload.get("worker_id")
                if (
                    grant.kind in (TASK_GRANT, TASK_STATE)
                    and isinstance(worker, str)
                    and attempt_of(grant.payload) in (None, task.attempts)
                ):
                    peer = claims.get(grant.parent_id or "")
                    if peer is None or peer.id != worker:
                        name = str(grant.payload.get("worker_name", ""))
                        signed = grant.verified and grant.payload.get("worker_verified") is True
                        peer = Peer(id=worker, address="", port=0, name=name, verified=signed)
                    task.status, task.assignee = "claimed", peer
                    task.lease_expires = grant.created_at + self.lease
            for event in events:
                if task.status == "claimed" and event.kind != TASK_RELEASE:
                    self.handle(event.created_at, event)
            if task.status == "claimed" and any(
                e.kind == TASK_RELEASE and self._fenced(e) is not None for e in events
            ):
                task.lease_expires = now  # handed back: re-offer at the next tick
            self._refresh(cid)
            adopted += 1
        self.finished = finished  # replayed results are not new ones
        return adopted
