"""A busy swarm on loopback with its dashboard: reviewers answer asks, coders take team tasks.

    python examples/dashboard/demo_swarm.py                 # serve, print the URL, Ctrl+C stops
    python examples/dashboard/demo_swarm.py --nodes 30      # a bigger swarm
    python examples/dashboard/demo_swarm.py --screenshot docs/dashboard.png

``--screenshot`` opens the page in Debian's Chromium (``/usr/bin/chromium``, driven by
Playwright), saves a picture once the swarm has been busy for a few seconds, and exits.
"""

from __future__ import annotations

import argparse
import random
from typing import Any

import anyio

from synapse_p2p import Node
from synapse_p2p.dashboard import serve_dashboard
from synapse_p2p.teams import Assignment, Team, Worker

ROLES = [
    ("reviewer", ["code-review"]),
    ("tester", ["testing"]),
    ("security", ["security-review"]),
    ("coder", ["python"]),
]
ASKS = ["Review this diff", "Any flaky tests?", "Is this URL safe?", "Summarise the design"]
TASKS = ["parser", "evaluator", "CLI", "docs", "benchmarks", "packaging", "fuzzing", "cache"]


def member(index: int, options: dict[str, Any]) -> Node:
    role, capabilities = ROLES[index % len(ROLES)]
    node = Node(name=f"{role}-{index}", role=role, capabilities=capabilities, **options)
    node.artifact(
        "agent-card",
        {"name": node.name, "role": role, "skills": capabilities, "version": "1.0"},
        description="who I am",
    )

    if role == "coder":
        worker = Worker(node, max_concurrent=1)

        @worker.task
        async def implement(assignment: Assignment) -> dict[str, Any]:
            await assignment.progress(f"writing {assignment.spec.get('part')}")
            await anyio.sleep(random.uniform(1.0, 3.0))
            await assignment.progress("running the tests")
            await anyio.sleep(random.uniform(0.5, 2.0))
            return {"part": assignment.spec.get("part"), "by": node.name}

    else:

        @node.ask
        async def answer(task: str, context: dict[str, Any]) -> str:
            await anyio.sleep(random.uniform(0.2, 2.5))
            return f"{node.name}: looked at {task!r}, fine"

    return node


async def busy(architect: Node, asker: Node, rounds: int | None) -> None:
    """Asks and team tasks, a round every second or so (``rounds`` None: forever)."""
    async with Team(architect, lease=30) as team:
        count = 0
        while rounds is None or count < rounds:
            count += 1
            await asker.broadcast("synapse.ask", random.choice(ASKS), context={"round": count})
            if count % 2:
                part = TASKS[count // 2 % len(TASKS)]
                await team.offer(f"implement the {part}", spec={"part": part}, requires=["python"])
            await anyio.sleep(1.2)


async def main(args: argparse.Namespace) -> None:
    options: dict[str, Any] = {
        "swarm": "demo",
        "bind": "127.0.0.1",
        "heartbeat_interval": 1,
        "peer_timeout": 4,
    }
    async with anyio.create_task_group() as tg:
        first = member(0, options)
        await tg.start(first.serve)
        options["seeds"] = [f"127.0.0.1:{first.port}"]
        nodes = [member(i, options) for i in range(1, args.nodes)]
        architect = Node(name="architect", role="architect", capabilities=["planning"], **options)
        asker = Node(name="you", role="asker", capabilities=["ask"], **options)
        observer = Node(name="dashboard", role="observer", **options)
        for node in [*nodes, architect, asker, observer]:
            await tg.start(node.serve)
        dashboard = await tg.start(
            lambda task_status: serve_dashboard(
                observer, port=args.port, allow_ask=True, task_status=task_status
            )
        )
        print(f"dashboard: {dashboard.open_url}", flush=True)
        tg.start_soon(busy, architect, asker, None)
        if args.screenshot:
            await anyio.sleep(args.settle)
            await anyio.to_thread.run_sync(screenshot, dashboard.open_url, args.screenshot)
            tg.cancel_scope.cancel()


def screenshot(url: str, path: str) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"],
        )
        page = browser.new_page(viewport={"width": 1500, "height": 1100})
        page.goto(url)
        page.wait_for_selector("#link[data-state=live]")
        first = page.locator("#conversations li[data-conversation]").first
        first.click()
        page.wait_for_timeout(1500)
        page.screenshot(path=path, full_page=True)
        browser.close()
    print(f"saved {path}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=12, help="members besides the team")
    parser.add_argument("--port", type=int, default=8377)
    parser.add_argument("--screenshot", metavar="PATH", help="save a picture and exit")
    parser.add_argument("--settle", type=float, default=8.0, help="seconds before the picture")
    anyio.run(main, parser.parse_args())
