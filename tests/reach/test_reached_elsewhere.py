"""A seed reached at another address than the one it advertises (port forwarding, a
multi-homed host) is still a member.

On loopback: the seed listens on 127.0.0.1 only and advertises 127.0.0.2, where nothing
listens (as a seed behind port forwarding advertises its private address). Before, the joiner
checked the seed's record by dialing 127.0.0.2, failed, and never listed the seed; now the
channel it joined over proved the seed's id, so the advertised address is dialed there when
it cannot be connected to directly.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from synapse_p2p import Node
from synapse_p2p.errors import HandshakeError
from synapse_p2p.types import Peer

pytestmark = pytest.mark.anyio

TIMINGS: dict[str, Any] = {"heartbeat_interval": 0.2, "peer_timeout": 2, "mdns": False}


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
