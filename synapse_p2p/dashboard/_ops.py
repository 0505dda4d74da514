"""What a page may ask of the dashboard over its WebSocket (JSON objects with an ``op``).

=================  ==================================================================
``op``             answer
=================  ==================================================================
``timeline``       ``{type: "timeline", id, events}``: the kept events of conversation ``id``;
                   new events of it then follow as ``{type: "events", id, events}``
``card``           ``{type: "card", peer, card, methods}``: the peer's ``agent-card``
                   artifact and its ``_synapse.methods`` list (each may be an error string)
``ask``            ``{type: "ask-result", ok, id | error}``: broadcasts ``synapse.ask`` with
                   ``task`` and ``context``; only with ``--allow-ask``, from loopback, with
                   the session ``token``
=================  ==================================================================

Every request gets one answer; a request the dashboard cannot satisfy gets
``{type: "error", op, error}``. Calls to peers are bounded by a timeout.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio

from ..node import Node
from ._state import DashboardState

__all__ = ["answer"]

log = logging.getLogger(__name__)

PEER_TIMEOUT = 8.0
MAX_TASK = 4000


def _error(op: Any, message: str) -> dict[str, Any]:
    return {"type": "error", "op": str(op)[:40], "error": message[:300]}


async def answer(
    node: Node, state: DashboardState, request: dict[str, Any], ask_refusal: str | None
) -> dict[str, Any]:
    """The answer to one page request; see the module documentation."""
    op = request.get("op")
    if op == "timeline":
        cid = request.get("id")
        events = state.timeline(cid) if isinstance(cid, str) else None
        if events is None:
            return _error(op, "unknown conversation")
        return {"type": "timeline", "id": cid, "events": events}
    if op == "card":
        peer_id = request.get("peer")
        peer = node.peers.get(peer_id) if isinstance(peer_id, str) else None
        if peer is None:
            return _error(op, "not a live peer")
        card: Any
        methods: Any
        try:
            with anyio.fail_after(PEER_TIMEOUT):
                card = (await node.fetch_artifact(peer, "agent-card")).content
        except Exception as exc:
            card = f"no agent card ({type(exc).__name__}: {exc})"[:300]
        try:
            methods = await node.call_peer(peer, "_synapse.methods", timeout=PEER_TIMEOUT)
        except Exception as exc:
            methods = f"no endpoint list ({type(exc).__name__}: {exc})"[:300]
        return {"type": "card", "peer": peer.id, "card": card, "methods": methods}
    if op == "ask":
        if ask_refusal is not None:
            return {"type": "ask-result", "ok": False, "error": ask_refusal}
        task, context = request.get("task"), request.get("context") or {}
        if not isinstance(task, str) or not task.strip() or len(task) > MAX_TASK:
            return {"type": "ask-result", "ok": False, "error": "the task must be 1-4000 chars"}
        if not isinstance(context, dict):
            return {"type": "ask-result", "ok": False, "error": "context must be an object"}
        try:
            with anyio.fail_after(PEER_TIMEOUT):
                broadcast = await node.broadcast("synapse.ask", task, context=context)
        except Exception as exc:
            log.warning("dashboard ask failed: %s", exc)
            return {"type": "ask-result", "ok": False, "error": f"ask failed: {exc}"[:300]}
        return {"type": "ask-result", "ok": True, "id": broadcast.nonce}
    return _error(op, "unknown op")
