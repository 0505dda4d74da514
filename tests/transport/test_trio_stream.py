"""The lean trio TCP stream (``transport/_trio.py``)."""

from __future__ import annotations

import gc
import socket

import trio
import trio.testing

from synapse_p2p.transport._trio import TrioSocketStream


def test_an_idle_receive_holds_no_exception() -> None:
    """A receive waiting for data keeps no ``BlockingIOError`` (and its traceback) alive: a
    swarm's idle connections each have one waiting."""

    async def main() -> None:
        a, b = socket.socketpair()
        a.setblocking(False)
        b.setblocking(False)
        stream = TrioSocketStream(a)
        got: list[bytes] = []
        async with trio.open_nursery() as nursery:

            async def read() -> None:
                got.append(await stream.receive())

            nursery.start_soon(read)
            await trio.testing.wait_all_tasks_blocked()
            gc.collect()
            held = [
                o
                for o in gc.get_objects()
                if isinstance(o, BlockingIOError)
                and o.__traceback__ is not None
                and o.__traceback__.tb_frame.f_code is TrioSocketStream.receive.__code__
            ]
            assert held == []
            b.send(b"hello")
        assert got == [b"hello"]
        await stream.aclose()
        b.close()

    trio.run(main)
