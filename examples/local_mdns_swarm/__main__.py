"""``python -m examples.local_mdns_swarm``: the whole swarm in one process (see run.py)."""

from examples.local_mdns_swarm.run import cli

cli()
