"""Lines from standard input that can be cancelled (SIGTERM, Ctrl+C) while nothing comes.

The SDK reads stdin in a worker thread, which cancellation has to wait for: a server whose
client keeps stdin open would ignore SIGTERM. This reader waits for the descriptor to be
readable on the event loop instead (trio and asyncio alike), and falls back to a thread it can
abandon where the descriptor cannot be polled (a regular file, say).
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import anyio
import anyio.to_thread

__all__ = ["StdinLines"]

CHUNK = 65_536
#: A "line" longer than this is passed on as it is (the SDK then reports it as unparseable).
MAX_LINE = 64 * 1024 * 1024


class StdinLines:
    """``async for line in StdinLines(fd)``: text lines (``\\n`` kept), until end of input.

    The descriptor is made non-blocking while reading and put back on :meth:`aclose`.
    """

    def __init__(self, fd: int = 0) -> None:
        self.fd = fd
        self._buffer = b""
        self._eof = False
        self._pollable = True
        self._was_blocking = os.get_blocking(fd)
        os.set_blocking(fd, False)

    def __aiter__(self) -> StdinLines:
        return self

    async def _read(self) -> bytes:
        while True:
            if self._pollable:
                try:
                    await anyio.wait_readable(self.fd)
                except (OSError, NotImplementedError, ValueError):
                    self._pollable = False  # e.g. a regular file: epoll refuses it
                    os.set_blocking(self.fd, True)
                    continue
                try:
                    return os.read(self.fd, CHUNK)
                except BlockingIOError:
                    continue
            return await anyio.to_thread.run_sync(os.read, self.fd, CHUNK, abandon_on_cancel=True)

    async def __anext__(self) -> str:
        while b"\n" not in self._buffer and len(self._buffer) < MAX_LINE and not self._eof:
            chunk = await self._read()
            if not chunk:
                self._eof = True
            self._buffer += chunk
        if not self._buffer:
            raise StopAsyncIteration
        line, sep, rest = self._buffer.partition(b"\n")
        if not sep and len(line) > MAX_LINE:
            line, rest = line[:MAX_LINE], line[MAX_LINE:]
        self._buffer = rest
        return line.decode("utf-8", "replace") + sep.decode()

    async def aclose(self) -> None:
        with contextlib.suppress(OSError):
            os.set_blocking(self.fd, self._was_blocking)

    async def __aenter__(self) -> StdinLines:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()
