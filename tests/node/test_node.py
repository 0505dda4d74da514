"""Node lifecycle, built-in endpoints, artifacts and settings validation."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from synapse_p2p import Capability, Client, Node, RemoteError
from synapse_p2p._config import parse_seed, resolve_advertise
from synapse_p2p.errors import ConnectError
from tests.helpers import read_frame

pytestmark = pytest.mark.anyio


async def test_builtin_endpoint_shapes(anyio_backend: str) -> None:
    node = Node(
        bind="127.0.0.1",
        name="reviewer",
        role="critic",
        description="reviews code",
        capabilities=["code-review", Capability("lint", "finds lint", {"type": "object"})],
        swarm="myteam.example.com",
    )

    @node.endpoint("sum", description="Add two numbers")
    async def sum_(a: int, b: int) -> int:
        return a + b

    @node.endpoint(publish=False)
    async def hidden() -> None:
        """Not listed."""

    @node.endpoint
    async def documented() -> None:
        """Docstring description."""

    async with node:
        client = Client("127.0.0.1", node.port)
        assert await client.call("_synapse.ping") == "pong"
        info = await client.call("_synapse.info")
        assert info == {
            "id": node.node_id,
            "name": "reviewer",
            "kind": "node",
            "address": "127.0.0.1",
            "port": node.port,
            "swarm": "myteam.example.com",
            "team": "default",
            "role": "critic",
            "description": "reviews code",
            "capabilities": ["code-review", "lint"],
        }
        assert list(info) == list(node.node_info())
        assert await client.call("_synapse.methods") == [
            {"name": "sum", "publish": True, "description": "Add two numbers"},
            {"name": "documented", "publish": True, "description": "Docstring description."},
        ]
        assert await client.call("_synapse.peers") == []
        assert await client.call("_node.info") == {
            "name": "reviewer",
            "role": "critic",
            "description": "reviews code",
            "capabilities": ["code-review", "lint"],
        }
        assert await client.call("_node.capabilities") == [
            {"name": "code-review", "description": "", "input_schema": {}, "output_schema": {}},
            {
                "name": "lint",
                "description": "finds lint",
                "input_schema": {"type": "object"},
                "output_schema": {},
            },
        ]
        assert len(node.node_id) == 64


async def test_ask_endpoints(anyio_backend: str) -> None:
    node = Node(bind="127.0.0.1")
    async with node:
        client = Client("127.0.0.1", node.port)
        for endpoint in ("_node.ask", "synapse.ask"):
            with pytest.raises(RemoteError, match="node has no ask handler") as info:
                await client.call(endpoint, "hi")
            assert info.value.code == "internal_error"

        @node.ask
        async def handle(task: str, context: dict[str, Any]) -> dict[str, Any]:
            return {"answer": task.upper(), "context": context}

        assert await client.call("_node.ask", "hi", {"k": "v"}) == {
            "answer": "HI",
            "context": {"k": "v"},
        }
        assert await client.call("synapse.ask", "hi", context={"a": "1"}) == {
            "answer": "HI",
            "context": {"a": "1"},
        }
        assert await client.call("_node.ask", "hi") == {"answer": "HI", "context": {}}
        with pytest.raises(RemoteError, match="context must be a map") as info:
            await client.call("_node.ask", "hi", [1])
        assert info.value.code == "bad_request"
        with pytest.raises(RemoteError, match="task must be a string"):
            await client.call("_node.ask", 5)


async def test_artifacts_with_reference_size_and_hash(anyio_backend: str) -> None:
    node = Node(bind="127.0.0.1")
    card = node.artifact(
        "agent-card",
        {"name": "reviewer", "capabilities": ["code-review"]},
        mime_type="application/vnd.synapse.agent-card+json",
    )
    assert card.size == 50
    assert card.sha256 == "dff355dc1bfeebbd133f25b00a8c169d25c9afef8d3f45076f0140668bed3920"
    raw = node.artifact("logo", b"\x00\x01\x02", mime_type="image/png", kind="asset")
    assert (raw.encoding, raw.content, raw.size) == ("base64", "AAEC", 3)
    text = node.artifact("notes", "héllo", mime_type="text/plain", encoding="utf-8")
    assert (text.encoding, text.size) == ("utf-8", 6)
    with pytest.raises(TypeError, match="not JSON-serializable"):
        node.artifact("bad", {"x": {1, 2}})
    async with node:
        client = Client("127.0.0.1", node.port)
        listed = await client.call("_synapse.artifacts")
        assert [a["name"] for a in listed] == ["agent-card", "logo", "notes"]
        assert list(listed[0]) == [
            "name",
            "mime_type",
            "kind",
            "description",
            "encoding",
            "size",
            "sha256",
            "metadata",
        ]
        got = await client.call("_synapse.artifact.get", "logo")
        assert got["content"] == "AAEC"
        assert list(got) == [
            "name",
            "mime_type",
            "content",
            "kind",
            "description",
            "encoding",
            "size",
            "sha256",
            "metadata",
        ]
        with pytest.raises(RemoteError, match="unknown artifact: nope") as info:
            await client.call("_synapse.artifact.get", "nope")
        assert info.value.code == "bad_request"


async def test_serve_in_a_task_group_and_prompt_shutdown_with_idle_connections(
    anyio_backend: str,
) -> None:
    node = Node(bind="127.0.0.1", idle_timeout=3600, secret=())  # raw plaintext sockets below
    node_scope = anyio.CancelScope()

    async def run_node(*, task_status: anyio.abc.TaskStatus[None]) -> None:
        with node_scope:
            await node.serve(task_status=task_status)

    def still_running() -> bool:  # read afresh: ``assert node.running`` narrows the attribute
        return node.running

    async with anyio.create_task_group() as tg:
        await tg.start(run_node)
        assert node.running
        port = node.port
        assert port > 0
        idle = [await anyio.connect_tcp("127.0.0.1", port) for _ in range(10)]
        half = await anyio.connect_tcp("127.0.0.1", port)
        await half.send(b"\x00\x00")  # half a header
        async with Client("127.0.0.1", port, secret=()) as session:
            assert await session.call("_synapse.ping") == "pong"
            with pytest.raises(RuntimeError, match="already running"):
                await node.serve()
            start = time.monotonic()
            node_scope.cancel()
            with anyio.fail_after(5):
                while still_running():
                    await anyio.sleep(0.005)
            elapsed = time.monotonic() - start
    assert elapsed < 2, elapsed
    # The peers see their connections closed and the port is free.
    for stream in [*idle, half]:
        with anyio.fail_after(2):
            assert await read_frame(stream) is None
        await stream.aclose()
    with pytest.raises(ConnectError):
        await Client("127.0.0.1", port).call("_synapse.ping")


async def test_context_manager_propagates_the_body_exception(anyio_backend: str) -> None:
    with pytest.raises(KeyError, match="boom"):
        async with Node(bind="127.0.0.1"):
            raise KeyError("boom")


async def test_node_can_run_again_after_stopping(anyio_backend: str) -> None:
    node = Node(bind="127.0.0.1")
    async with node:
        first = node.port
    async with node:
        assert await Client("127.0.0.1", node.port).call("_synapse.ping") == "pong"
    assert first > 0


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_a_node_with_members_runs_again_in_another_event_loop(backend: str) -> None:
    """What a run left waiting (the seeds' joiner waits on an event while members are alive)
    belongs to that run's event loop: the next run, in a new loop, starts afresh."""
    with socket.socket() as probe:  # a port the seed keeps across runs
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    seed = Node(bind="127.0.0.1", port=port, name="seed")
    joiner = Node(bind="127.0.0.1", name="joiner", seeds=[f"127.0.0.1:{port}"])

    async def once() -> None:
        async with seed, joiner:
            with anyio.fail_after(10):
                while seed.node_id not in joiner.peers:
                    await anyio.sleep(0.01)
            await anyio.sleep(0.1)  # (the joiner waits for a member lost now)

    for _ in range(2):
        anyio.run(once, backend=backend)


async def test_bind_failure_is_reported(anyio_backend: str) -> None:
    async with Node(bind="127.0.0.1") as first:
        with pytest.raises(OSError):
            async with Node(bind="127.0.0.1", port=first.port):
                pass


async def test_the_server_keeps_its_timeouts_on_the_watchdog_it_shares_with_the_pool(
    anyio_backend: str,
) -> None:
    node = Node(bind="127.0.0.1", idle_timeout=0.5, secret=())  # raw plaintext sockets below
    async with node:
        server, pool = node._server, node._caller.pool
        assert server is not None
        assert pool is not None
        assert server._watchdog is pool.watchdog  # one watchdog task for both
        idle = await anyio.connect_tcp("127.0.0.1", node.port)

        async def until_closed() -> None:
            while True:
                await idle.receive()

        with anyio.fail_after(10), pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
            await until_closed()  # closed by the node once idle for 0.5 s
        await idle.aclose()
        async with Client("127.0.0.1", node.port, secret=()) as session:
            assert await session.call("_synapse.ping") == "pong"


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"port": -1}, ValueError, "port"),
        ({"port": "80"}, TypeError, "port"),
        ({"name": 5}, TypeError, "name"),
        ({"kind": "relay"}, ValueError, "kind"),
        ({"capabilities": "python"}, TypeError, "capabilities"),
        ({"capabilities": [1]}, TypeError, "capabilities"),
        ({"heartbeat_interval": 0}, ValueError, "heartbeat_interval"),
        ({"peer_timeout": -5}, ValueError, "peer_timeout"),
        ({"conversation_max_events": 0}, ValueError, "conversation_max_events"),
        ({"conversation_keep_recent": -1}, ValueError, "conversation_keep_recent"),
        ({"conversation_retention": "7d"}, TypeError, "conversation_retention"),
        ({"max_upload_size": 0}, ValueError, "max_upload_size"),
        ({"seeds": ["host:notaport"]}, ValueError, "seed"),
        ({"seeds": [("h", 0)]}, ValueError, "seed"),
        ({"mdns": "yes"}, TypeError, "mdns"),
        ({"node_id": ""}, ValueError, "node_id"),
        ({"max_connections": 0}, ValueError, "max_connections"),
        ({"idle_timeout": 0}, ValueError, "idle_timeout"),
    ],
)
def test_constructor_validation(kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        Node(**kwargs)


def test_registration_validation() -> None:
    node = Node()

    def sync_fn() -> None: ...

    with pytest.raises(TypeError, match="async function"):
        node.endpoint("x")(sync_fn)  # type: ignore[type-var]
    with pytest.raises(TypeError, match="async function"):
        node.ask(sync_fn)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="async function"):
        node.on("peer.joined")(sync_fn)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("seed", "expected"),
    [
        ("host:1234", ("host", 1234)),
        ("host", ("host", 9999)),
        (("10.0.0.1", 80), ("10.0.0.1", 80)),
        ("[::1]:9000", ("::1", 9000)),
        ("[::1]", ("::1", 9999)),
        ("::1", ("::1", 9999)),
        ("fe80::1:2", ("fe80::1:2", 9999)),
    ],
)
def test_seed_parsing(seed: Any, expected: tuple[str, int]) -> None:
    assert parse_seed(seed) == expected


