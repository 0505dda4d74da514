"""A node nobody can dial, a full member through a relay (both backends, loopback): its
endpoints called, an ask broadcast it answers, a conversation synced from it, a team task
granted to it; a swarm secret keeps non-members out of the relay; the relay sees only
ciphertext, and what it alters is caught end to end; the reservation comes back when the
relay restarts."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import anyio
import pytest
from anyio.abc import ByteStream

from synapse_p2p import Client, Node
from synapse_p2p.errors import ConnectionLost, HandshakeError
from synapse_p2p.identity import Identity
from synapse_p2p.relay import RelayTransport, open_circuit
from synapse_p2p.secure import Keyring
from synapse_p2p.teams import Assignment, Team, Worker
from synapse_p2p.transport import TcpTransport
from tests.relay.test_relay_client import Unreachable

pytestmark = pytest.mark.anyio

FAST: dict[str, Any] = {"bind": "127.0.0.1", "heartbeat_interval": 0.2, "peer_timeout": 3.0}
SECRET_TASK = "review the launch plan for project nightjar-7"


async def until(check: Callable[[], bool], timeout: float = 10) -> None:
    with anyio.fail_after(timeout):
        while not check():
            await anyio.sleep(0.02)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Recording:
    """Wraps the relay service's ``handle`` to keep every byte the relay reads: the control
    messages, decrypted from its own secure channel with each end, and the circuits' bytes.
    Everything it could look at. With ``tamper_after``, it also flips a bit in each chunk of
    a circuit's leg once that leg has carried that many bytes (a relay forging traffic)."""

    def __init__(self, relay: Node, tamper_after: int | None = None) -> None:
        service = relay.relay.service
        assert service is not None
        self.seen = bytearray()
        handle = service.handle

        async def recording(stream: ByteStream, node_id: str) -> None:
            await handle(_Tap(stream, self.seen, tamper_after), node_id)

        service.handle = recording  # type: ignore[method-assign]


class _Tap(ByteStream):
    def __init__(
        self, stream: ByteStream, seen: bytearray, tamper_after: int | None, leg: bool = False
    ) -> None:
        self.stream = stream
        self.seen = seen
        self.tamper_after = tamper_after
        self.leg = leg
        self.count = 0

    async def receive(self, max_bytes: int = 65536) -> bytes:
        data = await self.stream.receive(max_bytes)
        self.seen += data
        self.count += len(data)
        if self.leg and self.tamper_after is not None and self.count > self.tamper_after:
            data = data[:-1] + bytes([data[-1] ^ 1])
        return data

    async def send(self, item: bytes) -> None:
        await self.stream.send(item)

    @property
    def transport_stream(self) -> ByteStream:
        """A circuit's leg (the connection under the secure channel), tapped too."""
        raw = getattr(self.stream, "transport_stream", self.stream)
        return _Tap(raw, self.seen, self.tamper_after, leg=True)

    async def send_eof(self) -> None:
        await self.stream.send_eof()

    async def aclose(self) -> None:
        await self.stream.aclose()


def private_node(relay: Node, port: int, **kwargs: Any) -> Node:
    """B: listens on ``port``, which nobody can dial; reserved on ``relay``."""
    b = Node(
        name="b", port=port, capabilities=["python"], relays=[f"127.0.0.1:{relay.port}"],
        seeds=[f"127.0.0.1:{relay.port}"], **{**FAST, **kwargs},
    )  # fmt: skip

    @b.ask
    async def review(task: str, context: dict[str, Any]) -> str:
        return f"b read {task}"

    @b.endpoint("whoami", publish=False)
    async def whoami() -> str:
        return "b"

    return b


async def test_a_node_nobody_can_dial_is_a_full_member_through_the_relay(
    anyio_backend: str,
) -> None:
    b_port = free_port()
    # Neither the relay nor A can dial B's port: both reach B through the relay (the
    # relay dials itself for that, as any member would).
    relay = Node(name="relay", relay=True, transport=Unreachable(b_port), **FAST)
    async with relay:
        recording = Recording(relay)
        a = Node(name="a", transport=Unreachable(b_port), seeds=[f"127.0.0.1:{relay.port}"], **FAST)
        b = private_node(relay, b_port)
        for node in (relay, a):
            node.relay.add_route(
                ("127.0.0.1", b_port), relay=f"127.0.0.1:{relay.port}", node_id=b.node_id
            )
        async with b:
            with anyio.fail_after(10):
                await b.relay.wait_reserved()
            async with a:
                await until(lambda: all(len(n.peers) == 2 for n in (relay, a, b)))
                peer_b = a.peers[b.node_id]
                assert await a.call_peer(peer_b, "whoami") == "b"
                broadcast = await a.broadcast("synapse.ask", SECRET_TASK, context={})
                replies = [r async for r in a.iter_replies(broadcast, timeout=10)]
                assert [r.result for r in replies if r.peer.id == b.node_id] == [
                    f"b read {SECRET_TASK}"
                ]
                # a newcomer syncs the conversation from B, through the relay
                d = Node(name="d", transport=Unreachable(b_port), **FAST)
                d.relay.add_route(
                    ("127.0.0.1", b_port), relay=f"127.0.0.1:{relay.port}", node_id=b.node_id
                )
                async with d:
                    assert await d.sync_conversation(peer_b, broadcast) >= 2
                    assert any(SECRET_TASK in repr(e) for e in d.conversation(broadcast))
                # a team task granted to B, the worker behind the relay
                async with Team(a) as team, Worker(b) as worker:

                    @worker.task
                    async def run(assignment: Assignment) -> str:
                        return f"b did {assignment.title}"

                    task = await team.offer("the release notes", requires=["python"])
                    assert await team.wait(task, timeout=10) == "b did the release notes"
    stats = relay.relay.statistics()
    assert stats is not None
    assert stats.circuits_total >= 2
    # The relay carried the ask (it went to B only through circuits) yet never saw its text.
    assert len(recording.seen) > 1000
    assert b"connect" in recording.seen  # the tap sees what the relay can read...
    assert SECRET_TASK.encode() not in recording.seen  # ...and the ask is not in it
    assert b"nightjar" not in recording.seen


