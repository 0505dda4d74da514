"""``sn watch`` on narrow terminals and its replay of the recent past."""

from __future__ import annotations

import io
import json
import re
import shutil
import signal
import time
from collections.abc import Iterator

import anyio
import pytest
from rich.console import Console

from synapse_p2p import MemoryConversationLog, Node
from synapse_p2p.cli._chatter import Line, causal_order
from synapse_p2p.cli._watch import WatchState
from synapse_p2p.events import PeerJoined
from synapse_p2p.types import ConversationEvent, Peer
from tests.cli.conftest import StartNode, Tmux, sn
from tests.cli.test_cli_swarm import BACKENDS, Program

REVIEWER = Peer(id="a" * 64, name="reviewer", address="127.0.0.1", port=9999)
ASKER = Peer(id="b" * 64, name="asker", address="127.0.0.1", port=9998)
LONG = "LGTM after fixing tests, but the parser still drops trailing comments in nested blocks"


def event(kind: str, payload: dict[str, object], *, created_at: float, event_id: str,
          parent_id: str | None = None, peer: Peer = REVIEWER) -> ConversationEvent:  # fmt: skip
    return ConversationEvent(conversation_id="019e4ab0-1d0d-709a-b3c5-5c1a0f6f2e11",
                             event_id=event_id, kind=kind, peer=peer, payload=payload,
                             parent_id=parent_id, created_at=created_at)  # fmt: skip


def screen(state: WatchState, width: int, height: int = 24) -> str:
    out = Console(file=io.StringIO(), width=width, height=height, force_terminal=True,
                  color_system=None, soft_wrap=True)  # fmt: skip
    out.print(state.render(out))
    text = out.file.getvalue()  # type: ignore[attr-defined]
    assert isinstance(text, str)
    return text


def chatter_text(text: str) -> str:
    """The words of the chatter panel, rows joined (wrapped text reads as one)."""
    cells = [row.split("│")[-2] if row.count("│") >= 2 else "" for row in text.splitlines()]
    return " ".join(" ".join(cells).split())


@pytest.fixture
def state() -> Iterator[WatchState]:
    node = Node(name="eye", swarm="lab", mdns=False)
    watching = WatchState(node, heartbeats=False, capabilities=True)
    yield watching
    watching.close()


@pytest.mark.anyio
@pytest.mark.parametrize("width", [80, 60, 120])
async def test_the_full_screen_view_keeps_a_replys_text_at_any_width(
    anyio_backend: str, width: int, state: WatchState
) -> None:
    now = time.time()
    state.lines.append(Line(now, "ASK", "0f6f2e11  asker: Review this diff"))
    state.lines.append(Line(now, "REPLY", f"0f6f2e11  reviewer → {LONG}"))
    text = screen(state, width)
    assert all(len(row) <= width for row in text.splitlines())
    assert f"reviewer → {LONG}" in chatter_text(text)
    assert "asker: Review this diff" in chatter_text(text)


@pytest.mark.anyio
async def test_a_very_long_reply_keeps_its_start_and_the_newest_lines_show(
    anyio_backend: str, state: WatchState
) -> None:
    now = time.time()
    for i in range(40):
        state.lines.append(Line(now, "ACK", f"0f6f2e11  node-{i} acked"))
    state.lines.append(Line(now, "REPLY", f"0f6f2e11  reviewer → {LONG} {'x' * 400}"))
    state.lines.append(Line(now, "ACK", "0f6f2e11  last acked"))
    text = chatter_text(screen(state, 80))
    assert f"reviewer → {LONG}" in text
    assert "…" in text  # the end is elided, not the start
    assert text.rstrip(" ╰─╯").endswith("last acked")  # the newest line is at the bottom
    assert "node-39 acked" in text
    assert "node-0 acked" not in text  # the oldest scrolled away


@pytest.mark.anyio
async def test_a_closed_watch_state_takes_no_more_events(
    anyio_backend: str, state: WatchState
) -> None:
    """``sn watch`` closes its state however it ends (a failed join too): the subscription
    taken before the join ends, and ``take_events`` returns."""
    state.node._hub.publish(PeerJoined(REVIEWER))  # buffered before the close: dropped
    state.close()
    state.node._hub.publish(PeerJoined(ASKER))  # after: never taken
    with anyio.fail_after(5):
        await state.take_events()
    assert not state.inbox._items


def test_causal_order_is_creation_order_and_a_reply_follows_its_ask() -> None:
    ask = event("message", {}, created_at=10.0, event_id="m", peer=ASKER)
    # The replier's clock runs behind the asker's: its events are stamped earlier.
    ack = event("ack", {}, created_at=9.0, event_id="k", parent_id="m")
    reply = event("reply", {"result": "ok"}, created_at=9.5, event_id="r", parent_id="m")
    other = event("mood", {}, created_at=9.2, event_id="o")
    tie_b = event("mood", {}, created_at=11.0, event_id="b")
    tie_a = event("mood", {}, created_at=11.0, event_id="a")
    ordered = causal_order([tie_b, reply, tie_a, ack, ask, other])
    assert [e.event_id for e in ordered] == ["o", "m", "k", "r", "a", "b"]


