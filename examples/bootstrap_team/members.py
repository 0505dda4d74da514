"""The team: a bootstrap seed and three members (planner, reviewer, coder) that join it.

Every member has an ``@node.ask`` handler (a deterministic stand-in for an LLM agent) and an
``agent-card`` artifact describing it. The seed is an ordinary node with
``kind=NodeKind.BOOTSTRAP``: a first contact everybody knows, which logs who joins, who is
alive and who went offline. It is not a coordinator: once joined, members know each other.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio

from synapse_p2p import Node, NodeKind, Peer

SWARM = "bootstrap-team"
CARD_TYPE = "application/vnd.synapse.agent-card+json"
DEFAULT_SEED = "127.0.0.1:9000"
# Livelier than the defaults (a heartbeat every 5 s, offline after 20 s of silence), so a
# member you stop shows up as offline on the seed within about ten seconds.
TIMING: dict[str, Any] = {"heartbeat_interval": 2, "peer_timeout": 8}


def seed_from_env() -> str:
    """The seed's ``host:port``, from ``SYNAPSE_BOOTSTRAP`` (default 127.0.0.1:9000)."""
    return os.environ.get("SYNAPSE_BOOTSTRAP", DEFAULT_SEED)


def bind_from_env() -> str:
    """The address to listen on, from ``SYNAPSE_BIND`` (default 127.0.0.1, loopback only)."""
    return os.environ.get("SYNAPSE_BIND", "127.0.0.1")


# -- the stand-in agents ------------------------------------------------------------------------


def plan(task: str, context: dict[str, Any]) -> dict[str, Any]:
    """The planner's model: split the task into steps and say who does what."""
    steps = [("design", "planner"), ("implement", "coder"), ("review", "reviewer")]
    return {
        "summary": " > ".join(f"{step} ({owner})" for step, owner in steps),
        "steps": [{"step": f"{step}: {task}", "owner": owner} for step, owner in steps],
    }


def review(task: str, context: dict[str, Any]) -> dict[str, Any]:
    """The reviewer's model: approve work that comes with tests, ask for them otherwise."""
    approved = "test" in task.lower() or bool(context.get("tests"))
    notes = [] if approved else ["add tests"]
    return {"summary": "approved" if approved else "changes requested", "notes": notes}


def code(task: str, context: dict[str, Any]) -> dict[str, Any]:
    """The coder's model: name the file it would write and sketch it."""
    words = [word for word in task.lower().split() if word.isalnum()][:4]
    name = "_".join(words) or "task"
    return {"summary": f"wrote {name}.py", "file": f"{name}.py", "source": f"def {name}(): ...\n"}


@dataclass(frozen=True)
class Role:
    description: str
    capabilities: list[str]
    card: dict[str, Any]
    answer: Callable[[str, dict[str, Any]], dict[str, Any]]


ROLES: dict[str, Role] = {
    "planner": Role(
        "Breaks goals into steps and owners",
        ["planning"],
        {"model": "stand-in-planner", "tools": ["todo-list"], "tags": ["plan"], "capacity": 1},
        plan,
    ),
    "reviewer": Role(
        "Reviews changes before they land",
        ["code-review"],
        {"model": "stand-in-reviewer", "tools": ["diff"], "tags": ["review"], "capacity": 2},
        review,
    ),
    "coder": Role(
        "Writes Python",
        ["python", "implementation"],
        {"model": "stand-in-coder", "tools": ["editor", "pytest"], "tags": ["python"],
         "capacity": 1},
    code),
}  # fmt: skip


def make_member(role: str, seed: str, **options: Any) -> Node:
    """A member node for ``role`` that joins through ``seed`` as soon as it starts.

    ``options`` go to ``Node`` (``bind``, ``heartbeat_interval``...).
    """
    spec = ROLES[role]
    node = Node(
        name=role,
        role=role,
        description=spec.description,
        capabilities=spec.capabilities,
        swarm=SWARM,
        seeds=[seed],
        **options,
    )
    node.artifact("agent-card", {"name": role, **spec.card}, mime_type=CARD_TYPE)

    @node.ask
    async def answer(task: str, context: dict[str, Any]) -> dict[str, Any]:
        await anyio.sleep(0.1)  # thinking (a real agent calls its model here)
        return spec.answer(task, context)

    if role == "planner":

        @node.endpoint("team.members", description="Who is in the team, by role")
        async def members() -> list[dict[str, Any]]:
            return [
                {"name": p.name, "kind": str(p.kind), "capabilities": p.capabilities}
                for p in node.peers.values()
            ]

    @node.on("peer.joined")
    async def joined(peer: Peer) -> None:
        print(f"{role}: knows {peer.name or peer.id[:8]} ({peer.kind})", flush=True)

    return node


def make_bootstrap(
    port: int, *, heartbeat_every: int = 1, say: Callable[[str], None] = print, **options: Any
) -> Node:
    """The seed: ``kind=NodeKind.BOOTSTRAP`` on ``port``, logging the membership it sees.

    ``heartbeat_every``: log one heartbeat in that many per peer (1 logs them all).
    """
    node = Node(
        name="bootstrap",
        kind=NodeKind.BOOTSTRAP,
        description="First contact for the team",
        swarm=SWARM,
        port=port,
        **options,
    )
    heartbeats: dict[str, int] = {}

    @node.on("peer.joined")
    async def joined(peer: Peer) -> None:
        say(f"bootstrap: joined    {peer.name:<9} {peer.address}:{peer.port} {peer.capabilities}")

    @node.on("peer.heartbeat")
    async def heartbeat(peer: Peer) -> None:
        count = heartbeats[peer.id] = heartbeats.get(peer.id, 0) + 1
        if count == 1 or count % heartbeat_every == 0:
            say(f"bootstrap: heartbeat {peer.name:<9} (#{count})")

    @node.on("peer.offline")
    async def offline(peer: Peer) -> None:
        say(f"bootstrap: offline   {peer.name:<9} {peer.address}:{peer.port}")

    @node.on("peer.left")
    async def left(peer: Peer) -> None:
        say(f"bootstrap: left      {peer.name:<9} {peer.address}:{peer.port}")

    return node


def port_of(seed: str) -> int:
    """The port of a ``host:port`` seed."""
    return int(seed.rsplit(":", 1)[1])
