"""A broadcast reaches a member that was marked offline a moment before it was sent and comes
back soon after (``conversations/_late.py``); a member that left, or stays away past the
window, does not get it."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from synapse_p2p.conversations._broadcasting import _may_resend
from synapse_p2p.conversations._late import LateCall, LateMembers
from synapse_p2p.errors import (
    ConnectError,
    ConnectionLost,
    DroppedCall,
    HandshakeError,
    RemoteError,
)
from synapse_p2p.testing import open_swarm
from synapse_p2p.types import Broadcast, Peer


def call(nonce: str) -> LateCall:
    return LateCall(nonce, "synapse.ask", ["task"], {})


def test_a_member_away_gets_the_call_once_when_it_comes_back() -> None:
    late = LateMembers(window=60)
    late.went_offline("b", now=10)
    assert late.sent(call("n1"), alive={"a"}, now=11) == 1
    assert late.came_back("a", now=12) == []
    assert late.came_back("b", now=12) == [call("n1")]
    assert late.came_back("b", now=13) == []  # once
    assert len(late) == 0


def test_the_window_bounds_both_sides() -> None:
    late = LateMembers(window=60)
    late.went_offline("old", now=0)
    late.went_offline("recent", now=50)
    assert late.sent(call("n1"), alive=set(), now=100) == 1  # "old" is away too long
    assert late.came_back("old", now=101) == []
    assert late.came_back("recent", now=200) == []  # back too late: dropped
    assert len(late) == 0


def test_a_member_that_left_gets_nothing_and_alive_members_are_not_held() -> None:
    late = LateMembers(window=60)
    late.went_offline("b", now=0)
    late.went_offline("c", now=0)
    assert late.sent(call("n1"), alive={"c"}, now=1) == 1  # c is alive again already
    late.left("b")
    assert late.came_back("b", now=2) == []
    assert late.came_back("c", now=2) == []
    assert late.sent(call("n2"), alive=set(), now=3) == 0  # b left, c is back: none away


def test_a_member_gone_while_its_call_was_retried_is_held_for_its_return() -> None:
    late = LateMembers(window=60)
    late.hold(call("n1"), "b", now=10)
    late.hold(call("n1"), "c", now=11)  # one broadcast, two members gone
    assert late.came_back("a", now=12) == []
    assert late.came_back("b", now=12) == [call("n1")]
    assert late.came_back("b", now=13) == []  # once
    late.left("c")  # a goodbye: nothing for it
    assert late.came_back("c", now=14) == []
    assert len(late) == 0
    late.hold(call("n2"), "d", now=20)
    assert late.came_back("d", now=81) == []  # back past the window


def test_which_undelivered_calls_are_sent_again() -> None:
    assert _may_resend(ConnectError("refused"), legacy=False)
    assert _may_resend(ConnectError("refused"), legacy=True)  # it never left
    assert _may_resend(ConnectionLost("lost"), legacy=False)  # our nodes run it once
    assert not _may_resend(ConnectionLost("lost"), legacy=True)  # 2.5.0 would run it twice
    assert not _may_resend(DroppedCall("queue full"), legacy=False)
    assert not _may_resend(HandshakeError("wrong secret"), legacy=False)


def test_held_broadcasts_are_bounded() -> None:
    late = LateMembers(window=60)
    late.went_offline("b", now=0)
    for i in range(500):
        late.sent(call(f"n{i}"), alive=set(), now=1)
    assert len(late) <= 64
    assert [c.nonce for c in late.came_back("b", now=2)][-1] == "n499"


@pytest.mark.anyio
async def test_a_member_back_from_a_spell_offline_gets_the_ask(anyio_backend: str) -> None:
    async with open_swarm(3, heartbeat_interval=0.1, peer_timeout=0.6) as swarm:
        asker, worker, _other = swarm.nodes
        assert swarm.network is not None
        ran: list[str] = []
        for node in swarm.nodes[1:]:

            @node.ask
            async def answer(task: str, context: dict[str, Any], name: str = node.name) -> str:
                ran.append(name)
                return f"{name} did {task}"

        offline = anyio.Event()
        back = anyio.Event()

        @asker.on("peer.offline")
        async def gone(peer: Peer) -> None:
            if peer.id == worker.node_id:
                offline.set()

        @asker.on("peer.joined")
        async def joined(peer: Peer) -> None:
            if peer.id == worker.node_id and offline.is_set():
                back.set()

        swarm.network.isolated.add(worker.address)
        with anyio.fail_after(20):
            await offline.wait()
        b = await asker.broadcast("synapse.ask", "late job")
        status = asker.broadcast_status(b)
        assert status is not None
        assert worker.node_id not in status.pending
        swarm.network.isolated.discard(worker.address)
        with anyio.fail_after(20):
            await back.wait()
            async for status in asker.broadcast_changes(b):
                if worker.node_id in status.replied:
                    break
        assert any(r.peer.id == worker.node_id for r in asker.replies(b))
        assert ran.count(worker.name) == 1


class _Seen(logging.Handler):
    """Sets ``event`` when a record whose message contains one of ``texts`` is logged."""

    def __init__(self, texts: tuple[str, ...]) -> None:
        super().__init__(logging.DEBUG)
        self.texts = texts
        self.event = anyio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if any(text in message for text in self.texts):
            self.event.set()


@contextlib.contextmanager
def seen(*texts: str) -> Iterator[_Seen]:
    logger = logging.getLogger("synapse_p2p.conversations._broadcasting")
    handler, level = _Seen(texts), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.mark.anyio
@pytest.mark.parametrize("views", [False, True])
async def test_an_ask_not_delivered_is_sent_again(anyio_backend: str, views: bool) -> None:
    """Full mesh: the member stays a member (peer_timeout is long), only the call fails, and
    it is sent again. Views: a port that refuses connections makes its member offline at
    once, so the call is held for the member's return instead; either way it gets the ask
    once, and it is no failure."""
    async with open_swarm(2, heartbeat_interval=0.5, peer_timeout=60, partial_views=views) as swarm:
        asker, worker = swarm.nodes
        assert swarm.network is not None
        ran: list[str] = []

        @worker.ask
        async def answer(task: str, context: dict[str, Any]) -> str:
            ran.append(task)
            return "done"

        with seen(f"sending to {worker.name} again", "held for its return") as again:
            swarm.network.isolated.add(worker.address)
            b = await asker.broadcast("synapse.ask", "job")
            with anyio.fail_after(10):
                await again.event.wait()
            swarm.network.isolated.discard(worker.address)
            with anyio.fail_after(20):
                async for status in asker.broadcast_changes(b):
                    if worker.node_id in status.replied:
                        break
        assert ran == ["job"]
        final = asker.broadcast_status(b)
        assert final is not None
        assert worker.node_id not in final.failed


@pytest.mark.anyio
async def test_a_call_never_delivered_is_a_failure_at_the_origin(anyio_backend: str) -> None:
    # Full mesh: the member stays listed while its port refuses (with views it is offline at
    # once, and the call held for its return: see above).
    async with open_swarm(2, heartbeat_interval=0.5, peer_timeout=60, partial_views=False) as swarm:
        asker, worker = swarm.nodes
        assert swarm.network is not None

        @worker.ask
        async def answer(task: str, context: dict[str, Any]) -> str:
            return "done"

        swarm.network.isolated.add(worker.address)
        b = await asker.broadcast("synapse.ask", "job")
        with anyio.fail_after(20):
            async for status in asker.broadcast_changes(b):
                if worker.node_id in status.failed:
                    break
        assert not status.pending
        answers = [r async for r in asker.iter_replies(b, errors=True, timeout=1)]
        assert [(r.peer.id, r.failed) for r in answers] == [(worker.node_id, True)]
        assert answers[0].error is not None
        assert "not delivered" in answers[0].error


@pytest.mark.anyio
@pytest.mark.parametrize("every", [1, 3])
async def test_a_call_failing_while_the_node_stops_starts_no_retry(
    anyio_backend: str, every: int
) -> None:
    """A broadcast call's failure reported while the broadcasts service stops (its sender
    runs in another group) started a retry in the stopping group. Reported at every turn, each
    new retry held the group open: the stop waited for the reporter (10,000 turns here). And
    under trio, a group takes no new task once its body and tasks are done, a moment before
    anyio marks it inactive: a report then raised in the reporter and left the retry's
    coroutine never awaited (reported at every third turn, the stop goes on and meets that
    moment). Now a failure is retried while the service runs and counted once it stops."""
    stopped = anyio.Event()
    reported = after_stop = 0
    async with anyio.create_task_group() as tg:
        async with open_swarm(2) as swarm:
            asker, worker = swarm.nodes
            broadcasts = asker._broadcasts
            peer = asker.peers[worker.node_id]
            state = broadcasts.book.state("n1")

            async def report() -> None:
                nonlocal reported, after_stop
                for turn in range(10_000):
                    if turn % every == 0:
                        state.pending.add(peer.id)
                        broadcasts._delivered(
                            "n1", peer, ("synapse.ask", ["job"], {}), 0, None,
                            ConnectError("refused"),
                        )  # fmt: skip
                        reported += 1
                        if broadcasts._tg is None:
                            after_stop += 1
                    if stopped.is_set():
                        return
                    await anyio.lowlevel.checkpoint()

            tg.start_soon(report)
            await anyio.lowlevel.checkpoint()
        stopped.set()
    assert reported < 10_000 // every
    assert after_stop > 0
    assert peer.id in state.failed  # not delivered: the node stopped
    assert not state.pending


@pytest.mark.anyio
async def test_an_ask_taken_as_the_node_stops_is_not_remembered_as_run(
    anyio_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ask whose ACK went out as the node began to stop is refused ("node is stopping"),
    its caller's slot given back, and its nonce not kept as run: a resend (the call failed
    for its origin) runs it instead of being told it was taken."""
    async with open_swarm(1) as swarm:
        (node,) = swarm.nodes
        broadcasts = node._broadcasts

        @node.ask
        async def answer(task: str, context: dict[str, Any]) -> str:
            return "done"

        async def ack_then_stop(broadcast: Any) -> None:
            broadcasts._tg = None  # (what the stopping service does)

        monkeypatch.setattr(broadcasts, "ack", ack_then_stop)
        origin = Peer(id="o" * 64, address="10.0.9.9", port=7000)
        b = Broadcast("n-stop", origin, "synapse.ask")
        with pytest.raises(RemoteError, match="node is stopping"):
            await broadcasts.deferred_ask("job", {}, b)
        assert "n-stop" not in broadcasts._asked
        assert broadcasts._per_caller.held("local") == 0
