"""Shared fixtures: every backend-neutral test runs under trio and asyncio."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["trio", "asyncio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def calc_node(anyio_backend: str):  # type: ignore[no-untyped-def]
    """A running loopback node with a few test endpoints."""
    from synapse_p2p import Node

    node = Node(bind="127.0.0.1", name="calc", capabilities=["math"])

    @node.endpoint("sum", description="Add two numbers")
    async def sum_(a: int, b: int) -> int:
        return a + b

    @node.endpoint("echo", publish=False)
    async def echo(value: object) -> object:
        return value

    async with node:
        yield node
