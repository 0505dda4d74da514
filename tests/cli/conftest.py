"""Fixtures for the command-line tests: real nodes in subprocesses, and ``sn`` itself run as
a real program (``python -m synapse_p2p``)."""

from __future__ import annotations

import os
import subprocess
import sys
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
    """``start_node(name, seed=None, ask="ok", swarm="lab")`` -> (process, port)."""
    started: list[JsonProcess] = []

    def start(name: str, *options: str, seed: int | None = None) -> tuple[JsonProcess, int]:
        argv = [sys.executable, str(SCRIPTS / "swarm_node.py"), "--name", name, *options]
        if seed is not None:
            argv += ["--seed", f"127.0.0.1:{seed}"]
        process = JsonProcess(argv, env=env(), cwd=ROOT)
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
