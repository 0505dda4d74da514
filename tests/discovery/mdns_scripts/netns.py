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
        self._readers = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

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
        self.release()
        return self.proc.returncode

    def release(self) -> None:
        """Once the process has ended: let the readers reach the end, then close the pipes."""
        for reader in self._readers:
            reader.join(timeout=2)
        if any(reader.is_alive() for reader in self._readers):
            return  # (a descendant still holds a pipe: closing it under a read would block)
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                try:
                    pipe.close()
                except OSError:  # (stdin: a flush to a process gone)
                    pass


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
            process.release()
        for ns in (self.a, self.b):
            if ns in _live:
                _delete(ns)


class LineProcess:
    """A subprocess whose stdout and stderr lines are read by threads into one queue."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: dict[str, str],
        cwd: Path,
        stdin: int | None = subprocess.DEVNULL,
    ) -> None:
        self.argv = list(argv)
        self.proc = subprocess.Popen(
            self.argv,
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=cwd,
        )
        self.lines: queue.Queue[tuple[str, str] | None] = queue.Queue()
        self.output: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self._open = 2
        self._lock = threading.Lock()
        self._readers = [
            threading.Thread(target=self._read, args=(stream,), daemon=True)
            for stream in ("stdout", "stderr")
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream: str) -> None:
        pipe = getattr(self.proc, stream)
        assert pipe is not None
        for line in pipe:
            self.output[stream].append(line)
            self.lines.put((stream, line.rstrip("\n")))
        with self._lock:
            self._open -= 1
            if self._open == 0:
                self.lines.put(None)

    @property
    def stdout(self) -> str:
        return "".join(self.output["stdout"])

    @property
    def stderr(self) -> str:
        return "".join(self.output["stderr"])

    def expect_line(self, predicate: Callable[[str, str], bool], timeout: float, what: str) -> str:
        """The next ``(stream, line)`` matching ``predicate`` within ``timeout`` s, else fail."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                item = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if item is None:
                self.lines.put(None)
                code = self.proc.wait(timeout=10)
                raise AssertionError(f"{what}: process exited ({code})\n{self._tail()}")
            if predicate(*item):
                return item[1]
        raise AssertionError(f"{what}: not within {timeout} s\n{self._tail()}")

    def _tail(self) -> str:
        return f"stdout:\n{self.stdout[-3000:]}\nstderr:\n{self.stderr[-3000:]}"

    def stop(self, signal_number: int, timeout: float = 10.0) -> int:
        """Send ``signal_number``, wait up to ``timeout`` s (then kill); the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal_number)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(
                    f"{self.argv} did not stop within {timeout} s of signal {signal_number}\n"
                    f"{self._tail()}"
                ) from None
        self.release()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.release()

    def release(self) -> None:
        """Once the process has ended: let the readers reach the end, then close the pipes
        (not under a read a descendant still feeds: closing would block)."""
        for reader in self._readers:
            reader.join(timeout=2)
        if any(reader.is_alive() for reader in self._readers):
            return
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                try:
                    pipe.close()
                except OSError:
                    pass


class Netns:
    """One network namespace with only ``lo`` (up): a private test host.

    Every port is free in it (a program may bind 9999 whatever runs on this machine) and
    nothing in it reaches the machine's real interfaces, so mDNS may run there too
    (``multicast=True`` routes multicast onto ``lo``). :meth:`close` kills the processes it
    started and deletes the namespace; the ``atexit`` hook does the same if a run is
    interrupted. Also a context manager.
    """

    def __init__(self, prefix: str = "sntest", *, multicast: bool = False) -> None:
        if os.geteuid() != 0:
            raise NetnsUnavailable("network namespaces need root")
        if shutil.which("ip") is None:
            raise NetnsUnavailable("iproute2 (`ip`) is not installed")
        self.name = f"{prefix}-{os.getpid()}-{next(_counter)}-{uuid.uuid4().hex[:6]}"
        self.processes: list[LineProcess] = []
        try:
            _ip("netns", "add", self.name)
            _live.add(self.name)
            _ip("-n", self.name, "link", "set", "lo", "up")
            if multicast:
                _ip("-n", self.name, "link", "set", "lo", "multicast", "on")
                _ip("-n", self.name, "route", "add", "224.0.0.0/4", "dev", "lo")
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Netns:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside the namespace (``ip netns exec`` execs it: same pid)."""
        return ["ip", "netns", "exec", self.name, *argv]

    def spawn(
        self,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        stdin: int | None = subprocess.DEVNULL,
    ) -> LineProcess:
        """Start ``argv`` inside the namespace; stopped by :meth:`close` at the latest."""
        process = LineProcess(
            self.command(argv),
            env=env if env is not None else dict(os.environ),
            cwd=cwd if cwd is not None else ROOT,
            stdin=stdin,
        )
        self.processes.append(process)
        return process

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside the namespace to completion (killed after ``timeout`` s)."""
        return subprocess.run(
            self.command(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env if env is not None else dict(os.environ),
            cwd=cwd if cwd is not None else ROOT,
            stdin=subprocess.DEVNULL,
        )

    def close(self) -> None:
        for process in self.processes:
            process.kill()
        if self.name in _live:
            _delete(self.name)
