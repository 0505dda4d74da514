"""The node room: the composition root, built-in endpoints, events and settings."""

from __future__ import annotations

from ._node import AskHandler, Node

__all__ = ["AskHandler", "Node"]
