"""The in-process transport (``synapse_p2p.transport._memory``)."""

from __future__ import annotations

import gc
import warnings

import anyio
import pytest

from synapse_p2p.transport._memory import MemoryNetwork

pytestmark = pytest.mark.anyio


async def test_a_closing_listener_refuses_the_connections_never_accepted(
    anyio_backend: str,
) -> None:
    """A connection still in the backlog when its listener closes ends for its dialer (as a
    TCP listener resets it), and no stream of it is left open."""
    network = MemoryNetwork()
    [listener] = await network.transport("10.0.0.2").listen(None, 7000)
    client = await network.transport("10.0.0.1").connect("10.0.0.2", 7000, timeout=1)
    await listener.aclose()
    with anyio.fail_after(5), pytest.raises((anyio.EndOfStream, anyio.ClosedResourceError)):
        await client.receive()
    await client.aclose()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del listener  # (the stream never accepted goes with it)
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]
