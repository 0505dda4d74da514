"""Byte-stream transports under the RPC layer.

The RPC layer only needs :class:`anyio.abc.ByteStream` objects: a transport knows how to open
one to ``(host, port)`` and how to listen for them. TCP is the default (with lean streams of
its own for asyncio and trio, see ``_asyncio.py`` and ``_trio.py``); an authenticated,
encrypted channel or a WebSocket relay can be slotted in by implementing :class:`Transport`
(wrapping streams like ``anyio.streams.tls.TLSStream`` does) without touching the RPC code.
"""

from __future__ import annotations

from ._base import Transport
from ._memory import MemoryNetwork, MemoryTransport
from ._tcp import TcpTransport, remote_address

__all__ = ["MemoryNetwork", "MemoryTransport", "TcpTransport", "Transport", "remote_address"]
