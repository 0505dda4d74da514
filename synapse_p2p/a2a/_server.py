"""The HTTP side: the a2a-sdk's JSON-RPC routes and agent cards, served by hypercorn.

Routes (``BASE`` is the server's URL):

* ``GET /.well-known/agent-card.json``: the swarm as one router agent; JSON-RPC at ``BASE/``.
* ``GET /nodes/{node_id}/.well-known/agent-card.json``: one live member; JSON-RPC at
  ``BASE/nodes/{node_id}/`` (its messages go to that member only).

Hypercorn serves the app under trio (``hypercorn.trio``) or asyncio (``hypercorn.asyncio``),
whichever runs the caller.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import sniffio
from a2a.server.context import ServerCallContext
from a2a.server.request_handlers.response_helpers import agent_card_to_dict
from a2a.server.routes import create_jsonrpc_routes
from a2a.server.routes.common import DefaultServerCallContextBuilder
from a2a.types import AgentCard
from a2a.utils.constants import AGENT_CARD_WELL_KNOWN_PATH
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..federation import AgentFederation, SwarmAgentRegistry
from ._handler import SwarmRequestHandler
from ._mdns import advertise_a2a
from ._signing import CardSigner
from ._swarm import SwarmRouter

if TYPE_CHECKING:
    from ..node import Node

__all__ = ["A2AServer", "build_app", "open_a2a_server", "serve_a2a"]

logger = logging.getLogger(__name__)

CARD_PATH = AGENT_CARD_WELL_KNOWN_PATH
#: Largest request body accepted (bytes).
MAX_BODY = 4 * 1024 * 1024
#: Seconds open requests get to finish when the server stops.
GRACE = 1.0


class _NodeContextBuilder(DefaultServerCallContextBuilder):
    """Puts the ``{node_id}`` of a per-member route into the call context."""

    def build(self, request: Request) -> ServerCallContext:
        context = super().build(request)
        node_id = request.path_params.get("node_id")
        if node_id is not None:
            context.state["node_id"] = node_id
        return context


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


class _BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes is refused (HTTP 413, which the
    SDK's JSON-RPC dispatcher answers as a JSON-RPC "Payload too large" error)."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await JSONResponse({"error": "payload too large"}, status_code=413)(
                    scope, receive, send
                )
                return
        seen = 0

        async def limited() -> Any:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise HTTPException(413)
            return message

        await self.app(scope, limited, send)


def build_app(
    router: SwarmRouter, handler: SwarmRequestHandler, *, max_body: int = MAX_BODY
) -> Any:
    """The ASGI app: cards and JSON-RPC for the swarm and for each member; request bodies
    are limited to ``max_body`` bytes."""

    def card_response(card: AgentCard) -> Response:
        return JSONResponse(agent_card_to_dict(card), headers={"Cache-Control": "no-cache"})

    async def swarm_card(request: Request) -> Response:
        return card_response(router.swarm_card(_base(request) + "/"))

    async def node_card(request: Request) -> Response:
        node_id = request.path_params["node_id"]
        card = router.node_card(node_id, f"{_base(request)}/nodes/{node_id}/")
        if card is None:
            return JSONResponse({"error": f"no live member {node_id!r}"}, status_code=404)
        return card_response(card)

    builder = _NodeContextBuilder()
    routes: list[Any] = [
        Route(CARD_PATH, swarm_card, methods=["GET"]),
        Route("/nodes/{node_id}" + CARD_PATH, node_card, methods=["GET"]),
        *create_jsonrpc_routes(handler, "/", context_builder=builder),
        *create_jsonrpc_routes(handler, "/nodes/{node_id}/", context_builder=builder),
    ]
    return _BodyLimit(Starlette(routes=routes), max_body)


@dataclass(frozen=True)
class A2AServer:
    """A running A2A endpoint (from :func:`open_a2a_server`)."""

    host: str
    port: int
    router: SwarmRouter
    handler: SwarmRequestHandler

    @property
    def url(self) -> str:
        """The base URL (the swarm card is at ``url + "/.well-known/agent-card.json"``)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def node_url(self, node_id: str) -> str:
        return f"{self.url}/nodes/{node_id}"


