"""synapse-p2p 2.5.0 in its own virtual environment, for wire interop tests.

The reference has the same import name as this package, so it never shares a process with us:
its nodes and clients run as subprocesses of ``.cache/ref-2.5.0/bin/python``. The environment
is built on first use (pip from the package index) and reused afterwards.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import venv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
REF_DIR = Path(os.environ.get("SYNAPSE_REF_VENV", ROOT / ".cache" / "ref-2.5.0"))
REF_SCRIPTS = Path(__file__).resolve().parent / "ref"
REF_VERSION = "2.5.0"


def _ref_python() -> Path:
    return REF_DIR / "bin" / "python"


def _has_reference(python: Path) -> bool:
    if not python.exists():
        return False
    probe = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('synapse-p2p'))"],
        capture_output=True,
        text=True,
        cwd=REF_SCRIPTS,
    )
    return probe.returncode == 0 and probe.stdout.strip() == REF_VERSION


def build_reference_venv() -> Path:
    python = _ref_python()
    REF_DIR.parent.mkdir(parents=True, exist_ok=True)
    with open(REF_DIR.parent / ".ref-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _has_reference(python):
            venv.EnvBuilder(with_pip=True, clear=True).create(REF_DIR)
            subprocess.run(
                [str(python), "-m", "pip", "install", "--quiet", f"synapse-p2p=={REF_VERSION}"],
                check=True,
            )
    return python


@pytest.fixture(scope="session")
def ref_python() -> Path:
    try:
        return build_reference_venv()
    except (subprocess.CalledProcessError, OSError) as exc:  # pragma: no cover
        pytest.fail(f"could not install synapse-p2p {REF_VERSION} for interop tests: {exc}")


class RefProcess:
    """A reference script in a subprocess that prints one JSON line when ready.

    The constructor blocks until that line; from async code use :meth:`start`, which waits in
    a worker thread so the event loop (and any node the script talks to) keeps running.
    """

    def __init__(self, python: Path, script: str, *args: str, wait: bool = True) -> None:
        self.script = script
        self.proc = subprocess.Popen(
            [str(python), str(REF_SCRIPTS / script), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REF_SCRIPTS,
            env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        )
        self.ready: dict[str, Any] = {}
        if wait:
            self._wait_ready()

    def _wait_ready(self) -> None:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.kill()
            _, err = self.proc.communicate(timeout=10)
            raise RuntimeError(f"{self.script} failed to start: {err}")
        self.ready = json.loads(line)

    @classmethod
    async def start(cls, python: Path, script: str, *args: str) -> RefProcess:
        import anyio

        process = cls(python, script, *args, wait=False)
        try:
            with anyio.fail_after(60):
                await anyio.to_thread.run_sync(process._wait_ready, abandon_on_cancel=True)
        except BaseException:
            process.stop()
            raise
        return process

    def stop(self) -> None:
        self.proc.kill()
        self.proc.communicate(timeout=10)


@pytest.fixture
def ref_node(ref_python: Path) -> Iterator[RefProcess]:
    process = RefProcess(ref_python, "ref_node.py")
    try:
        yield process
    finally:
        process.stop()


def run_ref(python: Path, script: str, *args: str, stdin: str = "", timeout: float = 60) -> Any:
    """Run a reference script to completion and return its JSON output."""
    done = subprocess.run(
        [str(python), str(REF_SCRIPTS / script), *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=REF_SCRIPTS,
        timeout=timeout,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    if done.returncode != 0:
        raise AssertionError(f"{script} failed ({done.returncode}):\n{done.stderr}")
    return json.loads(done.stdout)


if __name__ == "__main__":  # build the environment ahead of time: python -m tests.interop.refenv
    print(build_reference_venv(), file=sys.stderr)
