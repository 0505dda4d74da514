"""One partial-views measurement in this process; prints progress to stderr, one JSON line.

    python _views_run.py views|mesh trio|asyncio N IDLE_SECONDS [CONVERGE_TIMEOUT
        [default|tuned|freeze [NAME=VALUE,...]]]

N nodes on one event loop on 127.0.0.1 (real TCP, the default heartbeat_interval=5 and
peer_timeout=20) join through the first; ``views`` runs them with ``partial_views=True``, ``mesh``
as before (gossip round-robin over every member, connections kept 240 s). Reports time to full
membership after the last node started, then every ``IDLE/6`` seconds of idle: sockets per node (the
node's inbound plus pooled outbound connections: mean, max), file descriptors of the process per
node, whether membership is still complete, and the CPU of the whole swarm; RSS per node at the end
(and ``rss_trimmed_per_node_kib``, after a full collection and glibc's ``malloc_trim``, against
the same taken before the nodes started: without the free memory the allocator kept from the
start's peak; and ``heap_per_node_kib``: the bytes alive in Python's and glibc's allocators,
and those they hold free, see :func:`heap_kib`),
and per node per second of idle the counters below that moved (``idle_rates``), the requests
served by endpoint (``idle_served``, gossip by kind: ``push``, ``probe``, ``partial``, ``compact``)
and the calls that opened a connection (``idle_opened``); ``late_idle`` has the same (and the
CPU) for the second half of the idle time only, past the start's leftovers.
A run that fails (``Too many open files``) reports where. At convergence (or when
``CONVERGE_TIMEOUT``, default 300 s, runs out) it also reports what the start cost: CPU seconds of
the process, handshakes (completed, failed, refused over the caps), pooled connections opened (and
of them ``opened_late``, after their calls gave up), stalls of the membership rounds
(``Membership.stalls``), address checks (verification dials), gossip calls (and of them pushes of
news, with the entries they carried, and compact and full digests), records signed, deaths
announced, heard and refuted (``Membership.deaths``) and, with views, view messages by kind, failed
and dropped sends, the cores' requests, evictions and ignored messages. ``tuned`` sets the garbage
collector's thresholds to :data:`TUNED_GC` first; ``freeze`` does too, and freezes what is alive
(``gc.freeze()``) after every 50 starts, when all have started and at full membership; the time
spent collecting is reported either way. The ``peer.joined`` and ``peer.offline`` events of all
nodes are counted during the start and the idle time (a member that goes offline and comes back
counts in both). ``NAME=VALUE,...`` passes numeric settings to every ``Node`` (e.g.
``heartbeat_interval=1000,peer_timeout=3600``: no rounds, no re-signing), except ``start_rate=R``:
the nodes then start one by one, R a second (the swarm grows as a deployed one does), instead of all
at once; the CPU of that phase is reported (``pace_cpu_pct``); and ``grow=B`` (with
``grow_pause=S``, default 5): the nodes start B at a time, each batch once every node started
before it lists all the others (or ``CONVERGE_TIMEOUT`` ran out) and ``S`` seconds of idle have
passed (``batches``: per batch, the swarm's size, the seconds to its full membership, the CPU
seconds, the process's file descriptors and the sockets per node, mean and max; the log adds
what each joiner cost the swarm: the counters above that moved, divided by the batch's size);
full membership is then timed from the last batch's start.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import sys
import time
from collections import Counter
from typing import Any


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def trimmed_rss_kib() -> int | None:
    """RSS after glibc's ``malloc_trim(0)`` handed the free pages it held back to the system
    (after a full collection): what the process holds alive, without what its allocator
    kept from earlier peaks (the start's messages). ``None`` where glibc is not the C library.
    The process's RSS stays lower only until the allocator needs pages again."""
    import ctypes

    trim = getattr(ctypes.CDLL(None), "malloc_trim", None)  # (the C library loaded already)
    if trim is None:
        return None
    gc.collect()
    trim(0)
    return rss_kib()


def heap_kib() -> dict[str, int] | None:
    """What the process's allocators hold, in KiB: ``alive`` (Python's blocks in use and
    glibc's bytes in use, in its heap and mapped on their own: the objects alive) and ``free``
    (free blocks and free pools Python keeps and free chunks in glibc's heap: held from
    earlier peaks, counted in RSS once touched, until given back). Between runs of the same
    code RSS moves with what the start left free; ``alive`` moves only with the calls and
    connections in flight. Read from ``sys._debugmallocstats()`` (written to the C stderr,
    taken through a temporary file) and glibc's ``mallinfo2``; ``None`` where either is
    missing."""
    import ctypes
    import re
    import tempfile

    info = getattr(ctypes.CDLL(None), "mallinfo2", None)
    if info is None or not hasattr(sys, "_debugmallocstats"):
        return None

    class MallInfo2(ctypes.Structure):
        _fields_ = [
            (name, ctypes.c_size_t)
            for name in [
                "arena",
                "ordblks",
                "smblks",
                "hblks",
                "hblkhd",
                "usmblks",
                "fsmblks",
                "uordblks",
                "fordblks",
                "keepcost",
            ]
        ]

    info.restype = MallInfo2
    sys.stderr.flush()
    with tempfile.TemporaryFile() as out:
        saved = os.dup(2)
        try:
            os.dup2(out.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        out.seek(0)
        text = out.read().decode(errors="replace")

    def stat(pattern: str) -> int:
        found = re.search(pattern + r"\s*=\s*([\d,]+)", text)
        return int(found.group(1).replace(",", "")) if found else 0

    glibc = info()
    # glibc: bytes in use in its heap, and in chunks of their own (mmap, large allocations)
    alive = stat(r"# bytes in allocated blocks") + glibc.uordblks + glibc.hblkhd
    # Python: free blocks in pools in use, and whole pools free in its arenas
    free = stat(r"# bytes in available blocks") + stat(r"unused pools \* \d+ bytes")
    free += glibc.fordblks
    return {"alive": alive // 1024, "free": free // 1024}


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def counters(nodes: list[Any]) -> dict[str, Any]:
    """What the swarm did so far (see the module documentation)."""
    out: dict[str, Any] = {}

    def add(key: str, value: int) -> None:
        out[key] = out.get(key, 0) + value

    for node in nodes:
        stats = node.statistics()
        if stats.handshakes is not None:
            add("handshakes", stats.handshakes.secure)
            add("handshakes_failed", stats.handshakes.failed)
            add("handshakes_refused", stats.handshakes.refused)
        if stats.pool is not None:
            add("connects", stats.pool.connects)
            add("opened_late", stats.pool.opened_late)
        m = node.membership
        add("verify_dials", m.verifier.dials)
        add("gossip_calls", m.messages_sent)
        add("gossip_same", m.answered_same)
        add("gossip_differ", m.answered_differ)
        add("stalls", m.stalls)
        if m._signer is not None:
            add("records_signed", m._signer.signed)
        for what, count in m.deaths.items():
            add(f"deaths_{what}", count)
        for what, count in getattr(m, "gossip_kinds", {}).items():
            add(f"gossip_{what}", count)
        for what, count in m.tree.items():
            add(f"tree_{what}", count)
        views = m.views
        if views is None or views.core is None:
            continue
        add("view_sent", views.sent)
        add("view_failed", views.failed)
        add("view_dropped", views.dropped)
        add("view_requests", views.core.requests)
        add("view_evictions", views.core.evictions)
        add("view_ignored", views.core.ignored)
        for kind, count in views.sent_kinds.items():
            add(kind, count)
        for what, count in views.deferrals.items():
            add(f"deferred_{what}" if what != "deferred" else what, count)
        for what, count in views.inline.items():
            add(f"inline_{what}", count)
    return out


#: ``gc.set_threshold`` for ``--gc tuned``: young collections every 100,000 allocations, full
#: ones rarely. N nodes in one process share one heap: with CPython's defaults a full
#: collection scans every node's objects, about 1 s at N = 200, and comes every few seconds
#: while the start allocates (see docs/scale.md, "One process, one heap").
TUNED_GC = (100_000, 50, 100)


def freeze(gc_mode: str) -> None:
    """For ``freeze``: move every object alive now out of the collector's sight
    (``gc.freeze()``), so later collections scan only what is newer. The nodes' long-lived
    state is then never scanned again; a cycle frozen here is never freed."""
    if gc_mode == "freeze":
        gc.freeze()


def count_gossip() -> None:
    """Count each node's gossip calls by kind (``Membership.gossip_kinds``): pushes of news
    and the member entries they carry, compact digests, summaries, full digests. An
    instrument of this benchmark: it wraps ``Membership._gossip_one``."""
    from synapse_p2p.membership import _service

    send = _service.Membership._gossip_one

    async def counted(self: Any, peer: Any, message: dict[str, Any], interval: float) -> None:
        kinds = self.__dict__.setdefault("gossip_kinds", {})
        if message.get("push"):
            kind = "pushes"
            kinds["push_entries"] = kinds.get("push_entries", 0) + len(message["members"])
        else:
            kind = "compact" if "compact" in message else "full"
            kind = "summary" if "summary" in message else kind
        kinds[kind] = kinds.get(kind, 0) + 1
        await send(self, peer, message, interval)

    _service.Membership._gossip_one = counted  # type: ignore[method-assign]


#: Endpoint (gossip: and kind) -> requests served, counted by :func:`count_served`.
SERVED: dict[str, int] = {}


def served_kind(endpoint: str, args: Any) -> str:
    """``endpoint``, and for gossip the kind of message: ``push`` of news, ``probe`` (an
    empty push), ``partial`` or ``compact`` digest, ``full``."""
    message = args[0] if args and isinstance(args, (list, tuple)) else None
    if endpoint != "_synapse.gossip" or not isinstance(message, dict):
        return endpoint
    if message.get("push"):
        return f"{endpoint}:{'push' if message.get('members') else 'probe'}"
    if "compact" in message:
        return f"{endpoint}:{'partial' if message.get('partial') else 'compact'}"
    return f"{endpoint}:full"


def count_served() -> None:
    """Count the requests every node serves, by :func:`served_kind` (an instrument of this
    benchmark: it wraps ``EndpointRegistry.dispatch``)."""
    from synapse_p2p.rpc import _endpoints

    dispatch = _endpoints.EndpointRegistry.dispatch

    async def counted(self: Any, request: Any, *args: Any, **kwargs: Any) -> bytes:
        kind = served_kind(request.endpoint, request.args)
        SERVED[kind] = SERVED.get(kind, 0) + 1
        return await dispatch(self, request, *args, **kwargs)

    _endpoints.EndpointRegistry.dispatch = counted  # type: ignore[method-assign]


#: Endpoint (gossip: and kind) -> calls that found no open connection, while counting.
OPENED: Counter[str] = Counter()


def count_openings() -> list[bool]:
    """Count the calls that open a connection, by :func:`served_kind` (an instrument of these
    benchmarks: it wraps ``ConnectionPool.call``). Returns the switch: counting while its
    item is True."""
    from synapse_p2p.rpc import _client

    switch = [False]
    call = _client.ConnectionPool.call

    async def counted(self: Any, host: str, port: int, endpoint: str, *args: Any, **kw: Any) -> Any:
        connection = self._connections.get((host, port))
        if switch[0] and (connection is None or connection.closed):
            OPENED[served_kind(endpoint, args[0] if args else None)] += 1
        return await call(self, host, port, endpoint, *args, **kw)

    _client.ConnectionPool.call = counted  # type: ignore[method-assign]
    return switch


def rates(before: dict[str, int], after: dict[str, int], per: float) -> dict[str, float]:
    """``(after - before) / per`` by key, the keys that moved, largest first."""
    moved = {k: (v - before.get(k, 0)) / per for k, v in after.items() if v != before.get(k, 0)}
    return {k: round(v, 3) for k, v in sorted(moved.items(), key=lambda kv: -abs(kv[1]))}


class GcClock:
    """Seconds spent in garbage collections, and how many were full (generation 2)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.full = 0
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        self.seconds += time.perf_counter() - self._started
        self.full += info.get("generation") == 2

    def take(self) -> dict[str, Any]:
        """The time and full collections since the last call."""
        out = {"gc_s": round(self.seconds, 2), "full_gcs": self.full}
        self.seconds, self.full = 0.0, 0
        return out


def run(
    mode: str,
    backend: str,
    n: int,
    idle: float,
    converge_timeout: float = 300,
    gc_mode: str = "default",
    settings: dict[str, float | int] | None = None,
    start_rate: float = 0.0,
    grow: int = 0,
    grow_pause: float = 5.0,
) -> dict[str, Any]:
    import anyio

    from synapse_p2p import Node

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    views = mode == "views"
    out: dict[str, Any] = {"mode": mode, "backend": backend, "n": n, "fd_limit": hard}
    out["gc"] = gc_mode
    out["start_rate"] = start_rate
    out["grow"] = grow
    if gc_mode in ("tuned", "freeze"):
        gc.set_threshold(*TUNED_GC)
    collections = GcClock()
    count_gossip()
    count_served()
    opening = count_openings()

    def log(*args: object) -> None:
        print(f"[{mode} {backend} N={n}]", *args, file=sys.stderr, flush=True)

    def complete_count(some: list[Node]) -> int:
        """How many of ``some`` list every other node of ``some`` (a growing swarm)."""
        ids = {node.node_id for node in some}
        want = len(some) - 1
        return sum(  # (the length first: a set per node per poll costs the swarm CPU)
            len(node.peers) >= want and set(node.peers) >= ids - {node.node_id} for node in some
        )

    def its_seq(node: Node) -> int | None:
        signer = node.membership._signer
        proof = None if signer is None else signer._proof  # (as signed last: no re-signing)
        return None if proof is None else proof.seq

    def missing(some: list[Node], most: int = 6) -> list[dict[str, Any]]:
        """Of ``some``, members some nodes lack: who, how many lack it, what a node lacking
        it holds of it (alive, dead or suspected, a candidate) and the member's own state."""
        ids = {node.node_id: node for node in some}
        lacking: Counter[str] = Counter()
        example: dict[str, Node] = {}
        for node in some:
            for node_id in ids.keys() - set(node.peers) - {node.node_id}:
                lacking[node_id] += 1
                example.setdefault(node_id, node)
        out = []
        for node_id, count in lacking.most_common(most):
            holder, member = example[node_id], ids[node_id]
            state = holder.membership.table.get(node_id)
            views = member.membership.views
            out.append(
                {
                    "member": member.name,
                    "lacked_by": count,
                    "held": None
                    if state is None
                    else {
                        "alive": state.alive,
                        "seq": state.seq,
                        "dead_seq": state.dead_seq,
                        "suspect_seq": state.suspect_seq,
                    },
                    "candidate": any(
                        c.peer.id == node_id for c in holder.membership.table.candidates.values()
                    ),
                    "its_seq": its_seq(member),
                    "its_active": None if views is None else len(views.active_ids()),
                    "its_peers": len(member.peers),
                }
            )
        return out

    def sockets(nodes: list[Node]) -> tuple[float, int]:
        counts = []
        for node in nodes:
            stats = node.statistics()
            inbound = stats.server.open_connections if stats.server else 0
            outbound = stats.pool.open_connections if stats.pool else 0
            counts.append(inbound + outbound)
        return sum(counts) / len(counts), max(counts)

    async def main() -> None:
        base = rss_kib()
        base_trimmed = trimmed_rss_kib()  # (before the nodes: what the trimmed RSS starts from)
        base_heap = heap_kib()
        kw: dict[str, Any] = {"bind": "127.0.0.1", "swarm": "bench", "partial_views": views}
        kw.update(settings or {})
        events = {"joined": 0, "offline": 0}

        def counting(node: Node) -> Node:
            for kind in events:

                async def count(_peer: Any, kind: str = kind) -> None:
                    events[kind] += 1

                node.on(f"peer.{kind}")(count)
            return node

        seed = counting(Node(name="seed", **kw))
        async with seed, anyio.create_task_group() as tg:
            nodes = [seed] + [
                counting(Node(name=f"n{i}", seeds=[f"127.0.0.1:{seed.port}"], **kw))
                for i in range(n - 1)
            ]
            pace_cpu, pace_wall = time.process_time(), time.perf_counter()
            if grow > 0:  # batches of `grow`, each once the swarm before it is complete
                out["batches"] = batches = []
                started, b_start = 1, pace_wall
                while started < n:
                    batch = nodes[started : started + grow]
                    b_cpu = time.process_time()
                    b_counts = counters(nodes[:started])
                    for node in batch:
                        tg.start_soon(node.serve)
                    while not all(node.port for node in batch):
                        await anyio.sleep(0.01)
                    started += len(batch)
                    b_start = time.perf_counter()
                    deadline = b_start + converge_timeout
                    done = complete_count(nodes[:started])
                    while done < started and time.perf_counter() < deadline:
                        await anyio.sleep(0.1 if started < 200 else 0.25)
                        done = complete_count(nodes[:started])
                    wall = time.perf_counter()
                    if done < started:
                        log(f"missing: {missing(nodes[:started])}")
                    mean_sockets, max_sockets = sockets(nodes[:started])
                    after = counters(nodes[:started])
                    per_joiner = {
                        k: round((v - b_counts.get(k, 0)) / len(batch), 1)
                        for k, v in sorted(after.items())
                        if v - b_counts.get(k, 0) >= len(batch)
                    }
                    log(f"per joiner: {per_joiner}")
                    batches.append(
                        {
                            "n": started,
                            "converge_s": round(wall - b_start, 2) if done == started else None,
                            "cpu_s": round(time.process_time() - b_cpu, 2),
                            "fds": fds(),
                            "sockets_mean_max": [round(mean_sockets, 1), max_sockets],
                        }
                    )
                    log(
                        f"{started} started; {done} complete {wall - b_start:.1f} s after the "
                        f"batch's start; CPU {time.process_time() - b_cpu:.1f} s "
                        f"(GC {collections.take()['gc_s']} s); {fds()} fds of {hard}; sockets "
                        f"per node {mean_sockets:.1f} (max {max_sockets})"
                    )
                    freeze(gc_mode)
                    if started < n:
                        await anyio.sleep(grow_pause)  # the idle swarm between batches
                out["pace_s"] = round(time.perf_counter() - pace_wall, 1)
            elif start_rate > 0:  # one node every 1/start_rate seconds, the swarm growing
                begin = anyio.current_time()
                window_cpu, window_wall = pace_cpu, pace_wall
                for i, node in enumerate(nodes[1:]):
                    await anyio.sleep_until(begin + i / start_rate)
                    tg.start_soon(node.serve)
                    if i % 50 == 49:
                        cpu, wall = time.process_time(), time.perf_counter()
                        pct = 100 * (cpu - window_cpu) / (wall - window_wall)
                        window_cpu, window_wall = cpu, wall
                        settled = max(1, i + 2 - round(5 * start_rate))  # started 5 s ago
                        log(
                            f"{i + 2} started after {wall - pace_wall:.0f} s; of those started "
                            f"5 s before, {complete_count(nodes[:settled])} of {settled} "
                            f"complete; CPU {pct:.0f} % (GC {collections.take()['gc_s']} s)"
                        )
                        freeze(gc_mode)
            else:
                for node in nodes[1:]:  # all start at once (as benchmarks/membership.py)
                    tg.start_soon(node.serve)
            while not all(node.port for node in nodes):
                await anyio.sleep(0.05)
            last = time.perf_counter()
            if grow > 0:  # from the last batch's start
                last = b_start
            if start_rate > 0:
                out["pace_s"] = round(last - pace_wall, 1)
                out["pace_cpu_pct"] = round(
                    100 * (time.process_time() - pace_cpu) / (last - pace_wall), 1
                )
                log(f"paced start over {out['pace_s']} s, CPU {out['pace_cpu_pct']} %")
            collections.take()
            freeze(gc_mode)
            log(f"all started; fds {fds()}")
            ids = {node.node_id for node in nodes}

            def complete() -> int:
                return sum(
                    len(node.peers) == n - 1 and set(node.peers) == ids - {node.node_id}
                    for node in nodes
                )

            cpu_start = time.process_time()
            deadline = last + converge_timeout
            while complete() < n and time.perf_counter() < deadline:
                await anyio.sleep(0.05 if n < 200 else 0.2)
            full = complete() == n
            out["converge_s"] = time.perf_counter() - last if full else None
            out["start_cpu_s"] = round(time.process_time() - cpu_start, 2)
            out["start"] = counters(nodes)
            out["start_gc"] = collections.take()
            out["start_events"] = dict(events)
            events.update(joined=0, offline=0)
            log(f"full membership: {out['converge_s']}; fds {fds()}")
            freeze(gc_mode)
            log(f"start: cpu {out['start_cpu_s']} s, {out['start']}")
            samples = []
            opening[0] = True
            idle_counters, idle_served = counters(nodes), dict(SERVED)
            cpu0, wall0 = time.process_time(), time.perf_counter()
            step = idle / 6
            for i in range(6):
                if i == 3:  # the second half of the idle time, past the start's leftovers
                    late = counters(nodes), dict(SERVED), dict(OPENED)
                    late_cpu, late_wall = time.process_time(), time.perf_counter()
                c0, w0 = time.process_time(), time.perf_counter()
                await anyio.sleep(step)
                cpu = 100 * (time.process_time() - c0) / (time.perf_counter() - w0)
                mean, peak = sockets(nodes)
                active = [
                    len(node.membership.views.active_ids())
                    for node in nodes
                    if node.membership.views is not None
                ]
                sample = {
                    "t": round((i + 1) * step),
                    "sockets_mean": round(mean, 1),
                    "sockets_max": peak,
                    "fds_per_node": round(fds() / n, 1),
                    "complete": complete(),
                    "cpu_pct": round(cpu, 1),
                    "active_max": max(active) if active else None,
                }
                samples.append(sample)
                log(sample)
            out["idle"] = samples
            idle_wall = time.perf_counter() - wall0
            out["idle_cpu_pct"] = round(100 * (time.process_time() - cpu0) / idle_wall, 1)
            # per node per second over the idle time: counters, and requests served by kind
            out["idle_rates"] = rates(idle_counters, counters(nodes), n * idle_wall)
            out["idle_served"] = rates(idle_served, SERVED, n * idle_wall)
            out["idle_opened"] = rates({}, OPENED, n * idle_wall)
            late_s = time.perf_counter() - late_wall
            out["late_idle"] = {
                "cpu_pct": round(100 * (time.process_time() - late_cpu) / late_s, 1),
                "rates": rates(late[0], counters(nodes), n * late_s),
                "served": rates(late[1], SERVED, n * late_s),
                "opened": rates(late[2], OPENED, n * late_s),
            }
            log(f"idle, per node per second: {out['idle_rates']}; served {out['idle_served']}")
            log(f"second half of the idle time: {out['late_idle']}")
            out["rss_per_node_kib"] = round((rss_kib() - base) / n)
            out["idle_gc"] = collections.take()
            out["idle_events"] = dict(events)
            trimmed = trimmed_rss_kib()  # (last: it collects, then trims)
            out["rss_trimmed_per_node_kib"] = (
                None
                if trimmed is None or base_trimmed is None
                else round((trimmed - base_trimmed) / n)
            )
            heap = heap_kib()  # (after the collection; trimming frees no byte in use)
            if heap is not None and base_heap is not None:
                out["heap_per_node_kib"] = {k: round((heap[k] - base_heap[k]) / n) for k in heap}
                log(f"per node: alive {out['heap_per_node_kib']['alive']} KiB, free but held "
                    f"{out['heap_per_node_kib']['free']} KiB")  # fmt: skip
            tg.cancel_scope.cancel()

    try:
        anyio.run(main, backend=backend)
    except BaseException as exc:  # report how a run died (EMFILE), whatever the group wraps
        out["error"] = f"{type(exc).__name__}: {exc}"[:300]
    return out


if __name__ == "__main__":
    mode, backend, n_text, idle_text = sys.argv[1:5]
    limit = float(sys.argv[5]) if len(sys.argv) > 5 else 300.0
    gc_mode = sys.argv[6] if len(sys.argv) > 6 else "default"
    settings: dict[str, float | int] = {}
    for item in sys.argv[7].split(",") if len(sys.argv) > 7 else []:
        name, _, value = item.partition("=")
        settings[name] = int(value) if value.lstrip("-").isdigit() else float(value)
    rate = float(settings.pop("start_rate", 0.0))
    grow = int(settings.pop("grow", 0))
    pause = float(settings.pop("grow_pause", 5.0))
    result = run(
        mode, backend, int(n_text), float(idle_text), limit, gc_mode, settings, rate, grow, pause
    )
    print(json.dumps(result), flush=True)
