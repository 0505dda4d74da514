from __future__ import annotations

import socket
from typing import Any

import anyio
from anyio.abc import ByteStream, Listener, SocketAttribute, SocketListener

from .._validate import format_address
from ..errors import ConnectError
from ._asyncio import AsyncioListener, connect_asyncio
from ._backend import WrappedListener, current_library

__all__ = ["TcpTransport", "local_address", "remote_address"]


class TcpTransport:
    """Plain TCP over IPv4 and IPv6, ``TCP_NODELAY`` on, with lean streams for each backend
    (:mod:`._asyncio`, :mod:`._trio`); anyio's own streams under any other."""

    async def connect(self, host: str, port: int, *, timeout: float) -> ByteStream:
        """Open a connection within ``timeout`` seconds, or raise ``ConnectError``."""
        library = current_library()
        try:
            with anyio.fail_after(timeout):
                if library == "asyncio":
                    return await connect_asyncio(host, port)
                if library == "trio":
                    from ._trio import connect_trio

                    return await connect_trio(host, port)
                return await anyio.connect_tcp(host, port)
        except TimeoutError:
            raise ConnectError(
                f"could not connect to {format_address(host, port)} within {timeout:g} s"
            ) from None
        except OSError as exc:
            reason = exc.strerror or str(exc) or type(exc).__name__
            raise ConnectError(
                f"could not connect to {format_address(host, port)}: {reason}",
                refused=_refused(exc),
            ) from None

    async def listen(self, host: str | None, port: int) -> list[Listener[ByteStream]]:
        """Bind ``host:port`` (``None`` or ``""`` = every interface, both families)."""
        multi = await anyio.create_tcp_listener(
            local_host=host or None, local_port=port, backlog=1024
        )
        library = current_library()
        wrap: type[WrappedListener] | None = None
        if library == "asyncio":
            wrap = AsyncioListener
        elif library == "trio":
            from ._trio import TrioListener

            wrap = TrioListener
        return [
            wrap(listener)
            if wrap is not None and isinstance(listener, SocketListener)
            else listener
            for listener in multi.listeners
        ]


def remote_address(stream: ByteStream) -> tuple[str, int]:
    """The peer's ``(ip, port)`` of a socket stream (IPv6 flow info dropped); ``("", 0)`` if
    the stream is not a socket."""
    addr: Any = stream.extra(SocketAttribute.remote_address, None)
    if isinstance(addr, tuple) and len(addr) >= 2:
        return str(addr[0]), int(addr[1])
    return "", 0


def local_address(stream: ByteStream) -> str:
    """This side's IP of a socket stream, ``""`` if the stream is not a socket."""
    addr: Any = stream.extra(SocketAttribute.local_address, None)
    return str(addr[0]) if isinstance(addr, tuple) and addr else ""


def local_port(listener: Listener[Any]) -> int:
    return int(listener.extra(SocketAttribute.local_port))


def listener_family(listener: Listener[Any]) -> socket.AddressFamily:
    return listener.extra(SocketAttribute.family)


def _refused(exc: BaseException) -> bool:
    """Whether every attempt behind ``exc`` (one error, or anyio's "all connection attempts
    failed" with the attempts' errors chained) was refused."""
    seen = 0
    while exc is not None and seen < 16:
        if isinstance(exc, ConnectionRefusedError):
            return True
        nested = getattr(exc, "exceptions", None)
        if isinstance(nested, tuple) and nested:
            return all(_refused(e) for e in nested)
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
        seen += 1
    return False
