"""examples/a2a_bridge runs offline, end to end, under both backends."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("a2a", reason="the a2a extra is not installed")

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_a2a_bridge_example(backend: str) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "a2a_bridge" / "run.py"), "--backend", backend],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "(signature verified), skills: ['build', 'math']" in out
    assert "math: 6*7 = 42" in out
    assert "build: working compiling\nbuild: working linking\n" in out
    assert "build: artifact {'artifact': 'app.whl'}" in out
    assert "build: task completed" in out
    assert "federation -> A2A: 3*14 = 42" in out
    assert done.stderr == ""