def _listen(bind: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((bind, port))
        sock.listen(128)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


async def _serve_http(
    app: Any,
    sock: socket.socket,
    stop: anyio.Event,
    stopped: anyio.Event,
    shield: anyio.CancelScope,
    *,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until ``stop`` is set, then set ``stopped``. Hypercorn runs in ``shield`` (a
    shielded scope), so it shuts down gracefully instead of being cancelled mid-request
    (which its asyncio side does not handle cleanly); the owner cancels ``shield`` if the
    graceful stop takes too long."""
    from hypercorn.config import Config

    config = Config()
    config.bind = [f"fd://{os.dup(sock.fileno())}"]  # hypercorn owns (and closes) the copy
    config.accesslog = None
    config.errorlog = logging.getLogger(f"{__name__}.hypercorn")  # not stderr
    config.graceful_timeout = GRACE
    try:
        # the socket already listens: connections queue until hypercorn accepts them
        task_status.started()
        with shield:
            if sniffio.current_async_library() == "trio":
                from hypercorn.trio import serve as trio_serve

                await trio_serve(app, config, shutdown_trigger=stop.wait)
            else:
                from hypercorn.asyncio import serve as asyncio_serve

                await asyncio_serve(app, config, shutdown_trigger=stop.wait)
    finally:
        stopped.set()


@contextlib.asynccontextmanager
async def open_a2a_server(
    node: Node,
    *,
    bind: str = "127.0.0.1",
    port: int = 8080,
    team_skills: Iterable[str] = (),
    signer: CardSigner | Callable[[AgentCard], AgentCard] | bool | None = None,
    timeout: float = 300.0,
    max_tasks: int = 1000,
    mdns: bool = False,
    name: str | None = None,
    registry: SwarmAgentRegistry | None = None,
    federation: AgentFederation | None = None,
) -> AsyncIterator[A2AServer]:
    """Serve ``node``'s swarm as an A2A agent over HTTP while the block runs.

    ``node`` must be running (``async with Node(...)``). ``port=0`` picks a free port (see
    ``server.port``). ``team_skills``: skills whose messages become team tasks (the node
    offers them with ``Team(node)``). ``signer``: a :class:`CardSigner` (or any function
    ``AgentCard -> AgentCard``) that signs every card served; by default the node's identity
    key signs them (key id: the node id), ``signer=False`` serves them unsigned. ``timeout``:
    the longest a task may run before it fails. ``mdns``: also advertise the endpoint as
    ``_a2a._tcp`` on the LAN.
    ``registry``/``federation``: bring your own (default: a :class:`SwarmAgentRegistry` run
    here and an :class:`AgentFederation` over it).

    Raises ``OSError`` if the address is in use. Leaving the block stops the HTTP server
    (open streams end), cancels running tasks and closes the team. Cancellation does the same.
    """
    skills = frozenset(team_skills)
    if signer is None or signer is True:
        signer = CardSigner.from_identity(node.identity)
    sign = signer.sign if isinstance(signer, CardSigner) else signer or None
    sock = _listen(bind, port)
    try:
        async with contextlib.AsyncExitStack() as stack:
            tg = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(tg.cancel_scope.cancel)  # runs first on exit: stop everything
            if registry is None:
                registry = SwarmAgentRegistry(node)
                await tg.start(registry.run)
            team = None
            if skills:
                from ..teams import Team

                team = await stack.enter_async_context(Team(node))
            router = SwarmRouter(
                node, registry, federation=federation, team=team, team_skills=skills,
                name=name, signer=sign,
            )  # fmt: skip
            handler = SwarmRequestHandler(router, tg, timeout=timeout, max_tasks=max_tasks)
            host, bound_port = sock.getsockname()[:2]
            server = A2AServer(host, bound_port, router, handler)
            stop, stopped = anyio.Event(), anyio.Event()
            shield = anyio.CancelScope(shield=True)
            app = build_app(router, handler)
            await tg.start(_serve_http, app, sock, stop, stopped, shield)
            if mdns:
                await tg.start(advertise_a2a, server, router.name)
            logger.info("A2A endpoint of swarm %r at %s", node.swarm, server.url)
            try:
                yield server
            finally:
                handler.close()  # open streams end
                stop.set()
                with anyio.move_on_after(GRACE + 1, shield=True):
                    await stopped.wait()
                shield.cancel()  # then everything else is cancelled
    finally:
        sock.close()


async def serve_a2a(
    node: Node,
    *,
    task_status: anyio.abc.TaskStatus[A2AServer] = anyio.TASK_STATUS_IGNORED,
    **options: Any,
) -> None:
    """Serve until cancelled (``await tg.start(serve_a2a, node, port=0)`` gives the
    :class:`A2AServer`); the options are those of :func:`open_a2a_server`."""
    async with open_a2a_server(node, **options) as server:
        task_status.started(server)
        await anyio.sleep_forever()
