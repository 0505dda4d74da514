"""A swarm behind an A2A endpoint, and the swarm's federation using that endpoint back.

Runs offline on loopback (needs ``pip install 'synapse-p2p[a2a]'``)::

    python examples/a2a_bridge/run.py [--backend trio|asyncio]

1. Three nodes form a swarm on 127.0.0.1: a calculator (skill "math") and a builder (a team
   worker with the "build" capability).
2. The first node serves the swarm as an A2A agent over HTTP with a signed card.
3. The a2a-sdk's own client reads and verifies the card, sends a "math" message (an ask),
   streams a "build" message (a team task with progress notes) and reads the task back.
4. An AgentFederation on the calculator node routes a "math" prompt to the A2A endpoint
   through A2AAgentClient, as it would to any A2A agent.
"""

from __future__ import annotations

import argparse
import uuid
from typing import Any

import anyio
import httpx
from a2a.client import A2ACardResolver, ClientConfig, create_client
from a2a.types import GetTaskRequest, Message, Part, Role, SendMessageRequest, TaskState
from google.protobuf.json_format import MessageToDict

from synapse_p2p import Node
from synapse_p2p.a2a import CardSigner, card_verifier, open_a2a_server
from synapse_p2p.federation import A2AAgentRegistry, AgentFederation
from synapse_p2p.teams import Assignment, Worker


def message(text: str, skill: str) -> SendMessageRequest:
    req = SendMessageRequest(
        message=Message(role=Role.ROLE_USER, message_id=str(uuid.uuid4()), parts=[Part(text=text)])
    )
    req.metadata.update({"skill": skill})
    return req


async def main() -> None:
    async with Node(name="gateway", swarm="a2a-demo", bind="127.0.0.1") as gateway:
        seeds = [("127.0.0.1", gateway.port)]
        calc = Node(name="calc", swarm="a2a-demo", bind="127.0.0.1", seeds=seeds,
                    capabilities=["math"])  # fmt: skip
        builder = Node(name="builder", swarm="a2a-demo", bind="127.0.0.1", seeds=seeds,
                       capabilities=["build"])  # fmt: skip

        @calc.ask
        async def compute(task: str, context: dict[str, Any]) -> str:
            a, _, b = task.partition("*")
            return f"{task} = {int(a) * int(b)}"

        async with calc, builder, Worker(builder) as worker:

            @worker.task
            async def build(assignment: Assignment) -> dict[str, str]:
                await assignment.progress("compiling")
                await assignment.progress("linking")
                return {"artifact": f"{assignment.title}.whl"}

            signer = CardSigner.generate(key_id=gateway.node_id)
            async with open_a2a_server(gateway, port=0, team_skills=["build"],
                                       signer=signer) as server:  # fmt: skip
                await demo(server.url, signer)


async def demo(url: str, signer: CardSigner) -> None:
    verify = card_verifier({signer.key_id: signer.public_key})
    async with httpx.AsyncClient(timeout=30) as http:
        with anyio.fail_after(20):
            while True:  # the swarm's skills appear as the members' cards come in
                card = await A2ACardResolver(http, url).get_agent_card(signature_verifier=verify)
                if {"math", "build"} <= {s.id for s in card.skills}:
                    break
                await anyio.sleep(0.1)
        print(f"card: {card.name!r} (signature verified), skills: "
              f"{sorted(s.id for s in card.skills)}")  # fmt: skip

        client = await create_client(card, ClientConfig(streaming=False, httpx_client=http))
        async for response in client.send_message(message("6*7", "math")):
            print(f"math: {response.task.artifacts[0].parts[0].text}")

        streaming = await create_client(card, ClientConfig(streaming=True, httpx_client=http))
        task_id = ""
        async for event in streaming.send_message(message("app", "build")):
            if event.HasField("task"):
                task_id = event.task.id
                print(f"build: {_state(event.task.status.state)}")
            elif event.HasField("status_update"):
                status = event.status_update.status
                note = status.message.parts[0].text if status.message.parts else ""
                print(f"build: {_state(status.state)} {note}".rstrip())
            elif event.HasField("artifact_update"):
                part = event.artifact_update.artifact.parts[0]
                print(f"build: artifact {MessageToDict(part.data)}")
        done = await client.get_task(GetTaskRequest(id=task_id))
        print(f"build: task {_state(done.status.state)}, {len(done.history)} history messages")

    registry = A2AAgentRegistry([url], signature_verifier=verify)
    await registry.refresh()
    federation = AgentFederation(registry=registry)
    print(f"federation -> A2A: {await federation.run('3*14', tags=['math'])}")


def _state(state: Any) -> str:
    name: str = TaskState.Name(state)
    return name.removeprefix("TASK_STATE_").lower()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["trio", "asyncio"], default="trio")
    anyio.run(main, backend=parser.parse_args().backend)
