"""An architect and two coders that share work through the teams layer (offline, no API keys).

Run it with ``python -m examples.coding_team`` or ``python examples/coding_team/run.py``.
"""
