"""``sn a2a serve`` as a real program, driven by the a2a-sdk's client over loopback HTTP.

A swarm node runs in a subprocess; ``sn a2a serve`` (another subprocess, under trio or
asyncio) joins it and serves the A2A endpoint on a free port.
"""

from __future__ import annotations

import inspect
import re
import signal
import uuid

import httpx
import pytest

pytest.importorskip("a2a", reason="the a2a extra is not installed")

from a2a.client import A2ACardResolver, ClientConfig, create_client
from a2a.types import Message, Part, Role, SendMessageRequest, TaskState

from synapse_p2p import Node
from tests.cli.conftest import StartNode, sn, start_node  # noqa: F401 - the fixture
from tests.cli.test_cli_swarm import Program

pytestmark = pytest.mark.anyio


def message(text: str, skill: str) -> SendMessageRequest:
    req = SendMessageRequest(
        message=Message(role=Role.ROLE_USER, message_id=str(uuid.uuid4()), parts=[Part(text=text)])
    )
    req.metadata.update({"skill": skill})
    return req


async def test_sn_a2a_serve(start_node: StartNode, anyio_backend: str) -> None:  # noqa: F811
    _node, seed = start_node("rev")
    program = Program("--backend", anyio_backend, "a2a", "serve", "lab", "--seed",
                      f"127.0.0.1:{seed}", "--port", "0", "--no-mdns")  # fmt: skip
    try:
        lines = program.until("A2A endpoint")
        found = re.search(r"(http://127\.0\.0\.1:\d+)", lines[-1])
        assert found, lines
        url = found.group(1)
        async with httpx.AsyncClient(timeout=30) as http:
            card = await A2ACardResolver(http, url).get_agent_card()
            assert "code-review" in {s.id for s in card.skills}
            plain = await create_client(card, ClientConfig(streaming=False, httpx_client=http))
            [response] = [
                r async for r in plain.send_message(message("Review this", "code-review"))
            ]
            assert response.task.status.state == TaskState.TASK_STATE_COMPLETED
            assert response.task.artifacts[0].parts[0].text == "rev: LGTM for 'Review this'"
            streaming = await create_client(card, ClientConfig(streaming=True, httpx_client=http))
            events = [
                r async for r in streaming.send_message(message("Stream this", "code-review"))
            ]
            kinds = [e.WhichOneof("payload") for e in events]
            assert kinds[0] == "task"
            assert "artifact_update" in kinds
            assert events[-1].status_update.status.state == TaskState.TASK_STATE_COMPLETED
            text = next(e.artifact_update.artifact.parts[0].text for e in events
                        if e.HasField("artifact_update"))  # fmt: skip
            assert text == "rev: LGTM for 'Stream this'"
        code, err = program.stop(signal.SIGINT)
        assert code == 0, err
    finally:
        program.close()


def test_sn_a2a_serve_errors() -> None:
    done = sn("a2a", "serve", "lab", "--seed", "127.0.0.1:9", "--no-mdns", "--port", "0")
    assert done.returncode == 3
    assert "could not join" in done.stderr
    done = sn("a2a", "serve", "lab", "--seed", "127.0.0.1:9", "--secret", "s3cret")
    if "secret" in inspect.signature(Node).parameters:  # passed on to the node
        assert done.returncode == 3
    else:
        assert done.returncode == 2
        assert "--secret is not supported" in done.stderr
