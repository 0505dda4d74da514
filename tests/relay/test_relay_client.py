"""Circuits through a relay on loopback, both backends: a Client reaching a node whose own
listener it cannot dial, refusals with a clear error, limits, and the relay seeing only
ciphertext."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from anyio.abc import ByteStream

from synapse_p2p import Client, Node
from synapse_p2p.errors import ConnectError, ConnectionLost, RelayClosed, RelayRefused
from synapse_p2p.identity import Identity
from synapse_p2p.relay import RelayLimits, RelayTransport, open_circuit
from synapse_p2p.secure import Keyring
from synapse_p2p.transport import TcpTransport

pytestmark = pytest.mark.anyio

QUIET: dict[str, Any] = {"bind": "127.0.0.1", "heartbeat_interval": None}


class Unreachable:
    """TCP, except that dials to ``blocked`` ports are refused (a node behind a NAT)."""

    def __init__(self, *blocked: int) -> None:
        self.blocked = set(blocked)
        self.tcp = TcpTransport()

    async def connect(self, host: str, port: int, *, timeout: float) -> ByteStream:
        if port in self.blocked:
            raise ConnectError(f"{host}:{port} cannot be dialed (behind a NAT in this test)")
        return await self.tcp.connect(host, port, timeout=timeout)

    async def listen(self, host: str | None, port: int) -> list[Any]:
        return await self.tcp.listen(host, port)


@asynccontextmanager
async def relay_and_private(
    limits: RelayLimits | None = None, **private: Any
) -> AsyncIterator[tuple[Node, Node]]:
    """A relay R and a node B reserved on it (B has an ``echo`` endpoint)."""
    relay = Node(name="relay", relay=True, relay_limits=limits, **QUIET)
    async with relay:
        b = Node(name="b", relays=[f"127.0.0.1:{relay.port}"], **{**QUIET, **private})

        @b.endpoint("echo", publish=False)
        async def echo(value: Any) -> Any:
            return value

        async with b:
            with anyio.fail_after(10):
                await b.relay.wait_reserved()
            yield relay, b


def route(relay: Node, b: Node, **kwargs: Any) -> RelayTransport:
    transport = RelayTransport(Unreachable(b.port), **kwargs)
    transport.add_route(("127.0.0.1", b.port), relay=f"127.0.0.1:{relay.port}", node_id=b.node_id)
    return transport


async def test_a_client_calls_a_node_it_cannot_dial_through_the_relay(anyio_backend: str) -> None:
    async with relay_and_private() as (relay, b):
        with pytest.raises(ConnectError, match="cannot be dialed"):
            await Client("127.0.0.1", b.port, transport=Unreachable(b.port)).call("echo", 1)
        client = Client("127.0.0.1", b.port, transport=route(relay, b))
        assert await client.call("echo", "one call") == "one call"
        assert client.peer_node_id == b.node_id  # the end-to-end handshake is with B
        async with Client("127.0.0.1", b.port, transport=route(relay, b)) as session:
            big = b"x" * (1 << 20)
            assert await session.call("echo", big) == big
            results = []
            async with anyio.create_task_group() as tg:
                for i in range(20):

                    async def one(i: int = i) -> None:
                        results.append(await session.call("echo", i))

                    tg.start_soon(one)
            assert sorted(results) == list(range(20))
        stats = relay.relay.statistics()
        assert stats is not None
        assert stats.reservations == 1
        assert stats.circuits_total >= 2
        assert stats.bytes_relayed > 2 << 20


async def test_refusals_are_clear_and_the_relay_keeps_serving(anyio_backend: str) -> None:
    async with relay_and_private() as (relay, b):
        where = ("127.0.0.1", relay.port)
        me = Identity.generate()
        with pytest.raises(RelayRefused, match="no reservation") as info:
            await open_circuit(TcpTransport(), where, "ab" * 32, me, Keyring(), timeout=5)
        assert info.value.code == "unknown_target"
        with pytest.raises(RelayRefused) as info:
            await open_circuit(TcpTransport(), where, "", me, Keyring(), timeout=5)
        assert info.value.code == "bad_request"
        # not a relay: a clear error, and that node keeps serving
        with pytest.raises(RelayRefused, match="not a relay") as info:
            await open_circuit(TcpTransport(), ("127.0.0.1", b.port), relay.node_id, me,
                               Keyring(), timeout=5)  # fmt: skip
        assert info.value.code == "not_relay"
        assert await Client("127.0.0.1", relay.port).call("_synapse.ping") is not None
        client = Client("127.0.0.1", b.port, transport=route(relay, b))
        assert await client.call("echo", "still here") == "still here"


async def test_over_a_limit_the_asker_gets_a_clear_error(anyio_backend: str) -> None:
    limits = RelayLimits(max_circuits_per_peer=1, max_circuit_bytes=200_000)
    async with relay_and_private(limits) as (relay, b):
        async with Client("127.0.0.1", b.port, transport=route(relay, b)) as first:
            assert await first.call("echo", "a") == "a"
            # B takes part in one circuit already: a second one is refused
            second = Client("127.0.0.1", b.port, transport=route(relay, b))
            with pytest.raises(RelayRefused, match="maximum of 1 circuits") as info:
                await second.call("echo", "b")
            assert info.value.code == "too_many_circuits"
            # the byte limit closes the circuit; the caller is told why
            with pytest.raises(ConnectionLost, match="limit of 200000 bytes"):
                await first.call("echo", b"y" * 300_000)
        # the relay still serves: a fresh circuit works
        client = Client("127.0.0.1", b.port, transport=route(relay, b))
        assert await client.call("echo", "again") == "again"


async def test_the_time_limit_closes_a_circuit_with_a_clear_error(anyio_backend: str) -> None:
    async with relay_and_private(RelayLimits(max_circuit_seconds=0.3)) as (relay, b):
        where = ("127.0.0.1", relay.port)
        circuit = await open_circuit(
            TcpTransport(), where, b.node_id, Identity.generate(), Keyring(), timeout=5
        )
        async with circuit:
            with anyio.fail_after(5), pytest.raises(RelayClosed, match=r"limit of 0\.3 s") as info:
                await circuit.receive()  # B waits for our handshake; the relay's timer ends it
            assert info.value.code == "time_limit"


async def test_reservations_past_the_limit_are_refused(anyio_backend: str) -> None:
    async with relay_and_private(RelayLimits(max_reservations=1)) as (relay, _b):
        c = Node(name="c", relays=[f"127.0.0.1:{relay.port}"], **QUIET)
        async with c:
            with anyio.fail_after(10):
                while not c.relay.states()[0].last_error:
                    await anyio.sleep(0.02)
            state = c.relay.states()[0]
            assert not state.reserved
            assert "maximum of 1 reservations" in state.last_error
        assert relay.relay.statistics().reservations == 1  # type: ignore[union-attr]


async def test_a_relay_reached_over_websocket(anyio_backend: str) -> None:
    relay = Node(name="relay", relay=True, websocket="ws://127.0.0.1:0/synapse", **QUIET)
    async with relay:
        url = relay.websocket_urls[0]
        b = Node(name="b", relays=[url], **QUIET)

        @b.endpoint("echo", publish=False)
        async def echo(value: Any) -> Any:
            return value

        async with b:
            with anyio.fail_after(10):
                await b.relay.wait_reserved()
            via = RelayTransport(Unreachable(b.port, relay.port))  # no TCP to the relay's port
            via.add_route(("127.0.0.1", b.port), relay=url, node_id=b.node_id)
            async with Client("127.0.0.1", b.port, transport=via) as client:
                assert await client.call("echo", "over ws") == "over ws"
                big = b"w" * (1 << 20)
                assert await client.call("echo", big) == big
