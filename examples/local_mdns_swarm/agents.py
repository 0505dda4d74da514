"""The two agents of the swarm: a reviewer and a coder, each a node found through mDNS.

Their "models" are deterministic stand-ins for LLM calls (no API keys, no network beyond the
LAN): the reviewer applies a few rules to the diff it is given, the coder rewrites the code so
the rules pass. Swap either for a real agent; the nodes around them do not change.
"""

from __future__ import annotations

import argparse
import re
from typing import Any

import anyio

from synapse_p2p import Node

SWARM = "foo.electron.network"
CARD_TYPE = "application/vnd.synapse.agent-card+json"

TASK = "Review this change and propose a fix"
CONTEXT: dict[str, Any] = {
    "repo": "acme/api",
    "file": "app/users.py",
    "diff": (
        "def get_user(id):\n"
        "    try:\n"
        "        return USERS[id]\n"
        "    except:\n"
        "        print(f'no such user {id}')\n"
        "        return None\n"
    ),
}

# (pattern, comment, replacement): what the reviewer flags and how the coder fixes it.
RULES: list[tuple[str, str, str]] = [
    (r"except:", "a bare `except:` hides real errors; catch KeyError", "except KeyError:"),
    (r"print\(", "use logging instead of print()", "log.warning("),
    (r"\bid\b", "`id` shadows the built-in; call it user_id", "user_id"),
]


def review(task: str, context: dict[str, Any]) -> dict[str, Any]:
    """The reviewer's model: one comment per rule the diff breaks."""
    diff = str(context.get("diff", ""))
    comments = [comment for pattern, comment, _ in RULES if re.search(pattern, diff)]
    return {
        "verdict": "changes requested" if comments else "approved",
        "file": context.get("file", "?"),
        "comments": comments,
    }


def write_fix(task: str, context: dict[str, Any]) -> dict[str, Any]:
    """The coder's model: the diff rewritten so that every rule passes."""
    code = str(context.get("diff", ""))
    for pattern, _, replacement in RULES:
        code = re.sub(pattern, replacement, code)
    return {"file": context.get("file", "?"), "patch": code}


def make_reviewer(**options: Any) -> Node:
    """A reviewer node with mDNS on (``options`` go to ``Node``: bind, mdns_interfaces...)."""
    node = Node(
        name="reviewer",
        role="reviewer",
        description="Reviews diffs",
        capabilities=["code-review"],
        swarm=SWARM,
        mdns=True,
        **options,
    )
    card = {"name": "reviewer", "model": "rules-v1", "tags": ["review"], "capacity": 2}
    node.artifact("agent-card", card, mime_type=CARD_TYPE)

    @node.ask
    async def answer(task: str, context: dict[str, Any]) -> dict[str, Any]:
        await anyio.sleep(0.2)  # reading the diff (a real agent calls its model here)
        return review(task, context)

    return node


def make_coder(**options: Any) -> Node:
    """A coder node with mDNS on (``options`` go to ``Node``)."""
    node = Node(
        name="coder",
        role="coder",
        description="Writes and fixes Python",
        capabilities=["python", "implementation"],
        swarm=SWARM,
        mdns=True,
        **options,
    )
    card = {"name": "coder", "model": "rewrite-v1", "tags": ["python"], "capacity": 1}
    node.artifact("agent-card", card, mime_type=CARD_TYPE)

    @node.ask
    async def answer(task: str, context: dict[str, Any]) -> dict[str, Any]:
        await anyio.sleep(0.3)  # writing the patch
        return write_fix(task, context)

    return node


def argument_parser(doc: str | None) -> argparse.ArgumentParser:
    """The options every script of the example takes."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    parser.add_argument(
        "--bind", default="0.0.0.0", help="address to listen on and advertise (default: the LAN)"
    )
    parser.add_argument(
        "--interface",
        action="append",
        help="network interface (name or address) for mDNS; repeat it for several (default: all)",
    )
    parser.add_argument("--backend", choices=["trio", "asyncio"], default="trio")
    return parser


def node_options(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments for ``Node`` from the parsed ``--bind`` and ``--interface``."""
    options: dict[str, Any] = {"bind": args.bind}
    if args.interface:
        options["mdns_interfaces"] = args.interface
    return options
