"""Two nodes with ``mdns=True`` on two test hosts (network namespaces joined by a veth pair)
find each other with no seeds, stay alive, and notice when one stops. mDNS never runs on this
machine's real interfaces."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.discovery.mdns_scripts.netns import NetnsPair

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).resolve().parent / "mdns_scripts" / "node_member.py"


@pytest.mark.parametrize(("backend_a", "backend_b"), [("trio", "asyncio"), ("asyncio", "trio")])
def test_nodes_find_each_other_on_the_lan(netns: NetnsPair, backend_a: str, backend_b: str) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))

    def start(ns: str, name: str, address: str, interface: str, backend: str):  # type: ignore[no-untyped-def]
        return netns.spawn(
            ns,
            [
                sys.executable,
                str(SCRIPT),
                "--name",
                name,
                "--address",
                address,
                "--backend",
                backend,
                "--interfaces",
                interface,
            ],
            env=env,
        )

    a = start(netns.a, "alpha", netns.addr_a, netns.if_a, backend_a)
    b = start(netns.b, "beta", netns.addr_b, netns.if_b, backend_b)
    a.expect(lambda e: e["peers"] == ["beta"], 20, "alpha sees beta")
    b.expect(lambda e: e["peers"] == ["alpha"], 20, "beta sees alpha")
    assert b.stop() == 0
    a.expect(lambda e: e["peers"] == [], 10, "alpha sees beta go offline")
    assert a.stop() == 0
