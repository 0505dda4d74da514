"""An in-process transport: nodes connected by memory streams, no sockets.

Useful to run many nodes in one process and, above all, on virtual time (trio's
``MockClock(autojump_threshold=0)``): with no real I/O, the clock only jumps when every task is
truly waiting, so a 300 s timeout takes milliseconds and nothing fires early.
"""

from __future__ import annotations

import itertools
from typing import Any

import anyio
import anyio.lowlevel
from anyio.abc import ByteStream, Listener, TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ..errors import ConnectError

__all__ = ["MemoryNetwork", "MemoryTransport"]


class _MemoryByteStream(ByteStream):
    def __init__(
        self,
        network: MemoryNetwork,
        send: MemoryObjectSendStream[bytes],
        receive: MemoryObjectReceiveStream[bytes],
        local: tuple[str, int],
        remote: tuple[str, int],
    ) -> None:
        self._network = network
        self._send = send
        self._receive = receive
        self._local = local
        self._remote = remote

    async def receive(self, max_bytes: int = 65536) -> bytes:
        try:
            return await self._receive.receive()
        except anyio.EndOfStream:
            raise
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            raise anyio.ClosedResourceError from None

    async def send(self, item: bytes) -> None:
        if self._network.cut_off(self._local[0], self._remote[0]):
            await self.aclose()
            raise anyio.BrokenResourceError("network partition")
        try:
            await self._send.send(bytes(item))
        except anyio.ClosedResourceError:
            raise
        except anyio.BrokenResourceError:
            raise anyio.BrokenResourceError from None

    async def send_eof(self) -> None:
        await self._send.aclose()

    def _close(self) -> None:
        self._send.close()
        self._receive.close()

    async def aclose(self) -> None:
        await self._send.aclose()
        await self._receive.aclose()

    @property
    def extra_attributes(self) -> dict[Any, Any]:
        from anyio.abc import SocketAttribute

        return {
            SocketAttribute.remote_address: lambda: self._remote,
            SocketAttribute.local_address: lambda: self._local,
            SocketAttribute.remote_port: lambda: self._remote[1],
            SocketAttribute.local_port: lambda: self._local[1],
        }


class _MemoryListener(Listener[ByteStream]):
    def __init__(self, network: MemoryNetwork, address: tuple[str, int]) -> None:
        self._network = network
        self.address = address
        self._send, self._receive = anyio.create_memory_object_stream[ByteStream](64)

    async def accept(self) -> ByteStream:
        try:
            return await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            raise anyio.ClosedResourceError from None

    async def serve(self, handler: Any, task_group: TaskGroup | None = None) -> None:
        raise NotImplementedError("use accept()")

    async def aclose(self) -> None:
        self._network._listeners.pop(self.address, None)
        self._send.close()
        while True:  # connections never accepted are refused: their dialers read the end
            try:
                pending = self._receive.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                break
            assert isinstance(pending, _MemoryByteStream)
            pending._close()
        self._receive.close()

    @property
    def extra_attributes(self) -> dict[Any, Any]:
        from anyio.abc import SocketAttribute

        return {
            SocketAttribute.local_address: lambda: self.address,
            SocketAttribute.local_port: lambda: self.address[1],
        }


class MemoryNetwork:
    """A set of addresses reachable through :class:`MemoryTransport` objects.

    ``isolated`` holds hosts cut off from every other host: connecting to or from them fails
    and established connections break on their next send. A test may change it at any time.
    """

    def __init__(self) -> None:
        self._listeners: dict[tuple[str, int], _MemoryListener] = {}
        self._ports = itertools.count(20000)
        self.isolated: set[str] = set()
        self.connections = 0

    def cut_off(self, host_a: str, host_b: str) -> bool:
        return host_a != host_b and (host_a in self.isolated or host_b in self.isolated)

    def transport(self, host: str = "10.0.0.1") -> MemoryTransport:
        """A transport whose outgoing connections come from ``host``."""
        return MemoryTransport(self, host)


class MemoryTransport:
    """:class:`~synapse_p2p.transport.Transport` over a :class:`MemoryNetwork`."""

    def __init__(self, network: MemoryNetwork, host: str) -> None:
        self.network = network
        self.host = host

    async def connect(self, host: str, port: int, *, timeout: float) -> ByteStream:
        await anyio.lowlevel.checkpoint()
        address = (host, port)
        listener = self.network._listeners.get(address)
        if listener is None or self.network.cut_off(self.host, host):
            raise ConnectError(
                f"could not connect to {host}:{port}: connection refused", refused=True
            )
        local = (self.host, next(self.network._ports))
        a_send, b_receive = anyio.create_memory_object_stream[bytes](64)
        b_send, a_receive = anyio.create_memory_object_stream[bytes](64)
        client = _MemoryByteStream(self.network, a_send, a_receive, local, address)
        server = _MemoryByteStream(self.network, b_send, b_receive, address, local)
        try:
            listener._send.send_nowait(server)
        except (anyio.WouldBlock, anyio.ClosedResourceError, anyio.BrokenResourceError):
            raise ConnectError(f"could not connect to {host}:{port}: backlog full") from None
        self.network.connections += 1
        return client

    async def listen(self, host: str | None, port: int) -> list[Listener[ByteStream]]:
        await anyio.lowlevel.checkpoint()
        host = host if host not in (None, "", "0.0.0.0", "::") else self.host
        assert host is not None
        if port == 0:
            port = next(self.network._ports)
        address = (host, port)
        if address in self.network._listeners:
            raise OSError(98, f"address already in use: {host}:{port}")
        listener = _MemoryListener(self.network, address)
        self.network._listeners[address] = listener
        return [listener]
