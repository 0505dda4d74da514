"""The default summarizer: an extractive digest, byte for byte the one of synapse-p2p 2.5.0.

A node folds old conversation events into one ``summary`` event with a summarizer, an async
callable ``(events) -> str``. This one needs no model: a header counting the events per kind,
then one line per event (who, which kind, the payload as JSON cut to 200 characters); earlier
summaries contribute their own text (cut to 1,500 characters), so summaries of summaries stay
bounded. Only the last 40 lines are kept and the body is capped at its last 6,000 characters.
Hand the job to a language model with ``@node.summarizer``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Final

from ..types import ConversationEvent

__all__ = ["SUMMARY_KIND", "Summarizer", "default_summarizer"]

#: The kind of the event a compaction stores in place of the events it folds.
SUMMARY_KIND: Final = "summary"

#: What ``@node.summarizer`` accepts: ``async def summarize(events) -> str``.
Summarizer = Callable[[list[ConversationEvent]], Awaitable[str]]

_PREVIEW: Final = 200  # characters of JSON payload per event line
_PREVIOUS: Final = 1500  # characters kept of an earlier summary's text
_LINES: Final = 40  # lines kept (the most recent ones)
_BODY: Final = 6000  # characters kept of the body (the end of it)
_ELLIPSIS: Final = "…"


def _line(event: ConversationEvent) -> str:
    preview = json.dumps(event.payload, default=str)
    if len(preview) > _PREVIEW:
        preview = preview[:_PREVIEW] + _ELLIPSIS
    return f"{event.peer.name or event.peer.id} [{event.kind}]: {preview}"


async def default_summarizer(events: list[ConversationEvent]) -> str:
    """Digest ``events`` without a model (pure and quick; it never awaits anything).

    Returns ``"(<count> <kind>, ...)\\n<lines>"``: the header counts every event, summaries
    included, per kind in sorted order; each non-summary event gives
    ``"<peer name or id> [<kind>]: <payload as JSON, cut to 200 characters + '…'>"`` (values
    JSON cannot hold are written with ``str()``); each summary event gives its
    ``payload["summary"]`` text cut to 1,500 characters, or nothing if that text is empty. Only
    the last 40 lines are kept; a body longer than 6,000 characters keeps its last 6,000,
    prefixed with ``'…'``. Raises ``TypeError`` only if an element is not an event.
    """
    kinds: Counter[str] = Counter()
    lines: list[str] = []
    for event in events:
        kinds[event.kind] += 1
        if event.kind != SUMMARY_KIND:
            lines.append(_line(event))
        elif text := str(event.payload.get(SUMMARY_KIND, "")):
            lines.append(text[:_PREVIOUS])
    header = ", ".join(f"{kinds[kind]} {kind}" for kind in sorted(kinds))
    body = "\n".join(lines[-_LINES:])
    if len(body) > _BODY:
        body = _ELLIPSIS + body[-_BODY:]
    return f"({header})\n{body}"
