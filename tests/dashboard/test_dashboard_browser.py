"""The dashboard in a real browser: Debian's Chromium driven by Playwright.

The swarm runs on its own event loop (trio or asyncio) in a thread, through an anyio blocking
portal; the tests drive the browser synchronously and check what a person would see. Skipped,
with the reason, when /usr/bin/chromium or the playwright package is missing.
"""

from __future__ import annotations

import functools
import http.server
import os
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import anyio
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal

from synapse_p2p import Node
from synapse_p2p.dashboard import Dashboard, serve_dashboard
from synapse_p2p.teams import Assignment, Team, Worker
from tests.helpers import NodeSettings

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
FAST: NodeSettings = {
    "swarm": "lab",
    "bind": "127.0.0.1",
    "heartbeat_interval": 0.5,
    "peer_timeout": 2.5,
}
TIMEOUT = 15_000  # ms, for every wait on the page


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright package is not installed (pip install -e '.[dev]')")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


class Swarm:
    """A few nodes and a dashboard on loopback, running in the portal's event loop."""

    def __init__(self, portal: BlockingPortal, stack: ExitStack, allow_ask: bool) -> None:
        self.portal, self.stack = portal, stack
        self.ask_gate: anyio.Event = portal.call(anyio.Event)
        self.task_gate: anyio.Event = portal.call(anyio.Event)
        first = self._reviewer("reviewer-1", [])
        self.start(first)
        self.seeds = [f"127.0.0.1:{first.port}"]
        self.members = [first, self._reviewer("reviewer-2", self.seeds)]
        self.coder = self._coder()
        self.architect = Node(name="architect", role="architect", seeds=self.seeds, **FAST)
        self.asker = Node(name="asker", role="asker", seeds=self.seeds, **FAST)
        self.observer = Node(name="observer", seeds=self.seeds, **FAST)
        for node in [self.members[1], self.coder, self.architect, self.asker, self.observer]:
            self.start(node)
        portal.call(self.observer.join)
        serve = functools.partial(
            serve_dashboard, self.observer, port=0, allow_ask=allow_ask, interval=0.1
        )
        future, self.dashboard = portal.start_task(serve)
        stack.callback(future.cancel)

    def _reviewer(self, name: str, seeds: list[str]) -> Node:
        node = Node(name=name, role="reviewer", capabilities=["review"], seeds=seeds, **FAST)
        node.artifact("agent-card", {"name": name, "skills": ["review"]})

        @node.ask
        async def answer(task: str, context: dict[str, Any]) -> str:
            await self.ask_gate.wait()
            return f"{name} approves"

        return node

    def _coder(self) -> Node:
        node = Node(name="coder", role="coder", capabilities=["python"], seeds=self.seeds, **FAST)
        worker = Worker(node)

        @worker.task
        async def build(assignment: Assignment) -> str:
            await assignment.progress("half way there")
            await self.task_gate.wait()
            return "built"

        return node

    def start(self, node: Node) -> Any:
        cm = self.portal.wrap_async_context_manager(node)
        cm.__enter__()
        self.stack.callback(cm.__exit__, None, None, None)
        return cm

    def url(self, *, token: bool = False) -> str:
        dashboard: Dashboard = self.dashboard
        return dashboard.open_url if token else dashboard.url


@pytest.fixture(params=["trio", "asyncio"])
def swarm(request: pytest.FixtureRequest) -> Iterator[Swarm]:
    allow_ask = request.node.get_closest_marker("allow_ask") is not None
    with start_blocking_portal(request.param) as portal, ExitStack() as stack:
        yield Swarm(portal, stack, allow_ask)


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    yield page
    context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


def status_of(page: Any, name: str) -> Any:
    return page.locator("#peers tbody tr", has=page.locator("td.name", has_text=name))


def test_peers_appear_live_and_go_offline(swarm: Swarm, page: Any) -> None:
    page.goto(swarm.url())
    page.wait_for_selector("#link[data-state=live]")
    for name in ("reviewer-1", "reviewer-2", "coder", "architect", "asker"):
        page.wait_for_selector(f"#peers tbody tr:has(td.name:text-is('{name}'))")
    assert page.locator("#swarm-title").inner_text() == "lab"
    # Roles come from each peer's _node.info; each peer proved its key (a signed peer record,
    # its secure channel), and every peer is dialed directly.
    reviewer = status_of(page, "reviewer-1")
    reviewer.locator("td", has_text="reviewer").first.wait_for()
    assert reviewer.get_attribute("data-status") == "alive"
    assert "\tyes\tdirect\t" in reviewer.inner_text()
    # A new node appears without a reload, then turns offline when it stops.
    late = Node(name="late-comer", seeds=swarm.seeds, **FAST)
    cm = swarm.portal.wrap_async_context_manager(late)
    cm.__enter__()
    try:
        page.wait_for_selector(
            "#peers tbody tr[data-status=alive]:has(td.name:text-is('late-comer'))"
        )
        page.wait_for_selector(f"#graph circle[data-node='{late.node_id}']")
    finally:
        cm.__exit__(None, None, None)
    page.wait_for_selector(
        "#peers tbody tr[data-status=offline]:has(td.name:text-is('late-comer'))", timeout=20_000
    )
    assert int(page.locator("#count-offline").inner_text()) >= 1


