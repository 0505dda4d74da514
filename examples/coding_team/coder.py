"""A coder: a node with the ``python`` and ``implementation`` capabilities and a Worker.

    python -m examples.coding_team.coder --name coder-1 [--seed 127.0.0.1:9400]

runs one until Ctrl+C (start two, then the architect).
"""

from __future__ import annotations

import argparse
from typing import Any

import anyio

from examples.coding_team.agents import write_code
from synapse_p2p import Node
from synapse_p2p.teams import Assignment, Worker

SWARM = "coding-team"
CAPABILITIES = ["python", "implementation"]


def make_coder(name: str, seed: str, **node_options: Any) -> Node:
    """A coder node with its worker registered (start it with ``node.run()``, ``async with
    node`` or ``task_group.start(node.serve)``)."""
    node = Node(
        name=name,
        role="coder",
        swarm=SWARM,
        capabilities=CAPABILITIES,
        seeds=[seed],
        bind="127.0.0.1",
        **node_options,
    )
    worker = Worker(node, max_concurrent=1)  # one task at a time, like a person

    @worker.task
    async def implement(assignment: Assignment) -> dict[str, Any]:
        spec = assignment.spec
        await assignment.progress(f"reading the spec for {spec['file']}")
        await anyio.sleep(0.1)  # thinking (a real coder calls its model here)
        source = write_code(spec["function"], spec.get("notes"))
        await assignment.progress("tests pass", lines=source.count("\n"))
        return {"file": spec["file"], "source": source, "by": name}

    return node


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", default="coder-1")
    parser.add_argument("--seed", default="127.0.0.1:9400")
    args = parser.parse_args()
    make_coder(args.name, args.seed, heartbeat_interval=1).run()


if __name__ == "__main__":
    main()
