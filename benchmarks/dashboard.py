"""Dashboard load benchmark: does the page keep up with a busy swarm, and does the observer's
memory stay bounded?

    python benchmarks/dashboard.py [--nodes 40] [--asks-per-second 5] [--seconds 30]
    python benchmarks/dashboard.py --nodes 200 --asks-per-second 0.1 --seconds 60 [--secret]
    python benchmarks/dashboard.py --simulate --nodes 200 --asks-per-second 1 --seconds 60
    python benchmarks/dashboard.py --model [--nodes 200] [--asks-per-second 10]

``--nodes`` answering nodes run on 127.0.0.1, spread over ``--processes`` child processes
(``_dashboard_children.py``; by default at most 25 nodes each: membership is a full mesh,
about 2(N-1) sockets per node, and a process may hold ``ulimit -n`` descriptors); they join
through the first node, whose process also runs the asker. Once every node knows every other
(a bounded wait, ``--join-timeout``; the time is reported) and ``--idle`` seconds of the idle
swarm are measured, ``sn dashboard`` joins from a process of its own, Debian's Chromium
(``/usr/bin/chromium``, through Playwright) opens the page, and the asker starts: every ask
gets an ACK and a reply from each node, about ``asks * (1 + 2 * nodes)`` conversation events
per second, each delivered to every node. ``--secret``: a secured swarm.

Reported: events due, made (ask handlers run) and received by the asker and by the observer
(during the run, and after a bounded ``--drain``); WebSocket messages and bytes per second to
the page; render time per frame (mean, worst); long tasks during the run; the page's main
thread (script, style, layout) and its renderer's CPU; DOM elements and JS heap at the start,
the end and at most; peers shown by status; the observer's RSS over time; the CPU of the
observer, the swarm (each process), the browser and the machine; load averages.

``--simulate`` feeds the dashboard's own server (so the same page, deltas and WebSocket) from a
simulated swarm of ``--nodes`` peers in one process: each heartbeats every 5 s and answers
every ask with an ACK and a reply within a second. ``--model`` measures the state model alone
(cost per event and per coalesced delta, delta size, memory by tracemalloc).

Measured on a 2-core machine shared with other jobs (December 2026). Live, 200 nodes in 9
processes: full membership in 35 s and 45 s (300 s at a load average of 11); the idle swarm
alone used 1.2 to 1.7 cores. It could not keep up with asks: at 0.2 asks/s the observer saw 12
events/s of the 73 due; at 0.1 asks/s, 105 of the 1,200 ask handlers due ran within the 60 s
(every event is signed and sent to all 200 nodes: about 80,000 deliveries per ask), the
observer saw 3 events/s, and by the end the swarm's membership had come apart. With what
arrived, the page rendered in 9.2 ms mean and 41 ms worst per frame (3.2 frames/s), its main
thread 23% busy, its DOM 2,503 elements at the start and 2,589 at the end (at most 2,683), its
JS heap 2.6 to 4.3 MiB; the observer's RSS went from 63 to 67 MiB. At 60 nodes, before the
liveness fix 58 of 61 peers were shown suspect within 30 s (a member calls the observer itself
only every members/3 gossip rounds); after it none were, and the observer saw all the events
made. Simulated, 200 peers, 1 ask/s (392 events/s), 60 s, before and after the changes that
came with these measurements (heartbeats update "last seen" in place, links updated in place,
flows in their own layer at 10 steps a second, the watched timeline appended to): long tasks
265 (43% of the time, the longest 416 ms) and 49 (5.3%, 109 ms); render per frame 15.9 and 6.3
ms mean, 167 and 73 ms worst; main thread 71% and 37% busy; renderer CPU 54% and 35% of a core;
DOM at most 4,013 and 4,015 elements (bounded by the page's limits); 5.2 WebSocket messages
(170 KiB) per second; the server's RSS 51 to 57 MiB in both (its model keeps 300 conversations).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
RENDERER = "--type=renderer"  # in the command line of Chromium's page processes
#: Nodes per child process at most (each holds ~2 sockets per member of a full mesh).
MAX_NODES_PER_PROCESS = 25
CHILDREN = str(Path(__file__).resolve().parent / "_dashboard_children.py")


def child_sizes(nodes: int, processes: int | None) -> list[int]:
    """How many nodes each child process runs."""
    if processes is None:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        fits = soft // (4 * (nodes + 2))  # half the limit, ~2 sockets per member and node
        processes = math.ceil(nodes / max(1, min(MAX_NODES_PER_PROCESS, fits)))
    processes = max(1, min(processes, nodes))
    return [nodes // processes + (k < nodes % processes) for k in range(processes)]


class Child:
    """A child process whose stdout carries JSON lines; ``latest`` is the last one read."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("w") as err:
            self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, text=True,
                                         cwd=ROOT, env=env)  # fmt: skip
        self.latest: dict[str, Any] = {}
        self.first: dict[str, Any] = {}
        self.url = ""
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("dashboard of "):
                self.url = line.strip().split(": ", 1)[1]
                continue
            try:
                data = json.loads(line)
            except ValueError:
                continue
            self.first = self.first or data
            self.latest = data

    def check(self) -> None:
        if self.proc.poll() is not None:
            tail = self.log.read_text()[-2000:]
            raise RuntimeError(f"a child exited ({self.proc.returncode}):\n{tail}")

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)


