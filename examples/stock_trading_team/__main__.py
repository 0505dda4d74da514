"""``python -m examples.stock_trading_team``: the whole team in one process (see run.py)."""

from examples.stock_trading_team.run import cli

cli()
