"""The session handshake that upgrades a connection to many concurrent requests.

Our client's first request on a persistent connection is ``_synapse.session`` with one map
argument ``{"protocol": 1, "max_frame": <client limit>}``. Our server answers with its own
limits (``protocol``, ``max_frame``, ``max_concurrent``, ``idle_timeout``, plus node details
such as ``node_id``) and keeps the connection open. synapse-p2p 2.5.0 answers ``bad_request``
(unknown endpoint) and closes the connection: the client then uses one connection per call for
that server, as the reference expects.

The server side is sans-IO here: :func:`session_answer` turns the client's offer into the
answer and the frame limit to respect towards that client, and :class:`Admission` counts the
requests of one connection against ``max_concurrent_requests``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..wire import HEADER_SIZE

__all__ = ["PROTOCOL_VERSION", "SESSION_ENDPOINT", "Admission", "session_answer"]

SESSION_ENDPOINT = "_synapse.session"
PROTOCOL_VERSION = 1


def session_answer(
    offer: Any,
    *,
    max_frame: int,
    max_concurrent: int,
    idle_timeout: float,
    extra: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], int | None]:
    """``(answer, peer_max_frame)`` for a client's session ``offer`` (anything: a malformed
    offer is treated as empty). ``peer_max_frame`` is the largest response the client said it
    accepts (at least a frame header), or ``None`` if it did not say."""
    peer_max: int | None = None
    if isinstance(offer, dict):
        value = offer.get("max_frame")
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            peer_max = max(value, HEADER_SIZE)
    answer: dict[str, Any] = {
        "protocol": PROTOCOL_VERSION,
        "max_frame": max_frame,
        "max_concurrent": max_concurrent,
        "idle_timeout": idle_timeout,
    }
    if extra:
        answer.update(extra)
    return answer, peer_max


class Admission:
    """Requests in flight on one connection, against its limit (sans-IO).

    :meth:`admit` either counts a request in (``None``) or says why it is refused (the
    ``overloaded`` message; the request is not run); :meth:`finished` counts one out.
    """

    __slots__ = ("in_flight", "limit")

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        self.limit = limit
        self.in_flight = 0

    def admit(self) -> str | None:
        if self.in_flight >= self.limit:
            return f"too many concurrent requests on this connection (limit {self.limit})"
        self.in_flight += 1
        return None

    def finished(self) -> None:
        if self.in_flight <= 0:
            raise RuntimeError("finished() without an admitted request")
        self.in_flight -= 1
