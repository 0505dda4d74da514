"""Fixtures for the command-line tests: real nodes in subprocesses, and ``sn`` itself run as
a real program (``python -m synapse_p2p``)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.discovery.mdns_scripts.netns import JsonProcess

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = Path(__file__).resolve().parent / "scripts"

StartNode = Callable[..., tuple[JsonProcess, int]]


def env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="200")


@pytest.fixture
def start_node() -> Iterator[StartNode]:
    """``start_node(name, *options, seed=None, secret=None)`` -> (process, port); ``secret``
    is given to the node as ``SYNAPSE_SECRET``."""
    started: list[JsonProcess] = []

    def start(
        name: str, *options: str, seed: int | None = None, secret: str | None = None
    ) -> tuple[JsonProcess, int]:
        argv = [sys.executable, str(SCRIPTS / "swarm_node.py"), "--name", name, *options]
        if seed is not None:
            argv += ["--seed", f"127.0.0.1:{seed}"]
        environment = env() if secret is None else dict(env(), SYNAPSE_SECRET=secret)
        process = JsonProcess(argv, env=environment, cwd=ROOT)
        started.append(process)
        ready = process.expect(lambda e: "port" in e, 20, f"{name} serving")
        return process, int(ready["port"])

    try:
        yield start
    finally:
        for process in started:
            process.stop()


def sn(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``python -m synapse_p2p ARGS`` to completion."""
    return subprocess.run(
        [sys.executable, "-m", "synapse_p2p", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env(),
        cwd=ROOT,
    )


class Tmux:
    """``sn ARGS`` on a real terminal of ``width`` x ``height`` cells (a tmux session); the
    shell prints ``EXIT=<code>`` when it ends. :meth:`close` kills the session."""

    def __init__(self, *args: str, width: int, height: int) -> None:
        self.session = f"sn-test-{uuid.uuid4().hex[:8]}"
        quoted = " ".join(shlex.quote(a) for a in args)
        command = (
            f"cd {shlex.quote(str(ROOT))} && PYTHONPATH={shlex.quote(str(ROOT))} "
            f"{shlex.quote(sys.executable)} -m synapse_p2p {quoted}; echo EXIT=$?; sleep 30"
        )
        subprocess.run(["tmux", "new-session", "-d", "-s", self.session, "-x", str(width),
                        "-y", str(height), command], check=True, timeout=10)  # fmt: skip

    def screen(self) -> str:
        return subprocess.run(["tmux", "capture-pane", "-p", "-t", self.session],
                              capture_output=True, text=True, timeout=10).stdout  # fmt: skip

    def wait_for(self, *needles: str, read: Callable[[str], str] = str, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:  # a terminal has no events to wait on: poll it
            text = read(self.screen())
            if all(n in text for n in needles):
                return text
            time.sleep(0.1)
        raise AssertionError(f"{needles} not on screen:\n{text}")

    def keys(self, *keys: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", self.session, *keys], check=True, timeout=10)

    def close(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.session], timeout=10, check=False)
