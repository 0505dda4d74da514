"""What one join costs a running swarm: real loopback TCP, all nodes in one process.

    python benchmarks/joins.py [--size 100] [--joins 10] [--gap 3] [--backend trio]

``--size`` nodes start at once (``partial_views=True``, the garbage collector's thresholds
raised as ``views.py --gc tuned`` does) and reach full membership; the objects alive are
frozen (``gc.freeze()``), the swarm idles 15 s, and its CPU over the next 20 s is the idle
baseline. Then ``--joins`` more nodes join, one every ``--gap`` seconds. Printed: the CPU of
those joins less the idle baseline, per join (the work a join adds to the swarm), and per
join the counters of ``_views_run.py`` (handshakes, pooled connections, gossip calls by kind,
view messages) for the nodes that were there and for the joiners, and the calls that had to
open a connection, by endpoint (gossip by kind: ``push`` of news, ``probe``, ``partial`` or
``compact`` digest). One JSON line on stdout, progress on stderr.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
_views_run: Any = importlib.import_module("_views_run")  # the counters and GC settings


def run(size: int, joins: int, gap: float, backend: str) -> dict[str, Any]:
    import anyio

    from synapse_p2p import Node

    def log(*args: object) -> None:
        print(f"[joins {backend} N={size}]", *args, file=sys.stderr, flush=True)

    gc.set_threshold(*_views_run.TUNED_GC)
    _views_run.count_gossip()
    switch = _views_run.count_openings()
    out: dict[str, Any] = {"size": size, "joins": joins, "gap": gap, "backend": backend}
    keys = ("connects", "handshakes", "gossip_calls", "gossip_pushes", "gossip_compact",
            "view_sent", "verify_dials")  # fmt: skip

    async def main() -> None:
        kw: dict[str, Any] = {"bind": "127.0.0.1", "swarm": "bench", "partial_views": True}
        seed = Node(name="seed", **kw)
        async with seed, anyio.create_task_group() as tg:
            seeds = [f"127.0.0.1:{seed.port}"]
            nodes = [seed] + [
                Node(name=f"n{i}", seeds=seeds, **kw) for i in range(size - 1 + joins)
            ]
            old, new = nodes[:size], nodes[size:]
            for node in old[1:]:
                tg.start_soon(node.serve)
            start = time.perf_counter()
            with anyio.fail_after(600):
                while True:
                    await anyio.sleep(0.2)
                    if all(node.port for node in old):
                        ids = {node.node_id for node in old}
                        if all(set(node.peers) >= ids - {node.node_id} for node in old):
                            break
            out["converge_s"] = round(time.perf_counter() - start, 1)
            log(f"full membership after {out['converge_s']} s")
            gc.freeze()
            await anyio.sleep(15)
            cpu, wall = time.process_time(), time.perf_counter()
            await anyio.sleep(20)
            idle = (time.process_time() - cpu) / (time.perf_counter() - wall)
            out["idle_cpu_pct"] = round(100 * idle, 1)
            before = _views_run.counters(old)
            switch[0] = True
            cpu, wall = time.process_time(), time.perf_counter()
            for node in new:
                tg.start_soon(node.serve)
                await anyio.sleep(gap)
            wall = time.perf_counter() - wall
            cpu = time.process_time() - cpu
            switch[0] = False
            out["ms_per_join"] = round(1000 * (cpu - idle * wall) / joins)
            after = _views_run.counters(old)
            mine = _views_run.counters(new)
            out["old_per_join"] = {k: round((after[k] - before[k]) / joins, 1) for k in keys}
            out["joiner_per_join"] = {k: round(mine[k] / joins, 1) for k in keys}
            out["opened_per_join"] = {
                k: round(v / joins, 1) for k, v in _views_run.OPENED.most_common()
            }
            everyone = {node.node_id for node in nodes}
            out["complete"] = sum(set(n.peers) >= everyone - {n.node_id} for n in nodes)
            log(out)
            tg.cancel_scope.cancel()

    anyio.run(main, backend=backend)
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--joins", type=int, default=10)
    parser.add_argument("--gap", type=float, default=3.0)
    parser.add_argument("--backend", default="trio")
    args = parser.parse_args()
    print(json.dumps(run(args.size, args.joins, args.gap, args.backend)), flush=True)
