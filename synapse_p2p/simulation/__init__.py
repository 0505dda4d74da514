"""A deterministic discrete-event simulator for the sans-IO membership and broadcast cores.

Thousands of nodes in one process on virtual time, over a seeded network model (latency, loss,
partitions, slow nodes, churn). ``benchmarks/simulate.py`` runs the scale targets; the tests run
small seeds of it.
"""

from __future__ import annotations

from ._network import LAN, WAN, NetworkModel, Simulator
from ._node import Observer, SimNode
from ._swarm import BroadcastResult, Swarm, ViewSizes

__all__ = [
    "LAN",
    "WAN",
    "BroadcastResult",
    "NetworkModel",
    "Observer",
    "SimNode",
    "Simulator",
    "Swarm",
    "ViewSizes",
]
