"""Wire interop with synapse-p2p 2.5.0: its client against our node, our client against its
node, and frames through both codecs."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from synapse_p2p import Client, Node, RemoteError
from synapse_p2p.rpc import ConnectionPool
from synapse_p2p.wire import (
    ErrorInfo,
    FrameDecoder,
    Request,
    Response,
    decode_message,
    encode_frame,
    encode_request,
    encode_response,
    unpack_payload,
)
from tests.interop.refenv import RefProcess, ref_node, ref_python, run_ref

__all__ = ["ref_node", "ref_python"]  # fixtures

pytestmark = pytest.mark.interop


def b(value: bytes) -> dict[str, str]:
    return {"__bytes__": base64.b64encode(value).decode()}


@pytest.mark.anyio
async def test_reference_client_calls_our_node(ref_python: Path, anyio_backend: str) -> None:
    node = Node(bind="127.0.0.1", name="ours", capabilities=["code-review"], swarm="interop")

    @node.endpoint("sum", description="Add two numbers")
    async def sum_(a: int, b: int) -> int:
        return a + b

    @node.endpoint
    async def echo(value: Any) -> Any:
        return value

    @node.endpoint
    async def boom() -> None:
        raise ValueError("our failure")

    @node.endpoint
    async def unencodable() -> set[int]:
        return {1}

    @node.ask
    async def handle(task: str, context: dict[str, Any]) -> dict[str, Any]:
        return {"answer": task.upper(), "context": context}

    node.artifact("agent-card", {"name": "reviewer", "capabilities": ["code-review"]})
    calls = [
        ["sum", [1, 2], {}],
        ["sum", [], {"a": 2, "b": 5}],
        ["echo", [b(b"\x00\xffbin")], {}],
        ["echo", [{"nested": [1, 2.5, None, True, "s"]}], {}],
        ["_synapse.ping", [], {}],
        ["_synapse.info", [], {}],
        ["_synapse.methods", [], {}],
        ["_synapse.artifacts", [], {}],
        ["_synapse.artifact.get", ["agent-card"], {}],
        ["_synapse.artifact.get", ["nope"], {}],
        ["_node.info", [], {}],
        ["_node.capabilities", [], {}],
        ["_node.ask", ["review this"], {"context": {"k": "v"}}],
        ["synapse.ask", ["direct"], {}],
        ["nope", [], {}],
        ["boom", [], {}],
        ["unencodable", [], {}],
    ]
    async with node:
        out = await anyio.to_thread.run_sync(
            lambda: run_ref(ref_python, "ref_client.py", str(node.port), stdin=json.dumps(calls))
        )
        info = node.node_info()
    results = dict(enumerate(out[:-1]))
    assert results[0] == {"ok": True, "result": 3}
    assert results[1] == {"ok": True, "result": 7}
    assert results[2] == {"ok": True, "result": b(b"\x00\xffbin")}
    assert results[3]["result"] == {"nested": [1, 2.5, None, True, "s"]}
    assert results[4]["result"] == "pong"
    assert results[5]["result"] == info
    assert results[6]["result"] == [
        {"name": "sum", "publish": True, "description": "Add two numbers"},
        {"name": "echo", "publish": True, "description": ""},
        {"name": "boom", "publish": True, "description": ""},
        {"name": "unencodable", "publish": True, "description": ""},
    ]
    assert results[7]["result"][0]["sha256"] == (
        "dff355dc1bfeebbd133f25b00a8c169d25c9afef8d3f45076f0140668bed3920"
    )
    assert results[8]["result"]["content"] == {"name": "reviewer", "capabilities": ["code-review"]}
    assert results[9] == {"ok": False, "type": "RuntimeError", "message": "unknown artifact: nope"}
    assert results[10]["result"]["capabilities"] == ["code-review"]
    assert results[11]["result"][0]["name"] == "code-review"
    assert results[12]["result"] == {"answer": "REVIEW THIS", "context": {"k": "v"}}
    assert results[13]["result"] == {"answer": "DIRECT", "context": {}}
    assert results[14] == {
        "ok": False,
        "type": "RuntimeError",
        "message": "Unregistered endpoint called: nope",
    }
    assert results[15] == {"ok": False, "type": "RuntimeError", "message": "our failure"}
    assert results[16]["ok"] is False
    assert "cannot be encoded" in results[16]["message"]
    assert out[-1] == {"peers": []}


@pytest.mark.anyio
async def test_our_client_calls_the_reference_node(
    ref_node: RefProcess, anyio_backend: str
) -> None:
    port = ref_node.ready["port"]
    assert await Client("127.0.0.1", port).call("sum", 1, 2) == 3
    async with Client("127.0.0.1", port) as client:  # no session support: one call per conn
        results = []

        async def one(i: int) -> None:
            results.append(await client.call("sum", i, 1))

        async with anyio.create_task_group() as tg:
            for i in range(10):
                tg.start_soon(one, i)
        assert sorted(results) == list(range(1, 11))
        assert await client.call("echo", b"\x00bin") == b"\x00bin"
        info = await client.call("_synapse.info")
        assert info["id"] == ref_node.ready["id"]
        assert info["name"] == "ref-node"
        assert await client.call("_node.ask", "abc", {"x": "y"}) == {
            "answer": "cba",
            "context": {"x": "y"},
        }
        with pytest.raises(RemoteError, match="Unregistered endpoint called: nope") as err:
            await client.call("nope")
        assert err.value.code == "bad_request"
        with pytest.raises(RemoteError, match="reference failure") as err:
            await client.call("boom")
        assert err.value.code == "internal_error"
        artifacts = await client.call("_synapse.artifacts")
        assert artifacts[0]["size"] == 50
        assert await client.peers() == []

    pool = ConnectionPool()
    async with anyio.create_task_group() as tg:
        await tg.start(pool.run)
        for i in range(3):
            assert await pool.call("127.0.0.1", port, "sum", [i, i]) == 2 * i
        assert pool.is_legacy("127.0.0.1", port)
        assert pool.statistics().open_connections == 0
        assert await pool.session_info("127.0.0.1", port) == {}
        tg.cancel_scope.cancel()


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return b(value)
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


MESSAGES: list[Request | Response] = [
    Request("sum", "abc", [1, 2], {"b": b"\x00"}),
    Request("_synapse.join", "x" * 64, [{"id": "n", "address": "1.2.3.4", "port": 9}], {}),
    Request("echo", "", [[1, [2, [3]]], {"k": {"nested": b"\xff" * 300}}, -(2**40), 1.25], {}),
    Response("abc", True, {"answer": "ok", "list": [None, True, False]}, None),
    Response("abc", False, None, ErrorInfo("bad_request", "frame too large: 5 > 4")),
    Response("", False, None, ErrorInfo("internal_error", "boom")),
]


def test_frames_decode_identically_in_both_codecs(ref_python: Path) -> None:
    ours = [
        encode_frame(encode_request(m) if isinstance(m, Request) else encode_response(m))
        for m in MESSAGES
    ]
    to_encode = []
    for m in MESSAGES:
        if isinstance(m, Request):
            to_encode.append(
                [
                    "request",
                    _jsonable(
                        {"endpoint": m.endpoint, "id": m.id, "args": m.args, "kwargs": m.kwargs}
                    ),
                ]
            )
        else:
            error = None if m.error is None else {"code": m.error.code, "message": m.error.message}
            to_encode.append(
                [
                    "response",
                    _jsonable({"id": m.id, "ok": m.ok, "result": m.result, "error": error}),
                ]
            )
    out = run_ref(
        ref_python,
        "ref_codec.py",
        stdin=json.dumps({"decode": [f.hex() for f in ours], "encode": to_encode}),
    )
    # The reference decodes our frames into the same messages...
    for message, decoded in zip(MESSAGES, out["decoded"], strict=True):
        expected = _jsonable(
            {
                "endpoint": message.endpoint,
                "id": message.id,
                "args": message.args,
                "kwargs": message.kwargs,
                "type": "request",
            }
            if isinstance(message, Request)
            else {
                "id": message.id,
                "ok": message.ok,
                "result": message.result,
                "error": None
                if message.error is None
                else {"code": message.error.code, "message": message.error.message},
                "type": "response",
            }
        )
        assert decoded == expected
    # ...its frames are byte-identical to ours, and decode to the same messages here.
    theirs = [bytes.fromhex(h) for h in out["encoded"]]
    assert theirs == ours
    decoder = FrameDecoder()
    payloads = decoder.feed(b"".join(theirs))
    assert [decode_message(unpack_payload(p)) for p in payloads] == MESSAGES
