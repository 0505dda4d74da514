"""The architect: plans, offers each piece of work to the team, reviews, integrates.

    python -m examples.coding_team.architect [--port 9400]

waits for coders to join, runs the plan and exits.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import anyio

from examples.coding_team.agents import EXPRESSION, GOAL, PLAN, integrate, review
from synapse_p2p import Node
from synapse_p2p.teams import Team, TeamTask

SWARM = "coding-team"
REQUIRES = ["python", "implementation"]


async def lead(node: Node, *, say: Callable[[str], None] = print) -> float:
    """Run the whole plan on ``node`` (running); returns the integrated program's answer."""
    say(f"architect: goal is {GOAL!r}, {len(PLAN)} tasks")
    async with Team(node, lease=30) as team:
        done: dict[str, dict[str, Any]] = {}
        tasks: list[TeamTask] = []

        async def build(title: str, spec: dict[str, Any]) -> None:
            for _ in range(3):  # at most two rounds of review
                task = await team.offer(title, spec=spec, requires=REQUIRES)
                tasks.append(task)
                result = await team.wait(task, timeout=60)
                say(f"  {result['by']} delivered {result['file']} ({task.title})")
                notes = review(result["source"])
                if notes is None:
                    done[spec["function"]] = result
                    return
                say(f"  review of {result['file']}: {notes}")
                title, spec = f"fix {spec['file']}", {**spec, "notes": notes}
            raise RuntimeError(f"{spec['file']} did not pass review")

        async with anyio.create_task_group() as tg:
            for item in PLAN:
                tg.start_soon(build, item["title"], item["spec"])
        value = integrate({name: r["source"] for name, r in done.items()})
        say(f"architect: all files approved; {EXPRESSION} = {value:g}")
        say("every task is its own conversation:")
        for task in tasks:
            kinds = [e.kind.removeprefix("task.") for e in node.conversation(task.id)]
            assignee = task.assignee.name if task.assignee else "-"
            say(f"  {task.title:<28} {assignee:<8} {' > '.join(kinds)}")
    return value


async def main(port: int) -> None:
    async with Node(
        name="architect",
        role="architect",
        swarm=SWARM,
        bind="127.0.0.1",
        port=port,
        heartbeat_interval=1,
    ) as node:
        print(f"architect listening on 127.0.0.1:{node.port}; waiting for coders...")
        with anyio.fail_after(120):
            while not node.peers:
                await anyio.sleep(0.2)
        await lead(node)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=9400)
    anyio.run(main, parser.parse_args().port)
