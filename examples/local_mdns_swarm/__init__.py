"""Zero-config discovery over mDNS: a reviewer, a coder and a node that asks them.

Run it with ``python -m examples.local_mdns_swarm`` or ``python examples/local_mdns_swarm/run.py``.
"""