def test_heartbeats_update_last_seen_without_redrawing_the_peers(swarm: Swarm, page: Any) -> None:
    """A heartbeat changes only "last seen": the page updates that cell in place instead of
    rebuilding every row (which, in a swarm of hundreds, would be most of its work)."""
    page.goto(swarm.url())
    page.wait_for_selector("#link[data-state=live]")
    for name in ("reviewer-1", "reviewer-2", "coder", "architect", "asker"):
        status_of(page, name).locator("td", has_text=name).first.wait_for()
    page.wait_for_function(  # every role fetched: the rows are final
        "[...document.querySelectorAll('#peers tbody tr td:nth-child(2)')]"
        ".every((td) => td.textContent !== '…')"
    )
    page.evaluate(
        "() => document.querySelectorAll('#peers tbody tr')"
        ".forEach((tr) => { tr.dataset.probe = 'kept'; })"
    )
    cell = f"#peers tbody tr[data-peer='{swarm.members[0].node_id}'] td[data-seen]"
    before = page.get_attribute(cell, "data-seen")
    page.wait_for_function(
        "([sel, before]) => document.querySelector(sel).dataset.seen !== before",
        arg=[cell, before],
    )
    assert page.locator("#peers tbody tr:not([data-probe=kept])").count() == 0


def test_agent_card_on_demand(swarm: Swarm, page: Any) -> None:
    page.goto(swarm.url())
    row = page.locator("#peers tbody tr:has(td.name:text-is('reviewer-2'))")
    row.click()
    page.wait_for_selector("#card:not([hidden]) pre[data-card]")
    page.wait_for_function(
        "document.querySelector('#card pre[data-card]').textContent.includes('skills')"
    )
    assert '"name": "reviewer-2"' in page.locator("#card pre").inner_text()


def test_ask_shows_acks_then_replies(swarm: Swarm, page: Any) -> None:
    page.goto(swarm.url())
    page.wait_for_selector("#link[data-state=live]")
    broadcast = swarm.portal.call(swarm.asker.broadcast, "synapse.ask", "review the diff")
    item = page.locator(f"#conversations li[data-conversation='{broadcast.nonce}']")
    item.click()
    progress = page.locator("#ask-progress")
    progress.locator("[data-progress=acked] .count", has_text="2").wait_for()
    assert progress.locator("[data-progress=working] .count").inner_text() == "2"
    assert progress.locator("[data-progress=replied] .count").inner_text() == "0"
    page.wait_for_selector("#timeline li[data-label=ask]")
    swarm.portal.call(swarm.ask_gate.set)
    progress.locator("[data-progress=replied] .count", has_text="2").wait_for()
    assert progress.locator("[data-progress=working] .count").inner_text() == "0"
    page.wait_for_selector("#timeline li[data-label=reply]:has-text('approves')")
    assert page.locator("#timeline li[data-label=ack]").count() == 2


def test_links_are_updated_in_place(swarm: Swarm, page: Any) -> None:
    """Each ACK or reply changes a link's weight: the picture updates that line rather than
    drawing every line again (hundreds in a large swarm, several times a second)."""
    page.goto(swarm.url())
    page.wait_for_selector("#link[data-state=live]")
    swarm.portal.call(swarm.asker.broadcast, "synapse.ask", "weigh the links")
    page.wait_for_function("() => document.querySelectorAll('#graph-links line').length === 2")
    page.evaluate("() => document.querySelectorAll('#graph-links line')"
                  ".forEach((line) => { line.dataset.probe = 'kept'; })")  # fmt: skip
    swarm.portal.call(swarm.ask_gate.set)  # the replies: each link now counts two
    page.wait_for_function(
        "() => document.querySelectorAll(`#graph-links line[stroke-width='2']`).length === 2"
    )
    assert page.locator("#graph-links line:not([data-probe=kept])").count() == 0
    # Asks flow in a layer of their own, over the picture (moving dots never repaint it).
    assert page.evaluate("() => document.getElementById('graph-flows').closest('#graph')") is None


