"""SecureDialer against plaintext servers: fallback, its memory, downgrade refusal; and the
non-loopback warning."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest

from synapse_p2p import Identity, Node
from synapse_p2p._config import NodeConfig
from synapse_p2p.errors import HandshakeError
from synapse_p2p.node._node import _exposed, _loopback_only
from synapse_p2p.rpc import EndpointRegistry, RpcServer
from synapse_p2p.secure import SecureAcceptor, SecureDialer, SecurityPolicy
from synapse_p2p.transport import TcpTransport

pytestmark = pytest.mark.anyio


class CountingTransport(TcpTransport):
    def __init__(self) -> None:
        self.connects = 0

    async def connect(self, host: str, port: int, *, timeout: float) -> anyio.abc.ByteStream:
        self.connects += 1
        return await super().connect(host, port, timeout=timeout)


@asynccontextmanager
async def server(port: int = 0, *, secure: bool) -> AsyncIterator[int]:
    upgrade = SecureAcceptor(Identity.generate(), SecurityPolicy(())).accept if secure else None
    rpc = RpcServer(EndpointRegistry(), upgrade=upgrade)
    async with anyio.create_task_group() as tg:
        bound = await tg.start(rpc.serve, "127.0.0.1", port)
        yield bound
        tg.cancel_scope.cancel()


async def test_a_plaintext_peer_is_remembered_so_each_call_costs_one_connection(
    anyio_backend: str,
) -> None:
    transport = CountingTransport()
    dialer = SecureDialer(transport, Identity.generate(), SecurityPolicy(()))
    async with server(secure=False) as port:
        stream, node_id = await dialer.connect("127.0.0.1", port, timeout=5)
        await stream.aclose()
        assert node_id is None
        assert transport.connects == 2  # the secure attempt, then plaintext
        for _ in range(3):
            stream, _ = await dialer.connect("127.0.0.1", port, timeout=5)
            await stream.aclose()
        assert transport.connects == 5


async def test_with_a_secret_a_plaintext_peer_is_refused(anyio_backend: str) -> None:
    dialer = SecureDialer(TcpTransport(), Identity.generate(), SecurityPolicy("s"))
    async with server(secure=False) as port:
        with pytest.raises(HandshakeError, match="requires the swarm secret"):
            await dialer.connect("127.0.0.1", port, timeout=5)


async def test_an_address_seen_secure_is_never_dialed_in_plaintext(anyio_backend: str) -> None:
    """Downgrade: the same address answering in plaintext later (an attacker in the middle,
    or on the port) is refused, not silently used in plaintext."""
    dialer = SecureDialer(TcpTransport(), Identity.generate(), SecurityPolicy(()))
    async with server(secure=True) as port:
        stream, node_id = await dialer.connect("127.0.0.1", port, timeout=5)
        await stream.aclose()
        assert node_id is not None
    async with server(port, secure=False):
        with pytest.raises(HandshakeError, match="downgrade refused"):
            await dialer.connect("127.0.0.1", port, timeout=5)


async def test_an_expected_id_seen_verified_is_never_dialed_in_plaintext(
    anyio_backend: str,
) -> None:
    policy = SecurityPolicy(())
    known = Identity.generate().node_id
    policy.note_verified(known)
    dialer = SecureDialer(TcpTransport(), Identity.generate(), policy)
    async with server(secure=False) as port:
        with pytest.raises(HandshakeError, match="downgrade refused"):
            await dialer.connect("127.0.0.1", port, timeout=5, expected_node_id=known)
        stream, _ = await dialer.connect("127.0.0.1", port, timeout=5)  # no claim: 2.5.0
        await stream.aclose()


async def test_a_node_on_loopback_or_with_a_secret_does_not_warn(
    anyio_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="synapse_p2p")
    async with Node(bind="127.0.0.1", heartbeat_interval=None, secret=()):
        pass
    assert not [r for r in caplog.records if "without a swarm secret" in r.message]


def test_the_warning_names_websocket_listeners_beyond_loopback() -> None:
    config = NodeConfig.build(
        bind="127.0.0.1", websocket=["ws://0.0.0.0:8765/s", "ws://127.0.0.1:0/s"]
    )
    assert _exposed(config, 7000) == ["ws://0.0.0.0:8765/s"]
    assert _exposed(NodeConfig.build(bind="0.0.0.0"), 7000) == ["0.0.0.0:7000"]
    assert _exposed(NodeConfig.build(bind="127.0.0.1"), 7000) == []


def test_which_bind_addresses_are_loopback_only() -> None:
    """The start-up warning's rule (a node bound beyond loopback without a secret warns;
    tests never bind beyond loopback, so the rule itself is checked)."""
    assert _loopback_only("127.0.0.1")
    assert _loopback_only("::1")
    assert _loopback_only("localhost")
    assert not _loopback_only("")
    assert not _loopback_only("0.0.0.0")
    assert not _loopback_only("::")
    assert not _loopback_only("198.18.0.1")
    assert not _loopback_only("myhost.example")
