"""The MCP server (the official SDK's low-level ``Server``) over a :class:`SwarmBridge`."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote, unquote

import jsonschema
import mcp.types as types
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server
from mcp.shared.exceptions import MCPError
from mcp.types.jsonrpc import INVALID_PARAMS

from .. import __version__
from ..errors import (
    CallTimeout,
    ConnectError,
    ConnectionLost,
    RemoteError,
    SynapseError,
    TeamTaskError,
)
from ..node import Node
from ._bridge import SwarmBridge, ToolError, open_bridge, remote_message
from ._inbox import InboxError
from ._output import json_text
from ._stdin import StdinLines
from ._tools import TOOLS, ToolSpec

__all__ = ["build_server", "serve_stdio"]

log = logging.getLogger(__name__)

INSTRUCTIONS = (
    "These tools make you a member of a synapse-p2p swarm: a group of nodes (agents, scripts, "
    "services) that find each other and share work. list_peers shows who is there and what "
    "they do. ask_swarm hands a task to everyone who wants it; ask_peer and call_endpoint "
    "reach one peer; offer_task gives work to exactly one capable worker. Other nodes can ask "
    "you too: poll next_ask (and next_task for team work) and answer what you take with "
    "reply (or progress/done/fail). Every ask and task is a conversation you can read."
)

PEER_CARD = "synapse://peer/{peer}/agent-card"
CONVERSATION = "synapse://conversation/{conversation_id}"
#: At most this many peers and conversations are listed as resources.
RESOURCE_LIST_LIMIT = 100


def _tool(spec: ToolSpec) -> types.Tool:
    return types.Tool(
        name=spec.name,
        title=spec.title,
        description=spec.description,
        input_schema=spec.schema,
        annotations=types.ToolAnnotations(
            title=spec.title, read_only_hint=spec.read_only, open_world_hint=True
        ),
    )


def _text(data: dict[str, Any], *, error: bool = False) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(text=json_text(data))],
        structured_content=None if error else data,
        is_error=error,
    )


def _failure(message: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(text=message)], is_error=True)


def _message_for(exc: Exception) -> str:
    """What the client reads for an error raised by a tool."""
    if isinstance(exc, ToolError | InboxError | TeamTaskError):
        return str(exc)
    if isinstance(exc, RemoteError):
        return remote_message(exc)
    if isinstance(exc, CallTimeout | TimeoutError):
        return f"timed out: {exc or 'no answer in time'}"
    if isinstance(exc, ConnectError | ConnectionLost | ConnectionError):
        return f"the peer is unreachable (gone?): {exc}"
    if isinstance(exc, OSError):
        return f"network error: {exc}"
    if isinstance(exc, TypeError | ValueError):
        return f"bad arguments: {exc}"
    if isinstance(exc, SynapseError):
        return f"{type(exc).__name__}: {exc}"
    if isinstance(exc, RuntimeError):
        return str(exc)
    log.error("tool failed unexpectedly", exc_info=exc)
    return f"internal error: {type(exc).__name__}: {exc}"


def build_server(bridge: SwarmBridge, *, name: str = "synapse-p2p") -> Server[Any]:
    """An MCP server (``mcp.server.lowlevel.Server``) offering the tools and resources of
    :mod:`synapse_p2p.mcp` for ``bridge``'s node. Serve it over any MCP transport; the
    node and the bridge must stay open while it serves.

    A tool call never raises to the SDK: bad arguments, unknown or vanished peers, timeouts and
    remote failures come back as tool results with ``isError`` and a one-line reason.
    """
    specs = {spec.name: spec for spec in TOOLS}
    validators = {spec.name: jsonschema.Draft202012Validator(spec.schema) for spec in TOOLS}
    tools = [_tool(spec) for spec in TOOLS]

    async def list_tools(
        ctx: Any, params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=tools)

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        spec = specs.get(params.name)
        if spec is None:
            return _failure(f"no tool {params.name!r}; the tools are: {', '.join(specs)}")
        arguments = dict(params.arguments or {})
        problem = jsonschema.exceptions.best_match(validators[spec.name].iter_errors(arguments))
        if problem is not None:
            where = ".".join(str(p) for p in problem.absolute_path)
            at = f" (at {where})" if where else ""
            return _failure(f"bad arguments for {spec.name}{at}: {problem.message}")
        try:
            return _text(await spec.handler(bridge, arguments))
        except Exception as exc:  # every failure is the client's to read, never a crash
            return _failure(_message_for(exc))

    async def list_resources(
        ctx: Any, params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        node = bridge.node
        resources = [
            types.Resource(
                uri=PEER_CARD.format(peer=peer.id),
                name=f"agent card of {peer.name or peer.id[:12]}",
                description="The peer's agent-card artifact (what the agent behind it does).",
                mime_type="application/json",
            )
            for peer in list(node.peers.values())[:RESOURCE_LIST_LIMIT]
        ]
        for cid in node.conversations()[:RESOURCE_LIST_LIMIT]:
            resources.append(
                types.Resource(
                    uri=CONVERSATION.format(conversation_id=quote(cid, safe="")),
                    name=f"conversation {cid}",
                    description="The conversation's first events (read_conversation pages on).",
                    mime_type="application/json",
                )
            )
        return types.ListResourcesResult(resources=resources)

    async def list_templates(
        ctx: Any, params: types.PaginatedRequestParams | None
    ) -> types.ListResourceTemplatesResult:
        return types.ListResourceTemplatesResult(
            resource_templates=[
                types.ResourceTemplate(uri_template=PEER_CARD, name="agent-card",
                                       description="A peer's agent card, by peer id or name.",
                                       mime_type="application/json"),
                types.ResourceTemplate(uri_template=CONVERSATION, name="conversation",
                                       description="A conversation's first events.",
                                       mime_type="application/json"),
            ]
        )  # fmt: skip

    async def read_resource(
        ctx: Any, params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        uri = str(params.uri)
        try:
            data = await _read(bridge, uri)
        except (ToolError, SynapseError, OSError) as exc:
            raise MCPError(INVALID_PARAMS, f"cannot read {uri}: {exc}") from None
        return types.ReadResourceResult(
            contents=[
                types.TextResourceContents(
                    uri=uri, mime_type="application/json", text=json.dumps(data, indent=2)
                )
            ]
        )

    return Server(
        name,
        version=__version__,
        title="synapse-p2p swarm",
        instructions=INSTRUCTIONS,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_resources=list_resources,
        on_list_resource_templates=list_templates,
        on_read_resource=read_resource,
    )


async def _read(bridge: SwarmBridge, uri: str) -> dict[str, Any]:
    prefix = "synapse://"
    if not uri.startswith(prefix):
        raise ToolError("not a synapse:// resource")
    parts = uri[len(prefix) :].split("/")
    if len(parts) == 3 and parts[0] == "peer" and parts[2] == "agent-card":
        peer = bridge.find_peer(unquote(parts[1]))
        card = await bridge.agent_card(peer)
        if card is None:
            raise ToolError(f"{peer.name or peer.id[:12]} publishes no agent card")
        return card
    if len(parts) == 2 and parts[0] == "conversation":
        return bridge.read_conversation(unquote(parts[1]), 0.0, None, 200)
    raise ToolError("unknown resource (see resources/templates/list)")


async def serve_stdio(node: Node, *, name: str = "synapse-p2p", **options: Any) -> None:
    """Serve the tools for ``node`` (running) to the MCP client on this process's stdin and
    stdout, until the client closes stdin; ``options`` go to :func:`open_bridge`.

    While it serves, stdout carries only MCP messages: the SDK points file descriptor 1 at
    stderr for everything else (log to stderr). On return or cancellation the bridge is
    closed (held team tasks are handed back); the node keeps running.
    """
    async with open_bridge(node, **options) as bridge:
        server = build_server(bridge, name=name)
        async with _stdin() as stdin, stdio_server(stdin=stdin) as (read_stream, write_stream):
            await server.run(read_stream, write_stream, server.create_initialization_options())


@contextlib.asynccontextmanager
async def _stdin() -> AsyncIterator[Any]:
    """Standard input as lines a cancellation can interrupt (see :mod:`._stdin`), or None
    (the SDK's own reader) where the descriptor cannot be used that way."""
    try:
        reader = StdinLines(sys.stdin.fileno())
    except (AttributeError, OSError, ValueError):  # no real stdin (embedded), or no fcntl
        yield None
        return
    async with reader:
        yield reader
