"""Inspect the team from outside: ask the seed for its peers, then each peer for its card.

    SYNAPSE_BOOTSTRAP=127.0.0.1:9000 python examples/bootstrap_team/inspect_team.py

Needs no node of its own: a ``Client`` calls ``_synapse.peers`` on the seed and
``_synapse.artifact.get("agent-card")`` on every peer it lists.
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from typing import Any

import anyio

from examples.bootstrap_team.members import seed_from_env
from synapse_p2p import Client, Peer, RemoteError, ServedArtifact


async def agent_card(peer: Peer) -> dict[str, Any] | None:
    """``peer``'s agent card, or None if it publishes none."""
    try:
        raw = await Client.from_peer(peer).call("_synapse.artifact.get", "agent-card")
    except RemoteError:  # bad_request: unknown artifact
        return None
    content = ServedArtifact.from_dict(raw).content
    return content if isinstance(content, dict) else None


async def inspect_team(seed: str) -> list[Peer]:
    """Print the seed's peers and their agent cards; returns the peers."""
    host, port = seed.rsplit(":", 1)
    async with Client(host, int(port)) as client:
        info = await client.call("_synapse.info")
        peers = await client.peers()  # _synapse.peers
    print(f"seed {info['name']} ({info['kind']}) at {seed} knows {len(peers)} peer(s):")
    for peer in sorted(peers, key=lambda p: p.name):
        capabilities = ", ".join(peer.capabilities) or "-"
        print(f"  {peer.name:<9} {peer.kind:<9} {peer.address}:{peer.port:<6} {capabilities}")
        card = await agent_card(peer)
        if card is None:
            print("            (no agent card)")
            continue
        tools = ", ".join(card.get("tools", [])) or "-"
        print(
            f"            agent-card: model={card.get('model')} tools={tools}"
            f" capacity={card.get('capacity')}"
        )
    return peers


if __name__ == "__main__":
    anyio.run(inspect_team, seed_from_env())
