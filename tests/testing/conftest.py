"""Our own suite uses the plugin's fixtures directly.

``pytest_plugins`` is only honoured in a top-level conftest, and the plugin is opt-in, so this
directory imports the plugin's hook and fixtures instead (the pytester tests in
``test_pytest_plugin.py`` enable it the way users do).
"""

from __future__ import annotations

from synapse_p2p.pytest_plugin import pytest_configure, swarm, synapse_swarm

__all__ = ["pytest_configure", "swarm", "synapse_swarm"]
