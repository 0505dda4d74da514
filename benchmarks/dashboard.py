"""Dashboard load benchmark: does the page keep up with a busy swarm, and does the observer's
memory stay bounded?

    python benchmarks/dashboard.py [--nodes 40] [--asks-per-second 5] [--seconds 30]
    python benchmarks/dashboard.py --model [--nodes 200] [--asks-per-second 10]

One process runs ``--nodes`` answering nodes and an asker on 127.0.0.1 (every ask gets an ACK
and a reply from each node, so the swarm makes about ``asks * (1 + 2 * nodes)`` conversation
events per second); a second process runs ``sn dashboard`` on it; Debian's Chromium
(``/usr/bin/chromium``, through Playwright) shows the page. Reported: conversation events per
second seen by the observer, WebSocket messages and bytes per second received by the page, the
page's render time per frame (mean and worst), long tasks on the page's main thread, the number
of DOM elements at the end, and the observer process's resident memory over time.

``--model`` measures the dashboard's state model alone on a simulated swarm of ``--nodes``
peers (every ask ACKed and answered by each; a team task offered, granted, progressed and done
per ask): the cost per event, the cost of one coalesced delta (drain and JSON), its size, and
the model's memory at the end (tracemalloc), for ``--seconds`` of simulated time.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"


async def swarm_child(nodes: int, rate: float) -> None:
    import anyio

    from synapse_p2p import Node

    options: dict[str, Any] = {"swarm": "bench", "bind": "127.0.0.1", "heartbeat_interval": 2}

    def member(i: int) -> Node:
        node = Node(name=f"n{i:03d}", role="worker", capabilities=["bench"], **options)

        @node.ask
        async def answer(task: str, context: dict[str, Any]) -> str:
            return f"n{i:03d} ok"

        return node

    async with anyio.create_task_group() as tg:
        first = member(0)
        await tg.start(first.serve)
        options["seeds"] = [f"127.0.0.1:{first.port}"]
        for i in range(1, nodes):
            await tg.start(member(i).serve)
        asker = Node(name="asker", role="asker", **options)
        await tg.start(asker.serve)
        print(json.dumps({"seed": first.port}), flush=True)
        await anyio.sleep(3)  # let the swarm settle
        count = 0
        while True:
            count += 1
            await asker.broadcast("synapse.ask", f"job {count}", context={"n": count})
            await anyio.sleep(1 / rate)


def model_bench(nodes: int, rate: float, seconds: float) -> None:
    import tracemalloc

    from synapse_p2p.dashboard import DashboardState
    from synapse_p2p.types import ConversationEvent, Peer

    tracemalloc.start()
    state = DashboardState("0" * 64)
    peers = [Peer(id=f"{i:064x}", address="127.0.0.1", port=9000 + i, name=f"n{i:03d}",
                  capabilities=["bench"]) for i in range(nodes)]  # fmt: skip
    for peer in peers:
        state.peer_seen(peer, 0.0)
    state.drain()
    counter = 0

    def event(cid: str, kind: str, peer: Peer, payload: dict[str, Any]) -> ConversationEvent:
        nonlocal counter
        counter += 1
        return ConversationEvent(cid, f"e{counter}", kind, peer, payload, created_at=float(counter))

    feed = drain = 0.0
    events = ticks = size = 0
    interval = 0.2
    for tick in range(int(seconds / interval)):
        batch: list[ConversationEvent] = []
        for k in range(max(1, round(rate * interval))):
            cid, asker = f"ask-{tick}-{k}", peers[(tick + k) % nodes]
            msg = {"endpoint": "synapse.ask", "args": [f"job {tick}"], "kwargs": {}}
            batch.append(event(cid, "message", asker, msg))
            for p in peers:
                batch.append(event(cid, "ack", p, {}))
                batch.append(event(cid, "reply", p, {"result": f"{p.name} ok"}))
            tid, worker = f"task-{tick}-{k}", peers[(tick * 7 + k) % nodes]
            base = {"task_id": tid, "attempt": 1}
            batch.append(event(tid, "task.offer", asker, {**base, "title": f"job {tick}"}))
            grant = {**base, "worker_id": worker.id, "worker_name": worker.name, "lease": 60}
            batch.append(event(tid, "task.grant", asker, grant))
            batch.append(event(tid, "task.progress", worker, {**base, "message": "half way"}))
            batch.append(event(tid, "task.done", worker, {**base, "result": 1}))
        started = time.perf_counter()
        for e in batch:
            state.event(e)
        state.tick(tick * interval)
        feed += time.perf_counter() - started
        started = time.perf_counter()
        delta = state.drain() or {}
        delta.pop("events", None)  # timeline rows go only to pages showing that conversation
        text = json.dumps(delta)
        drain += time.perf_counter() - started
        events, ticks, size = events + len(batch), ticks + 1, size + len(text)
    current, peak = tracemalloc.get_traced_memory()
    print(f"model: {nodes} peers, {rate:g} asks/s, {events / seconds:.0f} events/s simulated")
    print(f"per event         {feed / events * 1e6:8.1f} µs")
    print(f"per delta         {drain / ticks * 1e3:8.1f} ms (drain + JSON), "
          f"{size / ticks / 1024:.0f} KiB each")  # fmt: skip
    print(f"CPU share         {(feed + drain) / seconds * 100:8.1f} % of one core")
    print(f"memory            {current / 2**20:8.1f} MiB now, {peak / 2**20:.1f} MiB peak, "
          f"{len(state.conversations)} conversations kept")  # fmt: skip


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+) kB", text)
    return int(match.group(1)) if match else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=40)
    parser.add_argument("--asks-per-second", type=float, default=5.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--model", action="store_true", help="the state model alone")
    parser.add_argument("--swarm-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.model:
        model_bench(args.nodes, args.asks_per_second, args.seconds)
        return
    if args.swarm_child:
        import anyio

        anyio.run(swarm_child, args.nodes, args.asks_per_second)
        return

    from playwright.sync_api import sync_playwright

    procs: list[subprocess.Popen[str]] = []
    try:
        swarm = subprocess.Popen(
            [sys.executable, __file__, "--swarm-child", "--nodes", str(args.nodes),
             "--asks-per-second", str(args.asks_per_second)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT,
        )  # fmt: skip
        procs.append(swarm)
        assert swarm.stdout is not None
        seed = json.loads(swarm.stdout.readline())["seed"]
        dash = subprocess.Popen(
            [sys.executable, "-m", "synapse_p2p", "dashboard", "bench", "--no-mdns",
             "--seed", f"127.0.0.1:{seed}", "--port", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT,
        )  # fmt: skip
        procs.append(dash)
        assert dash.stdout is not None
        url = dash.stdout.readline().strip().split(": ", 1)[1]
        threading.Thread(target=dash.stdout.read, daemon=True).start()
        memory: list[tuple[float, int]] = []
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=CHROMIUM,
                args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"],
            )
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            page.add_init_script(
                "window.longTasks = []; new PerformanceObserver((l) => l.getEntries()"
                ".forEach((e) => window.longTasks.push(e.duration)))"
                ".observe({entryTypes: ['longtask']});"
            )
            page.goto(url)
            page.wait_for_selector("#link[data-state=live]")
            rows = f"document.querySelectorAll('#peers tbody tr').length >= {args.nodes}"
            page.wait_for_function(rows, timeout=60_000)
            started = time.monotonic()
            cpu0 = {"observer": cpu_seconds(dash.pid), "swarm": cpu_seconds(swarm.pid)}
            events0 = int(page.locator("#count-events").inner_text())
            stats0 = page.evaluate("({...window.dashboardStats})")
            first_conv = page.locator("#conversations li").first
            if first_conv.count():
                first_conv.click()
            while (elapsed := time.monotonic() - started) < args.seconds:
                memory.append((elapsed, rss_kib(dash.pid)))
                page.wait_for_timeout(2000)
            elapsed = time.monotonic() - started
            cpu = {k: (cpu_seconds(p.pid) - cpu0[k]) / elapsed for k, p in
                   (("observer", dash), ("swarm", swarm))}  # fmt: skip
            events = int(page.locator("#count-events").inner_text()) - events0
            stats = page.evaluate("({...window.dashboardStats})")
            long_tasks = page.evaluate("window.longTasks")
            dom = page.evaluate("document.getElementsByTagName('*').length")
            browser.close()
        report(args, elapsed, events, stats, stats0, long_tasks, dom, memory)
        print(f"CPU               observer {cpu['observer']:.0%}, swarm {cpu['swarm']:.0%} "
              "of one core")  # fmt: skip
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(timeout=10)


def report(
    args: argparse.Namespace,
    elapsed: float,
    events: int,
    stats: dict[str, float],
    stats0: dict[str, float],
    long_tasks: list[float],
    dom: int,
    memory: list[tuple[float, int]],
) -> None:
    renders = stats["renders"] - stats0["renders"]
    messages = (stats["messages"] - stats0["messages"]) / elapsed
    kib = (stats["bytes"] - stats0["bytes"]) / elapsed / 1024
    render = (stats["renderMs"] - stats0["renderMs"]) / max(1, renders)
    longest = max(long_tasks, default=0)
    rss = ", ".join(f"{t:.0f}s {k / 1024:.0f} MiB" for t, k in memory[::3])
    print(f"swarm: {args.nodes} nodes, {args.asks_per_second:g} asks/s, {elapsed:.0f} s")
    print(f"observer saw      {events / elapsed:8.0f} conversation events/s")
    print(f"page received     {messages:8.1f} messages/s, {kib:.0f} KiB/s")
    print(f"render per frame  {render:8.1f} ms mean, {stats['maxRenderMs']:.1f} ms worst, "
          f"{renders / elapsed:.1f} frames/s")  # fmt: skip
    print(f"long tasks        {len(long_tasks):8d} (longest {longest:.0f} ms, page load included)")
    print(f"DOM elements      {dom:8d} at the end")
    print(f"observer RSS      {rss}")


if __name__ == "__main__":
    main()
