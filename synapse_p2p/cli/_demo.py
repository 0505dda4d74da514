"""``sn demo``: a small swarm on loopback, an ask and a team round, then a clean teardown."""

from __future__ import annotations

import functools
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import click
from rich.console import Console
from rich.text import Text

from ..dashboard import serve_dashboard
from ..identity import Identity
from ..node import Node
from ..teams import Assignment, Team, Worker
from ..types import ConversationEvent, Peer
from ._chatter import Inbox, describe_event, describe_peer
from ._common import EXIT_OK, Settings, Trust, console, run, trust_options
from ._swarm import ReplyWatch

__all__ = ["demo_command"]

SWARM = "demo"

#: name -> (capabilities, seconds of "thinking", answer)
ANSWERS: dict[str, tuple[list[str], float, str]] = {
    "reviewer": (["code-review"], 0.3, "LGTM after fixing tests"),
    "tester": (["testing"], 0.6, "2 tests fail on an empty diff; added a fixture"),
    "security": (["security-review"], 0.9, "no secrets; validate the url before fetching it"),
}

PLAN = [
    ("implement the parser", {"file": "parser.py", "lines": 120}),
    ("implement the evaluator", {"file": "evaluator.py", "lines": 80}),
]


def _answering_node(name: str, **options: Any) -> Node:
    capabilities, delay, answer = ANSWERS[name]
    node = Node(name=name, role=name, capabilities=capabilities, **options)

    @node.ask
    async def handle(task: str, context: dict[str, Any]) -> str:
        await anyio.sleep(delay)  # a real agent calls its model here
        return answer

    return node


def _coder(name: str, **options: Any) -> Node:
    node = Node(name=name, role="coder", capabilities=["python"], **options)
    worker = Worker(node, max_concurrent=1)

    @worker.task
    async def implement(assignment: Assignment) -> dict[str, Any]:
        spec = assignment.spec
        await assignment.progress(f"writing {spec['file']}")
        await anyio.sleep(0.3)
        await assignment.progress("tests pass")
        return {"file": spec["file"], "lines": spec["lines"], "by": name}

    return node


class Narrator:
    """Prints what one node of the swarm sees happen, as it happens."""

    def __init__(self, node: Node, out: Console) -> None:
        self.node = node
        self.out = out
        self.inbox = Inbox()
        self.show_tasks = False
        self.done: set[str] = set()
        self.joined: set[str] = set()
        self.progress = anyio.Event()
        for name in ("peer.joined", "conversation.event"):
            node.on(name)(self._handler(name))

    def _handler(self, name: str) -> Any:
        async def handler(payload: Any) -> None:
            self.inbox.put(name, payload)

        return handler

    async def run(self) -> None:
        while True:
            for name, payload in await self.inbox.next_batch():
                if name == "peer.joined" and isinstance(payload, Peer):
                    self.joined.add(payload.id)
                    self.out.print(describe_peer("JOINED", payload).rich(clock=False))
                elif isinstance(payload, ConversationEvent) and payload.kind.startswith("task."):
                    line = describe_event(payload)
                    if self.show_tasks and line is not None:
                        self.out.print(line.rich(clock=False))
                    if payload.kind == "task.done":
                        self.done.add(payload.conversation_id)
            self.progress.set()
            self.progress = anyio.Event()

    async def wait_for(self, condition: Any, timeout: float = 10.0) -> None:
        with anyio.fail_after(timeout):
            while not condition():
                await self.progress.wait()


def _step(out: Console, text: str) -> None:
    out.print()
    out.print(Text.assemble(("▶ ", "bold yellow"), (text, "bold")))


@asynccontextmanager
async def _swarm(nodes: list[Node]) -> AsyncIterator[None]:
    async with anyio.create_task_group() as tg:
        for node in nodes:
            await tg.start(node.serve)
        try:
            yield
        finally:
            tg.cancel_scope.cancel()


