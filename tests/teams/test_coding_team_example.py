"""examples/coding_team runs end to end, both ways it is documented to start."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "command",
    [
        ["-m", "examples.coding_team"],
        [str(ROOT / "examples" / "coding_team" / "run.py"), "--backend", "asyncio"],
    ],
    ids=["module-trio", "script-asyncio"],
)
def test_the_coding_team_example_runs(command: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, *command], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "architect: all files approved; 2 * (3 + 4) - 10 / 4 = 11.5" in out
    assert "review of calc/evaluator.py" in out
    for title in ("implement the tokenizer", "implement the parser", "fix calc/evaluator.py"):
        line = next(line for line in out.splitlines() if line.strip().startswith(title))
        assert line.split()[-1] == "done"
        assert line.count("grant") == 1
