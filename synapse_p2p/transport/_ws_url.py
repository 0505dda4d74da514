"""``ws://`` and ``wss://`` URLs: parsed once into a frozen value."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from .._validate import format_address

__all__ = ["WebSocketUrl", "is_websocket_url"]


def is_websocket_url(value: Any) -> bool:
    """Whether ``value`` is a string starting with ``ws://`` or ``wss://`` (any case)."""
    return isinstance(value, str) and value.strip().lower().startswith(("ws://", "wss://"))


@dataclass(frozen=True, slots=True)
class WebSocketUrl:
    """A WebSocket endpoint: ``secure`` (``wss``), ``host``, ``port`` and ``path``.

    The port defaults to 80 (``ws``) or 443 (``wss``); the path to ``/``. Port 0 is allowed
    where the URL is a listen address (any free port).
    """

    secure: bool
    host: str
    port: int
    path: str = "/"

    @classmethod
    def parse(cls, text: Any, *, listen: bool = False) -> WebSocketUrl:
        """Parse ``ws://host[:port][/path]`` (``wss://`` alike); raise ``ValueError`` naming
        the URL (``TypeError`` if it is not a string). User info, queries and fragments are
        refused; ``listen=True`` allows port 0."""
        if not isinstance(text, str):
            raise TypeError(f"a WebSocket URL must be a string, got {type(text).__name__}")
        raw = text.strip()
        try:
            parts = urlsplit(raw)
            port = parts.port
        except ValueError as exc:
            raise ValueError(f"WebSocket URL {text!r}: {exc}") from None
        scheme = parts.scheme.lower()
        if scheme not in ("ws", "wss"):
            raise ValueError(f"WebSocket URL {text!r}: the scheme must be ws:// or wss://")
        if not parts.hostname:
            raise ValueError(f"WebSocket URL {text!r}: missing host")
        if parts.username is not None or parts.password is not None:
            raise ValueError(f"WebSocket URL {text!r}: user info is not supported")
        if parts.query or parts.fragment or raw.endswith(("?", "#")):
            raise ValueError(f"WebSocket URL {text!r}: queries and fragments are not supported")
        secure = scheme == "wss"
        if port is None:
            port = 443 if secure else 80
        elif port == 0 and not listen:
            raise ValueError(f"WebSocket URL {text!r}: port must be in 1..65535")
        return cls(secure, parts.hostname, port, parts.path or "/")

    @property
    def scheme(self) -> str:
        return "wss" if self.secure else "ws"

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)``: how the rest of the node names this endpoint."""
        return self.host, self.port

    @property
    def host_header(self) -> str:
        """The ``Host`` header a client sends (the port only where it is not the default)."""
        if self.port == (443 if self.secure else 80):
            return f"[{self.host}]" if ":" in self.host else self.host
        return format_address(self.host, self.port)

    def with_port(self, port: int) -> WebSocketUrl:
        return replace(self, port=port)

    def __str__(self) -> str:
        return f"{self.scheme}://{format_address(self.host, self.port)}{self.path}"
