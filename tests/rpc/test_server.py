"""The RPC server on real loopback sockets: dispatch, errors, limits, bad input."""

from __future__ import annotations

import itertools
from typing import Any

import anyio
import msgpack
import pytest

from synapse_p2p import Client, Node, RemoteError
from synapse_p2p.rpc import Connection
from synapse_p2p.wire import Request
from tests.helpers import frame, read_frame, request_frame, wait_closed

pytestmark = pytest.mark.anyio


async def raw_call(port: int, data: bytes) -> list[dict[str, Any]]:
    """Send raw bytes, half-close, return every response until the server closes."""
    out = []
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(data)
        await stream.send_eof()
        with anyio.fail_after(5):
            while (msg := await read_frame(stream)) is not None:
                out.append(msg)
    return out


async def test_one_request_per_connection_like_the_reference(calc_node: Node) -> None:
    [response] = await raw_call(calc_node.port, request_frame("sum", 1, 2, id="abc"))
    assert response == {"id": "abc", "ok": True, "result": 3, "error": None, "type": "response"}
    assert list(response) == ["id", "ok", "result", "error", "type"]


async def test_pipelined_requests_are_all_answered(calc_node: Node) -> None:
    data = b"".join(request_frame("sum", i, i, id=str(i)) for i in range(10))
    responses = await raw_call(calc_node.port, data)
    assert sorted((r["id"], r["result"]) for r in responses) == sorted(
        (str(i), 2 * i) for i in range(10)
    )


async def test_unknown_endpoint_and_bad_arguments(calc_node: Node) -> None:
    async with Client("127.0.0.1", calc_node.port) as client:
        with pytest.raises(RemoteError, match="Unregistered endpoint called: nope") as info:
            await client.call("nope")
        assert info.value.code == "bad_request"
        with pytest.raises(RemoteError, match="invalid arguments for 'sum'") as info:
            await client.call("sum", 1)
        assert info.value.code == "bad_request"
        with pytest.raises(RemoteError, match="invalid arguments") as info:
            await client.call("_synapse.ping", 1)
        assert info.value.code == "bad_request"
        # The same connection keeps serving.
        assert await client.call("sum", 2, 3) == 5


async def test_handler_errors_become_internal_error_and_keep_codes(anyio_backend: str) -> None:
    node = Node(bind="127.0.0.1")

    @node.endpoint
    async def boom() -> None:
        raise ValueError("it broke")

    @node.endpoint
    async def refuse() -> None:
        raise RemoteError("bad_request", "no thanks")

    @node.endpoint
    async def unencodable() -> set[int]:
        return {1, 2}

    @node.endpoint
    async def dated() -> object:
        return object()

    async with node, Client("127.0.0.1", node.port) as client:
        with pytest.raises(RemoteError, match="it broke") as info:
            await client.call("boom")
        assert info.value.code == "internal_error"
        with pytest.raises(RemoteError, match="no thanks") as info:
            await client.call("refuse")
        assert info.value.code == "bad_request"
        for name, type_name in (("unencodable", "set"), ("dated", "object")):
            with pytest.raises(
                RemoteError, match=f"result of endpoint '{name}' cannot be encoded"
            ) as info:
                await client.call(name)
            assert info.value.code == "internal_error"
            assert type_name in info.value.message
        assert await client.call("_synapse.ping") == "pong"
    # A one-request (reference-style) connection gets the error too, not a dropped connection.
    async with node:
        [response] = await raw_call(node.port, request_frame("unencodable", id="u"))
        assert response["id"] == "u"
        assert response["ok"] is False
        assert response["error"]["code"] == "internal_error"


async def test_rpc_and_connection_injection(anyio_backend: str) -> None:
    node = Node(bind="127.0.0.1")
    seen: dict[str, Any] = {}

    @node.endpoint
    async def whoami(rpc: Request, connection: Connection) -> str:
        seen["rpc"], seen["connection"] = rpc, connection
        return connection.ip

    async with node:
        # Client-supplied values for the injected names are overridden.
        assert await Client("127.0.0.1", node.port).call("whoami", rpc="x") == "127.0.0.1"
    assert seen["rpc"].endpoint == "whoami"
    assert len(seen["connection"].identifier) == 8
    assert seen["connection"].port > 0


async def test_bad_messages_get_clear_errors_and_the_connection_survives(calc_node: Node) -> None:
    data = b"".join(
        [
            frame(msgpack.packb([1, 2])),
            frame(msgpack.packb({"endpoint": "sum", "id": "a", "args": "12"})),
            frame(msgpack.packb({"type": "response", "id": "b", "ok": True})),
            frame(msgpack.packb({"endpoint": "sum", "id": "c", "kwargs": {"a": {1: 2}}})),
            frame(b""),
            request_frame("sum", 1, 1, id="d"),
        ]
    )
    responses = await raw_call(calc_node.port, data)
    by_id: dict[str, list[dict[str, Any]]] = {}
    for r in responses:
        by_id.setdefault(r["id"], []).append(r)
    messages = sorted(r["error"]["message"] for r in responses if not r["ok"])
    assert any("must be a map, got array" in m for m in messages)
    assert any("args must be an array" in m for m in messages)
    assert any("expected request message" in m for m in messages)
    assert any("map keys must be strings" in m for m in messages)
    assert any("empty frame" in m for m in messages)
    assert by_id["a"][0]["error"]["code"] == "bad_request"
    assert by_id["d"][0]["result"] == 2


