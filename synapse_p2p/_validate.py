"""Argument checks shared by every public constructor, and the one address formatter.

Each check raises ``TypeError`` for a value of the wrong type and ``ValueError`` for a value
out of range, with a message that names the parameter, and returns the value normalised
(``float`` for seconds). Constructors call them eagerly, so a bad setting fails where it is
written, not later inside a running node.
"""

from __future__ import annotations

import math
import re
from numbers import Real
from typing import Any

__all__ = [
    "check_bool",
    "check_finite",
    "check_int",
    "check_optional_seconds",
    "check_optional_str",
    "check_seconds",
    "check_str",
    "check_swarm_name",
    "format_address",
]


def check_str(name: str, value: Any, *, allow_empty: bool = True, max_length: int = 4096) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, got {type(value).__name__}")
    if not allow_empty and not value:
        raise ValueError(f"{name} must not be empty")
    if len(value) > max_length:
        raise ValueError(f"{name} must be at most {max_length} characters")
    return value


def check_optional_str(name: str, value: Any, *, max_length: int = 256) -> str | None:
    if value is None:
        return None
    return check_str(name, value, max_length=max_length)


_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,251}[A-Za-z0-9])?")


def check_swarm_name(name: str, value: Any) -> str | None:
    """A swarm or team name (or ``None``): 1 to 253 letters, digits, ``.``, ``-`` and ``_``,
    starting and ending with a letter or digit, no ``..`` (so it is also a valid mDNS
    service label, and a DNS-like name such as ``myteam.example.com`` works)."""
    if value is None:
        return None
    text = check_str(name, value, max_length=253)
    if not _NAME.fullmatch(text) or ".." in text:
        raise ValueError(
            f"{name} {value!r} is not a valid name: use 1 to 253 letters, digits, '.', '-' "
            "and '_', starting and ending with a letter or digit (e.g. 'myteam.example.com')"
        )
    return text


def check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


def check_int(name: str, value: Any, *, minimum: int = 0, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum or (maximum is not None and value > maximum):
        upper = f"..{maximum}" if maximum is not None else " or more"
        raise ValueError(f"{name} must be {minimum}{upper}, got {value}")
    return value


def check_finite(name: str, value: Any) -> float:
    """Any finite real number (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a number, not {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return number


def check_seconds(name: str, value: Any, *, allow_inf: bool = False) -> float:
    """A positive number of seconds (infinity only with ``allow_inf``)."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__}")
    number = float(value)
    if math.isnan(number) or number <= 0 or (math.isinf(number) and not allow_inf):
        raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
    return number


def check_optional_seconds(name: str, value: Any, *, allow_inf: bool = False) -> float | None:
    return None if value is None else check_seconds(name, value, allow_inf=allow_inf)


def format_address(host: str, port: int) -> str:
    """``host:port``, with IPv6 literals in brackets (``[::1]:9999``)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
