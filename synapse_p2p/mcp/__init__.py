"""Any MCP client joins the swarm: an MCP server that speaks for a node.

``sn mcp SWARM --seed HOST:PORT`` runs it on stdio for a client to launch (Claude Desktop,
Claude Code, IDE assistants...); an application exposes its own node the same way::

    from synapse_p2p import Node
    from synapse_p2p.mcp import serve_stdio

    async with Node(name="assistant", swarm="lab", seeds=["127.0.0.1:9999"]) as node:
        await serve_stdio(node)          # until the client closes stdin

or builds the server for another MCP transport with :func:`open_bridge` and
:func:`build_server`. Needs the ``mcp`` extra (``pip install 'synapse-p2p[mcp]'``), the
official MCP SDK, which runs on anyio: the server works under trio and asyncio alike.

Tools: ``list_peers``, ``describe_peer``, ``ask_swarm``, ``ask_peer``, ``call_endpoint``,
``offer_task``, ``task_status``, ``wait_task``, ``list_conversations``,
``read_conversation``, ``post_event``, and for being asked: ``next_ask``/``reply``,
``next_task``/``progress``/``done``/``fail``. Resources: peers' agent cards
(``synapse://peer/{peer}/agent-card``) and conversations
(``synapse://conversation/{conversation_id}``). When an ask is ACKed, and what happens to asks
and tasks nobody takes, is described in :mod:`synapse_p2p.mcp._inbox` and
:mod:`synapse_p2p.mcp._desk`.
"""

from __future__ import annotations

try:
    import mcp as _mcp  # noqa: F401  (the official SDK; this package is synapse_p2p.mcp)
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("synapse_p2p.mcp needs the MCP SDK: pip install 'synapse-p2p[mcp]'") from exc

from ._bridge import SwarmBridge, ToolError, open_bridge
from ._desk import TaskDesk
from ._inbox import AskInbox, InboxError
from ._server import build_server, serve_stdio

__all__ = [
    "AskInbox",
    "InboxError",
    "SwarmBridge",
    "TaskDesk",
    "ToolError",
    "build_server",
    "open_bridge",
    "serve_stdio",
]