async def test_frame_too_large_is_answered_then_closed(anyio_backend: str) -> None:
    async with Node(bind="127.0.0.1", max_upload_size=1000) as node:
        [response] = await raw_call(node.port, b"\x00\x00\x07\xd0" + b"x" * 100)
        assert response["error"] == {
            "code": "bad_request",
            "message": "frame too large: 2000 > 1000",
        }
        [response] = await raw_call(node.port, b"GET / HTTP/1.1\r\n\r\n")
        assert "frame too large: 1195725856 > 1000" in response["error"]["message"]
        assert await Client("127.0.0.1", node.port).call("_synapse.ping") == "pong"


async def test_truncated_frame_at_eof(calc_node: Node) -> None:
    [response] = await raw_call(calc_node.port, b"\x00\x00\x00\x10abc")
    assert response["error"] == {"code": "bad_request", "message": "incomplete frame"}
    assert await raw_call(calc_node.port, b"") == []


async def test_response_too_large_for_the_caller(anyio_backend: str) -> None:
    async with Node(bind="127.0.0.1") as node:

        @node.endpoint
        async def big() -> bytes:
            return b"x" * 5000

        async with Client("127.0.0.1", node.port, max_download_size=1000) as client:
            # Negotiated session: the server knows our limit and answers with an error.
            with pytest.raises(RemoteError, match="larger than the caller's limit of 1000"):
                await client.call("big")
            assert await client.call("_synapse.ping") == "pong"
        # One-shot (reference-style) call: the client refuses the oversize frame.
        from synapse_p2p.errors import FrameTooLarge

        with pytest.raises(FrameTooLarge, match="> 1000"):
            await Client("127.0.0.1", node.port, max_download_size=1000).call("big")


async def test_concurrent_requests_over_one_connection(anyio_backend: str) -> None:
    node = Node(bind="127.0.0.1")
    gate = anyio.Event()
    waiting = 0

    @node.endpoint
    async def wait_gate(i: int) -> int:
        nonlocal waiting
        waiting += 1
        if waiting == 50:
            gate.set()
        await gate.wait()
        return i

    async with node, Client("127.0.0.1", node.port) as client:
        results: list[int] = []

        async def one(i: int) -> None:
            results.append(await client.call("wait_gate", i))

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                for i in range(50):
                    tg.start_soon(one, i)
        assert sorted(results) == list(range(50))
        assert node._server is not None
        assert node._server.statistics().accepted_connections == 1


async def test_too_many_concurrent_requests_on_one_connection(anyio_backend: str) -> None:
    node = Node(bind="127.0.0.1", max_concurrent_requests=2)
    release = anyio.Event()
    started = 0
    both_started = anyio.Event()

    @node.endpoint
    async def hold() -> str:
        nonlocal started
        started += 1
        if started == 2:
            both_started.set()
        await release.wait()
        return "done"

    async with node, await anyio.connect_tcp("127.0.0.1", node.port) as stream:
        await stream.send(request_frame("hold", id="1") + request_frame("hold", id="2"))
        with anyio.fail_after(5):
            await both_started.wait()
            await stream.send(request_frame("hold", id="3"))
            rejected = await read_frame(stream)
            assert rejected is not None
            assert rejected["id"] == "3"
            assert rejected["error"]["code"] == "overloaded"
            assert "limit 2" in rejected["error"]["message"]
            release.set()
            answers = [await read_frame(stream), await read_frame(stream)]
        assert sorted(a["id"] for a in answers if a) == ["1", "2"]
        assert all(a and a["result"] == "done" for a in answers)


async def test_connection_limit(anyio_backend: str) -> None:
    async with Node(bind="127.0.0.1", max_connections=2) as node:
        assert node._server is not None
        first = await anyio.connect_tcp("127.0.0.1", node.port)
        second = await anyio.connect_tcp("127.0.0.1", node.port)
        with anyio.fail_after(5):
            while node._server.statistics().open_connections < 2:
                await anyio.sleep(0.01)
            async with await anyio.connect_tcp("127.0.0.1", node.port) as third:
                rejected = await read_frame(third)
                assert rejected is not None
                assert rejected["error"]["code"] == "overloaded"
                assert "too many connections (limit 2)" in rejected["error"]["message"]
                await wait_closed(third)
            await first.aclose()
            while node._server.statistics().open_connections > 1:
                await anyio.sleep(0.01)
            assert await Client("127.0.0.1", node.port).call("_synapse.ping") == "pong"
        await second.aclose()


