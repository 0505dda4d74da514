"""Property tests against a live node: whatever bytes arrive, the node answers clearly or
closes, and keeps serving ``_synapse.ping``."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest
from anyio.from_thread import start_blocking_portal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from synapse_p2p import Node

PING = msgpack.packb({"endpoint": "_synapse.ping", "id": "p", "args": [], "kwargs": {}})


@pytest.fixture(scope="module", params=["trio", "asyncio"])
def live_port(request: pytest.FixtureRequest) -> Iterator[int]:
    with start_blocking_portal(backend=request.param) as portal:
        node = Node(bind="127.0.0.1", read_timeout=0.5, idle_timeout=5)
        cm = portal.wrap_async_context_manager(node)
        with cm:
            yield node.port


def exchange(port: int, data: bytes) -> list[dict[str, Any]]:
    """Send ``data``, half-close, collect responses until the node closes (bounded)."""
    out: list[dict[str, Any]] = []
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:  # the node may close first (e.g. oversize header)
            pass
        buf = b""
        try:
            while chunk := sock.recv(65536):
                buf += chunk
        except ConnectionResetError:
            pass
    while len(buf) >= 4:
        (size,) = struct.unpack("!I", buf[:4])
        if len(buf) < 4 + size:
            break
        out.append(msgpack.unpackb(buf[4 : 4 + size]))
        buf = buf[4 + size :]
    return out


def assert_alive(port: int) -> None:
    [response] = exchange(port, struct.pack("!I", len(PING)) + PING)
    assert response["result"] == "pong"


def valid_msgpack() -> st.SearchStrategy[bytes]:
    ints = st.integers(-(2**63), 2**64 - 1)
    leaves = st.one_of(st.none(), ints, st.text(max_size=5), st.binary(max_size=5))
    tree = st.recursive(
        leaves,
        lambda c: (
            st.lists(c, max_size=3)
            | st.dictionaries(st.one_of(st.text(max_size=3), ints), c, max_size=3)
        ),
        max_leaves=8,
    )
    return tree.map(lambda v: msgpack.packb(v, strict_types=False))


fuzz = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@fuzz
@given(st.binary(max_size=64))
def test_garbage_bytes(live_port: int, data: bytes) -> None:
    for response in exchange(live_port, data):
        assert response["ok"] is False
        assert response["error"]["code"] == "bad_request"
        assert response["error"]["message"]
    assert_alive(live_port)


@fuzz
@given(st.lists(valid_msgpack(), min_size=1, max_size=4))
def test_framed_msgpack_that_is_not_a_valid_request(live_port: int, payloads: list[bytes]) -> None:
    data = b"".join(struct.pack("!I", len(p)) + p for p in payloads)
    for response in exchange(live_port, data):
        assert set(response) == {"id", "ok", "result", "error", "type"}
        if not response["ok"]:
            assert response["error"]["code"] in ("bad_request", "internal_error")
    assert_alive(live_port)
