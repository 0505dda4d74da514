"""The default summarizer: its format, and equality with synapse-p2p 2.5.0's on many inputs."""

from __future__ import annotations

import os
import random
import string
import subprocess
from pathlib import Path
from typing import Any

import anyio
import msgpack
import pytest

from synapse_p2p.conversations import default_summarizer
from synapse_p2p.types import ConversationEvent, Peer
from tests.conversations.log_scripts.logkit import make_event
from tests.interop.refenv import ref_python  # noqa: F401  (fixture)

SCRIPTS = Path(__file__).resolve().parent / "log_scripts"
ANON = Peer(id="f" * 64, address="10.0.0.1", port=1, name="")


@pytest.mark.anyio
async def test_digest_format() -> None:
    events = [
        make_event(1.0, kind="message", payload={"endpoint": "synapse.ask", "args": ["hi"]}),
        make_event(2.0, kind="ack", payload={}, peer=ANON),
        make_event(3.0, kind="summary", payload={"summary": "(2 reply)\nearlier"}),
        make_event(4.0, kind="summary", payload={"summary": ""}),
        make_event(5.0, kind="reply", payload={"result": "x" * 300}),
    ]
    text = await default_summarizer(events)
    lines = text.split("\n")
    assert lines[0] == "(1 ack, 1 message, 1 reply, 2 summary)"
    assert lines[1] == 'alice [message]: {"endpoint": "synapse.ask", "args": ["hi"]}'
    assert lines[2] == f"{'f' * 64} [ack]: {{}}"
    assert lines[3:5] == ["(2 reply)", "earlier"]
    assert lines[5] == "alice [reply]: " + ('{"result": "' + "x" * 300)[:200] + "…"
    assert len(lines) == 6
    assert await default_summarizer([]) == "()\n"


@pytest.mark.anyio
async def test_digest_is_bounded() -> None:
    many = [make_event(float(i), payload={"i": i, "pad": "y" * 250}) for i in range(500)]
    text = await default_summarizer(many)
    header, body = text.split("\n", 1)
    assert header == "(500 message)"
    assert body.startswith("…")
    assert len(body) == 6001
    previous = make_event(0.0, kind="summary", payload={"summary": "z" * 5000})
    text = await default_summarizer([previous])
    assert text == "(1 summary)\n" + "z" * 1500


def random_case(rng: random.Random) -> list[ConversationEvent]:
    kinds = ["message", "ack", "reply", "summary", "task.offer", "Zeta", "é", "error"]
    peers = [ANON, Peer(id="1" * 64, address="::1", port=2, name="bob ✓")]
    alphabet = string.printable + "é✓\U0001f600\u2028\x00"
    events = []
    for i in range(rng.choice([0, 1, 3, 39, 40, 41, 120])):
        kind = rng.choice(kinds)
        text = "".join(rng.choice(alphabet) for _ in range(rng.choice([0, 5, 199, 250, 1600])))
        payload: dict[Any, Any]
        if kind == "summary":
            payload = rng.choice(
                [{"summary": text}, {"summary": None}, {}, {"summary": 12}, {"summary": text * 4}]
            )
        else:
            payload = rng.choice(
                [
                    {"text": text},
                    {"n": rng.random(), "big": 2**62, "flag": True, "none": None},
                    {"bytes": text.encode()[:50], "nested": [[1, {"k": text[:30]}], []]},
                    {1: "int key", "list": list(range(rng.randrange(80)))},
                    {},
                ]
            )
        events.append(make_event(float(i), kind=kind, payload=payload, peer=rng.choice(peers)))
    return events


async def summarize_all(cases: list[list[ConversationEvent]]) -> list[str]:
    return [await default_summarizer(case) for case in cases]


@pytest.mark.interop
def test_same_digest_as_the_reference(ref_python: Path) -> None:  # noqa: F811
    rng = random.Random(2024)
    cases = [random_case(rng) for _ in range(300)]
    cases.append([make_event(float(i), payload={"pad": "é" * 300}) for i in range(60)])
    ours = anyio.run(summarize_all, cases)
    done = subprocess.run(
        [str(ref_python), str(SCRIPTS / "ref_summarize.py")],
        input=msgpack.packb([[e.to_dict() for e in case] for case in cases], use_bin_type=True),
        capture_output=True,
        cwd=SCRIPTS,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        check=True,
    )
    theirs = msgpack.unpackb(done.stdout, raw=False)
    assert len(theirs) == len(ours)
    for i, (mine, reference) in enumerate(zip(ours, theirs, strict=True)):
        assert mine == reference, f"case {i} differs"
