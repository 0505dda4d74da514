"""``node.broadcast_changes``: the status now, then after every change."""

from __future__ import annotations

import contextlib
import gc
import warnings
from types import SimpleNamespace
from typing import Any, cast

import anyio
import pytest

from synapse_p2p.conversations._broadcasting import Broadcasts
from synapse_p2p.conversations._broadcasts import BroadcastBook, BroadcastStatus

pytestmark = pytest.mark.anyio


def broadcasts(book: BroadcastBook) -> Broadcasts:
    fake: Any = SimpleNamespace(book=book, conversations=SimpleNamespace(
        members=SimpleNamespace(peers={})))  # fmt: skip
    return cast(Broadcasts, fake)


async def test_changes_come_in_order_and_end_when_the_broadcast_is_forgotten(
    anyio_backend: str,
) -> None:
    book = BroadcastBook(max_broadcasts=1)
    seen: list[BroadcastStatus] = []

    async def follow() -> None:
        async for status in Broadcasts.changes(broadcasts(book), "n1"):
            seen.append(status)

    with anyio.fail_after(5):  # (the iteration must end for the group to)
        async with anyio.create_task_group() as tg:
            tg.start_soon(follow)
            await anyio.wait_all_tasks_blocked()
            assert [s.pending for s in seen] == [frozenset()]
            state = book.state("n1")
            state.pending.add("p")
            state.notify()
            await anyio.wait_all_tasks_blocked()
            assert seen[-1].pending == {"p"}
            state.delivered("p", {"deferred": True}, None)
            await anyio.wait_all_tasks_blocked()
            assert seen[-1].acked == {"p"}
            assert not seen[-1].pending
            book.state("n2")  # evicts n1 (its state is notified): the iteration ends
    assert len(seen) == 3


async def test_breaking_out_of_the_changes_leaves_nothing_to_finalize(
    anyio_backend: str,
) -> None:
    """The docstring's own loop breaks out once the broadcast is over; an async generator
    left so warned ``ResourceWarning`` under trio when collected."""
    book = BroadcastBook()
    book.state("n1")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async for status in Broadcasts.changes(broadcasts(book), "n1"):
            assert status.nonce == "n1"
            break
        gc.collect()
        await anyio.sleep(0)
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []


async def test_the_changes_can_be_closed_as_a_generator_was(anyio_backend: str) -> None:
    book = BroadcastBook()
    async with contextlib.aclosing(Broadcasts.changes(broadcasts(book), "n1")) as changes:  # type: ignore[type-var]
        async for status in changes:
            assert status.nonce == "n1"
            break
