from __future__ import annotations

import socket
from typing import Any

import anyio
from anyio.abc import ByteStream, Listener, SocketAttribute

from ..errors import ConnectError

__all__ = ["TcpTransport", "remote_address"]


class TcpTransport:
    """Plain TCP over IPv4 and IPv6 (anyio streams, ``TCP_NODELAY`` on)."""

    async def connect(self, host: str, port: int, *, timeout: float) -> ByteStream:
        """Open a connection within ``timeout`` seconds, or raise ``ConnectError``."""
        try:
            with anyio.fail_after(timeout):
                return await anyio.connect_tcp(host, port)
        except TimeoutError:
            raise ConnectError(
                f"could not connect to {_fmt(host, port)} within {timeout:g} s"
            ) from None
        except OSError as exc:
            reason = exc.strerror or str(exc) or type(exc).__name__
            raise ConnectError(f"could not connect to {_fmt(host, port)}: {reason}") from None

    async def listen(self, host: str | None, port: int) -> list[Listener[ByteStream]]:
        """Bind ``host:port`` (``None`` or ``""`` = every interface, both families)."""
        multi = await anyio.create_tcp_listener(
            local_host=host or None, local_port=port, backlog=1024
        )
        return list(multi.listeners)


def _fmt(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def remote_address(stream: ByteStream) -> tuple[str, int]:
    """The peer's ``(ip, port)`` of a socket stream (IPv6 flow info dropped); ``("", 0)`` if
    the stream is not a socket."""
    addr: Any = stream.extra(SocketAttribute.remote_address, None)
    if isinstance(addr, tuple) and len(addr) >= 2:
        return str(addr[0]), int(addr[1])
    return "", 0


def local_port(listener: Listener[Any]) -> int:
    return int(listener.extra(SocketAttribute.local_port))


def listener_family(listener: Listener[Any]) -> socket.AddressFamily:
    return listener.extra(SocketAttribute.family)