def wait_for(what: str, ready: Callable[[], bool], timeout: float, children: list[Child]) -> float:
    """Poll ``ready`` (every 0.25 s, at most ``timeout`` s); the seconds it took, or raise."""
    started = time.monotonic()
    while not ready():
        for child in children:
            child.check()
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.25)
    return time.monotonic() - started


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def descendants_cpu(root: int, skip: set[int], only: str = "") -> float:
    """CPU seconds of every descendant of ``root`` not under a pid in ``skip`` (the browser),
    or only of those whose command line holds ``only``."""
    parent: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent[int(stat.parent.name)] = int(fields[1])
    total = 0.0
    for pid in parent:
        up, chain = pid, []
        while up in parent and up != root and up not in skip:
            chain.append(up)
            up = parent[up]
        if up == root and pid != root:
            try:
                if only in Path(f"/proc/{pid}/cmdline").read_text():
                    total += cpu_seconds(pid)
            except OSError:
                pass
    return total


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs so far."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def rss_kib(pid: int) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+) kB", text)
    return int(match.group(1)) if match else 0


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


#: Long tasks (start, duration) on the page's main thread, recorded from the first paint.
LONG_TASKS = (
    "window.longTasks = []; new PerformanceObserver((l) => l.getEntries()"
    ".forEach((e) => window.longTasks.push([e.startTime, e.duration])))"
    ".observe({entryTypes: ['longtask']});"
)
#: What the benchmark reads from the page at each sample.
PROBE = """() => ({
  now: performance.now(),
  dom: document.getElementsByTagName('*').length,
  heap: performance.memory ? performance.memory.usedJSHeapSize : 0,
  events: Number(document.getElementById('count-events').textContent) || 0,
  peers: ['alive', 'suspect', 'offline'].map(
    (k) => `${document.getElementById('count-' + k).textContent} ${k}`).join(', '),
  stats: {...window.dashboardStats},
})"""


def main_thread(cdp: Any) -> dict[str, float]:
    """Seconds the page's main thread spent so far (Chrome's Performance domain)."""
    metrics = cdp.send("Performance.getMetrics")["metrics"]
    return {m["name"]: float(m["value"]) for m in metrics if m["name"].endswith("Duration")}


