"""What a node is made of, by parts: a node alone, and one idle pooled connection.

    python benchmarks/parts.py [--nodes 50] [--connections 100] [--backend trio|asyncio|both]

Two measurements in one process (real loopback TCP, ``partial_views=True``), after a full
collection, less what the process held before: ``alive``, the bytes in Python's blocks in use
and glibc's in use (as ``heap_per_node_kib`` of ``_views_run.py``; glibc's hold the OpenSSL
contexts of the ciphers), and, in a second run of the same steps, the bytes ``tracemalloc``
traced, by file (Python's allocations only; tracing takes glibc memory of its own, so the two
are never taken in one run):

- **a node alone**: ``--nodes`` nodes without seeds started and left idle for 3 s, per node,
  with the tasks each runs: what every node costs whatever its swarm (services, endpoints,
  keys, listener);
- **an idle connection**: one node serving and ``--connections`` others each calling it once
  (one pooled connection each, kept open), per connection, both ends together, with its
  tasks: what each link of a view costs once idle. The figure is taken 0.2 s after the
  calls, with the ciphers of the connections that still hold them (a record layer not used
  between two sweeps, at most every 2 s, lets them go): printed, with how long the calls
  took.

Tables on stderr (the top files by traced bytes), one JSON line per backend on stdout. The
figures are in ``docs/scale.md`` ("A node by parts, and why RSS keeps the start's peak").
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _views_run import heap_kib  # type: ignore[import-not-found]

TOP = 12


def _tasks(backend: str) -> int:
    if backend == "asyncio":
        return len(asyncio.all_tasks())
    import trio

    root = trio.lowlevel.current_root_task()
    assert root is not None
    stack = [root]
    count = 0
    while stack:
        task = stack.pop()
        count += 1
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return count


def _resting() -> str:
    """How many of the record layers alive hold no cipher (see ``secure/_resting.py``)."""
    from synapse_p2p.secure._records import RecordLayer

    layers = [o for o in gc.get_objects() if type(o) is RecordLayer]
    return f"{sum(layer.resting for layer in layers)} of {len(layers)}"


class _Probe:
    """Bytes and tasks now, against the ones taken at :meth:`start`: ``alive``
    (:func:`heap_kib`) or, with ``traced``, what ``tracemalloc`` traced, by file."""

    def __init__(self, backend: str, traced: bool) -> None:
        self.backend = backend
        self.traced = traced

    def start(self) -> None:
        gc.collect()
        if self.traced:
            tracemalloc.start(1)
            self.snapshot = tracemalloc.take_snapshot()
        else:
            self.heap = heap_kib()
        self.tasks = _tasks(self.backend)

    def stop(self, per: int) -> dict[str, Any]:
        gc.collect()
        out: dict[str, Any] = {"tasks": round((_tasks(self.backend) - self.tasks) / per, 2)}
        if not self.traced:
            heap = heap_kib()
            alive = None
            if heap is not None and self.heap is not None:
                alive = round((heap["alive"] - self.heap["alive"]) / per, 2)
            out["alive_kib"] = alive
            return out
        snapshot = tracemalloc.take_snapshot()
        tracemalloc.stop()
        stats = snapshot.compare_to(self.snapshot, "filename")
        out["traced_kib"] = round(sum(s.size_diff for s in stats) / per / 1024, 2)
        out["files"] = [
            (round(s.size_diff / per), round(s.count_diff / per, 1), s.traceback[0].filename)
            for s in stats[:TOP]
        ]
        return out


def run(nodes: int, connections: int, backend: str, traced: bool) -> dict[str, Any]:
    import anyio

    from synapse_p2p import Node

    kw: dict[str, Any] = {"bind": "127.0.0.1", "swarm": "parts", "partial_views": True}

    async def measure() -> dict[str, Any]:
        # (lazy imports and first-use caches)
        async with Node(name="warm", **kw) as warm, Node(name="warm2", **kw) as other:
            await other.call_peer(("127.0.0.1", warm.port), "_synapse.ping")
        probe = _Probe(backend, traced)
        out: dict[str, Any] = {"backend": backend, "nodes": nodes, "connections": connections}
        async with anyio.create_task_group() as tg:
            probe.start()
            alone = [Node(name=f"alone{i}", **kw) for i in range(nodes)]
            for node in alone:
                await tg.start(node.serve)
            await anyio.sleep(3)
            out["node_alone"] = probe.stop(nodes)
            tg.cancel_scope.cancel()
        async with anyio.create_task_group() as tg:
            server = Node(name="server", **kw)
            await tg.start(server.serve)
            callers = [Node(name=f"caller{i}", **kw) for i in range(connections)]
            for node in callers:
                await tg.start(node.serve)
            await anyio.sleep(0.5)
            probe.start()
            began = anyio.current_time()
            for node in callers:
                await node.call_peer(("127.0.0.1", server.port), "_synapse.ping")
            took = anyio.current_time() - began
            await anyio.sleep(0.2)
            out["connection"] = probe.stop(connections)
            out["connection"]["calls_s"] = round(took, 2)
            out["connection"]["ciphers_resting"] = _resting()
            tg.cancel_scope.cancel()
        return out

    return anyio.run(measure, backend=backend)


def _print(out: dict[str, Any]) -> None:
    for part, per in (("node_alone", "node"), ("connection", "connection, both ends")):
        figures = out[part]
        print(
            f"[{out['backend']}] {part}: {figures['alive_kib']} KiB alive "
            f"({figures['traced_kib']} KiB traced by tracemalloc), {figures['tasks']} tasks "
            f"per {per}",
            file=sys.stderr,
        )
        if part == "connection":
            print(
                f"  (calls took {figures['calls_s']} s; record layers without ciphers: "
                f"{figures['ciphers_resting']})",
                file=sys.stderr,
            )
        for size, count, name in figures["files"]:
            print(f"  {size:7d} B {count:6.1f}  {name}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--backend", choices=["trio", "asyncio", "both"], default="both")
    args = parser.parse_args()
    backends = ["trio", "asyncio"] if args.backend == "both" else [args.backend]
    for backend in backends:
        out = run(args.nodes, args.connections, backend, traced=False)
        traced = run(args.nodes, args.connections, backend, traced=True)
        for part in ("node_alone", "connection"):
            out[part].update(traced_kib=traced[part]["traced_kib"], files=traced[part]["files"])
            # (``traced``: allocations made since the start of the part and still alive)
        _print(out)
        print(json.dumps(out))


if __name__ == "__main__":
    main()
