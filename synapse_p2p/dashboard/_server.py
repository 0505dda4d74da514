"""The dashboard server: the page, its assets and the live feed, on the node's own event loop.

One anyio TCP listener serves ``GET /`` (the page), ``GET /static/NAME`` (its script and style,
shipped in the package) and ``/ws`` (a WebSocket pushing a snapshot, then one coalesced delta
per ``interval``). See :func:`serve_dashboard`.
"""

from __future__ import annotations

import hmac
import importlib.resources
import ipaddress
import json
import logging
import secrets
from dataclasses import dataclass
from typing import Any

import anyio
import h11
from anyio.abc import SocketAttribute, SocketStream, TaskStatus

from ..events import (
    ConversationCompacted,
    ConversationPruned,
    EventStored,
    PeerHeartbeat,
    PeerJoined,
    PeerLeft,
    PeerOffline,
)
from ..node import Node
from ..types import ConversationEvent, Peer
from ._http import (
    MAX_REQUESTS,
    HttpRequest,
    WebSocket,
    is_loopback_host,
    read_request,
    respond,
)
from ._ops import answer
from ._state import DashboardState

__all__ = ["Dashboard", "serve_dashboard"]

log = logging.getLogger(__name__)

#: Queued messages per page; a page that falls further behind is disconnected (it reconnects
#: and starts again from a fresh snapshot).
CLIENT_BUFFER = 64
#: Longest wait for a peer's answer to an on-demand request (agent card, endpoints, ask).
PEER_TIMEOUT = 8.0
#: How many peers' roles are looked up at once, and how many may wait.
INFO_CONCURRENCY = 4
INFO_BACKLOG = 512

STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/style.css": ("style.css", "text/css; charset=utf-8"),
}


def _load_static() -> dict[str, tuple[bytes, str]]:
    folder = importlib.resources.files(__package__ or "synapse_p2p.dashboard") / "static"
    return {path: ((folder / name).read_bytes(), kind) for path, (name, kind) in STATIC.items()}


@dataclass(frozen=True, slots=True)
class Dashboard:
    """What :func:`serve_dashboard` reports once it listens."""

    url: str
    token: str | None

    @property
    def open_url(self) -> str:
        """The URL to open: with ``#token=...`` when asks are allowed (the fragment never
        leaves the browser except in the page's own ask requests)."""
        return f"{self.url}#token={self.token}" if self.token else self.url


class _Client:
    def __init__(self, ws: WebSocket, remote: str) -> None:
        self.ws = ws
        self.remote = remote
        self.send, self.receive = anyio.create_memory_object_stream[str](CLIENT_BUFFER)
        self.scope = anyio.CancelScope()
        self.watching: str | None = None  # the conversation whose timeline the page shows

    def push(self, text: str) -> None:
        try:
            self.send.send_nowait(text)
        except (anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError):
            self.scope.cancel()  # too slow: drop it; the page reconnects