def live_bench(args: argparse.Namespace) -> None:
    from playwright.sync_api import sync_playwright

    sizes = child_sizes(args.nodes, args.processes)
    env = {k: v for k, v in os.environ.items() if k != "SYNAPSE_SECRET"}
    if args.secret:
        env["SYNAPSE_SECRET"] = f"bench-{os.urandom(8).hex()}"  # Node and sn read it
    lifetime = args.join_timeout + args.seconds + args.drain + 300
    children: list[Child] = []
    with tempfile.TemporaryDirectory(prefix="dashboard-bench-") as tmp:

        def spawn(argv: list[str], name: str) -> Child:
            children.append(Child([sys.executable, *argv], env, Path(tmp) / f"{name}.log"))
            return children[-1]

        def child_argv(k: int, seed: int) -> list[str]:
            asker = ["--asker"] if k == 0 else []
            return [CHILDREN, "swarm", "--first", str(sum(sizes[:k])), "--count", str(sizes[k]),
                    "--seed", str(seed), *schedule(args, lifetime), *asker]  # fmt: skip

        try:
            started = time.monotonic()
            first = spawn(child_argv(0, 0), "child0")
            wait_for("the first node", lambda: "seed" in first.first, 120, children)
            seed = first.first["seed"]
            rest = [spawn(child_argv(k, seed), f"child{k}") for k in range(1, len(sizes))]
            swarm = [first, *rest]

            def known() -> int:
                return min(int(c.latest.get("known", -1)) for c in swarm)

            print(f"swarm: {args.nodes} nodes in {len(sizes)} processes "
                  f"({max(sizes)} at most per process), an asker, "
                  f"{'secured' if args.secret else 'open'}; load {load()}")  # fmt: skip
            try:
                wait_for("full membership", lambda: known() >= args.nodes, args.join_timeout,
                         children)  # fmt: skip
                print(f"full membership   {time.monotonic() - started:8.1f} s from the first "
                      f"start (every node knows the {args.nodes} others)")  # fmt: skip
            except TimeoutError as exc:
                print(f"full membership   NOT reached ({exc}); the least-known node knows "
                      f"{known()} of {args.nodes}")  # fmt: skip
            dash = spawn(["-m", "synapse_p2p", "dashboard", "bench", "--no-mdns", "--seed",
                          f"127.0.0.1:{seed}", "--port", "0"], "observer")  # fmt: skip
            wait_for("the dashboard's URL", lambda: bool(dash.url), 120, children)
            with sync_playwright() as pw:
                browser, page = open_page(pw, dash.url, args.nodes + 1, args.join_timeout)
                try:
                    wait_for("the observer known to all", lambda: known() > args.nodes, 60,
                             children)  # fmt: skip
                except TimeoutError:
                    print(f"observer known    to the least-known node: {known()} peers")
                measure(args, page, first, dash, swarm, children)
                browser.close()
        finally:
            for child in children:
                child.stop()


def schedule(args: argparse.Namespace, lifetime: float) -> list[str]:
    return ["--asks-per-second", str(args.asks_per_second), "--seconds", str(args.seconds),
            "--lifetime", str(lifetime)]  # fmt: skip


def open_page(pw: Any, url: str, peers: int, timeout: float) -> tuple[Any, Any]:
    """Debian's Chromium showing the page at ``url``, once it lists ``peers`` peers."""
    browser = pw.chromium.launch(
        executable_path=CHROMIUM,
        args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
              "--enable-precise-memory-info"],
    )  # fmt: skip
    page = browser.new_page(viewport={"width": 1500, "height": 1100})
    page.add_init_script(LONG_TASKS)
    page.goto(url)
    page.wait_for_selector("#link[data-state=live]")
    rows = f"document.querySelectorAll('#peers tbody tr').length >= {peers}"
    took = time.monotonic()
    page.wait_for_function(rows, timeout=timeout * 1000)
    print(f"page lists all    {time.monotonic() - took:8.1f} s after it opened")
    return browser, page


def simulated_bench(args: argparse.Namespace) -> None:
    """The page over the dashboard's own server fed by a simulated swarm (no nodes)."""
    from playwright.sync_api import sync_playwright

    lifetime = args.seconds + args.drain + 300
    with tempfile.TemporaryDirectory(prefix="dashboard-bench-") as tmp:
        argv = [sys.executable, CHILDREN, "simulate", "--count", str(args.nodes)]
        sim = Child([*argv, *schedule(args, lifetime)], dict(os.environ), Path(tmp) / "sim.log")
        try:
            wait_for("the dashboard's URL", lambda: bool(sim.url), 60, [sim])
            print(f"simulated swarm: {args.nodes} peers and an asker, fed to the dashboard's "
                  f"server in one process; load {load()}")  # fmt: skip
            with sync_playwright() as pw:
                browser, page = open_page(pw, sim.url, args.nodes + 1, 60)
                measure(args, page, sim, sim, [], [sim])
                browser.close()
        finally:
            sim.stop()


