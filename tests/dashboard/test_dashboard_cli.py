"""``sn dashboard`` as a real program on loopback."""

from __future__ import annotations

import signal
import socket
import urllib.request

import pytest

from synapse_p2p.cli._dashboard import OBSERVER_CONVERSATIONS
from synapse_p2p.dashboard import Limits
from tests.cli.conftest import StartNode, sn, start_node  # noqa: F401  (a fixture)
from tests.cli.test_cli_swarm import Program


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_sn_dashboard_serves_the_page(start_node: StartNode, backend: str) -> None:  # noqa: F811
    _, seed = start_node("reviewer")
    program = Program("--backend", backend, "dashboard", "lab", "--seed", f"127.0.0.1:{seed}",
                      "--port", "0", "--allow-ask")  # fmt: skip
    try:
        lines = program.until("dashboard of swarm 'lab': http://127.0.0.1:")
        url = lines[-1].split(": ", 1)[1]
        assert "#token=" in url
        program.until("asks allowed from this machine")
        with urllib.request.urlopen(url.split("#", 1)[0], timeout=10) as response:
            assert response.status == 200
            assert b"synapse-p2p dashboard" in response.read()
        code, stderr = program.stop(signal.SIGINT)
        assert code == 0, stderr
    finally:
        program.close()


def test_sn_dashboard_reports_a_busy_port(start_node: StartNode) -> None:  # noqa: F811
    _, seed = start_node("reviewer")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = sn("dashboard", "lab", "--seed", f"127.0.0.1:{seed}", "--port", str(port))
    assert done.returncode == 1
    assert done.stderr.startswith(f"sn: cannot serve on 127.0.0.1:{port}: ")


def test_sn_demo_with_the_dashboard() -> None:
    program = Program("demo", "--dashboard", "--dashboard-port", "0")
    try:
        lines = program.until("the dashboard: http://127.0.0.1:")
        url = lines[-1].split("the dashboard: ", 1)[1].strip()
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200
        program.until("the swarm stays up for the dashboard; Ctrl+C stops it", timeout=30)
        code, stderr = program.stop(signal.SIGINT)
        assert code == 0, stderr
    finally:
        program.close()


def test_the_observer_keeps_no_more_conversations_than_the_page_shows() -> None:
    """The observer's log is its memory: in a swarm of 200 an ask is 401 events (~1.2 MiB)."""
    assert OBSERVER_CONVERSATIONS == Limits().conversations == 300
