"""Identifiers: node ids and event ids (64 hex), nonces (UUIDv7 strings), reply ids."""

from __future__ import annotations

import hashlib
import os
import time
import uuid

__all__ = ["new_nonce", "random_id", "reply_event_id"]


def random_id() -> str:
    """A fresh 64-hex identifier (``sha256`` of 16 random bytes, as synapse-p2p 2.5.0)."""
    return hashlib.sha256(os.urandom(16)).hexdigest()


def new_nonce() -> str:
    """A broadcast nonce / task id: a UUIDv7 string (time-ordered), on every Python version."""
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (millis & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version 7
    value |= ((rand >> 64) & 0xFFF) << 64  # 12 random bits
    value |= 0b10 << 62  # RFC 4122 variant
    value |= rand & ((1 << 62) - 1)
    return str(uuid.UUID(int=value))


def reply_event_id(nonce: str, replier_id: str) -> str:
    """The one identity of ``replier_id``'s reply to broadcast ``nonce`` on every node, so a
    reply synced from several peers is stored once."""
    return hashlib.sha256(f"reply\x00{nonce}\x00{replier_id}".encode()).hexdigest()
