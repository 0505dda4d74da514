"""Test helpers: raw frames over real loopback sockets."""

from __future__ import annotations

import socket
import struct
from typing import Any, TypedDict

import anyio
import msgpack
from anyio.abc import SocketStream


class NodeTimings(TypedDict, total=False):
    """Membership and call timings of a test's nodes, passed as ``Node(..., **timings)``."""

    heartbeat_interval: float
    peer_timeout: float
    call_timeout: float


class NodeSettings(NodeTimings, total=False):
    """Timings plus where a test's nodes live: ``Node(..., **settings)``."""

    swarm: str
    bind: str


def request_frame(endpoint: str, *args: Any, id: str = "r1", **kwargs: Any) -> bytes:
    payload: bytes = msgpack.packb(
        {"endpoint": endpoint, "id": id, "args": list(args), "kwargs": kwargs, "type": "request"},
        use_bin_type=True,
    )
    return struct.pack("!I", len(payload)) + payload


def frame(payload: bytes) -> bytes:
    return struct.pack("!I", len(payload)) + payload


async def read_frame(stream: SocketStream) -> dict[str, Any] | None:
    """Read one response frame; None at end of stream."""
    buf = b""
    try:
        while len(buf) < 4:
            buf += await stream.receive(4 - len(buf))
        (size,) = struct.unpack("!I", buf)
        body = b""
        while len(body) < size:
            body += await stream.receive(size - len(body))
    except (anyio.EndOfStream, anyio.BrokenResourceError):
        return None
    result: dict[str, Any] = msgpack.unpackb(body, raw=False)
    return result


async def wait_closed(stream: SocketStream) -> None:
    """Wait until the server closes the connection (reading and discarding)."""
    try:
        while True:
            await stream.receive()
    except (anyio.EndOfStream, anyio.BrokenResourceError):
        return


def ipv6_loopback_available() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False
