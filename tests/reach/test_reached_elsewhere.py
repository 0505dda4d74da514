"""A seed reached at another address than the one it advertises (port forwarding, a
multi-homed host) is still a member.

On loopback: the seed listens on 127.0.0.1 only and advertises 127.0.0.2, where nothing
listens (as a seed behind port forwarding advertises its private address). Before, the joiner
checked the seed's record by dialing 127.0.0.2, failed, and never listed the seed; now the
channel it joined over proved the seed's id, so the advertised address is dialed there when
it cannot be connected to directly.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from typing import Any

import anyio
import pytest

from synapse_p2p import Node
from synapse_p2p.errors import HandshakeError
from synapse_p2p.types import Peer
from tests.discovery.mdns_scripts.netns import ROOT, SCRIPTS, JsonProcess, NetnsPair

JOINED_WITHIN = 15.0


TIMINGS: dict[str, Any] = {"heartbeat_interval": 0.2, "peer_timeout": 2, "mdns": False}


def member(pair: NetnsPair, ns: str, *args: str) -> JsonProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return pair.spawn(ns, [sys.executable, str(SCRIPTS / "plain_member.py"), *args], env=env)


def lists(name: str, where: str) -> Any:
    return lambda e: e.get("peers", {}).get(name) == where


def listed(node: Node, node_id: str) -> anyio.Event:
    """Set once ``node`` lists ``node_id`` (at once if it does already)."""
    seen = anyio.Event()

    @node.on("peer.joined")
    async def joined(peer: Peer) -> None:
        if peer.id == node_id:
            seen.set()

    if node_id in node.peers:
        seen.set()
    return seen


@pytest.mark.anyio
async def test_a_seed_reached_elsewhere_than_it_advertises_is_a_member() -> None:
    seed = Node(bind="127.0.0.1", advertise="127.0.0.2", name="seed", **TIMINGS)
    async with seed:
        joiner = Node(bind="127.0.0.1", name="joiner", seeds=[f"127.0.0.1:{seed.port}"], **TIMINGS)
        seed_listed = listed(joiner, seed.node_id)
        async with joiner:
            joiner_listed = listed(seed, joiner.node_id)
            with anyio.fail_after(10):
                await seed_listed.wait()
                await joiner_listed.wait()
            assert joiner.peers[seed.node_id].address == "127.0.0.2"  # as it advertises
            assert joiner.peers[seed.node_id].verified
            # and calls to its advertised address go where it was reached
            info = await joiner.call_peer(("127.0.0.2", seed.port), "_synapse.info")
            assert info["id"] == seed.node_id


@pytest.mark.anyio
async def test_an_alias_never_lets_another_node_answer() -> None:
    # The alias dials its other address expecting the id proved there: a node proving another
    # id there is refused, and an alias is taken only where the connection proved that id.
    seed = Node(bind="127.0.0.1", name="seed", **TIMINGS)
    other = Node(bind="127.0.0.1", name="other", **TIMINGS)
    async with seed, other:
        asker = Node(bind="127.0.0.1", name="asker", **TIMINGS)
        async with asker:
            await asker.call_peer(("127.0.0.1", other.port), "_synapse.info")
            pool = asker._caller.pool
            assert pool is not None
            # ``other`` proved its own id at its address: an alias claiming the seed is there
            # is not taken
            assert not asker._caller.alias(
                ("127.0.0.2", seed.port), ("127.0.0.1", other.port), seed.node_id
            )
            # forced in anyway, dialing through it fails: ``other`` cannot prove the seed's id
            pool.alias(("127.0.0.2", seed.port), ("127.0.0.1", other.port), seed.node_id)
            with pytest.raises(HandshakeError):
                await asker.call_peer(("127.0.0.2", seed.port), "_synapse.info")


@pytest.mark.anyio
async def test_no_alias_for_an_address_a_member_holds() -> None:
    # The seed (127.0.0.1:P) advertises 127.0.0.2:P, where a member of the joiner's already
    # is: the member keeps its address (no alias sends its traffic to the seed).
    seed = Node(bind="127.0.0.1", advertise="127.0.0.2", name="seed", **TIMINGS)
    async with seed:
        member = Node(bind="127.0.0.2", port=seed.port, name="member", **TIMINGS)
        async with member:
            joiner = Node(
                bind="127.0.0.1", name="joiner", seeds=[f"127.0.0.2:{seed.port}"], **TIMINGS
            )
            async with joiner:
                with anyio.fail_after(10):
                    await listed(joiner, member.node_id).wait()
                await joiner._membership.seeds.join_seed("127.0.0.1", seed.port)
                pool = joiner._caller.pool
                assert pool is not None
                assert pool.aliases.get(("127.0.0.2", seed.port)) is None
                info = await joiner.call_peer(("127.0.0.2", seed.port), "_synapse.info")
                assert info["id"] == member.node_id


# -- a real port forwarding: an nft DNAT rule in a network namespace ---------------------------


def _in(ns: str, *argv: str, stdin: str | None = None) -> None:
    done = subprocess.run(
        ["ip", "netns", "exec", ns, *argv], input=stdin, capture_output=True, text=True, timeout=10
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} in {ns}: {done.stderr.strip()}")


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
@pytest.mark.parametrize("private", ["unroutable", "silent"])
def test_a_seed_behind_port_forwarding_is_a_member(
    netns: NetnsPair, backend: str, private: str
) -> None:
    """The seed's host (namespace ``a``) listens on a private address, 192.168.77.1:9999,
    and forwards its public port 19999 there (nft DNAT), as a home router does. The joiner
    (``b``) is given the public address only. ``unroutable``: ``b`` has no route to the
    private address (a dial fails at once). ``silent``: it has one, and ``a`` drops what
    comes there directly (a dial waits out its timeout, longer than the record check's)."""
    if shutil.which("nft") is None:
        print("port forwarding test skipped: nft (nftables) is not installed")
        pytest.skip("nft (nftables) is not installed")
    _in(netns.a, "ip", "addr", "add", "192.168.77.1/32", "dev", "lo")
    rules = (
        "table ip forward_test {\n"
        "  chain prerouting {\n"
        "    type nat hook prerouting priority -100;\n"
        "    tcp dport 19999 dnat to 192.168.77.1:9999\n"
        "  }\n"
        "  chain input {\n"
        "    type filter hook input priority 0;\n"
        "    ip daddr 192.168.77.1 ct status dnat accept\n"
        f"    ip daddr 192.168.77.1 iifname {netns.if_a} drop\n"
        "  }\n"
        "}\n"
    )
    if private == "silent":
        _in(netns.b, "ip", "route", "add", "192.168.77.0/24", "via", netns.addr_a)
    _in(netns.a, "nft", "-f", "-", stdin=rules)
    seed = member(
        netns, netns.a, "--name", "seed", "--backend", backend,
        "--bind", "192.168.77.1", "--advertise", "192.168.77.1", "--port", "9999",
    )  # fmt: skip
    seed.expect(lambda e: "port" in e, 20, "seed serving")
    joiner = member(
        netns, netns.b, "--name", "joiner", "--backend", backend,
        "--seed", f"{netns.addr_a}:19999",
    )  # fmt: skip
    joined = joiner.expect(lambda e: "port" in e, 20, "joiner serving")
    joiner.expect(lists("seed", "192.168.77.1:9999"), JOINED_WITHIN, "joiner lists the seed")
    seed.expect(
        lists("joiner", f"{netns.addr_b}:{joined['port']}"), JOINED_WITHIN, "seed lists joiner"
    )
