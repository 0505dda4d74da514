"""Validation of Node settings, seed parsing and address helpers."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from typing import Any

import anyio

from .._validate import (
    check_bool,
    check_int,
    check_optional_seconds,
    check_optional_str,
    check_seconds,
    check_str,
    format_address,
)

__all__ = [
    "DEFAULT_SEED_PORT",
    "check_bool",
    "check_int",
    "check_optional_seconds",
    "check_optional_str",
    "check_seconds",
    "check_str",
    "format_address",
    "parse_seed",
    "parse_seeds",
    "resolve_advertise",
]

DEFAULT_SEED_PORT = 9999
_WILDCARDS = {"0.0.0.0", "::", "", "*"}


def parse_seed(seed: Any) -> tuple[str, int]:
    """``"host:port"``, ``"host"`` (port 9999), ``(host, port)``, ``"[v6]:port"`` or a bare
    IPv6 literal -> ``(host, port)``; raises ``ValueError`` naming the seed."""
    if isinstance(seed, tuple | list):
        if len(seed) != 2:
            raise ValueError(f"seed {seed!r} must be a (host, port) pair")
        host, port = seed
        if not isinstance(host, str) or not host:
            raise ValueError(f"seed {seed!r}: host must be a non-empty string")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise ValueError(f"seed {seed!r}: port must be an int in 1..65535")
        return host.strip("[]"), port
    if not isinstance(seed, str):
        raise TypeError(f"seed must be a string or a (host, port) tuple, got {type(seed).__name__}")
    text = seed.strip()
    if not text:
        raise ValueError("seed must not be empty")
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not host:
            raise ValueError(f"seed {seed!r}: unterminated IPv6 literal")
        if not rest:
            return host, DEFAULT_SEED_PORT
        if not rest.startswith(":"):
            raise ValueError(f"seed {seed!r}: expected ':port' after ']'")
        port_text = rest[1:]
    elif text.count(":") > 1:  # bare IPv6 literal, no port
        try:
            ipaddress.IPv6Address(text)
        except ValueError:
            raise ValueError(f"seed {seed!r}: write IPv6 with a port as '[addr]:port'") from None
        return text, DEFAULT_SEED_PORT
    elif ":" in text:
        host, _, port_text = text.partition(":")
        if not host:
            raise ValueError(f"seed {seed!r}: missing host")
    else:
        return text, DEFAULT_SEED_PORT
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"seed {seed!r}: port {port_text!r} is not a number") from None
    if not 0 < port < 65536:
        raise ValueError(f"seed {seed!r}: port must be in 1..65535")
    return host, port


def parse_seeds(seeds: Iterable[Any] | None) -> list[tuple[str, int]]:
    if seeds is None:
        return []
    if isinstance(seeds, str | tuple):
        seeds = [seeds]
    return [parse_seed(seed) for seed in seeds]


def _route_ip(family: socket.AddressFamily, probe: str) -> str | None:
    # A UDP connect() only asks the kernel for a route; no packet is sent.
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect((probe, 9))
            return str(sock.getsockname()[0])
    except OSError:
        return None


def _lan_ip(ipv6: bool) -> str:
    if ipv6:
        found = _route_ip(socket.AF_INET6, "2001:db8::1")
        if found:
            return found
    found = _route_ip(socket.AF_INET, "192.0.2.1")  # TEST-NET-1: selects the default route
    if not found:
        try:
            found = socket.gethostbyname(socket.gethostname())
        except OSError:
            found = "127.0.0.1"
    return "127.0.0.1" if found.startswith("127.") else found


async def resolve_advertise(advertise: str | None, bind: str) -> str:
    """The address published to peers: ``advertise`` verbatim unless ``"auto"``/``None``;
    then the LAN address for a wildcard bind, else ``bind``."""
    if advertise not in (None, "auto"):
        return advertise
    if bind in _WILDCARDS:
        return await anyio.to_thread.run_sync(_lan_ip, bind == "::")
    return bind