async def test_idle_connections_are_closed(anyio_backend: str) -> None:
    async with Node(bind="127.0.0.1", idle_timeout=0.3) as node:
        async with await anyio.connect_tcp("127.0.0.1", node.port) as stream:
            start = anyio.current_time()
            with anyio.fail_after(5):
                await wait_closed(stream)
            assert anyio.current_time() - start >= 0.25


async def test_half_sent_frame_cannot_hold_a_connection(anyio_backend: str) -> None:
    async with Node(bind="127.0.0.1", read_timeout=0.3, idle_timeout=60) as node:
        async with await anyio.connect_tcp("127.0.0.1", node.port) as stream:
            await stream.send(b"\x00\x00")
            with anyio.fail_after(5):
                response = await read_frame(stream)
                assert response is not None
                assert "waiting for the rest of a frame" in response["error"]["message"]
                await wait_closed(stream)


async def test_slow_loris_up_to_the_connection_limit(anyio_backend: str) -> None:
    """Idle and trickling connections fill the limit; they are closed within their timeouts
    and an honest client's calls succeed throughout."""
    limit = 12
    async with Node(
        bind="127.0.0.1", max_connections=limit, idle_timeout=0.5, read_timeout=0.5
    ) as node:
        closed_after: list[float] = []
        start = anyio.current_time()

        async def idle() -> None:
            async with await anyio.connect_tcp("127.0.0.1", node.port) as s:
                await wait_closed(s)
                closed_after.append(anyio.current_time() - start)

        async def trickle() -> None:
            async with await anyio.connect_tcp("127.0.0.1", node.port) as s:
                try:
                    await s.send(b"\x00\x00\x10\x00")  # declares 4 KiB, then 1 byte at a time
                    for _ in range(100):  # bounded
                        await anyio.sleep(0.05)
                        await s.send(b"x")
                except (anyio.BrokenResourceError, OSError):
                    pass
                await wait_closed(s)
                closed_after.append(anyio.current_time() - start)

        honest_ok = 0
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                for i in range(limit - 1):
                    tg.start_soon(idle if i % 2 else trickle)
                async with Client("127.0.0.1", node.port) as client:
                    for _ in range(20):
                        assert await client.call("_synapse.ping") == "pong"
                        honest_ok += 1
                        await anyio.sleep(0.05)
        assert honest_ok == 20
        assert len(closed_after) == limit - 1
        assert max(closed_after) < 0.5 + 1.5  # within the timeouts, with scheduling slack


async def test_argument_checks_with_and_without_defaults(anyio_backend: str) -> None:
    from synapse_p2p.rpc import EndpointRegistry

    registry = EndpointRegistry()

    async def plain(a: int, b: int = 2) -> int:
        return a + b

    async def keyword_only(a: int, *, b: int) -> int:
        return a + b

    registry.add(plain, "plain")
    registry.add(keyword_only, "keyword_only")

    async def call(endpoint: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        payload = await registry.dispatch(Request(endpoint, "1", list(args), kwargs))
        result: dict[str, Any] = msgpack.unpackb(payload, raw=False)
        return result

    assert (await call("plain", 1))["result"] == 3
    assert (await call("plain", 1, 5))["result"] == 6
    assert (await call("plain", a=1, b=1))["result"] == 2
    for args, kwargs in [((), {}), ((1, 2, 3), {}), ((1,), {"c": 1}), ((1,), {"a": 1})]:
        answer = await call("plain", *args, **kwargs)
        assert answer["error"]["code"] == "bad_request", (args, kwargs)
    assert (await call("keyword_only", 1, b=2))["result"] == 3
    assert (await call("keyword_only", 1))["error"]["code"] == "bad_request"
    assert (await call("keyword_only", 1, 2))["error"]["code"] == "bad_request"


async def test_a_flood_of_pipelined_requests_does_not_hold_the_event_loop(
    calc_node: Node,
) -> None:
    """Requests answered inline come out of a buffer without waiting; the worker still yields
    now and then, so other tasks (other connections) run while one connection floods."""
    from synapse_p2p.rpc._server import INLINE_STREAK

    server = calc_node._server
    assert server is not None
    count = 3000
    data = b"".join(request_frame("sum", i, 1, id=str(i)) for i in range(count))
    before = server._requests
    steps: list[int] = []
    async with await anyio.connect_tcp("127.0.0.1", calc_node.port) as stream:
        await stream.send(data)
        with anyio.fail_after(20):
            while server._requests - before < count:  # sampled each time this task runs
                steps.append(server._requests - before)
                await anyio.lowlevel.checkpoint()
            answered = 0
            while answered < count:
                assert await read_frame(stream) is not None
                answered += 1
    jumps = [b - a for a, b in itertools.pairwise(steps)]
    assert max(jumps) <= 2 * INLINE_STREAK, max(jumps)
