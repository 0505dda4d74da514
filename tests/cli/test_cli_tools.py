"""The per-node tools (``call``, ``info``, ``peers``, ``methods``, ``artifacts``) against a
real node in a subprocess, the parsing and the output helpers, through click's runner."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from click.testing import CliRunner, Result
from rich.console import Console

from synapse_p2p import Node
from synapse_p2p.cli import cli
from synapse_p2p.cli._chatter import Inbox, describe_event
from synapse_p2p.cli._common import Failure, format_result, json_text
from synapse_p2p.cli._swarm import ReplyWatch
from synapse_p2p.testing import Swarm, open_swarm
from synapse_p2p.types import ConversationEvent, Peer

COMMANDS = ["ask", "broadcast", "watch", "list-swarms", "call", "info", "peers", "methods",
            "artifacts", "demo"]  # fmt: skip


def invoke(*args: str, backend: str = "trio") -> Result:
    return CliRunner().invoke(cli, ["--backend", backend, *args], prog_name="sn")


@pytest.fixture(scope="module")
def node_port() -> Iterator[int]:
    """One reviewer node (with a peer, so `peers` has something to list)."""
    from tests.cli.conftest import ROOT, SCRIPTS, env
    from tests.discovery.mdns_scripts.netns import JsonProcess

    processes = []
    try:
        first = JsonProcess([_python(), str(SCRIPTS / "swarm_node.py"), "--name", "reviewer"],
                            env=env(), cwd=ROOT)  # fmt: skip
        processes.append(first)
        port = int(first.expect(lambda e: "port" in e, 20, "reviewer serving")["port"])
        second = JsonProcess([_python(), str(SCRIPTS / "swarm_node.py"), "--name", "tester",
                              "--seed", f"127.0.0.1:{port}"], env=env(), cwd=ROOT)  # fmt: skip
        processes.append(second)
        second.expect(lambda e: "port" in e, 20, "tester serving")
        yield port
    finally:
        for process in processes:
            process.stop()


def _python() -> str:
    import sys

    return sys.executable


def test_every_command_has_help_with_examples() -> None:
    top = invoke("--help")
    assert top.exit_code == 0
    for name in COMMANDS:
        assert name in top.output
        result = invoke(name, "--help")
        assert result.exit_code == 0, result.output
        assert "Examples:" in result.output, name


def test_no_command_prints_usage_and_fails() -> None:
    result = CliRunner().invoke(cli, [], prog_name="sn")
    assert result.exit_code == 2
    assert "Usage: sn" in result.output


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_call(node_port: int, backend: str) -> None:
    where = f"127.0.0.1:{node_port}"
    result = invoke("call", where, "sum", "1", "2", backend=backend)
    assert (result.exit_code, result.output) == (0, "3\n")
    result = invoke("call", where, "sum", "--kw", "a=40", "--kw", "b=2", backend=backend)
    assert (result.exit_code, result.output) == (0, "42\n")
    result = invoke("call", where, "_synapse.ping", backend=backend)
    assert (result.exit_code, result.output) == (0, "pong\n")
    result = invoke("call", where, "_synapse.ping", "--json", backend=backend)
    assert (result.exit_code, result.output) == (0, '"pong"\n')


def test_call_failures_have_exit_codes_and_one_line_reasons(node_port: int) -> None:
    where = f"127.0.0.1:{node_port}"
    result = invoke("call", where, "boom")
    assert result.exit_code == 1
    assert result.stderr == f"sn: {where}: internal_error: kaboom\n"
    result = invoke("call", where, "no.such.endpoint")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"sn: {where}: bad_request: ")
    result = invoke("call", where, "sum", "1")  # wrong arity
    assert result.exit_code == 1
    assert "bad_request" in result.stderr
    result = invoke("call", "127.0.0.1:9", "sum", "1", "2")
    assert result.exit_code == 3
    assert result.stderr.startswith("sn: 127.0.0.1:9: ")
    assert result.stderr.count("\n") == 1
    result = invoke("call", where, "sum", "one", "2")
    assert result.exit_code == 2
    assert "is not a JSON literal" in result.stderr
    result = invoke("call", "nowhere:port", "sum")
    assert result.exit_code == 2
    assert "expected host:port" in result.stderr


def test_info_methods_peers(node_port: int) -> None:
    where = f"127.0.0.1:{node_port}"
    info = invoke("info", where)
    assert info.exit_code == 0, info.output
    assert "reviewer" in info.output
    assert "reviews diffs" in info.output
    assert "code-review" in info.output
    assert f"127.0.0.1:{node_port}" in info.output
    data = json.loads(invoke("info", where, "--json").output)
    assert data["name"] == "reviewer"
    assert data["swarm"] == "lab"
    assert [c["name"] for c in data["capabilities"]] == ["code-review"]

    methods = invoke("methods", where)
    assert methods.exit_code == 0
    assert "sum" in methods.output
    assert "Add two numbers" in methods.output
    assert "_synapse.ping" not in methods.output  # built-ins are not published
    assert "(a" in methods.output  # the parameters, from _synapse.endpoints
    [entry] = [m for m in json.loads(invoke("methods", where, "--json").output)
               if m["name"] == "sum"]  # fmt: skip
    assert [p["name"] for p in entry["parameters"]] == ["a", "b"]

    stats = json.loads(invoke("stats", where, "--json").output)
    assert stats["node"]["peers"] >= 0
    assert stats["node"]["server"]["accepted_connections"] >= 1
    assert "delivery" in stats["node"]
    table = invoke("stats", where)
    assert table.exit_code == 0, table.output
    assert "server.requests" in table.output

    peers = _until_listed(where, "tester")
    assert peers[0]["name"] == "tester"
    table = invoke("peers", where)
    assert "tester" in table.output
    assert "lab / default" in table.output


def _until_listed(where: str, name: str) -> list[dict[str, Any]]:
    import time

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # membership settles by itself; nothing to wait on
        peers = json.loads(invoke("peers", where, "--json").output)
        if any(p["name"] == name for p in peers):
            return list(peers)
        time.sleep(0.1)
    raise AssertionError(f"{name} never listed by {where}")


def test_artifacts(node_port: int, tmp_path: Path) -> None:
    where = f"127.0.0.1:{node_port}"
    listing = invoke("artifacts", where)
    assert listing.exit_code == 0
    assert "agent-card" in listing.output
    assert "image/png" in listing.output
    card = invoke("artifacts", where, "agent-card")
    assert json.loads(card.output) == {"model": "stub", "tools": ["review"]}
    logo = invoke("artifacts", where, "logo")
    assert logo.output == "logo: 256 bytes of image/png; use -o FILE\n"
    target = tmp_path / "logo.png"
    saved = invoke("artifacts", where, "logo", "-o", str(target))
    assert saved.exit_code == 0
    assert target.read_bytes() == bytes(range(256))
    missing = invoke("artifacts", where, "nope")
    assert missing.exit_code == 1
    assert "unknown artifact: nope" in missing.stderr
    raw = json.loads(invoke("artifacts", where, "logo", "--json").output)
    assert base64.b64decode(raw["content"]) == bytes(range(256))


# -- output helpers ---------------------------------------------------------------------------


def test_format_result() -> None:
    assert format_result({"from": "rev", "answer": "ok"}) == "rev: ok"
    assert format_result({"answer": "ok"}) == "ok"
    assert format_result("text") == "text"
    assert format_result({"x": 1}) == '{"x":1}'
    assert json_text(b"\x00\x01", indent=None) == '{"$bytes":"AAE="}'
    assert json_text(float("nan"), indent=None) == '"nan"'


PEER = Peer(id="p" * 64, address="127.0.0.1", port=1, swarm="s", team="default", name="rev")


def event(kind: str, payload: dict[str, Any], created_at: float = 1.0) -> ConversationEvent:
    return ConversationEvent("0190aaaa-bbbb-7ccc-8ddd-eeeeffff0001", f"e-{kind}", kind, PEER,
                             payload, created_at=created_at)  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "payload", "label", "text"),
    [
        ("message", {"endpoint": "synapse.ask", "args": ["do it"], "kwargs": {}}, "ASK",
         "ffff0001  rev: do it"),
        ("message", {"endpoint": "x.y", "args": [1, "a"]}, "MESSAGE", "ffff0001  rev → x.y: 1, a"),
        ("ack", {}, "ACK", "ffff0001  rev acked"),
        ("reply", {"result": {"answer": "fine"}}, "REPLY", "ffff0001  rev → fine"),
        ("error", {"error": "boom"}, "ERROR", "ffff0001  rev: boom"),
        ("task.offer", {"title": "parse", "requires": ["python"]}, "TASK",
         "ffff0001  rev offers 'parse' (requires python)"),
        ("task.grant", {"worker_name": "c1"}, "TASK", "ffff0001  rev grants it to c1"),
        ("task.progress", {"message": "half way"}, "TASK", "ffff0001  rev: half way"),
        ("task.done", {"result": {"ok": True}}, "TASK", 'ffff0001  rev done: {"ok":true}'),
        ("mood", {"level": 3}, "EVENT", 'ffff0001  rev mood: {"level":3}'),
    ],
)  # fmt: skip
def test_chatter_lines(kind: str, payload: dict[str, Any], label: str, text: str) -> None:
    line = describe_event(event(kind, payload))
    assert line is not None
    assert (line.label, line.text) == (label, text)
    assert line.plain().endswith(f"{label:<7} {text}")


@pytest.mark.anyio
async def test_inbox_hands_out_conversation_events_in_their_order(anyio_backend: str) -> None:
    inbox = Inbox()
    inbox.put("conversation.event", event("reply", {}, created_at=2.0))
    inbox.put("peer.joined", PEER)
    inbox.put("conversation.event", event("ack", {}, created_at=1.0))
    batch = await inbox.next_batch()
    assert [name for name, _ in batch] == ["peer.joined", "conversation.event",
                                           "conversation.event"]  # fmt: skip
    assert [e.kind for _, e in batch[1:]] == ["ack", "reply"]
    with anyio.move_on_after(0.05) as scope:
        await inbox.next_batch()  # nothing left: waits
    assert scope.cancelled_caught


@pytest.mark.parametrize(
    ("kind", "payload"),
    [
        ("task.offer", {"title": "x", "requires": 5}),
        ("message", {"endpoint": "synapse.ask", "args": 7, "kwargs": "no"}),
        ("message", {"endpoint": ["not", "text"], "args": [{"a": [1, 2]}]}),
        ("reply", {"result": json.loads("[" * 900 + "]" * 900)}),
        ("x\x1b[2J", {"deep": json.loads('{"a":' * 300 + "1" + "}" * 300)}),
    ],
)
def test_chatter_lines_survive_malformed_payloads(kind: str, payload: dict[str, Any]) -> None:
    line = describe_event(event(kind, payload))
    assert line is not None
    assert "\x1b" not in line.plain()
    assert len(line.plain()) < 400


# -- ReplyWatch: when an ask is over --------------------------------------------------------


async def _asked(
    configure: Any, setup: Any, *, timeout: float = 10
) -> tuple[ReplyWatch, str, int | str]:
    """Open a swarm (node 0 asks), run ``setup(swarm)``, ask, and wait like ``sn ask``."""
    out = io.StringIO()
    async with open_swarm(3, configure=configure) as swarm:
        watch = ReplyWatch(swarm[0], Console(file=out, width=200), show_acks=True)
        await setup(swarm)
        b = await swarm[0].broadcast("synapse.ask", "review", context={})
        with anyio.fail_after(30):
            await watch.wait(b.nonce, timeout=timeout, forever=False)
        try:
            code: int | str = watch.exit_code(timeout)
        except Failure as exc:
            code = f"{exc.exit_code}: {exc.message}"
    return watch, out.getvalue(), code


def _named(i: int) -> dict[str, Any]:
    return {"name": ["asker", "fast", "slow"][i]}


async def _handler(node: Node, *, fail: bool = False, delay: float = 0.0) -> None:
    @node.ask
    async def handle(task: str, context: dict[str, Any]) -> str:
        await anyio.sleep(delay)
        if fail:
            raise RuntimeError(f"{node.name} gives up")
        return f"{node.name} says fine"


@pytest.mark.anyio
async def test_reply_watch_waits_for_a_peer_the_ask_reaches_late(anyio_backend: str) -> None:
    async def setup(swarm: Any) -> None:
        await _handler(swarm[1])
        await _handler(swarm[2])
        receive = swarm[2]._registry.pre_dispatch

        async def late(request: Any, connection: Any) -> Any:
            await anyio.sleep(0.5)  # longer than the settle time: only delivery tracking helps
            return await receive(request, connection)

        swarm[2]._registry.pre_dispatch = late

    watch, out, code = await _asked(_named, setup)
    assert code == 0
    assert watch.replies == 2
    assert out.index("✓ fast acked") < out.index("- fast: fast says fine")
    assert "- slow: slow says fine" in out


@pytest.mark.anyio
async def test_reply_watch_only_errors(anyio_backend: str) -> None:
    async def setup(swarm: Any) -> None:
        await _handler(swarm[1], fail=True)
        await _handler(swarm[2], fail=True)

    watch, out, code = await _asked(_named, setup)
    assert code == "1: every answer was an error"
    assert "✗ fast failed: fast gives up" in out
    assert watch.errors == 2


@pytest.mark.anyio
async def test_reply_watch_no_handler_ends_without_waiting_the_timeout(anyio_backend: str) -> None:
    async def setup(swarm: Any) -> None:
        pass

    started = anyio.current_time()
    _, _, code = await _asked(_named, setup, timeout=60)
    assert code == "4: no node took the task (none has an ask handler?)"
    assert anyio.current_time() - started < 30


@pytest.mark.anyio
async def test_reply_watch_peer_offline_after_ack(anyio_backend: str) -> None:
    stopped = anyio.Event()

    async def setup(swarm: Swarm) -> None:
        await _handler(swarm[1])

        @swarm[2].ask
        async def handle(task: str, context: dict[str, Any]) -> str:
            swarm.kill(swarm[2])  # dies while working on it
            stopped.set()
            await anyio.sleep_forever()
            raise AssertionError("unreachable")

    def quick(i: int) -> dict[str, Any]:
        return {**_named(i), "heartbeat_interval": 0.2, "peer_timeout": 1}

    watch, out, code = await _asked(quick, setup)
    assert stopped.is_set()
    assert code == 0
    assert "✗ slow went offline before replying" in out
    assert watch.replies == 1