async def test_with_a_secret_only_members_reserve_or_open_circuits(anyio_backend: str) -> None:
    b_port = free_port()
    relay = Node(name="relay", relay=True, secret="members", **FAST)
    async with relay:
        b = private_node(relay, b_port, secret="members")
        async with b:
            with anyio.fail_after(10):
                await b.relay.wait_reserved()
            where = ("127.0.0.1", relay.port)
            # a non-member: refused in the handshake with the relay
            with pytest.raises(HandshakeError):
                await open_circuit(
                    TcpTransport(), where, b.node_id, Identity.generate(), Keyring(), timeout=5
                )
            with pytest.raises(HandshakeError):
                await open_circuit(TcpTransport(), where, b.node_id, Identity.generate(),
                                   Keyring.from_value("guess"), timeout=5)  # fmt: skip
            outsider = Node(name="x", relays=[f"127.0.0.1:{relay.port}"], secret="other",
                            **FAST)  # fmt: skip
            async with outsider:
                await until(lambda: bool(outsider.relay.states()[0].last_error))
                assert not outsider.relay.states()[0].reserved
            assert relay.relay.service is not None
            assert relay.relay.service.reserved() == [b.node_id]
            # a member gets through
            circuit = await open_circuit(TcpTransport(), where, b.node_id, Identity.generate(),
                                         Keyring.from_value("members"), timeout=5)  # fmt: skip
            await circuit.aclose()


async def test_the_reservation_comes_back_when_the_relay_restarts(anyio_backend: str) -> None:
    relay_port = free_port()
    b = Node(name="b", relays=[f"127.0.0.1:{relay_port}"], **FAST)
    async with b:
        async with Node(name="relay", port=relay_port, relay=True, **FAST):
            with anyio.fail_after(10):
                await b.relay.wait_reserved()
        await until(lambda: not b.relay.states()[0].reserved)
        restarted = Node(name="relay", port=relay_port, relay=True, **FAST)
        async with restarted:
            started = anyio.current_time()
            with anyio.fail_after(5):
                await b.relay.wait_reserved()
            assert anyio.current_time() - started < 5
            assert restarted.relay.service is not None
            assert restarted.relay.service.reserved() == [b.node_id]


async def test_a_relay_altering_circuit_bytes_is_caught_end_to_end(anyio_backend: str) -> None:
    relay = Node(name="relay", relay=True, **FAST)
    async with relay:
        Recording(relay, tamper_after=2000)
        b = Node(name="b", relays=[f"127.0.0.1:{relay.port}"], **FAST)
        stored: list[bytes] = []

        @b.endpoint("store", publish=False)
        async def store(value: bytes) -> int:
            stored.append(value)
            return len(value)

        async with b:
            with anyio.fail_after(10):
                await b.relay.wait_reserved()
            via = RelayTransport()
            via.add_route(("127.0.0.1", b.port), relay=f"127.0.0.1:{relay.port}", node_id=b.node_id)
            with anyio.fail_after(10), pytest.raises(ConnectionLost):
                await Client("127.0.0.1", b.port, transport=via).call("store", b"z" * 100_000)
            assert stored == []  # nothing forged reached the handler


async def test_two_private_nodes_reach_each_other_through_the_relay(anyio_backend: str) -> None:
    b_port, c_port = free_port(), free_port()
    relay = Node(name="relay", relay=True, transport=Unreachable(b_port, c_port), **FAST)
    async with relay:
        where = f"127.0.0.1:{relay.port}"
        b = private_node(relay, b_port, transport=Unreachable(b_port, c_port))
        c = Node(
            name="c", port=c_port, relays=[where], seeds=[where],
            transport=Unreachable(b_port, c_port), **FAST,
        )  # fmt: skip

        @c.endpoint("whoami", publish=False)
        async def whoami() -> str:
            return "c"

        for node in (relay, b, c):
            node.relay.add_route(("127.0.0.1", b_port), relay=where, node_id=b.node_id)
            node.relay.add_route(("127.0.0.1", c_port), relay=where, node_id=c.node_id)
        async with b, c:
            with anyio.fail_after(10):
                await b.relay.wait_reserved()
                await c.relay.wait_reserved()
            await until(lambda: all(len(n.peers) == 2 for n in (relay, b, c)))
            assert await c.call_peer(c.peers[b.node_id], "whoami") == "b"
            assert await b.call_peer(b.peers[c.node_id], "whoami") == "c"
            broadcast = await c.broadcast("synapse.ask", "the plan", context={})
            replies = [r async for r in c.iter_replies(broadcast, timeout=10)]
            assert [r.result for r in replies if r.peer.id == b.node_id] == ["b read the plan"]
