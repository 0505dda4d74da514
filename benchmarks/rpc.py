"""RPC benchmark: this package (plaintext and encrypted) vs synapse-p2p 2.5.0 vs a raw
msgpack server, one run.

    python benchmarks/rpc.py [--rounds 3] [--only ours,ours-secure] [--backend trio]

Every server runs in its own process and is loaded by a client in another process, on
127.0.0.1. "raw" is a minimal length-prefixed msgpack echo server with persistent connections
on the same backend (native trio / asyncio streams, no framework), driven by equally minimal
raw clients: the practical limit. The reference runs in its own virtual environment
(.cache/ref-2.5.0, built on first use). Medians of the rounds are printed with ratios; figures
from different runs are not comparable on a shared machine, ratios within one run are.

64 concurrent callers are measured in two shapes, each compared like for like: all 64 sharing
one connection (our client multiplexes its calls over one connection; the raw client does the
same with request ids and one reader task), and one persistent connection per caller (64 of
our clients; 64 raw connections; opened before the clock starts, so the column measures calls,
not connection set-up). The reference's client opens a connection for every call, whatever
the shape; its figure stands in the shared-connection column.

"ours" calls in plaintext (2.5.0's wire), "ours, encrypted" over the secure channel (Noise
XX, ChaCha20-Poly1305 records; what our clients and nodes use by default), against the same
server. Encrypted / plaintext ratios are also measured in pairs (``_rpc_paired.py``: both
clients in one process, one server, alternating short segments, so both see the same load)
and printed per backend with the targets (sequential >= 0.85x, 64 callers >= 0.8x, 1 MiB echo
>= 0.7x), with the handshake's cost: CPU of both sides (measured here, no sockets) and
connect + handshake latency (in the client process).

A last section measures how long a pathological 4 MiB frame blocks the event loop while it is
decoded, inline versus the way the server does it.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

METRICS = [
    "seq_calls_s",
    "p50_us",
    "p99_us",
    "conc_calls_s",
    "conc_conns_calls_s",
    "big_mib_s",
    "connect_ms",
]
IMPLEMENTATIONS = ("ref", "ours", "ours-secure", "raw")
#: Encrypted / plaintext targets: (metric, label, target).
SECURE_TARGETS = (
    ("seq_calls_s", "sequential", 0.85),
    ("conc_calls_s", "64 callers, 1 connection", 0.8),
    ("conc_conns_calls_s", "64 callers, 64 connections", 0.8),
    ("big_mib_s", "1 MiB echo", 0.7),
)


def ref_python() -> Path:
    from tests.interop.refenv import build_reference_venv

    return build_reference_venv()


def run_pair(server_cmd: list[str], client_cmd: list[str]) -> dict[str, Any]:
    server = subprocess.Popen(server_cmd, stdout=subprocess.PIPE, text=True, cwd=HERE)
    try:
        assert server.stdout is not None
        port = json.loads(server.stdout.readline())["port"]
        out = subprocess.run(
            [*client_cmd, str(port)], capture_output=True, text=True, cwd=HERE, timeout=300
        )
        if out.returncode != 0:
            raise RuntimeError(out.stderr)
        result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
        return result
    finally:
        server.kill()
        server.wait()


def decode_stall() -> dict[str, float]:
    import anyio
    import msgpack

    from synapse_p2p.rpc._channel import decode_payload
    from synapse_p2p.wire import unpack_payload

    payload = msgpack.packb({"endpoint": "x", "args": [[[]] * (4 * 1024 * 1024 - 64)]})

    async def worst_gap(decode: Any) -> float:
        gaps = [0.0]
        stop = anyio.Event()

        async def ticker() -> None:
            last = time.perf_counter()
            while not stop.is_set():
                await anyio.sleep(0.001)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now

        async with anyio.create_task_group() as tg:
            tg.start_soon(ticker)
            await anyio.sleep(0.02)
            await decode()
            stop.set()
        return max(gaps) * 1000

    async def inline() -> None:
        unpack_payload(payload)

    async def offloaded() -> None:
        try:
            await decode_payload(payload)
        except Exception:
            pass  # not a valid request; only the decode time matters

    async def main() -> dict[str, float]:
        return {"inline_ms": await worst_gap(inline), "server_ms": await worst_gap(offloaded)}

    return anyio.run(main, backend="trio")


def handshake_cpu_ms(rounds: int = 3, n: int = 200) -> tuple[float, float]:
    """CPU milliseconds of one secure handshake, both sides in this process (sans-IO), between
    two identities seen before (what reconnecting to a peer costs): XX and XXpsk3."""
    from synapse_p2p import Identity
    from synapse_p2p.secure import Keyring, SecureHandshake

    client, server = Identity.generate(), Identity.generate()
    out = []
    for keyring in (Keyring(), Keyring((b"swarm secret",))):
        samples = []
        for _ in range(rounds):
            start = time.process_time()
            for _ in range(n):
                init = SecureHandshake.initiate(client, keyring)
                resp = SecureHandshake.respond(server, keyring)
                while not (init.complete and resp.complete):
                    if data := init.data_to_send():
                        resp.receive_data(data)
                    if data := resp.data_to_send():
                        init.receive_data(data)
            samples.append((time.process_time() - start) / n * 1000)
        out.append(statistics.median(samples))
    return out[0], out[1]


def aead_ms_per_mib(rounds: int = 5) -> float:
    """CPU milliseconds of one ChaCha20-Poly1305 pass (seal or open) over 1 MiB in records of
    the channel's largest size: the floor of what encryption adds to a 1 MiB transfer."""
    import os

    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    from synapse_p2p.secure import MAX_RECORD

    aead = ChaCha20Poly1305(os.urandom(32))
    record = os.urandom(MAX_RECORD - 16)
    sealed = aead.encrypt(bytes(12), record, None)
    per_mib = (1 << 20) / len(record)
    best = math.inf
    for _ in range(rounds):
        start = time.process_time()
        for _ in range(64):
            aead.encrypt(bytes(12), record, None)
            aead.decrypt(bytes(12), sealed, None)
        best = min(best, (time.process_time() - start) / 128 * per_mib * 1000)
    return best


