"""Which event loop is running, and its clock as a cheap callable (backend-specific)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import ModuleType

import anyio

sniffio: ModuleType | None
try:
    import sniffio
except ImportError:  # pragma: no cover - trio depends on it
    sniffio = None

__all__ = ["current_clock", "current_library", "on_asyncio"]


def current_library() -> str | None:
    """``"asyncio"``, ``"trio"`` or ``None``: the running event loop, detected the way anyio
    does."""
    if sniffio is None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return None
        return "asyncio"
    try:
        return str(sniffio.current_async_library())
    except sniffio.AsyncLibraryNotFoundError:
        return None


def on_asyncio() -> bool:
    """True when running under asyncio."""
    return current_library() == "asyncio"


def current_clock() -> Callable[[], float]:
    """The running event loop's clock, the one ``anyio.current_time()`` reads (virtual time
    included), as a callable that skips anyio's per-call backend lookup: for objects that
    read the time on every message and live on one event loop."""
    library = current_library()
    if library == "asyncio":
        return asyncio.get_running_loop().time
    if library == "trio":
        import trio

        return trio.current_time
    return anyio.current_time
