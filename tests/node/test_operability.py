"""Failures you can see: logged user errors, one-line startup failures, honest errors."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import textwrap
import threading
from typing import Any

import anyio
import pytest

from synapse_p2p import Client, Node, RemoteError
from synapse_p2p.errors import FrameTooLarge, TeamTaskError
from synapse_p2p.events import PeerLeft
from synapse_p2p.teams import Assignment, Team, Worker
from synapse_p2p.testing import open_swarm

pytestmark = pytest.mark.anyio


async def test_remote_errors_keep_the_exception_type(anyio_backend: str) -> None:
    async with Node(bind="127.0.0.1", name="calc") as node:

        @node.endpoint
        async def lookup(key: str) -> int:
            return {"a": 1}[key]

        async with Client("127.0.0.1", node.port) as client:  # a session: one of ours
            with pytest.raises(RemoteError) as info:
                await client.call("lookup", "file")
        assert info.value.type == "KeyError"
        assert info.value.code == "internal_error"
        # One call per connection, as 2.5.0 clients make it: no extension is sent.
        with pytest.raises(RemoteError) as info:
            await Client("127.0.0.1", node.port).call("lookup", "file")
        assert info.value.type is None


async def test_a_failed_team_task_keeps_the_workers_exception_type(anyio_backend: str) -> None:
    async with open_swarm(2, configure=lambda i: {"capabilities": ["py"]}) as swarm:
        async with Worker(swarm[1]) as worker, Team(swarm[0]) as team:

            @worker.task
            async def run(assignment: Assignment) -> Any:
                files: dict[str, str] = {}
                return files["file"]

            task = await team.offer("parse", requires=["py"])
            with pytest.raises(TeamTaskError) as info:
                await team.wait(task, timeout=20)
        assert info.value.type == "KeyError"
        assert str(info.value) == "'file'"


async def test_failed_asks_are_visible_to_the_asker(
    anyio_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with open_swarm(2) as swarm:
        asker, reviewer = swarm.nodes

        @reviewer.ask
        async def handle(task: str, context: dict[str, Any]) -> str:
            raise NameError("name 'my_agent' is not defined")

        b = await asker.broadcast("synapse.ask", "review")
        answers = [r async for r in asker.iter_replies(b, timeout=10, errors=True)]
        assert [(r.peer.name, r.failed, r.error) for r in answers] == [
            ("node1", True, "name 'my_agent' is not defined")
        ]
        with caplog.at_level(logging.WARNING, logger="synapse_p2p"):
            assert [r async for r in asker.iter_replies(b, timeout=10)] == []
        assert "every answer to" in caplog.text
        assert "node1: name 'my_agent' is not defined" in caplog.text


async def test_the_failing_ask_handler_is_logged_with_its_traceback_where_it_ran(
    anyio_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with open_swarm(2) as swarm:
        asker, reviewer = swarm.nodes

        @reviewer.ask
        async def handle(task: str, context: dict[str, Any]) -> str:
            raise NameError("name 'my_agent' is not defined")

        with caplog.at_level(logging.ERROR, logger="synapse_p2p"):
            b = await asker.broadcast("synapse.ask", "review")
            [_ async for _ in asker.iter_replies(b, timeout=10)]
        [record] = [r for r in caplog.records if "ask handler" in r.getMessage()]
        assert record.levelno == logging.ERROR
        assert record.exc_info is not None
        assert "NameError" in record.getMessage()


def test_ask_handler_signatures_are_checked_when_registered() -> None:
    node = Node()
    with pytest.raises(TypeError, match=r"must accept \(task, context\)"):

        @node.ask  # type: ignore[arg-type]
        async def one_argument(task: str) -> str:
            return task

    @node.ask
    async def fine(task: str, context: dict[str, Any], *, extra: int = 0) -> str:
        return task


@pytest.mark.parametrize("name", ["", "bad name!", "../etc", "-x", "a..b", "x" * 254])
def test_bad_swarm_and_team_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match=r"not a valid name|at most 253"):
        Node(swarm=name)
    with pytest.raises(ValueError, match=r"not a valid name|at most 253"):
        Node(team=name)


def test_good_names_are_accepted() -> None:
    for name in ("myteam.example.com", "lab", "team_a-1", "x"):
        assert Node(swarm=name, team=name).swarm == name


def test_a_port_in_use_is_one_line_naming_the_address() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        script = textwrap.dedent(f"""
            from synapse_p2p import Node
            Node(bind="127.0.0.1", port={port}).run()
        """)
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              timeout=60)  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"synapse-p2p: cannot listen on 127.0.0.1:{port}: address already in use"
    )


def test_run_shows_the_library_log_and_unreachable_seeds() -> None:
    script = textwrap.dedent("""
        import signal, threading, os
        from synapse_p2p import Node
        threading.Timer(2.5, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
        Node(bind="127.0.0.1", name="lonely", seeds=["127.0.0.1:9"]).run()
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "INFO synapse_p2p.node._node: node lonely listening on 127.0.0.1:" in done.stderr
    assert "WARNING synapse_p2p.membership._seeds: could not join any seed" in done.stderr


async def test_a_port_that_speaks_something_else_is_named(anyio_backend: str) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]

        def banner() -> None:
            conn, _ = server.accept()
            with conn:
                conn.sendall(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
                conn.recv(1024)

        thread = threading.Thread(target=banner, daemon=True)
        thread.start()
        with pytest.raises(FrameTooLarge, match="does not speak synapse-p2p") as info:
            await Client("127.0.0.1", port, timeout=5).call("ping")
        assert "SSH-2.0-OpenSSH_9.2p1" in str(info.value)
        await anyio.to_thread.run_sync(thread.join, 5)


async def test_a_node_stopping_cleanly_says_goodbye(anyio_backend: str) -> None:
    async with open_swarm(2, transport="tcp", peer_timeout=60) as swarm:
        a = swarm[0]
        left: list[str] = []

        @a.on("peer.left")
        async def on_left(peer: Any) -> None:
            left.append(peer.name)

        with a.subscribe(PeerLeft) as events:
            async with Node(bind="127.0.0.1", name="visitor", swarm="test",
                            seeds=[f"127.0.0.1:{a.port}"]) as visitor:  # fmt: skip
                with anyio.fail_after(10):
                    while visitor.node_id not in a.peers:
                        await anyio.sleep(0.01)
            # Gone at once, not after peer_timeout (60 s here).
            with anyio.fail_after(5):
                event = await events.receive()
        assert isinstance(event, PeerLeft)
        assert event.peer.name == "visitor"
        assert visitor.node_id not in a.peers
        with anyio.fail_after(5):
            while left != ["visitor"]:
                await anyio.sleep(0.01)


async def test_a_goodbye_from_another_address_is_ignored(anyio_backend: str) -> None:
    async with open_swarm(2, transport="tcp", peer_timeout=60) as swarm:
        a, b = swarm.nodes
        record = b.self_peer().to_dict()
        # A forged goodbye naming b, from the right ip but the wrong listening port: b signs
        # its records, so an unsigned one naming it is refused.
        with pytest.raises(RemoteError) as refused:
            await Client("127.0.0.1", a.port).call("_synapse.leave", {**record, "port": 1})
        assert refused.value.code == "bad_request"
        assert b.node_id in a.peers


async def test_an_ask_handler_reports_progress_to_the_asker(anyio_backend: str) -> None:
    async with open_swarm(2) as swarm:
        asker, worker = swarm.nodes

        @worker.ask
        async def handle(task: str, context: dict[str, Any]) -> str:
            await worker.progress("reading", step=1)
            await worker.progress("testing", step=2)
            return "done"

        b = await asker.broadcast("synapse.ask", "go")
        assert [r.result async for r in asker.iter_replies(b, timeout=10)] == ["done"]
        progress = [e.payload for e in asker.conversation(b) if e.kind == "progress"]
        assert progress == [{"message": "reading", "step": 1}, {"message": "testing", "step": 2}]
        # Outside a handler there is no conversation to report to.
        assert await worker.progress("idle") is None
