"""Addresses as peers see them, between two test hosts with no default route (network
namespaces joined by a veth pair, made by the ``netns`` fixture and deleted afterwards).

There, auto-detection finds no route and a node bound to every interface advertises
127.0.0.1: before nodes learned the address their peers reach them at, the joiner verified the
seed at 127.0.0.1 (itself), failed, and neither node ever listed the other.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import pytest

from tests.discovery.mdns_scripts.netns import ROOT, SCRIPTS, JsonProcess, NetnsPair

JOINED_WITHIN = 15.0


def member(pair: NetnsPair, ns: str, *args: str) -> JsonProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return pair.spawn(ns, [sys.executable, str(SCRIPTS / "plain_member.py"), *args], env=env)


def lists(name: str, where: str) -> Any:
    return lambda e: e.get("peers", {}).get(name) == where


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_nodes_with_no_route_learn_the_address_they_are_reached_at(
    netns: NetnsPair, backend: str
) -> None:
    seed = member(netns, netns.a, "--name", "seed", "--backend", backend)
    started = seed.expect(lambda e: "port" in e, 20, "seed serving")
    assert started["address"] == "127.0.0.1"  # no default route: auto-detection falls back
    port = started["port"]
    joiner = member(
        netns, netns.b, "--name", "joiner", "--backend", backend,
        "--seed", f"{netns.addr_a}:{port}",
    )  # fmt: skip
    joined = joiner.expect(lambda e: "port" in e, 20, "joiner serving")
    joiner.expect(lists("seed", f"{netns.addr_a}:{port}"), JOINED_WITHIN, "joiner lists seed")
    seed.expect(
        lists("joiner", f"{netns.addr_b}:{joined['port']}"), JOINED_WITHIN, "seed lists joiner"
    )
    assert seed.expect(lambda e: "address" in e, 5, "seed")["address"] == netns.addr_a
    assert joiner.expect(lambda e: "address" in e, 5, "joiner")["address"] == netns.addr_b