class _Server:
    def __init__(
        self,
        node: Node,
        *,
        bind: str,
        allow_ask: bool,
        token: str | None,
        interval: float,
        max_clients: int,
    ) -> None:
        self.node = node
        self.bind = bind
        self.allow_ask = allow_ask
        self.token = token
        self.interval = interval
        self.max_clients = max_clients
        self.static = _load_static()
        self.state = DashboardState(
            node.node_id,
            suspect_after=max(1.5 * node.peer_timeout, 3.0 * (node.heartbeat_interval or 5.0)),
        )
        self.clients: set[_Client] = set()
        self.connections = 0
        self.running = True
        self.info_send, self.info_receive = anyio.create_memory_object_stream[Peer](INFO_BACKLOG)
        # Taken now, so nothing between here and the first snapshot is missed; read in order by
        # take_events(), closed when the dashboard stops.
        self.events = node.subscribe(
            PeerJoined,
            PeerHeartbeat,
            PeerOffline,
            PeerLeft,
            EventStored,
            ConversationCompacted,
            ConversationPruned,
        )

    async def take_events(self) -> None:
        async for event in self.events:
            if not self.running:
                return
            if isinstance(event, EventStored):
                self.feed("conversation.event", event.event)
            elif isinstance(event, ConversationCompacted):
                self.feed("conversation.compacted", event.summary)
            elif isinstance(event, ConversationPruned):
                self.feed("conversation.pruned", event.conversation_id)
            elif isinstance(event, PeerLeft):
                self.feed("peer.offline", event.peer)
            elif isinstance(event, PeerJoined | PeerHeartbeat | PeerOffline):
                self.feed(event.name, event.peer)

    def feed(self, name: str, payload: Any) -> None:
        state, now = self.state, anyio.current_time()
        if isinstance(payload, Peer):
            if name == "peer.offline":
                state.peer_offline(payload, now)
            else:
                known = payload.id in state.peers
                state.peer_seen(payload, now)
                if not known and payload.id in state.peers:
                    try:
                        self.info_send.send_nowait(payload)
                    except anyio.WouldBlock:
                        pass  # the role stays unknown
        elif isinstance(payload, ConversationEvent):
            state.event(payload)
        elif name == "conversation.pruned" and isinstance(payload, str):
            state.pruned(payload)

    def seed(self) -> None:
        """Take in what the node knows already (peers, kept conversations)."""
        for peer in list(self.node.peers.values()):
            self.feed("peer.joined", peer)
        for cid in self.node.conversations()[-self.state.limits.conversations :]:
            keep = self.state.limits.events_per_conversation
            for event in self.node.conversation(cid)[-keep:]:
                self.state.event(event)

    def liveness(self) -> None:
        """Take the node's own evidence of its members' life (first hand or gossiped; the
        same monotonic clock): in a large swarm a member rarely calls the observer itself."""
        peers = self.node.peers
        for pid, member in self.node.membership.table.peers.items():
            if member.alive:
                peer = peers.get(pid)
                self.state.peer_heard(pid, member.heard, peer.last_seen if peer else None)

    async def publish(self) -> None:
        while True:
            await anyio.sleep(self.interval)
            self.liveness()
            self.state.tick(anyio.current_time())
            delta = self.state.drain()
            if delta is None or not self.clients:
                continue
            # Timeline rows go only to the pages showing that conversation.
            rows: dict[str, list[dict[str, Any]]] = {}
            for row in delta.pop("events"):
                rows.setdefault(row["cid"], []).append(row)
            text = json.dumps(delta, default=str)
            for client in list(self.clients):
                client.push(text)
                watched = rows.get(client.watching or "")
                if watched:
                    events = {"type": "events", "id": client.watching, "events": watched}
                    client.push(json.dumps(events, default=str))

    async def fetch_info(self) -> None:
        async def worker() -> None:
            async for peer in self.info_receive:
                try:
                    info = await self.node.call_peer(peer, "_node.info", timeout=PEER_TIMEOUT)
                except Exception as exc:
                    log.debug("no _node.info from %s: %s", peer.id[:8], exc)
                    info = {}  # shown as no role rather than "still asking"
                self.state.peer_info(peer.id, info)

        async with anyio.create_task_group() as tg:
            for _ in range(INFO_CONCURRENCY):
                tg.start_soon(worker)

    # -- connections ------------------------------------------------------------------------

    async def handle(self, stream: SocketStream) -> None:
        async with stream:
            try:
                remote = str(stream.extra(SocketAttribute.remote_address)[0])
            except Exception:
                remote = ""
            conn = h11.Connection(h11.SERVER, max_incomplete_event_size=16 * 1024)
            self.connections += 1
            try:
                await self._serve_http(stream, conn, remote)
            except (anyio.BrokenResourceError, anyio.EndOfStream, OSError, h11.ProtocolError):
                pass
            except Exception:
                log.exception("dashboard: a connection from %s failed", remote or "?")
            finally:
                self.connections -= 1

    async def _serve_http(self, stream: SocketStream, conn: h11.Connection, remote: str) -> None:
        if self.connections > self.max_clients * 2:
            await respond(stream, conn, 503, b"too many connections\n", close=True)
            return
        for _ in range(MAX_REQUESTS):
            request = await read_request(stream, conn)
            if request is None:
                return
            if not self._host_ok(request):
                await respond(stream, conn, 421, b"unexpected Host header\n", close=True)
                return
            if request.wants_websocket and request.path == "/ws":
                await self._serve_ws(stream, conn, request, remote)
                return
            if request.method not in ("GET", "HEAD"):
                await respond(stream, conn, 405, b"method not allowed\n", close=True)
                return
            found = self.static.get(request.path)
            if found is None:
                await respond(stream, conn, 404, b"not found\n")
            else:
                body, kind = found
                head = request.method == "HEAD"
                await respond(stream, conn, 200, body, content_type=kind, head_only=head)
            while conn.their_state is not h11.DONE and conn.their_state is not h11.MUST_CLOSE:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    return  # a body we will not read: close
            if conn.our_state is h11.MUST_CLOSE:
                return
            conn.start_next_cycle()

    def _host_ok(self, request: HttpRequest) -> bool:
        host = request.header("host")
        if host is None:
            return False
        try:
            bound_loopback = ipaddress.ip_address(self.bind).is_loopback
        except ValueError:
            bound_loopback = self.bind == "localhost"
        return is_loopback_host(host) or not bound_loopback

    def _origin_ok(self, request: HttpRequest) -> bool:
        origin, host = request.header("origin"), request.header("host")
        return origin is not None and host is not None and origin == f"http://{host}"

    async def _serve_ws(
        self, stream: SocketStream, conn: h11.Connection, request: HttpRequest, remote: str
    ) -> None:
        if not self._origin_ok(request):
            log.warning("dashboard: refused a WebSocket from origin %r", request.header("origin"))
            await respond(stream, conn, 403, b"cross-origin WebSocket refused\n", close=True)
            return
        if len(self.clients) >= self.max_clients:
            await respond(stream, conn, 503, b"too many dashboard pages open\n", close=True)
            return
        trailing, _ = conn.trailing_data
        ws = WebSocket(stream, request, bytes(trailing))
        await ws.accept()
        client = _Client(ws, remote)
        self.clients.add(client)
        try:
            with client.scope:
                client.push(json.dumps(self._hello(), default=str))
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._writer, client)
                    await self._reader(client)
                    tg.cancel_scope.cancel()
        finally:
            self.clients.discard(client)
            client.send.close()
            client.receive.close()
            with anyio.move_on_after(1, shield=True):
                await ws.close(1001 if client.scope.cancel_called else 1000)

    def _hello(self) -> dict[str, Any]:
        snapshot = self.state.snapshot()
        snapshot["observer"] = {
            "id": self.node.node_id,
            "name": self.node.name,
            "swarm": self.node.swarm,
            "team": self.node.team,
            "address": f"{self.node.address}:{self.node.port}",
        }
        snapshot["allow_ask"] = self.allow_ask
        return snapshot

    async def _writer(self, client: _Client) -> None:
        try:
            async for text in client.receive:
                await client.ws.send(text)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            client.scope.cancel()  # the page closed while an answer was on its way

    async def _reader(self, client: _Client) -> None:
        while True:
            text = await client.ws.receive()
            if text is None:
                return
            try:
                request = json.loads(text)
                if not isinstance(request, dict):
                    raise ValueError("a request is a JSON object")
                answer = await self._answer(client, request)
            except (ValueError, TypeError) as exc:
                answer = {"type": "error", "error": str(exc)[:300]}
            client.push(json.dumps(answer, default=str))

    async def _answer(self, client: _Client, request: dict[str, Any]) -> dict[str, Any]:
        if request.get("op") == "timeline" and isinstance(request.get("id"), str):
            client.watching = request["id"]
        return await answer(self.node, self.state, request, self.refusal(client.remote, request))

    def refusal(self, remote: str, request: dict[str, Any]) -> str | None:
        """Why an ask would be refused (None when it may go out)."""
        token = request.get("token")
        if not self.allow_ask or self.token is None:
            return "asks are disabled (start the dashboard with --allow-ask)"
        try:
            loopback = ipaddress.ip_address(remote.split("%", 1)[0]).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            return "asks are accepted only from this machine"
        if not isinstance(token, str) or not hmac.compare_digest(token, self.token):
            return "missing or wrong session token"
        return None


