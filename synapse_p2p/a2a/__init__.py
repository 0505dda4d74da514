"""A2A in and out (``pip install 'synapse-p2p[a2a]'``, on the official ``a2a-sdk``).

Out: :func:`open_a2a_server` / :func:`serve_a2a` (and ``sn a2a serve``) put a running node's
swarm behind an A2A endpoint (protocol 1.0, JSON-RPC over HTTP with server-sent events, served
by hypercorn under trio or asyncio)::

    async with Node(swarm="lab", seeds=["127.0.0.1:9999"]) as node:
        async with open_a2a_server(node, port=8080, team_skills=["build"]) as server:
            print(server.url)  # the swarm's card: server.url + "/.well-known/agent-card.json"
            await anyio.sleep_forever()

In: :class:`synapse_p2p.federation.A2AAgentClient` and
:class:`synapse_p2p.federation.A2AAgentRegistry` route federation prompts to A2A agents.

Cards can be signed (JWS, ``EdDSA``) with :class:`CardSigner`; :func:`card_verifier` checks
them (as the SDK client's ``signature_verifier``).
"""

from __future__ import annotations

try:
    import a2a.server.routes  # noqa: F401
    import hypercorn  # noqa: F401
    import jwt  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "synapse_p2p.a2a needs the a2a extra: pip install 'synapse-p2p[a2a]'"
    ) from exc

from ._handler import SwarmRequestHandler, message_text
from ._mdns import SERVICE_TYPE, advertise_a2a
from ._server import A2AServer, build_app, open_a2a_server, serve_a2a
from ._signing import CardSignatureError, CardSigner, card_verifier, public_jwk, verify_card
from ._swarm import SwarmRouter
from ._tasks import TaskLog, TaskRecord

__all__ = [
    "SERVICE_TYPE",
    "A2AServer",
    "CardSignatureError",
    "CardSigner",
    "SwarmRequestHandler",
    "SwarmRouter",
    "TaskLog",
    "TaskRecord",
    "advertise_a2a",
    "build_app",
    "card_verifier",
    "message_text",
    "open_a2a_server",
    "public_jwk",
    "serve_a2a",
    "verify_card",
]