async def demo(
    out: Console,
    *,
    mdns: bool,
    dashboard: int | None = None,
    secret: list[str] | None = None,
    identity: Identity | None = None,
) -> None:
    """The demo; with ``dashboard`` (a port), ``you`` serves the dashboard there and the swarm
    stays up after the demo until cancelled (Ctrl+C). Every node gets ``secret`` (``None``:
    ``SYNAPSE_SECRET``, if set); ``you`` gets ``identity``."""
    started = time.perf_counter()
    options: dict[str, Any] = {
        "swarm": SWARM,
        "bind": "0.0.0.0" if mdns else "127.0.0.1",  # mDNS peers must reach them
        "heartbeat_interval": 1,
        "peer_timeout": 4,
        "mdns": mdns,
        "secret": secret,
    }
    first = _answering_node("reviewer", **options)
    names = ", ".join([*ANSWERS, "architect", "coder-1", "coder-2"])
    secured = " (secured: every node holds the swarm secret)" if first.config.secured else ""
    _step(out, f"a swarm called {SWARM!r} on loopback: {names}{secured}")
    async with _swarm([first]):
        seed = f"{first.address}:{first.port}"
        options["seeds"] = [seed]
        others = [_answering_node(name, **options) for name in list(ANSWERS)[1:]]
        architect = Node(name="architect", role="architect", **options)
        coders = [_coder(name, **options) for name in ("coder-1", "coder-2")]  # + workers
        you = Node(name="you", role="asker", capabilities=["ask"], identity=identity, **options)
        narrator = Narrator(you, out)
        watch = ReplyWatch(you, out, show_acks=True)
        members = [*others, architect, *coders]
        async with _swarm([*members, you]), anyio.create_task_group() as tg:
            tg.start_soon(narrator.run)
            if dashboard is not None:
                serve = functools.partial(serve_dashboard, you, port=dashboard)
                served = await tg.start(serve)
                _step(out, f"the dashboard: {served.url}")
            await narrator.wait_for(lambda: len(narrator.joined) == len(members) + 1)

            _step(out, 'sn ask demo "Review this diff" --context url=https://example.com/pull/1')
            broadcast = await you.broadcast(
                "synapse.ask", "Review this diff", context={"url": "https://example.com/pull/1"}
            )
            out.print(f"ask: {broadcast.nonce}")
            await watch.wait(broadcast.nonce, timeout=10, forever=False)
            replies = watch.replies

            _step(out, "the architect offers two tasks; the coders race to claim them")
            narrator.show_tasks = True
            async with Team(architect, lease=10) as team:
                tasks = [await team.offer(t, spec=s, requires=["python"]) for t, s in PLAN]
                results = [await team.wait(task, timeout=10) for task in tasks]
                await narrator.wait_for(lambda: all(t.id in narrator.done for t in tasks))
            if dashboard is not None:
                _step(out, "the swarm stays up for the dashboard; Ctrl+C stops it")
                await anyio.sleep_forever()
            tg.cancel_scope.cancel()

    _step(out, "done; every node stopped and every socket closed")
    built = ", ".join(f"{r['file']} by {r['by']}" for r in results)
    out.print(f"{replies} replies to the ask; {built}; {time.perf_counter() - started:.1f} s")


@click.command("demo")
@click.option("--mdns", is_flag=True,
              help="Also advertise the demo nodes by mDNS on the LAN (they then listen on "
              "every interface).")  # fmt: skip
@click.option("--dashboard", is_flag=True,
              help="Serve the live dashboard of the demo swarm (see sn dashboard) and keep the "
              "swarm up until Ctrl+C.")  # fmt: skip
@click.option("--dashboard-port", type=click.IntRange(0, 65535), default=8377,
              show_default=True, help="Port of the dashboard page.")  # fmt: skip
@trust_options
@click.pass_obj
def demo_command(
    settings: Settings, /, mdns: bool, dashboard: bool, dashboard_port: int, trust: Trust
) -> None:
    """Run a small swarm on this machine and show it work: three reviewers answer an ask,
    an architect hands two tasks to two coders. Offline, loopback only, a few seconds.

    \b
    Examples:
      sn demo
      sn --backend asyncio demo
      sn demo --dashboard                      then open http://127.0.0.1:8377/
      sn demo --secret "$(sn keygen)"          a secured swarm

    With --secret (or SYNAPSE_SECRET) every demo node holds the secret; --identity is the
    key of the asking node, "you".
    """
    out = console()
    identity = trust.identity()

    async def main() -> None:
        await demo(out, mdns=mdns, dashboard=dashboard_port if dashboard else None,
                   secret=trust.secret, identity=identity)  # fmt: skip

    run(settings, main, on_interrupt=(lambda: EXIT_OK) if dashboard else None)
