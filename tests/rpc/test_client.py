"""Client behaviour and its documented exceptions, on real loopback sockets."""

from __future__ import annotations

import socket

import anyio
import pytest

from synapse_p2p import Client, Node, Peer, RemoteError
from synapse_p2p.errors import (
    CallTimeout,
    ConnectError,
    ConnectionLost,
    ProtocolError,
    SynapseError,
)
from synapse_p2p.rpc import ConnectionPool, PlainDialer
from synapse_p2p.transport import TcpTransport
from tests.helpers import ipv6_loopback_available

pytestmark = pytest.mark.anyio


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_one_shot_call(calc_node: Node) -> None:
    assert await Client("127.0.0.1", calc_node.port).call("sum", 1, 2) == 3
    assert await Client("127.0.0.1", calc_node.port).call("sum", a=1, b=5) == 6


async def test_connection_refused_is_connect_error(anyio_backend: str) -> None:
    port = free_port()
    with pytest.raises(ConnectError, match=f"127.0.0.1:{port}") as info:
        await Client("127.0.0.1", port).call("x")
    assert isinstance(info.value, ConnectionError)
    assert isinstance(info.value, SynapseError)
    assert info.value.refused  # nothing listens there: a stopped or crashed node
    with pytest.raises(ConnectError):
        async with Client("127.0.0.1", port):
            pass


async def test_connect_timeout(anyio_backend: str) -> None:
    # A listener that never accepts, with its backlog full: further SYNs go unanswered.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = []
        try:
            for _ in range(8):
                s = socket.socket()
                s.setblocking(False)
                try:
                    s.connect(("127.0.0.1", port))
                except BlockingIOError:
                    pass
                fillers.append(s)
            client = Client("127.0.0.1", port, connect_timeout=0.3, timeout=5)

            async def connect_until_refused() -> None:
                for _ in range(4):  # the kernel may still complete a couple of handshakes
                    async with client:
                        pass

            with (
                anyio.fail_after(5),
                pytest.raises(ConnectError, match=r"within 0\.3 s") as info,
            ):
                await connect_until_refused()
            assert not info.value.refused  # no answer in time: it may well be alive
        finally:
            for s in fillers:
                s.close()


async def test_call_timeout(anyio_backend: str) -> None:
    node = Node(bind="127.0.0.1")

    @node.endpoint
    async def slow() -> None:
        await anyio.sleep_forever()

    async with node:
        with pytest.raises(CallTimeout, match="'slow'") as info:
            await Client("127.0.0.1", node.port, timeout=0.2).call("slow")
        assert isinstance(info.value, TimeoutError)
        async with Client("127.0.0.1", node.port, timeout=0.2) as client:
            with pytest.raises(CallTimeout):
                await client.call("slow")
            # The connection is still usable after a timed-out call.
            assert await client.call("_synapse.ping") == "pong"


async def test_server_gone_mid_call_is_connection_lost(anyio_backend: str) -> None:
    node = Node(bind="127.0.0.1")
    entered = anyio.Event()

    @node.endpoint
    async def hang() -> None:
        entered.set()
        await anyio.sleep_forever()

    errors: list[BaseException] = []
    async with anyio.create_task_group() as outer:
        node_scope = anyio.CancelScope()

        async def run_node(*, task_status: anyio.abc.TaskStatus[None]) -> None:
            with node_scope:
                await node.serve(task_status=task_status)

        await outer.start(run_node)
        async with Client("127.0.0.1", node.port) as client:

            async def caller() -> None:
                try:
                    await client.call("hang")
                except BaseException as exc:
                    errors.append(exc)

            async with anyio.create_task_group() as tg:
                tg.start_soon(caller)
                with anyio.fail_after(5):
                    await entered.wait()
                node_scope.cancel()
    assert len(errors) == 1
    assert isinstance(errors[0], ConnectionLost)


async def test_session_client_reconnects_after_a_restart(anyio_backend: str) -> None:
    port = free_port()
    async with anyio.create_task_group() as tg:
        first = anyio.CancelScope()

        async def run_first(*, task_status: anyio.abc.TaskStatus[None]) -> None:
            with first:
                await Node(bind="127.0.0.1", port=port).serve(task_status=task_status)

        await tg.start(run_first)
        async with Client("127.0.0.1", port) as client:
            assert await client.call("_synapse.ping") == "pong"
            first.cancel()
            # The node is gone: the call fails until a node listens on the port again.
            with anyio.fail_after(5):
                while True:
                    try:
                        await client.call("_synapse.ping")
                    except (ConnectionLost, ConnectError):
                        break
                    await anyio.sleep(0.01)
            async with Node(bind="127.0.0.1", port=port):
                assert await client.call("_synapse.ping") == "pong"


async def test_a_pooled_connection_gone_stale_is_replaced_and_the_call_sent_again(
    anyio_backend: str,
) -> None:
    """The node behind a pooled connection restarts while the connection sits idle. A call
    whose write fails on it (the old socket answers with a reset) cannot have been read by
    anyone: it is made once more on a new connection, and answered."""
    port = free_port()

    def sizer() -> Node:
        node = Node(bind="127.0.0.1", port=port, heartbeat_interval=None)

        @node.endpoint("size")
        async def size(blob: str) -> int:
            return len(blob)

        return node

    pool = ConnectionPool()
    async with anyio.create_task_group() as tg:
        await tg.start(pool.run)
        first, stopped = anyio.CancelScope(), anyio.Event()

        async def run_first(*, task_status: anyio.abc.TaskStatus[None]) -> None:
            with first:
                await sizer().serve(task_status=task_status)
            stopped.set()

        await tg.start(run_first)
        assert await pool.call("127.0.0.1", port, "size", ["x"]) == 1
        first.cancel()  # the node stops: its end of the pooled connection is closed
        await stopped.wait()
        async with sizer():
            blob = "x" * 3_000_000  # more than the socket takes at once: the write fails
            assert await pool.call("127.0.0.1", port, "size", [blob], timeout=10) == len(blob)
        stats = pool.statistics()
        assert (stats.stale, stats.connects) == (1, 2)
        tg.cancel_scope.cancel()


