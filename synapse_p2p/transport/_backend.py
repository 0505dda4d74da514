"""Which event loop is running, and its clock as a cheap callable (backend-specific)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import ModuleType
from typing import Any

import anyio
from anyio.abc import Listener, SocketListener, SocketStream, TaskGroup

sniffio: ModuleType | None
try:
    import sniffio
except ImportError:  # pragma: no cover - trio depends on it
    sniffio = None

__all__ = ["WrappedListener", "current_clock", "current_library", "on_asyncio"]


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


class WrappedListener(Listener[SocketStream]):
    """Accepts a backend's lean streams on an anyio TCP listener (which keeps owning and
    closing the socket); subclasses say how to ``accept``."""

    def __init__(self, listener: SocketListener) -> None:
        self._listener = listener

    async def accept(self) -> SocketStream:
        raise NotImplementedError

    async def serve(self, handler: Any, task_group: TaskGroup | None = None) -> None:
        async with anyio.create_task_group() as tg:
            group = task_group or tg
            while True:
                stream = await self.accept()
                group.start_soon(handler, stream)

    async def aclose(self) -> None:
        await self._listener.aclose()

    @property
    def extra_attributes(self) -> Any:
        return self._listener.extra_attributes
