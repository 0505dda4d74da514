"""A paper-trading team on simulated market data: an exchange, an analyst, a news observer and
a trader (offline, deterministic, no API keys).

Run it with ``python -m examples.stock_trading_team`` or
``python examples/stock_trading_team/run.py``.
"""
