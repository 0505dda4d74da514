"""Shared fixtures: every backend-neutral test runs under trio and asyncio."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.discovery.mdns_scripts.netns import NetnsPair, NetnsUnavailable


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


@pytest.fixture
def netns() -> Iterator[NetnsPair]:
    """Two test hosts (network namespaces joined by a veth pair), deleted afterwards: mDNS
    only ever runs inside them, never on this machine's real interfaces. Skipped, with the
    reason printed, when namespaces are unavailable (not root, no iproute2)."""
    try:
        pair = NetnsPair()
    except NetnsUnavailable as exc:
        print(f"mDNS namespace tests skipped: {exc}")
        pytest.skip(f"network namespaces unavailable: {exc}")
    try:
        yield pair
    finally:
        pair.close()
