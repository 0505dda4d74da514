"""Endpoint dispatch: a failing handler is answered and logged on the node where it failed."""

from __future__ import annotations

import logging

import pytest

from synapse_p2p.rpc import EndpointRegistry
from synapse_p2p.wire import Request, Response, decode_message, unpack_payload

pytestmark = pytest.mark.anyio


async def test_handler_failures_are_logged_with_a_traceback_rate_limited(
    anyio_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    registry = EndpointRegistry()

    async def broken(n: int) -> int:
        return {"a": 1}[str(n)]  # KeyError

    async def also_broken() -> None:
        raise ValueError("bad")

    registry.add(broken)
    registry.add(also_broken)
    with caplog.at_level(logging.WARNING, logger="synapse_p2p.rpc._endpoints"):
        for i in range(5):
            payload = await registry.dispatch(Request("broken", f"r{i}", [i], {}))
            response = decode_message(unpack_payload(payload))
            assert isinstance(response, Response)
            assert response.error is not None
            assert response.error.code == "internal_error"
        await registry.dispatch(Request("also_broken", "x", [], {}))
    records = [r for r in caplog.records if r.levelno == logging.WARNING]
    # One report per endpoint within the interval, each with its traceback.
    assert [r.getMessage() for r in records] == [
        "endpoint 'broken' raised KeyError",
        "endpoint 'also_broken' raised ValueError",
    ]
    assert all(r.exc_info is not None for r in records)
