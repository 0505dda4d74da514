"""Conversation decisions, sans-IO: sync pages, digest diffs, compaction and retention.

Plain functions over plain data; the service (:mod:`._service`) does the I/O around them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..types import ConversationEvent

__all__ = [
    "DIGEST_SIZE",
    "LEGACY_SYNC_BYTES",
    "SYNC_PAGE",
    "SYNC_PAGE_BYTES",
    "CompactionPlan",
    "build_digest",
    "expired_conversations",
    "plan_compaction",
    "stale_conversations",
    "sync_page",
]

#: Events per sync page between our nodes.
SYNC_PAGE = 500
#: Encoded bytes of one sync page between our nodes, at most (one event at least): a page
#: stays under the RPC layer's 64 KiB threshold for decoding in a worker thread, so it is
#: decoded inline (no thread hop per page; and on virtual time, trio's ``MockClock``, a wait
#: for a thread lets the clock jump past every call's deadline).
SYNC_PAGE_BYTES = 48 * 1024
#: What a 2.5.0 caller (4 MiB frame limit) gets in one unpaged sync answer.
LEGACY_SYNC_BYTES = 3 * 1024 * 1024
#: Conversations listed in an anti-entropy digest (the most recently active).
DIGEST_SIZE = 256


def sync_page(
    events: Iterable[ConversationEvent],
    *,
    page: int | None,
    after: str | None,
    size_of: Callable[[dict[str, Any]], int],
) -> dict[str, Any]:
    """The answer to a sync request over ``events`` (read with ``limit=page + 1``).

    Paged (``page`` given, our nodes): at most ``page`` events and :data:`SYNC_PAGE_BYTES`
    (one event at least), ``more`` and the ``next`` cursor (the last event's id, or the
    request's ``after`` when empty). Unpaged (2.5.0 callers): events until their encoded size
    (``size_of``) would pass :data:`LEGACY_SYNC_BYTES`; a 2.5.0 node has no way to ask for the
    rest.
    """
    out: list[dict[str, Any]] = []
    size = 0
    more = False
    budget = LEGACY_SYNC_BYTES if page is None else SYNC_PAGE_BYTES
    for event in events:
        if page is not None and len(out) >= page:
            more = True
            break
        data = event.to_dict()
        size += size_of(data)
        if size > budget and (page is None or out):
            more = True
            break
        out.append(data)
    reply: dict[str, Any] = {"events": out}
    if page is not None:
        reply["more"] = more
        reply["next"] = out[-1]["event_id"] if out else after
    return reply


def build_digest(
    conversations: Sequence[str],
    count: Callable[[str], int],
    last_activity: Callable[[str], float | None],
) -> dict[str, list[float]]:
    """``{conversation: [event count, last activity]}`` for the first :data:`DIGEST_SIZE`
    conversations (most recently active first)."""
    return {
        cid: [float(count(cid)), float(last_activity(cid) or 0.0)]
        for cid in conversations[:DIGEST_SIZE]
    }


def stale_conversations(mine: Mapping[str, list[float]], theirs: Any) -> list[str]:
    """Conversations a peer's digest shows we lack or are behind on (more events, or newer
    activity); malformed entries are skipped, at most :data:`DIGEST_SIZE` are read."""
    if not isinstance(theirs, dict):
        return []
    out: list[str] = []
    for cid, info in list(theirs.items())[:DIGEST_SIZE]:
        if not isinstance(cid, str) or not isinstance(info, list) or len(info) != 2:
            continue
        count, last = info
        if any(isinstance(v, bool) or not isinstance(v, int | float) for v in (count, last)):
            continue
        have = mine.get(cid)
        if have is None or count > have[0] or last > have[1]:
            out.append(cid)
    return out


@dataclass(frozen=True, slots=True)
class CompactionPlan:
    """What compacting a conversation folds: ``fold`` (oldest first) becomes one summary
    event whose parent is ``head`` (the opening event, kept verbatim), if any."""

    head: ConversationEvent | None
    fold: list[ConversationEvent]


def plan_compaction(events: Sequence[ConversationEvent], keep_recent: int) -> CompactionPlan:
    """Fold every event but the opening one and the last ``keep_recent``.

    The opening event stays verbatim whatever its kind (a broadcast's message, a team task's
    offer): a conversation is read from its first event. An earlier summary is folded again.
    """
    head = events[0] if events and events[0].kind != "summary" else None
    body = events[1:] if head is not None else events
    fold = list(body[: max(0, len(body) - keep_recent)] if keep_recent else body)
    return CompactionPlan(head, fold)


def expired_conversations(
    conversations: Iterable[str], last_activity: Callable[[str], float | None], horizon: float
) -> list[str]:
    """Conversations whose last activity is older than ``horizon`` (epoch seconds)."""
    out = []
    for cid in conversations:
        last = last_activity(cid)
        if last is not None and last < horizon:
            out.append(cid)
    return out
