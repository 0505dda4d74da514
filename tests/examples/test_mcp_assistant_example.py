"""examples/mcp_assistant runs end to end: in one process on both backends, and as two
programs (the swarm, then the MCP client launching ``sn mcp``) on a free loopback port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.discovery.mdns_scripts.netns import LineProcess

pytest.importorskip("mcp", reason="the MCP SDK is not installed (pip install '.[mcp]')")

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "mcp_assistant"
EXPECTED_TAIL = [
    "peer coder: python; no agent card",
    "peer reviewer: code-review; {'name': 'reviewer', 'skills': ['code review'], "
    "'model': 'a stand-in: no API keys needed'}",
    "reply from reviewer: LGTM after fixing tests (Review this diff)",
    "lint: long lines = 1",
    "task done by coder: {'diff': '+ def parse(): ...'}",
    "the ask's conversation: message -> ack -> reply",
]


def env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_run_in_one_process(backend: str) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE / "run.py"), "--backend", backend],
        capture_output=True, text=True, timeout=120, env=env(), cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("tools: list_peers, describe_peer, ask_swarm, ask_peer")
    assert lines[1:] == EXPECTED_TAIL


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_swarm_and_the_client_as_two_programs() -> None:
    port = free_port()
    swarm = LineProcess([sys.executable, str(EXAMPLE / "swarm.py")],
                        env={**env(), "SYNAPSE_PORT": str(port)}, cwd=ROOT)  # fmt: skip
    try:
        swarm.expect_line(lambda _, line: "Ctrl+C to stop" in line, 20, "the swarm starts")
        done = subprocess.run(
            [sys.executable, str(EXAMPLE / "client.py"), "--seed", f"127.0.0.1:{port}"],
            capture_output=True, text=True, timeout=120, env=env(), cwd=ROOT,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines()[1:] == EXPECTED_TAIL
        assert swarm.stop(signal.SIGINT) == 0, swarm.stderr
    finally:
        swarm.kill()
