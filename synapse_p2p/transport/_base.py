from __future__ import annotations

from typing import Protocol, runtime_checkable

from anyio.abc import ByteStream, Listener


@runtime_checkable
class Transport(Protocol):
    """How the RPC layer reaches peers and accepts connections.

    ``connect`` returns a connected byte stream or raises
    :class:`~synapse_p2p.errors.ConnectError` (refused, unreachable, timed out). ``listen``
    binds and returns one listener per bound socket (e.g. IPv4 and IPv6); the caller accepts
    from them and owns closing them.
    """

    async def connect(self, host: str, port: int, *, timeout: float) -> ByteStream: ...

    async def listen(self, host: str | None, port: int) -> list[Listener[ByteStream]]: ...
