"""Ask the swarm: find the reviewer and the coder over mDNS, then hand them a task.

    python examples/local_mdns_swarm/ask.py [--peers 2] [--bind 0.0.0.0] [--interface eth0]

starts a node with mDNS, waits until ``--peers`` peers of the swarm have been discovered,
broadcasts ``synapse.ask`` with a diff as context, prints each ACK and reply, and exits.
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from typing import Any

import anyio

from examples.local_mdns_swarm.agents import CONTEXT, SWARM, TASK, argument_parser, node_options
from synapse_p2p import BroadcastReply, ConversationEvent, Node, Peer


def show(reply: BroadcastReply) -> None:
    """Print one reply: the reviewer's comments or the coder's patch."""
    result: dict[str, Any] = reply.result
    if "comments" in result:
        print(f"reply from {reply.peer.name}: {result['verdict']} on {result['file']}")
        for comment in result["comments"]:
            print(f"    - {comment}")
    else:
        print(f"reply from {reply.peer.name}: patch for {result['file']}")
        for line in result["patch"].splitlines():
            print(f"    | {line}")


async def ask(
    *, peers: int = 2, wait: float = 30, timeout: float = 30, **options: Any
) -> list[BroadcastReply]:
    """Start an asking node (``options`` go to ``Node``), wait for ``peers`` peers, ask them.

    Returns the replies. Raises ``TimeoutError`` if no peer turns up within ``wait`` seconds.
    """
    node = Node(name="asker", role="lead", swarm=SWARM, mdns=True, **options)
    enough = anyio.Event()

    @node.on("peer.joined")
    async def joined(peer: Peer) -> None:
        capabilities = ", ".join(peer.capabilities)
        print(f"discovered {peer.name} at {peer.address}:{peer.port} ({capabilities})")
        if len(node.peers) >= peers:
            enough.set()

    @node.on("conversation.ack")
    async def acked(event: ConversationEvent) -> None:
        print(f"ACK from {event.peer.name}")

    async with node:
        print(f"asker on {node.address}:{node.port}, looking for swarm {SWARM!r} over mDNS")
        with anyio.move_on_after(wait):
            await enough.wait()
        if not node.peers:
            raise TimeoutError(f"no peer of {SWARM!r} discovered within {wait:g} s")
        asked = len(node.peers)
        broadcast = await node.broadcast("synapse.ask", TASK, context=CONTEXT)
        print(f"asked {asked} peer(s): {TASK!r} ({CONTEXT['file']})")
        replies: list[BroadcastReply] = []
        async for reply in node.iter_replies(broadcast, timeout=timeout):
            show(reply)
            replies.append(reply)
            if len(replies) == asked:  # everyone we asked has answered
                break
        kinds = " > ".join(event.kind for event in node.conversation(broadcast))
        print(f"conversation {broadcast.nonce}: {kinds}")
    return replies


def main() -> None:
    parser = argument_parser(__doc__)
    parser.add_argument("--peers", type=int, default=2, help="peers to wait for (default 2)")
    parser.add_argument("--wait", type=float, default=30, help="seconds to wait for them")
    parser.add_argument("--timeout", type=float, default=30, help="seconds to wait for replies")
    args = parser.parse_args()

    async def run() -> None:
        await ask(peers=args.peers, wait=args.wait, timeout=args.timeout, **node_options(args))

    anyio.run(run, backend=args.backend)


if __name__ == "__main__":
    main()