def test_the_timeline_appends_new_rows(swarm: Swarm, page: Any) -> None:
    """Rows of the conversation being watched arrive in order: they are appended, the rows
    shown stay (a busy ask of a large swarm would otherwise redraw 200 rows per update)."""
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    page.goto(swarm.url())
    page.wait_for_selector("#link[data-state=live]")
    broadcast = swarm.portal.call(swarm.asker.broadcast, "synapse.ask", "keep the rows")
    item = page.locator(f"#conversations li[data-conversation='{broadcast.nonce}']")
    item.locator(".muted", has_text="3 · ").wait_for()  # the ask and both ACKs are in
    item.click()  # the page asks for the timeline: those three rows come in its answer
    page.wait_for_function("() => document.querySelectorAll('#timeline li').length === 3")
    page.evaluate("() => document.querySelectorAll('#timeline li')"
                  ".forEach((li) => { li.dataset.probe = 'kept'; })")  # fmt: skip
    swarm.portal.call(swarm.ask_gate.set)
    page.wait_for_function("() => document.querySelectorAll('#timeline li[data-kind=reply]')"
                           ".length === 2")  # fmt: skip
    kinds = page.eval_on_selector_all("#timeline li", "(items) => items.map((li) => "
                                      "[li.dataset.kind, li.dataset.probe || ''])")  # fmt: skip
    assert [k for k, _ in kinds] == ["message", "ack", "ack", "reply", "reply"]
    if len(sockets) > 1:
        # The page fell behind (a loaded machine) and was dropped by the server: after its
        # reconnect a fresh snapshot draws the whole timeline again, by design.
        pytest.skip(f"the page reconnected ({len(sockets)} WebSockets): rows drawn again")
    kept = [k for k, probe in kinds if probe == "kept"]
    assert kept == ["message", "ack", "ack"], f"rows drawn again, {len(sockets)} WebSocket(s)"
    assert [k for k, probe in kinds if probe != "kept"] == ["reply", "reply"]


def test_team_task_moves_across_the_board(swarm: Swarm, page: Any) -> None:
    page.goto(swarm.url())
    page.wait_for_selector("#link[data-state=live]")
    team = swarm.portal.call(lambda: Team(swarm.architect, lease=30))
    team_cm = swarm.portal.wrap_async_context_manager(team)
    team_cm.__enter__()
    try:
        offer = functools.partial(team.offer, "build the parser", requires=["python"])
        task = swarm.portal.call(offer)
        card = page.locator(f"#board .column[data-column='in progress'] [data-task='{task.id}']")
        card.wait_for()
        assert "half way there" in card.inner_text()
        assert "worker coder" in card.inner_text()
        assert "lease until" in card.inner_text()
        swarm.portal.call(swarm.task_gate.set)
        page.locator(f"#board .column[data-column=done] [data-task='{task.id}']").wait_for()
        assert card.count() == 0
    finally:
        team_cm.__exit__(None, None, None)


@pytest.mark.allow_ask
def test_allow_ask_needs_the_token(swarm: Swarm, page: Any) -> None:
    page.goto(swarm.url())  # no token: no form, and a hand-made request is refused
    page.wait_for_selector("#link[data-state=live]")
    assert page.locator("#ask-form").is_hidden()
    refused = page.evaluate(
        """() => new Promise((resolve) => {
            const ws = new WebSocket(`ws://${location.host}/ws`);
            ws.onopen = () => ws.send(JSON.stringify({op: "ask", task: "sneaky", token: "guess"}));
            ws.onmessage = (m) => { const d = JSON.parse(m.data);
                if (d.type === "ask-result") { ws.close(); resolve(d); } };
        })"""
    )
    assert refused == {"type": "ask-result", "ok": False, "error": "missing or wrong session token"}
    page.goto(swarm.url(token=True))
    page.wait_for_selector("#ask-form:not([hidden])")
    page.fill("#ask-text", "what do you think?")
    page.click("#ask-form button")
    page.wait_for_selector("#ask-status[data-ok=yes]")
    page.wait_for_selector("#conversations li.selected:has-text('what do you think?')")
    page.locator("#ask-progress [data-progress=acked] .count", has_text="2").wait_for()
    titles = [
        swarm.observer.conversation(c)[0].payload.get("args")
        for c in swarm.observer.conversations()
    ]
    assert ["sneaky"] not in titles


def test_read_only_page_has_no_ask_form(swarm: Swarm, page: Any) -> None:
    page.goto(swarm.url())
    page.wait_for_selector("#link[data-state=live]")
    assert page.locator("#ask-form").is_hidden()


class _Evil(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<!doctype html><title>evil</title>"
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_websocket_from_another_origin_is_refused(swarm: Swarm, browser: Any) -> None:
    evil = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Evil)
    thread = threading.Thread(target=evil.serve_forever, daemon=True)
    thread.start()
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{evil.server_port}/")
        target = swarm.url().replace("http://", "ws://") + "ws"
        outcome = page.evaluate(
            """(url) => new Promise((resolve) => {
                const ws = new WebSocket(url);
                ws.onopen = () => resolve("open");
                ws.onerror = () => resolve("refused");
            })""",
            target,
        )
        assert outcome == "refused"
        # The same page from the dashboard's own origin does connect.
        page.goto(swarm.url())
        page.wait_for_selector("#link[data-state=live]")
    finally:
        context.close()
        evil.shutdown()
        evil.server_close()
        thread.join(5)
