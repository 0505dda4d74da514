"""The worker side of the teams protocol, sans-IO: claims, runs and the grants that count.

Re-exported by :mod:`._state`; see its documentation for the rules. Only the offering team's
grant (its author is the offer's author) for the attempt claimed starts a run; a grant naming
another worker ends the claim; a newer attempt of a task being run makes the run stale.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Any

from ..conversations._signing import may_move
from ..types import ConversationEvent
from ._protocol import attempt_of, str_list, task_id_of

__all__ = ["Cancel", "Claim", "ClaimBook", "OfferInfo", "Start"]


@dataclass(frozen=True, slots=True)
class OfferInfo:
    """What a worker keeps of an offer (``attempt`` is the one it claims or runs)."""

    task_id: str
    attempt: int | None
    title: str
    spec: dict[str, Any]
    requires: list[str]
    team_id: str
    offer_id: str
    #: The offer was signed by its author (``team_id``): only signed grants count then.
    verified: bool = False

    @classmethod
    def parse(cls, event: ConversationEvent) -> OfferInfo | None:
        task_id = task_id_of(event)
        if task_id is None or event.payload.get("task_id") is None:
            return None
        spec = event.payload.get("spec")
        return cls(
            task_id,
            attempt_of(event.payload),
            str(event.payload.get("title", "")),
            dict(spec) if isinstance(spec, dict) else {},
            str_list(event.payload.get("requires")),
            event.peer.id,
            event.event_id,
            event.verified,
        )


@dataclass(frozen=True, slots=True)
class Claim:
    """Emit a ``task.claim`` for ``offer`` (then tell the book its event id)."""

    offer: OfferInfo


@dataclass(frozen=True, slots=True)
class Start:
    """Run the handler for ``offer`` (``lease``: the team's lease, if the grant says)."""

    offer: OfferInfo
    lease: float | None = None


@dataclass(frozen=True, slots=True)
class Cancel:
    """Stop running ``task_id``'s attempt ``attempt``: the team has moved on."""

    task_id: str
    attempt: int | None


@dataclass(slots=True)
class _Pending:
    offer: OfferInfo
    at: float
    claim_id: str | None = None


def _newer(a: int | None, b: int | None) -> bool:
    return a is not None and b is not None and a > b


@dataclass
class ClaimBook:
    """The worker side: open claims (``pending``) and runs (``running``), by task id.

    With ``max_concurrent``, claims plus runs never exceed it: offers seen meanwhile wait (at
    most ``waiting_limit``, oldest dropped first) and are claimed when a slot frees. The last
    ``ran_limit`` attempts run are remembered, so a late copy of their offer or grant never
    runs them again.
    """

    node_id: str
    claim_timeout: float = 60.0
    max_concurrent: int | None = None
    waiting_limit: int = 1024
    ran_limit: int = 4096
    accepting: bool = True
    pending: dict[str, _Pending] = field(default_factory=dict)
    running: dict[str, OfferInfo] = field(default_factory=dict)
    waiting: OrderedDict[str, OfferInfo] = field(default_factory=OrderedDict)
    ran: OrderedDict[tuple[str, int | None], None] = field(default_factory=OrderedDict)

    def _full(self) -> bool:
        limit = self.max_concurrent
        return limit is not None and len(self.pending) + len(self.running) >= limit

    def offer(
        self, now: float, event: ConversationEvent, *, capable: bool
    ) -> list[Claim | Start | Cancel]:
        """An offer arrived: claim it if ``capable`` (requirements met, a handler) and there
        is room. A newer attempt of a task this worker runs means its run is stale: cancel."""
        info = OfferInfo.parse(event)
        if info is None:
            return []
        actions: list[Claim | Start | Cancel] = []
        run = self.running.get(info.task_id)
        if run is not None:
            if run.team_id != info.team_id or not _newer(info.attempt, run.attempt):
                return []  # a re-announcement of the attempt being run, or noise
            if not may_move(event, run.verified):
                return []
            del self.running[info.task_id]
            actions.append(Cancel(info.task_id, run.attempt))
        if not capable or not self.accepting or (info.task_id, info.attempt) in self.ran:
            return actions
        pending = self.pending.get(info.task_id)
        if pending is not None and pending.offer.team_id == info.team_id:
            if _newer(pending.offer.attempt, info.attempt):
                return actions  # a late copy of an older offer
        elif self._full():
            self.waiting[info.task_id] = info
            self.waiting.move_to_end(info.task_id)
            while len(self.waiting) > self.waiting_limit:
                self.waiting.popitem(last=False)
            return actions
        self.pending[info.task_id] = _Pending(info, now)
        return [*actions, Claim(info)]

    def claimed(self, task_id: str, claim_id: str) -> None:
        """The claim for ``task_id`` was emitted as event ``claim_id``."""
        pending = self.pending.get(task_id)
        if pending is not None:
            pending.claim_id = claim_id

    def grant(self, now: float, event: ConversationEvent) -> list[Claim | Start | Cancel]:
        """A grant arrived. Only the offering team's grant for the claimed attempt counts:
        naming this worker it starts a run, naming another it ends the claim."""
        task_id = task_id_of(event) or ""
        waiting = self.waiting.get(task_id)
        if waiting is not None and waiting.team_id == event.peer.id:
            del self.waiting[task_id]
        pending = self.pending.get(task_id)
        if pending is None or event.peer.id != pending.offer.team_id:
            return []
        if not may_move(event, pending.offer.verified):
            return []
        attempt = attempt_of(event.payload)
        if attempt is None and event.payload.get("attempt") is not None:
            return []  # malformed
        if attempt is not None and pending.offer.attempt not in (None, attempt):
            return []
        if event.payload.get("worker_id") != self.node_id:
            del self.pending[task_id]
            return self.refill(now)
        if attempt is None and pending.claim_id not in (None, event.parent_id):
            return []  # a grant (without attempt) answering an older claim of ours
        del self.pending[task_id]
        lease = event.payload.get("lease")
        if isinstance(lease, bool) or not isinstance(lease, int | float) or not lease > 0:
            lease = None
        run = replace(pending.offer, attempt=attempt or pending.offer.attempt)
        self.running[task_id] = run
        self.ran[(task_id, run.attempt)] = None
        while len(self.ran) > self.ran_limit:
            self.ran.popitem(last=False)
        return [Start(run, None if lease is None else float(lease))]

    def finished(
        self, now: float, task_id: str, attempt: int | None
    ) -> list[Claim | Start | Cancel]:
        """A run ended (whatever the outcome)."""
        run = self.running.get(task_id)
        if run is not None and run.attempt == attempt:
            del self.running[task_id]
        return self.refill(now)

    def refill(self, now: float) -> list[Claim | Start | Cancel]:
        """Claim waiting offers while there is room."""
        actions: list[Claim | Start | Cancel] = []
        while self.accepting and self.waiting and not self._full():
            _, info = self.waiting.popitem(last=False)
            busy = info.task_id in self.running or info.task_id in self.pending
            if not busy and (info.task_id, info.attempt) not in self.ran:
                self.pending[info.task_id] = _Pending(info, now)
                actions.append(Claim(info))
        return actions

    def tick(self, now: float) -> list[Claim | Start | Cancel]:
        """Forget claims older than ``claim_timeout`` (never granted to anyone we heard of)."""
        horizon = now - self.claim_timeout
        for task_id in [t for t, p in self.pending.items() if p.at <= horizon]:
            del self.pending[task_id]
        return self.refill(now)

    def next_deadline(self) -> float | None:
        if not self.pending:
            return None
        return min(p.at for p in self.pending.values()) + self.claim_timeout