async def serve_dashboard(
    node: Node,
    *,
    port: int = 8377,
    bind: str = "127.0.0.1",
    allow_ask: bool = False,
    token: str | None = None,
    interval: float = 0.2,
    max_clients: int = 16,
    task_status: TaskStatus[Dashboard] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the live dashboard of ``node`` (which must be running) until cancelled.

    Start it with ``dashboard = await task_group.start(serve_dashboard, node, port=...)``:
    ``task_status.started()`` reports a :class:`Dashboard` (its ``url``, and the ``token`` when
    ``allow_ask``) once the listener is bound. ``port=0`` picks a free port. ``bind`` defaults
    to loopback; on loopback the server also refuses requests whose Host header is not a
    loopback name (DNS rebinding). A WebSocket is accepted only when its Origin is the
    dashboard's own. With ``allow_ask``, a page on this machine holding ``token`` (a fresh
    random one by default) may send asks to the swarm.

    Raises ``OSError`` if the port cannot be bound. Cancelling stops the listener and closes
    every page's connection; the node keeps running (its event handlers for the dashboard
    become no-ops).
    """
    if allow_ask and token is None:
        token = secrets.token_urlsafe(24)
    server = _Server(
        node,
        bind=bind,
        allow_ask=allow_ask,
        token=token if allow_ask else None,
        interval=interval,
        max_clients=max_clients,
    )
    try:
        listener = await anyio.create_tcp_listener(local_host=bind, local_port=port)
        async with listener, anyio.create_task_group() as tg:
            bound = listener.extra(SocketAttribute.local_port)
            host = f"[{bind}]" if ":" in bind else bind
            if bind in ("0.0.0.0", "::", ""):
                host = "127.0.0.1"
            server.seed()
            tg.start_soon(server.take_events)
            tg.start_soon(server.publish)
            tg.start_soon(server.fetch_info)
            tg.start_soon(listener.serve, server.handle)
            task_status.started(Dashboard(url=f"http://{host}:{bound}/", token=server.token))
    finally:
        server.running = False
        server.events.close(discard=True)
        server.info_send.close()
        server.info_receive.close()
