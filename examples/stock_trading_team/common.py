"""Settings the four programs share."""

from __future__ import annotations

import os

SWARM = "paper-trading"
DEFAULT_EXCHANGE = "127.0.0.1:9100"


def exchange_from_env() -> str:
    """The exchange's ``host:port`` (the team's seed), from ``SYNAPSE_EXCHANGE``."""
    return os.environ.get("SYNAPSE_EXCHANGE", DEFAULT_EXCHANGE)


def bind_from_env() -> str:
    """The address to listen on, from ``SYNAPSE_BIND`` (default 127.0.0.1, loopback only)."""
    return os.environ.get("SYNAPSE_BIND", "127.0.0.1")


def split(address: str) -> tuple[str, int]:
    """``"host:port"`` as ``(host, port)``."""
    host, port = address.rsplit(":", 1)
    return host, int(port)
