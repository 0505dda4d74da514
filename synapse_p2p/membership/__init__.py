"""Membership: the peer table, heartbeats, gossip, failure detection and seeds."""

from __future__ import annotations

from ._service import GOSSIP_ENDPOINT, JoinError, Membership
from ._table import PeerState, PeerTable

__all__ = [
    "GOSSIP_ENDPOINT",
    "JoinError",
    "Membership",
    "PeerState",
    "PeerTable",
]
