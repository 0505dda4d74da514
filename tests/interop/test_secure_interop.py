"""The secure channel's negotiation against synapse-p2p 2.5.0 (in its own environment)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import ByteStream, SocketAttribute

from synapse_p2p import Identity
from synapse_p2p.errors import HandshakeError, PlaintextPeer
from synapse_p2p.secure import SecurityPolicy, accept_maybe_secure, secure_connect
from synapse_p2p.transport import TcpTransport
from synapse_p2p.wire import (
    FrameDecoder,
    Response,
    decode_message,
    encode_frame,
    encode_response,
    unpack_payload,
)
from tests.interop.refenv import REF_SCRIPTS, RefProcess, ref_node, ref_python

__all__ = ["ref_node", "ref_python"]  # fixtures

pytestmark = [pytest.mark.interop, pytest.mark.anyio]

SERVER = Identity.generate()
REF_CALL = """
import asyncio, json
from synapse_p2p import Client
async def main():
    try:
        print(json.dumps({"result": await Client("127.0.0.1", PORT, timeout=10).call("sum", 1, 2)}))
    except Exception as exc:
        print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
asyncio.run(main())
"""


def _ref_call(python: Path, port: int) -> dict[str, Any]:
    done = subprocess.run(
        [str(python), "-c", REF_CALL.replace("PORT", str(port))],
        capture_output=True,
        text=True,
        cwd=REF_SCRIPTS,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


@asynccontextmanager
async def peeking_server(policy: SecurityPolicy, seen: list[Any]) -> AsyncIterator[int]:
    """Peeks each connection; answers a plaintext ``sum`` request itself."""
    (listener,) = await TcpTransport().listen("127.0.0.1", 0)

    async def handle(stream: ByteStream) -> None:
        try:
            accepted = await accept_maybe_secure(stream, SERVER, policy, timeout=5)
        except HandshakeError as exc:
            seen.append(exc)
            return
        seen.append(accepted.peer)
        async with accepted.stream:
            decoder = FrameDecoder()
            frames: list[bytes] = []
            while not frames:
                frames = decoder.feed(await accepted.stream.receive())
            request = decode_message(unpack_payload(frames[0]))
            reply = Response(request.id, True, sum(request.args))  # type: ignore[union-attr]
            await accepted.stream.send(encode_frame(encode_response(reply)))

    async def loop() -> None:
        while True:
            tg.start_soon(handle, await listener.accept())  # type: ignore[attr-defined]

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(loop)
            try:
                yield int(listener.extra(SocketAttribute.local_port))
            finally:
                tg.cancel_scope.cancel()
    finally:
        await listener.aclose()


async def test_our_secure_client_meets_a_reference_node(ref_node: RefProcess) -> None:
    stream = await TcpTransport().connect("127.0.0.1", ref_node.ready["port"], timeout=5)
    with pytest.raises(PlaintextPeer):
        await secure_connect(stream, Identity.generate())


async def test_a_reference_client_is_served_plaintext_without_a_secret(ref_python: Path) -> None:
    seen: list[Any] = []
    async with peeking_server(SecurityPolicy(()), seen) as port:
        result = await anyio.to_thread.run_sync(_ref_call, ref_python, port)
    assert result == {"result": 3}
    assert seen == [None]  # served, unverified


async def test_a_reference_client_is_refused_clearly_with_a_secret(ref_python: Path) -> None:
    seen: list[Any] = []
    async with peeking_server(SecurityPolicy("s3cret"), seen) as port:
        result = await anyio.to_thread.run_sync(_ref_call, ref_python, port)
    assert result["error"] == "RuntimeError"
    assert "secret is required" in result["message"]
    assert len(seen) == 1
    assert isinstance(seen[0], HandshakeError)
