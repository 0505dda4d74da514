"""What each README block runs with, and what it must do: the scenario registry.

A scenario is a function decorated with ``@scenario("block-name", ...)`` naming the README
blocks it executes (their ``<!-- readme-test: NAME -->`` markers). ``async def`` scenarios run
in process under trio and under asyncio; plain ``def`` scenarios run once and are the place for
subprocesses, network namespaces, shell transcripts and pytester. Each gets a
:class:`Context`. The helpers below (``shell_session``, ``check_transcript``, ``lan``, ...)
are for scenarios to share.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import anyio
import pytest

from synapse_p2p import (
    Client,
    ConversationEvent,
    CronSchedule,
    IntervalSchedule,
    Node,
    SolarSchedule,
    SqliteConversationLog,
)
from synapse_p2p.testing import open_swarm
from synapse_p2p.wire import (
    Request,
    Response,
    decode_message,
    encode_frame,
    encode_request,
    encode_response,
    pack,
    unpack_payload,
)
from tests.discovery.mdns_scripts.netns import LineProcess, Netns, NetnsPair, NetnsUnavailable
from tests.helpers import read_frame
from tests.readme.blocks import ROOT, Block, exec_block, run_block, transcript

HERE = Path(__file__).resolve().parent
BLOCKS_SCRIPT = HERE / "blocks.py"
STEP = 20.0  # seconds any one step may take before the scenario fails (never reached when well)

F = TypeVar("F", bound=Callable[..., Any])


# -- The registry -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    name: str
    blocks: tuple[str, ...]
    func: Callable[[Context], Any]

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.func)


SCENARIOS: dict[str, Scenario] = {}


def scenario(*blocks: str) -> Callable[[F], F]:
    """Register the decorated function as the scenario executing README ``blocks``."""

    def register(func: F) -> F:
        name = func.__name__.replace("_", "-")
        if name in SCENARIOS:
            raise ValueError(f"scenario {name!r} registered twice")
        if not blocks:
            raise ValueError(f"scenario {name!r} names no README block")
        SCENARIOS[name] = Scenario(name, blocks, func)
        return func

    return register


def covered() -> dict[str, list[str]]:
    """README block name -> the scenarios that execute it."""
    names: dict[str, list[str]] = {}
    for registered in SCENARIOS.values():
        for block in registered.blocks:
            names.setdefault(block, []).append(registered.name)
    return names


@dataclass
class Context:
    """What a scenario runs with: its blocks, a temporary directory and pytest's request."""

    scenario: Scenario
    readme: dict[str, Block]
    request: pytest.FixtureRequest
    tmp_path: Path
    backend: str | None = None
    cleanups: list[Callable[[], None]] = field(default_factory=list)
    #: Variables added to the environment of every subprocess (``env()``).
    extra_env: dict[str, str] = field(default_factory=dict)

    def block(self, name: str) -> Block:
        if name not in self.scenario.blocks:
            raise KeyError(f"scenario {self.scenario.name!r} did not declare block {name!r}")
        try:
            return self.readme[name]
        except KeyError:
            raise AssertionError(
                f"README.md has no block marked <!-- readme-test: {name} --> any more; "
                f"update or remove scenario {self.scenario.name!r}"
            ) from None

    def fixture(self, name: str) -> Any:
        return self.request.getfixturevalue(name)

    def program(self, name: str) -> Path:
        """The block as a file whose line numbers are the README's (for tracebacks)."""
        block = self.block(name)
        path = self.tmp_path / f"readme_{name.replace('-', '_')}.py"
        path.write_text("\n" * (block.line - 1) + block.code, encoding="utf-8")
        return path

    def env(self) -> dict[str, str]:
        """The environment of subprocesses: this checkout importable, ``sn`` on the PATH."""
        path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
        scripts = str(Path(sys.executable).parent)
        return dict(
            os.environ,
            PYTHONPATH=path,
            PYTHONUNBUFFERED="1",
            PYTHONUTF8="1",
            PATH=os.pathsep.join([scripts, os.environ.get("PATH", "")]),
            **self.extra_env,
        )

    def spawn_in(self, ns: str, argv: list[str]) -> LineProcess:
        """Start ``argv`` inside namespace ``ns`` (killed after the scenario at the latest)."""
        process = LineProcess(["ip", "netns", "exec", ns, *argv], env=self.env(), cwd=self.tmp_path)
        self.cleanups.append(process.kill)
        return process

    def netns(self) -> Netns:
        """A fresh single-host namespace (deleted after the scenario), or skip."""
        try:
            host = Netns("snreadme")
        except NetnsUnavailable as exc:
            print(f"README scenario {self.scenario.name} skipped: {exc}")
            pytest.skip(f"network namespaces unavailable: {exc}")
        self.cleanups.append(host.close)
        return host

    def netns_pair(self) -> NetnsPair:
        """Two hosts joined by a veth pair, multicast routed on it (deleted afterwards)."""
        try:
            pair = NetnsPair()
        except NetnsUnavailable as exc:
            print(f"README scenario {self.scenario.name} skipped: {exc}")
            pytest.skip(f"network namespaces unavailable: {exc}")
        self.cleanups.append(pair.close)
        return pair


