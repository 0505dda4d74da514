"""Handshake timeouts on virtual time (trio's MockClock over the in-memory transport): the 5 s
default, exactly, in milliseconds of real time."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from synapse_p2p import Identity
from synapse_p2p.errors import HandshakeTimeout
from synapse_p2p.secure import SecurityPolicy, accept_maybe_secure, secure_connect
from synapse_p2p.transport import MemoryNetwork

pytestmark = pytest.mark.trio


async def test_default_timeouts_are_five_seconds(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    (listener,) = await network.transport("10.0.0.2").listen("10.0.0.2", 7000)
    client_side = await network.transport("10.0.0.1").connect("10.0.0.2", 7000, timeout=1)
    server_side = await listener.accept()  # type: ignore[attr-defined]

    # A server that never answers: the client gives up after 5 s.
    start = trio.current_time()
    with pytest.raises(HandshakeTimeout, match="5 s"):
        await secure_connect(client_side, Identity.generate())
    assert trio.current_time() - start == pytest.approx(5.0)

    # A client that connects and says nothing: the server gives up after 5 s.
    client_side = await network.transport("10.0.0.1").connect("10.0.0.2", 7000, timeout=1)
    server_side = await listener.accept()  # type: ignore[attr-defined]
    start = trio.current_time()
    with pytest.raises(HandshakeTimeout):
        await accept_maybe_secure(server_side, Identity.generate(), SecurityPolicy(()))
    assert trio.current_time() - start == pytest.approx(5.0)

    # A client that sends the preamble and stalls: 5 s in all, peek included.
    client_side = await network.transport("10.0.0.1").connect("10.0.0.2", 7000, timeout=1)
    server_side = await listener.accept()  # type: ignore[attr-defined]
    start = trio.current_time()
    async with trio.open_nursery() as nursery:

        async def stall() -> None:
            await trio.sleep(2)
            await client_side.send(b"\xf3SN\x01\x00")

        nursery.start_soon(stall)
        with pytest.raises(HandshakeTimeout, match="5 s"):
            await accept_maybe_secure(server_side, Identity.generate(), SecurityPolicy(()))
    assert trio.current_time() - start == pytest.approx(5.0)
    await listener.aclose()
