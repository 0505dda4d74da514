"""The child processes of ``benchmarks/dashboard.py``; run by it, not by hand.

    python _dashboard_children.py swarm --first F --count C [--seed PORT] [--asker] ...
    python _dashboard_children.py simulate --count N ...

``swarm``: ``--count`` answering nodes on 127.0.0.1 (named from ``--first``), joined through
``--seed`` (or the first of them, the swarm's seed), and the asker with ``--asker``.
``simulate``: the dashboard's own server (and so its page) over a simulated swarm of
``--count`` peers, with no node to feed it but this process: each peer heartbeats every 5 s
and answers every ask with an ACK and a reply, spread over a second. It measures the page
at a scale the machine could not run as real nodes.

Each prints a JSON line when ready (``swarm``: the seed port; ``simulate``: the page's URL),
then a status line every second; SIGUSR1 starts the asks (``--asks-per-second`` for
``--seconds``); each ends after ``--lifetime`` seconds at the latest.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import signal
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio

#: Conversations each answering node keeps (its log would otherwise hold every ask of the run
#: in each of the N nodes); the asker keeps them all, to count what reached it.
NODE_CONVERSATIONS = 20


def rss_kib(pid: int) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+) kB", text)
    return int(match.group(1)) if match else 0


async def asking(args: argparse.Namespace, ask: Callable[[int], Any]) -> None:
    """``await ask(n)`` at ``--asks-per-second`` for ``--seconds``, on a fixed schedule."""
    started = anyio.current_time()
    for count in range(1, math.ceil(args.asks_per_second * args.seconds) + 1):
        await ask(count)
        await anyio.sleep_until(started + count / args.asks_per_second)


async def report(status: Callable[[], dict[str, Any]]) -> None:
    while True:
        print(json.dumps({**status(), "rss": rss_kib(os.getpid())}), flush=True)
        await anyio.sleep(1)


async def swarm(args: argparse.Namespace) -> None:
    """``--count`` answering nodes, and the asker with ``--asker``."""
    from synapse_p2p import Node

    options: dict[str, Any] = {"swarm": "bench", "bind": "127.0.0.1", "heartbeat_interval": 2}
    if args.seed:
        options["seeds"] = [f"127.0.0.1:{args.seed}"]
    nodes: list[Node] = []
    asker: Node | None = None
    asks: list[str] = []
    answered = [0]  # ask handlers run: each ACKed before and replies after

    def member(i: int) -> Node:
        name = f"n{i:03d}"
        node = Node(name=name, role="worker", capabilities=["bench"],
                    conversation_max_conversations=NODE_CONVERSATIONS, **options)  # fmt: skip

        @node.ask
        async def answer(task: str, context: dict[str, Any]) -> str:
            answered[0] += 1
            return f"{name} ok"

        return node

    def status() -> dict[str, Any]:
        known = [len(n.peers) for n in nodes + ([asker] if asker else [])]
        line: dict[str, Any] = {"known": min(known), "answered": answered[0]}
        if asker is not None:
            line["asks"] = len(asks)
            line["stored"] = sum(len(asker.conversation(cid)) for cid in asks)
        return line

    async def ask(count: int) -> None:
        assert asker is not None
        sent = await asker.broadcast("synapse.ask", f"job {count}", context={"n": count})
        asks.append(sent.nonce)

    with anyio.move_on_after(args.lifetime), anyio.open_signal_receiver(signal.SIGUSR1) as go:
        async with anyio.create_task_group() as tg:
            for i in range(args.first, args.first + args.count):
                nodes.append(member(i))
                await tg.start(nodes[-1].serve)
                options.setdefault("seeds", [f"127.0.0.1:{nodes[0].port}"])
            if args.asker:
                asker = Node(name="asker", role="asker", **options)
                await tg.start(asker.serve)
            print(json.dumps({"seed": nodes[0].port}), flush=True)
            tg.start_soon(report, status)
            async for _ in go:
                if asker is not None:
                    tg.start_soon(asking, args, ask)
                break
            await anyio.sleep_forever()


async def simulate(args: argparse.Namespace) -> None:
    """The dashboard's server over ``--count`` simulated peers (see the module docstring)."""
    from anyio.abc import SocketAttribute

    from synapse_p2p import Node
    from synapse_p2p.dashboard._server import _Server
    from synapse_p2p.types import ConversationEvent, Peer

    observer = Node(name="dashboard", swarm="bench", bind="127.0.0.1")  # never started
    server = _Server(observer, bind="127.0.0.1", allow_ask=False, token=None, interval=0.2,
                     max_clients=4)  # fmt: skip
    peers = [Peer(id=f"{i + 1:064x}", address="127.0.0.1", port=20000 + i, swarm="bench",
                  name=f"n{i:03d}", capabilities=["bench"]) for i in range(args.count)]  # fmt: skip
    asker = Peer(id="a" * 64, address="127.0.0.1", port=19999, swarm="bench", name="asker")
    counts = {"asks": 0, "stored": 0, "answered": 0}
    serial = [0]

    def feed(cid: str, kind: str, peer: Peer, payload: dict[str, Any]) -> None:
        serial[0] += 1
        event = ConversationEvent(cid, f"e{serial[0]}", kind, peer, payload, created_at=time.time())
        server.feed("conversation.event", event)
        counts["stored"] += 1

    async def heartbeats() -> None:  # each peer every 5 s, a tenth of them each 0.5 s
        for beat in range(10**9):
            await anyio.sleep(0.5)
            for peer in peers[beat % 10 :: 10] + ([asker] if beat % 10 == 0 else []):
                server.feed("peer.heartbeat", replace(peer, last_seen=time.time()))

    async def answers(cid: str) -> None:  # ACKs over 0.5 s, then replies over 0.5 s
        for kind, payload in (("ack", {}), ("reply", {"result": "ok"})):
            for step in range(5):
                await anyio.sleep(0.1)
                for peer in peers[step::5]:
                    feed(cid, kind, peer, payload)
                    counts["answered"] += kind == "reply"

    with anyio.move_on_after(args.lifetime), anyio.open_signal_receiver(signal.SIGUSR1) as go:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        async with listener, anyio.create_task_group() as tg:

            async def ask(count: int) -> None:
                cid = f"ask-{count:06d}"
                feed(cid, "message", asker, {"endpoint": "synapse.ask", "args": [f"job {count}"],
                                             "kwargs": {}})  # fmt: skip
                counts["asks"] += 1
                tg.start_soon(answers, cid)

            for peer in [asker, *peers]:
                server.feed("peer.joined", peer)
                server.state.peer_info(peer.id, {"role": "worker"})
            tg.start_soon(server.publish)
            tg.start_soon(listener.serve, server.handle)
            tg.start_soon(heartbeats)
            port = listener.extra(SocketAttribute.local_port)
            print(f"dashboard of a simulated swarm: http://127.0.0.1:{port}/", flush=True)
            tg.start_soon(report, lambda: {"known": len(peers) + 1, **counts})
            async for _ in go:
                tg.start_soon(asking, args, ask)
                break
            await anyio.sleep_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["swarm", "simulate"])
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--asker", action="store_true")
    parser.add_argument("--asks-per-second", type=float, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--lifetime", type=float, required=True)
    args = parser.parse_args()
    anyio.run(swarm if args.mode == "swarm" else simulate, args)


if __name__ == "__main__":
    main()
