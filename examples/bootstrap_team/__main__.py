"""``python -m examples.bootstrap_team``: the whole team in one process (see run.py)."""

from examples.bootstrap_team.run import cli

cli()