class GatedDialer:
    """Plaintext connections that open only once ``gate`` is set: a link slower to open than
    the calls on it allow."""

    def __init__(self, fail: bool = False) -> None:
        self.gate = anyio.Event()
        self.fail = fail
        self.dials = 0

    async def connect(
        self, host: str, port: int, *, timeout: float, expected_node_id: str | None = None
    ) -> tuple[anyio.abc.ByteStream, str | None]:
        self.dials += 1
        await self.gate.wait()
        if self.fail:
            raise ConnectError(f"cannot connect to {host}:{port}: refused", refused=True)
        return await PlainDialer(TcpTransport()).connect(host, port, timeout=timeout)


async def test_a_connection_slower_to_open_than_its_calls_allow_still_joins_the_pool(
    calc_node: Node,
) -> None:
    """Calls that give up while their connection is being opened leave it to open (one
    dial for all of them), and the next call uses it: a short deadline on a slow link (a
    gossip push, a probe) still gets a connection. Before, each call dialed again and
    threw the half-made connection away when its time ran out."""
    dialer = GatedDialer()
    pool = ConnectionPool(dialer=dialer)
    async with anyio.create_task_group() as tg:
        await tg.start(pool.run)
        for _ in range(3):
            with pytest.raises(CallTimeout):
                await pool.call("127.0.0.1", calc_node.port, "sum", [1, 2], timeout=0.05)
        assert dialer.dials == 1
        dialer.gate.set()
        assert await pool.call("127.0.0.1", calc_node.port, "sum", [1, 2], timeout=10) == 3
        assert await pool.call("127.0.0.1", calc_node.port, "sum", [2, 2], timeout=10) == 4
        stats = pool.statistics()
        assert (dialer.dials, stats.connects, stats.open_connections) == (1, 1, 1)
        tg.cancel_scope.cancel()


async def test_every_call_waiting_on_a_connection_that_fails_to_open_gets_the_error(
    anyio_backend: str,
) -> None:
    """Three calls wait on one opening that fails: each gets its error (one dial); the
    failure is not remembered, so the next call dials again."""
    dialer = GatedDialer(fail=True)
    pool = ConnectionPool(dialer=dialer)
    port = free_port()
    errors: list[ConnectError] = []

    async def one() -> None:
        try:
            await pool.call("127.0.0.1", port, "sum", [1, 2], timeout=10)
        except ConnectError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        await tg.start(pool.run)
        async with anyio.create_task_group() as calls:
            for _ in range(3):
                calls.start_soon(one)
            await anyio.wait_all_tasks_blocked()
            dialer.gate.set()
        assert len(errors) == 3
        assert all(e.refused for e in errors)
        assert dialer.dials == 1
        dialer.gate = anyio.Event()  # the next call dials again (nothing is remembered)
        dialer.gate.set()
        with pytest.raises(ConnectError):
            await pool.call("127.0.0.1", port, "sum", [1, 2], timeout=10)
        assert dialer.dials == 2
        tg.cancel_scope.cancel()


async def test_client_from_peer_and_peers(calc_node: Node) -> None:
    peer = Peer(id="x", address="127.0.0.1", port=calc_node.port)
    assert await Client.from_peer(peer).peers() == []

    @calc_node.endpoint("_synapse.peers", publish=False)
    async def bad_peers() -> str:
        return "nope"

    with pytest.raises(ProtocolError, match="invalid peer list"):
        await Client.from_peer(peer).peers()


@pytest.mark.skipif(not ipv6_loopback_available(), reason="IPv6 loopback (::1) not available")
async def test_ipv6(anyio_backend: str) -> None:
    async with Node(bind="::1", name="v6") as node:
        assert node.address == "::1"
        seen: list[str] = []

        @node.endpoint
        async def caller_ip(connection: object) -> str:
            ip = getattr(connection, "ip", "")
            seen.append(ip)
            return ip

        assert await Client("::1", node.port).call("caller_ip") == "::1"
        async with Client("[::1]", node.port) as client:
            assert await client.call("_synapse.ping") == "pong"
        assert seen == ["::1"]


async def test_client_argument_validation() -> None:
    with pytest.raises(ValueError, match="port"):
        Client("127.0.0.1", 0)
    with pytest.raises(ValueError, match="timeout"):
        Client("127.0.0.1", 1, timeout=0)
    with pytest.raises(TypeError, match="max_download_size"):
        Client("127.0.0.1", 1, max_download_size=1.5)  # type: ignore[arg-type]


async def test_pool_reuses_one_connection_per_node(calc_node: Node) -> None:
    pool = ConnectionPool()
    async with anyio.create_task_group() as tg:
        await tg.start(pool.run)
        results = []

        async def one(i: int) -> None:
            results.append(await pool.call("127.0.0.1", calc_node.port, "sum", [i, 1]))

        async with anyio.create_task_group() as inner:
            for i in range(20):
                inner.start_soon(one, i)
        assert sorted(results) == [i + 1 for i in range(20)]
        stats = pool.statistics()
        assert stats.connects == 1
        assert stats.open_connections == 1
        info = await pool.session_info("127.0.0.1", calc_node.port)
        assert info["node_id"] == calc_node.node_id
        assert info["protocol"] == 1
        with pytest.raises(RemoteError):
            await pool.call("127.0.0.1", calc_node.port, "nope")
        tg.cancel_scope.cancel()
