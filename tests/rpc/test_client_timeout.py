"""``Client.call(..., timeout=)`` is the call's own timeout; ``request`` passes any keyword."""

from __future__ import annotations

import anyio
import pytest

from synapse_p2p import Client, Node
from synapse_p2p.errors import CallTimeout

pytestmark = pytest.mark.anyio


async def test_timeout_is_the_calls_own_and_request_passes_it_through(anyio_backend: str) -> None:
    async with Node(bind="127.0.0.1") as node:

        @node.endpoint
        async def wait(timeout: float = 0.0) -> float:
            await anyio.sleep(timeout)
            return timeout

        for client in (Client("127.0.0.1", node.port), Client("127.0.0.1", node.port)):
            with pytest.raises(CallTimeout):
                await client.call("wait", 5.0, timeout=0.2)  # not sent to the endpoint
        async with Client("127.0.0.1", node.port) as client:
            assert await client.call("wait", timeout=5) == 0.0
            assert await client.request("wait", kwargs={"timeout": 0.01}) == 0.01
            with pytest.raises(CallTimeout):
                await client.request("wait", [5.0], timeout=0.2)
            with pytest.raises(ValueError, match="timeout"):
                await client.call("wait", timeout=-1)
