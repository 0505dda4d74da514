"""One conversation measurement in this process; prints one JSON line.

    python _conversations_run.py ours trio|asyncio N [views|tree] [tuned]
    python _conversations_run.py ref asyncio N     (synapse-p2p 2.5.0's interpreter)

N nodes on one event loop, loopback TCP, joined through the first. Measures: one event from
node 0 reaching all N (median of 10), requests handled per event (and, on the broadcast tree,
its pushes, announcements and grafts per event), sustained events/s for 200 events, broadcast
synapse.ask -> all N-1 replies at the origin (median of 5), failed calls, the whole swarm's
CPU time per ask (the process's, from the broadcast until the swarm is quiet), and, ours only,
the garbage collector's time per ask and the objects it tracks, and one event after 6 s
without traffic (median of 3): its time to all N and the handshakes it cost. ``views`` runs
our nodes with ``partial_views=True``; ``tuned`` raises the garbage collector's thresholds
first (``_views_run.TUNED_GC``); ``tree`` runs them with partial views and
``event_tree=True`` (events on the broadcast tree of the views).
"""

from __future__ import annotations

import gc
import importlib
import json
import statistics
import sys
import time
from typing import Any

EVENTS = 200
SPARSE = 3


def ours(backend: str, n: int, views: bool = False, tree: bool = False) -> dict[str, float]:
    import anyio

    from synapse_p2p import Node

    async def main() -> dict[str, float]:
        kw: dict[str, Any] = {"bind": "127.0.0.1", "swarm": "bench", "partial_views": views}
        if tree:
            kw["event_tree"] = True
        seed = Node(name="n0", **kw)
        async with seed, anyio.create_task_group() as tg:
            nodes = [seed] + [
                Node(name=f"n{i}", seeds=[f"127.0.0.1:{seed.port}"], **kw) for i in range(1, n)
            ]
            for node in nodes[1:]:
                tg.start_soon(node.serve)
            ids = {node.node_id for node in nodes}
            while not all(
                node.running and set(node.peers) == ids - {node.node_id} for node in nodes
            ):
                await anyio.sleep(0.01)
            for node in nodes[1:]:

                @node.ask
                async def handle(task: str, context: dict[str, Any], node: Node = node) -> str:
                    return node.name

            def requests() -> int:
                return sum(node._server.statistics().requests for node in nodes if node._server)

            async def reach_all(cid: str, count: int) -> None:
                while not all(node.conversation_log.count(cid) >= count for node in nodes):
                    await anyio.sleep(0.0005)

            def tree_sent(kind: str) -> int:
                return sum(node._conversations.tree.sent[kind] for node in nodes)

            await anyio.sleep(0.5)
            times = []
            per_event = []
            tree_before = {k: tree_sent(k) for k in ("pt.eager", "pt.ihave", "pt.graft")}
            for i in range(10):
                before = requests()
                start = time.perf_counter()
                await seed.emit_conversation_event(f"one-{i}", "note", {"i": i})
                await reach_all(f"one-{i}", 1)
                times.append(time.perf_counter() - start)
                await anyio.sleep(0.05)
                per_event.append(requests() - before)
            await anyio.sleep(2.5)  # the lazy links' announcements of these events (1 s batches)
            on_tree = {k: (tree_sent(k) - v) / 10 for k, v in tree_before.items()}
            start = time.perf_counter()
            for i in range(EVENTS):
                await seed.emit_conversation_event("stream", "note", {"i": i})
            await reach_all("stream", EVENTS)
            sustained = EVENTS / (time.perf_counter() - start)

            def busy() -> bool:
                return any(
                    node._conversations.delivery.statistics().in_flight
                    or any(box.calls for box in node._conversations.delivery._outboxes.values())
                    for node in nodes
                )

            ask_times, quiet_times, gc_times, cpu_times = [], [], [], []
            collecting = {"started": 0.0, "total": 0.0}

            def timed(phase: str, info: dict[str, Any]) -> None:
                now = time.perf_counter()
                if phase == "start":
                    collecting["started"] = now
                else:
                    collecting["total"] += now - collecting["started"]

            gc.callbacks.append(timed)
            for _ in range(5):
                while busy():  # start each ask on a quiet swarm
                    await anyio.sleep(0.01)
                collecting["total"] = 0.0
                start, cpu = time.perf_counter(), time.process_time()
                b = await seed.broadcast("synapse.ask", "ping")
                while len(seed.replies(b)) < n - 1:
                    await anyio.sleep(0.0005)
                ask_times.append(time.perf_counter() - start)
                while busy():
                    await anyio.sleep(0.001)
                quiet_times.append(time.perf_counter() - start)
                cpu_times.append(time.process_time() - cpu)
                gc_times.append(collecting["total"])
            gc.callbacks.remove(timed)

            def handshakes() -> int:
                stats = [node.statistics().handshakes for node in nodes]
                return sum(s.secure for s in stats if s is not None)

            # Sparse events: one at a time after 6 s without traffic, when the connections
            # that are not kept (views: those outside the active view) have closed.
            sparse_times, sparse_handshakes = [], []
            for i in range(SPARSE):
                await anyio.sleep(6.0)
                before, start = handshakes(), time.perf_counter()
                await seed.emit_conversation_event(f"sparse-{i}", "note", {"i": i})
                await reach_all(f"sparse-{i}", 1)
                sparse_times.append(time.perf_counter() - start)
                sparse_handshakes.append(handshakes() - before)
            failed = sum(node._conversations.delivery.statistics().failed for node in nodes)
            tg.cancel_scope.cancel()
        return {
            "event_to_all_ms": statistics.median(times) * 1000,
            "requests_per_event": statistics.median(per_event),
            # broadcast tree messages per event (``tree``, 20 members or more): pushes, lazy
            # announcements (IHAVE batches, sent up to a second later) and GRAFTs
            "tree_pushes_per_event": on_tree["pt.eager"],
            "tree_announcements_per_event": on_tree["pt.ihave"],
            "tree_grafts_per_event": on_tree["pt.graft"],
            "sustained_events_s": sustained,
            "ask_all_replies_ms": statistics.median(ask_times) * 1000,
            "ask_quiet_ms": statistics.median(quiet_times) * 1000,
            "sparse_event_ms": statistics.median(sparse_times) * 1000,
            "sparse_handshakes": statistics.median(sparse_handshakes),
            "failed_calls": failed,
            # the whole swarm's CPU time from the broadcast until every delivery is done
            "cpu_per_ask_ms": statistics.median(cpu_times) * 1000,
            # the garbage collector's time from an ask to a quiet swarm, and the objects it
            # tracks: N nodes in one heap make each full collection N times the work it is
            # for one node in a process of its own
            "gc_per_ask_ms": statistics.median(gc_times) * 1000,
            "gc_objects": len(gc.get_objects()),
        }

    return anyio.run(main, backend=backend)