# -- Helpers ----------------------------------------------------------------------------------


class Printed:
    """A stand-in ``print`` for a block's namespace: keeps each printed line."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, *args: Any, sep: str = " ", **_: Any) -> None:
        self.lines.append(sep.join(map(str, args)))


@dataclass
class Run:
    """A finished subprocess, for assertion messages."""

    done: subprocess.CompletedProcess[str]

    def ok(self) -> Run:
        assert self.done.returncode == 0, (
            f"{self.done.args} exited {self.done.returncode}\n"
            f"stdout:\n{self.done.stdout}\nstderr:\n{self.done.stderr}"
        )
        return self

    def last_json(self) -> Any:
        return json.loads(self.done.stdout.strip().splitlines()[-1])


def all_of(*checks: Callable[[dict[str, Any]], bool]) -> Callable[[dict[str, Any]], bool]:
    """A predicate true once every check has matched some event (in any order)."""
    remaining = list(checks)

    def check(event: dict[str, Any]) -> bool:
        remaining[:] = [c for c in remaining if not c(event)]
        return not remaining

    return check


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    assert done.returncode == 0, f"ip {' '.join(args)}: {done.stderr}"


def lan(pair: NetnsPair) -> None:
    """Give both test hosts a default route onto their veth, like machines on a LAN (the
    nodes' "auto" advertised address is then the veth address)."""
    for ns, ifname in ((pair.a, pair.if_a), (pair.b, pair.if_b)):
        _ip("-n", ns, "route", "add", "default", "dev", ifname)


UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")


def normalise(line: str) -> str:
    """What may differ between runs: ids."""
    return UUID.sub("<uuid>", line.rstrip())


@dataclass
class Outcome:
    command: str
    output: list[str]
    status: int


def shell_session(prefix: list[str], commands: list[str], ctx: Context) -> list[Outcome]:
    """Run ``commands`` one after another in one ``sh`` started with ``prefix`` (say
    ``ip netns exec NS``), as if typed (``$?`` carries over): each one's output (stdout and
    stderr together) and exit status."""
    mark = f"@@readme-{uuid.uuid4().hex}"
    script = "\n".join(
        f'{{ {command}\n}} 2>&1\n__status=$?\nprintf "\\n%s %s\\n" {mark} "$__status"\n'
        "(exit $__status)"
        for command in commands
    )
    done = subprocess.run(
        [*prefix, "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=STEP * len(commands),
        env=ctx.env(),
        cwd=ctx.tmp_path,
        stdin=subprocess.DEVNULL,
    )
    outcomes: list[Outcome] = []
    chunk: list[str] = []
    for line in done.stdout.splitlines():
        if line.startswith(f"{mark} "):
            output = chunk[:-1] if chunk and not chunk[-1] else chunk  # the newline we added
            outcomes.append(Outcome(commands[len(outcomes)], output, int(line.split()[1])))
            chunk = []
        else:
            chunk.append(line)
    assert len(outcomes) == len(commands), f"{script}\n{done.stdout}\n{done.stderr}"
    return outcomes


def check_transcript(block: Block, outcomes: list[Outcome]) -> None:
    """Each command printed exactly what the block shows (ids aside)."""
    for (command, expected), outcome in zip(transcript(block), outcomes, strict=True):
        assert [normalise(line) for line in outcome.output] == [
            normalise(line) for line in expected
        ], f"{block.where}: `{command}` printed (exit {outcome.status}):\n" + "\n".join(
            outcome.output
        )


# -- Let's build an agent team (and `sn ask`, `sn watch`) -------------------------------------

REVIEWER_LAUNCHER = """
import builtins, runpy, sys


class Agent:  # the block's `my_agent`: an agent with an opinion, at once
    async def run(self, task, context):
        return "LGTM after fixing tests"


builtins.my_agent = Agent()
runpy.run_path(sys.argv[1], run_name="__main__")
"""


@scenario("reviewer", "sn-ask", "sn-watch", "secure-env")
def agent_team(ctx: Context) -> None:
    """The reviewer program runs verbatim on one test host (``my_agent`` is a stub); on the
    other host of the same LAN, ``sn watch`` shows it and ``sn ask`` prints what the README
    shows; Ctrl+C stops both long-running programs cleanly. All of it in a swarm secured as
    "Securing a swarm" shows: the ``secure-env`` command's ``SYNAPSE_SECRET`` everywhere."""
    ((export, _),) = transcript(ctx.block("secure-env"))
    (outcome,) = shell_session([], [f'{export}\nprintf "%s" "$SYNAPSE_SECRET"'], ctx)
    assert outcome.status == 0, outcome.output
    secret = outcome.output[-1]
    assert len(secret) >= 32, outcome.output
    ctx.extra_env["SYNAPSE_SECRET"] = secret
    pair = ctx.netns_pair()
    lan(pair)
    reviewer = ctx.spawn_in(
        pair.a, [sys.executable, "-c", REVIEWER_LAUNCHER, str(ctx.program("reviewer"))]
    )
    reviewer.expect_line(lambda _, line: "listening on" in line, STEP, "the reviewer starts")
    ((watch_command, _),) = transcript(ctx.block("sn-watch"))
    watch = ctx.spawn_in(pair.b, ["sh", "-c", f"exec {watch_command}"])
    watch.expect_line(lambda _, line: "reviewer" in line, STEP, "sn watch sees the reviewer")

    block = ctx.block("sn-ask")
    ((command, _),) = transcript(block)
    asker = ["ip", "netns", "exec", pair.b]
    outcomes = shell_session(asker, [command], ctx)
    check_transcript(block, outcomes)
    assert outcomes[0].status == 0

    watch.expect_line(lambda _, line: "LGTM after fixing tests" in line, STEP, "watch: reply")
    assert watch.stop(signal.SIGINT) == 0, watch.stderr
    assert reviewer.stop(signal.SIGINT) == 0, reviewer.stderr


# -- A node in ten lines ----------------------------------------------------------------------


@scenario("calculator-node", "calculator-client")
def calculator(ctx: Context) -> None:
    """The node program runs verbatim in its own namespace (port 9999 is free there); the
    client block runs there too, under both backends, and gets 3; Ctrl+C stops the node."""
    host = ctx.netns()
    program = ctx.program("calculator-node")
    node = host.spawn([sys.executable, str(program)], env=ctx.env(), cwd=ctx.tmp_path)
    started = node.expect_line(
        lambda stream, line: stream == "stderr" and "synapse-p2p node" in line, STEP, "node starts"
    )
    assert ":9999" in started, started
    assert "'calculator'" in started, started
    for backend in ("trio", "asyncio"):
        command = [sys.executable, str(BLOCKS_SCRIPT), "calculator-client", "--backend", backend]
        argv = [*command, "--report", "result"]
        run = Run(host.run(argv, timeout=STEP, env=ctx.env(), cwd=ctx.tmp_path)).ok()
        assert run.last_json() == {"result": 3}
    assert node.stop(signal.SIGINT) == 0, node.stderr  # "Ctrl+C stops it cleanly"
    assert "Traceback" not in node.stderr, node.stderr


@scenario("secured-node", "secured-client")
def secured(ctx: Context) -> None:
    """The secured node runs verbatim in its own namespace (its key file is created); the
    client with the keyring's second secret is answered with its own verified id; one with
    a wrong secret or none is refused during the handshake and the endpoint never runs."""
    host = ctx.netns()
    program = ctx.program("secured-node")
    node = host.spawn([sys.executable, str(program)], env=ctx.env(), cwd=ctx.tmp_path)
    node.expect_line(
        lambda stream, line: stream == "stderr" and "synapse-p2p node" in line, STEP, "starts"
    )
    key = ctx.tmp_path / "reviewer.key"
    assert key.exists()
    assert key.stat().st_mode & 0o777 == 0o600
    command = [sys.executable, str(BLOCKS_SCRIPT), "secured-client", "--backend", "trio"]
    run = Run(host.run(command, timeout=STEP, env=ctx.env(), cwd=ctx.tmp_path)).ok()
    out = run.done.stdout.strip().splitlines()[0]
    assert re.fullmatch(r"LGTM, asked by [0-9a-f]{64}", out), out
    for secret in ("wrong", ""):
        env = dict(ctx.env(), SYNAPSE_SECRET=secret)
        script = (
            "import anyio\nfrom synapse_p2p import Client\n"
            "anyio.run(lambda: Client('127.0.0.1', 9999, timeout=5).call('review', 'x'))"
        )
        refused = host.run([sys.executable, "-c", script], timeout=STEP, env=env)
        assert refused.returncode != 0
        assert "HandshakeError" in refused.stderr, refused.stderr
    assert node.stop(signal.SIGINT) == 0, node.stderr
    assert "Traceback" not in node.stderr, node.stderr
    assert "LGTM" not in node.stderr


@scenario("websocket-node")
async def websocket_node(ctx: Context) -> None:
    """The seed serves WebSocket beside TCP; the laptop joins with the URL as its seed and the
    client calls through it (under trio and asyncio)."""
    printed = Printed()
    namespace = await run_block(ctx.block("websocket-node"), {"print": printed})
    assert printed.lines == ["pong", "seed"], printed.lines
    assert re.fullmatch(r"ws://127\.0\.0\.1:\d+/synapse", namespace["url"]), namespace["url"]
    assert namespace["seed"].websocket_urls == []  # stopped


@scenario("relay-node")
async def relay_node(ctx: Context) -> None:
    """The laptop reserves on the relay; a client reaches it through a circuit (under trio and
    asyncio)."""
    printed = Printed()
    namespace = await run_block(ctx.block("relay-node"), {"print": printed})
    assert printed.lines == ["laptop"], printed.lines
    stats = namespace["relay"].relay.statistics()
    assert stats.circuits_total == 1, stats
    assert namespace["client"].peer_node_id == namespace["laptop"].node_id


@scenario("node-in-app")
async def node_in_app(ctx: Context) -> None:
    """``async with`` serves inside the block and stops on leaving it; ``tg.start(node.serve)``
    embeds it in a task group (stopped here once serving, since it runs until cancelled)."""
    printed = Printed()
    exits: list[tuple[bool, bool]] = []  # (running, old port still accepting) after the block
    served = anyio.Event()
    servings: list[int] = []

    class _Status:
        def __init__(self, inner: Any, node: Node) -> None:
            self.inner, self.node = inner, node

        def started(self, value: Any = None) -> None:
            self.inner.started(value)
            servings.append(self.node.port)
            if len(servings) == 2:
                served.set()

    class ObservedNode(Node):
        async def serve(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
            await super().serve(task_status=_Status(task_status, self))

        async def __aexit__(self, *exc_info: Any) -> None:
            port = self.port
            await super().__aexit__(*exc_info)
            try:
                stream = await anyio.connect_tcp("127.0.0.1", port)
            except OSError:
                exits.append((self.running, False))
            else:
                await stream.aclose()
                exits.append((self.running, True))

    namespace: dict[str, Any] = {"Node": ObservedNode, "anyio": anyio, "print": printed}
    with anyio.fail_after(STEP):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run_block, ctx.block("node-in-app"), namespace)
            await served.wait()
            node = namespace["node"]
            assert node.running
            assert await Client("127.0.0.1", node.port).call("_synapse.ping") == "pong"
            tg.cancel_scope.cancel()
    assert printed.lines == [f"127.0.0.1 {servings[0]}"]  # bound and serving inside the block
    assert exits == [(False, False)]  # stopped, its socket closed, on leaving the block
    assert not node.running


# -- A swarm ----------------------------------------------------------------------------------

SWARM_HOST = HERE / "swarm_host.py"
SEED = "10.0.0.5"  # the seed address the block names, on the second test host


@scenario("swarm-config")
def swarm_config(ctx: Context) -> None:
    """The two nodes as configured; then, on two test hosts (namespaces joined by a veth
    pair, a LAN of their own), the block's mDNS nodes find each other and ``other`` joins
    its seed at 10.0.0.5:9999."""
    namespace = exec_block(ctx.block("swarm-config"), {})
    node, other = namespace["node"], namespace["other"]
    assert (node.name, node.swarm, node.mdns_enabled) == ("reviewer", "myteam.example.com", True)
    assert [c.name for c in node.capabilities] == ["code-review"]
    assert (other.swarm, other.mdns_enabled, other.seeds) == (
        "myteam.example.com",
        False,
        [("10.0.0.5", 9999)],
    )

    pair = ctx.netns_pair()
    for ns, ifname in ((pair.a, pair.if_a), (pair.b, pair.if_b)):
        _ip("-n", ns, "route", "add", "default", "dev", ifname)  # a LAN with a gateway
    _ip("-n", pair.b, "addr", "add", f"{SEED}/32", "dev", "lo")  # the seed's host
    hosts = {}
    for ns, role in ((pair.a, "--start-other"), (pair.b, f"--seed-at={SEED}")):
        argv = [sys.executable, str(SWARM_HOST), role]
        hosts[ns] = pair.spawn(ns, argv, env=ctx.env())
    a, b = hosts[pair.a], hosts[pair.b]

    def joined(who: str, name: str, capabilities: list[str] | None = None) -> Any:
        def check(event: dict[str, Any]) -> bool:
            peer = event.get("peer", {})
            return (
                event.get("event") == "joined"
                and event["who"] == who
                and peer["name"] == name
                and (capabilities is None or peer["capabilities"] == capabilities)
            )

        return check

    a.expect(
        all_of(joined("node", "reviewer", ["code-review"]), joined("other", "seed")),
        STEP,
        "on host a, node finds host b's reviewer by mDNS and other joins 10.0.0.5:9999",
    )
    b.expect(joined("node", "reviewer", ["code-review"]), STEP, "host b finds a's by mDNS")
    for host in (a, b):
        assert host.stop() == 0, host.stderr


# -- Asking the swarm -------------------------------------------------------------------------


@scenario("ask-the-swarm")
async def ask_the_swarm(ctx: Context) -> None:
    names = ["asker", "reviewer", "tester"]
    async with open_swarm(3, configure=lambda i: {"name": names[i]}) as swarm:
        node, *others = swarm.nodes
        acks = anyio.Event()
        acked: set[str] = set()

        @node.on("conversation.ack")
        async def count(event: ConversationEvent) -> None:
            acked.add(event.peer.id)
            if len(acked) == len(others):
                acks.set()

        for peer in others:

            @peer.ask
            async def answer(task: str, context: dict[str, Any], name: str = peer.name) -> str:
                await acks.wait()  # every ACK is in before any reply: both replies are awaited
                return f"{name} read {task!r} at {context['url']}"

        complete = {peer.name: anyio.Event() for peer in others}  # a peer has all 5 events
        for peer in others:

            @peer.on("conversation.event")
            async def stored(event: ConversationEvent, peer: Node = peer) -> None:
                if len(peer.conversation(event.conversation_id)) == 5:
                    complete[peer.name].set()

        printed = Printed()
        namespace: dict[str, Any] = {"node": node, "print": printed}
        with anyio.fail_after(STEP):
            await run_block(ctx.block("ask-the-swarm"), namespace)
        assert sorted(printed.lines) == [
            "reviewer reviewer read 'Review this diff' at ...",
            "tester tester read 'Review this diff' at ...",
        ]
        broadcast = namespace["broadcast"]
        kinds = sorted(event.kind for event in node.conversation(broadcast))
        assert kinds == ["ack", "ack", "message", "reply", "reply"]
        # One shared conversation: every receiver ends up with the same log.
        for peer in others:
            with anyio.fail_after(STEP):
                await complete[peer.name].wait()
            assert [e.event_id for e in peer.conversation(broadcast)] == [
                e.event_id for e in node.conversation(broadcast)
            ]


# -- Durable conversations --------------------------------------------------------------------


@scenario("durable-conversations")
async def durable_conversations(ctx: Context) -> None:
    """The configuration as written (the log file lands in the working directory), and a
    conversation that survives a restart of the node."""
    ctx.fixture("monkeypatch").chdir(ctx.tmp_path)
    block = ctx.block("durable-conversations")
    node = exec_block(block, {})["node"]
    assert isinstance(node.conversation_log, SqliteConversationLog)
    assert (ctx.tmp_path / "architect.db").exists()
    assert (node.conversation_max_events, node.conversation_retention) == (100, 7 * 86_400)
    node.config = dataclasses.replace(node.config, bind="127.0.0.1")  # serve on loopback only
    async with node:
        event = await node.emit_conversation_event("design", "note", {"text": "remember me"})
    await node.conversation_log.aclose()

    restarted = exec_block(block, {})["node"]
    try:
        assert [e.event_id for e in restarted.conversation("design")] == [event.event_id]
    finally:
        await restarted.conversation_log.aclose()


# -- Teams ------------------------------------------------------------------------------------


class StubAgent:
    """``my_agent`` of the coder block: an agent that writes a diff at once."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def run(self, title: str, spec: dict[str, Any]) -> str:
        self.calls.append((title, spec))
        return f"diff for {spec['file']}: {title}"


@scenario("team-architect", "team-coder")
async def team(ctx: Context) -> None:
    def roles(i: int) -> dict[str, Any]:
        return {"name": "coder", "capabilities": ["python"]} if i else {"name": "architect"}

    async with open_swarm(2, configure=roles) as swarm:
        architect, coder = swarm.nodes
        agent = StubAgent()
        await run_block(ctx.block("team-coder"), {"node": coder, "my_agent": agent})
        namespace: dict[str, Any] = {"node": architect}
        with anyio.fail_after(STEP):
            await run_block(ctx.block("team-architect"), namespace)
        assert namespace["result"] == {"diff": "diff for parser.py: implement the parser"}
        assert agent.calls == [("implement the parser", {"file": "parser.py"})]
        task = namespace["team"].tasks[namespace["task"].id]
        assert (task.status, task.assignee.id) == ("done", coder.node_id)
        assert any(p.get("message") == "starting" for p in task.progress), task.progress


# -- Schedules --------------------------------------------------------------------------------


@scenario("schedules")
async def schedules(ctx: Context) -> None:
    async with open_swarm(2, configure=lambda i: {"name": ["garden", "house"][i]}) as swarm:
        node, house = swarm.nodes
        namespace = await run_block(ctx.block("schedules"), {"node": node})
        jobs = {job.fn: job.schedule for job in node.scheduler.jobs.values()}
        sunrise = jobs[namespace["morning_check"]]
        assert isinstance(sunrise, SolarSchedule)
        assert (sunrise.event, sunrise.latitude, sunrise.longitude) == ("sunrise", 51.5, -0.1)
        water = jobs[namespace["water"]]
        assert isinstance(water, CronSchedule)
        assert water.expression == "0 7 * * *"
        assert str(water.tz) == str(sunrise.tz) == "Europe/London"
        assert jobs[namespace["read_sensor"]] == IntervalSchedule(600)
        assert await namespace["water"]() is None
        assert await namespace["read_sensor"]() is None

        heard: list[dict[str, Any]] = []
        delivered = anyio.Event()

        @house.on("conversation.message")
        async def on_message(event: ConversationEvent) -> None:
            heard.append(event.payload)
            delivered.set()

        await namespace["morning_check"]()  # what sunrise runs: a broadcast to the swarm
        with anyio.fail_after(STEP):
            await delivered.wait()
        assert heard == [{"endpoint": "garden.status", "args": [], "kwargs": {}}]


# -- Agent federation -------------------------------------------------------------------------


@scenario("federation")
async def federation(ctx: Context) -> None:
    """Routed by tag to the one peer that does math: the tag is only in its agent card, so
    the registry's card fetches (``registry.run``) are what make it findable."""
    cards = {
        1: {"model": "calc-1", "tools": ["calculator"], "tags": ["math"]},
        2: {"model": "bard-1", "tags": ["poetry"]},
    }

    async with open_swarm(3, configure=lambda i: {"name": f"agent{i}"}) as swarm:
        router, mathematician, poet = swarm.nodes
        asked: list[str] = []
        for node in (mathematician, poet):
            node.artifact("agent-card", cards[int(node.name[-1])])

            @node.ask
            async def answer(task: str, context: dict[str, Any], name: str = node.name) -> Any:
                asked.append(name)
                return 42 * 1337 if name == "agent1" else "a sonnet"

        async with anyio.create_task_group() as task_group:
            namespace: dict[str, Any] = {"node": router, "task_group": task_group}
            with anyio.fail_after(STEP):
                await run_block(ctx.block("federation"), namespace)
            task_group.cancel_scope.cancel()
        assert namespace["result"] == 56154
        assert asked == ["agent1"]


@scenario("a2a-serve")
async def a2a_serve(ctx: Context) -> None:
    """The swarm's A2A endpoint on a free loopback port, with a signed card."""
    pytest.importorskip("a2a", reason="the a2a extra is not installed")
    import httpx
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    async with open_swarm(
        2, transport="tcp", configure=lambda i: {"capabilities": ["build"]}
    ) as swarm:
        namespace: dict[str, Any] = {"node": swarm[0], "private_key": key}
        with anyio.fail_after(STEP):
            await run_block(ctx.block("a2a-serve"), namespace)
    server = namespace["server"]
    assert server.url.startswith("http://127.0.0.1:")
    with pytest.raises(httpx.ConnectError):  # the block's end stopped the server
        async with httpx.AsyncClient() as http:
            await http.get(server.url + "/.well-known/agent-card.json")


@scenario("a2a-federation")
async def a2a_federation(ctx: Context) -> None:
    """An A2A agent (another swarm's endpoint, on loopback) beside the swarm's peers."""
    pytest.importorskip("a2a", reason="the a2a extra is not installed")
    from synapse_p2p.a2a import open_a2a_server

    async with open_swarm(2, transport="tcp", swarm="far",
                          configure=lambda i: {"capabilities": ["translate"]}) as far:  # fmt: skip

        @far.nodes[1].ask
        async def translate(task: str, context: dict[str, Any]) -> str:
            return "hello"

        async with open_a2a_server(far[0], port=0) as agent, open_swarm(1) as near:
            async with anyio.create_task_group() as task_group:
                namespace: dict[str, Any] = {
                    "node": near[0], "task_group": task_group, "agent_url": agent.url,
                }  # fmt: skip
                assert "translate" in agent.router.skills()  # a member's capability
                with anyio.fail_after(STEP):
                    await run_block(ctx.block("a2a-federation"), namespace)
                task_group.cancel_scope.cancel()
    assert namespace["result"] == "hello"
    assert [a.id for a in namespace["registry"].list()] == ["a2a:" + agent.url]


# -- Testing your agents ----------------------------------------------------------------------


@scenario("open-swarm")
async def open_swarm_block(ctx: Context) -> None:
    namespace: dict[str, Any] = {}
    with anyio.fail_after(STEP):
        await run_block(ctx.block("open-swarm"), namespace)
    swarm = namespace["swarm"]
    assert [namespace[name] for name in ("asker", "reviewer", "tester")] == swarm.nodes
    assert [node.name for node in swarm.nodes] == ["node0", "node1", "node2"]
    assert not any(node.running for node in swarm.nodes)  # stopped on leaving the block


@scenario("pytest-plugin-conftest", "pytest-plugin-tests")
def pytest_plugin(ctx: Context) -> None:
    """The two files as a user's project, run by pytest: four passes (two tests, two
    backends)."""
    pytester: pytest.Pytester = ctx.fixture("pytester")
    pytester.makeconftest(ctx.block("pytest-plugin-conftest").code)
    pytester.makepyfile(test_agents=ctx.block("pytest-plugin-tests").code)
    result = pytester.runpytest(
        "-p", "no:cacheprovider", "--strict-markers",
        "-W", "ignore::pytest.PytestAssertRewriteWarning",
    )  # fmt: skip
    result.assert_outcomes(passed=4)


# -- Logging ----------------------------------------------------------------------------------

LOGGING_PROGRAM = """
import logging, sys
import anyio
sys.path.insert(0, {here!r})
import blocks
from synapse_p2p import Node

if {configure}:
    blocks.exec_block(blocks.load().named()["logging"], {{"__name__": "__main__"}})


async def main() -> None:
    async with Node(name="logged", bind="127.0.0.1"):
        pass


anyio.run(main)
print(logging.getLogger().level, logging.getLogger("synapse_p2p").getEffectiveLevel())
"""


@scenario("logging")
def logging_config(ctx: Context) -> None:
    """In a fresh interpreter: silent without configuration; with the block, the library's
    records reach stderr and its logger is at DEBUG."""
    for configure in (False, True):
        program = LOGGING_PROGRAM.format(here=str(HERE), configure=configure)
        done = subprocess.run(
            [sys.executable, "-c", program],
            capture_output=True,
            text=True,
            timeout=STEP,
            env=ctx.env(),
            cwd=ctx.tmp_path,
            stdin=subprocess.DEVNULL,
        )
        Run(done).ok()
        if configure:
            assert done.stdout.split() == ["20", "10"]  # root INFO, synapse_p2p DEBUG
            assert "INFO:synapse_p2p" in done.stderr
            assert "listening on" in done.stderr
        else:
            assert done.stderr == ""  # the library is silent unless configured


# -- Any MCP client joins the swarm ---------------------------------------------------------

MCP_SEED = """
from synapse_p2p import Node

node = Node(name="reviewer", swarm="myteam.example.com", bind="10.0.0.5", port=9999)


@node.ask
async def review(task, context):
    return f"LGTM: {task}"


node.run()
"""


@scenario("mcp-client-config", "mcp-library")
def mcp_clients(ctx: Context) -> None:
    """On a test host where 10.0.0.5:9999 is a reviewer, the pasted client configuration runs
    verbatim, launched by the official MCP client SDK as Claude Desktop would launch it, and so
    does the library program: each joins, sees the reviewer and gets its reply to an ask."""
    pytest.importorskip("mcp", reason="the MCP SDK is not installed (pip install '.[mcp]')")
    host = ctx.netns()
    _ip("-n", host.name, "addr", "add", "10.0.0.5/32", "dev", "lo")
    seed = ctx.spawn_in(host.name, [sys.executable, "-c", MCP_SEED])
    seed.expect_line(lambda _, line: "listening on" in line, STEP, "the reviewer starts")
    server = json.loads(ctx.block("mcp-client-config").code)["mcpServers"]["swarm"]
    command = shutil.which(server["command"], path=ctx.env()["PATH"])
    assert command is not None, f"{server['command']} is not on the PATH"
    launches = {
        "claude": host.command([command, *server["args"]]),
        "assistant": host.command([sys.executable, str(ctx.program("mcp-library"))]),
    }
    for name, argv in launches.items():
        anyio.run(_drive_mcp_client, argv, ctx, name)
    assert seed.stop(signal.SIGINT) == 0, seed.stderr


async def _drive_mcp_client(argv: list[str], ctx: Context, name: str) -> None:
    from mcp import ClientSession, StdioServerParameters, stdio_client

    params = StdioServerParameters(command=argv[0], args=argv[1:], env=ctx.env())
    errlog = ctx.tmp_path / f"{name}.stderr"

    async def tool(session: ClientSession, tool: str, **arguments: Any) -> Any:
        result = await session.call_tool(tool, arguments)
        text = "".join(getattr(c, "text", "") for c in result.content)
        assert not result.is_error, f"{tool}: {text}\n{errlog.read_text()}"
        return json.loads(text)

    with errlog.open("w") as err, anyio.fail_after(3 * STEP):
        async with stdio_client(params, errlog=err) as streams, ClientSession(*streams) as session:
            await session.initialize()
            while True:  # the server is in another process: poll until it has joined
                peers = await tool(session, "list_peers")
                if "reviewer" in [p["name"] for p in peers["peers"]]:
                    break
                await anyio.sleep(0.1)
            assert peers["self"]["name"] == name
            asked = await tool(session, "ask_swarm", task="Review this diff", timeout=10)
            assert [r["result"] for r in asked["replies"]] == ["LGTM: Review this diff"]


# -- The command line -------------------------------------------------------------------------


@scenario("sn-exit-codes")
def sn_exit_codes(ctx: Context) -> None:
    """The failing ask and its exit status, in a namespace where port 9 is surely closed."""
    host = ctx.netns()
    block = ctx.block("sn-exit-codes")
    outcomes = shell_session(host.command([]), [cmd for cmd, _ in transcript(block)], ctx)
    check_transcript(block, outcomes)


# -- The dashboard ----------------------------------------------------------------------------


@scenario("dashboard-embed")
async def dashboard_embed(ctx: Context) -> None:
    """The block serves the page on the default port while ``run_my_app`` fetches it."""
    import socket

    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", 8377))
        except OSError:
            pytest.skip("port 8377 on 127.0.0.1 is in use: the block serves on it")
    async with open_swarm(2) as swarm:
        fetched: list[bytes] = []

        async def run_my_app() -> None:
            async with await anyio.connect_tcp("127.0.0.1", 8377) as stream:
                await stream.send(b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8377\r\n\r\n")
                fetched.append(await stream.receive())

        printed = Printed()
        namespace = {"node": swarm.nodes[0], "run_my_app": run_my_app, "print": printed}
        with anyio.fail_after(STEP):
            await run_block(ctx.block("dashboard-embed"), namespace)
        assert printed.lines == ["dashboard: http://127.0.0.1:8377/"]
        assert fetched[0].startswith(b"HTTP/1.1 200")


# -- Protocol ---------------------------------------------------------------------------------


@scenario("wire-format")
async def wire_format(ctx: Context) -> None:
    """The two maps are what our codec writes, and a node answers that request with exactly
    that response, framed with a 4-byte big-endian length."""
    block = ctx.block("wire-format")
    exec_block(block, {})  # valid Python as written
    request, response = (ast.literal_eval(stmt) for stmt in _expressions(block))
    decoded = decode_message(request)
    assert decoded == Request(endpoint="sum", id="request-id", args=[1, 2], kwargs={})
    assert unpack_payload(encode_request(decoded)) == request
    answer = decode_message(response)
    assert answer == Response(id="request-id", ok=True, result=3, error=None)
    assert unpack_payload(encode_response(answer)) == response

    node = Node(name="calculator", bind="127.0.0.1")

    @node.endpoint("sum")
    async def add(a: int, b: int) -> int:
        return a + b

    payload = pack(request)
    frame = encode_frame(payload)
    assert frame == len(payload).to_bytes(4, "big") + payload
    async with node, await anyio.connect_tcp("127.0.0.1", node.port) as stream:
        await stream.send(frame)
        with anyio.fail_after(STEP):
            assert await read_frame(stream) == response


def _expressions(block: Block) -> Iterator[ast.expr]:
    for statement in ast.parse(block.code).body:
        assert isinstance(statement, ast.Expr), ast.dump(statement)
        yield statement.value


@scenario("metrics")
async def metrics(ctx: Context) -> None:
    """The block starts a metrics server on a running node (on a free port instead of 9464,
    and named, so the test can find it); GET /metrics answers the node's counters."""
    block = ctx.block("metrics")
    code = block.code.replace("port=9464", "port=0").replace(
        "node.start_service(MetricsServer(", "node.start_service(server := MetricsServer("
    )
    async with Node(name="observed", bind="127.0.0.1") as node:
        namespace: dict[str, Any] = {"node": node}
        await run_block(dataclasses.replace(block, code=code), namespace)
        server = namespace["server"]
        with anyio.fail_after(STEP):
            while server.port == 0:
                await anyio.sleep(0.01)
            async with await anyio.connect_tcp("127.0.0.1", server.port) as stream:
                await stream.send(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                data = b""
                try:
                    while True:
                        data += await stream.receive()
                except anyio.EndOfStream:
                    pass
        assert data.startswith(b"HTTP/1.1 200 OK")
        assert b'synapse_peers{node="observed"} 0.0' in data
