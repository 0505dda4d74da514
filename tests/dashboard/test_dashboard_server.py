"""The dashboard server on real loopback sockets, under trio and asyncio."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio
import pytest
from wsproto.events import CloseConnection, Message

from synapse_p2p import Node
from synapse_p2p.dashboard import Dashboard, serve_dashboard
from tests.dashboard.helpers import WsClient, http_get
from tests.helpers import NodeSettings

pytestmark = pytest.mark.anyio

FAST: NodeSettings = {
    "swarm": "lab",
    "bind": "127.0.0.1",
    "heartbeat_interval": 0.5,
    "peer_timeout": 3,
}


@dataclass
class Setup:
    member: Node
    observer: Node
    dashboard: Dashboard

    @property
    def port(self) -> int:
        return int(self.dashboard.url.rsplit(":", 1)[1].strip("/"))


async def _running(allow_ask: bool) -> AsyncIterator[Setup]:
    member = Node(name="member", role="reviewer", capabilities=["review"], **FAST)
    member.artifact("agent-card", {"name": "member", "skills": ["review"]})

    @member.endpoint("sum", description="Add two numbers")
    async def add(a: int, b: int) -> int:
        return a + b

    @member.ask
    async def answer(task: str, context: dict[str, Any]) -> str:
        return f"done: {task}"

    async with member:
        observer = Node(name="observer", seeds=[f"127.0.0.1:{member.port}"], **FAST)
        async with observer, anyio.create_task_group() as tg:
            await observer.join()
            dashboard = await tg.start(
                lambda task_status: serve_dashboard(
                    observer,
                    port=0,
                    allow_ask=allow_ask,
                    token="s3cret" if allow_ask else None,
                    interval=0.05,
                    task_status=task_status,
                )
            )
            yield Setup(member, observer, dashboard)
            tg.cancel_scope.cancel()


@pytest.fixture
async def setup(anyio_backend: str) -> AsyncIterator[Setup]:
    async for s in _running(allow_ask=True):
        yield s


@pytest.fixture
async def read_only(anyio_backend: str) -> AsyncIterator[Setup]:
    async for s in _running(allow_ask=False):
        yield s


async def test_page_assets_and_errors(setup: Setup) -> None:
    assert setup.dashboard.open_url.endswith("/#token=s3cret")
    page = await http_get(setup.port, "/")
    assert page.startswith(b"HTTP/1.1 200")
    assert b"content-security-policy: default-src 'none'" in page.lower()
    assert b"<title>synapse-p2p dashboard</title>" in page
    script = await http_get(setup.port, "/static/app.js")
    assert script.startswith(b"HTTP/1.1 200")
    assert b"text/javascript" in script
    assert (await http_get(setup.port, "/static/../_server.py")).startswith(b"HTTP/1.1 404")
    assert (await http_get(setup.port, "/", method="POST")).startswith(b"HTTP/1.1 405")
    head = await http_get(setup.port, "/", method="HEAD")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"<title>" not in head
    # DNS rebinding: a page served to another host name is refused on loopback.
    rebound = await http_get(setup.port, "/", host="evil.example:8377")
    assert rebound.startswith(b"HTTP/1.1 421")
    # Garbage gets a 400 and the server keeps serving.
    async with await anyio.connect_tcp("127.0.0.1", setup.port) as stream:
        await stream.send(b"\x00\x01 nonsense\r\n\r\n")
        assert (await stream.receive()).startswith(b"HTTP/1.1 400")
    assert (await http_get(setup.port, "/")).startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize("origin", ["http://evil.example", "null", None])
async def test_cross_origin_websocket_is_refused(setup: Setup, origin: str | None) -> None:
    client = await WsClient.open(setup.port, origin=origin)
    try:
        assert client.status == 403
    finally:
        await client.aclose()


async def test_snapshot_then_live_ask_progress(setup: Setup) -> None:
    client = await WsClient.open(setup.port)
    try:
        assert client.status == 101
        hello = await client.until(lambda m: m["type"] == "snapshot")
        assert hello["observer"]["name"] == "observer"
        assert hello["allow_ask"] is True
        assert [p["name"] for p in hello["peers"]] == ["member"]
        # The role comes from the member's _node.info, fetched in the background.
        await client.until(lambda m: any(p.get("role") == "reviewer" for p in m.get("peers", [])))
        broadcast = await setup.observer.broadcast("synapse.ask", "check this")
        done = await client.until(
            lambda m: any(
                a["id"] == broadcast.nonce and a["replied"] == [setup.member.node_id]
                for a in m.get("asks", [])
            )
        )
        assert done["type"] == "delta"
        await client.send({"op": "timeline", "id": broadcast.nonce})
        timeline = await client.until(lambda m: m["type"] == "timeline")
        labels = [row["label"] for row in timeline["events"]]
        assert labels[0] == "ask"
        assert "ack" in labels
        assert "reply" in labels
        await client.send({"op": "card", "peer": setup.member.node_id})
        card = await client.until(lambda m: m["type"] == "card")
        assert card["card"] == {"name": "member", "skills": ["review"]}
        assert {"name": "sum", "publish": True, "description": "Add two numbers"} in card["methods"]
        await client.send({"op": "card", "peer": "nobody"})
        assert (await client.until(lambda m: m["type"] == "error"))["op"] == "card"
        await client.send({"op": "what"})
        assert (await client.until(lambda m: m["type"] == "error"))["error"] == "unknown op"
    finally:
        await client.aclose()


async def test_ask_needs_the_token(setup: Setup) -> None:
    client = await WsClient.open(setup.port)
    try:
        await client.until(lambda m: m["type"] == "snapshot")
        before = len(setup.observer.conversations())
        for token in (None, "wrong", ""):
            await client.send({"op": "ask", "task": "no", "token": token})
            refused = await client.until(lambda m: m["type"] == "ask-result")
            assert refused == {
                "type": "ask-result",
                "ok": False,
                "error": "missing or wrong session token",
            }
        assert len(setup.observer.conversations()) == before
        await client.send({"op": "ask", "task": "yes please", "token": "s3cret"})
        sent = await client.until(lambda m: m["type"] == "ask-result")
        assert sent["ok"] is True
        await client.until(
            lambda m: any(
                a["id"] == sent["id"] and a["title"] == "yes please" and a["replied"]
                for a in m.get("asks", [])
            )
        )
    finally:
        await client.aclose()


async def test_read_only_refuses_asks(read_only: Setup) -> None:
    client = await WsClient.open(read_only.port)
    try:
        hello = await client.until(lambda m: m["type"] == "snapshot")
        assert hello["allow_ask"] is False
        assert read_only.dashboard.token is None
        await client.send({"op": "ask", "task": "no", "token": "anything"})
        refused = await client.until(lambda m: m["type"] == "ask-result")
        assert refused["ok"] is False
        assert "disabled" in refused["error"]
    finally:
        await client.aclose()


async def test_peer_joining_then_leaving_is_shown(setup: Setup) -> None:
    client = await WsClient.open(setup.port)
    try:
        await client.until(lambda m: m["type"] == "snapshot")
        leaver = Node(name="leaver", seeds=[f"127.0.0.1:{setup.member.port}"], **FAST)
        async with leaver:
            await leaver.join()
            joined = await client.until(
                lambda m: any(p["name"] == "leaver" for p in m.get("peers", [])), timeout=15
            )
            assert [p["status"] for p in joined["peers"] if p["name"] == "leaver"] == ["alive"]
        await client.until(
            lambda m: any(
                p["name"] == "leaver" and p["status"] == "offline" for p in m.get("peers", [])
            ),
            timeout=20,
        )
    finally:
        await client.aclose()


async def test_limits_oversized_message_and_too_many_pages(setup: Setup) -> None:
    big = await WsClient.open(setup.port)
    try:
        await big.until(lambda m: m["type"] == "snapshot")
        await big.send({"op": "timeline", "id": "x" * 70_000})
        with anyio.fail_after(10):
            while await big.receive() is not None:
                pass  # the server closes it (1009, message too big)
    finally:
        await big.aclose()
    pages = []
    try:
        for _ in range(16):  # serve_dashboard's default max_clients
            pages.append(await WsClient.open(setup.port))
            assert pages[-1].status == 101
        extra = await WsClient.open(setup.port)
        await extra.aclose()
        assert extra.status == 503
    finally:
        for page in pages:
            await page.aclose()
    # Still serving.
    assert (await http_get(setup.port, "/")).startswith(b"HTTP/1.1 200")


async def test_page_closing_while_an_answer_is_on_its_way(setup: Setup) -> None:
    """A request and the close in one write: the answer meets a closed socket, and the
    dashboard drops that page only (it once took the whole server down)."""
    for _ in range(3):
        client = await WsClient.open(setup.port)
        try:
            await client.until(lambda m: m["type"] == "snapshot")
            request = client.ws.send(Message(data=json.dumps({"op": "timeline", "id": "x"})))
            await client.stream.send(request + client.ws.send(CloseConnection(code=1000)))
            with anyio.fail_after(10):
                while await client.receive() is not None:
                    pass
        finally:
            await client.aclose()
    assert (await http_get(setup.port, "/")).startswith(b"HTTP/1.1 200")
    again = await WsClient.open(setup.port)
    try:
        await again.until(lambda m: m["type"] == "snapshot")
    finally:
        await again.aclose()
