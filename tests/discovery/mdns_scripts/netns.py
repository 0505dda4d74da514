"""Two test hosts joined by a veth pair, in network namespaces the tests create themselves.

mDNS never touches the machine's real interfaces: both ends of the veth pair are created
directly inside the new namespaces (nothing is added to the root namespace), each namespace has
only ``lo`` and its veth end (``10.199.<n>.1/24`` and ``10.199.<n>.2/24``, never routed
anywhere), and multicast is routed onto the veth. :meth:`NetnsPair.close` kills the processes
it started and deletes both namespaces (which removes the veth pair); an ``atexit`` hook does
the same if a test run is interrupted.
"""

from __future__ import annotations

import atexit
import itertools
import json
import os
import queue
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

SCRIPTS = Path(__file__).resolve().parent
ROOT = SCRIPTS.parents[2]  # the repository (tests/discovery/mdns_scripts -> ../../..)
_counter = itertools.count()
_live: set[str] = set()


class NetnsUnavailable(RuntimeError):
    """Network namespaces cannot be created here (not root, no iproute2, no permission)."""


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    if done.returncode != 0:
        raise NetnsUnavailable(f"`ip {' '.join(args)}` failed: {done.stderr.strip()}")


def _delete(name: str) -> None:
    subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)
    _live.discard(name)


@atexit.register
def _cleanup_all() -> None:
    for name in list(_live):
        _delete(name)


class JsonProcess:
    """A subprocess printing JSON lines, read by a thread into a queue."""

    def __init__(self, argv: Sequence[str], *, env: dict[str, str], cwd: Path) -> None:
        self.argv = list(argv)
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=cwd,
        )
        self.events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        self._stderr: list[str] = []
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.strip()
            if line.startswith("{"):
                try:
                    self.events.put(json.loads(line))
                except ValueError:
                    pass
        self.events.put(None)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr.append(line)

    @property
    def stderr(self) -> str:
        return "".join(self._stderr[-60:])

    def expect(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float, what: str
    ) -> dict[str, Any]:
        """The next event matching ``predicate`` within ``timeout`` seconds, else fail."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                event = self.events.get(timeout=left)
            except queue.Empty:
                break
            if event is None:
                self.events.put(None)
                raise AssertionError(
                    f"{what}: process exited ({self.proc.poll()}); seen {self._tail()}\n{self.stderr}"
                )
            self.seen.append(event)
            if predicate(event):
                return event
        raise AssertionError(f"{what}: not within {timeout} s; seen {self._tail()}\n{self.stderr}")

    def _tail(self) -> str:
        skipped = len(self.seen) - 8
        return ("... " if skipped > 0 else "") + ", ".join(map(str, self.seen[-8:]))

    def send(self, command: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()

    def stop(self, timeout: float = 10.0) -> int | None:
        """Ask it to stop (stdin EOF), wait up to ``timeout`` s, then kill."""
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode


class NetnsPair:
    """Namespaces ``a`` and ``b`` joined by a veth pair, with multicast routed onto it."""

    def __init__(self) -> None:
        if os.geteuid() != 0:
            raise NetnsUnavailable("network namespaces need root")
        if shutil.which("ip") is None:
            raise NetnsUnavailable("iproute2 (`ip`) is not installed")
        n = next(_counter)
        tag = f"{os.getpid()}-{n}-{uuid.uuid4().hex[:6]}"
        self.a, self.b = f"snmdns-{tag}-a", f"snmdns-{tag}-b"
        self.if_a, self.if_b = "mdns0", "mdns1"
        subnet = n % 250 + 1
        self.addr_a, self.addr_b = f"10.199.{subnet}.1", f"10.199.{subnet}.2"
        self.processes: list[JsonProcess] = []
        try:
            for ns in (self.a, self.b):
                _ip("netns", "add", ns)
                _live.add(ns)
            _ip(
                "link", "add", self.if_a, "netns", self.a,
                "type", "veth", "peer", "name", self.if_b, "netns", self.b,
            )  # fmt: skip
            for ns, ifname, address in (
                (self.a, self.if_a, self.addr_a),
                (self.b, self.if_b, self.addr_b),
            ):
                _ip("-n", ns, "link", "set", "lo", "up")
                _ip("-n", ns, "addr", "add", f"{address}/24", "dev", ifname)
                _ip("-n", ns, "link", "set", ifname, "up", "multicast", "on")
                _ip("-n", ns, "route", "add", "224.0.0.0/4", "dev", ifname)
        except BaseException:
            self.close()
            raise

    def spawn(
        self,
        ns: str,
        argv: Sequence[str],
        *,
        hostname: str | None = None,
        env: dict[str, str] | None = None,
    ) -> JsonProcess:
        """Start ``argv`` inside namespace ``ns`` (optionally in its own UTS namespace with
        ``hostname``, to play a different machine)."""
        command = ["ip", "netns", "exec", ns]
        if hostname is not None:
            command += [
                "unshare",
                "--uts",
                "--",
                "sh",
                "-c",
                'hostname "$0" && exec "$@"',
                hostname,
            ]
        process = JsonProcess(
            [*command, *argv], env=env if env is not None else dict(os.environ), cwd=SCRIPTS
        )
        self.processes.append(process)
        return process

    def close(self) -> None:
        for process in self.processes:
            if process.proc.poll() is None:
                process.proc.kill()
                process.proc.wait(timeout=10)
        for ns in (self.a, self.b):
            if ns in _live:
                _delete(ns)
