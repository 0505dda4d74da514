"""examples/local_mdns_swarm runs end to end over real mDNS, in one process and as three.

Network rule: mDNS never runs on this machine's real interfaces. Every process of the example
runs inside network namespaces these tests create (``tests/discovery/mdns_scripts/netns.py``)
and delete afterwards. Skipped, with the reason printed, when namespaces are unavailable.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.discovery.mdns_scripts.netns import LineProcess, Netns, NetnsPair, NetnsUnavailable

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "local_mdns_swarm"


def unavailable(exc: NetnsUnavailable) -> None:
    print(f"mDNS example tests skipped: {exc}")
    pytest.skip(f"network namespaces unavailable: {exc}")


@pytest.fixture
def host() -> Iterator[Netns]:
    """One test host: a namespace with only ``lo``."""
    try:
        netns = Netns("snexample")
    except NetnsUnavailable as exc:
        unavailable(exc)
    with netns:
        yield netns


def check_the_conversation(out: str) -> None:
    assert "ACK from reviewer" in out
    assert "ACK from coder" in out
    assert "reply from reviewer: changes requested on app/users.py" in out
    assert "    - a bare `except:` hides real errors; catch KeyError" in out
    assert "    - `id` shadows the built-in; call it user_id" in out
    assert "reply from coder: patch for app/users.py" in out
    assert "    | def get_user(user_id):" in out
    assert "    |     except KeyError:" in out
    assert re.search(r"conversation \S+: message > ack > ack > reply > reply\n", out)


@pytest.mark.parametrize(
    "command",
    [["-m", "examples.local_mdns_swarm"], [str(EXAMPLE / "run.py"), "--backend", "asyncio"]],
    ids=["module-trio", "script-asyncio"],
)
def test_the_swarm_finds_itself_in_one_process(host: Netns, command: list[str]) -> None:
    done = host.run([sys.executable, *command], timeout=30)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert re.search(r"discovered reviewer at 127\.0\.0\.1:\d+ \(code-review\)", out)
    assert re.search(r"discovered coder at 127\.0\.0\.1:\d+ \(python, implementation\)", out)
    assert "asked 2 peer(s): 'Review this change and propose a fix' (app/users.py)" in out
    check_the_conversation(out)
    assert out.rstrip().endswith("2 replies; stopping the swarm")


def test_separate_programs_on_two_hosts(netns: NetnsPair) -> None:
    """reviewer.py on one host, coder.py on the other, ask.py next to the reviewer."""

    def on(ns: str, script: str, address: str, interface: str) -> list[str]:
        command = [sys.executable, str(EXAMPLE / script), "--bind", address]
        return ["ip", "netns", "exec", ns, *command, "--interface", interface]

    agents = [
        LineProcess(
            on(netns.a, "reviewer.py", netns.addr_a, netns.if_a), env=dict(os.environ), cwd=ROOT
        ),
        LineProcess(
            on(netns.b, "coder.py", netns.addr_b, netns.if_b), env=dict(os.environ), cwd=ROOT
        ),
    ]
    try:
        ask = on(netns.a, "ask.py", netns.addr_a, netns.if_a)
        done = subprocess.run(
            [*ask, "--wait", "15", "--timeout", "15"],
            capture_output=True,
            text=True,
            timeout=30,
            cwd=ROOT,
        )
        assert done.returncode == 0, done.stderr
        out = done.stdout
        assert f"discovered reviewer at {netns.addr_a}:" in out
        assert f"discovered coder at {netns.addr_b}:" in out
        check_the_conversation(out)
        for agent in agents:  # Ctrl+C stops a node cleanly
            assert agent.stop(signal.SIGINT) == 0, agent.stderr
    finally:
        for agent in agents:
            agent.kill()
