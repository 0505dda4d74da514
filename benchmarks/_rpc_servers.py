"""Servers for benchmarks/rpc.py, one per process. Prints {"port": N} when ready.

python _rpc_servers.py ours trio|asyncio    synapse-p2p (this package)
python _rpc_servers.py raw trio|asyncio     minimal msgpack-over-TCP echo, persistent
python _rpc_servers.py ref                  synapse-p2p 2.5.0 (run with its interpreter)
"""

from __future__ import annotations

import json
import struct
import sys
from typing import Any

HEADER = struct.Struct("!I")


def ready(port: int) -> None:
    print(json.dumps({"port": port}), flush=True)


def respond(payload: bytes) -> bytes:
    import msgpack

    request = msgpack.unpackb(payload, raw=False)
    args = request.get("args") or [None]
    body: bytes = msgpack.packb(
        {
            "id": request.get("id", ""),
            "ok": True,
            "result": args[0],
            "error": None,
            "type": "response",
        },
        use_bin_type=True,
    )
    return HEADER.pack(len(body)) + body


def raw_trio() -> None:
    import trio

    async def handler(stream: trio.SocketStream) -> None:
        buf = bytearray()
        try:
            while True:
                data = await stream.receive_some(262144)
                if not data:
                    return
                buf += data
                out = []
                while len(buf) >= 4:
                    (size,) = HEADER.unpack_from(buf)
                    if len(buf) < 4 + size:
                        break
                    out.append(respond(bytes(buf[4 : 4 + size])))
                    del buf[: 4 + size]
                if out:
                    await stream.send_all(b"".join(out))
        except trio.BrokenResourceError:
            return

    async def main() -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        ready(listeners[0].socket.getsockname()[1])
        await trio.serve_listeners(handler, listeners)

    trio.run(main)


def raw_asyncio() -> None:
    import asyncio

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                header = await reader.readexactly(4)
                (size,) = HEADER.unpack(header)
                writer.write(respond(await reader.readexactly(size)))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        ready(server.sockets[0].getsockname()[1])
        await server.serve_forever()

    asyncio.run(main())


def ours(backend: str) -> None:
    import anyio

    from synapse_p2p import Node

    node = Node(bind="127.0.0.1", name="bench")

    @node.endpoint
    async def echo(value: object) -> object:
        return value

    async def main() -> None:
        async with node:
            ready(node.port)
            await anyio.sleep_forever()

    anyio.run(main, backend=backend)


def ref() -> None:
    import asyncio
    import importlib

    # synapse-p2p 2.5.0's package (this runs in the reference's interpreter): its API is not
    # this tree's, so it is imported untyped rather than checked against our annotations.
    Node: Any = importlib.import_module("synapse_p2p").Node

    async def main() -> None:
        node = Node(bind="127.0.0.1", name="bench")

        @node.endpoint("echo")
        async def echo(value):  # type: ignore[no-untyped-def]
            return value

        await node.start()
        ready(node.port)
        await asyncio.Event().wait()

    asyncio.run(main())


if __name__ == "__main__":
    impl = sys.argv[1]
    if impl == "ref":
        ref()
    elif impl == "ours":
        ours(sys.argv[2])
    elif sys.argv[2] == "trio":
        raw_trio()
    else:
        raw_asyncio()