def _configs(only: set[str], backends: list[str]) -> dict[str, tuple[list[str], list[str]]]:
    ours_py = sys.executable
    configs: dict[str, tuple[list[str], list[str]]] = {}
    if "ref" in only:
        ref_py = str(ref_python())
        configs["ref (2.5.0, asyncio)"] = (
            [ref_py, "_rpc_servers.py", "ref"],
            [ref_py, "_rpc_clients.py", "ref", "asyncio"],
        )
    for backend in backends:
        server = [ours_py, "_rpc_servers.py", "ours", backend]
        if "ours" in only:
            configs[f"ours ({backend})"] = (server, [ours_py, "_rpc_clients.py", "ours", backend])
        if "ours-secure" in only:
            configs[f"ours, encrypted ({backend})"] = (
                server,
                [ours_py, "_rpc_clients.py", "ours-secure", backend],
            )
        if "raw" in only:
            configs[f"raw ({backend})"] = (
                [ours_py, "_rpc_servers.py", "raw", backend],
                [ours_py, "_rpc_clients.py", "raw", backend],
            )
    return configs


def _number(value: float, fmt: str = ",.0f") -> str:
    return "n/a" if math.isnan(value) else format(value, fmt)


def _ratio(a: dict[str, float] | None, b: dict[str, float] | None, metric: str) -> str:
    if a is None or b is None or math.isnan(a[metric]) or math.isnan(b[metric]):
        return "n/a"
    return f"{a[metric] / b[metric]:.2f}x"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--only",
        default=",".join(IMPLEMENTATIONS),
        help=f"comma-separated subset of {', '.join(IMPLEMENTATIONS)} (default: all)",
    )
    parser.add_argument("--backend", choices=["trio", "asyncio"], action="append")
    args = parser.parse_args()
    only = {name.strip() for name in args.only.split(",") if name.strip()}
    if not only <= set(IMPLEMENTATIONS):
        parser.error(f"--only takes {', '.join(IMPLEMENTATIONS)}")
    backends: list[str] = args.backend or ["trio", "asyncio"]
    configs = _configs(only, backends)
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in configs}
    paired: dict[str, list[dict[str, float]]] = {backend: [] for backend in backends}
    for r in range(args.rounds):
        for name, (server, client) in configs.items():
            samples[name].append(run_pair(server, client))
            print(f"round {r + 1}/{args.rounds}: {name} done", file=sys.stderr, flush=True)
        if {"ours", "ours-secure"} <= only:
            for backend in backends:
                server = [sys.executable, "_rpc_servers.py", "ours", backend]
                client = [sys.executable, "_rpc_paired.py", backend]
                paired[backend].append(run_pair(server, client)["ratios"])
                print(f"round {r + 1}/{args.rounds}: paired ({backend}) done", file=sys.stderr)
    med = {
        name: {m: statistics.median(s.get(m, math.nan) for s in runs) for m in METRICS}
        for name, runs in samples.items()
    }
    print(f"\nRPC, server and client in separate processes, median of {args.rounds} rounds\n")
    print(
        "| implementation | sequential calls/s | p50 us | p99 us "
        "| 64 callers, 1 shared connection, calls/s | 64 callers, 64 connections, calls/s "
        "| 1 MiB echo MiB/s | connect ms |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, m in med.items():
        print(
            f"| {name} | {m['seq_calls_s']:,.0f} | {m['p50_us']:,.0f} | {m['p99_us']:,.0f} "
            f"| {m['conc_calls_s']:,.0f} | {_number(m['conc_conns_calls_s'])} "
            f"| {m['big_mib_s']:,.0f} | {_number(m['connect_ms'], '.2f')} |"
        )
    ref = med.get("ref (2.5.0, asyncio)")
    if ref is not None or "raw" in only:
        print(
            "\n| backend | seq vs ref | seq vs raw | 64-conc vs ref "
            "| 64-conc vs raw, 1 shared connection | 64-conc vs raw, 64 connections "
            "| 1 MiB vs raw |"
        )
        print("|---|---|---|---|---|---|---|")
        for backend in backends:
            o, raw = med.get(f"ours ({backend})"), med.get(f"raw ({backend})")
            print(
                f"| {backend} | {_ratio(o, ref, 'seq_calls_s')} "
                f"| {_ratio(o, raw, 'seq_calls_s')} "
                f"| {_ratio(o, ref, 'conc_calls_s')} "
                f"| {_ratio(o, raw, 'conc_calls_s')} "
                f"| {_ratio(o, raw, 'conc_conns_calls_s')} "
                f"| {_ratio(o, raw, 'big_mib_s')} |"
            )
    if {"ours", "ours-secure"} <= only:
        print(
            "\nEncrypted / plaintext (target in brackets): paired, i.e. both clients in one "
            "process against one server, alternating short segments (median of the segments, "
            f"then of {args.rounds} rounds); in parentheses, the ratio of the medians above\n"
        )
        print("| backend | " + " | ".join(f"{label} [{t}x]" for _, label, t in SECURE_TARGETS))
        print("|---" * (len(SECURE_TARGETS) + 1) + "|")
        for backend in backends:
            plain, sec = med[f"ours ({backend})"], med[f"ours, encrypted ({backend})"]
            cells = [
                f"{statistics.median(run[metric] for run in paired[backend]):.2f}x "
                f"({_ratio(sec, plain, metric)})"
                for metric, _, _ in SECURE_TARGETS
            ]
            print(f"| {backend} | " + " | ".join(cells) + " |")
        for backend in backends:
            plain, sec = med[f"ours ({backend})"], med[f"ours, encrypted ({backend})"]
            print(
                f"[{backend}] connect: plaintext {plain['connect_ms']:.2f} ms, "
                f"encrypted (connect + handshake) {sec['connect_ms']:.2f} ms"
            )
        aead = aead_ms_per_mib()
        print(
            f"\n1 MiB echo ceiling: ChaCha20-Poly1305 costs {aead:.2f} ms of CPU per MiB per "
            f"pass ({1 / aead * 1000 / 1024:.1f} GiB/s, warm caches); an echo makes 4 passes "
            "(seal and open, each way)."
        )
        for backend in backends:
            echo_ms = 1000 / med[f"ours ({backend})"]["big_mib_s"]
            print(
                f"[{backend}] plaintext echo {echo_ms:.2f} ms: the AEAD alone leaves room for "
                f"{echo_ms / (echo_ms + 2 * aead):.2f}x (each side's seal fully overlapped with "
                f"the other's open) down to {echo_ms / (echo_ms + 4 * aead):.2f}x (no overlap)"
            )
        xx, psk = handshake_cpu_ms()
        print(
            f"Handshake CPU, both sides: XX {xx:.2f} ms, XXpsk3 {psk:.2f} ms "
            "(identities seen before; benchmarks/secure.py has first contact)"
        )
    if "ours" in only:
        stall = decode_stall()
        print("\nEvent-loop stall while decoding a 4 MiB frame of 4M empty arrays (trio):")
        print(
            f"  decoded inline: {stall['inline_ms']:.0f} ms; as the server does it: "
            f"{stall['server_ms']:.0f} ms"
        )


if __name__ == "__main__":
    main()
