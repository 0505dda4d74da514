"""examples/federation/swarm_router.py runs end to end (a subprocess, loopback only)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "federation" / "swarm_router.py"


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_swarm_router_example(backend: str) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), "--backend", backend],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "math-1      127.0.0.1:" in out
    assert "cost=0.5" in out
    assert "[math-1] 56154" in out
    assert "[research-1] three sources agree on 'Latest on fusion?' (for ann)" in out
    assert "12 research answers:" in out
    assert "research-2 stopped; dropped from routing after" in out
    assert out.rstrip().endswith("(for ?)")
