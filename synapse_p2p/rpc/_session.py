"""The session handshake that upgrades a connection to many concurrent requests.

Our client's first request on a persistent connection is ``_synapse.session`` with one map
argument ``{"protocol": 1, "max_frame": <client limit>}``. Our server answers with its own
limits (``protocol``, ``max_frame``, ``max_concurrent``, ``idle_timeout``, plus node details
such as ``node_id``) and keeps the connection open. synapse-p2p 2.5.0 answers ``bad_request``
(unknown endpoint) and closes the connection: the client then uses one connection per call for
that server, as the reference expects.
"""

from __future__ import annotations

__all__ = ["PROTOCOL_VERSION", "SESSION_ENDPOINT"]

SESSION_ENDPOINT = "_synapse.session"
PROTOCOL_VERSION = 1
