"""A bootstrap seed and a planner, a reviewer and a coder that join through it.

Run it with ``python -m examples.bootstrap_team`` or ``python examples/bootstrap_team/run.py``.
"""
