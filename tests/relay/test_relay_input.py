"""Bad input at a relay and at a relayed node gets a clear error, and both keep serving; a
target that goes away mid-circuit is reported to the caller (both backends, loopback)."""

from __future__ import annotations

import struct

import anyio
import pytest

from synapse_p2p import Client, Node
from synapse_p2p.errors import ConnectionLost, RelayClosed, RelayRefused
from synapse_p2p.identity import Identity
from synapse_p2p.relay import open_circuit, open_relay
from synapse_p2p.secure import Keyring
from synapse_p2p.transport import TcpTransport
from tests.helpers import request_frame
from tests.relay.test_relay_client import QUIET, relay_and_private, route

pytestmark = pytest.mark.anyio


def message(body: bytes) -> bytes:
    return struct.pack(">H", len(body)) + body


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (message(b"hello"), "not JSON"),
        (message(b"[]"), "not a JSON object"),
        (struct.pack(">H", 60000), "60000 bytes > 4096"),
        (message(b'{"op":"fly"}'), "unknown relay request 'fly'"),
        (message(b'{"op":"accept","circuit":"nope"}'), "no such circuit"),
        (message(b'{"op":"connect","to":7}'), "needs 'to'"),
    ],
)
async def test_malformed_relay_requests_get_a_clear_error(
    anyio_backend: str, raw: bytes, error: str
) -> None:
    async with relay_and_private() as (relay, b):
        control, _ = await open_relay(
            TcpTransport(), ("127.0.0.1", relay.port), Identity.generate(), Keyring(), timeout=5
        )
        try:
            await control.stream.send(raw)
            with anyio.fail_after(5):
                reply = await control.receive()
        finally:
            await control.aclose()
        assert reply["ok"] is False
        assert reply["code"] == "bad_request"
        assert error in reply["error"]
        # the relay keeps serving
        assert await Client("127.0.0.1", b.port, transport=route(relay, b)).call("echo", 1) == 1


async def test_a_circuit_to_oneself_is_refused(anyio_backend: str) -> None:
    async with relay_and_private() as (relay, b):
        with pytest.raises(RelayRefused, match="to itself"):
            await open_circuit(
                TcpTransport(), ("127.0.0.1", relay.port), b.node_id, b.identity, Keyring(),
                timeout=5,
            )  # fmt: skip


async def test_plaintext_through_a_circuit_is_refused_by_the_target(anyio_backend: str) -> None:
    async with relay_and_private() as (relay, b):
        circuit = await open_circuit(
            TcpTransport(), ("127.0.0.1", relay.port), b.node_id, Identity.generate(),
            Keyring(), timeout=5,
        )  # fmt: skip
        async with circuit:
            await circuit.send(request_frame("echo", "in the clear"))
            got = b""
            with anyio.fail_after(5):
                try:
                    while True:
                        got += await circuit.receive()
                except (anyio.EndOfStream, RelayClosed):
                    pass
            assert got == b""  # nothing comes back but the end of the circuit
        assert await Client("127.0.0.1", b.port, transport=route(relay, b)).call("echo", 2) == 2


async def test_the_target_going_away_mid_circuit_is_reported(anyio_backend: str) -> None:
    relay = Node(name="relay", relay=True, **QUIET)
    async with relay:
        b = Node(name="b", relays=[f"127.0.0.1:{relay.port}"], **QUIET)
        entered = anyio.Event()

        @b.endpoint("hang", publish=False)
        async def hang() -> None:
            entered.set()
            await anyio.sleep_forever()

        async with anyio.create_task_group() as tg:
            stop = anyio.Event()

            async def run_b() -> None:
                async with b:
                    await stop.wait()

            tg.start_soon(run_b)
            with anyio.fail_after(10):
                while not b.running:
                    await anyio.sleep(0.01)
                await b.relay.wait_reserved()
            b_port, later = b.port, route(relay, b)
            async with Client("127.0.0.1", b.port, transport=route(relay, b)) as client:

                async def stop_b() -> None:
                    await entered.wait()
                    stop.set()

                tg.start_soon(stop_b)
                with anyio.fail_after(10), pytest.raises(ConnectionLost):
                    await client.call("hang")
        # B is gone, and its reservation: a new circuit is refused, clearly
        assert relay.relay.service is not None
        with anyio.fail_after(10):
            while relay.relay.service.reserved():
                await anyio.sleep(0.02)
        with pytest.raises(RelayRefused, match="no reservation"):
            await Client("127.0.0.1", b_port, transport=later).call("echo", 3)