def load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def measure(
    args: argparse.Namespace,
    page: Any,
    asker: Child,
    dash: Child,
    swarm: list[Child],
    children: list[Child],
) -> None:
    """Start the asks, sample for ``--seconds``, let the swarm drain, print the figures."""
    idle0, quiet = sum(cpu_seconds(c.proc.pid) for c in swarm), time.monotonic()
    page.wait_for_timeout(args.idle * 1000)
    idle = (sum(cpu_seconds(c.proc.pid) for c in swarm) - idle0) / (time.monotonic() - quiet)
    print(f"swarm idle CPU    {idle:8.0%} of one core over {args.idle:.0f} s (membership alone)")
    print(f"load average      {load()} (before asking)")
    skip = {c.proc.pid for c in children}
    each0 = [cpu_seconds(c.proc.pid) for c in swarm]
    cpu0 = {"observer": cpu_seconds(dash.proc.pid),
            "swarm": sum(cpu_seconds(c.proc.pid) for c in swarm),
            "browser": descendants_cpu(os.getpid(), skip),
            "page": descendants_cpu(os.getpid(), skip, RENDERER)}  # fmt: skip
    cdp = page.context.new_cdp_session(page)
    cdp.send("Performance.enable")
    main0 = main_thread(cdp)
    page.evaluate("window.dashboardStats.maxRenderMs = 0")  # the worst frame of the run
    busy0, probe0 = machine_busy(), page.evaluate(PROBE)
    os.kill(asker.proc.pid, signal.SIGUSR1)
    started = time.monotonic()
    samples: list[tuple[float, int, dict[str, Any]]] = []
    click_at = 0.0
    while (elapsed := time.monotonic() - started) < args.seconds:
        for child in children:
            child.check()
        samples.append((elapsed, rss_kib(dash.proc.pid), page.evaluate(PROBE)))
        newest = page.locator("#conversations li").first
        if elapsed >= click_at and newest.count():
            newest.click()  # follow the newest conversation, as a person would
            click_at = elapsed + 10
        page.wait_for_timeout(2000)
    elapsed = time.monotonic() - started
    cpu = {"observer": cpu_seconds(dash.proc.pid) - cpu0["observer"],
           "swarm": sum(cpu_seconds(c.proc.pid) for c in swarm) - cpu0["swarm"],
           "browser": descendants_cpu(os.getpid(), skip) - cpu0["browser"],
           "page": descendants_cpu(os.getpid(), skip, RENDERER) - cpu0["page"]}  # fmt: skip
    main = {k: v - main0.get(k, 0.0) for k, v in main_thread(cdp).items()}
    each = [cpu_seconds(c.proc.pid) - c0 for c, c0 in zip(swarm, each0, strict=True)]
    busy1, probe1 = machine_busy(), page.evaluate(PROBE)
    at_end, load_end = dict(asker.latest), load()
    makers = swarm or [asker]  # the processes whose nodes answer
    made = sum(int(c.latest.get("answered", 0)) for c in makers)
    samples.append((elapsed, rss_kib(dash.proc.pid), probe1))
    long_tasks = [d for s, d in page.evaluate("window.longTasks") if s >= probe0["now"]]
    # Drain: wait (bounded) until neither the asker nor the observer sees more events.
    drained, last = time.monotonic(), (-1, -1)
    while time.monotonic() - drained < args.drain:
        now = (int(asker.latest.get("stored", 0)), int(page.evaluate(PROBE)["events"]))
        if now == last:
            break
        last = now
        page.wait_for_timeout(3000)
    drain_time = time.monotonic() - drained
    final = dict(asker.latest)
    made_final = sum(int(c.latest.get("answered", 0)) for c in makers)
    final_events = int(page.evaluate(PROBE)["events"])

    n, asks = args.nodes, int(at_end.get("asks", 0))
    print(f"swarm: {n} nodes, {args.asks_per_second:g} asks/s asked, {elapsed:.0f} s")
    print(f"asks sent         {asks:8d} ({asks / elapsed:.2f}/s)")
    print(f"events due        {asks * (1 + 2 * n) / elapsed:8.0f} /s (asks x (1 + 2 x {n}))")
    print(f"events made       {(asks + 2 * made) / elapsed:8.0f} /s (an ACK and a reply per "
          f"ask handler run: {made} of the {asks * n} due)")  # fmt: skip
    print(f"asker received    {int(at_end.get('stored', 0)) / elapsed:8.0f} /s")
    seen = probe1["events"] - probe0["events"]
    print(f"observer saw      {seen / elapsed:8.0f} conversation events/s during the run")
    sent = int(final.get("asks", 0))
    print(f"after the run     {drain_time:8.0f} s of drain: of the {sent * (1 + 2 * n)} events "
          f"of {sent} asks, {sent + 2 * made_final} made, the asker holds "
          f"{int(final.get('stored', 0))}, the observer saw "
          f"{final_events - probe0['events']}")  # fmt: skip
    s0, s1 = probe0["stats"], probe1["stats"]
    renders = s1["renders"] - s0["renders"]
    print(f"page received     {(s1['messages'] - s0['messages']) / elapsed:8.1f} messages/s, "
          f"{(s1['bytes'] - s0['bytes']) / elapsed / 1024:.0f} KiB/s")  # fmt: skip
    print(f"render per frame  {(s1['renderMs'] - s0['renderMs']) / max(1, renders):8.1f} ms "
          f"mean, {s1['maxRenderMs']:.1f} ms worst, {renders / elapsed:.1f} frames/s")  # fmt: skip
    print(f"long tasks        {len(long_tasks):8d} during the run (longest "
          f"{max(long_tasks, default=0):.0f} ms, {sum(long_tasks) / elapsed / 10:.1f} % of "
          "the time)")  # fmt: skip
    busy = {k: main.get(f"{k}Duration", 0.0) / elapsed for k in ("Task", "Script", "RecalcStyle",
                                                                  "Layout")}  # fmt: skip
    print(f"page main thread  {busy['Task']:8.1%} busy: script {busy['Script']:.1%}, style "
          f"{busy['RecalcStyle']:.1%}, layout {busy['Layout']:.1%}; renderer CPU "
          f"{cpu['page'] / elapsed:.0%} of one core")  # fmt: skip
    doms = [p["dom"] for _, _, p in samples]
    print(f"DOM elements      {probe0['dom']:8d} at the start, {probe1['dom']} at the end, "
          f"{max(doms)} at most")  # fmt: skip
    print(f"page JS heap      {probe0['heap'] / 2**20:8.1f} MiB at the start, "
          f"{probe1['heap'] / 2**20:.1f} MiB at the end, "
          f"{max(p['heap'] for _, _, p in samples) / 2**20:.1f} MiB at most")  # fmt: skip
    print(f"peers shown       {probe0['peers']} at the start; {probe1['peers']} at the end")
    suspects = [int(p["peers"].split(", ")[1].split()[0]) for _, _, p in samples]
    print(f"                  at most {max(suspects)} suspect during the run")
    rss = ", ".join(f"{t:.0f}s {k / 1024:.0f}" for t, k, _ in samples[:: max(1, len(samples) // 8)])
    print(f"observer RSS      {rss} MiB; {samples[-1][1] / 1024:.0f} MiB at the end")
    if swarm:
        print(f"members known     the least-known swarm node knows "
              f"{min(int(c.latest.get('known', -1)) for c in swarm)} at the end")  # fmt: skip
    swarm_rss = sum(int(c.latest.get("rss", 0)) for c in swarm) / 2**20
    cores = os.cpu_count() or 1
    machine = (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1]) * cores
    print(f"CPU               observer {cpu['observer'] / elapsed:.0%}, swarm "
          f"{cpu['swarm'] / elapsed:.0%}, browser and Playwright {cpu['browser'] / elapsed:.0%}, "
          f"whole machine {machine:.0%} of one core ({cores} cores)")  # fmt: skip
    print(f"load average      {load_end} at the end")
    if swarm:
        shares = ", ".join(f"{c / elapsed:.0%}" for c in each)
        print(f"swarm CPU         {shares} (each process; the first runs the asker)")
        print(f"swarm RSS         {swarm_rss:8.1f} GiB at the end (all its processes)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=40)
    parser.add_argument("--asks-per-second", type=float, default=5.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--processes", type=int, default=None,
                        help="child processes for the nodes (default: at most "
                        f"{MAX_NODES_PER_PROCESS} nodes each)")  # fmt: skip
    parser.add_argument("--secret", action="store_true", help="a secured swarm (a new secret)")
    parser.add_argument("--join-timeout", type=float, default=300.0,
                        help="longest wait for full membership, seconds")  # fmt: skip
    parser.add_argument("--drain", type=float, default=30.0,
                        help="longest wait for the last events after the run, seconds")  # fmt: skip
    parser.add_argument("--idle", type=float, default=10.0,
                        help="seconds of the idle swarm measured before asking")  # fmt: skip
    parser.add_argument("--model", action="store_true", help="the state model alone")
    parser.add_argument("--simulate", action="store_true",
                        help="the page, its server fed by a simulated swarm")  # fmt: skip
    args = parser.parse_args()
    if args.model:
        model_bench(args.nodes, args.asks_per_second, args.seconds)
    elif args.simulate:
        simulated_bench(args)
    else:
        live_bench(args)


if __name__ == "__main__":
    main()