def ref(n: int) -> dict[str, float]:
    import asyncio
    import importlib

    # synapse-p2p 2.5.0's package (this runs in the reference's interpreter): its API is not
    # this tree's, so it is imported untyped rather than checked against our annotations.
    ref_node: Any = importlib.import_module("synapse_p2p.node")
    ref_api: Any = importlib.import_module("synapse_p2p")
    Client, Node = ref_api.Client, ref_api.Node

    calls = 0
    failures = 0
    original = Client.call

    async def counting_call(self, endpoint, *args, **kwargs):  # type: ignore[no-untyped-def]
        nonlocal calls, failures
        calls += 1
        try:
            return await original(self, endpoint, *args, **kwargs)
        except Exception:
            failures += 1
            raise

    Client.call = counting_call
    ref_node.Client = Client

    async def main() -> dict[str, float]:
        seed = Node(bind="127.0.0.1", name="n0", swarm="bench")
        await seed.start()
        nodes = [seed] + [
            Node(bind="127.0.0.1", name=f"n{i}", swarm="bench", seeds=[("127.0.0.1", seed.port)])
            for i in range(1, n)
        ]
        for node in nodes[1:]:
            await node.start()
        await asyncio.gather(*(node.join() for node in nodes[1:]))
        ids = {node.node_id for node in nodes}
        deadline = time.perf_counter() + 60
        while not all(set(node.peers) == ids - {node.node_id} for node in nodes):
            await asyncio.sleep(0.05)
            if time.perf_counter() > deadline:
                break
        for node in nodes[1:]:

            @node.ask
            async def handle(task, context, node=node):  # type: ignore[no-untyped-def]
                return node.name

        def count(node: Any, cid: str) -> int:
            return int(node.conversation_log.count(cid))

        async def reach_all(cid: str, expected: int, limit: float = 120) -> bool:
            end = time.perf_counter() + limit
            while not all(count(node, cid) >= expected for node in nodes):
                await asyncio.sleep(0.0005)
                if time.perf_counter() > end:
                    return False
            return True

        times, per_event = [], []
        for i in range(10):
            before = calls
            start = time.perf_counter()
            emit = asyncio.ensure_future(seed.emit_conversation_event(f"one-{i}", "note", {"i": i}))
            await reach_all(f"one-{i}", 1)
            times.append(time.perf_counter() - start)
            await emit
            await asyncio.sleep(0.05)
            per_event.append(calls - before)
        start = time.perf_counter()
        for i in range(EVENTS if n <= 10 else 20):  # 2.5.0 is too slow for 200 at N >= 30
            await seed.emit_conversation_event("stream", "note", {"i": i})
        sent = EVENTS if n <= 10 else 20
        ok = await reach_all("stream", sent)
        sustained = sent / (time.perf_counter() - start) if ok else float("nan")
        ask_times = []
        for _ in range(3 if n <= 10 else 1):
            start = time.perf_counter()
            b = await seed.broadcast("synapse.ask", "ping")
            end = time.perf_counter() + 120
            while len(seed.replies(b)) < n - 1 and time.perf_counter() < end:
                await asyncio.sleep(0.001)
            ask_times.append(time.perf_counter() - start)
        for node in nodes:
            await node.stop()
        return {
            "event_to_all_ms": statistics.median(times) * 1000,
            "requests_per_event": statistics.median(per_event),
            "sustained_events_s": sustained,
            "ask_all_replies_ms": statistics.median(ask_times) * 1000,
            "ask_quiet_ms": float("nan"),
            "failed_calls": failures,
        }

    return asyncio.run(main())


if __name__ == "__main__":
    impl, backend, n_text = sys.argv[1:4]
    views, tuned = bool({"views", "tree"} & set(sys.argv[4:])), "tuned" in sys.argv[4:]
    if tuned:  # the same thresholds as benchmarks/views.py --gc tuned (this script's folder)
        gc.set_threshold(*importlib.import_module("_views_run").TUNED_GC)
    tree = "tree" in sys.argv[4:]
    out = ref(int(n_text)) if impl == "ref" else ours(backend, int(n_text), views, tree)
    print(json.dumps(out), flush=True)
