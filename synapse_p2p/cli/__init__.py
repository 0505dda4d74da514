"""The ``sn`` command line (also ``python -m synapse_p2p``).

Swarm commands (``ask``, ``broadcast``, ``watch``, ``list-swarms``) start a short-lived node
that joins the swarm; per-node tools (``call``, ``info``, ``peers``, ``methods``,
``artifacts``) talk to one node; ``demo`` runs a local swarm on loopback. Exit status: 0 on
success, 1 when a call or every answer failed, 2 for a bad command line, 3 when a seed or node
cannot be reached (or refuses the join, or no peer is found), 4 when nothing answered before
the timeout, 130 when interrupted.
"""

from __future__ import annotations

from ._app import cli, main

__all__ = ["cli", "main"]