@pytest.mark.anyio
async def test_the_replay_waits_for_a_first_peer_and_fetches_what_it_holds(
    anyio_backend: str,
) -> None:
    """A watcher with no peer yet (as with mDNS) waits for one, fetches the conversations it
    holds (the watcher never received them) and replays them in creation order."""
    author = Peer(id="c" * 64, name="asker", address="127.0.0.1", port=1, swarm="lab",
                  team="default")  # fmt: skip
    replier = Peer(id="d" * 64, name="reviewer", address="127.0.0.1", port=2, swarm="lab",
                   team="default")  # fmt: skip
    held: list[ConversationEvent] = []
    start = time.time() - 6
    for i, cid in enumerate(["conv-z", "conv-a", "conv-m"]):  # ids sort unlike their times
        at = start + 1.5 * i
        ask = {"endpoint": "synapse.ask", "args": [f"task {i}"], "kwargs": {}}
        held.append(ConversationEvent(cid, cid, "message", author, ask, created_at=at))
        # The replier's clock runs behind the asker's: its reply is stamped before the ask.
        held.append(ConversationEvent(cid, f"{cid}-r", "reply", replier, {"result": i},
                                      parent_id=cid, created_at=at - 0.2))  # fmt: skip
    log = MemoryConversationLog()
    for item in reversed(held):  # newest first: how a peer's digest lists them
        assert await log.append(item)
    watcher = Node(name="eye", swarm="lab", bind="127.0.0.1", mdns=False)
    async with watcher:
        state = WatchState(watcher, heartbeats=False, capabilities=False, discover=20)
        replayed: list[ConversationEvent] = []
        done = anyio.Event()

        async def replay() -> None:
            replayed.extend(await state.history())
            done.set()

        holder = Node(name="holder", swarm="lab", bind="127.0.0.1", mdns=False,
                      seeds=[f"127.0.0.1:{watcher.port}"], conversation_log=log)  # fmt: skip
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(state.take_events)
                tg.start_soon(replay)
                await anyio.sleep(0)  # the replay waits: no peer yet
                assert not done.is_set()
                async with holder:
                    await done.wait()
                tg.cancel_scope.cancel()
    assert [e.event_id for e in replayed] == [
        "conv-z", "conv-z-r", "conv-a", "conv-a-r", "conv-m", "conv-m-r"
    ]  # fmt: skip


def stamps(lines: list[str]) -> list[str]:
    return [line[:8] for line in lines if re.match(r"\d\d:\d\d:\d\d ", line)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_watch_replays_the_recent_past_in_order(start_node: StartNode, backend: str) -> None:
    """Asks made before the watcher started are replayed oldest first, each ask before its
    ACKs and replies, and before the peers' JOINED lines (which happened later)."""
    _, seed = start_node("reviewer")
    start_node("tester", seed=seed)
    for i in range(4):
        asked = sn("ask", "lab", f"task {i}", "--seed", f"127.0.0.1:{seed}")
        assert asked.returncode == 0, asked.stderr
    watcher = Program("--backend", backend, "watch", "lab", "--seed", f"127.0.0.1:{seed}",
                      "--plain")  # fmt: skip
    try:
        seen = watcher.until("JOINED  ")
        seen += watcher.until("JOINED  ")
        lines = [line for line in seen if not line.startswith("watching")]
        assert stamps(lines) == sorted(stamps(lines)), "\n".join(lines)
        asks = [i for i, line in enumerate(lines) if "ASK     " in line]
        assert [lines[i].split("asker: ")[1] for i in asks] == [f"task {i}" for i in range(4)]
        for n, i in enumerate(asks):
            end = asks[n + 1] if n + 1 < len(asks) else len(lines)
            kinds = [line[9:16].strip() for line in lines[i + 1 : end]]
            assert sorted(kinds[:4]) == ["ACK", "ACK", "REPLY", "REPLY"], lines
        assert all("JOINED" in line for line in lines[asks[-1] + 5 :])
        watcher.proc.send_signal(signal.SIGINT)
        assert watcher.proc.wait(timeout=20) == 0
    finally:
        watcher.close()


def test_watch_json_has_the_whole_reply(start_node: StartNode) -> None:
    answer = f"{LONG} " * 20
    _, seed = start_node("reviewer", "--answer", json.dumps(answer))
    watcher = Program("watch", "lab", "--seed", f"127.0.0.1:{seed}", "--json")
    try:
        watcher.until('"event":"peer.joined"')
        asked = sn("ask", "lab", "check this", "--seed", f"127.0.0.1:{seed}")
        assert asked.returncode == 0, asked.stderr
        reply = json.loads(watcher.until('"kind":"reply"')[-1])
        assert reply["payload"]["result"] == answer
    finally:
        watcher.close()


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_watch_at_80_columns_shows_whole_replies(start_node: StartNode) -> None:
    _, seed = start_node("reviewer")
    terminal = Tmux("watch", "lab", "--seed", f"127.0.0.1:{seed}", "--name", "eye",
                    width=80, height=24)  # fmt: skip
    try:
        terminal.wait_for("JOINED reviewer", read=chatter_text)
        asked = sn("ask", "lab", "check the parser and the evaluator", "--seed",
                   f"127.0.0.1:{seed}")  # fmt: skip
        assert asked.returncode == 0, asked.stderr
        terminal.wait_for("reviewer → reviewer: LGTM for 'check the parser and the evaluator'",
                          read=chatter_text)  # fmt: skip
    finally:
        terminal.close()
