"""``sn mcp`` as a program: stopping, stdout kept for MCP, usage errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("mcp", reason="the MCP SDK is not installed (pip install '.[mcp]')")

ROOT = Path(__file__).resolve().parents[2]


def env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT))


def sn(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "synapse_p2p", *args],
        capture_output=True, text=True, timeout=timeout, env=env(), cwd=ROOT, stdin=subprocess.DEVNULL,
    )  # fmt: skip


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_sigterm_stops_the_server_while_its_client_keeps_stdin_open(backend: str) -> None:
    # The seed is down: the server says so on stderr and serves anyway (the node retries).
    proc = subprocess.Popen(
        [sys.executable, "-m", "synapse_p2p", "--backend", backend, "mcp", "lab", "--no-mdns",
         "--seed", "127.0.0.1:9"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env(), cwd=ROOT,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline().decode()
        assert line.startswith("sn mcp: could not join swarm 'lab' yet (127.0.0.1:9: ")
        assert line.rstrip().endswith("serving anyway")
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=20)
        assert time.monotonic() - started < 5
        assert code == 130
        assert proc.stdout is not None
        assert proc.stdout.read() == b""  # stdout is the MCP channel: nothing else on it
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_closing_stdin_ends_the_server() -> None:
    done = sn("mcp", "lab", "--no-mdns", "--seed", "127.0.0.1:9")  # stdin is /dev/null
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""


def test_nothing_to_join_is_a_usage_error() -> None:
    done = sn("mcp", "lab", "--no-mdns")
    assert done.returncode == 2
    assert "nothing to join: give --seed HOST:PORT, or allow --mdns" in done.stderr


def test_without_the_mcp_sdk_the_command_says_which_extra_to_install() -> None:
    code = (
        "import sys; sys.modules['mcp'] = None; sys.argv = ['sn', 'mcp', 'lab', '--seed', "
        "'127.0.0.1:9']; from synapse_p2p.cli import main; main()"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env=env(), cwd=ROOT, stdin=subprocess.DEVNULL)  # fmt: skip
    assert done.returncode == 1
    assert done.stderr == (
        "sn: synapse_p2p.mcp needs the MCP SDK: pip install 'synapse-p2p[mcp]'\n"
    )
    assert done.stdout == ""


@pytest.mark.parametrize("version", ["2024-11-05", "2025-06-18"])
def test_clients_of_earlier_protocol_versions(version: str) -> None:
    """Raw JSON-RPC lines as clients of earlier MCP versions send them (the handshake era)."""
    import json

    proc = subprocess.Popen(
        [sys.executable, "-m", "synapse_p2p", "mcp", "lab", "--no-mdns", "--seed", "127.0.0.1:9"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env=env(), cwd=ROOT,
    )  # fmt: skip
    assert proc.stdin is not None
    assert proc.stdout is not None

    def call(message: dict[str, object]) -> dict[str, object]:
        assert proc.stdin is not None
        assert proc.stdout is not None
        proc.stdin.write(json.dumps({"jsonrpc": "2.0", **message}) + "\n")
        proc.stdin.flush()
        if "id" not in message:
            return {}
        answer: dict[str, object] = json.loads(proc.stdout.readline())
        assert answer["id"] == message["id"]
        return answer

    try:
        hello = call({"id": 1, "method": "initialize", "params": {
            "protocolVersion": version, "capabilities": {},
            "clientInfo": {"name": "older-client", "version": "1"}}})  # fmt: skip
        result: dict[str, object] = hello["result"]  # type: ignore[assignment]
        assert result["protocolVersion"] == version
        call({"method": "notifications/initialized"})
        tools = call({"id": 2, "method": "tools/list"})["result"]
        assert len(tools["tools"]) == 17  # type: ignore[index]
        failed = call({"id": 3, "method": "tools/call",
                       "params": {"name": "ask_peer", "arguments": {"peer": "x", "task": "y"}}})  # fmt: skip
        assert failed["result"]["isError"] is True  # type: ignore[index]
        assert "no peer 'x'" in failed["result"]["content"][0]["text"]  # type: ignore[index]
        proc.stdin.close()
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
