"""Secure channel micro-benchmark, one run, one process.

    python benchmarks/secure.py [--mib 64] [--rounds 3]

Prints:

* handshake cost: CPU time of one full handshake with both sides in this process (sans-IO,
  no sockets), and connect + handshake latency over loopback TCP on each backend;
* Ed25519 sign and verify per event (a 300-byte message), microseconds;
* ChaCha20-Poly1305 throughput on full records (the ceiling of any secure transfer);
* throughput of a loopback TCP stream, plaintext vs secure, on each backend: one-way bulk
  (1 MiB sends) and small-message ping-pong (1 KiB), with secure/plain ratios.

Medians of the rounds. Figures from different runs are not comparable on a shared machine;
ratios within one run are.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from anyio.abc import ByteStream, SocketAttribute

from synapse_p2p import Identity
from synapse_p2p.identity import DOMAIN_EVENT, verify
from synapse_p2p.secure import Keyring, SecureHandshake, secure_accept, secure_connect
from synapse_p2p.transport import TcpTransport

SERVER, CLIENT = Identity.generate(), Identity.generate()
CHUNK = 1024 * 1024
SMALL = 1024
PINGS = 2000


def handshake_cpu(rounds: int, keyring: Keyring, *, fresh: bool) -> float:
    """Milliseconds of CPU for one handshake, both sides. ``fresh``: each handshake between
    identities never seen before (static keys made and signed, signatures verified); otherwise
    a reconnection between the same two identities (those results are cached)."""
    samples = []
    n = 200
    primary = Keyring(keyring.secrets[:1])
    for _ in range(rounds):
        if fresh:
            pairs = [(Identity.generate(), Identity.generate()) for _ in range(n)]
        else:
            pairs = [(CLIENT, SERVER)] * n
        start = time.process_time()
        for client, server in pairs:
            init = SecureHandshake.initiate(client, primary)
            resp = SecureHandshake.respond(server, keyring)
            while not (init.complete and resp.complete):
                data = init.data_to_send()
                if data:
                    resp.receive_data(data)
                data = resp.data_to_send()
                if data:
                    init.receive_data(data)
        samples.append((time.process_time() - start) / n * 1000)
    return statistics.median(samples)


def signing(rounds: int) -> tuple[float, float]:
    message = os.urandom(300)
    n = 2000
    sign, check = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(n):
            sig = CLIENT.sign(DOMAIN_EVENT, message)
        sign.append((time.perf_counter() - start) / n * 1e6)
        start = time.perf_counter()
        for _ in range(n):
            assert verify(CLIENT.public_key, DOMAIN_EVENT, message, sig)
        check.append((time.perf_counter() - start) / n * 1e6)
    return statistics.median(sign), statistics.median(check)


def aead_throughput(rounds: int) -> tuple[float, float]:
    """GiB/s of sealing and of opening full records (65,519 bytes of plaintext)."""
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    aead = ChaCha20Poly1305(os.urandom(32))
    record = os.urandom(65519)
    sealed = aead.encrypt(bytes(12), record, None)
    seal, open_ = [], []
    for _ in range(rounds):
        start = time.process_time()
        for _ in range(200):
            aead.encrypt(bytes(12), record, None)
        seal.append(200 * len(record) / (time.process_time() - start) / 2**30)
        start = time.process_time()
        for _ in range(200):
            aead.decrypt(bytes(12), sealed, None)
        open_.append(200 * len(record) / (time.process_time() - start) / 2**30)
    return max(seal), max(open_)


async def _pair(secure: bool) -> tuple[ByteStream, ByteStream, Callable[[], Awaitable[None]]]:
    """A connected (client, server) pair over loopback TCP."""
    transport = TcpTransport()
    (listener,) = await transport.listen("127.0.0.1", 0)
    port = int(listener.extra(SocketAttribute.local_port))
    accepted: list[ByteStream] = []

    async def accept() -> None:
        stream = await listener.accept()  # type: ignore[attr-defined]
        if secure:
            stream, _ = await secure_accept(stream, SERVER)
        accepted.append(stream)

    async with anyio.create_task_group() as tg:
        tg.start_soon(accept)
        client = await transport.connect("127.0.0.1", port, timeout=5)
        if secure:
            client, _ = await secure_connect(client, CLIENT)
    server = accepted[0]

    async def close() -> None:
        await client.aclose()
        await server.aclose()
        await listener.aclose()

    return client, server, close


async def bulk(secure: bool, mib: int) -> float:
    """MiB/s sent one way."""
    client, server, close = await _pair(secure)
    payload = os.urandom(CHUNK)
    total = mib * CHUNK

    async def drain() -> None:
        got = 0
        while got < total:
            got += len(await server.receive())

    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        tg.start_soon(drain)
        for _ in range(mib):
            await client.send(payload)
    elapsed = time.perf_counter() - start
    await close()
    return mib / elapsed


async def pingpong(secure: bool) -> float:
    """Round trips per second of 1 KiB messages."""
    client, server, close = await _pair(secure)
    message = os.urandom(SMALL)

    async def echo() -> None:
        for _ in range(PINGS):
            got = b""
            while len(got) < SMALL:
                got += await server.receive()
            await server.send(got)

    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        tg.start_soon(echo)
        for _ in range(PINGS):
            await client.send(message)
            got = b""
            while len(got) < SMALL:
                got += await client.receive()
    elapsed = time.perf_counter() - start
    await close()
    return PINGS / elapsed


async def connect_latency(secure: bool) -> float:
    """Milliseconds from connect() to a usable stream (both sides in this process)."""
    samples = []
    for _ in range(50):
        start = time.perf_counter()
        _, _, close = await _pair(secure)
        samples.append((time.perf_counter() - start) * 1000)
        await close()
    return statistics.median(samples)


def run_backend(backend: str, mib: int, rounds: int) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, fn in (("bulk", lambda s: bulk(s, mib)), ("ping", pingpong)):
            plain = statistics.median([await fn(False) for _ in range(rounds)])
            sec = statistics.median([await fn(True) for _ in range(rounds)])
            out[name] = (plain, sec)
        out["connect"] = (await connect_latency(False), await connect_latency(True))
        return out

    return anyio.run(main, backend=backend)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mib", type=int, default=64, help="MiB per bulk round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    print("handshake CPU, both sides in one process (first contact / reconnection):")
    ring = Keyring((b"old0", b"old1", b"old2", b"s"))
    for label, keyring in (
        ("XX", Keyring()),
        ("XXpsk3", Keyring((b"s",))),
        ("XXpsk3, 4th of 4 keys", ring),
    ):
        first = handshake_cpu(args.rounds, keyring, fresh=True)
        again = handshake_cpu(args.rounds, keyring, fresh=False)
        print(f"  {label:<24}{first:7.3f} ms / {again:7.3f} ms")
    sign_us, verify_us = signing(args.rounds)
    print(f"Ed25519 per event: sign {sign_us:.1f} us, verify {verify_us:.1f} us")
    seal, open_ = aead_throughput(args.rounds)
    print(f"ChaCha20-Poly1305, full records: seal {seal:.2f} GiB/s, open {open_:.2f} GiB/s")
    for backend in ("trio", "asyncio"):
        result = run_backend(backend, args.mib, args.rounds)
        plain, sec = result["bulk"]
        print(
            f"[{backend}] bulk 1 MiB sends: plain {plain:8.1f} MiB/s, secure {sec:8.1f} MiB/s,"
            f" ratio {sec / plain:.2f}"
        )
        plain, sec = result["ping"]
        print(
            f"[{backend}] 1 KiB ping-pong:  plain {plain:8.0f} rt/s,  secure {sec:8.0f} rt/s, "
            f" ratio {sec / plain:.2f}"
        )
        plain, sec = result["connect"]
        print(
            f"[{backend}] connect (+handshake) over loopback: plain {plain:.2f} ms, "
            f"secure {sec:.2f} ms"
        )


if __name__ == "__main__":
    main()
