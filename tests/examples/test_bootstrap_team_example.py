"""examples/bootstrap_team runs end to end: in one process (both backends) and as separate
programs (a seed, three members and inspect_team.py), loopback only."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.discovery.mdns_scripts.netns import LineProcess

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "bootstrap_team"
ROLES = ("planner", "reviewer", "coder")


@pytest.mark.parametrize(
    "command",
    [["-m", "examples.bootstrap_team"], [str(EXAMPLE / "run.py"), "--backend", "asyncio"]],
    ids=["module-trio", "script-asyncio"],
)
def test_the_team_in_one_process(command: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, *command], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "bootstrap: joined    planner   127.0.0.1:" in out
    assert "bootstrap: joined    reviewer  127.0.0.1:" in out
    assert "bootstrap: joined    coder     127.0.0.1:" in out
    assert re.search(r"seed bootstrap \(bootstrap\) at 127\.0\.0\.1:\d+ knows 3 peer\(s\):", out)
    assert re.search(r"  coder     node      127\.0\.0\.1:\d+ +python, implementation\n", out)
    assert "agent-card: model=stand-in-planner tools=todo-list capacity=1" in out
    assert "agent-card: model=stand-in-reviewer tools=diff capacity=2" in out
    assert "agent-card: model=stand-in-coder tools=editor, pytest capacity=1" in out
    assert "  planner   design (planner) > implement (coder) > review (reviewer)" in out
    assert "  reviewer  approved" in out
    assert "  coder     wrote add_a_health_check.py" in out
    assert "bootstrap: left      coder     127.0.0.1:" in out
    assert "seed still knows: planner, reviewer" in out
    assert out.rstrip().endswith("team stopped")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_separate_programs() -> None:
    seed = f"127.0.0.1:{free_port()}"
    env = dict(os.environ, SYNAPSE_BOOTSTRAP=seed, PYTHONUNBUFFERED="1")
    processes: list[LineProcess] = []

    def start(script: str) -> LineProcess:
        process = LineProcess([sys.executable, str(EXAMPLE / script)], env=env, cwd=ROOT)
        processes.append(process)
        return process

    try:
        bootstrap = start("bootstrap.py")
        bootstrap.expect_line(lambda _, line: f"listening on {seed}" in line, 15, "seed up")
        for role in ROLES:
            start(f"{role}.py")
        joined: set[str] = set()
        while joined != set(ROLES):
            line = bootstrap.expect_line(
                lambda _, line: line.startswith("bootstrap: joined"), 15, f"joined {joined}"
            )
            joined.add(line.split()[2])

        done = subprocess.run(
            [sys.executable, str(EXAMPLE / "inspect_team.py")],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=20,
        )
        assert done.returncode == 0, done.stderr
        out = done.stdout
        assert f"seed bootstrap (bootstrap) at {seed} knows 3 peer(s):" in out
        for role in ROLES:
            assert re.search(rf"\n  {role} +node +127\.0\.0\.1:\d+ ", out), out
        assert "agent-card: model=stand-in-planner tools=todo-list capacity=1" in out
        assert "agent-card: model=stand-in-reviewer tools=diff capacity=2" in out
        assert "agent-card: model=stand-in-coder tools=editor, pytest capacity=1" in out

        for process in reversed(processes):  # SIGTERM stops every program cleanly
            assert process.stop(signal.SIGTERM) == 0, process.stderr
    finally:
        for process in processes:
            process.kill()
