"""``python -m examples.coding_team``: the whole team in one process (see run.py)."""

from examples.coding_team.run import cli

cli()
