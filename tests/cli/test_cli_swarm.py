"""``sn ask``, ``sn broadcast``, ``sn watch`` and ``sn demo`` end to end: real processes on
loopback (no mDNS: every command gets ``--seed``)."""

from __future__ import annotations

import json
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest

from tests.cli.conftest import ROOT, StartNode, Tmux, env, sn

BACKENDS = ["trio", "asyncio"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_ask_prints_the_nonce_the_acks_and_the_replies(start_node: StartNode, backend: str) -> None:
    _, seed = start_node("reviewer")
    start_node("tester", seed=seed)
    done = sn("--backend", backend, "ask", "lab", "Review this diff", "--seed",
              f"127.0.0.1:{seed}", "--context", "url=https://x/pull/1")  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("ask: ")
    assert len(lines[0]) > 30
    assert lines[1] == "waiting for ACKs and replies... press Ctrl+C to stop"
    for name in ("reviewer", "tester"):
        ack = lines.index(f"✓ {name} acked")
        reply = lines.index(f"- {name}: {name}: LGTM for 'Review this diff' (https://x/pull/1)")
        assert ack < reply
    assert done.stderr == ""


def test_ask_joins_through_a_websocket_seed(start_node: StartNode) -> None:
    process, _ = start_node("reviewer", "--websocket", "ws://127.0.0.1:0/synapse")
    url = process.seen[0]["websocket"][0]
    done = sn("ask", "lab", "Review over ws", "--seed", url, "--timeout", "10")
    assert done.returncode == 0, done.stderr
    assert "- reviewer: reviewer: LGTM for 'Review over ws'" in done.stdout
    bad = sn("ask", "lab", "x", "--seed", "ws://127.0.0.1:0:1/nope")
    assert bad.returncode == 2
    assert "bad WebSocket URL" in bad.stderr


def test_ask_exit_codes(start_node: StartNode) -> None:
    _, seed = start_node("mute", "--ask", "none")
    # Nobody answers (the node has no ask handler): exit 4 with one line on stderr.
    done = sn("ask", "lab", "anyone?", "--seed", f"127.0.0.1:{seed}", "--timeout", "1")
    assert done.returncode == 4
    assert done.stderr == "sn: no node took the task (none has an ask handler?)\n"
    # A different swarm refuses the join: exit 3.
    done = sn("ask", "elsewhere", "hi", "--seed", f"127.0.0.1:{seed}", "--timeout", "1")
    assert done.returncode == 3
    assert done.stderr.startswith("sn: could not join swarm 'elsewhere': 127.0.0.1:")
    assert "different swarm" in done.stderr
    assert done.stderr.count("\n") == 1
    # Every answer is an error: exit 1, the error shown.
    _, broken = start_node("broken", "--ask", "fail", "--swarm", "fails")
    done = sn("ask", "fails", "review", "--seed", f"127.0.0.1:{broken}")
    assert done.returncode == 1
    assert "✗ broken failed: broken cannot review" in done.stdout
    assert done.stderr == "sn: every answer was an error\n"


def test_ask_with_the_seed_down_exits_3_at_once() -> None:
    started = time.monotonic()
    done = sn("ask", "lab", "hi", "--seed", "127.0.0.1:9", "--no-mdns")
    assert done.returncode == 3
    assert done.stderr.startswith("sn: could not join swarm 'lab': 127.0.0.1:9: ")
    assert done.stderr.count("\n") == 1
    assert done.stdout == ""
    assert time.monotonic() - started < 10  # not the reply timeout


def test_bad_context_is_a_usage_error() -> None:
    done = sn("ask", "lab", "hi", "--context", "novalue", "--seed", "127.0.0.1:9")
    assert done.returncode == 2
    assert "expected key=value, got 'novalue'" in done.stderr


class Program:
    """``sn ARGS`` in a subprocess; a thread collects its stdout lines."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "synapse_p2p", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(), cwd=ROOT,
        )  # fmt: skip
        self.lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def until(self, needle: str, timeout: float = 20) -> list[str]:
        seen: list[str] = []
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            seen.append(line)
            if needle in line:
                return seen
        raise AssertionError(f"{needle!r} not seen within {timeout} s: {seen}")

    def stop(self, sig: int, timeout: float = 20) -> tuple[int, str]:
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=timeout)
        assert self.proc.stderr is not None
        return code, self.proc.stderr.read()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        self._reader.join(timeout=2)  # (it reads to the end of stdout, then the pipes close)
        if self._reader.is_alive():
            return  # (a descendant still holds stdout: closing it under a read would block)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


class Watcher(Program):
    """``sn watch --plain`` in a subprocess."""

    def __init__(self, seed: int, *extra: str) -> None:
        super().__init__("watch", "lab", "--seed", f"127.0.0.1:{seed}", "--plain", *extra)


@pytest.mark.parametrize("backend", BACKENDS)
def test_watch_plain_shows_asks_acks_replies_and_broadcasts(
    start_node: StartNode, backend: str
) -> None:
    _, seed = start_node("reviewer")
    watcher = Watcher(seed, "--name", "eye")
    try:
        header = watcher.until("watching lab")
        assert header[-1].startswith("watching lab as eye @ 127.0.0.1:")
        watcher.until("JOINED  reviewer @ 127.0.0.1:")
        asked = sn("--backend", backend, "ask", "lab", "check this", "--seed",
                   f"127.0.0.1:{seed}")  # fmt: skip
        assert asked.returncode == 0, asked.stderr
        seen = watcher.until("REPLY   ")
        text = "\n".join(seen)
        assert "ASK     " in text
        assert "asker: check this" in text
        assert "ACK     " in text
        assert "reviewer acked" in text
        assert "reviewer → reviewer: LGTM for 'check this'" in seen[-1]
        # `sn broadcast` is answered by the watcher itself.
        said = sn("broadcast", "lab", "hello all", "--seed", f"127.0.0.1:{seed}")
        assert said.returncode == 0, said.stderr
        assert said.stdout.splitlines()[0].startswith("broadcast: ")
        assert '- eye: {"received_by":"eye"}' in said.stdout.splitlines()
        seen = watcher.until("synapse.message: hello all")
        assert "MESSAGE " in seen[-1]
        watcher.proc.send_signal(signal.SIGINT)
        assert watcher.proc.wait(timeout=20) == 0
    finally:
        watcher.close()


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_watch_renders_on_a_terminal_and_stops_on_ctrl_c(start_node: StartNode) -> None:
    _, seed = start_node("reviewer")
    terminal = Tmux("watch", "lab", "--seed", f"127.0.0.1:{seed}", "--name", "eye", width=160,
                    height=30)  # fmt: skip
    try:
        text = terminal.wait_for("watching lab", "self: eye @ 127.0.0.1:", "reviewer", "JOINED")
        assert "swarm" in text
        assert "chatter" in text
        asked = sn("-v", "ask", "lab", "check this", "--seed", f"127.0.0.1:{seed}")
        assert asked.returncode == 0, asked.stderr
        terminal.wait_for("REPLY", "reviewer acked")
        terminal.keys("C-c")
        text = terminal.wait_for("EXIT=")
        assert "EXIT=0" in text
        assert "chatter" not in text  # the full-screen view is gone
    finally:
        terminal.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_demo_runs_an_ask_and_a_team_round(backend: str) -> None:
    done = sn("--backend", backend, "demo", timeout=60)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for name in ("reviewer", "tester", "security"):
        assert f"✓ {name} acked" in out
        assert f"- {name}: " in out
    assert out.count(" done: ") == 2
    assert "grants it to coder-" in out
    assert "every node stopped" in out
    assert done.stderr == ""


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_long_waits_show_progress_on_a_terminal(start_node: StartNode) -> None:
    _, seed = start_node("slowpoke", "--delay", "4")
    session = f"sn-ask-{uuid.uuid4().hex[:8]}"
    command = (
        f"cd {ROOT} && PYTHONPATH={ROOT} {sys.executable} -m synapse_p2p ask lab slow "
        f"--seed 127.0.0.1:{seed}; echo EXIT=$?; sleep 30"
    )
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "120", "-y", "20",
                    command], check=True, timeout=10)  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        screens = []
        while time.monotonic() < deadline:  # a terminal has no events to wait on: poll it
            text = subprocess.run(["tmux", "capture-pane", "-p", "-t", session],
                                  capture_output=True, text=True, timeout=10).stdout  # fmt: skip
            screens.append(text)
            if "EXIT=" in text:
                break
            time.sleep(0.2)
        waiting = [s for s in screens if "waiting for slowpoke (" in s]
        assert waiting, screens[-1]
        assert " s)" in waiting[-1]  # the elapsed time
        final = screens[-1]
        assert "EXIT=0" in final
        assert "- slowpoke: slowpoke: LGTM for 'slow'" in final
        assert "waiting for slowpoke (" not in final  # the progress line is gone at the end
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], timeout=10, check=False)


def test_verbose_shows_the_library_log_on_stderr() -> None:
    quiet = sn("ask", "lab", "hi", "--seed", "127.0.0.1:9")
    assert quiet.stderr.count("\n") == 1
    loud = sn("-v", "ask", "lab", "hi", "--seed", "127.0.0.1:9")
    assert loud.returncode == 3
    assert "INFO synapse_p2p.node._node: node asker listening on 127.0.0.1:" in loud.stderr
    assert loud.stderr.splitlines()[-1].startswith("sn: could not join swarm 'lab'")


@pytest.mark.parametrize("backend", BACKENDS)
def test_ask_forever_stops_cleanly_on_ctrl_c(start_node: StartNode, backend: str) -> None:
    _, seed = start_node("reviewer")
    asker = Program("--backend", backend, "ask", "lab", "hi", "--seed", f"127.0.0.1:{seed}",
                    "--forever")  # fmt: skip
    try:
        asker.until("- reviewer: ")
        assert asker.proc.poll() is None  # --forever: still waiting after the reply
        code, stderr = asker.stop(signal.SIGINT)
        assert code == 0  # a reply came: interrupting is success
        assert "Traceback" not in stderr
    finally:
        asker.close()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_before_any_reply_exits_130(start_node: StartNode, sig: int) -> None:
    _, seed = start_node("thinker", "--delay", "60")
    asker = Program("ask", "lab", "hard question", "--seed", f"127.0.0.1:{seed}")
    try:
        asker.until("✓ thinker acked")
        code, stderr = asker.stop(sig)
        assert code == 130
        assert stderr == ""
    finally:
        asker.close()


def test_what_peers_send_cannot_drive_the_terminal(start_node: StartNode) -> None:
    """Names and replies with rich markup, control characters, escape sequences and deep
    nesting print as inert text; nothing crashes."""
    nasty = "a[/]b[red]x\x1b[2J"
    escape = json.dumps("\x1b[2J\x1b]0;title\x07pwned\nline2")
    _, seed = start_node(nasty, "--answer", escape)
    nested = json.dumps(json.loads("[" * 600 + "]" * 600))
    start_node("deep", "--answer", nested, seed=seed)
    done = sn("ask", "lab", "hi", "--seed", f"127.0.0.1:{seed}")
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stdout  # no raw escape character reached the output
    shown = "a[/]b[red]x\\x1b[2J"
    assert f"✓ {shown} acked" in done.stdout
    assert f"- {shown}: \\x1b[2J\\x1b]0;title\\x07pwned\\nline2" in done.stdout
    assert "- deep: [[[[" in done.stdout
    for command in ("peers", "info"):
        listed = sn(command, f"127.0.0.1:{seed}")
        assert listed.returncode == 0, listed.stderr
        assert "\x1b" not in listed.stdout


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_asks_id_can_be_looked_up_afterwards(start_node: StartNode, backend: str) -> None:
    _, seed = start_node("reviewer")
    done = sn("ask", "lab", "Review this diff", "--seed", f"127.0.0.1:{seed}", "--json")
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert records[0]["event"] == "ask"
    nonce = records[0]["id"]
    assert [(r["event"], r["peer"]) for r in records[1:]] == [
        ("ack", "reviewer"),
        ("reply", "reviewer"),
    ]
    assert "LGTM" in records[2]["result"]
    shown = sn("--backend", backend, "conversation", "lab", nonce, "--seed", f"127.0.0.1:{seed}")
    assert shown.returncode == 0, shown.stderr
    assert "Review this diff" in shown.stdout
    assert "reviewer" in shown.stdout
    lines = sn("conversation", "lab", nonce, "--seed", f"127.0.0.1:{seed}", "--json")
    events = [json.loads(line) for line in lines.stdout.splitlines()]
    assert [e["kind"] for e in events][:1] == ["message"]
    assert {"ack", "reply"} <= {e["kind"] for e in events}
    assert all(e["conversation_id"] == nonce for e in events)
    missing = sn("conversation", "lab", "no-such-id", "--seed", f"127.0.0.1:{seed}")
    assert missing.returncode == 4
    assert "no peer of swarm 'lab' holds conversation no-such-id" in missing.stderr


def test_watch_json_lines_and_goodbyes(start_node: StartNode) -> None:
    _, seed = start_node("reviewer")
    watcher = Program("watch", "lab", "--seed", f"127.0.0.1:{seed}", "--no-mdns", "--name",
                      "eye", "--json")  # fmt: skip
    visitor: Program | None = None
    try:
        watcher.until('"event":"peer.joined"')
        asked = sn("ask", "lab", "check this", "--seed", f"127.0.0.1:{seed}")
        assert asked.returncode == 0, asked.stderr
        seen = watcher.until('"kind":"reply"')
        records = [json.loads(line) for line in seen]
        kinds = [r.get("kind") for r in records if r["event"] == "conversation.event"]
        assert kinds[:1] == ["message"]
        assert "ack" in kinds
        # A node that stops cleanly says goodbye: listed by the watcher, then gone at once
        # (peer.left, not peer.offline after the peer timeout). The asker above lives for a
        # moment only (the watcher may never have listed it), so the goodbye comes from a
        # second watcher, stopped once the first has listed it.
        visitor = Program("watch", "lab", "--seed", f"127.0.0.1:{seed}", "--no-mdns", "--name",
                          "visitor", "--json")  # fmt: skip
        watcher.until('"name":"visitor"')
        visitor.proc.send_signal(signal.SIGINT)
        assert visitor.proc.wait(timeout=20) == 0
        left = [json.loads(line) for line in watcher.until('"event":"peer.left"')]
        assert [r["peer"]["name"] for r in left if r["event"] == "peer.left"] == ["visitor"]
        assert not any(r["event"] == "peer.offline" and r["peer"]["name"] == "visitor"
                       for r in left)  # fmt: skip
        watcher.proc.send_signal(signal.SIGINT)
        assert watcher.proc.wait(timeout=20) == 0
    finally:
        for program in (watcher, visitor):
            if program is not None:
                program.close()
