"""What an idle node holds: connections per link and the objects alive, per node.

    python benchmarks/census.py [--size 100] [--idle 20] [--backend trio]

``--size`` nodes (``partial_views=True``, one process, real loopback TCP) start 0.05 s apart
from one seed and reach full membership (at most 120 s); after ``--idle`` seconds, per node:

- the connections it opened (the pool) and accepted (the server), its active view, and of its
  outbound connections how many have one back from the same member (links that run on two
  connections) and how many have none;
- every object the garbage collector tracks (containers: strings, bytes and numbers are not
  counted), by type: count and ``sys.getsizeof`` plus the 16-byte header, less what the
  process held before the swarm started, and the sets by the type of their owner (trio's
  cancel statuses and events hold two and one).

One JSON line on stdout, the tables on stderr. The figures are in ``docs/scale.md`` ("What the
fixed part is made of, counted later").
"""

from __future__ import annotations

import argparse
import collections
import gc
import json
import statistics
import sys
import time
from typing import Any

GC_HEADER = 16


def _census() -> tuple[collections.Counter[str], collections.Counter[str]]:
    count: collections.Counter[str] = collections.Counter()
    size: collections.Counter[str] = collections.Counter()
    for o in gc.get_objects():
        name = type(o).__qualname__
        count[name] += 1
        size[name] += sys.getsizeof(o) + GC_HEADER
    return count, size


def _sets_by_owner() -> collections.Counter[str]:
    objects = gc.get_objects()
    dict_owner: dict[int, str] = {}
    for o in objects:
        attrs = None if isinstance(o, type) else getattr(o, "__dict__", None)
        if type(attrs) is dict:
            dict_owner[id(attrs)] = type(o).__qualname__
    owner: dict[int, str] = {}
    for o in objects:
        for r in gc.get_referents(o):
            if type(r) is set:
                name = type(o).__qualname__
                owner[id(r)] = dict_owner.get(id(o), "dict") if name == "dict" else name
    sizes: collections.Counter[str] = collections.Counter()
    for o in objects:
        if type(o) is set:
            sizes[owner.get(id(o), "(no tracked owner)")] += sys.getsizeof(o) + GC_HEADER
    return sizes


def _links(nodes: list[Any]) -> dict[str, float]:
    """Connections per node, the active view, and outbound connections with one back."""
    by_port = {node.port: node for node in nodes}
    outbound = [len(node._caller.pool._connections) for node in nodes]
    both = one_way = 0
    for node in nodes:
        for key in node._caller.pool._connections:
            other = by_port.get(key[1])
            if other is None:
                continue
            if ("127.0.0.1", node.port) in other._caller.pool._connections:
                both += 1
            else:
                one_way += 1
    size = len(nodes)
    return {
        "outbound_per_node": round(statistics.mean(outbound), 2),
        "inbound_per_node": round(statistics.mean(len(n._server._connections) for n in nodes), 2),
        "active_view_per_node": round(
            statistics.mean(len(n._membership.views.core.active) for n in nodes), 2
        ),
        "outbound_with_one_back_per_node": round(both / size, 2),
        "outbound_one_way_per_node": round(one_way / size, 2),
    }


def run(size: int, idle: float, backend: str) -> dict[str, Any]:
    import anyio

    from synapse_p2p import Node

    def log(*args: object) -> None:
        print(*args, file=sys.stderr, flush=True)

    async def main() -> dict[str, Any]:
        options: dict[str, Any] = {"bind": "127.0.0.1", "swarm": "census", "mdns": False}
        async with Node(name="warm-up", **options):
            pass  # (imports and first-use caches are not the swarm's)
        gc.collect()
        count0, size0 = _census()
        sets0 = _sets_by_owner()
        seed = Node(name="seed", **options)
        links: dict[str, float] = {}
        async with seed, anyio.create_task_group() as tg:
            nodes = [seed] + [
                Node(name=f"n{i}", seeds=[f"127.0.0.1:{seed.port}"], **options)
                for i in range(size - 1)
            ]
            for node in nodes[1:]:
                tg.start_soon(node.serve)
                await anyio.sleep(0.05)
            started = time.monotonic()
            while sum(len(n.peers) >= size - 1 for n in nodes) < size:
                if time.monotonic() - started > 120:
                    break
                await anyio.sleep(0.2)
            complete = sum(len(n.peers) >= size - 1 for n in nodes)
            log(f"full membership at {complete} of {size} nodes; idle {idle:g} s")
            await anyio.sleep(idle)
            links = _links(nodes)
            gc.collect()
            count1, size1 = _census()
            sets1 = _sets_by_owner()
            tg.cancel_scope.cancel()
        types = sorted(
            ((size1[t] - size0[t]) / size, (count1[t] - count0[t]) / size, t) for t in count1
        )
        total = sum(row[0] for row in types)
        log(f"containers alive per node: {total / 1024:.1f} KiB")
        for nbytes, per_node, name in sorted(types, reverse=True)[:20]:
            log(f"  {nbytes:9.0f} B {per_node:8.1f}  {name}")
        log("sets by owner, per node:")
        owners = sorted(((sets1[k] - sets0[k]) / size, k) for k in sets1)
        for nbytes, name in sorted(owners, reverse=True)[:8]:
            log(f"  {nbytes:9.0f} B  {name}")
        return {
            "backend": backend,
            "size": size,
            "idle_s": idle,
            "complete": complete,
            **links,
            "containers_per_node_kib": round(total / 1024, 1),
            "top_types_per_node_bytes": {
                name: round(nbytes) for nbytes, _, name in sorted(types, reverse=True)[:12]
            },
            "sets_by_owner_per_node_bytes": {
                name: round(nbytes) for nbytes, name in sorted(owners, reverse=True)[:6]
            },
        }

    return anyio.run(main, backend=backend)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--idle", type=float, default=20.0)
    parser.add_argument("--backend", choices=["trio", "asyncio"], default="trio")
    args = parser.parse_args()
    print(json.dumps(run(args.size, args.idle, args.backend)))


if __name__ == "__main__":
    main()
