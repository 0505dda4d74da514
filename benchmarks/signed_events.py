"""Signed conversation events: what signing and checking cost, one run, one process.

    python benchmarks/signed_events.py [--nodes 30] [--rounds 20] [--transport tcp|memory]

Prints:

* signing and checking one event (the canonical encoding, Ed25519, the checks of
  :class:`~synapse_p2p.conversations._signing.EventTrust`), microseconds;
* on each backend, a swarm of ``--nodes`` nodes in this one process (so every node's checking
  shares one core), unsigned (unverified nodes, whose events carry no signature, as a
  synapse-p2p 2.5.0 swarm's) and signed (nodes with identities), the latter twice: as shipped
  (the memo of valid signatures is shared by the nodes of a process, and holds what they sign,
  so nodes of one process do not verify each other) and with that memo off (every node
  verifies every event itself, as nodes in separate processes do, all on this one core): "ask
  to all replies" (one broadcast ``synapse.ask`` until every other node's reply is in) and
  "one event to all N" (one event until every other node stored it; measured once the swarm
  is quiet), medians of ``--rounds``, with signed/unsigned ratios.

Figures from different runs are not comparable on a shared machine; ratios within one run are.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import replace
from typing import Any, Literal

import anyio

from synapse_p2p import ConversationEvent, Identity, Node
from synapse_p2p._config import NodeConfig
from synapse_p2p._seams import LocalNode
from synapse_p2p.conversations import _signing
from synapse_p2p.conversations._signing import EventTrust
from synapse_p2p.secure import SecurityPolicy
from synapse_p2p.testing import open_swarm

Transport = Literal["tcp", "memory"]


def per_event(n: int = 2000) -> tuple[float, float, float]:
    """Microseconds to sign one event, to check one never seen, and to check one seen."""
    me = Identity.generate()
    config = NodeConfig.build()
    signer = EventTrust(config, LocalNode(me.node_id, identity=me), SecurityPolicy())
    checker = EventTrust(config, LocalNode("x" * 64), SecurityPolicy())
    record = LocalNode(me.node_id, name="bench", address="127.0.0.1", port=7000).record(time.time())
    result = {"answer": "looks fine", "score": 0.9, "notes": ["a", "b"]}
    events = [
        ConversationEvent(
            "c" * 36,
            os.urandom(32).hex(),
            "reply",
            record,
            {"result": result},
            parent_id="c" * 36,
            created_at=time.time(),
        )
        for _ in range(n)
    ]
    start = time.perf_counter()
    signed = [signer.sign(e) for e in events]
    sign_us = (time.perf_counter() - start) / n * 1e6
    wire = [replace(e, verified=False) for e in signed]
    _signing.CHECKED = _signing.CheckedSignatures()  # as if they were signed in another process
    start = time.perf_counter()
    for e in wire:
        checker.check(e)
    check_us = (time.perf_counter() - start) / n * 1e6
    start = time.perf_counter()
    for e in wire:
        checker.check(e)
    again_us = (time.perf_counter() - start) / n * 1e6
    return sign_us, check_us, again_us


def _options(signed: bool) -> Any:
    def configure(i: int) -> dict[str, Any]:
        options: dict[str, Any] = {"name": f"n{i}", "heartbeat_interval": 5.0}
        if not signed:
            options["node_id"] = os.urandom(32).hex()  # no key: an unverified node
        return options

    return configure


class Bench:
    """One swarm: an asker and ``n - 1`` nodes that answer asks and count events."""

    def __init__(self, nodes: list[Node]) -> None:
        self.nodes = nodes
        self.asker, *self.others = nodes
        self.counts: dict[str, int] = {}
        self.done = anyio.Event()
        for node in self.others:
            self._arm(node)

    def _arm(self, node: Node) -> None:
        @node.ask
        async def handle(task: str, context: dict[str, Any]) -> str:
            return "ok"

        @node.on("conversation.bench")
        async def seen(event: ConversationEvent) -> None:
            self.counts[event.event_id] = self.counts.get(event.event_id, 0) + 1
            if self.counts[event.event_id] == len(self.others):
                self.done.set()

    async def ask(self) -> float:
        """Milliseconds from a broadcast ask to every reply (then waits for a quiet swarm)."""
        start = time.perf_counter()
        b = await self.asker.broadcast("synapse.ask", "bench", context={})
        got = 0
        with anyio.fail_after(30):
            async for _reply in self.asker.iter_replies(b, timeout=30):
                got += 1
                if got == len(self.others):
                    break
        took = (time.perf_counter() - start) * 1000
        everyone = 1 + 2 * len(self.others)  # the message, every ACK and reply, on every node
        with anyio.fail_after(60):
            while any(len(node.conversation(b.nonce)) < everyone for node in self.nodes):
                await anyio.sleep(0.01)
        await anyio.sleep(0.05)  # what the last events set off (handlers, senders) settles
        return took

    async def one_event(self) -> float:
        """Milliseconds from one event to its arrival on every other node."""
        self.done = anyio.Event()
        start = time.perf_counter()
        await self.asker.emit_conversation_event("bench", "bench", {})
        with anyio.fail_after(30):
            await self.done.wait()
        return (time.perf_counter() - start) * 1000


VARIANTS = ("unsigned", "signed", "signed, every node verifies")


async def swarm_round_trips(
    n: int, rounds: int, transport: Transport
) -> dict[str, tuple[float, float]]:
    """Median milliseconds per variant: ask to all replies, one event to all N. The variants
    take turns within each round, so a load change on the machine hits them alike."""
    memo = _signing.CHECKED.capacity
    samples: dict[str, tuple[list[float], list[float]]] = {v: ([], []) for v in VARIANTS}
    async with (
        open_swarm(n, transport=transport, configure=_options(False), swarm="u") as unsigned,
        open_swarm(n, transport=transport, configure=_options(True), swarm="s") as signed,
    ):
        benches = {"unsigned": Bench(unsigned.nodes), "signed": Bench(signed.nodes)}
        try:
            for i in range(rounds + 1):  # the first round warms connections up
                for variant in VARIANTS:
                    bench = benches["unsigned" if variant == "unsigned" else "signed"]
                    _signing.CHECKED = _signing.CheckedSignatures(
                        0 if variant == "signed, every node verifies" else memo
                    )
                    ask, one = await bench.ask(), await bench.one_event()
                    if i:
                        samples[variant][0].append(ask)
                        samples[variant][1].append(one)
        finally:
            _signing.CHECKED = _signing.CheckedSignatures(memo)
        assert all(e.verified for e in signed.nodes[1].conversation("bench"))
    return {
        v: (statistics.median(asks), statistics.median(ones)) for v, (asks, ones) in samples.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--transport", choices=["tcp", "memory"], default="tcp")
    args = parser.parse_args()

    sign_us, check_us, again_us = per_event()
    print(
        f"per event: sign {sign_us:.1f} us, check {check_us:.1f} us "
        f"(seen before: {again_us:.1f} us)"
    )
    for backend in ("trio", "asyncio"):
        results = anyio.run(
            swarm_round_trips, args.nodes, args.rounds, args.transport, backend=backend
        )
        ask0, one0 = results["unsigned"]
        print(
            f"[{backend}] N={args.nodes} {args.transport}, unsigned: ask to all replies "
            f"{ask0:.1f} ms, one event to all N {one0:.1f} ms"
        )
        for label in VARIANTS[1:]:
            ask1, one1 = results[label]
            print(
                f"[{backend}] {label}: ask to all replies {ask1:.1f} ms "
                f"(ratio {ask1 / ask0:.2f}), one event to all N {one1:.1f} ms "
                f"(ratio {one1 / one0:.2f})"
            )


if __name__ == "__main__":
    main()
