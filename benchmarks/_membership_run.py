"""One membership measurement in this process; prints one JSON line.

    python _membership_run.py ours trio|asyncio N IDLE_SECONDS
    python _membership_run.py ref asyncio N IDLE_SECONDS     (synapse-p2p 2.5.0's interpreter)

All N nodes run in this process on one event loop, on 127.0.0.1, and join through the first.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

#: Seconds between the two idle windows (the first starts 2 s after full membership).
SETTLE = float(os.environ.get("SYNAPSE_BENCH_SETTLE", "60"))


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def ours(backend: str, n: int, idle: float) -> dict[str, float]:
    import anyio

    from synapse_p2p import Node

    async def main() -> dict[str, float]:
        base = rss_kib()
        seed = Node(bind="127.0.0.1", name="seed", swarm="bench")
        async with seed, anyio.create_task_group() as tg:
            nodes = [seed] + [
                Node(
                    bind="127.0.0.1", name=f"n{i}", swarm="bench", seeds=[f"127.0.0.1:{seed.port}"]
                )
                for i in range(n - 1)
            ]
            start = time.perf_counter()
            for node in nodes[1:]:  # all start at once and join the seed by themselves
                tg.start_soon(node.serve)
            ids = {node.node_id for node in nodes}
            while not all(set(node.peers) == ids - {node.node_id} for node in nodes):
                await anyio.sleep(0.005)
                if time.perf_counter() - start > 120:
                    break
            converged = time.perf_counter() - start
            full = all(set(node.peers) == ids - {node.node_id} for node in nodes)
            await anyio.sleep(2)

            async def window() -> tuple[float, float]:
                sent0 = sum(node.membership.messages_sent for node in nodes)
                cpu0, wall0 = time.process_time(), time.perf_counter()
                await anyio.sleep(idle)
                wall = time.perf_counter() - wall0
                sent = sum(node.membership.messages_sent for node in nodes) - sent0
                return sent / n / wall, 100 * (time.process_time() - cpu0) / wall

            msgs, cpu = await window()
            await anyio.sleep(SETTLE)
            msgs_late, cpu_late = await window()
            still_full = all(set(node.peers) == ids - {node.node_id} for node in nodes)
            result = {
                "converge_s": converged if full else float("nan"),
                "msgs_per_node_s": msgs,
                "idle_cpu_pct": cpu,
                "idle_cpu_pct_late": cpu_late,
                "msgs_per_node_s_late": msgs_late,
                "rss_per_node_kib": (rss_kib() - base) / n,
                "still_full": float(still_full),
            }
            tg.cancel_scope.cancel()
        return result

    return anyio.run(main, backend=backend)


def ref(n: int, idle: float) -> dict[str, float]:
    import asyncio
    import importlib

    # synapse-p2p 2.5.0's package (this runs in the reference's interpreter): its API is not
    # this tree's, so it is imported untyped rather than checked against our annotations.
    ref_node: Any = importlib.import_module("synapse_p2p.node")
    ref_api: Any = importlib.import_module("synapse_p2p")
    Client, Node = ref_api.Client, ref_api.Node

    calls = 0
    original = Client.call

    async def counting_call(self, endpoint, *args, **kwargs):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        return await original(self, endpoint, *args, **kwargs)

    Client.call = counting_call
    ref_node.Client = Client

    async def main() -> dict[str, float]:
        base = rss_kib()
        seed = Node(bind="127.0.0.1", name="seed", swarm="bench")
        await seed.start()
        nodes = [seed] + [
            Node(bind="127.0.0.1", name=f"n{i}", swarm="bench", seeds=[("127.0.0.1", seed.port)])
            for i in range(n - 1)
        ]
        start = time.perf_counter()
        for node in nodes[1:]:
            await node.start()
        await asyncio.gather(*(node.join() for node in nodes[1:]))  # 2.5.0 never joins by itself
        ids = {node.node_id for node in nodes}
        while not all(set(node.peers) == ids - {node.node_id} for node in nodes):
            await asyncio.sleep(0.005)
            if time.perf_counter() - start > 120:
                break
        converged = time.perf_counter() - start
        full = all(set(node.peers) == ids - {node.node_id} for node in nodes)
        await asyncio.sleep(2)

        async def window() -> tuple[float, float]:
            calls0 = calls
            cpu0, wall0 = time.process_time(), time.perf_counter()
            await asyncio.sleep(idle)
            wall = time.perf_counter() - wall0
            return (calls - calls0) / n / wall, 100 * (time.process_time() - cpu0) / wall

        msgs, cpu = await window()
        await asyncio.sleep(SETTLE)
        msgs_late, cpu_late = await window()
        still_full = all(set(node.peers) == ids - {node.node_id} for node in nodes)
        result = {
            "converge_s": converged if full else float("nan"),
            "msgs_per_node_s": msgs,
            "idle_cpu_pct": cpu,
            "idle_cpu_pct_late": cpu_late,
            "msgs_per_node_s_late": msgs_late,
            "rss_per_node_kib": (rss_kib() - base) / n,
            "still_full": float(still_full),
        }
        for node in nodes:
            await node.stop()
        return result

    return asyncio.run(main())


if __name__ == "__main__":
    impl, backend, n_text, idle_text = sys.argv[1:5]
    if impl == "ref":
        out = ref(int(n_text), float(idle_text))
    else:
        out = ours(backend, int(n_text), float(idle_text))
    print(json.dumps(out), flush=True)
