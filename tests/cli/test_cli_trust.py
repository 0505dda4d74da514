"""``--secret`` and ``--identity`` on every ``sn`` command: they reach the node or client the
command builds, a bad key file is a one-line error, and a secret is never printed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

import click
import pytest
from click.testing import CliRunner, Result

from synapse_p2p import Identity, Node
from synapse_p2p.cli import _swarm, _tools, cli
from synapse_p2p.rpc import Client
from tests.cli.conftest import StartNode, sn

T = TypeVar("T")
BACKENDS = ["trio", "asyncio"]
SECRET = "k7-Qx2-not-a-real-secret-9fZ"
DOWN = "127.0.0.1:9"  # nothing listens there: every command fails fast after building

#: Commands that join a swarm: (argv after `sn`, the exit code once the join fails).
SWARM_COMMANDS: list[tuple[list[str], int]] = [
    (["ask", "lab", "hi"], 3),
    (["broadcast", "lab", "hi"], 3),
    (["watch", "lab", "--plain"], 3),
    (["conversation", "lab", "some-id"], 3),
    (["tasks", "lab"], 3),
    (["dashboard", "lab", "--port", "0"], 3),
    (["a2a", "serve", "lab", "--port", "0"], 3),
    (["mcp", "lab"], 0),  # serves anyway; ends when stdin (empty here) closes
]
#: Commands that call one node directly.
NODE_COMMANDS = [["call", DOWN, "sum", "1", "2"], ["info", DOWN], ["peers", DOWN],
                 ["methods", DOWN], ["artifacts", DOWN], ["stats", DOWN]]  # fmt: skip
SHARED = {"swarm", "team", "name", "seeds", "mdns", "secrets", "identity"}


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), prog_name="sn")


def record(monkeypatch: pytest.MonkeyPatch, module: Any, cls: type[T]) -> list[T]:
    """Every ``cls`` that ``module`` builds from now on (with ``SYNAPSE_SECRET`` unset)."""
    built: list[T] = []

    class Recording(cls):  # type: ignore[valid-type,misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            built.append(self)

    monkeypatch.setattr(module, cls.__name__, Recording)
    monkeypatch.delenv("SYNAPSE_SECRET", raising=False)
    return built


@pytest.fixture
def nodes(monkeypatch: pytest.MonkeyPatch) -> list[Node]:
    """Every Node a swarm command builds, from now on."""
    return record(monkeypatch, _swarm, Node)


@pytest.fixture
def clients(monkeypatch: pytest.MonkeyPatch) -> list[Client]:
    """Every Client a per-node command builds, from now on."""
    return record(monkeypatch, _tools, Client)


def test_commands_that_join_a_swarm_share_their_options() -> None:
    a2a = cli.commands["a2a"]
    assert isinstance(a2a, click.Group)
    for argv, _ in SWARM_COMMANDS:
        command = a2a.commands["serve"] if argv[0] == "a2a" else cli.commands[argv[0]]
        names = {p.name for p in command.params}
        assert names >= SHARED, (argv[0], SHARED - names)
    for argv in NODE_COMMANDS:
        names = {p.name for p in cli.commands[argv[0]].params}
        assert names >= {"secrets", "identity", "timeout", "as_json"}, argv[0]
    assert {"secrets", "identity"} <= {p.name for p in cli.commands["demo"].params}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("argv", "code"), SWARM_COMMANDS, ids=[a[0] for a, _ in SWARM_COMMANDS])
def test_swarm_commands_give_their_node_the_secret_and_identity(
    nodes: list[Node], tmp_path: Path, backend: str, argv: list[str], code: int
) -> None:
    key = tmp_path / "node.key"
    done = invoke("--backend", backend, *argv, "--seed", DOWN, "--no-mdns", "--secret", SECRET,
                  "--secret", "older-secret", "--identity", str(key))  # fmt: skip
    assert done.exit_code == code, done.output
    assert SECRET not in done.output
    [node] = nodes
    assert node.config.secured
    assert node.config.keyring.secrets == (SECRET.encode(), b"older-secret")  # first: primary
    assert node.node_id == Identity.load(key).node_id  # the file was created, then used
    assert node.verifiable


def test_without_the_options_the_node_reads_synapse_secret(
    nodes: list[Node], monkeypatch: pytest.MonkeyPatch
) -> None:
    invoke("ask", "lab", "hi", "--seed", DOWN)
    monkeypatch.setenv("SYNAPSE_SECRET", SECRET)
    invoke("ask", "lab", "hi", "--seed", DOWN)
    first, second = nodes
    assert not first.config.secured
    assert second.config.keyring.secrets == (SECRET.encode(),)
    assert first.node_id != second.node_id  # no --identity: a new key each run


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("argv", NODE_COMMANDS, ids=[a[0] for a in NODE_COMMANDS])
def test_per_node_commands_give_their_client_the_secret_and_identity(
    clients: list[Client], tmp_path: Path, backend: str, argv: list[str]
) -> None:
    key = Identity.generate()
    key.save(tmp_path / "client.key")
    done = invoke("--backend", backend, *argv, "--timeout", "2", "--secret", SECRET,
                  "--identity", str(tmp_path / "client.key"))  # fmt: skip
    assert done.exit_code == 3, done.output
    assert SECRET not in done.output
    [client] = clients
    assert client.keyring.secrets == (SECRET.encode(),)
    assert client.identity.node_id == key.node_id


def test_the_demo_secures_every_node(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from synapse_p2p.cli import _demo

    built = record(monkeypatch, _demo, Node)
    key = tmp_path / "you.key"
    done = invoke("demo", "--secret", SECRET, "--identity", str(key))
    assert done.exit_code == 0, done.output
    assert SECRET not in done.output
    assert "(secured: every node holds the swarm secret)" in done.output
    assert len(built) == 7
    assert all(node.config.keyring.secrets == (SECRET.encode(),) for node in built)
    you = [node for node in built if node.name == "you"]
    assert [node.node_id for node in you] == [Identity.load(key).node_id]
    assert len({node.node_id for node in built}) == 7


@pytest.mark.parametrize(
    "argv", [["ask", "lab", "hi", "--seed", DOWN], ["info", DOWN], ["demo"]], ids=str
)
def test_a_bad_identity_file_is_a_one_line_error(tmp_path: Path, argv: list[str]) -> None:
    garbage = tmp_path / "garbage.key"
    garbage.write_text("not a key\n")
    garbage.chmod(0o600)
    for path, reason in ((garbage, "not a readable PEM private key"),
                         (garbage / "x.key", f"File exists: {garbage}"),
                         (tmp_path, "Is a directory")):  # fmt: skip
        done = sn(*argv, "--identity", str(path), timeout=30)
        assert done.returncode == 2, done.stderr
        assert done.stderr.count("\n") == 1, done.stderr
        assert done.stderr.startswith(f"sn: --identity {path}: ")
        assert reason in done.stderr
        assert "Traceback" not in done.stderr
        assert done.stdout == ""


@pytest.mark.parametrize("value", ["", "  ", "a,b"], ids=["empty", "blank", "comma"])
def test_a_bad_secret_is_a_usage_error_that_does_not_repeat_it(value: str) -> None:
    done = invoke("ask", "lab", "hi", "--seed", DOWN, "--secret", value)
    assert done.exit_code == 2
    assert "--secret" in done.output
    if value.strip():
        assert value not in done.output


@pytest.mark.parametrize("backend", BACKENDS)
def test_info_says_whether_the_node_is_verified_and_never_prints_the_secret(
    start_node: StartNode, backend: str
) -> None:
    _, port = start_node("reviewer", secret=SECRET)
    where = f"127.0.0.1:{port}"
    shown = sn("--backend", backend, "info", where, "--secret", SECRET)
    assert shown.returncode == 0, shown.stderr
    assert "verified" in shown.stdout
    as_json = sn("--backend", backend, "info", where, "--json", "--secret", SECRET)
    assert as_json.returncode == 0, as_json.stderr
    info = json.loads(as_json.stdout)
    assert info["verified"] is True  # the node proved its key in the handshake
    assert info["name"] == "reviewer"
    loud = sn("-vv", "--backend", backend, "ask", "lab", "hi", "--seed", where, "--secret",
              SECRET, "--timeout", "5")  # fmt: skip
    assert loud.returncode == 0, loud.stderr
    for done in (shown, as_json, loud):
        assert SECRET not in done.stdout + done.stderr