async def test_advertise_resolution(anyio_backend: str) -> None:
    assert await resolve_advertise("10.1.2.3", "0.0.0.0") == "10.1.2.3"
    assert await resolve_advertise("auto", "127.0.0.1") == "127.0.0.1"
    lan = await resolve_advertise("auto", "0.0.0.0")
    assert lan not in ("0.0.0.0", "")
    assert not lan.startswith("127.") or lan == "127.0.0.1"


async def test_lifecycle_handler_errors_do_not_stop_other_handlers(anyio_backend: str) -> None:
    node = Node(bind="127.0.0.1")
    got: list[str] = []
    done = anyio.Event()

    @node.on("custom")
    async def broken(payload: str) -> None:
        raise RuntimeError("handler bug")

    @node.on("custom")
    async def fine(payload: str) -> None:
        got.append(payload)
        done.set()

    async with node:
        node.emit_event("custom", "hello")
        with anyio.fail_after(5):
            await done.wait()
        assert await Client("127.0.0.1", node.port).call("_synapse.ping") == "pong"
    assert got == ["hello"]


SCRIPT = textwrap.dedent(
    """
    import sys
    from synapse_p2p import Node
    node = Node(bind="127.0.0.1", name="runner")

    @node.endpoint
    async def hello() -> str:
        return "hi"

    node.run(backend=sys.argv[1])
    print("clean exit", flush=True)
    """
)


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_run_blocks_until_ctrl_c(backend: str, tmp_path: Path) -> None:
    script = tmp_path / "runner.py"
    script.write_text(SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(script), backend],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert "listening on 127.0.0.1:" in line, line
        port = int(line.split("127.0.0.1:")[1].split()[0])
        assert anyio.run(Client("127.0.0.1", port).call, "hello") == "hi"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "clean exit" in out
    assert "Traceback" not in err
