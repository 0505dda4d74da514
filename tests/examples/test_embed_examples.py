"""examples/embed_trio and examples/embed_asyncio run end to end and shut down cleanly, after
their demo and on Ctrl+C (loopback only)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import anyio

from synapse_p2p import Client
from tests.discovery.mdns_scripts.netns import LineProcess

ROOT = Path(__file__).resolve().parents[2]
TRIO = ROOT / "examples" / "embed_trio" / "service.py"
ASYNCIO = ROOT / "examples" / "embed_asyncio" / "app.py"


def run(*argv: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, *argv], cwd=ROOT, capture_output=True, text=True, timeout=20
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no warnings, no tracebacks on the way out
    return done.stdout.splitlines()


def test_embed_trio_demo() -> None:
    lines = run(str(TRIO))
    assert lines[0].startswith("service up: node on 127.0.0.1:")
    assert lines[1:] == [
        "10 jobs through the node: results sum to 165",
        "app.stats over the node: {'processed': 10}",
        "health check over plain TCP: ok processed=10",
        "service stopped: node and health ports closed: True",
    ]


def test_embed_trio_serves_for_a_while() -> None:
    lines = run(str(TRIO), "--seconds", "0.5")
    assert lines[0].startswith("service up:")
    assert lines[1:] == ["service stopped: node and health ports closed: True"]


def call(port: int, endpoint: str, *args: object) -> object:
    async def main() -> object:
        return await Client("127.0.0.1", port).call(endpoint, *args)

    return anyio.run(main)


def start(*argv: str) -> LineProcess:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return LineProcess([sys.executable, *argv], env=env, cwd=ROOT)


def test_embed_trio_serves_until_ctrl_c() -> None:
    service = start(str(TRIO), "--seconds", "0")
    try:
        up = service.expect_line(lambda _, line: line.startswith("service up:"), 15, "up")
        port = int(up.split("127.0.0.1:")[1].split(",")[0])
        assert call(port, "app.sum", [1, 2, 3.5]) == 6.5
        assert call(port, "app.stats") == {"processed": 1}
        assert service.stop(signal.SIGINT) == 0, service.stderr
    finally:
        service.kill()
    assert service.stdout.splitlines()[1:] == [
        "SIGINT: stopping",
        "service stopped: node and health ports closed: True",
    ]
    assert service.stderr == ""


def test_embed_asyncio_demo() -> None:
    lines = run(str(ASYNCIO))
    assert lines[0].startswith("app up: status server on 127.0.0.1:")
    assert lines[1].startswith("auditor node on 127.0.0.1:")
    assert lines[2].startswith("orders node on 127.0.0.1:")
    assert lines[2].endswith(", peers: auditor")
    assert lines[3:] == [
        "  placed widget x4: 10.00",
        "  placed gadget x120: 1440.00",
        "  placed sprocket x2: 0.00",
        "status server says: orders=3 queued=0",
        "auditor: 3 orders, total 1450.00",
        "  flagged: gadget x120: large order",
        "  flagged: sprocket x2: unknown item",
        "app stopped: consumer cancelled, status, auditor and orders ports closed: True",
    ]


def test_embed_asyncio_serves_until_ctrl_c() -> None:
    app = start(str(ASYNCIO), "--serve")
    try:
        ready = app.expect_line(lambda _, line: line.startswith("serving until"), 15, "serving")
        port = int(ready.rsplit(":", 1)[1])
        assert call(port, "orders.place", "gizmo", 2) == {
            "item": "gizmo",
            "quantity": 2,
            "total": 14.5,
        }
        assert app.stop(signal.SIGINT) == 0, app.stderr
    finally:
        app.kill()
    assert app.stdout.splitlines()[-2:] == [
        "stopping",
        "app stopped: consumer cancelled, status, auditor and orders ports closed: True",
    ]
    assert app.stderr == ""
